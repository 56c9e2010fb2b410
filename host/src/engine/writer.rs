//! The outcome writer: runs that end at about the same time have their
//! outcomes written in one transaction (`Store::run_finish_many`), and a write
//! the database refuses is retried until it is taken, so an outcome is never
//! dropped (the run's task waits for the answer).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::client::Client;
use crate::store::{JobNext, RunEnd};

/// The most outcomes written in one transaction.
const MAX_BATCH: usize = 512;

type Request = (RunEnd, JobNext, oneshot::Sender<bool>);

/// Where run tasks send their outcomes.
#[derive(Clone)]
pub(crate) struct OutcomeWriter {
    tx: mpsc::UnboundedSender<Request>,
}

impl OutcomeWriter {
    /// Starts the writer task for `client`'s store.
    pub(crate) fn start(client: Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(client, rx));
        OutcomeWriter { tx }
    }

    /// Records an outcome; false when the run was fenced off (expired by
    /// another node meanwhile), in which case nothing was written.
    pub(crate) async fn record(&self, end: RunEnd, next: JobNext) -> bool {
        let (answer, answered) = oneshot::channel();
        if self.tx.send((end, next, answer)).is_err() {
            return false;
        }
        answered.await.unwrap_or(false)
    }
}

async fn write_loop(client: Client, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let ends: Vec<(RunEnd, JobNext)> = batch.iter().map(|(end, next, _)| (end.clone(), *next)).collect();
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        let applied = loop {
            match client.store().run_finish_many(&ends).await {
                Ok(applied) => break applied,
                Err(e) => {
                    tracing::warn!(error = %e, runs = ends.len(), "could not record run outcomes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::debug!(runs = ends.len(), took_us = started.elapsed().as_micros() as u64, "recorded outcomes");
        for ((_, _, answer), applied) in batch.drain(..).zip(applied) {
            let _ = answer.send(applied);
        }
    }
}
