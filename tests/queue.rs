//! The node through the library API: priority, delay, retries with backoff,
//! timeouts, memory, cancel, unique keys, schemas, uploads, template
//! versions, stats, events, expiry, fencing, graceful shutdown. Time moves by
//! an injected clock; waits are on events, not sleeps. Every test runs on
//! SQLite and on PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use elihu::clock::Clock;
use elihu::model::{Ending, JobId, Reason, RunResult};
use elihu::schema::SchemaError;
use elihu::store::{CancelOutcome, Inserted, JobFilter, JobNext, JobState, RunEnd, RunFilter, RunStatus, TemplateDefaults};
use elihu::{ClientError, Enqueue, Event, Node};
use serde_json::json;

use crate::support::node::*;

fn enqueue(template: &str, context: serde_json::Value) -> Enqueue {
    Enqueue::new(template, context)
}

async fn jobs_start_in_priority_then_run_at_order(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, _clock) = db.manual().await;
    push(&client, "hello", defaults(1)).await;
    let mut ids = Vec::new();
    for (name, priority) in [("low", 9), ("urgent", 0), ("mid", 5), ("urgent-too", 0)] {
        let req = Enqueue { priority: Some(priority), ..enqueue("hello", json!({"name": name})) };
        ids.push(client.enqueue(req).await.unwrap().id());
    }
    let mut events = client.subscribe();
    let node = start(&client, &[("default", 1)]).await;
    let mut started = Vec::new();
    while started.len() < 4 {
        if let Event::Started { job_id, .. } = next_event(&mut events, |e| matches!(e, Event::Started { .. })).await {
            started.push(job_id);
        }
    }
    assert_eq!(started, [ids[1], ids[3], ids[2], ids[0]]);
    node.shutdown().await;
}

async fn a_delayed_job_waits_for_its_time(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "hello", defaults(1)).await;
    let node = start(&client, &[("default", 2)]).await;
    let mut events = client.subscribe();
    let later = client.enqueue(Enqueue { delay: Some(Duration::from_secs(3600)), ..enqueue("hello", json!({"name": "later"})) }).await.unwrap().id();
    let now = client.enqueue(enqueue("hello", json!({"name": "now"}))).await.unwrap().id();
    assert!(matches!(final_event(&mut events, now).await, Event::Succeeded { .. }));
    let job = client.job_get(later).await.unwrap().expect("still queued");
    assert_eq!((job.state, job.attempt), (JobState::Available, 0));
    clock.advance(Duration::from_secs(3600));
    client.trigger();
    assert!(matches!(final_event(&mut events, later).await, Event::Succeeded { .. }));
    node.shutdown().await;
}

async fn failures_retry_with_exponential_backoff_and_the_last_attempt_removes_the_job(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "flaky", defaults(3)).await; // backoff 10 s, doubling
    // Two slots: a claim that took a job before its time would take it
    // together with the probe below.
    let node = start(&client, &[("default", 2)]).await;
    let mut events = client.subscribe();
    let id = client.enqueue(enqueue("flaky", json!({"fail_times": 5}))).await.unwrap().id();
    for (attempt, base_ms) in [(1u32, 10_000u128), (2, 20_000)] {
        let event = next_event(&mut events, |e| e.job_id() == id && matches!(e, Event::Retried { .. } | Event::Failed { .. })).await;
        let Event::Retried { reason, message, run_at, .. } = event else { panic!("{event:?}") };
        assert_eq!(reason, Reason::Error);
        assert_eq!(message, format!("failing on purpose: attempt {attempt} of the 5 planned failures"));
        let delay = run_at.duration_since(clock.now());
        assert!((base_ms * 3 / 4..=base_ms * 5 / 4).contains(&delay.as_millis()), "attempt {attempt}: delay {delay:?}");
        // Not before its time: a probe due now is claimed and run while the
        // retry waits for its run-at.
        let probe = client.enqueue(enqueue("flaky", json!({"fail_times": 0}))).await.unwrap().id();
        assert!(matches!(final_event(&mut events, probe).await, Event::Succeeded { .. }));
        let job = client.job_get(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempt), (JobState::Available, attempt), "the retry waited for its run-at");
        clock.advance(delay);
        client.trigger();
    }
    let last = final_event(&mut events, id).await;
    assert!(matches!(last, Event::Failed { reason: Reason::Error, .. }), "{last:?}");
    assert!(client.job_get(id).await.unwrap().is_none(), "the last attempt removes the job");
    let runs = client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.attempt, r.result, r.reason)).collect::<Vec<_>>(), [
        (3, Some(RunResult::Failed), Some(Reason::Error)),
        (2, Some(RunResult::Failed), Some(Reason::Error)),
        (1, Some(RunResult::Failed), Some(Reason::Error)),
    ]);
    node.shutdown().await;
}

