//! Schedule firing, leader only (River's periodic jobs): enqueues the next
//! job of every schedule whose previous job has ended (or that never fired),
//! with its run-at at the next firing. Runs never overlap: the next firing is
//! counted from the end of the previous job. A firing is enqueued at most
//! once, whichever node leads (compare-and-set on the schedule's last
//! firing, and the firing in the job's unique key).

use std::sync::Arc;

use tokio::sync::watch;

use super::{NodeState, Phase, leader};
use crate::client::{Client, Enqueue, stored_context, stored_rule};
use crate::events::Event;
use crate::model::{CatchUp, Millis};
use crate::schedule;
use crate::store::{Inserted, JobState, NewJob, RunFilter, StoreError, StoredSchedule};

/// Fires due schedules every maintenance interval while this node leads.
pub(super) async fn run(state: Arc<NodeState>, phase: watch::Receiver<Phase>, leading: watch::Receiver<bool>) {
    let client = &state.client;
    leader::serve(&state, phase, leading, "firing schedules", |now| async move {
        fire_schedules(client, now).await.map(drop)
    })
    .await
}

/// Fires every schedule that is due; returns how many fired.
pub(crate) async fn fire_schedules(client: &Client, now: Millis) -> Result<usize, StoreError> {
    let mut fired = 0;
    for stored in client.store().schedule_list().await? {
        if !stored.paused && fire(client, &stored, now).await? {
            fired += 1;
        }
    }
    Ok(fired)
}

/// Enqueues the next job of one schedule if it is due; true when it fired.
async fn fire(client: &Client, stored: &StoredSchedule, now: Millis) -> Result<bool, StoreError> {
    let store = client.store();
    let previous_end = match stored.current_job {
        Some(job) => match store.job_get(job).await? {
            // Queued for a firing missed long ago, and missed firings are
            // skipped: withdraw it and fire at the next instant instead.
            Some(pending)
                if stored.catch_up == CatchUp::Skip
                    && pending.state == JobState::Available
                    && pending.run_at < now - schedule::LATE_GRACE =>
            {
                if !store.schedule_skip(&stored.name, job).await? {
                    return Ok(false);
                }
                tracing::info!(schedule = %stored.name, job = %job, "skipped a missed firing");
                None
            }
            Some(_) => return Ok(false), // queued or still running
            None => {
                let last = store.run_list(&RunFilter { job_id: Some(job), limit: Some(1), ..RunFilter::default() }).await?;
                Some(last.first().and_then(|r| r.finished_at).unwrap_or(now))
            }
        },
        None => None,
    };
    let (rule, context) = match (stored_rule(stored), stored_context(stored)) {
        (Ok(rule), Ok(context)) => (rule, context),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(schedule = %stored.name, error = %e, "skipping a schedule that cannot be read; put it again to repair it");
            return Ok(false);
        }
    };
    let Some(firing) = schedule::next_firing(&rule, previous_end, stored.catch_up, now) else { return Ok(false) };
    let request = Enqueue {
        template: stored.template.clone(),
        context,
        run_at: Some(firing),
        unique_key: Some(schedule::firing_key(&stored.name, firing)),
        ..Enqueue::default()
    };
    let job = match client.prepare(&request, &mut Default::default()).await {
        // Under `skip`, a firing not started in time is not run late.
        Ok(job) if stored.catch_up == CatchUp::Skip => NewJob { discard_after: Some(firing + schedule::LATE_GRACE), ..job },
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(schedule = %stored.name, error = %e, "the schedule cannot enqueue its job");
            return Ok(false);
        }
    };
    let Some(Inserted::New(id)) = store.schedule_fire(&stored.name, stored.last_firing, firing, &job, now).await? else {
        return Ok(false);
    };
    tracing::info!(schedule = %stored.name, job = %id, firing = %firing, "schedule fired");
    client.metrics().enqueued(&job.template, &job.queue);
    client.emit(Event::Enqueued { job_id: id, template: job.template.clone(), queue: job.queue.clone() });
    if firing <= now {
        client.trigger();
    }
    Ok(true)
}
