//! The node: it claims the jobs of its queues and runs them in the sandbox,
//! keeps its lease, takes cancels and shuts down gracefully; and, while it
//! holds the leader lease, it runs the maintenance services. One file per
//! loop, River-style: `claim`, `heartbeat`, `cancels`, `notices`, `leader`
//! (the election), `expiry`, `scheduler`, `pruner`, `reports` (a run's live
//! reports) and `writer` (outcomes); `runs` keeps the runs in flight and
//! `executor` takes one run from claim to recorded outcome. This file is the
//! node's API. Time comes from the client's injectable clock.

mod cancels;
mod claim;
mod executor;
mod expiry;
mod heartbeat;
mod leader;
mod notices;
mod pruner;
mod reports;
mod runs;
mod scheduler;
mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use serde_json::json;

use crate::client::{Client, ClientError, Enqueue, LocalNode};
use crate::events::WireEvent;
use crate::model::JobId;
use crate::store::{Inserted, NodeInfo};

use runs::Runs;
use writer::OutcomeWriter;

/// How a node works. `Default` suits one node on one machine.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's id; generated from host name and process id when `None`.
    pub id: Option<String>,
    /// The queues this node works and how many runs of each may be in
    /// flight at once (bg_jobs queues).
    pub queues: BTreeMap<String, u32>,
    /// How often each queue is polled when nothing wakes it.
    pub poll_interval: Duration,
    /// How often the node heartbeats.
    pub heartbeat_interval: Duration,
    /// How long after the node's last heartbeat its runs count as abandoned.
    pub run_ttl: Duration,
    /// How long a leader lease lasts without renewal.
    pub leader_ttl: Duration,
    /// How often the node tries for the lease and, as leader, does maintenance.
    pub maintenance_interval: Duration,
    /// How often the node checks for cancels asked through the database.
    pub cancel_poll: Duration,
    /// How long a shutdown lets runs finish before interrupting them,
    /// measured by the client's clock.
    pub shutdown_grace: Duration,
    /// Finished runs older than this are pruned by the leader (`None`: kept).
    pub prune_after: Option<Duration>,
    /// How many times one job may snooze; the snooze past it fails the run
    /// with reason `snooze_limit` and ends the job.
    pub max_snoozes: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            queues: BTreeMap::from([("default".to_string(), 10)]),
            poll_interval: Duration::from_millis(250),
            heartbeat_interval: Duration::from_secs(5),
            run_ttl: Duration::from_secs(30),
            leader_ttl: Duration::from_secs(15),
            maintenance_interval: Duration::from_secs(1),
            cancel_poll: Duration::from_millis(250),
            shutdown_grace: Duration::from_secs(10),
            prune_after: Some(Duration::from_secs(7 * 24 * 3600)),
            max_snoozes: 100,
        }
    }
}

/// What the node's loops share.
struct NodeState {
    id: String,
    config: NodeConfig,
    client: Client,
    info: NodeInfo,
    writer: OutcomeWriter,
    runs: Runs,
    /// Wakes the claim loops: an enqueue or trigger in this process.
    wake: Notify,
}

impl LocalNode for NodeState {
    fn wake(&self) {
        self.wake.notify_waiters();
    }

    fn cancel(&self, job_id: JobId) {
        self.runs.cancel(job_id);
    }
}

/// A running node. Dropping it without [`Node::shutdown`] stops nothing:
/// call `shutdown` for a graceful stop.
pub struct Node {
    state: Arc<NodeState>,
    /// `Running`, then `Draining` (no more claims or maintenance), then
    /// `Halted` (heartbeats and cancel polls stop too).
    phase: watch::Sender<Phase>,
    claimers: Vec<JoinHandle<()>>,
    keepers: Vec<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    Draining,
    Halted,
}

/// Waits for a loop's next pass: `every` has passed or the phase moved.
/// False once the node has reached `stop`, when the loop must end. (A node
/// dropped without a shutdown keeps its loops going at their pace.)
async fn next_pass(phase: &mut watch::Receiver<Phase>, every: Duration, stop: Phase) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(every) => {}
        Ok(()) = phase.changed() => {}
    }
    *phase.borrow() < stop
}

/// A cloneable handle on a running node, for the HTTP API and other tasks.
#[derive(Clone)]
pub struct NodeHandle(Arc<NodeState>);

impl NodeHandle {
    /// The node's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Runs in flight on the node now.
    pub fn running(&self) -> u32 {
        self.0.runs.total()
    }

    /// See [`Node::finished`].
    pub fn finished(&self) -> u64 {
        self.0.runs.finished()
    }

    /// See [`Node::enqueue_and_run`].
    pub async fn enqueue_and_run(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        let client = &self.0.client;
        let inserted = client.enqueue(request).await?;
        if let Inserted::New(id) = inserted {
            self.run_now(id).await?;
        }
        Ok(inserted)
    }

