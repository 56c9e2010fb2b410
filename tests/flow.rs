//! Flow control end to end, with nodes that share nothing but the database
//! (each its own client, store, pool and runtime): a global limit, a limit
//! per partition and a rate limit per partition, on three PostgreSQL nodes
//! and on two SQLite nodes sharing one file; a queue paused during a
//! burn-down and a node restarted while it is paused; and snoozes.
//!
//! What runs at once is sampled every 20 ms from the runs table, and
//! checked again on the history (the start and end of every run); limits
//! and counts are asserted, never durations (the burn-down times are only
//! printed).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use elihu::clock::Clock;
use elihu::model::{JobId, Millis, Partition, Rate, Reason, RunResult};
use elihu::store::{JobFilter, JobState, QueueChange, Run, RunFilter, RunStatus, TemplateDefaults};
use elihu::{Client, Enqueue, Event, Node, NodeConfig};
use serde_json::json;

use crate::support::node::*;
use crate::support::process::until;

/// Held by each burn-down for its whole length: two at once would share the
/// machine's cores and blur what each samples.
static BURN_DOWN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The nodes of a test, each on a client of its own: two on SQLite (one
/// file), three on PostgreSQL.
async fn nodes(db: &TestDb, backend: Backend, queue: &str, concurrency: u32) -> Vec<Node> {
    let count = if backend == Backend::Sqlite { 2 } else { 3 };
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(start(&db.client().await, &[(queue, concurrency)]).await);
    }
    nodes
}

async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// Enqueues `per_customer` sleepy jobs of `seconds` for each customer, all
/// of the first customer's first (the order least fair to the others), and
/// says whose each job is.
async fn enqueue_sleepy(client: &Client, queue: &str, customers: &[&str], per_customer: usize, seconds: f64) -> HashMap<JobId, String> {
    let mut whose = HashMap::new();
    for customer in customers {
        let batch = (0..per_customer)
            .map(|_| Enqueue { queue: Some(queue.into()), ..Enqueue::new("sleepy", json!({"seconds": seconds, "customer": customer})) })
            .collect();
        for inserted in client.enqueue_batch(batch).await.unwrap() {
            whose.insert(inserted.id(), customer.to_string());
        }
    }
    whose
}

/// What was running at each sample.
struct Samples {
    /// Runs in flight, and how many jobs were still queued, at each sample.
    at: Vec<(BTreeMap<String, usize>, usize)>,
}

impl Samples {
    fn max_total(&self) -> usize {
        self.at.iter().map(|(running, _)| running.values().sum::<usize>()).max().unwrap_or(0)
    }

    fn max_per_customer(&self) -> usize {
        self.at.iter().flat_map(|(running, _)| running.values().copied()).max().unwrap_or(0)
    }
}

/// Samples the runs in flight every 20 ms from the runs table until no job
/// of the queue is left, counting them by customer.
async fn sample_until_done(client: &Client, queue: &str, whose: &HashMap<JobId, String>) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut at = Vec::new();
    loop {
        tick.tick().await;
        let filter = RunFilter { status: Some(RunStatus::Running), limit: Some(10_000), ..RunFilter::default() };
        let running = client.run_list(&filter).await.unwrap();
        let queued = client
            .job_list(&JobFilter { queue: Some(queue.into()), state: Some(JobState::Available), limit: Some(10_000), ..JobFilter::default() })
            .await
            .unwrap()
            .len();
        let mut by_customer = BTreeMap::new();
        for run in &running {
            *by_customer.entry(whose[&run.job_id].clone()).or_default() += 1;
        }
        let done = queued == 0 && running.is_empty() && client.job_list(&JobFilter { queue: Some(queue.into()), limit: Some(1), ..JobFilter::default() }).await.unwrap().is_empty();
        at.push((by_customer, queued));
        if done {
            return Samples { at };
        }
        assert!(Instant::now() < deadline, "the queue was not worked within 120 s");
    }
}

