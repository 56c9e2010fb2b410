//! What callers hand the client and get back: the enqueue and schedule
//! requests, a schedule as shown, how a client is opened, and the checks on
//! names and limits every request goes through.

use std::time::Duration;

use serde_json::Value;

use super::ClientError;
use crate::grants::AllowedHost;
use crate::model::{CatchUp, JobId, Millis};
use crate::runtime::RuntimeConfig;
use crate::secrets::SecretsKey;
use crate::schedule::Rule;

/// A request to enqueue one job. Everything but the template and the context
/// defaults to the template's settings.
#[derive(Debug, Clone, Default)]
pub struct Enqueue {
    /// The template's name.
    pub template: String,
    /// The context; checked against the template's schema.
    pub context: Value,
    /// Priority, lower first.
    pub priority: Option<i32>,
    /// Queue.
    pub queue: Option<String>,
    /// Not before this time.
    pub run_at: Option<Millis>,
    /// Not before now + this delay (ignored when `run_at` is given).
    pub delay: Option<Duration>,
    /// Attempts in all.
    pub max_attempts: Option<u32>,
    /// Timeout of each run.
    pub timeout: Option<Duration>,
    /// Memory limit of each run, in bytes.
    pub memory: Option<u64>,
    /// While a job with this key is queued or running, another enqueue with
    /// it returns that job instead of adding one.
    pub unique_key: Option<String>,
    /// Narrows the template's allowed hosts for this job: each entry must be
    /// covered by one of the template's (`None`: the template's own).
    pub allowed_hosts: Option<Vec<AllowedHost>>,
    /// The W3C `traceparent` of the request that enqueues it: its runs'
    /// spans become children of it (checked; see [`crate::telemetry`]).
    pub traceparent: Option<String>,
}

impl Enqueue {
    /// A request for `template` with `context` and the template's defaults.
    pub fn new(template: impl Into<String>, context: Value) -> Self {
        Enqueue { template: template.into(), context, ..Enqueue::default() }
    }
}

/// A schedule to create or replace.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// Its name.
    pub name: String,
    /// The template it enqueues.
    pub template: String,
    /// The context of every job; checked against the template's schema.
    pub context: Value,
    /// When it fires.
    pub rule: Rule,
    /// What to do about firings missed while no node ran.
    pub catch_up: CatchUp,
}

/// A schedule as shown: its rule, state and next firing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// The template it enqueues.
    pub template: String,
    /// The context of every job.
    pub context: Value,
    /// Its cron rule (six fields), if it has one.
    pub cron: Option<String>,
    /// Or its interval, as a duration (`5m`).
    pub every: Option<String>,
    /// The IANA time zone of its cron rule.
    pub timezone: Option<String>,
    /// What it does about missed firings.
    pub catch_up: CatchUp,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The firing time of the job it enqueued last.
    pub last_firing: Option<Millis>,
    /// When it fires next: the run-at of its queued job, or what the rule
    /// gives now; `None` while paused or running.
    pub next_firing: Option<Millis>,
    /// Its job, while queued or running.
    pub current_job: Option<JobId>,
}

/// How a client is opened.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The runtime used to check components at upload (and by a node to run them).
    pub runtime: RuntimeConfig,
    /// The key secrets are sealed with; needed to set secrets and to run
    /// jobs whose templates use them (every node must have the same).
    pub secrets_key: Option<SecretsKey>,
}

const NAME_RULE: &str = "use 1 to 100 letters, digits, '-', '_' or '.'";

/// Checks a template, queue or schedule name.
pub(super) fn check_name(field: &'static str, name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(ClientError::Invalid { field, message: format!("`{name}`: {NAME_RULE}") }) }
}

/// Checks a job's attempts, timeout and memory limit; `max_memory` is the
/// largest limit this process's runtime allows.
pub(super) fn check_limits(max_attempts: u32, timeout_ms: u64, memory: u64, max_memory: u64) -> Result<(), ClientError> {
    if !(1..=1000).contains(&max_attempts) {
        return Err(ClientError::Invalid { field: "max attempts", message: format!("{max_attempts}: use 1 to 1000") });
    }
    if !(1..=86_400_000).contains(&timeout_ms) {
        return Err(ClientError::Invalid { field: "timeout", message: format!("{timeout_ms} ms: use 1ms to 24h") });
    }
    if memory < (1 << 20) || memory > max_memory {
        return Err(ClientError::Invalid {
            field: "memory limit",
            message: format!(
                "{}: use 1MiB to {} (this node's maximum)",
                crate::units::format_size(memory),
                crate::units::format_size(max_memory)
            ),
        });
    }
    Ok(())
}

/// Checks a unique key.
pub(super) fn check_unique_key(key: Option<&str>) -> Result<(), ClientError> {
    match key {
        Some(key) if key.is_empty() || key.len() > 500 => {
            Err(ClientError::Invalid { field: "unique key", message: "use 1 to 500 characters".into() })
        }
        _ => Ok(()),
    }
}