async fn timeouts_and_memory_limits_fail_runs_with_their_reason(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "spin", TemplateDefaults { timeout_ms: 200, ..defaults(1) }).await;
    push(&client, "memory-hog", TemplateDefaults { memory_bytes: 16 << 20, ..defaults(1) }).await;
    let node = start(&client, &[("default", 2)]).await;
    let mut events = client.subscribe();
    let spin = client.enqueue(enqueue("spin", json!({}))).await.unwrap().id();
    let hog = client.enqueue(enqueue("memory-hog", json!({}))).await.unwrap().id();
    let mut reasons = BTreeMap::new();
    for _ in 0..2 {
        if let Event::Failed { job_id, reason, message, .. } = next_event(&mut events, |e| e.is_final()).await {
            reasons.insert(job_id, (reason, message));
        }
    }
    assert_eq!(reasons[&spin], (Reason::Timeout, "the run passed its timeout of 200ms".to_string()));
    assert_eq!(reasons[&hog].0, Reason::Memory);
    assert!(reasons[&hog].1.contains("memory limit of 16MiB"), "{}", reasons[&hog].1);
    node.shutdown().await;
}

async fn cancel_removes_a_queued_job_and_interrupts_a_running_one(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "spin", TemplateDefaults { timeout_ms: 60_000, ..defaults(3) }).await;
    push(&client, "hello", defaults(1)).await;
    let mut events = client.subscribe();
    let queued = client.enqueue(Enqueue { delay: Some(Duration::from_secs(600)), ..enqueue("hello", json!({"name": "x"})) }).await.unwrap().id();
    assert_eq!(client.cancel(queued).await.unwrap(), CancelOutcome::Removed);
    assert!(client.job_get(queued).await.unwrap().is_none());
    assert_eq!(
        next_event(&mut events, |e| e.job_id() == queued && e.is_final()).await,
        Event::Cancelled { job_id: queued, run_id: None }
    );

    let node = start(&client, &[("default", 2)]).await;
    // Cancel through this process (instant) and through another client on
    // the same database (the node's cancel poll), each once the run started.
    let other = db.client().await;
    for via_other in [false, true] {
        let id = client.enqueue(enqueue("spin", json!({}))).await.unwrap().id();
        next_event(&mut events, |e| e.job_id() == id && matches!(e, Event::Started { .. })).await;
        let canceller = if via_other { &other } else { &client };
        assert_eq!(canceller.cancel(id).await.unwrap(), CancelOutcome::Requested);
        let Event::Cancelled { run_id: Some(run_id), .. } = final_event(&mut events, id).await else { panic!() };
        let run = client.run_get(run_id).await.unwrap().unwrap();
        assert_eq!((run.result, run.reason), (Some(RunResult::Cancelled), Some(Reason::Cancelled)));
        assert!(client.job_get(id).await.unwrap().is_none(), "a cancelled job is not retried");
    }
    assert_eq!(client.cancel(JobId(i64::MAX)).await.unwrap(), CancelOutcome::NotFound);
    node.shutdown().await;
}

