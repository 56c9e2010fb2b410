//! The HTTP API end to end over a real socket: the flow from upload to run,
//! the one error shape, auth, the engine trigger, and the OpenAPI document
//! matching the routes.

use elihu::api::openapi_document;
use elihu::model::JobId;
use elihu::{Client, Event};
use serde_json::{Value, json};

use crate::support::example;
use crate::support::node::*;

/// Serves the API of `client` (with a node) on a free loopback port.
async fn serve(client: &Client, token: Option<&str>) -> (String, elihu::Node) {
    let node = start(client, &[("default", 2)]).await;
    let addr = serve_api(client, Some(&node), token).await;
    (addr, node)
}

fn wasm(bytes: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/wasm", bytes.to_vec()))
}

fn schema_of(name: &str) -> Value {
    serde_json::from_str(elihu::examples::get(name).unwrap().schema.unwrap()).unwrap()
}

async fn upload(addr: &str, name: &str, extra: Value) -> Value {
    let (status, body) = http(addr, "PUT", "/v1/components", None, wasm(example(name))).await;
    assert_eq!(status, 201, "{body}");
    let mut template = json!({"digest": body["digest"], "schema": schema_of(name)});
    template.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, body) = http(addr, "PUT", &format!("/v1/templates/{name}"), None, json_body(template)).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_job_goes_from_upload_to_run_over_http() {
    let db = TestDb::new();
    let client = db.client().await;
    let (addr, node) = serve(&client, None).await;
    let template = upload(&addr, "hello", json!({"max_attempts": 2, "timeout": "5s", "memory": "32MiB", "config": {"greeting": "Hi"}})).await;
    assert_eq!((template["version"].as_i64(), template["defaults"]["memory_bytes"].as_u64()), (Some(1), Some(32 << 20)));
    let (status, list) = http(&addr, "GET", "/v1/templates", None, None).await;
    assert_eq!((status, list["templates"][0]["name"].as_str()), (200, Some("hello")));

    let mut events = client.subscribe();
    let (status, job) = http(&addr, "POST", "/v1/jobs", None, json_body(json!({"template": "hello", "context": {"name": "Ada"}}))).await;
    assert_eq!((status, job["status"].as_str()), (201, Some("new")), "{job}");
    let id = JobId(job["id"].as_i64().unwrap());
    let Event::Succeeded { run_id, .. } = final_event(&mut events, id).await else { panic!() };
    let (status, run) = http(&addr, "GET", &format!("/v1/runs/{run_id}"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(run["output"], "{\"greeting\":\"Hi, Ada!\"}");
    assert_eq!(run["result"], "succeeded");
    assert_eq!(run["logs"][0]["message"], format!("greeting Ada (job {id}, attempt 1)"));
    let (_, runs) = http(&addr, "GET", &format!("/v1/runs?job_id={id}"), None, None).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let (_, stats) = http(&addr, "GET", "/v1/stats", None, None).await;
    assert_eq!(stats["templates"][0]["succeeded"], 1);
    let (_, nodes) = http(&addr, "GET", "/v1/nodes", None, None).await;
    assert_eq!(nodes["nodes"][0]["id"], node.id());

    // Batch, run_now, and the engine trigger.
    let batch = json!({"jobs": [{"template": "hello", "context": {"name": "a"}}, {"template": "hello", "context": {"name": "b"}, "delay": "1h"}]});
    let (status, body) = http(&addr, "POST", "/v1/jobs/batch", None, json_body(batch)).await;
    assert_eq!((status, body["jobs"].as_array().unwrap().len()), (201, 2), "{body}");
    let delayed = body["jobs"][1]["id"].as_i64().unwrap();
    let (status, body) = http(&addr, "GET", "/v1/jobs?state=available&template=hello", None, None).await;
    assert_eq!(status, 200);
    assert!(body["jobs"].as_array().unwrap().iter().any(|j| j["id"].as_i64() == Some(delayed)), "{body}");
    let (status, body) = http(&addr, "POST", &format!("/v1/jobs/{delayed}/cancel"), None, None).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("removed")));
    let (status, body) = http(&addr, "POST", "/v1/jobs", None, json_body(json!({"template": "hello", "context": {"name": "now"}, "run_now": true}))).await;
    assert_eq!(status, 201, "{body}");
    assert!(matches!(final_event(&mut events, JobId(body["id"].as_i64().unwrap())).await, Event::Succeeded { .. }));
    let (status, body) = http(&addr, "POST", "/v1/engine/run", None, None).await;
    assert_eq!((status, body["triggered"].as_bool()), (202, Some(true)));
    node.shutdown().await;
}

