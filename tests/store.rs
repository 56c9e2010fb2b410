//! The store contract: one suite over `dyn Store`, each check a named test
//! on each backend (`store::sqlite::claim_orders_by_priority`,
//! `store::postgres::claim_orders_by_priority`), each on a fresh database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use elihu::grants::{AllowedHost, Grants, HeaderGrant};
use elihu::model::{Call, Digest, Ending, JobId, Millis, Progress, Reason, RunId, RunResult, TemplateLimits};
use elihu::store::{
    CancelOutcome, Claimed, Inserted, JobFilter, JobNext, JobState, KeyCheck, NewJob, NodeInfo, RunEnd, RunFilter, RunStatus,
    Store, StoreError, StoredSchedule, TemplateDefaults, TemplateSettings,
};
use serde_json::json;

use crate::support::node::{Backend, TestDb};

pub(crate) const T0: Millis = Millis(1_800_000_000_000);

/// `ms` milliseconds after T0.
pub(crate) fn at(ms: u64) -> Millis {
    T0 + Duration::from_millis(ms)
}

contract!(
    claim_orders_by_priority,
    a_job_is_claimed_by_id_whatever_its_time,
    a_unique_key_holds_while_its_job_is_queued_or_running,
    a_batch_keeps_its_order_and_answers_keys_already_held,
    fencing_rejects_a_stale_node,
    a_shutdown_refunds_the_attempt_and_a_retry_keeps_the_checkpoint,
    cancel_removes_a_waiting_job_and_flags_a_running_one,
    runs_expire_when_their_node_stops_renewing_its_lease,
    finished_runs_are_pruned_by_age,
    the_leader_lease_is_exclusive_until_it_expires,
    a_template_update_leaves_claimed_runs_on_their_digest,
    a_template_with_jobs_is_deleted_only_with_force,
    a_job_whose_template_was_deleted_is_dropped_at_claim,
    a_firing_is_enqueued_once_whoever_fires_it,
    a_job_past_its_discard_time_is_not_claimed,
    a_paused_schedule_withdraws_its_job_and_does_not_fire,
    stats_count_runs_and_jobs_per_template,
    grants_and_limits_are_stored_with_the_template_and_claimed_with_its_jobs,
    a_runs_calls_are_recorded_and_counted_in_stats,
    secrets_are_stored_sealed_and_listed_without_values,
);

pub(crate) async fn with_template(store: &Arc<dyn Store>, name: &str) -> Digest {
    let bytes = format!("component {name}").into_bytes();
    let digest = Digest::of(&bytes);
    store.component_put(&digest, &bytes, T0).await.unwrap();
    store.template_put(name, &digest, &json!({"type": "object"}), &TemplateDefaults::default(), &Default::default(), T0).await.unwrap();
    digest
}

pub(crate) fn node(id: &str, heartbeat_at: Millis) -> NodeInfo {
    NodeInfo { id: id.into(), hostname: "h".into(), pid: 1, queues: "default=1".into(), started_at: T0, heartbeat_at }
}

pub(crate) fn job(template: &str, priority: i32, run_at: Millis) -> NewJob {
    NewJob {
        template: template.into(),
        context: "{}".into(),
        queue: "default".into(),
        priority,
        run_at,
        max_attempts: 3,
        timeout_ms: 1000,
        memory_bytes: 64 << 20,
        unique_key: None,
        discard_after: None,
        allowed_hosts: None,
        traceparent: None,
    }
}

pub(crate) fn keyed(template: &str, key: &str) -> NewJob {
    NewJob { unique_key: Some(key.into()), ..job(template, 0, T0) }
}

pub(crate) async fn insert(store: &Arc<dyn Store>, jobs: &[NewJob]) -> Vec<JobId> {
    store.job_insert(jobs, T0).await.unwrap().into_iter().map(Inserted::id).collect()
}

pub(crate) async fn claim(store: &Arc<dyn Store>, node: &str, limit: u32, now: Millis) -> Vec<Claimed> {
    store.job_claim(node, "default", limit, now, now + Duration::from_secs(1)).await.unwrap().jobs
}