    /// Runs a waiting job on this node now, whatever its run-at or queue
    /// (the dashboard's "run now"). False when the job is not waiting.
    pub async fn run_now(&self, job_id: JobId) -> Result<bool, ClientError> {
        let client = &self.0.client;
        let now = client.clock().now();
        match client.store().job_claim_id(&self.0.id, job_id, now, now + self.0.config.run_ttl).await? {
            Some(claimed) => {
                runs::spawn(&self.0, claimed);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Runs that finished within the grace period.
    pub finished: u32,
    /// Runs interrupted at the end of the grace period (recorded as `shutdown`, to be retried).
    pub interrupted: u32,
}

/// This machine's host name, `None` when it cannot be read.
fn read_hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

fn default_node_id() -> String {
    let host = read_hostname().unwrap_or_else(|| "node".into());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

impl Node {
    /// Registers the node (first heartbeat) and starts its loops on the
    /// current tokio runtime. Refused while the database holds secrets the
    /// client's key cannot open (no key, or another key).
    pub async fn start(client: Client, config: NodeConfig) -> Result<Node, ClientError> {
        if config.queues.is_empty() {
            return Err(ClientError::Invalid { field: "queues", message: "a node must work at least one queue".into() });
        }
        for (queue, limit) in &config.queues {
            if *limit == 0 {
                return Err(ClientError::Invalid { field: "queues", message: format!("queue `{queue}` has concurrency 0") });
            }
        }
        // A node that could not open the secrets its jobs use must not start.
        client.secrets_check().await?;
        let id = config.id.clone().unwrap_or_else(default_node_id);
        let now = client.clock().now();
        let info = NodeInfo {
            id: id.clone(),
            hostname: read_hostname().unwrap_or_else(|| "unknown".into()),
            pid: i64::from(std::process::id()),
            queues: config.queues.iter().map(|(q, n)| format!("{q}={n}")).collect::<Vec<_>>().join(","),
            started_at: now,
            heartbeat_at: now,
        };
        client.store().node_heartbeat(&info, now + config.run_ttl).await?;
        let notices = client.store().listen().await?;
        client.hub().start_publisher(client.store().clone(), client.clock().clone());
        let state = Arc::new(NodeState {
            writer: OutcomeWriter::start(client.clone()),
            runs: Runs::new(config.queues.keys()),
            id,
            config,
            client,
            info,
            wake: Notify::new(),
        });
        let link: Weak<dyn LocalNode> = Arc::downgrade(&state) as Weak<dyn LocalNode>;
        state.client.attach(link);
        heartbeat::refresh_watched(&state).await;
        state.client.metrics().node(&state.id, true);
        state.client.hub().offer(|| WireEvent::node("node_joined", json!({ "node_id": state.id, "hostname": state.info.hostname })));
        let (phase, _) = watch::channel(Phase::Running);
        let (is_leader, _) = watch::channel(false);
        let mut claimers: Vec<JoinHandle<()>> = state
            .config
            .queues
            .iter()
            .map(|(queue, limit)| tokio::spawn(claim::run(state.clone(), queue.clone(), *limit, phase.subscribe())))
            .collect();
        claimers.extend([
            tokio::spawn(expiry::run(state.clone(), phase.subscribe(), is_leader.subscribe())),
            tokio::spawn(scheduler::run(state.clone(), phase.subscribe(), is_leader.subscribe())),
            tokio::spawn(pruner::run(state.clone(), phase.subscribe(), is_leader.subscribe())),
            tokio::spawn(leader::run(state.clone(), phase.subscribe(), is_leader)),
        ]);
        let mut keepers = vec![
            tokio::spawn(heartbeat::run(state.clone(), phase.subscribe())),
            tokio::spawn(cancels::run(state.clone(), phase.subscribe())),
        ];
        if let Some(notices) = notices {
            keepers.push(tokio::spawn(notices::run(state.clone(), notices, phase.subscribe())));
        }
        tracing::info!(node = %state.id, queues = %state.info.queues, "node started");
        Ok(Node { state, phase, claimers, keepers })
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The client the node works for.
    pub fn client(&self) -> &Client {
        &self.state.client
    }

    /// Runs in flight on this node now.
    pub fn running(&self) -> u32 {
        self.state.runs.total()
    }

    /// Runs whose outcome this node has recorded since it started (a cheap
    /// progress count; the event stream tells what each run did).
    pub fn finished(&self) -> u64 {
        self.state.runs.finished()
    }

    /// A handle that can enqueue-and-run on this node from other tasks.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle(self.state.clone())
    }

    /// Enqueues a job and runs it on this node at once, ahead of the queue
    /// and outside this node's concurrency limit (Bildad's
    /// `enqueue_and_run`). On a paused or limited queue (see
    /// [`Client::queue_set`]) the job waits for the queue's claims like any
    /// other, so the queue's limits hold.
    pub async fn enqueue_and_run(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        self.handle().enqueue_and_run(request).await
    }

    /// Stops claiming, lets runs finish within the grace period (by the
    /// client's clock), then interrupts the rest (recorded as failed with
    /// reason `shutdown`, so they run again) and deregisters the node.
    pub async fn shutdown(self) -> ShutdownReport {
        let state = &self.state;
        // Loops are stopped by signal and awaited, never aborted: an aborted
        // database call could leave a transaction open.
        let _ = self.phase.send(Phase::Draining);
        for task in self.claimers {
            let _ = task.await;
        }
        let at_start = state.runs.total();
        let clock = state.client.clock().clone();
        let grace_ends = clock.now() + state.config.shutdown_grace;
        state.runs.wait_idle(Some(clock.sleep_until(grace_ends))).await;
        let interrupted = state.runs.total();
        if interrupted > 0 {
            state.runs.interrupt_all();
            state.runs.wait_idle(None).await;
        }
        let _ = self.phase.send(Phase::Halted);
        for task in self.keepers {
            let _ = task.await;
        }
        let link: Weak<dyn LocalNode> = Arc::downgrade(&self.state) as Weak<dyn LocalNode>;
        state.client.detach(&link);
        if let Err(e) = state.client.store().node_remove(&state.id).await {
            tracing::warn!(error = %e, "could not deregister the node; its entry will look silent");
        }
        state.client.hub().offer(|| WireEvent::node("node_left", json!({ "node_id": state.id })));
        state.client.metrics().node(&state.id, false);
        tracing::info!(node = %state.id, interrupted, "node stopped");
        ShutdownReport { finished: at_start.saturating_sub(interrupted), interrupted }
    }
}