/// Every error has the shape `{"error": {"code", "message", "details"}}`, a
/// 4xx status, a message naming the problem, and leaves the store untouched.
#[tokio::test]
async fn bad_requests_get_one_error_shape_and_change_nothing() {
    let db = TestDb::new();
    let client = db.client().await;
    let (addr, node) = serve(&client, None).await;
    upload(&addr, "wordfreq", json!({})).await;
    let (_, before) = http(&addr, "GET", "/v1/templates/wordfreq", None, None).await;
    let cases: Vec<(&str, String, Option<(&str, Vec<u8>)>, u16, &str, &str)> = vec![
        ("POST", "/v1/jobs".into(), json_body(json!({"template": "wordfreq", "context": {"text": "", "top": 0}})), 422, "context_rejected", "the context does not match the template's schema"),
        ("POST", "/v1/jobs".into(), json_body(json!({"template": "nope"})), 404, "unknown_template", "there is no template named `nope`"),
        ("POST", "/v1/jobs".into(), Some(("application/json", b"{not json".to_vec())), 400, "bad_request", "the request body is not what this route takes"),
        ("POST", "/v1/jobs".into(), json_body(json!({"template": "wordfreq", "context": {"text": "x"}, "delay": "soon"})), 400, "bad_request", "delay: `soon` is not a duration"),
        ("POST", "/v1/jobs/batch".into(), json_body(json!({"jobs": [{"template": "wordfreq", "context": {"text": "x"}}, {"template": "wordfreq", "context": {}}]})), 422, "context_rejected", "job 1 of the batch was refused"),
        ("PUT", "/v1/components".into(), wasm(b"MZ not wasm"), 422, "invalid_component", "this file is not WebAssembly"),
        ("PUT", "/v1/components".into(), wasm(example("other-world")), 422, "invalid_component", "it has no `run` export"),
        ("PUT", "/v1/templates/wordfreq".into(), json_body(json!({"digest": "0".repeat(64), "schema": {}})), 422, "unknown_component", "there is no component with digest"),
        ("PUT", "/v1/templates/wordfreq".into(), json_body(json!({"digest": before["digest"], "schema": {"type": 12}})), 422, "invalid_schema", "the schema is not a valid JSON Schema"),
        ("PUT", "/v1/templates/wordfreq".into(), json_body(json!({"digest": before["digest"], "schema": {}, "max_attempts": 0})), 400, "invalid", "invalid max attempts: 0"),
        ("GET", "/v1/templates/nope".into(), None, 404, "unknown_template", "there is no template named `nope`"),
        ("GET", "/v1/jobs/999".into(), None, 404, "not_found", "there is no queued or running job 999"),
        ("GET", "/v1/jobs?state=done".into(), None, 400, "bad_request", "state: `done` is not `available` or `running`"),
        ("POST", "/v1/jobs/999/cancel".into(), None, 404, "not_found", "there is no queued or running job 999"),
        ("GET", "/v1/runs/999".into(), None, 404, "not_found", "there is no run 999"),
        ("GET", "/v1/nowhere".into(), None, 404, "not_found", "no such route"),
    ];
    for (method, path, body, status, code, message) in cases {
        let (got, json) = http(&addr, method, &path, None, body).await;
        assert_eq!(got, status, "{method} {path}: {json}");
        assert_eq!(json["error"]["code"], code, "{method} {path}: {json}");
        let text = json["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{method} {path}: {text}");
        assert!(json["error"].get("details").is_some(), "{json}");
    }
    let (_, rejected) = http(&addr, "POST", "/v1/jobs", None, json_body(json!({"template": "wordfreq", "context": {"text": "", "top": 0}}))).await;
    let mut pointers: Vec<&str> = rejected["error"]["details"]["violations"].as_array().unwrap().iter().map(|v| v["pointer"].as_str().unwrap()).collect();
    pointers.sort();
    assert_eq!(pointers, ["/text", "/top"]);

    // A template with a queued job cannot be deleted without force.
    http(&addr, "POST", "/v1/jobs", None, json_body(json!({"template": "wordfreq", "context": {"text": "x"}, "delay": "1h"}))).await;
    let (status, body) = http(&addr, "DELETE", "/v1/templates/wordfreq", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("template_in_use")), "{body}");
    let (_, after) = http(&addr, "GET", "/v1/templates/wordfreq", None, None).await;
    assert_eq!(before, after, "nothing stored changed");
    let (status, _) = http(&addr, "DELETE", "/v1/templates/wordfreq?force=true", None, None).await;
    assert_eq!(status, 204);
    assert!(client.job_list(&Default::default()).await.unwrap().is_empty());
    node.shutdown().await;
    // No request left a connection holding the write lock: the node deregistered.
    assert!(client.node_list().await.unwrap().is_empty());
}