pub(crate) fn ids(claimed: &[Claimed]) -> Vec<JobId> {
    claimed.iter().map(|c| c.job.id).collect()
}

pub(crate) fn end(run_id: RunId, job_id: JobId, node: &str, reason: Option<Reason>) -> RunEnd {
    RunEnd {
        run_id,
        job_id,
        node_id: node.into(),
        ending: match reason {
            None => Ending::Succeeded { output: "{\"ok\":true}".into() },
            Some(reason) => Ending::Failed { reason, message: format!("because {reason}") },
        },
        logs: vec![],
        progress: Some(Progress { percent: 100, message: "done".into() }),
        checkpoint: None,
        calls: vec![],
        finished_at: at(50),
    }
}

/// Records the success of each claimed run on its node.
pub(crate) async fn succeed(store: &Arc<dyn Store>, claimed: &[Claimed]) {
    for c in claimed {
        let node = c.job.node_id.clone().unwrap();
        assert!(store.run_finish(&end(c.run_id, c.job.id, &node, None), JobNext::Delete).await.unwrap(), "{c:?}");
    }
}

async fn claim_orders_by_priority(store: &Arc<dyn Store>) {
    with_template(store, "order").await;
    let ids_ = insert(store, &[job("order", 5, T0), job("order", 1, at(10)), job("order", 1, T0), job("order", 1, T0), job("order", 0, at(99_999))]).await;
    let first = claim(store, "n1", 2, at(100)).await;
    assert_eq!(ids(&first), [ids_[2], ids_[3]], "priority, then run-at, then id");
    assert!(first.iter().all(|c| c.job.attempt == 1 && c.job.state == JobState::Running && c.job.current_run == Some(c.run_id)));
    let rest = claim(store, "n2", 10, at(100)).await;
    assert_eq!(ids(&rest), [ids_[1], ids_[0]], "the future job stays");
    assert!(store.job_claim("n2", "other-queue", 10, at(100_000), T0).await.unwrap().jobs.is_empty());
    succeed(store, &[first, rest].concat()).await;
    let last = claim(store, "n1", 10, at(100_000)).await;
    assert_eq!(ids(&last), [ids_[4]]);
    succeed(store, &last).await;
    assert!(store.job_list(&JobFilter::default()).await.unwrap().is_empty());
}

async fn a_job_is_claimed_by_id_whatever_its_time(store: &Arc<dyn Store>) {
    with_template(store, "byid").await;
    let later = insert(store, &[job("byid", 0, at(3_600_000))]).await[0];
    let c = store.job_claim_id("n1", later, T0, at(1000)).await.unwrap().expect("claimed ahead of its run-at");
    assert_eq!((c.job.id, c.job.attempt, c.job.node_id.as_deref()), (later, 1, Some("n1")));
    assert!(store.job_claim_id("n2", later, T0, at(1000)).await.unwrap().is_none(), "not twice");
    succeed(store, &[c]).await;
}

async fn a_unique_key_holds_while_its_job_is_queued_or_running(store: &Arc<dyn Store>) {
    with_template(store, "uniq").await;
    let first = store.job_insert(&[keyed("uniq", "k")], T0).await.unwrap()[0];
    let Inserted::New(id) = first else { panic!("{first:?}") };
    assert_eq!(store.job_insert(&[keyed("uniq", "k")], T0).await.unwrap()[0], Inserted::Existing(id));
    let c = claim(store, "n1", 1, T0).await;
    assert_eq!(store.job_insert(&[keyed("uniq", "k")], T0).await.unwrap()[0], Inserted::Existing(id), "still running");
    succeed(store, &c).await;
    assert!(matches!(store.job_insert(&[keyed("uniq", "k")], T0).await.unwrap()[0], Inserted::New(n) if n != id), "free once done");
}

