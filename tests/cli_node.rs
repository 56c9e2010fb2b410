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
    assert!(text(&out.stderr).contains("removed its own earlier data (0 jobs, 0 runs of templates elihu-bench-noop, elihu-bench-job and elihu-bench-http)"));
    let out = elihu(&db, &["bench", "--duration", "1s", "--rate", "50", "--concurrency", "4"]);
    let stdout = ok(&out);
    assert!(stdout.starts_with("continuous: ") && stdout.contains("enqueue-to-start p50"), "{stdout}");
    assert!(text(&out.stderr).contains("(0 jobs, 300 runs of templates elihu-bench-noop, elihu-bench-job and elihu-bench-http)"), "{}", text(&out.stderr));
    // With --http each job makes one granted call to the bench's own server.
    let stdout = ok(&elihu(&db, &["bench", "-n", "40", "--batch-size", "10", "--concurrency", "4", "--http"]));
    assert!(stdout.starts_with("burn-down: 40 one-HTTP-call wasm jobs in "), "{stdout}");
    let client = db.client().await;
    let runs = client.run_list(&RunFilter { template: Some("elihu-bench-http".into()), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.len(), 40);
    for run in &runs {
        assert_eq!(run.result, Some(RunResult::Succeeded), "{run:?}");
        assert_eq!((run.calls.len(), run.calls[0].status, run.calls[0].bytes_received), (1, Some(200), Some(11)), "{run:?}");
    }
    let jobs = client.job_list(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.template.as_str()).collect::<Vec<_>>(), ["hello"], "other jobs are untouched");
}