/// Every run of the test, checked: each job succeeded exactly once, in
/// one run.
async fn history(client: &Client, jobs: usize) -> Vec<Run> {
    let runs = client.run_list(&RunFilter { limit: Some(100_000), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.len(), jobs, "one run per job");
    assert!(runs.iter().all(|r| r.result == Some(RunResult::Succeeded)), "every run succeeded");
    runs
}

/// The most runs in flight at once in the history, per customer: runs are
/// in flight from their start to their end, half open.
fn most_at_once(runs: &[Run], whose: &HashMap<JobId, String>) -> BTreeMap<String, usize> {
    let mut edges: BTreeMap<&str, Vec<(Millis, i32)>> = BTreeMap::new();
    for run in runs {
        let customer = whose[&run.job_id].as_str();
        edges.entry(customer).or_default().extend([(run.started_at, 1), (run.finished_at.unwrap(), -1)]);
    }
    edges
        .into_iter()
        .map(|(customer, mut edges)| {
            // An end and a start at the same millisecond: the end first.
            edges.sort();
            let (mut now, mut most) = (0i32, 0i32);
            for (_, step) in edges {
                now += step;
                most = most.max(now);
            }
            (customer.to_string(), most as usize)
        })
        .collect()
}

/// Three PostgreSQL nodes (two on SQLite), a global limit of 5 and 300
/// jobs of 200 ms: never more than 5 in flight, and the limit used (at
/// least 4 in flight in most samples while jobs wait).
async fn a_global_limit_holds_across_nodes_and_is_used(backend: Backend) {
    let _alone = BURN_DOWN.lock().await;
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "sleepy", defaults(1)).await;
    client.queue_set("exports", QueueChange { global_limit: Some(Some(5)), ..QueueChange::default() }).await.unwrap();
    let whose = enqueue_sleepy(&client, "exports", &["all"], 300, 0.2).await;
    let started = Instant::now();
    let nodes = nodes(&db, backend, "exports", 4).await;
    let samples = sample_until_done(&client, "exports", &whose).await;
    let took = started.elapsed();
    shutdown(nodes).await;
    assert!(samples.max_total() <= 5, "{} runs in flight at once under a global limit of 5", samples.max_total());
    let waiting: Vec<usize> = samples.at.iter().filter(|(_, queued)| *queued > 0).map(|(r, _)| r.values().sum()).collect();
    let busy = waiting.iter().filter(|n| **n >= 4).count();
    assert!(busy * 2 > waiting.len(), "at least 4 in flight in only {busy} of the {} samples taken while jobs waited", waiting.len());
    let runs = history(&client, 300).await;
    eprintln!(
        "{backend:?}: 300 jobs of 200 ms under a global limit of 5 burned down in {:.2} s (ideal 12 s); \
         at least 4 in flight in {busy} of {} samples while jobs waited; most between recorded starts and ends {}",
        took.as_secs_f64(),
        waiting.len(),
        most_at_once(&runs, &whose)["all"]
    );
}

/// A limit of 2 per customer, 3 customers × 100 jobs, all of the first
/// customer's enqueued first: never more than 2 of one customer in flight,
/// and all three progress together.
async fn a_partitioned_limit_holds_per_customer_and_all_progress(backend: Backend) {
    let _alone = BURN_DOWN.lock().await;
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "sleepy", defaults(1)).await;
    let change = QueueChange { global_limit: Some(Some(2)), partition: Some(Some(Partition::parse("/customer").unwrap())), ..QueueChange::default() };
    client.queue_set("api", change).await.unwrap();
    let whose = enqueue_sleepy(&client, "api", &["a", "b", "c"], 100, 0.05).await;
    let nodes = nodes(&db, backend, "api", 4).await;
    let samples = sample_until_done(&client, "api", &whose).await;
    shutdown(nodes).await;
    assert!(samples.max_per_customer() <= 2, "{} runs of one customer in flight at once", samples.max_per_customer());
    for customer in ["a", "b", "c"] {
        let most = samples.at.iter().map(|(running, _)| running.get(customer).copied().unwrap_or(0)).max().unwrap();
        assert_eq!(most, 2, "customer {customer}: at most {most} in flight in the samples; the limit of 2 was not used");
    }
    let runs = history(&client, 300).await;
    // A figure only: a run's recorded start is the node's clock when it
    // asked to claim, before the claim waited for the queue's settings row
    // (PostgreSQL) or the write lock (SQLite), so a start can be stamped a
    // little before the end of the run whose slot it took.
    eprintln!("{backend:?}: most runs of one customer between recorded starts and ends: {:?}", most_at_once(&runs, &whose));
    // When the first customer is through, the others are nearly through too.
    let last_end = |customer: &str| runs.iter().filter(|r| whose[&r.job_id] == customer).map(|r| r.finished_at.unwrap()).max().unwrap();
    let first_through = ["a", "b", "c"].into_iter().map(last_end).min().unwrap();
    for customer in ["a", "b", "c"] {
        let done = runs.iter().filter(|r| whose[&r.job_id] == customer && r.finished_at.unwrap() <= first_through).count();
        assert!(done >= 80, "customer {customer} had {done} of 100 jobs done when the first customer was through");
    }
}

