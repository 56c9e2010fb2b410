//! Grants, secrets and the audit through a node, on SQLite and PostgreSQL:
//! templates granting hosts (with a secret as bearer token) reach test
//! servers on 127.0.0.1 and nothing else; the forgery guard, redirects,
//! slow servers, limits and TCP end as the issue says; every call is in the
//! run's audit, exactly; a secret's value is nowhere in the database but in
//! its sealed row; a node without the key (or with another) refuses to
//! start; bad grants, secrets and limits are refused with nothing stored.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elihu::api::{ApiState, router};
use elihu::clock::SystemClock;
use elihu::grants::{AllowedHost, Grants, HeaderGrant};
use elihu::model::{Call, JobId, LogLevel, Reason, RunResult, TemplateLimits};
use elihu::runtime::{Runtime, RuntimeConfig};
use elihu::secrets::SecretsKey;
use elihu::store::{Run, RunFilter, TemplateDefaults, TemplateSettings};
use elihu::{Client, ClientError, Enqueue, Event, Node};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::support::artifact_dir;
use crate::support::node::*;
use crate::support::servers::{LineServer, TestServer};

pub(crate) const TOKEN: &str = "tok-0f3a9c2e71b84d55";

/// A node on a fresh database of `backend`, its client holding `key` and
/// trusting `ca_file` for outbound HTTPS.
pub(crate) struct Outbound {
    db: TestDb,
    pub(crate) client: Client,
    pub(crate) node: Node,
    events: broadcast::Receiver<Event>,
}

async fn client_on(db: &TestDb, ca_file: Option<&Path>, key: Option<SecretsKey>) -> Client {
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 8,
        artifact_dir: Some(artifact_dir().to_path_buf()),
        ca_file: ca_file.map(Path::to_path_buf),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let client = Client::new(db.store().await, Arc::new(runtime), Arc::new(SystemClock));
    client.set_secrets_key(key);
    client
}

impl Outbound {
    pub(crate) async fn start(backend: Backend, ca_file: Option<&Path>) -> Outbound {
        let db = TestDb::on(backend).await;
        let client = client_on(&db, ca_file, Some(SecretsKey::generate())).await;
        let node = start(&client, &[("default", 4)]).await;
        let events = client.subscribe();
        Outbound { db, client, node, events }
    }

    /// Pushes example `example` as template `name` with these settings.
    async fn push(&self, name: &str, example: &str, timeout_ms: u64, settings: TemplateSettings) {
        let job = elihu::examples::get(example).unwrap();
        let schema = serde_json::from_str(job.schema.unwrap()).unwrap();
        self.push_wasm(name, job.wasm, &schema, timeout_ms, settings).await;
    }

    /// Pushes the component `wasm` as template `name` (one attempt per job).
    pub(crate) async fn push_wasm(&self, name: &str, wasm: &[u8], schema: &Value, timeout_ms: u64, settings: TemplateSettings) {
        let defaults = TemplateDefaults { max_attempts: 1, timeout_ms, ..TemplateDefaults::default() };
        self.client.template_push(name, wasm, schema, &defaults, &settings).await.expect("template push");
    }

    /// Enqueues and waits for the job's end; its one run.
    pub(crate) async fn run(&mut self, request: Enqueue) -> Run {
        let id = self.client.enqueue(request).await.expect("enqueued").id();
        final_event(&mut self.events, id).await;
        self.only_run(id).await
    }

    async fn only_run(&self, id: JobId) -> Run {
        let mut runs = self.client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs.remove(0)
    }
}

pub(crate) fn settings(hosts: &[&str]) -> TemplateSettings {
    let allowed_hosts = hosts.iter().map(|h| AllowedHost::parse(h).unwrap()).collect();
    TemplateSettings { grants: Grants { allowed_hosts, ..Grants::default() }, ..TemplateSettings::default() }
}

/// Grants `server` with the webhook token as bearer header, and its `url`.
fn webhook_settings(server: &TestServer) -> TemplateSettings {
    let mut s = settings(&[&server.origin()]);
    let host = AllowedHost::parse(&server.origin()).unwrap();
    s.grants.headers.push(HeaderGrant::parse(host, "Authorization=Bearer {{secret:hook_token}}").unwrap());
    s.config.insert("url".into(), server.url("/hook"));
    s
}

