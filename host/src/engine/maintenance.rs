//! Leader-only maintenance: the node holding the leader lease expires the
//! runs of nodes that stopped heartbeating (Bildad's expire) and prunes old
//! run history. Every node tries for the lease; the database grants it to one.

use crate::client::Client;
use crate::events::Event;
use crate::queue::{self, Backoff};
use crate::runtime::{Ending, Reason, RunResult};
use crate::store::{JobNext, Millis, RunEnd, StoreError, TemplateDefaults};

/// Closes every run whose expiry passed as `expired`, and makes its job
/// available again (or removes it at its last attempt). Returns how many.
pub(crate) async fn expire_dead_runs(client: &Client, now: Millis) -> Result<usize, StoreError> {
    let store = &client.shared.store;
    let mut expired = 0;
    for run in store.run_expired(now).await? {
        let message = format!("node {} stopped heartbeating while the run was in flight", run.node_id);
        let ending = Ending::Failed { reason: Reason::Expired, message: message.clone() };
        let defaults = store.template_get(&run.template).await?.map(|t| t.defaults).unwrap_or_else(TemplateDefaults::default);
        let next = queue::after_run(&ending, run.attempt, run.max_attempts, Backoff::of(&defaults), now);
        let end = RunEnd {
            run_id: run.id,
            job_id: run.job_id,
            node_id: run.node_id.clone(),
            result: RunResult::Failed,
            reason: Some(Reason::Expired),
            message: Some(message),
            output: None,
            logs: run.logs.clone(),
            progress: run.progress.clone(),
            checkpoint: None,
            finished_at: now,
        };
        if store.run_finish(&end, next).await? {
            expired += 1;
            tracing::warn!(job = run.job_id, run = run.id, node = %run.node_id, "expired a run of a silent node");
            client.emit(Event::Expired {
                job_id: run.job_id,
                run_id: run.id,
                node_id: run.node_id,
                retried: matches!(next, JobNext::Retry { .. }),
            });
        }
    }
    Ok(expired)
}
