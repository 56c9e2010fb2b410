//! The store contract for flow control, each check a named test on each
//! backend: pause, global limits, partitions, the rate window, what the
//! settings hold back, snoozes; and claimers racing on a limited queue.

use std::sync::Arc;
use std::time::Duration;

use elihu::model::{Ending, JobId, Millis, Partition, Rate, RunResult};
use elihu::store::{Claim, Held, JobNext, JobState, NewJob, QueueChange, QueueSettings, RunEnd, RunFilter, Store};

use crate::store::{T0, at, claim, end, ids, insert, job, succeed, with_template};

contract!(
    a_paused_queue_is_claimed_by_nobody_until_resumed,
    a_global_limit_counts_the_running_jobs_of_every_node,
    a_partitioned_limit_holds_each_partition_apart,
    a_rate_limit_is_a_sliding_window_over_recorded_starts,
    a_partitioned_rate_counts_each_partition_apart,
    a_new_partition_keys_the_queued_jobs_and_later_ones,
    the_queue_list_shows_what_each_setting_holds_back,
    a_job_of_a_limited_queue_is_not_claimed_by_id,
    a_snooze_gives_the_attempt_back_and_counts_itself,
    racing_claims_never_pass_a_global_limit,
    a_claim_stamped_before_the_latest_start_does_not_pass_the_rate,
);

/// A job of `template` on `queue` with this context, due at T0.
fn on(queue: &str, template: &str, context: serde_json::Value) -> NewJob {
    NewJob { queue: queue.into(), context: context.to_string(), ..job(template, 0, T0) }
}

/// Customers' jobs: one per name, in this order.
fn customers(queue: &str, names: &[&str]) -> Vec<NewJob> {
    names.iter().map(|c| on(queue, "flow", serde_json::json!({"customer": c}))).collect()
}

async fn set(store: &Arc<dyn Store>, queue: &str, change: QueueChange) -> QueueSettings {
    store.queue_set(queue, &change, T0).await.unwrap()
}

fn limit(n: u32) -> QueueChange {
    QueueChange { global_limit: Some(Some(n)), ..QueueChange::default() }
}

fn by_customer(partition: &str) -> Option<Option<Partition>> {
    Some(Some(Partition::parse(partition).unwrap()))
}

async fn claim_on(store: &Arc<dyn Store>, queue: &str, node: &str, wanted: u32, now: Millis) -> Claim {
    store.job_claim(node, queue, wanted, now, now + Duration::from_secs(60)).await.unwrap()
}

/// The customer of each claimed job, in claim order.
fn customers_of(claim: &Claim) -> Vec<String> {
    claim.jobs.iter().map(|c| serde_json::from_str::<serde_json::Value>(&c.job.context).unwrap()["customer"].as_str().unwrap().to_string()).collect()
}

async fn a_paused_queue_is_claimed_by_nobody_until_resumed(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    insert(store, &[on("mail", "flow", serde_json::json!({})), on("mail", "flow", serde_json::json!({}))]).await;
    let paused = set(store, "mail", QueueChange { paused: Some(true), ..QueueChange::default() }).await;
    assert!(paused.paused);
    let held = claim_on(store, "mail", "n1", 10, T0).await;
    assert_eq!((held.jobs.len(), held.held), (0, Some(Held::Paused)));
    assert_eq!(store.queue_get("mail").await.unwrap(), paused, "the pause is stored");
    // Other queues go on.
    insert(store, &[job("flow", 0, T0)]).await;
    assert_eq!(claim(store, "n1", 10, T0).await.len(), 1);
    set(store, "mail", QueueChange { paused: Some(false), ..QueueChange::default() }).await;
    let resumed = claim_on(store, "mail", "n1", 10, T0).await;
    assert_eq!((resumed.jobs.len(), resumed.held), (2, None));
}

