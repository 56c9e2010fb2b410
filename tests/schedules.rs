//! Schedules end to end: intervals counted from the end of the previous run,
//! cron firings at their instants, catch-up after downtime (once, or
//! skipped), pause and resume, one job per firing across a leader change,
//! validation, the CLI, the API, and three PostgreSQL nodes on an
//! every-second schedule. Time moves by an injected clock.

use std::time::{Duration, Instant};

use elihu::clock::Clock;
use elihu::model::{JobId, Millis};
use elihu::schedule::{CatchUp, CronRule, Rule, firing_of};
use elihu::store::{JobFilter, RunFilter};
use elihu::{Client, ClientError, Event, ScheduleSpec};
use serde_json::json;

use crate::support::node::*;
use crate::support::process::*;

/// A node for schedule tests: the manual clock jumps minutes while runs are
/// in flight, so runs must not expire meanwhile.
async fn start_node(client: &Client) -> elihu::Node {
    let config = elihu::NodeConfig { run_ttl: Duration::from_secs(86_400), ..node_config(&[("default", 1)]) };
    elihu::Node::start(client.clone(), config).await.expect("node starts")
}

fn every(name: &str, template: &str, context: serde_json::Value, period: Duration, catch_up: CatchUp) -> ScheduleSpec {
    ScheduleSpec { name: name.into(), template: template.into(), context, rule: Rule::Every(period), catch_up }
}

/// The next job a schedule enqueued, and its run-at.
async fn next_enqueued(client: &Client, events: &mut tokio::sync::broadcast::Receiver<Event>) -> (JobId, Millis) {
    let Event::Enqueued { job_id, .. } = next_event(events, |e| matches!(e, Event::Enqueued { .. })).await else { unreachable!() };
    (job_id, client.job_get(job_id).await.unwrap().expect("the enqueued job is queued").run_at)
}

const MINUTE: Duration = Duration::from_secs(60);

async fn an_interval_counts_from_the_end_of_the_previous_run(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push_as(&client, "job", "sleepy", defaults(1)).await;
    let mut events = client.subscribe();
    let node = start_node(&client).await;
    let t0 = clock.now();
    client.schedule_put(every("every-minute", "job", json!({"seconds": 0.2}), Duration::from_secs(60), CatchUp::One)).await.unwrap();
    let (first, run_at) = next_enqueued(&client, &mut events).await;
    assert_eq!(run_at, t0 + MINUTE, "the first firing is one interval after creation");
    clock.set(run_at);
    client.trigger();
    next_event(&mut events, |e| e.job_id() == first && matches!(e, Event::Started { .. })).await;
    // The run takes 90 s: the next one is a minute after it ends, not at t0 + 2 min.
    clock.advance(Duration::from_secs(90));
    assert!(matches!(final_event(&mut events, first).await, Event::Succeeded { .. }));
    let (_, run_at) = next_enqueued(&client, &mut events).await;
    assert_eq!(run_at, t0 + MINUTE + Duration::from_secs(90) + MINUTE);
    node.shutdown().await;
}

async fn a_cron_schedule_fires_at_its_instants(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "hello", defaults(1)).await;
    // Thursday 4 March 2027, 08:29:50 UTC.
    let start_at = Millis::parse_rfc3339("2027-03-04T08:29:50Z").unwrap();
    clock.set(start_at);
    let mut events = client.subscribe();
    let node = start_node(&client).await;
    let rule = Rule::Cron(CronRule::parse("1,10-15 30 8,14-16 * 3-6 4", None).unwrap());
    let spec = ScheduleSpec { name: "bg".into(), template: "hello".into(), context: json!({"name": "cron"}), rule, catch_up: CatchUp::One };
    let shown = client.schedule_put(spec).await.unwrap();
    assert_eq!(shown.next_firing, Some(start_at + Duration::from_secs(11)));
    let mut fired = Vec::new();
    for _ in 0..3 {
        let (job, run_at) = next_enqueued(&client, &mut events).await;
        fired.push(elihu::schedule::utc(run_at).format("%H:%M:%S").to_string());
        clock.set(run_at);
        client.trigger();
        assert!(matches!(final_event(&mut events, job).await, Event::Succeeded { .. }));
    }
    assert_eq!(fired, ["08:30:01", "08:30:10", "08:30:11"]);
    node.shutdown().await;
}

