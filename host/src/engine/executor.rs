//! One run from claim to recorded outcome: load the component, run it in the
//! sandbox while its live reports are carried out (see `reports`), decide
//! what becomes of the job (with the template's backoff as claimed), and
//! write the outcome through the outcome writer (which retries until the
//! database takes it or the run turns out to be fenced off).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::NodeState;
use crate::client::Client;
use crate::events::Event;
use super::reports::Reporter;
use crate::model::{Digest, Ending, JobId, Millis, Reason, RunId};
use crate::queue;
use crate::runtime::{self, CancelHandle, JobInfo, LoadedJob, RunFeed, RunLimits, RunOutcome, RunRequest};
use crate::store::{Claimed, JobNext, RunEnd};

/// Runs a claimed job on this node and records how it ended; false when the
/// outcome was discarded (the run had been fenced off).
pub(super) async fn execute(state: &NodeState, claimed: Claimed, cancel: CancelHandle) -> bool {
    let span = tracing::info_span!(
        "run",
        job = %claimed.job.id,
        run = %claimed.run_id,
        template = %claimed.job.template,
        attempt = claimed.job.attempt,
        node = %state.id,
        queue = %claimed.job.queue,
        result = tracing::field::Empty,
        reason = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    // Before the span is first entered: a child of the enqueuing request.
    crate::telemetry::set_parent(&span, claimed.job.traceparent.as_deref());
    execute_in_span(state, claimed, cancel).instrument(span).await
}

async fn execute_in_span(state: &NodeState, claimed: Claimed, cancel: CancelHandle) -> bool {
    let Claimed { run_id, job, digest, config, backoff, grants, limits: template_limits } = claimed;
    let client = &state.client;
    let node_id = state.id.as_str();
    let started = Event::Started { job_id: job.id, run_id, attempt: job.attempt, node_id: node_id.to_string() };
    client.emit_tagged(started, Some(&job.template), Some(&job.queue));
    client.metrics().started(&job.queue, job.run_at.max(job.created_at), client.clock().now());

    let prepared = match load(client, &digest).await {
        Ok(loaded) => client.capabilities(&job.template, &grants, job.allowed_hosts.as_deref()).await.map(|caps| (loaded, caps)),
        Err(message) => Err(message),
    };
    let outcome = match prepared {
        Ok((loaded, capabilities)) => {
            let limits = client.runtime().config().limits;
            let feed = RunFeed::new(limits.max_streamed_lines);
            let request = RunRequest {
                context: job.context.clone(),
                info: JobInfo {
                    id: job.id.0 as u64,
                    template: job.template.clone(),
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    checkpoint: job.checkpoint.clone(),
                },
                limits: RunLimits { timeout: Duration::from_millis(job.timeout_ms), memory: job.memory_bytes },
                config: Arc::new(config),
                cancel: cancel.clone(),
                feed: Some(feed.clone()),
                capabilities,
                template_limits,
            };
            let reporter = Reporter {
                client: client.clone(),
                node_id: node_id.to_string(),
                job_id: job.id,
                run_id,
                feed,
                template: job.template.clone(),
                queue: job.queue.clone(),
            };
            let (ended, ended_rx) = tokio::sync::oneshot::channel();
            let run = async {
                let outcome = client.runtime().run(&loaded, request).await;
                let _ = ended.send(());
                outcome
            };
            let (outcome, ()) = tokio::join!(run, reporter.carry(limits, ended_rx));
            outcome
        }
        Err(message) => RunOutcome {
            ending: runtime::Ending::Failed { reason: runtime::Reason::Error, message },
            logs: Vec::new(),
            progress: None,
            checkpoint: None,
            calls: Vec::new(),
            duration: Duration::ZERO,
            peak_memory: 0,
        },
    };

    let mut ending = outcome.ending.recorded();
    if let Ending::Failed { reason: reason @ Reason::Cancelled, message } = &mut ending
        && state.runs.shutting_down()
        && !user_cancelled(client, job.id).await
    {
        *reason = Reason::Shutdown;
        *message = "the node shut down before the run finished; it will run again".into();
    }
    let ending = queue::cap_snoozes(ending, job.snoozes, state.config.max_snoozes);
    let now = client.clock().now();
    let next = queue::after_run(&ending, job.attempt, job.max_attempts, backoff, now);
    let event = final_event(&ending, next, job.id, run_id, now);
    let (result, reason) = (ending.result(), ending.reason());
    let end = RunEnd {
        run_id,
        job_id: job.id,
        node_id: node_id.to_string(),
        ending,
        logs: outcome.logs,
        progress: outcome.progress,
        checkpoint: outcome.checkpoint,
        calls: outcome.calls,
        finished_at: now,
    };
    let (duration, peak_memory) = (outcome.duration, outcome.peak_memory);
    let writing = std::time::Instant::now();
    let recorded = state.writer.record(end, next).await;
    client.metrics().written(writing.elapsed());
    client.metrics().stopped(&job.queue);
    if !recorded {
        tracing::warn!("the run was expired by another node meanwhile; its late outcome is discarded");
        return false;
    }
    tracing::info!(?result, ?reason, "run finished");
    let span = tracing::Span::current();
    span.record("result", result.as_str());
    if let Some(reason) = reason {
        span.record("reason", reason.as_str());
        span.record("otel.status_code", "ERROR");
    }
    client.metrics().finished(&job.template, result, reason, duration, peak_memory);
    client.emit_tagged(event, Some(&job.template), Some(&job.queue));
    true
}

/// The event that tells how a run ended and what becomes of its job.
fn final_event(ending: &Ending, next: JobNext, job_id: JobId, run_id: RunId, now: Millis) -> Event {
    match (ending, next) {
        (Ending::Succeeded { output }, _) => Event::Succeeded { job_id, run_id, output: output.clone() },
        (Ending::Failed { reason: Reason::Cancelled, .. }, _) => Event::Cancelled { job_id, run_id: Some(run_id) },
        (Ending::Failed { reason, message }, JobNext::Retry { at, .. }) => {
            Event::Retried { job_id, run_id, reason: *reason, message: message.clone(), run_at: at }
        }
        (Ending::Failed { reason, message }, JobNext::Delete | JobNext::Snooze { .. }) => {
            Event::Failed { job_id, run_id, reason: *reason, message: message.clone() }
        }
        (Ending::Snoozed { delay }, _) => Event::Snoozed { job_id, run_id, run_at: now + *delay },
    }
}

/// Whether a user asked to cancel the job (rather than the shutdown
/// interrupting it). When the database cannot say, the run counts as
/// interrupted by the shutdown, so the job runs again.
async fn user_cancelled(client: &Client, job_id: JobId) -> bool {
    match client.store().job_get(job_id).await {
        Ok(job) => job.is_some_and(|job| job.cancel_requested),
        Err(e) => {
            tracing::warn!(error = %e, "could not tell a user's cancel from the shutdown; the job will run again");
            false
        }
    }
}

async fn load(client: &Client, digest: &Digest) -> Result<Arc<LoadedJob>, String> {
    if let Some(loaded) = client.runtime().loaded(digest) {
        return Ok(loaded);
    }
    let bytes = match client.store().component_get(digest).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(format!("the component {digest} is missing from the database")),
        Err(e) => return Err(format!("could not read the component {digest}: {e}")),
    };
    client.runtime().load(&bytes).map_err(|e| format!("the component {digest} does not load: {e}"))
}