/// (method, target, status, refused, bytes sent, bytes received) of each call.
pub(crate) fn rows(run: &Run) -> Vec<(String, String, Option<u16>, bool, Option<u64>, Option<u64>)> {
    run.calls.iter().map(|c: &Call| (c.method.clone(), c.target.clone(), c.status, c.denied.is_some(), c.bytes_sent, c.bytes_received)).collect()
}

pub(crate) fn host_lines(run: &Run) -> Vec<&str> {
    run.logs.iter().filter(|l| l.level == LogLevel::Host).map(|l| l.message.as_str()).collect()
}

pub(crate) fn failed(run: &Run) -> (Reason, &str) {
    assert_eq!(run.result, Some(RunResult::Failed), "{run:?}");
    (run.reason.unwrap(), run.message.as_deref().unwrap())
}

pub(crate) fn output(run: &Run) -> Value {
    assert_eq!(run.result, Some(RunResult::Succeeded), "{run:?}");
    serde_json::from_str(run.output.as_deref().unwrap()).unwrap()
}

async fn webhook_with_its_secret_reaches_granted_servers_and_nothing_else(backend: Backend) {
    let plain = TestServer::http().await;
    let tls = TestServer::https().await;
    let mut o = Outbound::start(backend, tls.ca_file.as_deref()).await;
    o.client.secret_set("hook_token", TOKEN.as_bytes()).await.unwrap();
    o.push("hook-http", "webhook", 30_000, webhook_settings(&plain)).await;
    o.push("hook-https", "webhook", 30_000, webhook_settings(&tls)).await;
    let mut ungranted = TemplateSettings::default();
    ungranted.config.insert("url".into(), plain.url("/hook?sig=abc"));
    o.push("hook-ungranted", "webhook", 30_000, ungranted).await;
    let context = json!({"order": 42});
    let sent = context.to_string().len() as u64;

    for (template, server) in [("hook-http", &plain), ("hook-https", &tls)] {
        let run = o.run(Enqueue::new(template, context.clone())).await;
        assert_eq!(output(&run), json!({"status": 200}), "{template}");
        let seen = server.seen();
        assert_eq!(seen.len(), 1, "{template}");
        assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()), "{template}");
        assert_eq!(serde_json::from_slice::<Value>(&seen[0].body).unwrap(), context);
        assert_eq!(rows(&run), [("POST".into(), server.url("/hook"), Some(200), false, Some(sent), Some(11))], "{template}");
    }

    let run = o.run(Enqueue::new("hook-ungranted", context.clone())).await;
    let (reason, message) = failed(&run);
    assert_eq!(reason, Reason::Error);
    assert!(message.contains("was denied"), "{message}");
    assert_eq!(plain.seen().len(), 1, "the server saw nothing more");
    let target = format!("http://127.0.0.1:{}/hook", plain.addr.port());
    assert_eq!(
        host_lines(&run),
        [format!("outbound POST {target} refused: template \"hook-ungranted\" grants no such host (allowed: none)").as_str()]
    );
    assert_eq!(rows(&run), [("POST".into(), target, None, true, None, None)], "the query string is not recorded");

    // The audit is part of the run in the API, and counted in stats.
    let state = ApiState { client: o.client.clone(), node: None, token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let (status, body) = http(&addr, "GET", &format!("/v1/runs/{}", run.id), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["calls"], serde_json::to_value(&run.calls).unwrap());
    let stats = o.client.stats().await.unwrap();
    let calls: Vec<_> = stats.iter().map(|s| (s.template.as_str(), s.calls, s.calls_denied)).collect();
    assert_eq!(calls, [("hook-http", 1, 0), ("hook-https", 1, 0), ("hook-ungranted", 1, 1)]);
    o.node.shutdown().await;
}

