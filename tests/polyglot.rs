//! Jobs in JavaScript and Python: the example jobs, built from source with
//! the guest SDKs, through the runtime and through a node, with exact
//! reasons, logs, progress and checkpoints; and the SDKs' declarations and
//! WIT copies kept in step with `wit/job.wit`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use elihu::clock::Clock;
use elihu::model::{LogLevel, Progress, RunResult};
use elihu::runtime::{JobInfo, Reason, RunLimits, RunOutcome, RunRequest};
use elihu::schema::SchemaError;
use elihu::store::{RunFilter, TemplateDefaults, TemplateSettings};
use elihu::{ClientError, Enqueue, Event};
use serde_json::{Value, json};

use crate::outbound_node::{Outbound, TOKEN, failed, host_lines, output as outbound_output, rows, settings};
use crate::support::node::{Backend, TestDb, defaults, final_event, next_event, start};
use crate::support::polyglot::{Lang, example_bytes, example_schema, repo, run_ok};
use crate::support::servers::TestServer;
use crate::support::{config, failure, output, runtime, timeout};

/// An example's bytes, compiled once per test process by the shared runtime
/// (its artifact then serves every other runtime of the process).
fn compiled(lang: Lang, name: &'static str) -> Arc<Vec<u8>> {
    /// An example's bytes, once compiled.
    type Once = Arc<OnceLock<Arc<Vec<u8>>>>;
    static DONE: OnceLock<Mutex<BTreeMap<(&'static str, &'static str), Once>>> = OnceLock::new();
    let cell = DONE.get_or_init(Default::default).lock().unwrap().entry((lang.dir(), name)).or_default().clone();
    cell.get_or_init(|| {
        let bytes = example_bytes(lang, name);
        runtime().load(&bytes).unwrap_or_else(|e| panic!("loading the {lang:?} {name} example: {e}"));
        Arc::new(bytes)
    })
    .clone()
}

/// Runs an example once on the shared runtime.
async fn run(lang: Lang, name: &'static str, request: RunRequest) -> RunOutcome {
    let bytes = compiled(lang, name);
    let rt = runtime();
    let job = rt.load(&bytes).unwrap();
    rt.run(&job, request).await
}

fn request(name: &str, context: Value, attempt: u32, checkpoint: Option<String>) -> RunRequest {
    RunRequest {
        context: context.to_string(),
        info: JobInfo { id: 7, template: name.into(), attempt, max_attempts: 2, checkpoint },
        ..RunRequest::default()
    }
}

fn logs(outcome: &RunOutcome) -> Vec<(LogLevel, &str)> {
    outcome.logs.iter().map(|l| (l.level, l.message.as_str())).collect()
}

/// The exception each language's `throw` mode raises, as the run's message.
fn thrown(lang: Lang) -> &'static str {
    match lang {
        Lang::Js => "TypeError: can't access property \"property\", missing is undefined",
        Lang::Python => "KeyError: 'missing'",
    }
}

async fn hello_greets_logs_and_reads_config(lang: Lang) {
    let outcome = run(lang, "hello", request("hello", json!({"name": "Ada"}), 1, None)).await;
    assert_eq!(output(&outcome), json!({"greeting": "Hello, Ada!"}));
    assert_eq!(logs(&outcome), [(LogLevel::Info, "greeting Ada (job 7, attempt 1)")]);

    let mut req = request("hello", json!({"name": "Bob"}), 1, None);
    req.config = config(&[("greeting", "Howdy")]);
    assert_eq!(output(&run(lang, "hello", req).await), json!({"greeting": "Howdy, Bob!"}));
}

async fn the_data_job_computes_its_output(lang: Lang) {
    let (context, expected, progress) = match lang {
        Lang::Js => (
            json!({"markdown": "# Title\n\nSome *text*, see https://example.com.\n\n## Next\n\n- one\n- two\n"}),
            json!({
                "html": "<h1>Title</h1>\n<p>Some <em>text</em>, see <a href=\"https://example.com\">https://example.com</a>.</p>\n<h2>Next</h2>\n<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n",
                "headings": [{"depth": 1, "text": "Title"}, {"depth": 2, "text": "Next"}],
                "words": 8
            }),
            Progress { percent: 50, message: "parsed 21 tokens".into() },
        ),
        Lang::Python => (
            json!({"csv": "city,price\nParis,1\nLyon,2\nParis,3\nNice,\n", "top": 1}),
            json!({
                "rows": 4,
                "columns": [
                    {"name": "city", "count": 4, "missing": 0, "numeric": false, "distinct": 3,
                     "top": [{"value": "Paris", "count": 2}]},
                    {"name": "price", "count": 3, "missing": 1, "numeric": true,
                     "min": 1.0, "max": 3.0, "mean": 2.0, "median": 2.0, "stdev": 1.0}
                ]
            }),
            Progress { percent: 100, message: "column price".into() },
        ),
    };
    let outcome = run(lang, lang.data_job(), request(lang.data_job(), context, 1, None)).await;
    assert_eq!(output(&outcome), expected);
    assert_eq!(outcome.progress, Some(progress));
}

