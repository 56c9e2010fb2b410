//! The claim loop, one per queue: claims as many due jobs as the queue has
//! free slots and starts their runs; then waits for a wake-up (an enqueue in
//! this process, a notice from the database), a freed slot when the queue is
//! full or its limits held jobs back (a run that ends frees room under a
//! global limit), the time its rate window lets the next start through, or
//! the poll interval. A paused or limited queue never makes it claim in a
//! tight loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{NodeState, Phase, runs};
use crate::store::Held;

/// How long a full queue waits at most, after a slot frees, for more slots
/// to free before claiming again.
const CLAIM_COOLDOWN: Duration = Duration::from_millis(2);

/// The share of a full queue's slots worth a claim at once: a queue of 2,000
/// slots waits for 250 to free (or [`CLAIM_COOLDOWN`]), a queue of 8 or fewer
/// claims as soon as one frees, so short runs at low concurrency do not sit
/// idle waiting for a batch that cannot come.
const CLAIM_BATCH_SHARE: u32 = 8;

/// Claims and starts the jobs of `queue`, at most `limit` in flight, until the node drains.
pub(super) async fn run(state: Arc<NodeState>, queue: String, limit: u32, mut phase: watch::Receiver<Phase>) {
    let client = state.client.clone();
    let mut failures = 0u32;
    loop {
        // Register for wake-ups before looking, so none is missed in between.
        let woken = state.wake.notified();
        let freed = state.runs.freed();
        tokio::pin!(woken, freed);
        woken.as_mut().enable();
        freed.as_mut().enable();
        if *phase.borrow() != Phase::Running {
            return;
        }
        let free = limit.saturating_sub(state.runs.busy(&queue));
        let mut full_batch = false;
        let mut held = None;
        if free > 0 {
            let now = client.clock().now();
            let started = std::time::Instant::now();
            match client.store().job_claim(&state.id, &queue, free, now, now + state.config.run_ttl).await {
                Ok(claim) => {
                    tracing::debug!(claimed = claim.jobs.len(), free, ?claim.held, took_us = started.elapsed().as_micros() as u64, "claimed");
                    failures = 0;
                    client.metrics().claimed(claim.jobs.len());
                    full_batch = claim.jobs.len() as u32 == free;
                    held = claim.held;
                    for c in claim.jobs {
                        runs::spawn(&state, c);
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, queue = %queue, "claiming failed; retrying");
                }
            }
        }
        if full_batch {
            continue;
        }
        let mut pause = if failures > 0 {
            (state.config.poll_interval * failures.min(20)).min(Duration::from_secs(5))
        } else {
            state.config.poll_interval
        };
        if let Some(Held::Limited { until: Some(until) }) = held {
            pause = pause.min(until.duration_since(client.clock().now()));
        }
        // A limit that held jobs back frees room when a run ends; the runs
        // of this node are the ones it hears of.
        let limited = matches!(held, Some(Held::Limited { .. }));
        tokio::select! {
            _ = &mut woken => {}
            _ = &mut freed, if free == 0 || limited => {
                // Let the runs finishing together free their slots, so the
                // next claim takes a batch instead of one job per statement.
                let batch = (limit / CLAIM_BATCH_SHARE).max(1);
                let until = tokio::time::Instant::now() + CLAIM_COOLDOWN;
                loop {
                    let more = state.runs.freed();
                    tokio::pin!(more);
                    more.as_mut().enable();
                    if limit.saturating_sub(state.runs.busy(&queue)) >= batch
                        || tokio::time::timeout_at(until, more).await.is_err()
                    {
                        break;
                    }
                }
            }
            _ = tokio::time::sleep(pause) => {}
            Ok(()) = phase.changed() => {}
        }
    }
}
