//! Helpers for tests of the node: databases, clients, templates, events, HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use elihu::clock::{Clock, ManualClock, SystemClock};
use elihu::model::{JobId, Millis};
use elihu::runtime::{Runtime, RuntimeConfig};
use elihu::store::{Store, Template, TemplateDefaults};
use elihu::{Client, Event, Node, NodeConfig};
use tokio::sync::broadcast;

use super::artifact_dir;

/// A throwaway database: an SQLite file, or a fresh PostgreSQL database.
pub struct TestDb {
    /// A temp dir of the test's (the SQLite file lives here).
    pub dir: tempfile::TempDir,
    postgres: Option<String>,
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    /// An SQLite database.
    pub fn new() -> Self {
        TestDb { dir: tempfile::tempdir().expect("temp dir"), postgres: None }
    }

    /// A database on `backend`.
    pub async fn on(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => TestDb::new(),
            Backend::Postgres => TestDb {
                dir: tempfile::tempdir().expect("temp dir"),
                postgres: Some(super::postgres::server().fresh_database().await),
            },
        }
    }

    /// A database on a PostgreSQL server of its own (see `PgServer::dedicated`).
    pub async fn on_own_postgres(server: &super::postgres::PgServer) -> Self {
        TestDb { dir: tempfile::tempdir().expect("temp dir"), postgres: Some(server.fresh_database().await) }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("elihu.db")
    }

    pub fn url(&self) -> String {
        match &self.postgres {
            Some(url) => url.clone(),
            None => self.path().to_string_lossy().into_owned(),
        }
    }

    /// An opened, migrated store on this database.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = elihu::store::connect(&self.url()).await.expect("store opens");
        store.migrate().await.expect("migrations apply");
        store
    }

    /// A client on this database with the given clock.
    pub async fn client_with(&self, clock: Arc<dyn Clock>) -> Client {
        init_tracing();
        Client::new(self.store().await, Arc::new(test_runtime()), clock)
    }

    /// A client on this database with the system clock.
    pub async fn client(&self) -> Client {
        self.client_with(Arc::new(SystemClock)).await
    }

    /// A client with a manual clock, and the clock.
    pub async fn manual(&self) -> (Client, ManualClock) {
        let clock = ManualClock::new(Millis(1_800_000_000_000));
        (self.client_with(Arc::new(clock.clone())).await, clock)
    }
}

/// Host logs in test output when `ELIHU_LOG` is set (e.g. `ELIHU_LOG=debug`).
pub fn init_tracing() {
    if let Ok(filter) = std::env::var("ELIHU_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// A runtime sized for tests, sharing compiled artifacts.
pub fn test_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_concurrent_runs: 32,
        artifact_dir: Some(artifact_dir().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// Node settings for tests: quick polls and maintenance.
pub fn node_config(queues: &[(&str, u32)]) -> NodeConfig {
    NodeConfig {
        queues: queues.iter().map(|(q, n)| (q.to_string(), *n)).collect(),
        poll_interval: Duration::from_millis(50),
        maintenance_interval: Duration::from_millis(20),
        cancel_poll: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(200),
        ..NodeConfig::default()
    }
}

pub async fn start(client: &Client, queues: &[(&str, u32)]) -> Node {
    Node::start(client.clone(), node_config(queues)).await.expect("node starts")
}

/// Template defaults for tests: short backoff.
pub fn defaults(max_attempts: u32) -> TemplateDefaults {
    TemplateDefaults { max_attempts, backoff_base_ms: 10_000, backoff_max_ms: 60_000, ..TemplateDefaults::default() }
}

/// Pushes an example job as a template of the same name.
pub async fn push(client: &Client, example: &str, defaults: TemplateDefaults) -> Template {
    push_as(client, example, example, defaults).await
}

/// Pushes an example job as a template named `name`.
pub async fn push_as(client: &Client, name: &str, example: &str, defaults: TemplateDefaults) -> Template {
    let job = elihu::examples::get(example).unwrap();
    let schema = serde_json::from_str(job.schema.unwrap()).unwrap();
    client.template_push(name, job.wasm, &schema, &defaults, &Default::default()).await.expect("template push")
}

/// Waits for the first event matching `pred` (the test fails after 30 s).
pub async fn next_event(events: &mut broadcast::Receiver<Event>, pred: impl Fn(&Event) -> bool) -> Event {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("the test missed {n} events"),
                Err(broadcast::error::RecvError::Closed) => panic!("the event stream closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("the expected event within 30 s")
}

/// Waits for the final event of a job.
pub async fn final_event(events: &mut broadcast::Receiver<Event>, job_id: JobId) -> Event {
    next_event(events, |e| e.job_id() == job_id && e.is_final()).await
}

/// Serves the API and the dashboard of `client` (with `node` for run-now
/// actions) on a free loopback port; its address.
pub async fn serve_api(client: &Client, node: Option<&Node>, token: Option<&str>) -> String {
    let state = elihu::api::ApiState { client: client.clone(), node: node.map(Node::handle), token: token.map(String::from) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, elihu::api::router(state)).await });
    addr
}

/// One request to the API at `addr` (with reqwest): the status and the JSON
/// body (`Null` when empty, a string when not JSON).
pub async fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a readable body");
    let json = if text.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)) };
    (status, json)
}

/// JSON body helper.
pub fn json_body(v: serde_json::Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}