async fn an_error_fails_the_run_and_the_next_attempt_succeeds(lang: Lang) {
    let first = run(lang, "behaviours", request("behaviours", json!({"mode": "flaky", "fail_times": 1}), 1, None)).await;
    assert_eq!(failure(&first), (Reason::Error, "failing on purpose: attempt 1 of the 1 planned failures".into()));
    assert_eq!(logs(&first), [(LogLevel::Warn, "attempt 1 fails on purpose")]);
    let second = run(lang, "behaviours", request("behaviours", json!({"mode": "flaky", "fail_times": 1}), 2, None)).await;
    assert_eq!(output(&second), json!({"attempt": 2, "max_attempts": 2}));
}

async fn an_exception_is_the_error_message_and_its_stack_is_logged(lang: Lang) {
    let outcome = run(lang, "behaviours", request("behaviours", json!({"mode": "throw"}), 1, None)).await;
    assert_eq!(failure(&outcome), (Reason::Error, thrown(lang).to_string()));
    let logged = logs(&outcome);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0].0, LogLevel::Info);
    let (level, trace) = logged[1];
    assert_eq!(level, LogLevel::Error);
    match lang {
        // The message, then the stack: the job's frame first.
        Lang::Js => assert!(trace.starts_with(&format!("{}\nthrow@", thrown(lang))), "{trace}"),
        // Python's traceback starts at the job's own frames, not the SDK's.
        Lang::Python => {
            assert!(trace.starts_with("Traceback (most recent call last):\n"), "{trace}");
            assert!(trace.contains("in throw") && !trace.contains("elihu_guest"), "{trace}");
            assert!(trace.ends_with(thrown(lang)), "{trace}");
        }
    }
}

async fn an_endless_loop_times_out(lang: Lang) {
    let mut req = request("behaviours", json!({"mode": "spin"}), 1, None);
    req.limits = timeout(Duration::from_millis(300));
    let outcome = run(lang, "behaviours", req).await;
    assert_eq!(failure(&outcome), (Reason::Timeout, "the run passed its timeout of 300ms".into()));
    assert_eq!(logs(&outcome), [(LogLevel::Info, "spinning forever")]);
}

async fn a_memory_bomb_ends_as_memory(lang: Lang) {
    let mut req = request("behaviours", json!({"mode": "memory"}), 1, None);
    req.limits = RunLimits { memory: 32 << 20, ..RunLimits::default() };
    let outcome = run(lang, "behaviours", req).await;
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, Reason::Memory, "{message}");
    assert!(message.starts_with("the run hit its memory limit of 32MiB (it tried to grow its memory to "), "{message}");
    // The engine turned the refused allocation into an exception; the SDK
    // made it the job's error, and elihu still says `memory`.
    let engine_said = match lang {
        Lang::Js => "; the job then failed with: out of memory",
        Lang::Python => "; the job then failed with: MemoryError",
    };
    assert!(message.ends_with(engine_said), "{message}");
}

