//! The leader election loop: every maintenance interval the node tries to
//! take or renew the leader lease (the database grants it to one node) and
//! tells the leader-only services (`expiry`, `scheduler`, `pruner`) whether
//! it holds it; `serve` is the loop each of them runs on.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::{NodeState, Phase, next_pass};
use crate::events::WireEvent;
use crate::model::Millis;
use serde_json::json;
use crate::store::StoreError;

/// Tries for the lease every maintenance interval until the node drains,
/// publishing whether this node leads.
pub(super) async fn run(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>, leading: watch::Sender<bool>) {
    while *phase.borrow() == Phase::Running {
        let now = state.client.clock().now();
        let held = match state.client.store().leader_acquire(&state.id, now, now + state.config.leader_ttl).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "leader election failed");
                false
            }
        };
        if leading.send_replace(held) != held {
            tracing::info!(node = %state.id, leader = held, "leadership changed");
            state.client.metrics().leading(&state.id, held);
            if held {
                state.client.hub().offer(|| WireEvent::node("leader_changed", json!({ "node_id": state.id })));
            }
        }
        if !next_pass(&mut phase, state.config.maintenance_interval, Phase::Draining).await {
            break;
        }
    }
    if leading.send_replace(false) {
        state.client.metrics().leading(&state.id, false);
    }
}

/// Runs `pass` (named `what` in logs) every maintenance interval while this
/// node leads, until the node drains.
pub(super) async fn serve<F, Fut>(
    state: &NodeState,
    mut phase: watch::Receiver<Phase>,
    mut leading: watch::Receiver<bool>,
    what: &str,
    mut pass: F,
) where
    F: FnMut(Millis) -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    while next_pass(&mut phase, state.config.maintenance_interval, Phase::Draining).await {
        if !*leading.borrow_and_update() {
            continue;
        }
        if let Err(e) = pass(state.client.clock().now()).await {
            tracing::warn!(error = %e, "{what} failed");
        }
    }
}
