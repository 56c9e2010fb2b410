//! How a run ended: the result, the reason, and everything the run left behind
//! (output, logs, progress, checkpoint, timings).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The result of a run, as stored in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// The job returned an output.
    Succeeded,
    /// The job failed; [`Reason`] says how.
    Failed,
    /// Somebody cancelled the job while it ran.
    Cancelled,
}

/// Why a run did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The job returned an error of its own (or the host refused what it returned).
    Error,
    /// The run passed its timeout and was interrupted.
    Timeout,
    /// The run tried to grow its memory past its limit.
    Memory,
    /// The job trapped: a panic, `unreachable`, a stack overflow, a bad memory access.
    Trap,
    /// The run was cancelled through its [`CancelHandle`](super::CancelHandle).
    Cancelled,
    /// The node running it stopped heartbeating and another node closed the run
    /// (set by the engine, never by the sandbox).
    Expired,
    /// The node shut down before the run finished (set by the engine).
    Shutdown,
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
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The job returned `ok`: its output, as JSON text.
    Succeeded {
        /// The output JSON.
        output: String,
    },
    /// The job did not succeed.
    Failed {
        /// How it failed.
        reason: Reason,
        /// A message for people: the guest's own error, the trap, the limit that was hit.
        message: String,
    },
}

impl Ending {
    /// The stored result of this ending.
    pub fn result(&self) -> RunResult {
        match self {
            Ending::Succeeded { .. } => RunResult::Succeeded,
            Ending::Failed { reason: Reason::Cancelled, .. } => RunResult::Cancelled,
            Ending::Failed { .. } => RunResult::Failed,
        }
    }

    /// The reason, when the run did not succeed.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Ending::Succeeded { .. } => None,
            Ending::Failed { reason, .. } => Some(*reason),
        }
    }
}

/// Where a log line came from and how important it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// Level, or the stream it was written to.
    pub level: LogLevel,
    /// The text, without a trailing newline.
    pub message: String,
}

/// The latest progress a run reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0..=100.
    pub percent: u8,
    /// What the job said it was doing.
    pub message: String,
}

/// Everything a finished run leaves behind.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How it ended.
    pub ending: Ending,
    /// Its log (the job's lines, stdout and stderr within the caps, then a
    /// `host` line for every cut the run met).
    pub logs: Vec<LogLine>,
    /// The last progress it reported.
    pub progress: Option<Progress>,
    /// The last checkpoint it saved.
    pub checkpoint: Option<String>,
    /// Wall time from the start of instantiation to the end of the run.
    pub duration: Duration,
}