async fn a_global_limit_counts_the_running_jobs_of_every_node(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let all = insert(store, &(0..5).map(|_| on("export", "flow", serde_json::json!({}))).collect::<Vec<_>>()).await;
    set(store, "export", limit(2)).await;
    let first = claim_on(store, "export", "n1", 10, T0).await;
    assert_eq!(ids(&first.jobs), all[..2], "claim order, up to the limit");
    assert_eq!(first.held, Some(Held::Limited { until: None }));
    let second = claim_on(store, "export", "n2", 10, T0).await;
    assert!(second.jobs.is_empty(), "another node sees the two running: {:?}", ids(&second.jobs));
    let job = store.job_get(all[2]).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Available, 0), "held back, not an attempt");
    succeed(store, &first.jobs[..1]).await;
    let third = claim_on(store, "export", "n2", 10, T0).await;
    assert_eq!(ids(&third.jobs), [all[2]], "one ended, one more starts");
    // A full batch within the limit is not held.
    set(store, "export", limit(10)).await;
    let rest = claim_on(store, "export", "n1", 2, T0).await;
    assert_eq!((ids(&rest.jobs), rest.held), (all[3..].to_vec(), None));
    // Cleared, the queue is claimed as any other.
    set(store, "export", QueueChange { global_limit: Some(None), ..QueueChange::default() }).await;
    assert_eq!(store.queue_get("export").await.unwrap(), QueueSettings::none("export"));
}

async fn a_partitioned_limit_holds_each_partition_apart(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    set(store, "api", QueueChange { global_limit: Some(Some(2)), partition: by_customer("/customer"), ..QueueChange::default() }).await;
    // Customer a's backlog comes first in claim order: it must not keep b and c waiting.
    insert(store, &customers("api", &["a", "a", "a", "a", "b", "b", "b", "c"])).await;
    let first = claim_on(store, "api", "n1", 10, T0).await;
    assert_eq!(customers_of(&first), ["a", "a", "b", "b", "c"]);
    assert!(claim_on(store, "api", "n2", 10, T0).await.jobs.is_empty(), "a and b are at their limit, c has no more");
    succeed(store, &first.jobs[2..3]).await; // one of b's
    let next = claim_on(store, "api", "n2", 10, T0).await;
    assert_eq!(customers_of(&next), ["b"], "b has room again, a has not");
    // Missing values share one partition.
    insert(store, &[on("api", "flow", serde_json::json!({})), on("api", "flow", serde_json::json!({})), on("api", "flow", serde_json::json!({}))]).await;
    assert_eq!(claim_on(store, "api", "n1", 10, T0).await.jobs.len(), 2);
}

async fn a_rate_limit_is_a_sliding_window_over_recorded_starts(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let rate = Rate { limit: 2, period: Duration::from_secs(1) };
    set(store, "calls", QueueChange { rate: Some(Some(rate)), ..QueueChange::default() }).await;
    insert(store, &(0..6).map(|_| on("calls", "flow", serde_json::json!({}))).collect::<Vec<_>>()).await;
    let first = claim_on(store, "calls", "n1", 10, T0).await;
    assert_eq!(first.jobs.len(), 2);
    assert_eq!(first.held, Some(Held::Limited { until: Some(at(1000)) }), "the next start once T0 leaves the window");
    succeed(store, &first.jobs).await;
    // Ended or not, the starts count until they leave the window.
    assert!(claim_on(store, "calls", "n2", 10, at(999)).await.jobs.is_empty());
    let at_500 = claim_on(store, "calls", "n2", 10, at(500)).await;
    assert_eq!((at_500.jobs.len(), at_500.held), (0, Some(Held::Limited { until: Some(at(1000)) })));
    let second = claim_on(store, "calls", "n2", 1, at(1000)).await;
    assert_eq!(second.jobs.len(), 1, "the window (T0, T0+1s] holds none of T0's starts");
    let third = claim_on(store, "calls", "n1", 10, at(1500)).await;
    assert_eq!(third.jobs.len(), 1, "one start at T0+1s is in the window");
    assert_eq!(third.held, Some(Held::Limited { until: Some(at(2000)) }));
    assert_eq!(claim_on(store, "calls", "n1", 10, at(2000)).await.jobs.len(), 1, "T0+1.5s is still in it");
}

