//! How the sandbox ended a run (its verdict and the reasons it can give) and
//! everything the run left behind (output, logs, progress, checkpoint, timings).

use std::time::Duration;

use crate::model::{self, LogLine, Progress};

/// Why the sandbox ended a run without success: only what the sandbox itself
/// decides. The engine records these as [`model::Reason`](crate::model::Reason),
/// which adds the reasons it sets itself (`expired`, `shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

impl From<Reason> for model::Reason {
    fn from(reason: Reason) -> model::Reason {
        match reason {
            Reason::Error => model::Reason::Error,
            Reason::Timeout => model::Reason::Timeout,
            Reason::Memory => model::Reason::Memory,
            Reason::Trap => model::Reason::Trap,
            Reason::Cancelled => model::Reason::Cancelled,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(model::Reason::from(*self).as_str())
    }
}

/// How the sandbox ended a run: succeeded with an output, or failed with a
/// sandbox [`Reason`] and a message.
pub type Ending = model::Ending<Reason>;

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
    /// Every outbound call it made or tried, in order (its audit).
    pub calls: Vec<super::Call>,
    /// Wall time from the start of instantiation to the end of the run.
    pub duration: Duration,
    /// The most linear memory the run was granted, in bytes.
    pub peak_memory: u64,
}
