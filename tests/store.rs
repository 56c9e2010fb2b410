//! The store contract: one suite over `dyn Store`, run here against SQLite
//! (every backend must pass it unchanged).

use std::collections::BTreeMap;
use std::sync::Arc;

use elihu::runtime::{Digest, Progress, Reason, RunResult};
use elihu::store::{
    CancelOutcome, Inserted, JobFilter, JobNext, JobState, NewJob, NodeInfo, RunEnd, RunFilter, RunStatus, Store,
    StoreError, StoredSchedule, TemplateDefaults,
};
use serde_json::json;

use crate::support::node::{Backend, TestDb};

const T0: i64 = 1_800_000_000_000;

async fn with_template(store: &Arc<dyn Store>, name: &str) -> Digest {
    let bytes = format!("component {name}").into_bytes();
    let digest = Digest::of(&bytes);
    store.component_put(&digest, &bytes, T0).await.unwrap();
    store.template_put(name, &digest, &json!({"type": "object"}), &TemplateDefaults::default(), &BTreeMap::new(), T0).await.unwrap();
    digest
}

fn node(id: &str, heartbeat_at: i64) -> NodeInfo {
    NodeInfo { id: id.into(), hostname: "h".into(), pid: 1, queues: "default=1".into(), started_at: T0, heartbeat_at }
}

fn job(template: &str, priority: i32, run_at: i64) -> NewJob {
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
    }
}

fn end(run_id: i64, job_id: i64, node: &str, result: RunResult, reason: Option<Reason>) -> RunEnd {
    RunEnd {
        run_id,
        job_id,
        node_id: node.into(),
        result,
        reason,
        message: reason.map(|r| format!("because {r}")),
        output: (result == RunResult::Succeeded).then(|| "{\"ok\":true}".into()),
        logs: vec![],
        progress: Some(Progress { percent: 100, message: "done".into() }),
        checkpoint: None,
        finished_at: T0 + 50,
    }
}

/// Every check of the contract, against one store.
pub async fn conformance(store: Arc<dyn Store>) {
    claims_follow_priority_then_run_at_then_id(&store).await;
    unique_keys_hold_while_queued_or_running(&store).await;
    fencing_rejects_a_stale_node(&store).await;
    retry_refund_and_checkpoints(&store).await;
    cancel_removes_or_flags(&store).await;
    expiry_and_heartbeats(&store).await;
    the_leader_lease_is_exclusive_until_it_expires(&store).await;
    templates_update_and_delete(&store).await;
    a_firing_is_enqueued_once_whoever_fires_it(&store).await;
}

async fn a_firing_is_enqueued_once_whoever_fires_it(store: &Arc<dyn Store>) {
    with_template(store, "sched").await;
    let schedule = StoredSchedule {
        name: "tick".into(),
        template: "sched".into(),
        context: "{}".into(),
        cron: None,
        interval_ms: Some(1000),
        timezone: None,
        catch_up: "one".into(),
        paused: false,
        last_firing: None,
        current_job: None,
        created_at: 0,
        updated_at: 0,
    };
    store.schedule_put(&schedule, T0).await.unwrap();
    let keyed = |at: i64| NewJob { unique_key: Some(format!("schedule:tick:{at}")), ..job("sched", 0, at) };
    // Two leaders that both saw "never fired" race for the same firing: one wins.
    let first = keyed(T0 + 1000);
    let (a, b) = tokio::join!(
        store.schedule_fire("tick", None, T0 + 1000, &first, T0),
        store.schedule_fire("tick", None, T0 + 1000, &first, T0)
    );
    let winners: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one firing: {winners:?}");
    let stored = store.schedule_get("tick").await.unwrap().unwrap();
    assert_eq!((stored.last_firing, stored.current_job), (Some(T0 + 1000), Some(winners[0].id())));
    // A job past its discard time is not claimed.
    let late = NewJob { discard_after: Some(T0 + 10), ..job("sched", 0, T0) };
    let late_id = store.job_insert(&[late], T0).await.unwrap()[0].id();
    assert!(store.job_claim("n1", "default", 10, T0 + 11, T0 + 1000).await.unwrap().is_empty());
    assert_eq!(store.job_cancel(late_id).await.unwrap(), CancelOutcome::Removed);
    // A stale view (expected None) cannot fire the next one either.
    assert!(store.schedule_fire("tick", None, T0 + 2000, &keyed(T0 + 2000), T0).await.unwrap().is_none());
    // Pausing withdraws the queued job; a paused schedule does not fire.
    assert!(store.schedule_pause("tick", true, T0).await.unwrap());
    assert!(store.job_get(winners[0].id()).await.unwrap().is_none());
    assert!(store.schedule_fire("tick", Some(T0 + 1000), T0 + 2000, &keyed(T0 + 2000), T0).await.unwrap().is_none());
    assert!(store.schedule_pause("tick", false, T0).await.unwrap());
    assert_eq!(store.schedule_list().await.unwrap().len(), 1);
    assert!(store.schedule_delete("tick").await.unwrap());
    assert!(!store.schedule_delete("tick").await.unwrap());
}