async fn the_forgery_guard_and_redirects_are_enforced_through_a_node(backend: Backend) {
    let granted = TestServer::http().await;
    let other = TestServer::http().await;
    let mut o = Outbound::start(backend, None).await;
    let by_name = format!("http://localhost:{}", granted.addr.port());
    o.push("fetch-by-name", "fetch", 30_000, settings(&[&by_name])).await;
    o.push("fetch-granted", "fetch", 30_000, settings(&[&granted.origin()])).await;

    let run = o.run(Enqueue::new("fetch-by-name", json!({"url": format!("{by_name}/hook")}))).await;
    let error = output(&run)["results"][0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("internal address"), "{error}");
    assert!(granted.seen().is_empty(), "the guard let a request through");
    assert!(host_lines(&run)[0].contains("localhost resolves to"), "{:?}", host_lines(&run));
    assert_eq!(rows(&run), [("GET".into(), format!("{by_name}/hook"), None, true, None, None)]);

    let to = other.url("/hook");
    let run = o.run(Enqueue::new("fetch-granted", json!({"url": granted.url(&format!("/redirect?to={to}"))}))).await;
    assert!(output(&run)["results"][0]["error"].as_str().unwrap().starts_with(&format!("the request to {to} was denied")));
    assert!(other.seen().is_empty(), "the redirect reached an ungranted host");
    assert_eq!(
        rows(&run),
        [
            ("GET".into(), format!("{}/redirect", granted.origin()), Some(302), false, Some(0), Some(0)),
            ("GET".into(), to.clone(), None, true, None, None),
        ]
    );

    // A job may narrow its template's grants, never widen them.
    let narrow = Enqueue { allowed_hosts: Some(vec![AllowedHost::parse("http://127.0.0.1:1").unwrap()]), ..Enqueue::new("fetch-granted", json!({"url": granted.url("/hook")})) };
    let err = o.client.enqueue(narrow).await.unwrap_err();
    assert!(matches!(err, ClientError::Grant(_)), "{err}");
    assert!(err.to_string().contains("which its template `fetch-granted` does not grant"), "{err}");
    let narrowed = Enqueue {
        allowed_hosts: Some(vec![AllowedHost::parse(&granted.origin()).unwrap()]),
        ..Enqueue::new("fetch-granted", json!({"url": granted.url("/hook")}))
    };
    assert_eq!(output(&o.run(narrowed).await)["results"][0]["status"], 200);
    o.node.shutdown().await;
}

async fn a_slow_server_times_out_and_a_cancel_cuts_the_call(backend: Backend) {
    let server = TestServer::http().await;
    let mut o = Outbound::start(backend, None).await;
    o.push("slow", "fetch", 400, settings(&[&server.origin()])).await;
    let run = o.run(Enqueue::new("slow", json!({"url": server.url("/slow")}))).await;
    assert_eq!(failed(&run), (Reason::Timeout, "the run passed its timeout of 400ms"));
    assert_eq!(run.calls[0].error.as_deref(), Some("the run ended before the response arrived"));
    server.until_slow_dropped(1).await;

    let id = o.client.enqueue(Enqueue { timeout: Some(Duration::from_secs(60)), ..Enqueue::new("slow", json!({"url": server.url("/slow")})) }).await.unwrap().id();
    server.until_seen(2).await;
    let asked = Instant::now();
    o.client.cancel(id).await.unwrap();
    assert!(matches!(final_event(&mut o.events, id).await, Event::Cancelled { .. }));
    assert!(asked.elapsed() < Duration::from_secs(1), "the cancel took {:?}", asked.elapsed());
    assert_eq!(o.only_run(id).await.reason, Some(Reason::Cancelled));
    server.until_slow_dropped(2).await;
    o.node.shutdown().await;
}

async fn outbound_limits_fail_the_run_and_the_node_runs_the_next_job(backend: Backend) {
    let server = TestServer::http().await;
    let mut o = Outbound::start(backend, None).await;
    let mut capped = settings(&[&server.origin()]);
    capped.limits = TemplateLimits { max_response_body_bytes: Some(1000), max_requests: Some(3), ..TemplateLimits::default() };
    o.push("capped", "fetch", 30_000, capped).await;
    o.push("hello", "hello", 30_000, TemplateSettings::default()).await;
    let port = server.addr.port();

    let run = o.run(Enqueue::new("capped", json!({"url": server.url("/big?bytes=5000")}))).await;
    assert_eq!(
        failed(&run),
        (
            Reason::Error,
            format!("an outbound request to http://127.0.0.1:{port}/big failed: the response body of 4.9KiB is over the limit of 1000B (max_response_body_bytes)").as_str()
        )
    );
    assert_eq!(rows(&run), [("GET".into(), format!("http://127.0.0.1:{port}/big"), Some(200), false, Some(0), Some(0))]);

    let run = o.run(Enqueue::new("capped", json!({"url": server.url("/hook"), "times": 5}))).await;
    assert_eq!(failed(&run), (Reason::Error, "the job made more than 3 outbound requests and connections (the limit max_requests)"));
    assert_eq!(run.calls.len(), 4);
    assert_eq!(run.calls.iter().filter(|c| c.status == Some(200) && c.bytes_received == Some(11)).count(), 3);
    assert!(run.calls[3].denied.as_deref().unwrap().contains("limit of 3"));
    assert_eq!(server.seen().len(), 1 + 3);

    let run = o.run(Enqueue::new("hello", json!({"name": "after"}))).await;
    assert_eq!(output(&run), json!({"greeting": "Hello, after!"}));
    o.node.shutdown().await;
}

