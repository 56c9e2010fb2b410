//! One run from claim to recorded outcome: load the component, run it in the
//! sandbox while its live reports are carried out (see `reports`), decide
//! what becomes of the job, and write the outcome (retrying the write until
//! the database takes it or the run turns out to be fenced off).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::client::Client;
use crate::events::Event;
use crate::queue::{self, Backoff};
use crate::runtime::{CancelHandle, Ending, JobInfo, Reason, RunFeed, RunLimits, RunOutcome, RunRequest};
use super::reports::Reporter;
use super::writer::OutcomeWriter;
use crate::store::{Claimed, JobNext, RunEnd, TemplateDefaults};

/// Runs a claimed job and records how it ended; false when the outcome was
/// discarded (the run had been fenced off). `shutting_down` tells a cancel
/// caused by the node's shutdown from one asked by a user.
pub(crate) async fn execute(
    client: &Client,
    writer: &OutcomeWriter,
    node_id: &str,
    claimed: Claimed,
    cancel: CancelHandle,
    shutting_down: impl Fn() -> bool,
) -> bool {
    let span = tracing::info_span!(
        "run",
        job = claimed.job.id,
        run = claimed.run_id,
        template = %claimed.job.template,
        attempt = claimed.job.attempt
    );
    execute_in_span(client, writer, node_id, claimed, cancel, shutting_down).instrument(span).await
}

async fn execute_in_span(
    client: &Client,
    writer: &OutcomeWriter,
    node_id: &str,
    claimed: Claimed,
    cancel: CancelHandle,
    shutting_down: impl Fn() -> bool,
) -> bool {
    let Claimed { run_id, job, digest, config } = claimed;
    let shared = &client.shared;
    client.emit(Event::Started { job_id: job.id, run_id, attempt: job.attempt, node_id: node_id.to_string() });

    let outcome = match load(client, &digest).await {
        Ok(loaded) => {
            let limits = shared.runtime.config().limits;
            let feed = RunFeed::new(limits.max_streamed_lines);
            let request = RunRequest {
                context: job.context.clone(),
                info: JobInfo {
                    id: job.id as u64,
                    template: job.template.clone(),
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    checkpoint: job.checkpoint.clone(),
                },
                limits: RunLimits { timeout: Duration::from_millis(job.timeout_ms), memory: job.memory_bytes },
                config: Arc::new(config),
                cancel: cancel.clone(),
                feed: Some(feed.clone()),
            };
            let reporter = Reporter { client: client.clone(), node_id: node_id.to_string(), job_id: job.id, run_id, feed };
            let (ended, ended_rx) = tokio::sync::oneshot::channel();
            let run = async {
                let outcome = shared.runtime.run(&loaded, request).await;
                let _ = ended.send(());
                outcome
            };
            let (outcome, ()) = tokio::join!(run, reporter.carry(limits, ended_rx));
            outcome
        }
        Err(message) => RunOutcome {
            ending: Ending::Failed { reason: Reason::Error, message },
            logs: Vec::new(),
            progress: None,
            checkpoint: None,
            duration: Duration::ZERO,
        },
    };

    let mut ending = outcome.ending;
    if let Ending::Failed { reason: reason @ Reason::Cancelled, message } = &mut ending
        && shutting_down()
        && !user_cancelled(client, job.id).await
    {
        *reason = Reason::Shutdown;
        *message = "the node shut down before the run finished; it will run again".into();
    }
    // The template's backoff matters only when there is a retry to space out.
    let backoff = match &ending {
        Ending::Failed { .. } if job.attempt < job.max_attempts => {
            let defaults = shared.store.template_get(&job.template).await.ok().flatten().map(|t| t.defaults);
            Backoff::of(defaults.as_ref().unwrap_or(&TemplateDefaults::default()))
        }
        _ => Backoff::of(&TemplateDefaults::default()),
    };
    let now = shared.clock.now();
    let next = queue::after_run(&ending, job.attempt, job.max_attempts, backoff, now);
    let end = RunEnd {
        run_id,
        job_id: job.id,
        node_id: node_id.to_string(),
        result: ending.result(),
        reason: ending.reason(),
        message: match &ending {
            Ending::Failed { message, .. } => Some(message.clone()),
            Ending::Succeeded { .. } => None,
        },
        output: match &ending {
            Ending::Succeeded { output } => Some(output.clone()),
            Ending::Failed { .. } => None,
        },
        logs: outcome.logs,
        progress: outcome.progress,
        checkpoint: outcome.checkpoint,
        finished_at: now,
    };
    let (result, reason) = (end.result, end.reason);
    if !writer.record(end, next).await {
        tracing::warn!("the run was expired by another node meanwhile; its late outcome is discarded");
        return false;
    }
    tracing::info!(?result, ?reason, "run finished");
    client.emit(match (&ending, next) {
        (Ending::Succeeded { output }, _) => Event::Succeeded { job_id: job.id, run_id, output: output.clone() },
        (Ending::Failed { reason: Reason::Cancelled, .. }, _) => Event::Cancelled { job_id: job.id, run_id: Some(run_id) },
        (Ending::Failed { reason, message }, JobNext::Retry { at, .. }) => {
            Event::Retried { job_id: job.id, run_id, reason: *reason, message: message.clone(), run_at: at }
        }
        (Ending::Failed { reason, message }, JobNext::Delete) => {
            Event::Failed { job_id: job.id, run_id, reason: *reason, message: message.clone() }
        }
    });
    true
}

async fn user_cancelled(client: &Client, job_id: i64) -> bool {
    matches!(client.shared.store.job_get(job_id).await, Ok(Some(job)) if job.cancel_requested)
}

async fn load(client: &Client, digest: &crate::runtime::Digest) -> Result<Arc<crate::runtime::LoadedJob>, String> {
    let shared = &client.shared;
    if let Some(loaded) = shared.runtime.loaded(digest) {
        return Ok(loaded);
    }
    let bytes = match shared.store.component_get(digest).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(format!("the component {digest} is missing from the database")),
        Err(e) => return Err(format!("could not read the component {digest}: {e}")),
    };
    shared.runtime.load(&bytes).map_err(|e| format!("the component {digest} does not load: {e}"))
}