async fn missed_firings_run_once_after_downtime_or_are_skipped(backend: Backend) {
    for catch_up in [CatchUp::One, CatchUp::Skip] {
        let db = TestDb::on(backend).await;
        let (client, clock) = db.manual().await;
        push(&client, "hello", defaults(1)).await;
        let mut events = client.subscribe();
        let node = start_node(&client).await;
        client.schedule_put(every("tick", "hello", json!({"name": "t"}), Duration::from_secs(60), catch_up)).await.unwrap();
        let (first, run_at) = next_enqueued(&client, &mut events).await;
        clock.set(run_at);
        client.trigger();
        final_event(&mut events, first).await;
        let (second, second_at) = next_enqueued(&client, &mut events).await;
        node.shutdown().await;
        // An hour of downtime: sixty firings missed.
        clock.advance(Duration::from_secs(3600));
        let node = start_node(&client).await;
        let back = clock.now();
        match catch_up {
            CatchUp::One => {
                // The one queued job runs at once, and the next firing is a
                // minute after it ends: one catch-up, not sixty.
                assert!(second_at < back);
                assert!(matches!(final_event(&mut events, second).await, Event::Succeeded { .. }));
                let (_, next_at) = next_enqueued(&client, &mut events).await;
                assert_eq!(next_at, back + MINUTE);
            }
            CatchUp::Skip => {
                // The missed job is withdrawn; the next firing is after now.
                let (_, next_at) = next_enqueued(&client, &mut events).await;
                assert_eq!(next_at, back + MINUTE);
                assert!(client.job_get(second).await.unwrap().is_none(), "the missed firing was skipped");
            }
        }
        let runs = client.run_list(&RunFilter::default()).await.unwrap();
        assert_eq!(runs.len(), if catch_up == CatchUp::One { 2 } else { 1 }, "{catch_up:?}");
        node.shutdown().await;
    }
}

async fn pause_withdraws_the_queued_job_and_resume_counts_from_then(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "hello", defaults(1)).await;
    let mut events = client.subscribe();
    let node = start_node(&client).await;
    client.schedule_put(every("p", "hello", json!({"name": "p"}), Duration::from_secs(60), CatchUp::One)).await.unwrap();
    let (queued, _) = next_enqueued(&client, &mut events).await;
    let paused = client.schedule_pause("p").await.unwrap();
    assert!(paused.paused && paused.next_firing.is_none() && paused.current_job.is_none());
    assert!(client.job_get(queued).await.unwrap().is_none(), "its queued job is withdrawn");
    clock.advance(Duration::from_secs(600));
    let resumed_at = clock.now();
    let resumed = client.schedule_resume("p").await.unwrap();
    assert_eq!(resumed.next_firing, Some(resumed_at + MINUTE));
    let (_, run_at) = next_enqueued(&client, &mut events).await;
    assert_eq!(run_at, resumed_at + MINUTE, "nothing fired while paused");
    assert!(client.run_list(&RunFilter::default()).await.unwrap().is_empty());
    node.shutdown().await;
}

/// The leader enqueues a firing, then stops; the next leader does not
/// enqueue it again, and it runs once.
async fn a_leader_change_does_not_double_a_firing(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "hello", defaults(1)).await;
    let mut events = client.subscribe();
    let first_leader = start_node(&client).await;
    client.schedule_put(every("once", "hello", json!({"name": "x"}), Duration::from_secs(60), CatchUp::One)).await.unwrap();
    let (job, run_at) = next_enqueued(&client, &mut events).await;
    first_leader.shutdown().await;
    let second_leader = start_node(&client).await;
    clock.set(run_at);
    client.trigger();
    let Event::Succeeded { run_id, .. } = final_event(&mut events, job).await else { panic!() };
    let (next, _) = next_enqueued(&client, &mut events).await;
    assert_ne!(next, job);
    let runs = client.run_list(&RunFilter::default()).await.unwrap();
    let key = runs[0].unique_key.clone().unwrap();
    assert_eq!(firing_of(&key), Some(("once", run_at)));
    assert_eq!(runs.iter().filter(|r| r.unique_key.as_deref() == Some(key.as_str())).count(), 1);
    assert_eq!(runs[0].id, run_id);
    second_leader.shutdown().await;
}

on_both_backends!(
    an_interval_counts_from_the_end_of_the_previous_run,
    a_cron_schedule_fires_at_its_instants,
    missed_firings_run_once_after_downtime_or_are_skipped,
    pause_withdraws_the_queued_job_and_resume_counts_from_then,
    a_leader_change_does_not_double_a_firing,
);

