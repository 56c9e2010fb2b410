//! `GET /metrics` end to end: after a mixed workload (successes, a retried
//! failure, a trap, a memory cap, a timeout, a cancel), the Prometheus text
//! parses and its counters match the runs table.

use std::collections::BTreeMap;

use elihu::api::{ApiState, router};
use elihu::model::Millis;
use elihu::store::{RunFilter, TemplateDefaults};
use elihu::{Client, Enqueue, Event};
use prometheus_parse::{Scrape, Value};
use serde_json::json;

use crate::support::node::*;

fn template(max_attempts: u32, timeout_ms: u64, memory_bytes: u64) -> TemplateDefaults {
    TemplateDefaults { max_attempts, timeout_ms, memory_bytes, backoff_base_ms: 10, backoff_max_ms: 10, ..TemplateDefaults::default() }
}

async fn scrape(client: &Client, node: &elihu::Node) -> Scrape {
    let state = ApiState { client: client.clone(), node: Some(node.handle()), token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let response = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the metrics parse")
}

/// The value of each sample of `metric`, by the values of `labels`.
fn samples(scrape: &Scrape, metric: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| {
            let key = labels.iter().map(|l| s.labels.get(l).unwrap_or("").to_string()).collect();
            let value = match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                other => panic!("{metric}: unexpected {other:?}"),
            };
            (key, value)
        })
        .collect()
}

async fn counters_match_the_runs_table_after_a_mixed_workload(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = db.client().await;
    push(&client, "hello", template(1, 30_000, 64 << 20)).await;
    push(&client, "flaky", template(2, 30_000, 64 << 20)).await;
    push(&client, "panic", template(1, 30_000, 64 << 20)).await;
    push(&client, "memory-hog", template(1, 30_000, 8 << 20)).await;
    push(&client, "spin", template(1, 300, 64 << 20)).await;
    let node = start(&client, &[("default", 4)]).await;
    let mut events = client.subscribe();
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(client.enqueue(Enqueue::new("hello", json!({"name": format!("n{i}")}))).await.unwrap().id());
    }
    for (name, context) in [
        ("flaky", json!({"fail_times": 1})),
        ("panic", json!({"message": "boom"})),
        ("memory-hog", json!({"chunk_mib": 4})),
        ("spin", json!({})),
    ] {
        jobs.push(client.enqueue(Enqueue::new(name, context)).await.unwrap().id());
    }
    let cancelled = client
        .enqueue(Enqueue { timeout: Some(std::time::Duration::from_secs(60)), ..Enqueue::new("spin", json!({})) })
        .await
        .unwrap()
        .id();
    jobs.push(cancelled);
    // Cancel the long spin once it runs; wait for every job's final event.
    let mut open: std::collections::BTreeSet<_> = jobs.iter().copied().collect();
    while !open.is_empty() {
        let event = next_event(&mut events, |e| open.contains(&e.job_id())).await;
        if matches!(event, Event::Started { job_id, .. } if job_id == cancelled) {
            client.cancel(cancelled).await.unwrap();
        }
        if event.is_final() {
            open.remove(&event.job_id());
        }
    }
    // One job waits an hour: a cluster gauge.
    let later = Enqueue { run_at: Some(Millis(client.clock().now().0 + 3_600_000)), ..Enqueue::new("hello", json!({"name": "later"})) };
    client.enqueue(later).await.unwrap();

    let scrape = scrape(&client, &node).await;
    let runs = client.run_list(&RunFilter { limit: Some(1000), ..RunFilter::default() }).await.unwrap();
    let mut expected: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for run in &runs {
        let key = vec![
            run.template.clone(),
            run.result.expect("every run is done").as_str().to_string(),
            run.reason.map_or("", |r| r.as_str()).to_string(),
        ];
        *expected.entry(key).or_default() += 1.0;
    }
    let reasons: Vec<&str> = expected.keys().map(|k| k[2].as_str()).collect();
    for reason in ["", "error", "trap", "memory", "timeout", "cancelled"] {
        assert!(reasons.contains(&reason), "the workload has a run with reason `{reason}`: {expected:?}");
    }
    let finished = samples(&scrape, "elihu_runs_finished_total", &["template", "result", "reason"]);
    assert_eq!(finished, expected, "runs_finished matches the runs table");

    let mut per_template: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for run in &runs {
        *per_template.entry(vec![run.template.clone()]).or_default() += 1.0;
    }
    let durations = samples(&scrape, "elihu_run_duration_seconds", &["template"]);
    assert_eq!(durations, per_template, "one duration per run");
    let enqueued: f64 = samples(&scrape, "elihu_jobs_enqueued_total", &["template"]).values().sum();
    assert_eq!(enqueued, 9.0, "every enqueue, the waiting one too");
    let queue = samples(&scrape, "elihu_queue_jobs", &["queue", "state"]);
    assert_eq!(queue.get(&vec!["default".to_string(), "scheduled".to_string()]), Some(&1.0), "{queue:?}");
    let up = samples(&scrape, "elihu_node_up", &["node"]);
    assert_eq!(up.get(&vec![node.id().to_string()]), Some(&1.0));
    let running: f64 = samples(&scrape, "elihu_running", &["queue"]).values().sum();
    assert_eq!(running, 0.0, "nothing in flight");
    assert!(samples(&scrape, "elihu_run_memory_bytes", &["template"]).contains_key(&vec!["hello".to_string()]));
    node.shutdown().await;
}

on_both_backends!(counters_match_the_runs_table_after_a_mixed_workload);