/// `elihu` with stdin fed from `input`.
fn elihu_with_stdin(db: &TestDb, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command(db, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("elihu runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Secrets, grants and template limits as an operator drives them: a key
/// made and given to every command that needs it, a secret set from stdin
/// and never shown, a template granting a test server with the secret as
/// bearer token, bad pushes refused, a node refusing to start without the
/// key or with another, and the run's calls in `runs show` and `stats`.
async fn secrets_grants_and_limits_from_the_command_line(backend: Backend) {
    let server = crate::support::servers::TestServer::http().await;
    let db = TestDb::on(backend).await;
    let key = ok(&elihu(&db, &["secret", "keygen"]));
    let key_file = db.dir.path().join("secrets.key");
    std::fs::write(&key_file, &key).unwrap();
    let key_path = key_file.to_str().unwrap();
    let key_id = elihu::secrets::SecretsKey::parse(&key).unwrap().id();

    const TOKEN: &str = "cli-token-5be1d0a3";
    let out = elihu_with_stdin(&db, &["secret", "set", "hook_token", "--secrets-key-file", key_path], &format!("{TOKEN}\n"));
    assert_eq!(ok(&out).trim(), "secret hook_token created");
    let out = elihu_with_stdin(&db, &["secret", "set", "other"], "value-1\n");
    assert!(text(&out.stderr).contains("setting a secret needs the secrets key, and none was given"), "{}", text(&out.stderr));
    let ls = ok(&elihu(&db, &["secret", "ls", "--secrets-key-file", key_path]));
    assert!(ls.contains(&format!("secrets key in use: id {key_id}")) && ls.contains("hook_token"), "{ls}");
    assert!(!ls.contains(TOKEN) && !ls.contains("other"), "{ls}");

    let origin = server.origin();
    let url = format!("url={}", server.url("/hook"));
    let push = |extra: &[&str]| {
        let (schema, wasm) = (schema_path("webhook"), wasm("webhook"));
        let mut args = vec!["template", "push", "hook", wasm.as_str(), "--schema", schema.to_str().unwrap(), "--config", &url];
        args.extend_from_slice(extra);
        elihu(&db, &args)
    };
    let header = "Authorization=Bearer {{secret:hook_token}}";
    for (extra, message) in [
        (vec!["--header", header, "--allow-host", &origin], "--header 'Authorization' must come after the --allow-host it is for"),
        (vec!["--allow-host", "https://api.example.com/v1"], "the allowed host `https://api.example.com/v1` is not valid"),
        (vec!["--allow-host", &origin, "--header", "Authorization=Bearer {{secret:nope}}"], "uses the secret `nope`, which does not exist"),
        (vec!["--allow-host", &origin, "--max-output", "0"], "the template limit `max_output_bytes` must be more than 0"),
        (vec!["--allow-host", &origin, "--max-requests", "101"], "`max_requests` is 101, above this node's limit of 100"),
    ] {
        let out = push(&extra);
        assert!(!out.status.success(), "{extra:?}");
        assert!(text(&out.stderr).contains(message), "{extra:?}: {}", text(&out.stderr));
    }
    // The node's [limits] bound what a template may ask for.
    let config = db.dir.path().join("limits.toml");
    std::fs::write(&config, "[limits]\nmax_requests = 2\nconnect_timeout = \"2s\"\n").unwrap();
    let out = push(&["--allow-host", &origin, "--max-requests", "3", "--config-file", config.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("`max_requests` is 3, above this node's limit of 2"), "{}", text(&out.stderr));
    std::fs::write(&config, "[limits]\nmax_requests = 0\n").unwrap();
    let out = push(&["--allow-host", &origin, "--config-file", config.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("config file key `limits.max_requests`: the limit must be more than 0"), "{}", text(&out.stderr));
    assert!(ok(&elihu(&db, &["template", "ls"])).contains("no templates"), "nothing was stored");
    ok(&push(&["--allow-host", &origin, "--header", header, "--max-requests", "3", "--max-output", "4KiB"]));
    let show: serde_json::Value = serde_json::from_str(&ok(&elihu(&db, &["template", "show", "hook"]))).unwrap();
    assert_eq!(show["grants"]["allowed_hosts"], json!([origin]));
    assert_eq!(show["grants"]["headers"][0], json!({"host": origin, "name": "authorization", "value": "Bearer {{secret:hook_token}}"}));
    assert_eq!(show["limits"], json!({"max_output_bytes": 4096, "max_requests": 3}));

    // No key, or another: the node says why and does not start.
    let out = command(&db, &["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&format!("the database holds 1 secret(s) but this node was given no secrets key; pass --secrets-key-file PATH")), "{}", text(&out.stderr));
    let other = elihu::secrets::SecretsKey::generate();
    let out = command(&db, &["serve", "--listen", "127.0.0.1:0"]).env("ELIHU_SECRETS_KEY", other.to_hex().as_str()).output().unwrap();
    assert!(
        text(&out.stderr).contains(&format!("the secrets key given (key id {}) is not the key the secrets were stored with (key id {key_id})", other.id())),
        "{}",
        text(&out.stderr)
    );

    let node = Server::start(&db, &["--secrets-key-file", key_path, "--queue", "default=2"]);
    let out = ok(&elihu(&db, &["enqueue", "hook", "--context", r#"{"a": 1}"#, "--wait"]));
    assert!(out.contains(r#""status": 200"#), "{out}");
    assert_eq!(server.seen()[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    let show = ok(&elihu(&db, &["runs", "show", "1"]));
    assert!(show.contains(&format!("POST {} 200 (sent 7B, received 11B", server.url("/hook"))), "{show}");
    let stats = ok(&elihu(&db, &["stats"]));
    assert!(stats.contains("CALLS") && stats.lines().any(|l| l.starts_with("hook") && l.trim_end().ends_with("1       0")), "{stats}");
    drop(node);
}

mod secrets_grants_and_limits_from_the_command_line {
    use crate::support::node::Backend;

    // The test server answers on the runtime's workers while the test blocks on `elihu`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::secrets_grants_and_limits_from_the_command_line(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::secrets_grants_and_limits_from_the_command_line(Backend::Postgres).await
    }
}
