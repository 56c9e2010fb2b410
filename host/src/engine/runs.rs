//! The runs in flight on this node: how many per queue, the cancel handle of
//! each, spawning a claimed job's run and freeing its slot when it ends
//! (even if its task panics), and waiting for them all to end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::NodeState;
use crate::clock::Wait;
use crate::model::JobId;
use crate::runtime::CancelHandle;
use crate::store::Claimed;

/// The runs in flight on this node.
pub(super) struct Runs {
    in_flight: HashMap<String, AtomicU32>,
    total: AtomicU32,
    /// Runs whose outcome this node recorded.
    finished: AtomicU64,
    /// Signalled whenever a run ends.
    freed: Notify,
    /// The cancel handle of each run, by job.
    cancels: Mutex<HashMap<JobId, CancelHandle>>,
    /// The node interrupted its runs to shut down.
    shutting_down: AtomicBool,
}

impl Runs {
    /// No runs yet, on `queues`.
    pub(super) fn new<'a>(queues: impl Iterator<Item = &'a String>) -> Self {
        Runs {
            in_flight: queues.map(|q| (q.clone(), AtomicU32::new(0))).collect(),
            total: AtomicU32::new(0),
            finished: AtomicU64::new(0),
            freed: Notify::new(),
            cancels: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Runs in flight of `queue`.
    pub(super) fn busy(&self, queue: &str) -> u32 {
        self.in_flight.get(queue).map_or(0, |n| n.load(Ordering::SeqCst))
    }

    /// Runs in flight in all.
    pub(super) fn total(&self) -> u32 {
        self.total.load(Ordering::SeqCst)
    }

    /// Runs whose outcome was recorded.
    pub(super) fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }

    /// Resolves when a run ends after this call (enable it before looking).
    pub(super) fn freed(&self) -> Notified<'_> {
        self.freed.notified()
    }

    /// Interrupts the run of `job_id` if it runs here.
    pub(super) fn cancel(&self, job_id: JobId) {
        if let Some(handle) = self.cancels.lock().unwrap().get(&job_id) {
            handle.cancel();
        }
    }

    /// Whether the node interrupted its runs to shut down.
    pub(super) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Interrupts every run to shut down.
    pub(super) fn interrupt_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let handles: Vec<CancelHandle> = self.cancels.lock().unwrap().values().cloned().collect();
        for handle in handles {
            handle.cancel();
        }
    }

    /// Waits until no run is in flight, or until `until` resolves.
    pub(super) async fn wait_idle(&self, until: Option<Wait<'_>>) {
        let mut until = until;
        loop {
            let freed = self.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.total() == 0 {
                return;
            }
            match until.as_mut() {
                Some(deadline) => tokio::select! {
                    _ = &mut freed => {}
                    _ = deadline => return,
                },
                None => freed.await,
            }
        }
    }
}

/// Keeps the in-flight counts right even if a run task panics.
struct Slot {
    state: Arc<NodeState>,
    queue: String,
    job_id: JobId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let runs = &self.state.runs;
        runs.cancels.lock().unwrap().remove(&self.job_id);
        if let Some(n) = runs.in_flight.get(&self.queue) {
            n.fetch_sub(1, Ordering::SeqCst);
        }
        runs.total.fetch_sub(1, Ordering::SeqCst);
        runs.freed.notify_waiters();
    }
}

/// Starts the run of a claimed job on its own task.
pub(super) fn spawn(state: &Arc<NodeState>, claimed: Claimed) {
    let runs = &state.runs;
    let queue = claimed.job.queue.clone();
    if let Some(n) = runs.in_flight.get(&queue) {
        n.fetch_add(1, Ordering::SeqCst);
    }
    runs.total.fetch_add(1, Ordering::SeqCst);
    let cancel = CancelHandle::new();
    runs.cancels.lock().unwrap().insert(claimed.job.id, cancel.clone());
    let slot = Slot { state: state.clone(), queue, job_id: claimed.job.id };
    // Boxed: the run's future is a few KiB, and tokio would copy it into
    // the task and again over it when the task completes.
    tokio::spawn(Box::pin(async move {
        let state = slot.state.clone();
        if super::executor::execute(&state, claimed, cancel).await {
            state.runs.finished.fetch_add(1, Ordering::Relaxed);
        }
        drop(slot);
    }));
}