async fn a_batch_keeps_its_order_and_answers_keys_already_held(store: &Arc<dyn Store>) {
    with_template(store, "uniq").await;
    let held = insert(store, &[keyed("uniq", "held")]).await[0];
    let batch = [job("uniq", 0, T0), keyed("uniq", "fresh"), job("uniq", 0, T0), keyed("uniq", "held"), job("uniq", 0, T0), job("uniq", 0, T0)];
    let inserted = store.job_insert(&batch, T0).await.unwrap();
    assert_eq!(inserted[3], Inserted::Existing(held));
    let new: Vec<JobId> = inserted.iter().filter(|i| matches!(i, Inserted::New(_))).map(|i| i.id()).collect();
    assert!(new.len() == 5 && new.windows(2).all(|w| w[0] < w[1]) && new[0] > held, "{inserted:?}");
    let claimed = claim(store, "n1", 10, T0).await;
    assert_eq!(ids(&claimed), [&[held][..], &new].concat(), "claimed in batch order");
    succeed(store, &claimed).await;
}

async fn fencing_rejects_a_stale_node(store: &Arc<dyn Store>) {
    with_template(store, "fence").await;
    let id = insert(store, &[job("fence", 0, T0)]).await[0];
    let first = claim(store, "old", 1, T0).await.remove(0);
    // The old node goes silent; its run is expired and the job claimed again.
    let expired = store.run_expired(at(2000)).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [first.run_id]);
    assert!(store.run_finish(&end(first.run_id, id, "old", Some(Reason::Expired)), JobNext::Retry { at: T0, refund: false }).await.unwrap());
    let second = store.job_claim("new", "default", 1, at(2000), at(60_000)).await.unwrap().jobs.remove(0);
    assert_eq!(second.job.attempt, 2);
    // The old node wakes up and tries to record success for its attempt: refused.
    assert!(!store.run_finish(&end(first.run_id, id, "old", None), JobNext::Delete).await.unwrap());
    assert!(!store.run_finish(&end(second.run_id, id, "old", None), JobNext::Delete).await.unwrap());
    assert!(!store.run_checkpoint(second.run_id, "old", "stale").await.unwrap());
    let job = store.job_get(id).await.unwrap().expect("the job is untouched");
    assert_eq!((job.state, job.current_run, job.checkpoint), (JobState::Running, Some(second.run_id), None));
    let old_run = store.run_get(first.run_id).await.unwrap().unwrap();
    assert_eq!((old_run.result, old_run.reason), (Some(RunResult::Failed), Some(Reason::Expired)));
    assert!(store.run_finish(&end(second.run_id, id, "new", None), JobNext::Delete).await.unwrap());
    assert!(store.job_get(id).await.unwrap().is_none());
}

async fn a_shutdown_refunds_the_attempt_and_a_retry_keeps_the_checkpoint(store: &Arc<dyn Store>) {
    with_template(store, "retry").await;
    let id = insert(store, &[job("retry", 0, T0)]).await[0];
    let c = claim(store, "n1", 1, T0).await.remove(0);
    assert!(store.run_checkpoint(c.run_id, "n1", "{\"done\":1}").await.unwrap());
    store.run_progress(c.run_id, &Progress { percent: 40, message: "going".into() }).await.unwrap();
    let running = store.run_get(c.run_id).await.unwrap().unwrap();
    assert_eq!((running.status, running.progress), (RunStatus::Running, Some(Progress { percent: 40, message: "going".into() })));
    let shutdown = end(c.run_id, id, "n1", Some(Reason::Shutdown));
    assert!(store.run_finish(&shutdown, JobNext::Retry { at: at(5), refund: true }).await.unwrap());
    let job = store.job_get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt, job.run_at), (JobState::Available, 0, at(5)), "a shutdown refunds the attempt");
    assert_eq!(job.checkpoint.as_deref(), Some("{\"done\":1}"));
    assert!(claim(store, "n1", 1, T0).await.is_empty(), "not before its run-at");
    let c = claim(store, "n1", 1, at(5)).await.remove(0);
    assert_eq!((c.job.attempt, c.job.checkpoint.as_deref()), (1, Some("{\"done\":1}")));
    assert!(store.run_finish(&end(c.run_id, id, "n1", Some(Reason::Error)), JobNext::Retry { at: T0, refund: false }).await.unwrap());
    assert_eq!(store.job_get(id).await.unwrap().unwrap().attempt, 1);
    let c = claim(store, "n1", 1, T0).await.remove(0);
    store.run_finish(&end(c.run_id, id, "n1", Some(Reason::Error)), JobNext::Delete).await.unwrap();
    let runs = store.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.attempt, r.reason, r.progress.as_ref().map(|p| p.percent))).collect::<Vec<_>>(), [
        (2, Some(Reason::Error), Some(100)),
        (1, Some(Reason::Error), Some(100)),
        (1, Some(Reason::Shutdown), Some(100))
    ]);
}