/// A claim whose `now` was taken before a later-stamped claim committed
/// (it waited for the lock meanwhile) still counts the starts that claim
/// forgot: it stamps its own starts no earlier than the latest one.
async fn a_claim_stamped_before_the_latest_start_does_not_pass_the_rate(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let rate = Rate { limit: 3, period: Duration::from_secs(1) };
    set(store, "calls", QueueChange { rate: Some(Some(rate)), ..QueueChange::default() }).await;
    insert(store, &(0..9).map(|_| on("calls", "flow", serde_json::json!({}))).collect::<Vec<_>>()).await;
    assert_eq!(claim_on(store, "calls", "n1", 3, at(1000)).await.jobs.len(), 3);
    // Stamped T0+2.5s: forgets the starts at T0+1s, takes one.
    assert_eq!(claim_on(store, "calls", "n1", 1, at(2500)).await.jobs.len(), 1);
    // Stamped T0+1.9s, committed after: T0+1s's three starts are gone, yet
    // three more starts in [T0+1s, T0+2s) would make six.
    let late = claim_on(store, "calls", "n2", 3, at(1900)).await;
    assert_eq!(late.jobs.len(), 2, "the window of the latest start has room for two");
    let runs = store.run_list(&RunFilter { limit: Some(100), ..RunFilter::default() }).await.unwrap();
    let mut starts: Vec<Millis> = runs.iter().map(|r| r.started_at).collect();
    starts.sort();
    assert_eq!(starts, [at(1000), at(1000), at(1000), at(2500), at(2500), at(2500)]);
}

async fn a_partitioned_rate_counts_each_partition_apart(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let rate = Rate { limit: 1, period: Duration::from_secs(60) };
    set(store, "calls", QueueChange { rate: Some(Some(rate)), partition: by_customer("/customer"), ..QueueChange::default() }).await;
    insert(store, &customers("calls", &["a", "a", "b", "b"])).await;
    assert_eq!(customers_of(&claim_on(store, "calls", "n1", 10, T0).await), ["a", "b"]);
    assert!(claim_on(store, "calls", "n1", 10, at(59_999)).await.jobs.is_empty());
    assert_eq!(customers_of(&claim_on(store, "calls", "n1", 10, at(60_000)).await), ["a", "b"]);
}

async fn a_new_partition_keys_the_queued_jobs_and_later_ones(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let before = insert(store, &[on("q", "flow", serde_json::json!({"c": {"id": 7}})), on("q", "flow", serde_json::json!({"c": {"id": "x"}}))]).await;
    assert_eq!(store.job_get(before[0]).await.unwrap().unwrap().partition_key, None, "no partition, no key");
    set(store, "q", QueueChange { partition: by_customer("/c/id"), ..QueueChange::default() }).await;
    let key = |id: JobId| async move { store.job_get(id).await.unwrap().unwrap().partition_key };
    assert_eq!(key(before[0]).await.as_deref(), Some("7"));
    assert_eq!(key(before[1]).await.as_deref(), Some("\"x\""));
    let after = insert(store, &[on("q", "flow", serde_json::json!({"c": {"id": 7}})), on("q", "flow", serde_json::json!({}))]).await;
    assert_eq!(key(after[0]).await.as_deref(), Some("7"));
    assert_eq!(key(after[1]).await.as_deref(), Some(""), "nothing found: the shared partition");
    set(store, "q", QueueChange { partition: Some(Some(Partition::Template)), ..QueueChange::default() }).await;
    assert_eq!(key(before[0]).await.as_deref(), Some("\"flow\""));
    set(store, "q", QueueChange { partition: Some(None), ..QueueChange::default() }).await;
    assert_eq!(key(after[0]).await, None);
    // Other queues' jobs are never keyed.
    let other = insert(store, &[job("flow", 0, T0)]).await[0];
    assert_eq!(key(other).await, None);
}