async fn claims_follow_priority_then_run_at_then_id(store: &Arc<dyn Store>) {
    with_template(store, "order").await;
    let ids: Vec<i64> = store
        .job_insert(&[job("order", 5, T0), job("order", 1, T0 + 10), job("order", 1, T0), job("order", 1, T0), job("order", 0, T0 + 99_999)], T0)
        .await
        .unwrap()
        .into_iter()
        .map(Inserted::id)
        .collect();
    let claimed = store.job_claim("n1", "default", 2, T0 + 100, T0 + 30_000).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(), [ids[2], ids[3]]);
    assert!(claimed.iter().all(|c| c.job.attempt == 1 && c.job.state == JobState::Running));
    let rest = store.job_claim("n2", "default", 10, T0 + 100, T0 + 30_000).await.unwrap();
    assert_eq!(rest.iter().map(|c| c.job.id).collect::<Vec<_>>(), [ids[1], ids[0]], "the future job stays");
    assert!(store.job_claim("n2", "other-queue", 10, T0 + 100_000, T0).await.unwrap().is_empty());
    for c in claimed.iter().chain(&rest) {
        assert!(store.run_finish(&end(c.run_id, c.job.id, &c.job.node_id.clone().unwrap(), RunResult::Succeeded, None), JobNext::Delete).await.unwrap());
    }
    let last = store.job_claim("n1", "default", 10, T0 + 100_000, T0).await.unwrap();
    assert_eq!(last.len(), 1);
    store.run_finish(&end(last[0].run_id, ids[4], "n1", RunResult::Succeeded, None), JobNext::Delete).await.unwrap();
    assert!(store.job_list(&JobFilter::default()).await.unwrap().is_empty());
}

