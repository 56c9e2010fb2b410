//! The notice loop: reacts to what the database pushes (PostgreSQL's
//! LISTEN/NOTIFY). New jobs in a queue this node works wake its claim loops,
//! a cancel interrupts the run at once, and after a reconnect (notices may
//! have been missed) the claim loops look again. A new watcher of live events
//! opens the publishing gate at once.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use super::{NodeState, Phase};
use crate::store::Notice;

/// Handles notices until the node halts or the database stops sending.
pub(super) async fn run(state: Arc<NodeState>, mut notices: UnboundedReceiver<Notice>, mut phase: watch::Receiver<Phase>) {
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            Ok(()) = phase.changed() => {
                if *phase.borrow() == Phase::Halted {
                    return;
                }
                continue;
            }
        };
        match notice {
            Some(Notice::JobsAvailable { queue }) => {
                if state.config.queues.contains_key(&queue) {
                    state.wake.notify_waiters();
                }
            }
            Some(Notice::CancelRequested { job_id }) => state.runs.cancel(job_id),
            Some(Notice::Reconnected) => state.wake.notify_waiters(),
            // Opened before the next notice is handled, so a job enqueued
            // after a watcher registered is published from its start.
            Some(Notice::Watched) => state.client.hub().set_cluster_watched(true),
            None => return,
        }
    }
}
