//! The node through the `elihu` binary, as a user drives it: templates,
//! enqueue (`--wait`, `--batch`), jobs, runs, cancel, stats, serve with its
//! API, graceful SIGTERM, a SIGKILL mid-run and a restart, and the demo.

use std::path::Path;

use elihu::model::{JobId, Reason, RunResult};
use elihu::store::{JobFilter, RunFilter, RunStatus};
use serde_json::json;

use crate::support::node::*;
use crate::support::process::*;
use crate::support::schema_path;

/// The jobs an `elihu enqueue` said it enqueued (`enqueued job N` lines).
fn enqueued(stdout: &str) -> Vec<JobId> {
    stdout.lines().filter_map(|l| l.strip_prefix("enqueued job ")).map(|id| id.trim().parse().expect("a job id")).collect()
}

#[tokio::test]
async fn templates_jobs_runs_and_stats_from_the_command_line() {
    let db = TestDb::new();
    ok(&elihu(&db, &["migrate"]));
    cli_push(&db, "hello", &["--max-attempts", "2", "--timeout", "5s", "--memory", "32MiB", "--config", "greeting=Hey"]);
    cli_push(&db, "wordfreq", &["--queue", "text", "--priority", "3"]);
    let ls = ok(&elihu(&db, &["template", "ls"]));
    assert!(ls.contains("hello") && ls.contains("32MiB") && ls.contains("5s") && ls.contains("text"), "{ls}");
    let show: serde_json::Value = serde_json::from_str(&ok(&elihu(&db, &["template", "show", "hello"]))).unwrap();
    assert_eq!(show["config"]["greeting"], "Hey");

    // Refusals name the problem and store nothing.
    let out = elihu(&db, &["enqueue", "wordfreq", "--context", r#"{"text": ""}"#]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("at /text:"), "{}", text(&out.stderr));
    let out = elihu(&db, &["template", "push", "bad", &wasm("other-world"), "--schema", schema_path("hello").to_str().unwrap()]);
    assert!(text(&out.stderr).contains("it has no `run` export"), "{}", text(&out.stderr));
    let out = elihu(&db, &["enqueue", "hello", "--in", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`soon` is not a duration"));

    let later = enqueued(&ok(&elihu(&db, &["enqueue", "hello", "--context", r#"{"name": "later"}"#, "--in", "1h"])));
    assert_eq!(later.len(), 1);
    let batch = enqueued(&ok(&elihu(&db, &["enqueue", "wordfreq", "--batch", r#"[{"text": "a b"}, {"text": "c"}]"#])));
    assert!(batch.len() == 2 && later[0] < batch[0] && batch[0] < batch[1], "{batch:?}");
    let keyed = enqueued(&ok(&elihu(&db, &["enqueue", "hello", "--context", r#"{"name": "k"}"#, "--unique-key", "k1", "--in", "1h"])));
    let out = ok(&elihu(&db, &["enqueue", "hello", "--context", r#"{"name": "k"}"#, "--unique-key", "k1"]));
    assert_eq!(out.trim(), format!("job {} with this unique key is already queued or running", keyed[0]));
    let jobs = ok(&elihu(&db, &["jobs", "ls", "--queue", "text"]));
    assert_eq!(jobs.lines().count(), 3, "{jobs}");
    let later = later[0].to_string();
    assert!(ok(&elihu(&db, &["cancel", &later])).contains(&format!("job {later} removed from its queue")));
    let out = elihu(&db, &["cancel", &later]);
    assert!(text(&out.stderr).contains(&format!("there is no queued or running job {later}")));
    let out = elihu(&db, &["template", "rm", "wordfreq"]);
    assert!(text(&out.stderr).contains("template `wordfreq` still has 2 queued or running jobs"), "{}", text(&out.stderr));

    // A node works them; `enqueue --wait` follows a job to its end.
    let server = Server::start(&db, &["--queue", "default=2", "--queue", "text=1"]);
    let out = elihu(&db, &["enqueue", "hello", "--context", r#"{"name": "Ada"}"#, "--wait"]);
    let stdout = ok(&out);
    assert!(stdout.contains("\"greeting\": \"Hey, Ada!\""), "{stdout}");
    assert!(text(&out.stderr).contains(" started: attempt 1 of 2 on "), "{}", text(&out.stderr));
    let job = enqueued(&stdout)[0];
    let client = db.client().await;
    until("the batch is worked", || async { client.job_list(&JobFilter { queue: Some("text".into()), ..Default::default() }).await.unwrap().is_empty() }).await;
    let runs = ok(&elihu(&db, &["runs", "ls"]));
    assert_eq!(runs.lines().filter(|l| l.contains("succeeded")).count(), 3, "{runs}");
    let listed: serde_json::Value = serde_json::from_str(&ok(&elihu(&db, &["runs", "ls", "--job", &job.to_string(), "--json"]))).unwrap();
    let run_id = listed[0]["id"].as_i64().unwrap().to_string();
    let show = ok(&elihu(&db, &["runs", "show", &run_id]));
    assert!(show.contains("\"greeting\": \"Hey, Ada!\"") && show.contains("[info] greeting Ada"), "{show}");
    let stats = ok(&elihu(&db, &["stats", "--json"]));
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let wordfreq = stats["templates"].as_array().unwrap().iter().find(|s| s["template"] == "wordfreq").unwrap();
    assert_eq!((wordfreq["succeeded"].as_i64(), wordfreq["queued"].as_i64()), (Some(2), Some(0)));
    let nodes = ok(&elihu(&db, &["nodes"]));
    assert!(nodes.contains("default=2,text=1"), "{nodes}");

    // The server's own API answers too.
    let (status, health) = http(&server.addr, "GET", "/v1/health", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    // A failing job: --wait exits 1 with the reason.
    cli_push(&db, "spin", &["--timeout", "300ms", "--max-attempts", "1"]);
    let out = elihu(&db, &["enqueue", "spin", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("failed (timeout): the run passed its timeout of 300ms"), "{}", text(&out.stderr));
    server.signal("TERM");
    let (status, _) = server.wait();
    assert!(status.success());
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_a_token() {
    let db = TestDb::new();
    let out = elihu(&db, &["serve", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("refusing to listen on 0.0.0.0:0 without a token"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn a_config_file_sets_queues_and_a_bad_one_is_named() {
    let db = TestDb::new();
    std::fs::write(db.dir.path().join("elihu.toml"), "[queues]\nmail = 3\n").unwrap();
    let server = Server::start(&db, &[]);
    let client = db.client().await;
    until("the node registers", || async { !client.node_list().await.unwrap().is_empty() }).await;
    assert_eq!(client.node_list().await.unwrap()[0].queues, "mail=3");
    drop(server);
    std::fs::write(db.dir.path().join("elihu.toml"), "tick = \"fast\"\n").unwrap();
    let out = elihu(&db, &["serve"]);
    assert!(text(&out.stderr).contains("config file key `tick`"), "{}", text(&out.stderr));
    std::fs::write(db.dir.path().join("elihu.toml"), "colour = 1\n").unwrap();
    let out = elihu(&db, &["stats"]);
    assert!(text(&out.stderr).contains("unknown field `colour`"), "{}", text(&out.stderr));
}

/// SIGTERM: stop claiming, then (after the grace period, none here: the
/// grace itself is tested on the injected clock in `queue`) interrupt the
/// runs in flight, recorded as `shutdown` and queued again.
#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let db = TestDb::new();
    cli_push(&db, "sleepy", &["--timeout", "2m"]);
    let server = Server::start(&db, &["--grace", "0s"]);
    let client = db.client().await;
    let long = enqueued(&ok(&elihu(&db, &["enqueue", "sleepy", "--context", r#"{"seconds": 120}"#])))[0];
    until("it runs", || async { client.run_list(&RunFilter::default()).await.unwrap().len() == 1 }).await;
    server.signal("TERM");
    let (status, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("0 runs finished, 1 interrupted and queued again"), "{stderr}");
    let run = &client.run_list(&RunFilter { job_id: Some(long), ..RunFilter::default() }).await.unwrap()[0];
    assert_eq!((run.result, run.reason), (Some(RunResult::Failed), Some(Reason::Shutdown)));
    assert_eq!(client.job_get(long).await.unwrap().unwrap().attempt, 0, "queued again with its attempt given back");
}

/// A node killed with SIGKILL mid-run, then started again: every job still
/// reaches a final state, the runs it had in flight end `expired` and are
/// retried, and nothing enqueued is lost.
#[tokio::test]
async fn a_node_killed_mid_run_loses_nothing() {
    let db = TestDb::new();
    cli_push(&db, "sleepy", &["--timeout", "1m", "--max-attempts", "3"]);
    cli_push(&db, "hello", &[]);
    let serve_args = ["--queue", "default=3", "--run-ttl", "1500ms", "--heartbeat", "200ms"];
    let server = Server::start(&db, &serve_args);
    let client = db.client().await;
    let sleepers = json!([{"seconds": 1.0}, {"seconds": 1.0}, {"seconds": 1.0}]).to_string();
    let mut jobs = enqueued(&ok(&elihu(&db, &["enqueue", "sleepy", "--batch", &sleepers])));
    let greetings: Vec<_> = (0..20).map(|i| json!({"name": format!("n{i}")})).collect();
    jobs.extend(enqueued(&ok(&elihu(&db, &["enqueue", "hello", "--batch", &serde_json::Value::from(greetings).to_string()]))));
    assert_eq!(jobs.len(), 23);
    until("three sleepers run", || async {
        client.run_list(&RunFilter { template: Some("sleepy".into()), ..Default::default() }).await.unwrap().len() == 3
    })
    .await;
    server.signal("KILL");
    let (status, _) = server.wait();
    assert!(!status.success());
    let in_flight: Vec<JobId> = client
        .run_list(&RunFilter { template: Some("sleepy".into()), ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == RunStatus::Running)
        .map(|r| r.job_id)
        .collect();
    assert_eq!(in_flight.len(), 3, "the killed node's runs are left running");

    let server = Server::start(&db, &serve_args);
    until("every job is done", || async { client.job_list(&JobFilter::default()).await.unwrap().is_empty() }).await;
    let runs = client.run_list(&RunFilter { limit: Some(1000), ..Default::default() }).await.unwrap();
    assert!(runs.iter().all(|r| r.status == RunStatus::Done));
    for job in jobs {
        let mine: Vec<_> = runs.iter().filter(|r| r.job_id == job).collect();
        let last = mine.first().unwrap_or_else(|| panic!("job {job} never ran"));
        assert_eq!(last.result, Some(RunResult::Succeeded), "job {job}: {last:?}");
        if in_flight.contains(&job) {
            assert_eq!(mine.len(), 2, "job {job}: one expired run, one rerun");
            assert_eq!((mine[1].reason, mine[0].attempt), (Some(Reason::Expired), 2));
        } else {
            assert!(mine.len() == 1 || mine.iter().skip(1).all(|r| r.reason == Some(Reason::Expired)), "job {job}: {mine:?}");
        }
    }
    drop(server);
}

#[tokio::test]
async fn the_demo_works_the_example_jobs_on_sqlite() {
    let db = TestDb::new();
    let out = command(&db, &["demo", "--exit"]).env_remove("ELIHU_DATABASE_URL").output().unwrap();
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    assert!(Path::new(&db.dir.path().join("elihu.db")).exists(), "the demo uses ./elihu.db by default");
    assert!(stderr.contains("failed (error): failing on purpose") && stderr.contains("retrying in"), "{stderr}");
    assert!(stderr.contains("failed for good (timeout)"), "{stderr}");
    // hello, wordfreq, flaky's second attempt, progress's second attempt.
    assert_eq!(stdout.lines().filter(|l| l.contains("succeeded")).count(), 4, "{stdout}");
    assert!(stdout.contains("resumed_from\":2"), "{stdout}");
}

/// `elihu bench` works its jobs in both modes and touches only its own data.
#[tokio::test]
async fn bench_measures_with_its_own_data_only() {
    let db = TestDb::new();
    cli_push(&db, "hello", &[]);
    ok(&elihu(&db, &["enqueue", "hello", "--context", r#"{"name": "keep me"}"#, "--in", "1h"]));
    let out = elihu(&db, &["bench", "-n", "300", "--batch-size", "100", "--concurrency", "8"]);
    let stdout = ok(&out);
    assert!(stdout.starts_with("burn-down: 300 no-op wasm jobs in "), "{stdout}");
    assert!(text(&out.stderr).contains("removed its own earlier data (0 jobs, 0 runs of templates elihu-bench-noop and elihu-bench-job)"));
    let out = elihu(&db, &["bench", "--duration", "1s", "--rate", "50", "--concurrency", "4"]);
    let stdout = ok(&out);
    assert!(stdout.starts_with("continuous: ") && stdout.contains("enqueue-to-start p50"), "{stdout}");
    assert!(text(&out.stderr).contains("(0 jobs, 300 runs of templates elihu-bench-noop and elihu-bench-job)"), "{}", text(&out.stderr));
    let client = db.client().await;
    let jobs = client.job_list(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.template.as_str()).collect::<Vec<_>>(), ["hello"], "other jobs are untouched");
}