async fn unique_keys_hold_while_queued_or_running(store: &Arc<dyn Store>) {
    with_template(store, "uniq").await;
    let keyed = NewJob { unique_key: Some("k".into()), ..job("uniq", 0, T0) };
    let first = store.job_insert(&[keyed.clone()], T0).await.unwrap()[0];
    let Inserted::New(id) = first else { panic!("{first:?}") };
    assert_eq!(store.job_insert(&[keyed.clone()], T0).await.unwrap()[0], Inserted::Existing(id));
    let c = store.job_claim("n1", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    assert_eq!(store.job_insert(&[keyed.clone()], T0).await.unwrap()[0], Inserted::Existing(id), "still running");
    store.run_finish(&end(c.run_id, id, "n1", RunResult::Succeeded, None), JobNext::Delete).await.unwrap();
    assert!(matches!(store.job_insert(&[keyed], T0).await.unwrap()[0], Inserted::New(n) if n != id));
    store.job_cancel(store.job_list(&JobFilter::default()).await.unwrap()[0].id).await.unwrap();
    // A batch mixing keyed and keyless jobs keeps its order: ids ascend as
    // given, a key already held answers with its holder.
    let held = store.job_insert(&[NewJob { unique_key: Some("held".into()), ..job("uniq", 0, T0) }], T0).await.unwrap()[0].id();
    let batch = [
        job("uniq", 0, T0),
        NewJob { unique_key: Some("fresh".into()), ..job("uniq", 0, T0) },
        job("uniq", 0, T0),
        NewJob { unique_key: Some("held".into()), ..job("uniq", 0, T0) },
        job("uniq", 0, T0),
        job("uniq", 0, T0),
    ];
    let inserted = store.job_insert(&batch, T0).await.unwrap();
    assert_eq!(inserted[3], Inserted::Existing(held));
    let new: Vec<i64> = inserted.iter().filter(|i| matches!(i, Inserted::New(_))).map(|i| i.id()).collect();
    assert!(new.len() == 5 && new.windows(2).all(|w| w[0] < w[1]) && new[0] > held, "{inserted:?}");
    let claimed = store.job_claim("n1", "default", 10, T0, T0 + 1000).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(), [&[held][..], &new].concat(), "claimed in batch order");
    for c in &claimed {
        assert!(store.run_finish(&end(c.run_id, c.job.id, "n1", RunResult::Succeeded, None), JobNext::Delete).await.unwrap());
    }
}

async fn fencing_rejects_a_stale_node(store: &Arc<dyn Store>) {
    with_template(store, "fence").await;
    let id = store.job_insert(&[job("fence", 0, T0)], T0).await.unwrap()[0].id();
    let first = store.job_claim("old", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    // The old node goes silent; its run is expired and the job claimed again.
    let expired = store.run_expired(T0 + 2000).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [first.run_id]);
    assert!(store.run_finish(&end(first.run_id, id, "old", RunResult::Failed, Some(Reason::Expired)), JobNext::Retry { at: T0, refund: false }).await.unwrap());
    let second = store.job_claim("new", "default", 1, T0 + 2000, T0 + 60_000).await.unwrap().remove(0);
    assert_eq!(second.job.attempt, 2);
    // The old node wakes up and tries to record success for its attempt: refused.
    assert!(!store.run_finish(&end(first.run_id, id, "old", RunResult::Succeeded, None), JobNext::Delete).await.unwrap());
    assert!(!store.run_finish(&end(second.run_id, id, "old", RunResult::Succeeded, None), JobNext::Delete).await.unwrap());
    assert!(!store.run_checkpoint(second.run_id, "old", "stale").await.unwrap());
    let job = store.job_get(id).await.unwrap().expect("the job is untouched");
    assert_eq!((job.state, job.current_run, job.checkpoint), (JobState::Running, Some(second.run_id), None));
    let old_run = store.run_get(first.run_id).await.unwrap().unwrap();
    assert_eq!((old_run.result, old_run.reason), (Some(RunResult::Failed), Some(Reason::Expired)));
    assert!(store.run_finish(&end(second.run_id, id, "new", RunResult::Succeeded, None), JobNext::Delete).await.unwrap());
    assert!(store.job_get(id).await.unwrap().is_none());
}

