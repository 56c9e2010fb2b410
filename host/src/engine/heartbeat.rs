//! The heartbeat loop: renews the node's lease every heartbeat interval,
//! which keeps every run it has in flight alive. It goes on while the node
//! drains, so runs finishing in the grace period do not expire. Each beat
//! also reads whether any process watches live events (the publishing gate).

use std::sync::Arc;

use tokio::sync::watch;

use super::{NodeState, Phase, next_pass};
use crate::store::NodeInfo;

/// Heartbeats until the node halts.
pub(super) async fn run(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>) {
    while next_pass(&mut phase, state.config.heartbeat_interval, Phase::Halted).await {
        let now = state.client.clock().now();
        let info = NodeInfo { heartbeat_at: now, ..state.info.clone() };
        if let Err(e) = state.client.store().node_heartbeat(&info, now + state.config.run_ttl).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        refresh_watched(&state).await;
    }
}

/// Opens or closes the gate that publishes this process's events to other
/// processes: open while any process has a live stream.
pub(super) async fn refresh_watched(state: &NodeState) {
    match state.client.store().watchers_any(state.client.clock().now()).await {
        Ok(watched) => state.client.hub().set_cluster_watched(watched),
        Err(e) => tracing::warn!(error = %e, "could not read whether anyone watches live events"),
    }
}
