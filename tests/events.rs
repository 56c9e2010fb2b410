//! Live events over HTTP (`GET /v1/events`): a stream opened on node A sees a
//! job that node B runs start, report progress and finish, in that order,
//! whether B is another client in this process or (on PostgreSQL) would be
//! another machine: events cross nodes through the database only. Filters
//! and bad queries too.

use elihu::api::{ApiState, router};
use elihu::store::TemplateDefaults;
use elihu::{Client, Enqueue, Node};
use serde_json::{Value, json};

use crate::support::node::*;
use crate::support::sse::EventStream;

/// Serves the API of `client` (no node of its own) on a free loopback port.
async fn serve_api(client: &Client) -> String {
    let state = ApiState { client: client.clone(), node: None, token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    addr
}

fn job_of(data: &Value) -> Option<i64> {
    data["job_id"].as_i64()
}

/// Two nodes on one database, each with its own client (nothing shared in
/// memory): A serves the API and works queue `a`, B works queue `b`.
async fn two_nodes(db: &TestDb) -> (String, Client, Node, Node) {
    let client_a = db.client().await;
    let client_b = db.client().await;
    push(&client_a, "hostile", TemplateDefaults { max_attempts: 1, queue: "b".into(), ..TemplateDefaults::default() }).await;
    push(&client_a, "hello", TemplateDefaults { max_attempts: 1, queue: "b".into(), ..TemplateDefaults::default() }).await;
    let node_a = start(&client_a, &[("a", 2)]).await;
    let node_b = start(&client_b, &[("b", 2)]).await;
    (serve_api(&client_a).await, client_a, node_a, node_b)
}

/// Enqueues `hello` jobs on B until one's start shows up on the stream: from
/// then on B publishes. On PostgreSQL the first does (the watcher's NOTIFY
/// reaches B before the enqueue's); SQLite cannot push, so B learns of the
/// watcher at its next heartbeat, and a new probe goes in every 500 ms.
async fn until_b_publishes(client: &Client, stream: &mut EventStream) {
    let mut probes = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "node B did not publish its events within 30 s");
        probes.insert(client.enqueue(Enqueue::new("hello", json!({"name": "probe"}))).await.unwrap().id().0);
        let started = stream.next_where(|k, d| k == "started" && job_of(d).is_some_and(|id| probes.contains(&id)));
        if tokio::time::timeout(std::time::Duration::from_millis(500), started).await.is_ok() {
            return;
        }
    }
}

async fn a_stream_on_one_node_sees_another_nodes_run_in_order(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (addr, client_a, node_a, node_b) = two_nodes(&db).await;
    let mut stream = EventStream::open(&addr, "").await;
    if backend == Backend::Sqlite {
        until_b_publishes(&client_a, &mut stream).await;
    }
    let mut filtered = EventStream::open(&addr, "template=hostile&queue=b").await;
    let id = client_a
        .enqueue(Enqueue::new("hostile", json!({"mode": "progress-flood", "count": 300_000})))
        .await
        .unwrap()
        .id()
        .0;
    let mut seen = Vec::new();
    loop {
        let (kind, data) = stream.next_where(|_, d| job_of(d) == Some(id)).await;
        assert_eq!(data["event"], kind.as_str(), "{data}");
        if kind != "enqueued" {
            assert_eq!((data["template"].as_str(), data["queue"].as_str()), (Some("hostile"), Some("b")), "{data}");
        }
        if kind == "started" {
            assert_eq!(data["node_id"], node_b.id(), "B ran it");
        }
        let last = kind == "succeeded" || kind == "failed";
        seen.push(kind);
        if last {
            break;
        }
    }
    // Enqueued comes from A (this process), the rest from B through the database.
    seen.retain(|k| k != "enqueued");
    seen.dedup();
    assert_eq!(seen, ["started", "progress", "succeeded"], "in order");
    // The filtered stream sees the same job.
    let (kind, data) = filtered.next_where(|_, d| job_of(d) == Some(id) && d["event"] != "enqueued").await;
    assert_eq!(kind, "started", "{data}");
    node_a.shutdown().await;
    node_b.shutdown().await;
}

on_both_backends!(a_stream_on_one_node_sees_another_nodes_run_in_order);

/// Filters keep other templates' and other jobs' events out, and a bad
/// query is refused with the API's error shape.
#[tokio::test]
async fn filters_keep_other_jobs_out_and_bad_queries_are_refused() {
    let db = TestDb::new();
    let client = db.client().await;
    push(&client, "hello", TemplateDefaults { max_attempts: 1, ..TemplateDefaults::default() }).await;
    push(&client, "panic", TemplateDefaults { max_attempts: 1, ..TemplateDefaults::default() }).await;
    let node = start(&client, &[("default", 2)]).await;
    let addr = serve_api(&client).await;
    let (status, body) = http(&addr, "GET", "/v1/events?jobs=1", None, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("job, template and queue"), "{body}");

    // The queue is paused until both streams are open, so no run can end
    // before a stream that waits for it is there.
    client.queue_pause("default").await.unwrap();
    let mut panics = EventStream::open(&addr, "template=panic").await;
    let hello = client.enqueue(Enqueue::new("hello", json!({"name": "x"}))).await.unwrap().id().0;
    let mut only_hello = EventStream::open(&addr, &format!("job={hello}")).await;
    let panic = client.enqueue(Enqueue::new("panic", json!({"message": "boom"}))).await.unwrap().id().0;
    client.queue_resume("default").await.unwrap();
    let (kind, data) = panics.next_where(|k, _| k == "failed").await;
    assert_eq!((job_of(&data), data["reason"].as_str()), (Some(panic), Some("trap")), "{kind}: {data}");
    // The job filter saw only its job, up to its end.
    loop {
        let (kind, data) = only_hello.next().await;
        assert_eq!(job_of(&data), Some(hello), "{data}");
        if kind == "succeeded" {
            assert!(data.get("output").is_none() && data["output_bytes"].as_u64().unwrap() > 0, "outputs are not sent: {data}");
            break;
        }
    }
    node.shutdown().await;
}

/// `/v1/events` and `/metrics` are behind the API token like every route.
#[tokio::test]
async fn events_and_metrics_need_the_token() {
    let db = TestDb::new();
    let client = db.client().await;
    let state = ApiState { client: client.clone(), node: None, token: Some("s3cret".into()) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    for path in ["/v1/events", "/metrics"] {
        let (status, body) = http(&addr, "GET", path, None, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, _) = http(&addr, "GET", path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, body) = http(&addr, "GET", "/metrics", Some("s3cret"), None).await;
    assert_eq!(status, 200);
    // Labelled families appear with their first sample; plain ones at once.
    assert!(body.as_str().unwrap().contains("# TYPE elihu_claim_batch histogram"), "{body}");
    let events = reqwest::Client::new().get(format!("http://{addr}/v1/events")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
}