async fn cancel_removes_a_waiting_job_and_flags_a_running_one(store: &Arc<dyn Store>) {
    with_template(store, "cancel").await;
    let ids_ = insert(store, &[job("cancel", 0, T0), job("cancel", 1, T0)]).await;
    let c = claim(store, "n1", 1, T0).await.remove(0);
    assert_eq!(c.job.id, ids_[0]);
    assert_eq!(store.job_cancel(ids_[1]).await.unwrap(), CancelOutcome::Removed);
    assert_eq!(store.job_cancel(ids_[0]).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(store.job_cancel_requested("n1").await.unwrap(), [ids_[0]]);
    assert!(store.job_cancel_requested("n2").await.unwrap().is_empty());
    assert_eq!(store.job_cancel(JobId(i64::MAX)).await.unwrap(), CancelOutcome::NotFound);
    store.run_finish(&end(c.run_id, ids_[0], "n1", Some(Reason::Cancelled)), JobNext::Delete).await.unwrap();
    assert_eq!(store.run_get(c.run_id).await.unwrap().unwrap().result, Some(RunResult::Cancelled));
    assert_eq!(store.job_cancel(ids_[0]).await.unwrap(), CancelOutcome::NotFound);
}

async fn runs_expire_when_their_node_stops_renewing_its_lease(store: &Arc<dyn Store>) {
    with_template(store, "beat").await;
    insert(store, &[job("beat", 0, T0), job("beat", 0, T0)]).await;
    let a = claim(store, "alive", 1, T0).await.remove(0);
    let d = claim(store, "dead", 1, T0).await.remove(0);
    store.node_heartbeat(&node("alive", at(900)), at(5000)).await.unwrap();
    let expired = store.run_expired(at(2000)).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [d.run_id], "only the silent node's run");
    let later = store.run_expired(at(5001)).await.unwrap();
    assert_eq!(later.iter().map(|r| r.id).collect::<Vec<_>>(), [a.run_id, d.run_id], "the live node's lease ran out too");
    store.node_heartbeat(&node("alive", at(5000)), at(9000)).await.unwrap();
    let renewed = store.run_expired(at(5001)).await.unwrap();
    assert_eq!(renewed.iter().map(|r| r.id).collect::<Vec<_>>(), [d.run_id], "a heartbeat renews the lease of every run of the node");
    assert_eq!(store.node_list().await.unwrap().iter().map(|n| n.heartbeat_at).collect::<Vec<_>>(), [at(5000)]);
    store.node_remove("alive").await.unwrap();
    assert!(store.node_list().await.unwrap().is_empty());
    assert_eq!(store.run_expired(at(2000)).await.unwrap().len(), 2, "a removed node's runs have no lease");
    succeed(store, &[a, d]).await;
}

async fn finished_runs_are_pruned_by_age(store: &Arc<dyn Store>) {
    with_template(store, "prune").await;
    insert(store, &[job("prune", 0, T0), job("prune", 0, T0)]).await;
    let mut claimed = claim(store, "n1", 2, T0).await;
    let running = claimed.pop().unwrap();
    succeed(store, &claimed).await;
    assert_eq!(store.run_prune(T0).await.unwrap(), 0, "no run ended before T0");
    assert_eq!(store.run_prune(at(100_001)).await.unwrap(), 1, "the finished run, not the running one");
    let left = store.run_list(&RunFilter::default()).await.unwrap();
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), [running.run_id]);
}

