//! Many nodes on one PostgreSQL: three `elihu serve` processes working 10,000
//! jobs (with and without one of them killed halfway), PostgreSQL restarted
//! under load, and wake-ups by LISTEN/NOTIFY.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elihu::clock::SystemClock;
use elihu::model::{JobId, Reason, RunResult};
use elihu::store::{JobFilter, Run, RunFilter, RunStatus, TemplateDefaults};
use elihu::{Client, Enqueue, Event, Node};
use serde_json::json;

use crate::support::node::*;
use crate::support::process::*;

async fn enqueue_noops(client: &Client, n: usize) {
    push(client, "noop", defaults(3)).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk.iter().map(|i| Enqueue::new("noop", json!({"i": i}))).collect();
        client.enqueue_batch(batch).await.expect("enqueue");
    }
}

async fn runs_done(client: &Client) -> usize {
    let all = client.run_list(&RunFilter { limit: Some(1_000_000), ..Default::default() }).await.unwrap();
    all.iter().filter(|r| r.status == RunStatus::Done).count()
}

async fn all_done(client: &Client, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !client.job_list(&JobFilter { limit: Some(1), ..Default::default() }).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The run history proves the guarantees: every job succeeded exactly once,
/// its last run is that success, and no two runs of a job overlapped.
async fn check_history(client: &Client, jobs: usize) -> BTreeMap<JobId, Vec<Run>> {
    let runs = client.run_list(&RunFilter { limit: Some(1_000_000), ..Default::default() }).await.unwrap();
    let mut by_job: BTreeMap<JobId, Vec<Run>> = BTreeMap::new();
    for run in runs {
        by_job.entry(run.job_id).or_default().push(run);
    }
    assert_eq!(by_job.len(), jobs, "every job ran");
    for (job, runs) in by_job.iter_mut() {
        runs.sort_by_key(|r| (r.started_at, r.id));
        assert!(runs.iter().all(|r| r.status == RunStatus::Done), "job {job}: a run is still open");
        let successes = runs.iter().filter(|r| r.result == Some(RunResult::Succeeded)).count();
        assert_eq!(successes, 1, "job {job} succeeded {successes} times: {runs:?}");
        assert_eq!(runs.last().unwrap().result, Some(RunResult::Succeeded), "job {job}");
        for pair in runs.windows(2) {
            assert!(
                pair[1].started_at >= pair[0].finished_at.unwrap(),
                "job {job}: run {} started before run {} ended",
                pair[1].id,
                pair[0].id
            );
        }
    }
    by_job
}

const SERVE: [&str; 6] = ["--queue", "default=16", "--run-ttl", "2s", "--heartbeat", "300ms"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_work_ten_thousand_jobs_without_a_double_claim() {
    let db = TestDb::on(Backend::Postgres).await;
    let client = db.client().await;
    enqueue_noops(&client, 10_000).await;
    let started = Instant::now();
    let nodes: Vec<Server> = (0..3).map(|_| Server::start(&db, &SERVE)).collect();
    all_done(&client, "10,000 jobs are worked", Duration::from_secs(600)).await;
    eprintln!("three debug-build nodes worked 10,000 jobs in {:?}", started.elapsed());
    let history = check_history(&client, 10_000).await;
    assert!(history.values().all(|runs| runs.len() == 1), "no job ran twice");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for runs in history.values() {
        *per_node.entry(runs[0].node_id.as_str()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "every node took work: {per_node:?}");
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_halfway_loses_nothing_and_only_its_runs_repeat() {
    let db = TestDb::on(Backend::Postgres).await;
    let client = db.client().await;
    enqueue_noops(&client, 10_000).await;
    let mut nodes: Vec<Server> = (0..3).map(|_| Server::start(&db, &SERVE)).collect();
    until("half the jobs are done", || async { runs_done(&client).await >= 5_000 }).await;
    let victim = nodes.remove(1);
    let pid = victim.child.id();
    victim.signal("KILL");
    let _ = victim.wait();
    let marker = format!("-{pid}-");
    nodes.push(Server::start(&db, &SERVE));
    all_done(&client, "every job is done after the kill", Duration::from_secs(600)).await;
    let history = check_history(&client, 10_000).await;
    // Which runs the kill cut short is read from the history: a list taken
    // at the kill could still show a run whose commit was on its way.
    let cut_short: Vec<JobId> = history
        .iter()
        .filter(|(_, runs)| runs.iter().any(|r| r.node_id.contains(&marker) && r.reason == Some(Reason::Expired)))
        .map(|(job, _)| *job)
        .collect();
    for (job, runs) in &history {
        if runs.len() > 1 {
            assert!(cut_short.contains(job), "job {job} ran again though its run on the killed node was not cut short: {runs:?}");
            assert_eq!(runs.len(), 2, "job {job}: {runs:?}");
            assert!(runs[0].node_id.contains(&marker), "job {job}: the first run was the killed node's");
            assert_eq!(runs[0].reason, Some(Reason::Expired), "job {job}");
        }
    }
    for job in &cut_short {
        assert_eq!(history[job].len(), 2, "job {job} was cut short and must have run again: {:?}", history[job]);
    }
    eprintln!("{} runs were cut short by the kill and ran again", cut_short.len());
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_recover_by_themselves_when_postgres_restarts_under_load() {
    let server = crate::support::postgres::PgServer::dedicated();
    let db = TestDb::on_own_postgres(&server).await;
    let client = db.client().await;
    enqueue_noops(&client, 4_000).await;
    let args = ["--queue", "default=8", "--run-ttl", "30s"];
    let nodes: Vec<Server> = (0..2).map(|_| Server::start(&db, &args)).collect();
    until("some jobs are done", || async { runs_done(&client).await >= 500 }).await;
    server.restart();
    all_done(&client, "every job is done after the restart", Duration::from_secs(600)).await;
    check_history(&client, 4_000).await;
    drop(nodes);
}

/// What `wait` gives, which the test says must come within 20 s.
async fn within<T>(what: &str, wait: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), wait).await.unwrap_or_else(|_| panic!("{what} within 20 s"))
}

/// A node whose polls and cancel checks are an hour apart still starts a
/// job enqueued by another client at once, and interrupts a job cancelled
/// there at once: both arrive by LISTEN/NOTIFY (the other client shares no
/// memory with the node, so nothing else can wake it within the hour).
#[tokio::test]
async fn listen_notify_wakes_a_node_for_new_jobs_and_cancels() {
    let db = TestDb::on(Backend::Postgres).await;
    let node_client = db.client().await;
    let other = Client::new(db.store().await, Arc::new(test_runtime()), Arc::new(SystemClock));
    push(&node_client, "hello", defaults(1)).await;
    push(&node_client, "spin", TemplateDefaults { timeout_ms: 60_000, ..defaults(1) }).await;
    let hour = Duration::from_secs(3600);
    let config = elihu::NodeConfig { poll_interval: hour, cancel_poll: hour, ..node_config(&[("default", 2)]) };
    let node = Node::start(node_client.clone(), config).await.unwrap();
    let mut events = node_client.subscribe();
    // A job enqueued through the node's own client (which wakes it) has run:
    // the claim loop has looked, and now waits an hour for the next wake-up.
    let probe = node_client.enqueue(Enqueue::new("hello", json!({"name": "probe"}))).await.unwrap().id();
    assert!(matches!(final_event(&mut events, probe).await, Event::Succeeded { .. }));

    let enqueued_at = Instant::now();
    let id = other.enqueue(Enqueue::new("hello", json!({"name": "notified"}))).await.unwrap().id();
    within("the job enqueued elsewhere started", final_event(&mut events, id)).await;
    eprintln!("enqueue-to-end through LISTEN/NOTIFY: {:?}", enqueued_at.elapsed());

    let spin = other.enqueue(Enqueue::new("spin", json!({}))).await.unwrap().id();
    next_event(&mut events, |e| e.job_id() == spin && matches!(e, Event::Started { .. })).await;
    other.cancel(spin).await.unwrap();
    let ended = within("the run cancelled elsewhere was interrupted", final_event(&mut events, spin)).await;
    assert!(matches!(ended, Event::Cancelled { .. }), "{ended:?}");
    node.shutdown().await;
}
