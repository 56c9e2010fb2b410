//! Pruning, leader only (River's cleaner): once a minute by the clock,
//! deletes finished runs older than the node's `prune_after`, and stored
//! live-event batches older than a minute and expired watchers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{NodeState, Phase, next_pass};
use crate::model::Millis;

/// How often the leader prunes.
const EVERY: Duration = Duration::from_secs(60);

/// Prunes old run history while this node leads, until the node drains.
pub(super) async fn run(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>, mut leading: watch::Receiver<bool>) {
    let keep = state.config.prune_after;
    let mut last: Option<Millis> = None;
    while next_pass(&mut phase, state.config.maintenance_interval, Phase::Draining).await {
        let now = state.client.clock().now();
        if !*leading.borrow_and_update() || last.is_some_and(|at| now < at + EVERY) {
            continue;
        }
        last = Some(now);
        if let Err(e) = state.client.store().event_prune(now - EVERY, now).await {
            tracing::warn!(error = %e, "pruning live events failed");
        }
        let Some(keep) = keep else { continue };
        match state.client.store().run_prune(now - keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned old runs"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}