async fn the_leader_lease_is_exclusive_until_it_expires(store: &Arc<dyn Store>) {
    assert!(store.leader_acquire("a", T0, at(1000)).await.unwrap());
    assert!(!store.leader_acquire("b", at(10), at(1010)).await.unwrap());
    assert!(store.leader_acquire("a", at(500), at(1500)).await.unwrap(), "renewal");
    assert!(!store.leader_acquire("b", at(1400), at(2400)).await.unwrap());
    assert!(store.leader_acquire("b", at(1501), at(2501)).await.unwrap(), "takeover after expiry");
    assert!(!store.leader_acquire("a", at(1600), at(2600)).await.unwrap());
    store.node_remove("b").await.unwrap();
    assert!(store.leader_acquire("a", at(1700), at(2700)).await.unwrap(), "a node that stops hands the lease back");
}

async fn a_template_update_leaves_claimed_runs_on_their_digest(store: &Arc<dyn Store>) {
    let v1 = with_template(store, "tmpl").await;
    insert(store, &[job("tmpl", 0, T0), job("tmpl", 0, T0)]).await;
    let first = claim(store, "n1", 1, T0).await.remove(0);
    assert_eq!(first.digest, v1);
    let bytes = b"component v2".to_vec();
    let v2 = Digest::of(&bytes);
    store.component_put(&v2, &bytes, T0).await.unwrap();
    let config = BTreeMap::from([("mode".to_string(), "fast".to_string())]);
    let defaults = TemplateDefaults { backoff_base_ms: 7, backoff_max_ms: 70, ..TemplateDefaults::default() };
    let t = store.template_put("tmpl", &v2, &json!({}), &defaults, &config.clone().into(), at(1)).await.unwrap();
    assert_eq!((t.version, &t.digest, &t.config, t.created_at, t.updated_at), (2, &v2, &config, T0, at(1)));
    assert_eq!(store.component_get(&v1).await.unwrap().unwrap(), b"component tmpl");
    let second = claim(store, "n1", 1, T0).await.remove(0);
    assert_eq!((&second.digest, &second.config), (&v2, &config), "a new claim takes the template as it is now");
    assert_eq!((second.backoff.base, second.backoff.max), (Duration::from_millis(7), Duration::from_millis(70)));
    succeed(store, &[first.clone(), second]).await;
    assert_eq!(store.run_get(first.run_id).await.unwrap().unwrap().digest, v1, "the run records the digest it was claimed with");
}

async fn a_template_with_jobs_is_deleted_only_with_force(store: &Arc<dyn Store>) {
    with_template(store, "tmpl").await;
    insert(store, &[job("tmpl", 0, T0), job("tmpl", 0, T0)]).await;
    let c = claim(store, "n1", 1, T0).await.remove(0);
    let err = store.template_delete("tmpl", false).await.unwrap_err();
    assert!(matches!(err, StoreError::TemplateInUse { jobs: 2, .. }), "{err}");
    assert!(store.template_get("tmpl").await.unwrap().is_some(), "a refused delete changes nothing");
    assert_eq!(store.job_list(&JobFilter::default()).await.unwrap().len(), 2);
    assert!(store.template_delete("tmpl", true).await.unwrap());
    assert_eq!(store.job_cancel_requested("n1").await.unwrap(), [c.job.id], "force cancels running jobs");
    assert_eq!(ids(&claim(store, "n1", 10, T0).await), [], "and removes waiting ones");
    assert!(store.template_get("tmpl").await.unwrap().is_none());
    store.run_finish(&end(c.run_id, c.job.id, "n1", Some(Reason::Cancelled)), JobNext::Delete).await.unwrap();
    assert!(!store.template_delete("tmpl", false).await.unwrap(), "already gone");
}