/// A rate of 50 per second per customer, 3 customers × 200 jobs: in any
/// one-second window of the runs' start times, at most 50 starts of one
/// customer, and 50 in some window (the rate is used).
async fn a_partitioned_rate_holds_in_every_window(backend: Backend) {
    let _alone = BURN_DOWN.lock().await;
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "sleepy", defaults(1)).await;
    let change = QueueChange {
        rate: Some(Some(Rate::parse("50/1s").unwrap())),
        partition: Some(Some(Partition::parse("/customer").unwrap())),
        ..QueueChange::default()
    };
    client.queue_set("calls", change).await.unwrap();
    let whose = enqueue_sleepy(&client, "calls", &["a", "b", "c"], 200, 0.0).await;
    let started = Instant::now();
    let nodes = nodes(&db, backend, "calls", 20).await;
    until("the 600 jobs are done", || async {
        client.job_list(&JobFilter { queue: Some("calls".into()), limit: Some(1), ..JobFilter::default() }).await.unwrap().is_empty()
    })
    .await;
    let took = started.elapsed();
    shutdown(nodes).await;
    let runs = history(&client, 600).await;
    for customer in ["a", "b", "c"] {
        let mut starts: Vec<i64> = runs.iter().filter(|r| whose[&r.job_id] == customer).map(|r| r.started_at.0).collect();
        starts.sort_unstable();
        assert_eq!(starts.len(), 200);
        // The most starts in a window [s, s + 1 s) beginning at a start.
        let most = (0..starts.len()).map(|i| starts[i..].partition_point(|&t| t < starts[i] + 1000)).max().unwrap();
        assert_eq!(most, 50, "customer {customer}: {most} starts in one second (the rate is 50 per second)");
    }
    eprintln!("{backend:?}: 3 × 200 jobs at 50 per second per customer in {:.2} s (ideal: starts at 0, 1, 2 and 3 s)", took.as_secs_f64());
}

