//! Expiry, leader only (Bildad's expire, River's rescuer): closes the runs of
//! nodes that stopped heartbeating as `expired` and makes their jobs
//! available again at once (or removes them at their last attempt).

use std::sync::Arc;

use tokio::sync::watch;

use super::{NodeState, Phase, leader};
use crate::client::Client;
use crate::events::Event;
use crate::model::{Backoff, Ending, Millis, Reason};
use crate::queue;
use crate::store::{JobNext, RunEnd, StoreError};

/// Expires abandoned runs every maintenance interval while this node leads.
pub(super) async fn run(state: Arc<NodeState>, phase: watch::Receiver<Phase>, leading: watch::Receiver<bool>) {
    let client = &state.client;
    leader::serve(&state, phase, leading, "expiring dead runs", |now| async move {
        expire_dead_runs(client, now).await.map(drop)
    })
    .await
}

/// Closes every abandoned run as `expired`, and moves its job on. Returns how many.
pub(crate) async fn expire_dead_runs(client: &Client, now: Millis) -> Result<usize, StoreError> {
    let store = client.store();
    let mut expired = 0;
    for run in store.run_expired(now).await? {
        let message = format!("node {} stopped heartbeating while the run was in flight", run.node_id);
        let ending = Ending::Failed { reason: Reason::Expired, message };
        // Its node died, not the job: it comes back at once, so no backoff applies.
        let next = queue::after_run(&ending, run.attempt, run.max_attempts, Backoff::NONE, now);
        let end = RunEnd {
            run_id: run.id,
            job_id: run.job_id,
            node_id: run.node_id.clone(),
            ending,
            logs: run.logs.clone(),
            progress: run.progress.clone(),
            checkpoint: None,
            calls: run.calls.clone(),
            finished_at: now,
        };
        if store.run_finish(&end, next).await? {
            expired += 1;
            tracing::warn!(job = %run.job_id, run = %run.id, node = %run.node_id, "expired a run of a silent node");
            let event = Event::Expired {
                job_id: run.job_id,
                run_id: run.id,
                node_id: run.node_id,
                retried: matches!(next, JobNext::Retry { .. }),
            };
            client.metrics().expired(&run.template);
            client.emit_tagged(event, Some(&run.template), None);
        }
    }
    Ok(expired)
}
