//! The event stream a node publishes (bg_jobs' event listeners): what happened
//! to which job, for embedding applications, `enqueue --wait`, and tests.
//! Live streams (`GET /v1/events`) see them in their wire form (`wire`),
//! across processes through the process's hub (`hub`).

mod hub;
mod wire;

use serde::Serialize;

pub(crate) use hub::Hub;
pub use hub::{Registration, Watch};
pub use wire::WireEvent;

use crate::model::{JobId, LogLine, Millis, Reason, RunId};

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A job was enqueued.
    Enqueued {
        /// The job.
        job_id: JobId,
        /// Its template.
        template: String,
        /// Its queue.
        queue: String,
    },
    /// A run of a job started.
    Started {
        /// The job.
        job_id: JobId,
        /// The run.
        run_id: RunId,
        /// Which attempt.
        attempt: u32,
        /// On which node.
        node_id: String,
    },
    /// A running job logged a line.
    Log {
        /// The job.
        job_id: JobId,
        /// The run.
        run_id: RunId,
        /// The line.
        line: LogLine,
    },
    /// A running job reported progress.
    Progress {
        /// The job.
        job_id: JobId,
        /// The run.
        run_id: RunId,
        /// 0..=100.
        percent: u8,
        /// What it said.
        message: String,
    },
    /// A run succeeded; the job is done.
    Succeeded {
        /// The job.
        job_id: JobId,
        /// The run.
        run_id: RunId,
        /// The output JSON.
        output: String,
    },
    /// A run failed and the job will be tried again.
    Retried {
        /// The job.
        job_id: JobId,
        /// The run that failed.
        run_id: RunId,
        /// Why.
        reason: Reason,
        /// The failure message.
        message: String,
        /// When the next attempt may start.
        run_at: Millis,
    },
    /// A run snoozed: the job runs again at `run_at`, its attempt given back.
    Snoozed {
        /// The job.
        job_id: JobId,
        /// The run that snoozed.
        run_id: RunId,
        /// When the job may run again.
        run_at: Millis,
    },
    /// A run failed and the job is over (no attempts left).
    Failed {
        /// The job.
        job_id: JobId,
        /// The run that failed.
        run_id: RunId,
        /// Why.
        reason: Reason,
        /// The failure message.
        message: String,
    },
    /// A run was closed because its node stopped heartbeating.
    Expired {
        /// The job.
        job_id: JobId,
        /// The run.
        run_id: RunId,
        /// The node that went silent.
        node_id: String,
        /// Whether the job comes back for another attempt.
        retried: bool,
    },
    /// A job was cancelled (removed while waiting, or interrupted while running).
    Cancelled {
        /// The job.
        job_id: JobId,
        /// The interrupted run, if it was running.
        run_id: Option<RunId>,
    },
}

impl Event {
    /// The job the event is about.
    pub fn job_id(&self) -> JobId {
        match self {
            Event::Enqueued { job_id, .. }
            | Event::Started { job_id, .. }
            | Event::Log { job_id, .. }
            | Event::Progress { job_id, .. }
            | Event::Succeeded { job_id, .. }
            | Event::Retried { job_id, .. }
            | Event::Snoozed { job_id, .. }
            | Event::Failed { job_id, .. }
            | Event::Expired { job_id, .. }
            | Event::Cancelled { job_id, .. } => *job_id,
        }
    }

    /// Whether the job is over after this event.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Event::Succeeded { .. } | Event::Failed { .. } | Event::Cancelled { .. } | Event::Expired { retried: false, .. }
        )
    }
}