/// Two nodes burning down a queue; it is paused: nothing starts after the
/// pause (within a poll), the runs in flight finish; a node restarted
/// while it is paused does not claim it; resumed, the rest is worked.
async fn a_pause_stops_every_node_and_survives_a_restart(backend: Backend) {
    let _alone = BURN_DOWN.lock().await;
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "sleepy", defaults(1)).await;
    push(&client, "hello", defaults(1)).await;
    let poll = node_config(&[("burn", 3)]).poll_interval;
    let burn = |ctx| Enqueue { queue: Some("burn".into()), ..Enqueue::new("sleepy", ctx) };
    client.enqueue_batch((0..40).map(|_| burn(json!({"seconds": 0.2}))).collect()).await.unwrap();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(start(&db.client().await, &[("burn", 3)]).await);
    }
    let runs = |status| {
        let client = client.clone();
        async move { client.run_list(&RunFilter { template: Some("sleepy".into()), status, limit: Some(1000), ..RunFilter::default() }).await.unwrap() }
    };
    until("a few runs are done", || async { runs(Some(RunStatus::Done)).await.len() >= 6 }).await;
    let paused = client.queue_pause("burn").await.unwrap();
    let paused_at = client.clock().now();
    assert!(paused.paused);
    until("the runs in flight are done", || async { runs(Some(RunStatus::Running)).await.is_empty() }).await;
    let before_restart = runs(None).await;
    let late: Vec<_> = before_restart.iter().filter(|r| r.started_at > paused_at + poll).collect();
    assert!(late.is_empty(), "runs started after the pause: {late:?}");
    assert!(before_restart.iter().all(|r| r.result == Some(RunResult::Succeeded)), "the runs in flight finished");
    let waiting = client.job_list(&JobFilter { queue: Some("burn".into()), limit: Some(100), ..JobFilter::default() }).await.unwrap();
    assert!(!waiting.is_empty() && waiting.iter().all(|j| j.state == JobState::Available && j.attempt == 0), "held back, not attempted");

    // A node restarted while the queue is paused: a queue only it works
    // shows it claims; some polls later it still has not touched the
    // paused queue.
    nodes.remove(0).shutdown().await;
    nodes.push(start(&db.client().await, &[("burn", 3), ("probe", 1)]).await);
    let mut events = nodes[1].client().subscribe();
    let probe = nodes[1].client().enqueue(Enqueue { queue: Some("probe".into()), ..Enqueue::new("hello", json!({"name": "probe"})) }).await.unwrap().id();
    assert!(matches!(final_event(&mut events, probe).await, Event::Succeeded { .. }));
    tokio::time::sleep(poll * 4).await;
    assert_eq!(runs(None).await.len(), before_restart.len(), "no run of the paused queue started after the restart");

    let resumed_at = client.clock().now();
    client.queue_resume("burn").await.unwrap();
    until("the rest is worked after the resume", || async {
        client.job_list(&JobFilter { queue: Some("burn".into()), limit: Some(1), ..JobFilter::default() }).await.unwrap().is_empty()
    })
    .await;
    shutdown(nodes).await;
    let all = runs(None).await;
    assert_eq!(all.len(), 40, "each job ran once");
    assert!(all.iter().all(|r| r.result == Some(RunResult::Succeeded)));
    assert!(all.len() > before_restart.len() && all[..all.len() - before_restart.len()].iter().all(|r| r.started_at >= resumed_at));
}

/// A job that snoozes twice then succeeds: three runs, all attempt 1, the
/// two snoozed ones followed by the next run only after their delay.
async fn a_snoozing_job_runs_again_after_each_delay_without_using_attempts(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "snoozer", defaults(1)).await;
    push(&client, "hello", defaults(1)).await;
    // Two slots: a claim that took the snoozed job early would take it with the probe.
    let node = start(&client, &[("default", 2)]).await;
    let mut events = client.subscribe();
    let id = client.enqueue(Enqueue::new("snoozer", json!({"times": 2, "seconds": 60}))).await.unwrap().id();
    for snooze in 1..=2 {
        let event = next_event(&mut events, |e| e.job_id() == id && matches!(e, Event::Snoozed { .. } | Event::Failed { .. } | Event::Succeeded { .. })).await;
        let Event::Snoozed { run_at, .. } = event else { panic!("snooze {snooze}: {event:?}") };
        assert_eq!(run_at, clock.now() + Duration::from_secs(60));
        let probe = client.enqueue(Enqueue::new("hello", json!({"name": "probe"}))).await.unwrap().id();
        assert!(matches!(final_event(&mut events, probe).await, Event::Succeeded { .. }));
        let job = client.job_get(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempt, job.snoozes), (JobState::Available, 0, snooze), "waits, its attempt given back");
        clock.advance(Duration::from_secs(60));
        client.trigger();
    }
    let Event::Succeeded { output, .. } = final_event(&mut events, id).await else { panic!("the job succeeds") };
    assert_eq!(serde_json::from_str::<serde_json::Value>(&output).unwrap(), json!({"snoozed": 2, "attempt": 1}));
    node.shutdown().await;
    let mut runs = client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    runs.reverse();
    let shape: Vec<_> = runs.iter().map(|r| (r.attempt, r.result, r.message.as_deref())).collect();
    assert_eq!(shape, [
        (1, Some(RunResult::Snoozed), Some("snoozed for 60s")),
        (1, Some(RunResult::Snoozed), Some("snoozed for 60s")),
        (1, Some(RunResult::Succeeded), None),
    ]);
    for pair in runs.windows(2) {
        assert!(pair[1].started_at >= pair[0].finished_at.unwrap() + Duration::from_secs(60), "the delay was respected: {pair:?}");
    }
}

