//! The cancel watch: every cancel poll, while runs are in flight, asks the
//! database which of this node's jobs another process asked to cancel, and
//! interrupts their runs (cancels made in this process, or pushed as
//! notices, arrive at once without it).

use std::sync::Arc;

use tokio::sync::watch;

use super::{NodeState, Phase, next_pass};

/// Watches for cancels until the node halts.
pub(super) async fn run(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>) {
    while next_pass(&mut phase, state.config.cancel_poll, Phase::Halted).await {
        if state.runs.total() == 0 {
            continue;
        }
        match state.client.store().job_cancel_requested(&state.id).await {
            Ok(ids) => {
                for id in ids {
                    state.runs.cancel(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking for cancels failed"),
        }
    }
}
