//! Traces end to end: `elihu serve` with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! pointed at a collector stub in this test; a job enqueued over HTTP with a
//! `traceparent` header runs, and at SIGTERM the run's span arrives with the
//! job's attributes, as a child of that traceparent. A bad traceparent is
//! refused and nothing is stored.

use serde_json::json;

use crate::support::node::*;
use crate::support::otlp::Collector;
use crate::support::process::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_span_reaches_the_collector_as_a_child_of_the_enqueue() {
    let collector = Collector::start().await;
    let db = TestDb::new();
    cli_push(&db, "hello", &[]);
    let server = Server::start_with_env(&db, &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)]);
    let client = reqwest::Client::new();
    let enqueue = |traceparent: &str, body: serde_json::Value| {
        client.post(format!("http://{}/v1/jobs", server.addr)).header("traceparent", traceparent).json(&body).send()
    };

    let refused = enqueue("00-00000000000000000000000000000000-00f067aa0ba902b7-01", json!({"template": "hello", "context": {"name": "x"}}))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("not a W3C traceparent"), "{error}");

    let response = enqueue(&format!("00-{TRACE}-{PARENT}-01"), json!({"template": "hello", "context": {"name": "traced"}})).await.unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"].as_i64().unwrap();
    let store = db.store().await;
    until("the traced job has run", || async { store.job_get(elihu::model::JobId(id)).await.unwrap().is_none() }).await;
    let runs = store.run_list(&elihu::store::RunFilter { limit: Some(10), ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 1, "only the traced job ran");

    // The graceful shutdown exports the spans still queued.
    server.signal("TERM");
    let (status, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
    let spans = collector.spans();
    let run = spans.iter().find(|s| s.name == "run").unwrap_or_else(|| panic!("a run span among {spans:#?}"));
    assert_eq!((run.trace_id.as_str(), run.parent_span_id.as_str()), (TRACE, PARENT), "{run:#?}");
    assert_eq!(run.attribute("job"), Some(id.to_string().as_str()), "{run:#?}");
    assert_eq!(run.attribute("run"), Some(runs[0].id.to_string().as_str()));
    assert_eq!(run.attribute("template"), Some("hello"));
    assert_eq!(run.attribute("attempt"), Some("1"));
    assert_eq!(run.attribute("node"), Some(runs[0].node_id.as_str()));
    assert_eq!(run.attribute("result"), Some("succeeded"));
    assert_eq!(run.service, "elihu");
}
