//! Leader-only maintenance: the node holding the leader lease expires the
//! runs of nodes that stopped heartbeating (Bildad's expire) and prunes old
//! run history. Every node tries for the lease; the database grants it to one.

use crate::client::{Client, Enqueue, stored_rule};
use crate::events::Event;
use crate::queue::{self, Backoff};
use crate::runtime::{Ending, Reason, RunResult};
use crate::schedule::{self, CatchUp};
use crate::store::{Inserted, JobNext, JobState, NewJob, Millis, RunEnd, RunFilter, StoreError, TemplateDefaults};

/// Closes every run whose expiry passed as `expired`, and makes its job
/// available again (or removes it at its last attempt). Returns how many.
pub(crate) async fn expire_dead_runs(client: &Client, now: Millis) -> Result<usize, StoreError> {
    let store = &client.shared.store;
    let mut expired = 0;
    for run in store.run_expired(now).await? {
        let message = format!("node {} stopped heartbeating while the run was in flight", run.node_id);
        let ending = Ending::Failed { reason: Reason::Expired, message: message.clone() };
        let defaults = store.template_get(&run.template).await?.map(|t| t.defaults).unwrap_or_else(TemplateDefaults::default);
        let next = queue::after_run(&ending, run.attempt, run.max_attempts, Backoff::of(&defaults), now);
        let end = RunEnd {
            run_id: run.id,
            job_id: run.job_id,
            node_id: run.node_id.clone(),
            result: RunResult::Failed,
            reason: Some(Reason::Expired),
            message: Some(message),
            output: None,
            logs: run.logs.clone(),
            progress: run.progress.clone(),
            checkpoint: None,
            finished_at: now,
        };
        if store.run_finish(&end, next).await? {
            expired += 1;
            tracing::warn!(job = run.job_id, run = run.id, node = %run.node_id, "expired a run of a silent node");
            client.emit(Event::Expired {
                job_id: run.job_id,
                run_id: run.id,
                node_id: run.node_id,
                retried: matches!(next, JobNext::Retry { .. }),
            });
        }
    }
    Ok(expired)
}

/// Enqueues the next job of every schedule whose previous job has ended (or
/// that never fired), with its run-at at the next firing. Runs never overlap:
/// the next firing is counted from the end of the previous job. A firing is
/// enqueued at most once, whichever node is leader (compare-and-set on the
/// schedule's last firing, and the firing in the job's unique key).
pub(crate) async fn fire_schedules(client: &Client, now: Millis) -> Result<usize, StoreError> {
    let store = client.store();
    let mut fired = 0;
    for stored in store.schedule_list().await? {
        if stored.paused {
            continue;
        }
        let catch_up = CatchUp::parse(&stored.catch_up).unwrap_or_default();
        let previous_end = match stored.current_job {
            Some(job) => match store.job_get(job).await? {
                // Queued for a firing missed long ago, and missed firings are
                // skipped: withdraw it and fire at the next instant instead.
                Some(pending)
                    if catch_up == CatchUp::Skip
                        && pending.state == JobState::Available
                        && pending.run_at < now - schedule::LATE_GRACE_MS =>
                {
                    if !store.schedule_skip(&stored.name, job).await? {
                        continue;
                    }
                    tracing::info!(schedule = %stored.name, job, "skipped a missed firing");
                    None
                }
                Some(_) => continue, // queued or still running
                None => {
                    let last = store.run_list(&RunFilter { job_id: Some(job), limit: Some(1), ..RunFilter::default() }).await?;
                    Some(last.first().and_then(|r| r.finished_at).unwrap_or(now))
                }
            },
            None => None,
        };
        let rule = match stored_rule(&stored) {
            Ok(rule) => rule,
            Err(e) => {
                tracing::warn!(schedule = %stored.name, error = %e, "skipping a schedule whose rule does not parse");
                continue;
            }
        };
        let Some(firing) = schedule::next_firing(&rule, previous_end, catch_up, now) else { continue };
        let request = Enqueue {
            template: stored.template.clone(),
            context: serde_json::from_str(&stored.context).unwrap_or_default(),
            run_at: Some(firing),
            unique_key: Some(schedule::firing_key(&stored.name, firing)),
            ..Enqueue::default()
        };
        let job = match client.prepare(&request, &mut Default::default()).await {
            // Under `skip`, a firing not started in time is not run late.
            Ok(job) if catch_up == CatchUp::Skip => NewJob { discard_after: Some(firing + schedule::LATE_GRACE_MS), ..job },
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(schedule = %stored.name, error = %e, "the schedule cannot enqueue its job");
                continue;
            }
        };
        if let Some(Inserted::New(id)) = store.schedule_fire(&stored.name, stored.last_firing, firing, &job, now).await? {
            fired += 1;
            tracing::info!(schedule = %stored.name, job = id, firing, "schedule fired");
            client.emit(Event::Enqueued { job_id: id, template: job.template.clone(), queue: job.queue.clone() });
            if firing <= now {
                client.trigger();
            }
        }
    }
    Ok(fired)
}