/// A job whose template was force-deleted while it ran, and whose run then
/// failed with attempts left, is back in its queue with no template: it can
/// never run, so the next claim drops it (on every backend), and the jobs
/// behind it are claimed.
async fn a_job_whose_template_was_deleted_is_dropped_at_claim(store: &Arc<dyn Store>) {
    with_template(store, "gone").await;
    with_template(store, "kept").await;
    let orphan = insert(store, &[job("gone", 0, T0)]).await[0];
    let c = claim(store, "n1", 1, T0).await.remove(0);
    assert!(store.template_delete("gone", true).await.unwrap());
    assert!(store.run_finish(&end(c.run_id, orphan, "n1", Some(Reason::Error)), JobNext::Retry { at: T0, refund: false }).await.unwrap());
    assert_eq!(store.job_get(orphan).await.unwrap().map(|j| j.state), Some(JobState::Available), "queued again, templateless");
    let behind = insert(store, &[job("kept", 1, T0)]).await[0];
    let claimed = claim(store, "n2", 10, T0).await;
    assert_eq!(ids(&claimed), [behind], "the orphan is not claimed");
    assert!(store.job_get(orphan).await.unwrap().is_none(), "the orphan is dropped, not left queued for ever");
    assert_eq!(store.run_list(&RunFilter { job_id: Some(orphan), ..RunFilter::default() }).await.unwrap().len(), 1, "no run opened for it");
    succeed(store, &claimed).await;
}

fn every_second(name: &str, template: &str) -> StoredSchedule {
    StoredSchedule {
        name: name.into(),
        template: template.into(),
        context: "{}".into(),
        cron: None,
        interval_ms: Some(1000),
        timezone: None,
        catch_up: Default::default(),
        paused: false,
        last_firing: None,
        current_job: None,
        created_at: Millis(0),
        updated_at: Millis(0),
    }
}

fn firing(template: &str, at: Millis) -> NewJob {
    NewJob { unique_key: Some(format!("schedule:tick:{}", at.0)), ..job(template, 0, at) }
}

async fn a_firing_is_enqueued_once_whoever_fires_it(store: &Arc<dyn Store>) {
    with_template(store, "sched").await;
    store.schedule_put(&every_second("tick", "sched"), T0).await.unwrap();
    // Two leaders that both saw "never fired" race for the same firing: one wins.
    let first = firing("sched", at(1000));
    let (a, b) = tokio::join!(
        store.schedule_fire("tick", None, at(1000), &first, T0),
        store.schedule_fire("tick", None, at(1000), &first, T0)
    );
    let winners: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one firing: {winners:?}");
    let stored = store.schedule_get("tick").await.unwrap().unwrap();
    assert_eq!((stored.last_firing, stored.current_job), (Some(at(1000)), Some(winners[0].id())));
    // A stale view (expected None) cannot fire the next one either.
    assert!(store.schedule_fire("tick", None, at(2000), &firing("sched", at(2000)), T0).await.unwrap().is_none());
    assert_eq!(store.job_list(&JobFilter::default()).await.unwrap().len(), 1);
    assert_eq!(store.schedule_list().await.unwrap().len(), 1);
    assert!(store.schedule_delete("tick").await.unwrap());
    assert!(store.job_get(winners[0].id()).await.unwrap().is_none(), "deleting withdraws the queued job");
    assert!(!store.schedule_delete("tick").await.unwrap());
}

async fn a_job_past_its_discard_time_is_not_claimed(store: &Arc<dyn Store>) {
    with_template(store, "sched").await;
    let late = NewJob { discard_after: Some(at(10)), ..job("sched", 0, T0) };
    let id = insert(store, &[late]).await[0];
    assert!(claim(store, "n1", 10, at(11)).await.is_empty());
    assert_eq!(ids(&claim(store, "n1", 10, at(10)).await), [id], "claimed up to its discard time");
}

async fn a_paused_schedule_withdraws_its_job_and_does_not_fire(store: &Arc<dyn Store>) {
    with_template(store, "sched").await;
    store.schedule_put(&every_second("tick", "sched"), T0).await.unwrap();
    let job = store.schedule_fire("tick", None, at(1000), &firing("sched", at(1000)), T0).await.unwrap().unwrap().id();
    assert!(store.schedule_pause("tick", true, T0).await.unwrap());
    assert!(store.job_get(job).await.unwrap().is_none(), "pausing withdraws the queued job");
    assert!(store.schedule_fire("tick", Some(at(1000)), at(2000), &firing("sched", at(2000)), T0).await.unwrap().is_none());
    assert!(store.schedule_pause("tick", false, T0).await.unwrap());
    assert!(store.schedule_fire("tick", Some(at(1000)), at(2000), &firing("sched", at(2000)), T0).await.unwrap().is_some());
    assert!(!store.schedule_pause("nope", true, T0).await.unwrap());
}

