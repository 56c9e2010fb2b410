//! A running job's live reports, carried from its `RunFeed` to the event
//! stream and the store while it runs: log lines as events; progress stored
//! and announced at most once per `progress_interval` and checkpoints stored
//! at most once per `checkpoint_interval`, each coalesced to the latest. The
//! guest never waits on this, and when the run ends the reporter stops after
//! at most the one write in flight (the outcome carries the final progress
//! and checkpoint), so a flooding guest or a slow database cannot grow the
//! node's memory or delay the recording of the outcome.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::client::Client;
use crate::events::Event;
use crate::model::{JobId, Progress, RunId};
use crate::runtime::{GuestLimits, RunFeed, Throttle};

/// Where a run's reports go.
pub(crate) struct Reporter {
    pub(crate) client: Client,
    pub(crate) node_id: String,
    pub(crate) job_id: JobId,
    pub(crate) run_id: RunId,
    pub(crate) feed: Arc<RunFeed>,
    /// The job's template and queue, which live streams filter on.
    pub(crate) template: String,
    pub(crate) queue: String,
}

impl Reporter {
    /// Carries reports until `ended` fires (or its sender is dropped).
    pub(crate) async fn carry(self, limits: GuestLimits, mut ended: oneshot::Receiver<()>) {
        let mut progress: Throttle<Progress> = Throttle::new(limits.progress_interval);
        let mut checkpoint: Throttle<String> = Throttle::new(limits.checkpoint_interval);
        loop {
            let due = [progress.due_at(), checkpoint.due_at()].into_iter().flatten().min();
            tokio::select! {
                biased;
                _ = &mut ended => break,
                _ = self.feed.changed() => {}
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
            }
            let batch = self.feed.take();
            for line in batch.lines {
                self.emit(Event::Log { job_id: self.job_id, run_id: self.run_id, line });
            }
            if let Some(p) = batch.progress {
                progress.offer(p);
            }
            if let Some(c) = batch.checkpoint {
                checkpoint.offer(c);
            }
            let now = tokio::time::Instant::now();
            if let Some(p) = progress.take_due(now) {
                self.progress(p).await;
            }
            if let Some(c) = checkpoint.take_due(now) {
                self.checkpoint(&c).await;
            }
        }
        // The run is over: its outcome records the final progress and
        // checkpoint. Only the log lines still waiting are announced.
        for line in self.feed.take().lines {
            self.emit(Event::Log { job_id: self.job_id, run_id: self.run_id, line });
        }
    }

    async fn progress(&self, p: Progress) {
        if let Err(e) = self.client.store().run_progress(self.run_id, &p).await {
            tracing::warn!(error = %e, "could not save progress");
        }
        self.emit(Event::Progress { job_id: self.job_id, run_id: self.run_id, percent: p.percent, message: p.message });
    }

    fn emit(&self, event: Event) {
        self.client.emit_tagged(event, Some(&self.template), Some(&self.queue));
    }

    async fn checkpoint(&self, state: &str) {
        if let Err(e) = self.client.store().run_checkpoint(self.run_id, &self.node_id, state).await {
            tracing::warn!(error = %e, "could not save a checkpoint; it is kept with the run's outcome");
        }
    }
}