async fn progress_and_checkpoint_resume_on_the_next_attempt(lang: Lang) {
    let context = json!({"mode": "progress", "steps": 4, "fail_after": 2});
    let first = run(lang, "behaviours", request("behaviours", context.clone(), 1, None)).await;
    assert_eq!(failure(&first), (Reason::Error, "stopping after step 2 on purpose".into()));
    assert_eq!(first.progress, Some(Progress { percent: 50, message: "step 2 of 4".into() }));
    assert_eq!(first.checkpoint.as_deref(), Some(r#"{"done":2}"#));

    let second = run(lang, "behaviours", request("behaviours", context, 2, first.checkpoint)).await;
    assert_eq!(output(&second), json!({"attempt": 2, "resumed_from": 2, "steps": 4}));
    assert_eq!(logs(&second), [(LogLevel::Info, "resuming after step 2")]);
    assert_eq!(second.progress, Some(Progress { percent: 100, message: "step 4 of 4".into() }));
    assert_eq!(second.checkpoint.as_deref(), Some(r#"{"done":4}"#));
}

/// As many runs of a big component as the runtime is sized for can be live
/// at once (here all of them spin until their timeout): the pool has room
/// for a Python component's 14 core instances per run, not only a Rust one's 3.
async fn a_full_runtime_of_big_components_starts_every_run(lang: Lang) {
    let bytes = compiled(lang, "behaviours");
    let runs = 6;
    let rt = elihu::runtime::Runtime::new(elihu::runtime::RuntimeConfig {
        max_concurrent_runs: runs,
        artifact_dir: Some(crate::support::artifact_dir().to_path_buf()),
        ..elihu::runtime::RuntimeConfig::default()
    })
    .unwrap();
    let rt = Arc::new(rt);
    let job = rt.load(&bytes).unwrap();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..runs {
        let (rt, job) = (rt.clone(), job.clone());
        let mut req = request("behaviours", json!({"mode": "spin"}), 1, None);
        req.limits = timeout(Duration::from_millis(500));
        all.spawn(async move { rt.run(&job, req).await });
    }
    for outcome in all.join_all().await {
        assert_eq!(failure(&outcome), (Reason::Timeout, "the run passed its timeout of 500ms".into()));
    }
}

/// Pushes an example as template `name` with `config`.
async fn push(client: &elihu::Client, lang: Lang, name: &str, defaults: TemplateDefaults, config: &[(&str, &str)]) {
    let bytes = compiled(lang, if name == "hello" { "hello" } else { "behaviours" });
    let schema_path = example_schema(lang, if name == "hello" { "hello" } else { "behaviours" });
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let settings = TemplateSettings { config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Default::default() };
    client.template_push(name, &bytes, &schema, &defaults, &settings).await.expect("template push");
}

/// Through a node on SQLite: config, logs, a retry resuming from its
/// checkpoint, snoozes, exact reasons, and contexts refused at enqueue.
async fn behaviours_through_a_node(lang: Lang) {
    let db = TestDb::new();
    let (client, clock) = db.manual().await;
    push(&client, lang, "hello", defaults(1), &[("greeting", "Hi")]).await;
    push(&client, lang, "behaviours", defaults(2), &[]).await;
    let node = start(&client, &[("default", 4)]).await;
    let mut events = client.subscribe();

    let hello = client.enqueue(Enqueue::new("hello", json!({"name": "Ada"}))).await.unwrap().id();
    let Event::Succeeded { output, .. } = final_event(&mut events, hello).await else { panic!("hello failed") };
    assert_eq!(serde_json::from_str::<Value>(&output).unwrap(), json!({"greeting": "Hi, Ada!"}));
    let runs = client.run_list(&RunFilter { job_id: Some(hello), ..RunFilter::default() }).await.unwrap();
    let log: Vec<(LogLevel, &str)> = runs[0].logs.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(log, [(LogLevel::Info, format!("greeting Ada (job {hello}, attempt 1)").as_str())]);

    // A run that fails after two of four steps; the retry resumes from its checkpoint.
    let steps = client.enqueue(Enqueue::new("behaviours", json!({"mode": "progress", "steps": 4, "fail_after": 2}))).await;
    let steps = steps.unwrap().id();
    let retried = next_event(&mut events, |e| e.job_id() == steps && matches!(e, Event::Retried { .. })).await;
    let Event::Retried { reason, message, run_at, .. } = retried else { unreachable!() };
    assert_eq!((reason, message.as_str()), (Reason::Error.into(), "stopping after step 2 on purpose"));
    clock.advance(run_at.duration_since(clock.now()));
    client.trigger();
    let Event::Succeeded { output, .. } = final_event(&mut events, steps).await else { panic!("the retry failed") };
    assert_eq!(serde_json::from_str::<Value>(&output).unwrap(), json!({"attempt": 2, "resumed_from": 2, "steps": 4}));
    let runs = client.run_list(&RunFilter { job_id: Some(steps), ..RunFilter::default() }).await.unwrap();
    let seen: Vec<_> = runs
        .iter()
        .map(|r| (r.attempt, r.result, r.checkpoint.as_deref(), r.progress.as_ref().map(|p| p.percent)))
        .collect();
    assert_eq!(seen, [
        (2, Some(RunResult::Succeeded), Some(r#"{"done":4}"#), Some(100)),
        (1, Some(RunResult::Failed), Some(r#"{"done":2}"#), Some(50)),
    ]);

    // Snoozed twice (each time waiting out its delay), then done on the same attempt.
    let snoozy = client.enqueue(Enqueue::new("behaviours", json!({"mode": "snooze", "times": 2, "seconds": 30}))).await;
    let snoozy = snoozy.unwrap().id();
    for snooze in 1..=2 {
        let event = next_event(&mut events, |e| e.job_id() == snoozy && (e.is_final() || matches!(e, Event::Snoozed { .. }))).await;
        let Event::Snoozed { run_at, .. } = event else { panic!("snooze {snooze}: {event:?}") };
        assert_eq!(run_at, clock.now() + Duration::from_secs(30));
        clock.advance(Duration::from_secs(30));
        client.trigger();
    }
    let Event::Succeeded { output, .. } = final_event(&mut events, snoozy).await else { panic!("the snoozing job failed") };
    assert_eq!(serde_json::from_str::<Value>(&output).unwrap(), json!({"snoozed": 2, "attempt": 1}));
    let runs = client.run_list(&RunFilter { job_id: Some(snoozy), ..RunFilter::default() }).await.unwrap();
    let seen: Vec<_> = runs.iter().map(|r| (r.attempt, r.result)).collect();
    assert_eq!(seen, [(1, Some(RunResult::Succeeded)), (1, Some(RunResult::Snoozed)), (1, Some(RunResult::Snoozed))]);

    // Exact reasons, each on its last attempt.
    let once = |context: Value, timeout_ms: Option<u64>, memory: Option<u64>| Enqueue {
        max_attempts: Some(1),
        timeout: timeout_ms.map(Duration::from_millis),
        memory,
        ..Enqueue::new("behaviours", context)
    };
    let cases = [
        (once(json!({"mode": "throw"}), None, None), Reason::Error, thrown(lang).to_string()),
        (once(json!({"mode": "spin"}), Some(300), None), Reason::Timeout, "the run passed its timeout of 300ms".to_string()),
        (once(json!({"mode": "memory"}), None, Some(32 << 20)), Reason::Memory, "the run hit its memory limit of 32MiB".to_string()),
    ];
    for (enqueue, want_reason, want_message) in cases {
        let id = client.enqueue(enqueue).await.unwrap().id();
        let Event::Failed { reason, message, .. } = final_event(&mut events, id).await else { panic!("job {id} did not fail") };
        assert_eq!(reason, want_reason.into(), "{message}");
        assert!(message.starts_with(&want_message), "{message}");
    }

    // Contexts that break the schema are refused at enqueue, naming the field.
    for (template, context, pointer) in
        [("behaviours", json!({"mode": "explode"}), "/mode"), ("hello", json!({"name": 42}), "/name")]
    {
        let err = client.enqueue(Enqueue::new(template, context)).await.unwrap_err();
        let ClientError::Schema(SchemaError::ContextRejected(violations)) = &err else { panic!("{err}") };
        assert_eq!(violations.iter().map(|v| v.pointer.as_str()).collect::<Vec<_>>(), [pointer], "{err}");
    }
    node.shutdown().await;
}

/// Runs each `async fn NAME(Lang)` for JavaScript and Python, as the tests
/// `NAME::js` and `NAME::python`.
macro_rules! in_both_languages {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::support::polyglot::Lang;

            #[tokio::test]
            async fn js() {
                super::$name(Lang::Js).await
            }

            #[tokio::test]
            async fn python() {
                super::$name(Lang::Python).await
            }
        }
    )*};
}

in_both_languages!(
    hello_greets_logs_and_reads_config,
    the_data_job_computes_its_output,
    an_error_fails_the_run_and_the_next_attempt_succeeds,
    an_exception_is_the_error_message_and_its_stack_is_logged,
    an_endless_loop_times_out,
    a_memory_bomb_ends_as_memory,
    progress_and_checkpoint_resume_on_the_next_attempt,
    a_full_runtime_of_big_components_starts_every_run,
    behaviours_through_a_node,
);

/// The JavaScript and Python `webhook` examples through a node: `fetch` /
/// `elihu_guest.http` reach the granted server on 127.0.0.1 with the bearer
/// token the job read with `secret`, and the audit has the call exactly; on
/// a template without the grant the call is refused, the server sees
/// nothing and the run's log names the URL; the token is stored nowhere in
/// the run.
async fn a_webhook_sends_its_secret_to_a_granted_server_only(lang: Lang, backend: Backend) {
    let server = TestServer::http().await;
    let mut o = Outbound::start(backend, None).await;
    o.client.secret_set("hook_token", TOKEN.as_bytes()).await.unwrap();
    let wasm = compiled(lang, "webhook");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(example_schema(lang, "webhook")).unwrap()).unwrap();
    let mut granted = settings(&[&server.origin()]);
    granted.grants.secrets.push("hook_token".into());
    granted.config.insert("url".into(), server.url("/hook"));
    granted.config.insert("token_secret".into(), "hook_token".into());
    o.push_wasm("hook", &wasm, &schema, 30_000, granted).await;
    let mut ungranted = TemplateSettings::default();
    ungranted.config.insert("url".into(), server.url("/hook"));
    o.push_wasm("hook-ungranted", &wasm, &schema, 30_000, ungranted).await;
    let context = json!({"order": 42});
    let sent = context.to_string().len() as u64;

    let run = o.run(Enqueue::new("hook", context.clone())).await;
    assert_eq!(outbound_output(&run), json!({"status": 200}), "{lang:?} {run:?}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(serde_json::from_slice::<Value>(&seen[0].body).unwrap(), context);
    assert_eq!(rows(&run), [("POST".into(), server.url("/hook"), Some(200), false, Some(sent), Some(11))]);
    assert!(!format!("{run:?}").contains(TOKEN), "the token is stored nowhere in the run");

    let run = o.run(Enqueue::new("hook-ungranted", context)).await;
    let (reason, _) = failed(&run);
    assert_eq!(reason, elihu::model::Reason::Error, "{run:?}");
    assert_eq!(server.seen().len(), 1, "the server saw nothing more");
    assert_eq!(
        host_lines(&run),
        [format!("outbound POST {} refused: template \"hook-ungranted\" grants no such host (allowed: none)", server.url("/hook")).as_str()]
    );
    assert_eq!(rows(&run), [("POST".into(), server.url("/hook"), None, true, None, None)]);
    o.node.shutdown().await;
}

mod a_webhook_sends_its_secret_to_a_granted_server_only {
    use super::Lang;
    use crate::support::node::Backend;

    #[tokio::test]
    async fn js_sqlite() {
        super::a_webhook_sends_its_secret_to_a_granted_server_only(Lang::Js, Backend::Sqlite).await
    }

    #[tokio::test]
    async fn js_postgres() {
        super::a_webhook_sends_its_secret_to_a_granted_server_only(Lang::Js, Backend::Postgres).await
    }

    #[tokio::test]
    async fn python_sqlite() {
        super::a_webhook_sends_its_secret_to_a_granted_server_only(Lang::Python, Backend::Sqlite).await
    }

    #[tokio::test]
    async fn python_postgres() {
        super::a_webhook_sends_its_secret_to_a_granted_server_only(Lang::Python, Backend::Postgres).await
    }
}

/// The SDKs carry copies of `wit/job.wit` (a package builds against its own
/// copy) and the JavaScript SDK the TypeScript declarations `jco
/// guest-types` generates from it: all in step with the original.
#[test]
fn the_sdks_copies_of_the_world_are_current() {
    let wit = std::fs::read_to_string(repo().join("wit/job.wit")).unwrap();
    for copy in ["guest-sdk/js/wit/job.wit", "guest-sdk/python/elihu_guest/wit/deps/elihu-job/job.wit"] {
        assert!(std::fs::read_to_string(repo().join(copy)).unwrap() == wit, "{copy} differs from wit/job.wit: copy it over");
    }
    // jco from the JavaScript examples' install, as `npm run types` runs it.
    let js = crate::support::polyglot::example_wasm(Lang::Js, "hello");
    let examples = js.parent().and_then(|d| d.parent()).unwrap();
    let out = tempfile::tempdir().unwrap();
    run_ok(
        std::process::Command::new(examples.join("node_modules/.bin/jco"))
            .args(["guest-types", "wit", "--world-name", "job", "--quiet", "--out-dir"])
            .arg(out.path())
            .current_dir(repo().join("guest-sdk/js")),
        "jco guest-types",
    );
    for file in ["job.d.ts", "interfaces/elihu-job-host.d.ts", "interfaces/elihu-job-types.d.ts"] {
        let committed = std::fs::read_to_string(repo().join("guest-sdk/js/types").join(file)).unwrap();
        let generated = std::fs::read_to_string(out.path().join(file)).unwrap();
        assert!(committed == generated, "guest-sdk/js/types/{file} is stale: run `npm run types` in example-jobs/js");
    }
}