/// Every operation of the OpenAPI document (method, path) with its path
/// parameters filled in with names and ids that do not exist.
fn operations() -> Vec<(String, String, serde_json::Value)> {
    let doc = serde_json::to_value(openapi_document()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if let Some(operation) = item.get(method) {
                let concrete = path.replace("{name}", "nope").replace("{id}", "999999");
                out.push((method.to_uppercase(), concrete, operation.clone()));
            }
        }
    }
    out
}

/// With a token, every route the router has refuses a request without it or
/// with another, and takes one with it: each operation of the OpenAPI
/// document (utoipa derives the document and the router from the same route
/// registrations) and the fallback.
#[tokio::test]
async fn a_configured_token_guards_every_route() {
    let db = TestDb::new();
    let client = db.client().await;
    let (addr, node) = serve(&client, Some("s3cret")).await;
    let mut routes: Vec<(String, String)> = operations().into_iter().map(|(m, p, _)| (m, p)).collect();
    assert_eq!(routes.len(), 31, "{routes:?}");
    routes.push(("GET".into(), "/v1/nowhere".into()));
    for (method, path) in &routes {
        let (status, body) = http(&addr, method, path, None, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{method} {path} without a token");
        let (status, _) = http(&addr, method, path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{method} {path} with a wrong token");
        let (status, body) = http(&addr, method, path, Some("s3cret"), None).await;
        assert_ne!(status, 401, "{method} {path} with the token: {body}");
    }
    let (status, body) = http(&addr, "GET", "/v1/health", Some("s3cret"), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    node.shutdown().await;
}

/// Every operation in `/v1/openapi.json` is routed (no bare 404 or 405) and
/// answers a status it documents, with a response schema for each; a path
/// it does not list is not routed.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let db = TestDb::new();
    let client = db.client().await;
    let (addr, node) = serve(&client, None).await;
    let (status, doc) = http(&addr, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(openapi_document()).unwrap(), "the served document is the generated one");
    let operations = operations();
    for (method, path, operation) in &operations {
        let (status, body) = http(&addr, method, path, None, None).await;
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        if status == 404 {
            assert_ne!(body["error"]["message"].as_str().map(|m| m.starts_with("no such route")), Some(true), "{method} {path} is documented but not routed");
        }
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.contains_key(&status.to_string()), "{method} {path} answered {status}, documented {:?}", responses.keys());
        for (code, response) in responses {
            if code != "204" {
                assert!(response["content"]["application/json"]["schema"].is_object(), "{method} {path} {code} has no response schema");
            }
        }
    }
    assert_eq!(operations.len(), 31);
    let (status, _) = http(&addr, "PATCH", "/v1/templates/x", None, None).await;
    assert_eq!(status, 405);
    node.shutdown().await;
}