async fn a_unique_key_refuses_a_second_job_while_the_first_is_queued(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "hello", defaults(1)).await;
    let keyed = || Enqueue { unique_key: Some("greet-ada".into()), ..enqueue("hello", json!({"name": "Ada"})) };
    let Inserted::New(id) = client.enqueue(keyed()).await.unwrap() else { panic!() };
    assert_eq!(client.enqueue(keyed()).await.unwrap(), Inserted::Existing(id));
    assert_eq!(client.job_list(&JobFilter::default()).await.unwrap().len(), 1);
    let mut events = client.subscribe();
    let node = start(&client, &[("default", 1)]).await;
    final_event(&mut events, id).await;
    assert!(matches!(client.enqueue(keyed()).await.unwrap(), Inserted::New(n) if n != id), "the key is free once the job is done");
    node.shutdown().await;
}

async fn a_context_that_breaks_the_schema_is_refused_with_every_pointer_and_nothing_is_stored(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "wordfreq", defaults(1)).await;
    let err = client
        .enqueue(enqueue("wordfreq", json!({"text": "", "top": 0, "stopwords": ["ok", "two words"], "extra": 1})))
        .await
        .unwrap_err();
    let ClientError::Schema(SchemaError::ContextRejected(violations)) = &err else { panic!("{err}") };
    let mut pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
    pointers.sort();
    assert_eq!(pointers, ["", "/stopwords/1", "/text", "/top"]);
    let err = client
        .enqueue_batch(vec![enqueue("wordfreq", json!({"text": "fine"})), enqueue("wordfreq", json!({"txt": "typo"}))])
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Batch { index: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("job 1 of the batch was refused (nothing was enqueued)"), "{err}");
    let err = client.enqueue(enqueue("nope", json!({}))).await.unwrap_err();
    assert_eq!(err.to_string(), "there is no template named `nope`; push it first (`elihu template push nope FILE.wasm --schema FILE`)");
    assert!(client.job_list(&JobFilter::default()).await.unwrap().is_empty());
}

async fn bad_uploads_are_refused_and_nothing_stored_changes(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    let before = push(&client, "hello", defaults(2)).await;
    let schema = json!({"type": "object"});
    let none = elihu::store::TemplateSettings::default();
    let d = defaults(1);
    let cases: Vec<(&[u8], serde_json::Value, &str)> = vec![
        (b"not wasm at all", schema.clone(), "this file is not WebAssembly"),
        (crate::support::example("other-world"), schema.clone(), "it has no `run` export"),
        (crate::support::example("wrong-signature"), schema.clone(), "the component's `run` export has the wrong type"),
        (crate::support::example("noop"), json!({"type": "nonsense"}), "the schema is not a valid JSON Schema"),
    ];
    for (wasm, schema, expected) in cases {
        let err = client.template_push("hello", wasm, &schema, &d, &none).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    let err = client.template_push("bad name!", crate::support::example("noop"), &schema, &d, &none).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid template name: `bad name!`"), "{err}");
    let err = client
        .template_push("hello", crate::support::example("noop"), &schema, &TemplateDefaults { memory_bytes: 1 << 40, ..d.clone() }, &none)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid memory limit: 1024GiB"), "{err}");
    assert_eq!(client.template_list().await.unwrap(), vec![before], "the template is untouched");
}

/// The `version` example job answers with the version of the component
/// that ran (`version` is 1.0.0, `version-2` the same job as 2.0.0): the
/// outputs, not the digests recorded at claim time, show which one ran.
async fn a_template_update_applies_to_new_runs_and_runs_in_flight_keep_their_version(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    let v1 = push_as(&client, "job", "version", defaults(1)).await;
    let node = start(&client, &[("default", 2)]).await;
    let mut events = client.subscribe();
    let first = client.enqueue(enqueue("job", json!({"seconds": 0.3}))).await.unwrap().id();
    next_event(&mut events, |e| e.job_id() == first && matches!(e, Event::Started { .. })).await;
    let v2 = push_as(&client, "job", "version-2", defaults(1)).await;
    assert_eq!(v2.version, 2);
    let second = client.enqueue(enqueue("job", json!({}))).await.unwrap().id();
    let mut ran = BTreeMap::new();
    while ran.len() < 2 {
        if let Event::Succeeded { job_id, run_id, output } = next_event(&mut events, |e| e.is_final()).await {
            ran.insert(job_id, (output, client.run_get(run_id).await.unwrap().unwrap().digest));
        }
    }
    let version = |v: &str| json!({"version": v}).to_string();
    assert_eq!(ran[&first].0, version("1.0.0"), "the run in flight finished on the component it started with");
    assert_eq!(ran[&second].0, version("2.0.0"), "a new run takes the updated component");
    assert_eq!((&ran[&first].1, &ran[&second].1), (&v1.digest, &v2.digest), "each run records the component it ran");
    node.shutdown().await;
}

async fn events_and_stats_tell_what_happened(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "flaky", defaults(3)).await;
    let mut events = client.subscribe();
    let node = start(&client, &[("default", 1)]).await;
    let id = client.enqueue(enqueue("flaky", json!({"fail_times": 1}))).await.unwrap().id();
    let mut seen = Vec::new();
    loop {
        let e = next_event(&mut events, |e| e.job_id() == id).await;
        if let Event::Retried { run_at, .. } = &e {
            clock.set(*run_at);
            client.trigger();
        }
        let done = e.is_final();
        seen.push(e);
        if done {
            break;
        }
    }
    let kinds: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Enqueued { .. } => Some("enqueued"),
            Event::Started { .. } => Some("started"),
            Event::Retried { .. } => Some("retried"),
            Event::Succeeded { .. } => Some("succeeded"),
            Event::Log { .. } | Event::Progress { .. } => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["enqueued", "started", "retried", "started", "succeeded"]);
    assert!(seen.iter().any(|e| matches!(e, Event::Log { line, .. } if line.message == "attempt 1 fails on purpose")));
    let handle = node.handle();
    node.shutdown().await;
    assert_eq!(handle.finished(), 2, "the node counts the outcomes it recorded");
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!((s.template.as_str(), s.succeeded, s.failed, s.cancelled, s.queued, s.running), ("flaky", 1, 1, 0, 0, 0));
    assert!(s.duration_p50_ms.is_some() && s.duration_p95_ms >= s.duration_p50_ms);
}