async fn the_queue_list_shows_what_each_setting_holds_back(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    set(store, "api", QueueChange { global_limit: Some(Some(1)), partition: by_customer("/customer"), ..QueueChange::default() }).await;
    insert(store, &customers("api", &["a", "a", "a", "b"])).await;
    insert(store, &[NewJob { run_at: at(60_000), ..on("api", "flow", serde_json::json!({"customer": "b"})) }]).await;
    let running = claim_on(store, "api", "n1", 10, T0).await;
    assert_eq!(customers_of(&running), ["a", "b"]);
    set(store, "calls", QueueChange { rate: Some(Some(Rate { limit: 1, period: Duration::from_secs(60) })), ..QueueChange::default() }).await;
    insert(store, &(0..3).map(|_| on("calls", "flow", serde_json::json!({}))).collect::<Vec<_>>()).await;
    claim_on(store, "calls", "n1", 10, T0).await;
    set(store, "paused", QueueChange { paused: Some(true), ..QueueChange::default() }).await;
    insert(store, &[on("paused", "flow", serde_json::json!({}))]).await;
    insert(store, &[job("flow", 0, T0)]).await;
    let list = store.queue_list(at(1)).await.unwrap();
    let shape: Vec<_> = list
        .iter()
        .map(|q| (q.settings.name.as_str(), q.queued, q.due, q.running, (q.held.paused, q.held.global_limit, q.held.rate)))
        .collect();
    assert_eq!(shape, [
        // a: one running at its limit, two held; b: one running, one not due yet.
        ("api", 3, 2, 2, (0, 2, 0)),
        ("calls", 2, 2, 1, (0, 0, 2)),
        ("default", 1, 1, 0, (0, 0, 0)),
        ("paused", 1, 1, 0, (1, 0, 0)),
    ]);
    assert_eq!(list[0].settings.partition, Some(Partition::Pointer("/customer".into())));
    assert_eq!(list[1].settings.rate.map(|r| r.to_string()).as_deref(), Some("1/1m"));
}

async fn a_job_of_a_limited_queue_is_not_claimed_by_id(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let id = insert(store, &[on("export", "flow", serde_json::json!({}))]).await[0];
    set(store, "export", limit(5)).await;
    assert!(store.job_claim_id("n1", id, T0, at(1000)).await.unwrap().is_none(), "it waits for the queue's claims");
    set(store, "export", QueueChange { global_limit: Some(None), ..QueueChange::default() }).await;
    assert!(store.job_claim_id("n1", id, T0, at(1000)).await.unwrap().is_some());
}

async fn a_snooze_gives_the_attempt_back_and_counts_itself(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let id = insert(store, &[job("flow", 0, T0)]).await[0];
    let c = claim(store, "n1", 1, T0).await.remove(0);
    let snoozed = RunEnd {
        ending: Ending::Snoozed { delay: Duration::from_millis(1500) },
        checkpoint: Some("1".into()),
        ..end(c.run_id, id, "n1", None)
    };
    assert!(store.run_finish(&snoozed, JobNext::Snooze { at: at(1550) }).await.unwrap());
    let job = store.job_get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt, job.snoozes, job.run_at, job.checkpoint.as_deref()), (JobState::Available, 0, 1, at(1550), Some("1")));
    let run = store.run_get(c.run_id).await.unwrap().unwrap();
    assert_eq!((run.result, run.reason, run.message.as_deref()), (Some(RunResult::Snoozed), None, Some("snoozed for 1.5s")));
    assert!(claim(store, "n1", 1, at(1549)).await.is_empty(), "not before its delay");
    let again = claim(store, "n1", 1, at(1550)).await.remove(0);
    assert_eq!((again.job.attempt, again.job.snoozes), (1, 1));
    succeed(store, &[again]).await;
    let stats = store.stats().await.unwrap();
    assert_eq!((stats[0].snoozed, stats[0].succeeded), (1, 1));
}

/// Claimers racing on one limited queue (on PostgreSQL each on a connection
/// of its own, in its own transaction) never pass its limit together. Each
/// claims at its own time, when a job of its own is the most urgent due job,
/// so the claimers do not all pick the same rows: without the claims taking
/// the queue in turn, each would count the same running jobs and take its
/// own.
async fn racing_claims_never_pass_a_global_limit(store: &Arc<dyn Store>) {
    with_template(store, "flow").await;
    let jobs: Vec<NewJob> = (0..16).map(|k| NewJob { queue: "export".into(), ..job("flow", -k, at(k as u64)) }).collect();
    insert(store, &jobs).await;
    set(store, "export", limit(5)).await;
    // Connections opened beforehand, so that the claims run side by side.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        warm.spawn(async move { store.queue_get("export").await.unwrap() });
    }
    warm.join_all().await;
    let mut claims = tokio::task::JoinSet::new();
    for n in 0..16u64 {
        let store = store.clone();
        claims.spawn(async move { claim_on(&store, "export", &format!("n{n}"), 1, at(n)).await.jobs.len() });
    }
    let taken: usize = claims.join_all().await.into_iter().sum();
    assert_eq!(taken, 5, "sixteen claimers took {taken} jobs under a limit of 5");
}