#[tokio::test]
async fn a_schedule_that_does_not_fit_is_refused_and_nothing_is_stored() {
    let db = TestDb::new();
    let client = db.client().await;
    push(&client, "wordfreq", defaults(1)).await;
    let spec = |template: &str, context| every("s", template, context, Duration::from_secs(1), CatchUp::One);
    let err = client.schedule_put(spec("nope", json!({}))).await.unwrap_err();
    assert!(matches!(err, ClientError::UnknownTemplate(_)), "{err}");
    let err = client.schedule_put(spec("wordfreq", json!({"text": ""}))).await.unwrap_err();
    assert!(err.to_string().contains("at /text:"), "{err}");
    let err = client.schedule_put(ScheduleSpec { name: "bad name".into(), ..spec("wordfreq", json!({"text": "x"})) }).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid schedule name"), "{err}");
    assert!(client.schedule_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn schedules_from_the_command_line_the_api_and_the_config_file() {
    let db = TestDb::new();
    cli_push(&db, "hello", &[]);
    let out = ok(&elihu(&db, &["schedule", "add", "nightly", "--template", "hello", "--cron", "0 30 2 * * *", "--context", r#"{"name": "n"}"#, "--timezone", "Europe/Paris"]));
    assert!(out.starts_with("schedule nightly (cron 0 30 2 * * * (Europe/Paris)) fires next at "), "{out}");
    let out = ok(&elihu(&db, &["schedule", "add", "often", "--template", "hello", "--every", "5m", "--context", r#"{"name": "o"}"#]));
    assert!(out.contains("(every 5m)"), "{out}");
    let ls = ok(&elihu(&db, &["schedule", "ls"]));
    assert!(ls.contains("nightly") && ls.contains("often"), "{ls}");
    assert!(ok(&elihu(&db, &["schedule", "pause", "often"])).contains("paused schedule often"));
    assert!(ok(&elihu(&db, &["schedule", "ls"])).contains("paused"));
    assert!(ok(&elihu(&db, &["schedule", "resume", "often"])).contains("resumed schedule often"));
    ok(&elihu(&db, &["schedule", "rm", "often"]));
    let out = elihu(&db, &["schedule", "show", "often"]);
    assert!(text(&out.stderr).contains("there is no schedule named `often`"));
    for (cron, expected) in [
        ("0 0 0 1 13 *", "cron field month `13` is invalid"),
        ("50-30 * * * * *", "cron field second `50-30` is invalid: the range 50-30 runs backwards"),
        ("0 0 0 30 2 *", "never fires"),
    ] {
        let out = elihu(&db, &["schedule", "add", "bad", "--template", "hello", "--cron", cron]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(expected), "{cron}: {}", text(&out.stderr));
    }

    // The API, on a server.
    let server = Server::start(&db, &[]);
    let body = json!({"template": "hello", "context": {"name": "api"}, "every": "1h", "catch_up": "skip"});
    let (status, shown) = http(&server.addr, "PUT", "/v1/schedules/hourly", None, json_body(body)).await;
    assert_eq!((status, shown["every"].as_str(), shown["catch_up"].as_str()), (200, Some("1h"), Some("skip")), "{shown}");
    let (status, err) = http(&server.addr, "PUT", "/v1/schedules/bad", None, json_body(json!({"template": "hello", "cron": "0 99 * * * *"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("invalid_schedule")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().starts_with("cron field minute `99` is invalid"));
    let (status, _) = http(&server.addr, "POST", "/v1/schedules/hourly/pause", None, None).await;
    assert_eq!(status, 200);
    let (_, list) = http(&server.addr, "GET", "/v1/schedules", None, None).await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 2);
    let (status, _) = http(&server.addr, "DELETE", "/v1/schedules/hourly", None, None).await;
    assert_eq!(status, 204);
    drop(server);

    // A node refuses to start on an invalid schedule in its config file, naming it.
    std::fs::write(db.dir.path().join("elihu.toml"), "[schedules.broken]\ntemplate = \"hello\"\ncron = \"0 0 25 * * *\"\n").unwrap();
    let out = elihu(&db, &["serve"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("schedule `broken` in the config file: cron field hour `25` is invalid"), "{}", text(&out.stderr));
}

/// Three nodes on PostgreSQL with an every-second schedule (from their config
/// file) for 30 seconds: one job per second, no firing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_postgres_nodes_fire_an_every_second_schedule_once_per_second() {
    let db = TestDb::on(Backend::Postgres).await;
    let client = db.client().await;
    push(&client, "noop", defaults(1)).await;
    std::fs::write(db.dir.path().join("elihu.toml"), "[schedules.tick]\ntemplate = \"noop\"\ncron = \"* * * * * *\"\n").unwrap();
    let nodes: Vec<Server> = (0..3).map(|_| Server::start(&db, &["--queue", "default=4"])).collect();
    let started = Instant::now();
    until("the schedule has fired", || async { !client.run_list(&RunFilter::default()).await.unwrap().is_empty() }).await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
    client.schedule_pause("tick").await.unwrap();
    until("the last firing is done", || async { client.job_list(&JobFilter::default()).await.unwrap().is_empty() }).await;
    drop(nodes);
    let runs = client.run_list(&RunFilter { limit: Some(10_000), ..Default::default() }).await.unwrap();
    let mut firings: Vec<Millis> = runs.iter().map(|r| firing_of(r.unique_key.as_deref().unwrap()).unwrap().1).collect();
    firings.sort();
    let count = firings.len();
    firings.dedup();
    assert_eq!(firings.len(), count, "a firing ran twice");
    for pair in firings.windows(2) {
        assert_eq!(pair[1].duration_since(pair[0]), Duration::from_secs(1), "firings are one second apart: {firings:?}");
    }
    assert!((25..=32).contains(&count), "{count} firings in about 30 seconds");
}