async fn a_tcp_job_reaches_its_granted_port_and_no_other(backend: Backend) {
    let smtp = LineServer::start().await;
    let elsewhere = LineServer::start().await;
    let mut o = Outbound::start(backend, None).await;
    o.client.secret_set("smtp_password", b"hunter2-smtp").await.unwrap();
    let entry = format!("tcp://{}", smtp.addr);
    for (name, server) in [("mail", smtp.addr), ("mail-elsewhere", elsewhere.addr)] {
        let mut s = settings(&[&entry]);
        s.grants.secrets.push("smtp_password".into());
        s.config.insert("server".into(), server.to_string());
        s.config.insert("user".into(), "jobs".into());
        o.push(name, "smtp-send", 30_000, s).await;
    }
    let mail = json!({"from": "jobs@example.com", "to": "ada@example.com", "subject": "hi", "body": "hello"});
    let run = o.run(Enqueue::new("mail", mail.clone())).await;
    assert_eq!(output(&run), json!({"accepted": "250 2.0.0 queued as 42"}));
    assert!(smtp.lines().contains(&"AUTH PLAIN AGpvYnMAaHVudGVyMi1zbXRw".to_string()), "{:?}", smtp.lines());
    assert_eq!(rows(&run), [("CONNECT".into(), entry.clone(), None, false, None, None)]);

    let run = o.run(Enqueue::new("mail-elsewhere", mail)).await;
    assert_eq!(failed(&run).0, Reason::Error);
    assert!(elsewhere.lines().is_empty());
    assert_eq!(rows(&run), [("CONNECT".into(), format!("tcp://{}", elsewhere.addr), None, true, None, None)]);
    assert!(host_lines(&run)[0].contains("grants no tcp:// entry for it"), "{:?}", host_lines(&run));
    o.node.shutdown().await;
}