async fn stats_count_runs_and_jobs_per_template(store: &Arc<dyn Store>) {
    with_template(store, "a").await;
    with_template(store, "b").await;
    insert(store, &[job("a", 0, T0), job("a", 0, T0), job("a", 0, T0), job("b", 0, at(60_000))]).await;
    let claimed = claim(store, "n1", 3, T0).await;
    let (done, running) = claimed.split_at(2);
    store.run_finish(&end(done[0].run_id, done[0].job.id, "n1", None), JobNext::Delete).await.unwrap();
    store.run_finish(&end(done[1].run_id, done[1].job.id, "n1", Some(Reason::Timeout)), JobNext::Delete).await.unwrap();
    let stats = store.stats().await.unwrap();
    let shape: Vec<_> = stats.iter().map(|s| (s.template.as_str(), s.succeeded, s.failed, s.cancelled, s.queued, s.running)).collect();
    assert_eq!(shape, [("a", 1, 1, 0, 0, 1), ("b", 0, 0, 0, 1, 0)]);
    assert_eq!((stats[0].duration_p50_ms, stats[0].duration_p95_ms), (Some(50), Some(50)), "finished at T0 + 50");
    assert_eq!(stats[1].duration_p50_ms, None);
    succeed(store, running).await;
}

async fn grants_and_limits_are_stored_with_the_template_and_claimed_with_its_jobs(store: &Arc<dyn Store>) {
    let digest = with_template(store, "hook").await;
    let api = AllowedHost::parse("https://api.example.com").unwrap();
    let grants = Grants {
        allowed_hosts: vec![api.clone(), AllowedHost::parse("tcp://127.0.0.1:2525").unwrap()],
        headers: vec![HeaderGrant::parse(api.clone(), "Authorization=Bearer {{secret:t}}").unwrap()],
        secrets: vec!["smtp".into()],
    };
    let limits = TemplateLimits { max_requests: Some(3), max_output_bytes: Some(100), ..TemplateLimits::default() };
    let settings = TemplateSettings { grants: grants.clone(), limits, ..TemplateSettings::default() };
    let t = store.template_put("hook", &digest, &json!({}), &TemplateDefaults::default(), &settings, at(1)).await.unwrap();
    assert_eq!((&t.grants, t.limits), (&grants, limits));
    assert_eq!(store.template_get("hook").await.unwrap().unwrap().grants, grants);
    let narrowed = NewJob { allowed_hosts: Some(vec![api.clone()]), ..job("hook", 0, T0) };
    let [plain, narrow] = insert(store, &[job("hook", 0, T0), narrowed.clone()]).await[..] else { panic!() };
    let keyed = NewJob { unique_key: Some("k".into()), ..narrowed };
    let keyed = insert(store, &[keyed]).await[0];
    assert_eq!(store.job_get(narrow).await.unwrap().unwrap().allowed_hosts, Some(vec![api.clone()]));
    assert_eq!(store.job_get(keyed).await.unwrap().unwrap().allowed_hosts, Some(vec![api.clone()]), "keyed insert too");
    let claimed = claim(store, "n1", 3, T0).await;
    assert_eq!(ids(&claimed), [plain, narrow, keyed]);
    for c in &claimed {
        assert_eq!((&c.grants, c.limits), (&grants, limits), "a claim carries the template's grants and limits");
    }
    assert_eq!(claimed[0].job.allowed_hosts, None);
    assert_eq!(claimed[1].job.allowed_hosts, Some(vec![api]));
    succeed(store, &claimed).await;
}

