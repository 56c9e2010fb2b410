//! The library API over a store: upload components and templates, enqueue
//! (validating contexts against template schemas), cancel, schedules, and
//! reads of jobs, runs and stats, queue settings. The CLI, the HTTP API and
//! embedding applications all go through a `Client`. One file per concern:
//! `templates` (with the schema cache), `jobs`, `schedules`, `queues`, `secrets`,
//! `requests` (request types and their checks), `error`. A `Node` working in the same
//! process registers with its client (`LocalNode`), so enqueues made here
//! wake it and cancels made here interrupt its runs at once.

mod error;
mod jobs;
mod queues;
mod requests;
mod schedules;
mod secrets;
mod templates;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::broadcast;

use crate::clock::{Clock, SystemClock};
use crate::events::{Event, Hub, Watch, WireEvent};
use crate::metrics::Metrics;
use crate::model::JobId;
use crate::runtime::Runtime;
use crate::schema::ContextSchema;
use crate::store::Store;

pub use error::ClientError;
pub use requests::{ClientOptions, Enqueue, Schedule, ScheduleSpec};
pub(crate) use schedules::{stored_context, stored_rule};

/// What a node working in this process lets its client reach.
pub(crate) trait LocalNode: Send + Sync {
    /// Look for work now instead of at the next poll.
    fn wake(&self);
    /// Interrupt the run of `job_id` if it runs here.
    fn cancel(&self, job_id: JobId);
}

struct Shared {
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    /// Live streams and the events that cross processes.
    hub: Arc<Hub>,
    /// This process's Prometheus metrics.
    metrics: Metrics,
    /// The nodes working in this process.
    nodes: RwLock<Vec<Weak<dyn LocalNode>>>,
    /// Compiled context schemas by template, with the template version.
    schemas: Mutex<HashMap<String, (i64, Arc<ContextSchema>)>>,
    /// The key secrets are sealed with, when this process was given one.
    secrets_key: RwLock<Option<crate::secrets::SecretsKey>>,
}

/// The library's handle on an elihu database. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the database at `url` (see [`crate::store::connect`]), applies
    /// migrations, and starts a runtime.
    pub async fn open(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let store = crate::store::connect(url).await?;
        store.migrate().await?;
        let runtime = Arc::new(Runtime::new(options.runtime)?);
        let client = Client::new(store, runtime, Arc::new(SystemClock));
        client.set_secrets_key(options.secrets_key);
        Ok(client)
    }

    /// A client over an opened, migrated store.
    pub fn new(store: Arc<dyn Store>, runtime: Arc<Runtime>, clock: Arc<dyn Clock>) -> Client {
        let (events, _) = broadcast::channel(4096);
        Client {
            shared: Arc::new(Shared {
                store,
                runtime,
                clock,
                events,
                hub: Arc::new(Hub::new()),
                metrics: Metrics::new(),
                nodes: RwLock::new(Vec::new()),
                schemas: Mutex::new(HashMap::new()),
                secrets_key: RwLock::new(None),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.shared.runtime
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Subscribes to the events of this process (enqueues made here, runs of
    /// the node running here).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub(crate) fn emit(&self, event: Event) {
        self.emit_tagged(event, None, None);
    }

    /// Emits an event with its job's template and queue, which live streams
    /// filter on.
    pub(crate) fn emit_tagged(&self, event: Event, template: Option<&str>, queue: Option<&str>) {
        self.shared.hub.offer(|| WireEvent::of(&event, template, queue));
        let _ = self.shared.events.send(event);
    }

    /// Opens a live stream of events: this process's and, while it is open,
    /// every other process's on the same database (PostgreSQL pushes them;
    /// on SQLite they are polled). The stream is registered when this
    /// returns; events that happen after it are in it, in each node's order.
    pub async fn watch(&self) -> Result<Watch, ClientError> {
        Ok(self.shared.hub.watch(&self.shared.store, &self.shared.clock).await?)
    }

    /// Ends every live stream of this process (before a graceful shutdown:
    /// an HTTP server waits for open streams).
    pub fn close_watches(&self) {
        self.shared.hub.close();
    }

    /// This process's metrics (served at `GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The live-event hub of this process.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// Wakes the nodes of this process now instead of at their next poll
    /// (Bildad's engine trigger).
    pub fn trigger(&self) {
        self.each_node(|node| node.wake());
    }

    /// Interrupts the run of `job_id` if a node of this process runs it.
    fn cancel_local(&self, job_id: JobId) {
        self.each_node(|node| node.cancel(job_id));
    }

    fn each_node(&self, f: impl Fn(&dyn LocalNode)) {
        for node in self.shared.nodes.read().unwrap().iter() {
            if let Some(node) = node.upgrade() {
                f(node.as_ref());
            }
        }
    }

    /// Registers a node working in this process (see [`LocalNode`]).
    pub(crate) fn attach(&self, node: Weak<dyn LocalNode>) {
        let mut nodes = self.shared.nodes.write().unwrap();
        nodes.retain(|n| n.strong_count() > 0);
        nodes.push(node);
    }

    /// Forgets a node that stopped.
    pub(crate) fn detach(&self, node: &Weak<dyn LocalNode>) {
        self.shared.nodes.write().unwrap().retain(|n| !Weak::ptr_eq(n, node) && n.strong_count() > 0);
    }
}