/// Every piece of text the database holds, table by table, with the text
/// form of each row (PostgreSQL) or the file's bytes (SQLite: the database
/// and its write-ahead log, every page).
async fn database_text(db: &TestDb) -> Vec<u8> {
    match db.url().starts_with("postgres") {
        false => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                bytes.extend(std::fs::read(format!("{}{suffix}", db.path().display())).unwrap_or_default());
            }
            bytes
        }
        true => {
            let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public'").fetch_all(&pool).await.unwrap();
            let mut text = Vec::new();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t")).fetch_all(&pool).await.unwrap();
                for row in rows {
                    text.extend_from_slice(format!("{table}: {row}\n").as_bytes());
                }
            }
            text
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn a_secret_is_stored_nowhere_but_in_its_sealed_row(backend: Backend) {
    const SECRET: &str = "correct-horse-battery-staple-77";
    let echo = TestServer::http().await;
    let mut o = Outbound::start(backend, None).await;
    o.client.secret_set("token", SECRET.as_bytes()).await.unwrap();
    let mut leaky = TemplateSettings::default();
    leaky.grants.secrets.push("token".into());
    o.push("leaky", "hostile", 30_000, leaky).await;
    let mut echoing = settings(&[&echo.origin()]);
    let host = AllowedHost::parse(&echo.origin()).unwrap();
    echoing.grants.headers.push(HeaderGrant::parse(host, "X-Token={{secret:token}}").unwrap());
    o.push("echo", "fetch", 30_000, echoing).await;

    let run = o.run(Enqueue::new("leaky", json!({"mode": "leak-secret", "bytes": 10}))).await;
    assert_eq!(output(&run), json!({"mode": "output ***", "calls": 1}));
    assert_eq!(run.checkpoint.as_deref(), Some(r#""checkpoint ***""#));
    let run = o.run(Enqueue::new("leaky", json!({"mode": "leak-secret-error", "bytes": 3}))).await;
    assert_eq!(failed(&run), (Reason::Error, "xxx***"));
    let run = o.run(Enqueue::new("echo", json!({"url": echo.url("/echo?t=1")}))).await;
    assert_eq!(output(&run)["results"][0]["status"], 200);

    let stored = database_text(&o.db).await;
    assert!(contains(&stored, "output ***"), "the scan reads what runs store");
    assert!(contains(&stored, "stdout *** end"), "the scan reads what runs store");
    assert!(!contains(&stored, SECRET), "the secret's value is in the database in clear");
    assert!(!contains(&stored, &SECRET[..12]), "a prefix of the secret is in the database");

    // Names and times only, from the library and the API.
    let listed = serde_json::to_string(&o.client.secret_list().await.unwrap()).unwrap();
    assert!(listed.contains("\"token\"") && !listed.contains(SECRET), "{listed}");
    let state = ApiState { client: o.client.clone(), node: None, token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let (status, body) = http(&addr, "GET", "/v1/secrets", None, None).await;
    assert_eq!((status, body["secrets"][0]["name"].as_str()), (200, Some("token")));
    assert!(!body.to_string().contains(SECRET));
    for path in ["/v1/templates/echo", "/v1/templates/leaky", &format!("/v1/runs/{}", run.id)] {
        let (_, body) = http(&addr, "GET", path, None, None).await;
        assert!(!body.to_string().contains(SECRET), "{path}: {body}");
    }
    let (status, body) = http(&addr, "PUT", "/v1/secrets/api_set", None, json_body(json!({"value": "from-the-api"}))).await;
    assert_eq!((status, body), (200, json!({"name": "api_set", "created": true})));
    o.node.shutdown().await;
}

/// Why a node on `client` refused to start.
async fn refused_start(client: Client) -> String {
    match Node::start(client, node_config(&[("default", 1)])).await {
        Ok(node) => {
            node.shutdown().await;
            panic!("the node started")
        }
        Err(e) => e.to_string(),
    }
}

async fn a_node_without_the_key_or_with_another_refuses_to_start(backend: Backend) {
    let db = TestDb::on(backend).await;
    let key = SecretsKey::generate();
    let client = client_on(&db, None, Some(key.clone())).await;
    client.secret_set("stripe", b"sk_test_1234").await.unwrap();
    start(&client, &[("default", 1)]).await.shutdown().await;

    let keyless = client_on(&db, None, None).await;
    let err = refused_start(keyless).await;
    assert_eq!(
        err,
        format!(
            "the database holds 1 secret(s) but this node was given no secrets key; pass --secrets-key-file PATH or set ELIHU_SECRETS_KEY_FILE or ELIHU_SECRETS_KEY (every node needs the key the secrets were stored with, key id {})",
            key.id()
        )
    );
    let other = SecretsKey::generate();
    let wrong = client_on(&db, None, Some(other.clone())).await;
    let err = refused_start(wrong.clone()).await;
    assert_eq!(
        err,
        format!(
            "the secrets key given (key id {}) is not the key the secrets were stored with (key id {}); give this node the same key as the others",
            other.id(),
            key.id()
        )
    );
    assert!(matches!(wrong.secret_set("other", b"value").await, Err(ClientError::WrongSecretsKey { .. })), "nothing is sealed under a wrong key");
    assert_eq!(client.secret_list().await.unwrap().len(), 1);
}

/// Each refused request names its problem and leaves everything stored as it was.
async fn bad_grants_secrets_and_limits_are_refused_and_nothing_is_stored(backend: Backend) {
    let db = TestDb::on(backend).await;
    let client = client_on(&db, None, Some(SecretsKey::generate())).await;
    let state = ApiState { client: client.clone(), node: None, token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let (_, stored) = http(&addr, "PUT", "/v1/components", None, Some(("application/wasm", elihu::examples::get("fetch").unwrap().wasm.to_vec()))).await;
    let template = |extra: Value| {
        let mut body = json!({"digest": stored["digest"], "schema": {"type": "object"}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json_body(body)
    };
    let (status, _) = http(&addr, "PUT", "/v1/templates/t", None, template(json!({"grants": {"allowed_hosts": ["https://api.example.com"]}}))).await;
    assert_eq!(status, 200);
    let (_, before) = http(&addr, "GET", "/v1/templates/t", None, None).await;

    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"grants": {"allowed_hosts": ["https://api.example.com/v1"]}}), 400, "bad_request", "the allowed host `https://api.example.com/v1` is not valid: an entry names a host, never a path"),
        (json!({"grants": {"allowed_hosts": ["ftp://files.example.com"]}}), 400, "bad_request", "the scheme `ftp` is not one of http, https, tcp"),
        (json!({"grants": {"allowed_hosts": ["https://a.example.com"], "headers": [{"host": "https://a.example.com", "name": "Authorization", "value": "Bearer {{secret:nope}}"}]}}), 422, "unknown_secret", "template `t` uses the secret `nope`, which does not exist"),
        (json!({"grants": {"secrets": ["nope"]}}), 422, "unknown_secret", "uses the secret `nope`"),
        (json!({"grants": {"headers": [{"host": "https://b.example.com", "name": "X", "value": "y"}]}}), 400, "invalid_grant", "it is for `https://b.example.com`, which is not among the allowed hosts"),
        (json!({"limits": {"max_output_bytes": 0}}), 400, "bad_request", "the template limit `max_output_bytes` must be more than 0 (it is 0)"),
        (json!({"limits": {"connect_timeout_ms": -5}}), 400, "bad_request", "the template limit `connect_timeout_ms` must be more than 0 (it is -5)"),
        (json!({"limits": {"max_requests": 1000}}), 400, "invalid_limit", "the template limit `max_requests` is 1000, above this node's limit of 100"),
    ];
    for (extra, status, code, message) in cases {
        let (got, body) = http(&addr, "PUT", "/v1/templates/t", None, template(extra.clone())).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{extra}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(message), "{extra}: {body}");
        let (_, after) = http(&addr, "GET", "/v1/templates/t", None, None).await;
        assert_eq!(after, before, "{extra}: the template changed");
    }

    let huge = "x".repeat(16 * 1024 + 1);
    for (name, value, message) in [
        ("big", huge.as_str(), "the value of secret `big` is 16385 bytes; a secret must be 4 to 16384 bytes"),
        ("tiny", "abc", "the value of secret `tiny` is 3 bytes"),
        ("bad name!", "abcdef", "`bad name!` is not a valid secret name"),
    ] {
        let (status, body) = http(&addr, "PUT", &format!("/v1/secrets/{}", name.replace(' ', "%20")), None, json_body(json!({"value": value}))).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(message), "{body}");
        assert!(!body.to_string().contains(value) || value.len() < 4, "an error echoed the value");
    }
    assert!(client.secret_list().await.unwrap().is_empty(), "nothing was stored");
    let (status, body) = http(&addr, "POST", "/v1/jobs", None, json_body(json!({"template": "t", "context": {}, "allowed_hosts": ["https://evil.example.com"]}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert!(client.job_list(&Default::default()).await.unwrap().is_empty());

    // A secret in use cannot be removed.
    client.secret_set("in_use", b"value-1").await.unwrap();
    let (status, _) = http(&addr, "PUT", "/v1/templates/u", None, template(json!({"grants": {"secrets": ["in_use"]}}))).await;
    assert_eq!(status, 200);
    let (status, body) = http(&addr, "DELETE", "/v1/secrets/in_use", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("secret_in_use")), "{body}");
}

async fn a_template_output_cap_fails_a_run_the_default_accepts(backend: Backend) {
    let mut o = Outbound::start(backend, None).await;
    o.push("hello", "hello", 30_000, TemplateSettings::default()).await;
    let small = TemplateSettings { limits: TemplateLimits { max_output_bytes: Some(10), ..TemplateLimits::default() }, ..TemplateSettings::default() };
    o.push("hello-small", "hello", 30_000, small).await;
    assert_eq!(o.client.template_get("hello-small").await.unwrap().limits.max_output_bytes, Some(10));
    let run = o.run(Enqueue::new("hello", json!({"name": "Ada"}))).await;
    assert_eq!(output(&run), json!({"greeting": "Hello, Ada!"}));
    let run = o.run(Enqueue::new("hello-small", json!({"name": "Ada"}))).await;
    assert_eq!(failed(&run), (Reason::Error, "the output is 26B; the limit is 10B"));
    o.node.shutdown().await;
}

on_both_backends!(
    webhook_with_its_secret_reaches_granted_servers_and_nothing_else,
    the_forgery_guard_and_redirects_are_enforced_through_a_node,
    a_slow_server_times_out_and_a_cancel_cuts_the_call,
    outbound_limits_fail_the_run_and_the_node_runs_the_next_job,
    a_tcp_job_reaches_its_granted_port_and_no_other,
    a_secret_is_stored_nowhere_but_in_its_sealed_row,
    a_node_without_the_key_or_with_another_refuses_to_start,
    bad_grants_secrets_and_limits_are_refused_and_nothing_is_stored,
    a_template_output_cap_fails_a_run_the_default_accepts,
);