fn call(target: &str, status: Option<u16>, denied: Option<&str>) -> Call {
    Call {
        at_ms: 3,
        method: "POST".into(),
        target: target.into(),
        status,
        denied: denied.map(str::to_string),
        error: None,
        bytes_sent: denied.is_none().then_some(12),
        bytes_received: denied.is_none().then_some(2),
        duration_ms: 4,
    }
}

async fn a_runs_calls_are_recorded_and_counted_in_stats(store: &Arc<dyn Store>) {
    with_template(store, "hook").await;
    insert(store, &[job("hook", 0, T0), job("hook", 0, T0)]).await;
    let claimed = claim(store, "n1", 2, T0).await;
    let calls = vec![call("https://a.example.com:443/x", Some(200), None), call("http://10.0.0.1:80/y", None, Some("not granted"))];
    let first = RunEnd { calls: calls.clone(), ..end(claimed[0].run_id, claimed[0].job.id, "n1", None) };
    let second = RunEnd { calls: vec![calls[1].clone()], ..end(claimed[1].run_id, claimed[1].job.id, "n1", Some(Reason::Error)) };
    assert_eq!(store.run_finish_many(&[(first, JobNext::Delete), (second, JobNext::Delete)]).await.unwrap(), [true, true]);
    assert_eq!(store.run_get(claimed[0].run_id).await.unwrap().unwrap().calls, calls);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats[0].template.as_str(), stats[0].calls, stats[0].calls_denied), ("hook", 3, 2));
}

async fn secrets_are_stored_sealed_and_listed_without_values(store: &Arc<dyn Store>) {
    assert_eq!(store.secrets_key().await.unwrap(), None);
    let key = KeyCheck { key_id: "1a2b3c4d".into(), check_value: vec![1, 2, 3] };
    assert!(store.secret_put("stripe", b"sealed-1", &key, T0).await.unwrap());
    let other = KeyCheck { key_id: "ffffffff".into(), check_value: vec![9] };
    assert!(!store.secret_put("stripe", b"sealed-2", &other, at(5)).await.unwrap(), "replaced, not created");
    assert_eq!(store.secrets_key().await.unwrap(), Some(key), "the first key's check stays");
    assert!(store.secret_put("smtp", b"sealed-3", &other, at(6)).await.unwrap());
    let listed: Vec<_> = store.secret_list().await.unwrap().into_iter().map(|s| (s.name, s.created_at, s.updated_at)).collect();
    assert_eq!(listed, [("smtp".to_string(), at(6), at(6)), ("stripe".to_string(), T0, at(5))]);
    let names = ["stripe".to_string(), "missing".to_string()];
    assert_eq!(store.secret_sealed(&names).await.unwrap(), [("stripe".to_string(), b"sealed-2".to_vec())]);
    assert!(store.secret_delete("stripe").await.unwrap());
    assert!(!store.secret_delete("stripe").await.unwrap());
}

#[tokio::test]
async fn a_url_elihu_does_not_know_is_refused() {
    let err = elihu::store::connect("mysql://localhost/db").await.err().expect("refused");
    assert!(err.to_string().contains("is not a database URL elihu understands"), "{err}");
}

/// Closing a batch of runs locks their rows; a heartbeat that rewrote the
/// node's runs locked them too, in another order, and PostgreSQL broke the
/// resulting deadlocks after a one-second stall. A heartbeat writes only the
/// node's row: it must go through while another transaction holds a run.
#[tokio::test]
async fn a_heartbeat_waits_for_no_lock_on_the_runs_of_its_node() {
    use sqlx::Connection;
    let db = TestDb::on(Backend::Postgres).await;
    let store = db.store().await;
    with_template(&store, "beat").await;
    insert(&store, &[job("beat", 0, T0)]).await;
    let c = claim(&store, "n1", 1, T0).await.remove(0);
    let mut other = sqlx::PgConnection::connect(&db.url()).await.expect("a second connection");
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE").bind(c.run_id).fetch_one(&mut other).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), store.node_heartbeat(&node("n1", at(500)), at(5000)))
        .await
        .expect("the heartbeat waited for the lock on the node's run")
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert!(store.run_expired(at(2000)).await.unwrap().is_empty(), "the heartbeat renewed the run's lease");
}