async fn retry_refund_and_checkpoints(store: &Arc<dyn Store>) {
    with_template(store, "retry").await;
    let id = store.job_insert(&[job("retry", 0, T0)], T0).await.unwrap()[0].id();
    let c = store.job_claim("n1", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    assert!(store.run_checkpoint(c.run_id, "n1", "{\"done\":1}").await.unwrap());
    store.run_progress(c.run_id, &Progress { percent: 40, message: "going".into() }).await.unwrap();
    let running = store.run_get(c.run_id).await.unwrap().unwrap();
    assert_eq!((running.status, running.progress.unwrap().percent), (RunStatus::Running, 40));
    assert!(store.run_finish(&end(c.run_id, id, "n1", RunResult::Failed, Some(Reason::Shutdown)), JobNext::Retry { at: T0 + 5, refund: true }).await.unwrap());
    let job = store.job_get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt, job.run_at), (JobState::Available, 0, T0 + 5), "a shutdown refunds the attempt");
    assert_eq!(job.checkpoint.as_deref(), Some("{\"done\":1}"));
    assert!(store.job_claim("n1", "default", 1, T0, T0).await.unwrap().is_empty(), "not before its run-at");
    let c = store.job_claim("n1", "default", 1, T0 + 5, T0 + 1000).await.unwrap().remove(0);
    assert_eq!((c.job.attempt, c.job.checkpoint.as_deref()), (1, Some("{\"done\":1}")));
    assert!(store.run_finish(&end(c.run_id, id, "n1", RunResult::Failed, Some(Reason::Error)), JobNext::Retry { at: T0, refund: false }).await.unwrap());
    assert_eq!(store.job_get(id).await.unwrap().unwrap().attempt, 1);
    let c = store.job_claim("n1", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    store.run_finish(&end(c.run_id, id, "n1", RunResult::Failed, Some(Reason::Error)), JobNext::Delete).await.unwrap();
    let runs = store.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.attempt, r.reason)).collect::<Vec<_>>(), [
        (2, Some(Reason::Error)),
        (1, Some(Reason::Error)),
        (1, Some(Reason::Shutdown))
    ]);
}

