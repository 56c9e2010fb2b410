//! How a run ended and what it left behind: the result and reason recorded in
//! history, the ending the queue logic decides on, log lines, progress, and
//! how retries of a failed run are spaced.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The result of a run, as stored in history: follows from its ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum RunResult {
    /// The job returned an output.
    Succeeded,
    /// The job failed; the [`Reason`] says how.
    Failed,
    /// Somebody cancelled the job while it ran.
    Cancelled,
    /// The job snoozed: it runs again after the delay it asked for, and the
    /// attempt was given back.
    Snoozed,
}

impl RunResult {
    /// The result's name as stored and shown (`succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "failed",
            RunResult::Cancelled => "cancelled",
            RunResult::Snoozed => "snoozed",
        }
    }
}

/// Why a run did not succeed, as recorded: the sandbox's reasons (see
/// `runtime::Reason`) and the two the engine sets itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Reason {
    /// The job returned an error of its own (or the host refused what it returned).
    Error,
    /// The run passed its timeout and was interrupted.
    Timeout,
    /// The run tried to grow its memory past its limit.
    Memory,
    /// The job trapped: a panic, `unreachable`, a stack overflow, a bad memory access.
    Trap,
    /// The run was cancelled.
    Cancelled,
    /// The node running it stopped heartbeating and the leader closed the run.
    Expired,
    /// The node shut down before the run finished; the job runs again.
    Shutdown,
    /// The job asked to snooze more times than a job may (the node's
    /// `max_snoozes`); the job is over.
    #[serde(rename = "snooze_limit")]
    #[sqlx(rename = "snooze_limit")]
    SnoozeLimit,
}

impl Reason {
    /// The reason's name as stored and shown (`timeout`, `memory`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Error => "error",
            Reason::Timeout => "timeout",
            Reason::Memory => "memory",
            Reason::Trap => "trap",
            Reason::Cancelled => "cancelled",
            Reason::Expired => "expired",
            Reason::Shutdown => "shutdown",
            Reason::SnoozeLimit => "snooze_limit",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended: exactly one of these. `R` is the kind of reason: the
/// runtime ends runs with its own, narrower `runtime::Reason`; what is
/// recorded and retried on is an `Ending` with a [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending<R = Reason> {
    /// The job returned `ok`: its output, as JSON text.
    Succeeded {
        /// The output JSON.
        output: String,
    },
    /// The job did not succeed.
    Failed {
        /// How it failed.
        reason: R,
        /// A message for people: the guest's own error, the trap, the limit that was hit.
        message: String,
    },
    /// The job asked to run again after `delay` (`host.snooze`): the
    /// attempt is given back.
    Snoozed {
        /// How long the job waits before its next run.
        delay: Duration,
    },
}

impl<R: Copy + Into<Reason>> Ending<R> {
    /// The result this ending is recorded with.
    pub fn result(&self) -> RunResult {
        match self {
            Ending::Succeeded { .. } => RunResult::Succeeded,
            Ending::Failed { reason, .. } if (*reason).into() == Reason::Cancelled => RunResult::Cancelled,
            Ending::Failed { .. } => RunResult::Failed,
            Ending::Snoozed { .. } => RunResult::Snoozed,
        }
    }

    /// The reason, when the run failed or was cancelled.
    pub fn reason(&self) -> Option<R> {
        match self {
            Ending::Failed { reason, .. } => Some(*reason),
            Ending::Succeeded { .. } | Ending::Snoozed { .. } => None,
        }
    }

    /// The message recorded with the run: the failure's, or how long a
    /// snoozed job waits.
    pub fn message(&self) -> Option<Cow<'_, str>> {
        match self {
            Ending::Succeeded { .. } => None,
            Ending::Failed { message, .. } => Some(Cow::Borrowed(message)),
            Ending::Snoozed { delay } => Some(Cow::Owned(format!("snoozed for {delay:?}"))),
        }
    }

    /// The output, when the run succeeded.
    pub fn output(&self) -> Option<&str> {
        match self {
            Ending::Succeeded { output } => Some(output),
            Ending::Failed { .. } | Ending::Snoozed { .. } => None,
        }
    }

    /// The same ending with its reason as recorded.
    pub fn recorded(self) -> Ending {
        match self {
            Ending::Succeeded { output } => Ending::Succeeded { output },
            Ending::Failed { reason, message } => Ending::Failed { reason: reason.into(), message },
            Ending::Snoozed { delay } => Ending::Snoozed { delay },
        }
    }
}

/// Where a log line came from and how important it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `host.log` at level trace.
    Trace,
    /// `host.log` at level debug.
    Debug,
    /// `host.log` at level info.
    Info,
    /// `host.log` at level warn.
    Warn,
    /// `host.log` at level error.
    Error,
    /// A line the guest wrote to stdout.
    Stdout,
    /// A line the guest wrote to stderr (panic messages land here).
    Stderr,
    /// A line elihu wrote about the run (what was cut, what was refused);
    /// a guest cannot write at this level.
    Host,
}

impl LogLevel {
    /// The level's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Stdout => "stdout",
            LogLevel::Stderr => "stderr",
            LogLevel::Host => "host",
        }
    }
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// Level, or the stream it was written to.
    pub level: LogLevel,
    /// The text, without a trailing newline.
    pub message: String,
}

/// The latest progress a run reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// 0..=100.
    pub percent: u8,
    /// What the job said it was doing.
    pub message: String,
}

/// How the retries of a template's jobs are spaced: `base * 2^(attempt-1)`,
/// capped at `max`, spread by jitter (the policy is in `queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}