async fn enqueue_and_run_goes_ahead_of_a_full_queue(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "spin", TemplateDefaults { timeout_ms: 60_000, ..defaults(1) }).await;
    push(&client, "hello", defaults(1)).await;
    let node = start(&client, &[("default", 1)]).await;
    let mut events = client.subscribe();
    let spin = client.enqueue(enqueue("spin", json!({}))).await.unwrap().id();
    next_event(&mut events, |e| e.job_id() == spin && matches!(e, Event::Started { .. })).await;
    let queued = client.enqueue(enqueue("hello", json!({"name": "queued"}))).await.unwrap().id();
    let now = node.enqueue_and_run(enqueue("hello", json!({"name": "now"}))).await.unwrap().id();
    assert!(matches!(final_event(&mut events, now).await, Event::Succeeded { .. }));
    assert_eq!(client.job_get(queued).await.unwrap().unwrap().state, JobState::Available, "the queue is still full");
    client.cancel(spin).await.unwrap();
    assert!(matches!(final_event(&mut events, queued).await, Event::Succeeded { .. }));
    node.shutdown().await;
}

/// Bildad's expire: a run whose node went silent is closed as `expired` and
/// its job runs again; the silent node's late outcome is refused (fencing).
async fn runs_of_a_silent_node_expire_and_their_jobs_run_again(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "hello", defaults(2)).await;
    let id = client.enqueue(enqueue("hello", json!({"name": "again"}))).await.unwrap().id();
    // A "ghost" node claims the job and then never heartbeats again.
    let now = clock.now();
    let ghost = client.store().job_claim("ghost", "default", 1, now, now + Duration::from_secs(30)).await.unwrap().jobs.remove(0);
    let mut events = client.subscribe();
    let node = start(&client, &[("default", 1)]).await;
    clock.advance(Duration::from_secs(31));
    let expired = next_event(&mut events, |e| matches!(e, Event::Expired { .. })).await;
    assert_eq!(expired, Event::Expired { job_id: id, run_id: ghost.run_id, node_id: "ghost".into(), retried: true });
    let Event::Succeeded { run_id, .. } = final_event(&mut events, id).await else { panic!() };
    // The ghost wakes up and reports success for its old attempt: refused.
    let late = RunEnd {
        run_id: ghost.run_id,
        job_id: id,
        node_id: "ghost".into(),
        ending: Ending::Succeeded { output: "\"late\"".into() },
        logs: vec![],
        progress: None,
        checkpoint: None,
        calls: vec![],
        finished_at: clock.now(),
    };
    assert!(!client.store().run_finish(&late, JobNext::Delete).await.unwrap());
    let runs = client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    let history: Vec<_> = runs.iter().map(|r| (r.id, r.attempt, r.node_id.as_str(), r.reason, r.output.as_deref())).collect();
    assert_eq!(history, [
        (run_id, 2, node.id(), None, Some("{\"greeting\":\"Hello, again!\"}")),
        (ghost.run_id, 1, "ghost", Some(Reason::Expired), None),
    ]);
    node.shutdown().await;
}