/// A job that snoozes for ever is stopped at the node's cap, reason named.
async fn snoozes_past_the_cap_end_the_job_with_reason_snooze_limit(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "snoozer", TemplateDefaults { max_attempts: 3, ..defaults(3) }).await;
    let node = Node::start(client.clone(), NodeConfig { max_snoozes: 2, ..node_config(&[("default", 1)]) }).await.unwrap();
    let mut events = client.subscribe();
    let id = client.enqueue(Enqueue::new("snoozer", json!({"times": 1000, "seconds": 0}))).await.unwrap().id();
    let Event::Failed { reason, message, .. } = final_event(&mut events, id).await else { panic!("the job fails") };
    assert_eq!(reason, Reason::SnoozeLimit);
    assert!(message.contains("at most 2 times"), "{message}");
    node.shutdown().await;
    assert!(client.job_get(id).await.unwrap().is_none(), "the job is over, attempts left or not");
    let runs = client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    let results: Vec<_> = runs.iter().rev().map(|r| (r.result, r.reason)).collect();
    assert_eq!(results, [(Some(RunResult::Snoozed), None), (Some(RunResult::Snoozed), None), (Some(RunResult::Failed), Some(Reason::SnoozeLimit))]);
}

/// Bad settings through the library, the API, the CLI and the config file:
/// each refused naming the field, and nothing stored (not even the good
/// values beside a bad one).
#[tokio::test]
async fn bad_settings_are_refused_naming_the_field_and_nothing_is_stored() {
    let db = TestDb::new();
    let client = db.client().await;
    let partition = Some(Some(Partition::parse("/customer_id").unwrap()));
    let good = QueueChange { global_limit: Some(Some(5)), rate: Some(Some(Rate::parse("100/1m").unwrap())), partition, paused: None };
    let stored = client.queue_set("exports", good).await.unwrap();
    let unchanged = || async { assert_eq!(client.queue_get("exports").await.unwrap(), stored, "the stored settings changed") };

    let err = client.queue_set("exports", QueueChange { global_limit: Some(Some(0)), ..QueueChange::default() }).await.unwrap_err();
    assert!(matches!(err, elihu::ClientError::Invalid { field: "global limit", .. }), "{err}");
    unchanged().await;

    let state = elihu::api::ApiState { client: client.clone(), node: None, token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, elihu::api::router(state)).await });
    for (body, field) in [
        (json!({"global_limit": 0}), "global_limit"),
        (json!({"global_limit": -3}), "global_limit"),
        (json!({"global_limit": 2, "rate": "0/1s"}), "rate"),
        (json!({"rate": "10/fortnight"}), "rate"),
        (json!({"rate": "10/0s", "partition": "template"}), "rate"),
        (json!({"global_limit": 2, "partition": "customer_id"}), "partition"),
        (json!({"partition": "/a~2"}), "partition"),
    ] {
        let (status, answer) = http(&addr, "PATCH", "/v1/queues/exports", None, json_body(body.clone())).await;
        assert_eq!((status, &answer["error"]["details"]["field"]), (400, &json!(field)), "{body}: {answer}");
        unchanged().await;
    }

    // Each with a good value beside the bad one.
    for (args, flag) in [
        (["--global-limit", "0", "--rate", "1/1s"], "--global-limit"),
        (["--global-limit", "-1", "--rate", "1/1s"], "--global-limit"),
        (["--rate", "5/0s", "--global-limit", "2"], "--rate"),
        (["--rate", "fast", "--global-limit", "2"], "--rate"),
        (["--partition", "customer_id", "--global-limit", "2"], "--partition"),
    ] {
        let out = crate::support::process::elihu(&db, &[&["queue", "set", "exports"][..], &args[..]].concat());
        let stderr = crate::support::process::text(&out.stderr);
        assert!(!out.status.success() && stderr.contains(flag), "elihu queue set {args:?}: {stderr}");
        unchanged().await;
    }

    // A config file with a good queue entry and a bad one: `serve` refuses
    // it before it touches the database.
    for (entry, key) in [
        ("global_limit = 0", "queues.zzz.global_limit"),
        ("rate = \"100/1 fortnight\"", "queues.zzz.rate"),
        ("partition = \"customer\"", "queues.zzz.partition"),
    ] {
        let config = format!("[queues.exports]\nglobal_limit = 2\nrate = \"1/1s\"\n\n[queues.zzz]\n{entry}\n");
        std::fs::write(db.dir.path().join("elihu.toml"), config).unwrap();
        let mut serve = crate::support::process::command(&db, &["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while serve.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                serve.kill().unwrap();
                panic!("serve started with `{entry}` in the config file");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = serve.wait_with_output().unwrap();
        let stderr = crate::support::process::text(&out.stderr);
        assert!(!out.status.success() && stderr.contains(key), "`{entry}`: {stderr}");
        unchanged().await;
        assert_eq!(client.queue_get("zzz").await.unwrap(), elihu::store::QueueSettings::none("zzz"));
    }
}

/// `elihu queue set|pause|resume|ls` and `elihu stats`: each queue's
/// settings, depth, and how many due jobs each setting holds back.
#[tokio::test]
async fn the_cli_shows_limits_and_what_each_holds_back() {
    use crate::support::process::{elihu, ok};
    let db = TestDb::new();
    let client = db.client().await;
    push(&client, "hello", defaults(1)).await;
    let set = ok(&elihu(&db, &["queue", "set", "exports", "--global-limit", "1"]));
    assert_eq!(set.trim(), "queue exports: running, at most 1 in flight, no rate limit");
    let on = |queue: &str| Enqueue { queue: Some(queue.into()), ..Enqueue::new("hello", json!({"name": "x"})) };
    client.enqueue_batch((0..3).map(|_| on("exports")).collect()).await.unwrap();
    let now = client.clock().now();
    let claim = client.store().job_claim("n1", "exports", 10, now, now + Duration::from_secs(60)).await.unwrap();
    assert_eq!(claim.jobs.len(), 1, "the global limit lets one start");
    ok(&elihu(&db, &["queue", "pause", "mail"]));
    client.enqueue_batch((0..2).map(|_| on("mail")).collect()).await.unwrap();

    let listed: serde_json::Value = serde_json::from_str(&ok(&elihu(&db, &["queue", "ls", "--json"]))).unwrap();
    let queue = |name: &str| listed.as_array().unwrap().iter().find(|q| q["name"] == name).unwrap().clone();
    let exports = queue("exports");
    assert_eq!((&exports["global_limit"], &exports["running"], &exports["due"]), (&json!(1), &json!(1), &json!(2)), "{exports}");
    assert_eq!(exports["held"], json!({"paused": 0, "global_limit": 2, "rate": 0}));
    assert_eq!(queue("mail")["held"], json!({"paused": 2, "global_limit": 0, "rate": 0}));

    // QUEUE PAUSED QUEUED DUE RUNNING GLOBAL-LIMIT RATE PARTITION HELD-PAUSE HELD-LIMIT HELD-RATE
    let row = |table: &str, name: &str| {
        table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|w| w.first() == Some(&name)).unwrap().join(" ")
    };
    for table in [ok(&elihu(&db, &["queue", "ls"])), ok(&elihu(&db, &["stats"]))] {
        assert_eq!(row(&table, "exports"), "exports no 2 2 1 1 - - 0 2 0", "{table}");
        assert_eq!(row(&table, "mail"), "mail yes 2 2 0 - - - 2 0 0", "{table}");
    }
    ok(&elihu(&db, &["queue", "resume", "mail"]));
    assert_eq!(row(&ok(&elihu(&db, &["queue", "ls"])), "mail"), "mail no 2 2 0 - - - 0 0 0");
}

on_both_backends!(
    a_global_limit_holds_across_nodes_and_is_used,
    a_partitioned_limit_holds_per_customer_and_all_progress,
    a_partitioned_rate_holds_in_every_window,
    a_pause_stops_every_node_and_survives_a_restart,
    a_snoozing_job_runs_again_after_each_delay_without_using_attempts,
    snoozes_past_the_cap_end_the_job_with_reason_snooze_limit,
);
