//! The heartbeat loop: renews the node's lease every heartbeat interval,
//! which keeps every run it has in flight alive. It goes on while the node
//! drains, so runs finishing in the grace period do not expire.

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
    }
}