async fn cancel_removes_or_flags(store: &Arc<dyn Store>) {
    with_template(store, "cancel").await;
    let ids: Vec<i64> = store.job_insert(&[job("cancel", 0, T0), job("cancel", 1, T0)], T0).await.unwrap().iter().map(|i| i.id()).collect();
    let c = store.job_claim("n1", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    assert_eq!(c.job.id, ids[0]);
    assert_eq!(store.job_cancel(ids[1]).await.unwrap(), CancelOutcome::Removed);
    assert_eq!(store.job_cancel(ids[0]).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(store.job_cancel_requested("n1").await.unwrap(), [ids[0]]);
    assert!(store.job_cancel_requested("n2").await.unwrap().is_empty());
    assert_eq!(store.job_cancel(424242).await.unwrap(), CancelOutcome::NotFound);
    store.run_finish(&end(c.run_id, ids[0], "n1", RunResult::Cancelled, Some(Reason::Cancelled)), JobNext::Delete).await.unwrap();
    assert_eq!(store.job_cancel(ids[0]).await.unwrap(), CancelOutcome::NotFound);
}

async fn expiry_and_heartbeats(store: &Arc<dyn Store>) {
    with_template(store, "beat").await;
    store.job_insert(&[job("beat", 0, T0), job("beat", 0, T0)], T0).await.unwrap();
    let a = store.job_claim("alive", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    let d = store.job_claim("dead", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    store.node_heartbeat(&node("alive", T0 + 900), T0 + 5000).await.unwrap();
    let expired = store.run_expired(T0 + 2000).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [d.run_id], "only the silent node's run");
    let later = store.run_expired(T0 + 5001).await.unwrap();
    assert_eq!(later.iter().map(|r| r.id).collect::<Vec<_>>(), [a.run_id, d.run_id], "the live node's lease ran out too");
    store.node_heartbeat(&node("alive", T0 + 5000), T0 + 9000).await.unwrap();
    let renewed = store.run_expired(T0 + 5001).await.unwrap();
    assert_eq!(renewed.iter().map(|r| r.id).collect::<Vec<_>>(), [d.run_id], "a heartbeat renews the lease of every run of the node");
    assert_eq!(store.node_list().await.unwrap().iter().map(|n| n.heartbeat_at).collect::<Vec<_>>(), [T0 + 5000]);
    store.node_remove("alive").await.unwrap();
    assert!(store.node_list().await.unwrap().is_empty());
    for (c, n) in [(a, "alive"), (d, "dead")] {
        store.run_finish(&end(c.run_id, c.job.id, n, RunResult::Succeeded, None), JobNext::Delete).await.unwrap();
    }
    assert_eq!(store.run_prune(T0).await.unwrap(), 0, "no run ended before T0");
    assert!(store.run_prune(T0 + 100_001).await.unwrap() > 0);
    assert!(store.run_list(&RunFilter::default()).await.unwrap().is_empty());
}

async fn the_leader_lease_is_exclusive_until_it_expires(store: &Arc<dyn Store>) {
    assert!(store.leader_acquire("a", T0, T0 + 1000).await.unwrap());
    assert!(!store.leader_acquire("b", T0 + 10, T0 + 1010).await.unwrap());
    assert!(store.leader_acquire("a", T0 + 500, T0 + 1500).await.unwrap(), "renewal");
    assert!(!store.leader_acquire("b", T0 + 1400, T0 + 2400).await.unwrap());
    assert!(store.leader_acquire("b", T0 + 1501, T0 + 2501).await.unwrap(), "takeover after expiry");
    assert!(!store.leader_acquire("a", T0 + 1600, T0 + 2600).await.unwrap());
    store.node_remove("b").await.unwrap();
    assert!(store.leader_acquire("a", T0 + 1700, T0 + 2700).await.unwrap(), "a node that stops hands the lease back");
}

async fn templates_update_and_delete(store: &Arc<dyn Store>) {
    let v1 = with_template(store, "tmpl").await;
    store.job_insert(&[job("tmpl", 0, T0)], T0).await.unwrap();
    let c = store.job_claim("n1", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    assert_eq!(c.digest, v1);
    let bytes = b"component v2".to_vec();
    let v2 = Digest::of(&bytes);
    store.component_put(&v2, &bytes, T0).await.unwrap();
    let t = store.template_put("tmpl", &v2, &json!({}), &TemplateDefaults::default(), &BTreeMap::new(), T0 + 1).await.unwrap();
    assert_eq!((t.version, &t.digest), (2, &v2));
    assert_eq!(store.component_get(&v1).await.unwrap().unwrap(), b"component tmpl");
    let err = store.template_delete("tmpl", false).await.unwrap_err();
    assert!(matches!(err, StoreError::TemplateInUse { jobs: 1, .. }), "{err}");
    assert!(store.template_get("tmpl").await.unwrap().is_some(), "a refused delete changes nothing");
    assert!(store.template_delete("tmpl", true).await.unwrap());
    assert_eq!(store.job_cancel_requested("n1").await.unwrap(), [c.job.id], "force cancels running jobs");
    store.run_finish(&end(c.run_id, c.job.id, "n1", RunResult::Cancelled, Some(Reason::Cancelled)), JobNext::Delete).await.unwrap();
    assert_eq!(store.run_get(c.run_id).await.unwrap().unwrap().digest, v1, "the run records the digest it ran");
    assert!(!store.template_delete("tmpl", false).await.unwrap());
}

#[tokio::test]
async fn sqlite_passes_the_store_contract() {
    let db = TestDb::new();
    conformance(db.store().await).await;
}

#[tokio::test]
async fn a_url_elihu_does_not_know_is_refused() {
    let err = elihu::store::connect("mysql://localhost/db").await.err().expect("refused");
    assert!(err.to_string().contains("is not a database URL elihu understands"), "{err}");
}

#[tokio::test]
async fn postgres_passes_the_store_contract() {
    let db = TestDb::on(Backend::Postgres).await;
    conformance(db.store().await).await;
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
    store.job_insert(&[job("beat", 0, T0)], T0).await.unwrap();
    let c = store.job_claim("n1", "default", 1, T0, T0 + 1000).await.unwrap().remove(0);
    let mut other = sqlx::PgConnection::connect(&db.url()).await.expect("a second connection");
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE").bind(c.run_id).fetch_one(&mut other).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), store.node_heartbeat(&node("n1", T0 + 500), T0 + 5000))
        .await
        .expect("the heartbeat waited for the lock on the node's run")
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert!(store.run_expired(T0 + 2000).await.unwrap().is_empty(), "the heartbeat renewed the run's lease");
}