/// The grace period is measured by the injected clock: the short run ends
/// (an event) while the shutdown waits, then the clock passes the grace.
async fn shutdown_lets_runs_finish_within_the_grace_period_then_interrupts_the_rest(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, clock) = db.manual().await;
    push(&client, "sleepy", TemplateDefaults { timeout_ms: 120_000, ..defaults(1) }).await;
    let mut events = client.subscribe();
    let grace = Duration::from_secs(60);
    let config = elihu::NodeConfig { shutdown_grace: grace, ..node_config(&[("default", 2)]) };
    let node = Node::start(client.clone(), config).await.unwrap();
    let short = client.enqueue(enqueue("sleepy", json!({"seconds": 0.2}))).await.unwrap().id();
    let long = client.enqueue(enqueue("sleepy", json!({"seconds": 600}))).await.unwrap().id();
    for id in [short, long] {
        next_event(&mut events, |e| e.job_id() == id && matches!(e, Event::Started { .. })).await;
    }
    let shutdown = tokio::spawn(node.shutdown());
    assert!(matches!(final_event(&mut events, short).await, Event::Succeeded { .. }), "the short run finishes in the grace period");
    assert!(!shutdown.is_finished(), "the long run is still given its grace");
    clock.advance(grace);
    let report = shutdown.await.unwrap();
    assert_eq!((report.finished, report.interrupted), (1, 1));
    let short_run = &client.run_list(&RunFilter { job_id: Some(short), ..RunFilter::default() }).await.unwrap()[0];
    assert_eq!(short_run.result, Some(RunResult::Succeeded));
    let long_run = &client.run_list(&RunFilter { job_id: Some(long), ..RunFilter::default() }).await.unwrap()[0];
    assert_eq!((long_run.status, long_run.result, long_run.reason), (RunStatus::Done, Some(RunResult::Failed), Some(Reason::Shutdown)));
    let job = client.job_get(long).await.unwrap().expect("the interrupted job is queued again");
    assert_eq!((job.state, job.attempt), (JobState::Available, 0), "its attempt is given back");
    assert!(client.node_list().await.unwrap().is_empty(), "the node deregistered");
}

on_both_backends!(
    jobs_start_in_priority_then_run_at_order,
    a_delayed_job_waits_for_its_time,
    failures_retry_with_exponential_backoff_and_the_last_attempt_removes_the_job,
    timeouts_and_memory_limits_fail_runs_with_their_reason,
    cancel_removes_a_queued_job_and_interrupts_a_running_one,
    a_unique_key_refuses_a_second_job_while_the_first_is_queued,
    a_context_that_breaks_the_schema_is_refused_with_every_pointer_and_nothing_is_stored,
    bad_uploads_are_refused_and_nothing_stored_changes,
    a_template_update_applies_to_new_runs_and_runs_in_flight_keep_their_version,
    events_and_stats_tell_what_happened,
    enqueue_and_run_goes_ahead_of_a_full_queue,
    runs_of_a_silent_node_expire_and_their_jobs_run_again,
    shutdown_lets_runs_finish_within_the_grace_period_then_interrupts_the_rest,
);
