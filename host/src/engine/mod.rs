//! The node: claim loops (one per queue, each with its concurrency limit),
//! dispatch of claimed jobs into the sandbox, heartbeats, cancellation,
//! graceful shutdown, and the leader-only maintenance (see `maintenance`).
//! Time comes from the client's injectable clock.

mod executor;
mod maintenance;
mod reports;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::client::{Client, ClientError, Enqueue};
use crate::runtime::CancelHandle;
use crate::store::{Claimed, Inserted, NodeInfo, Notice};

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
    /// How long a shutdown lets runs finish before interrupting them.
    pub shutdown_grace: Duration,
    /// Finished runs older than this are pruned by the leader (`None`: kept).
    pub prune_after: Option<Duration>,
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
        }
    }
}

struct NodeState {
    id: String,
    config: NodeConfig,
    client: Client,
    in_flight: HashMap<String, AtomicU32>,
    total: AtomicU32,
    /// Runs whose outcome this node recorded.
    finished: AtomicU64,
    slot_freed: Notify,
    shutting_down: AtomicBool,
    info: NodeInfo,
    writer: OutcomeWriter,
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
        self.0.total.load(Ordering::SeqCst)
    }

    /// See [`Node::finished`].
    pub fn finished(&self) -> u64 {
        self.0.finished.load(Ordering::Relaxed)
    }

    /// See [`Node::enqueue_and_run`].
    pub async fn enqueue_and_run(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        let client = &self.0.client;
        let inserted = client.enqueue(request).await?;
        if let Inserted::New(id) = inserted {
            let now = client.clock().now();
            let expires = now + self.0.config.run_ttl.as_millis() as i64;
            if let Some(claimed) = client.store().job_claim_id(&self.0.id, id, now, expires).await? {
                spawn_run(&self.0, claimed);
            }
        }
        Ok(inserted)
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

/// How long a full queue waits after a slot frees before claiming again.
const CLAIM_COOLDOWN: Duration = Duration::from_millis(2);

/// This machine's host name, `None` when it cannot be read.
fn read_hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

fn default_node_id() -> String {
    let host = read_hostname().unwrap_or_else(|| "node".into());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

fn hostname() -> String {
    read_hostname().unwrap_or_else(|| "unknown".into())
}

impl Node {
    /// Registers the node (first heartbeat) and starts its loops on the
    /// current tokio runtime.
    pub async fn start(client: Client, config: NodeConfig) -> Result<Node, ClientError> {
        if config.queues.is_empty() {
            return Err(ClientError::Invalid { field: "queues", message: "a node must work at least one queue".into() });
        }
        for (queue, limit) in &config.queues {
            if *limit == 0 {
                return Err(ClientError::Invalid { field: "queues", message: format!("queue `{queue}` has concurrency 0") });
            }
        }
        let id = config.id.clone().unwrap_or_else(default_node_id);
        let now = client.clock().now();
        let info = NodeInfo {
            id: id.clone(),
            hostname: hostname(),
            pid: std::process::id() as i64,
            queues: config.queues.iter().map(|(q, n)| format!("{q}={n}")).collect::<Vec<_>>().join(","),
            started_at: now,
            heartbeat_at: now,
        };
        client.store().node_heartbeat(&info, now + config.run_ttl.as_millis() as i64).await?;
        let notices = client.store().listen().await?;
        let writer = OutcomeWriter::start(client.clone());
        let state = Arc::new(NodeState {
            writer,
            id,
            in_flight: config.queues.keys().map(|q| (q.clone(), AtomicU32::new(0))).collect(),
            config,
            client,
            total: AtomicU32::new(0),
            finished: AtomicU64::new(0),
            slot_freed: Notify::new(),
            shutting_down: AtomicBool::new(false),
            info,
        });
        let (phase, _) = watch::channel(Phase::Running);
        let mut claimers = Vec::new();
        for (queue, limit) in state.config.queues.clone() {
            claimers.push(tokio::spawn(claim_loop(state.clone(), queue, limit, phase.subscribe())));
        }
        claimers.push(tokio::spawn(maintenance_loop(state.clone(), phase.subscribe())));
        let mut keepers = vec![
            tokio::spawn(heartbeat_loop(state.clone(), phase.subscribe())),
            tokio::spawn(cancel_loop(state.clone(), phase.subscribe())),
        ];
        if let Some(notices) = notices {
            keepers.push(tokio::spawn(notice_loop(state.clone(), notices, phase.subscribe())));
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
        self.state.total.load(Ordering::SeqCst)
    }

    /// Runs whose outcome this node has recorded since it started (a cheap
    /// progress count; the event stream tells what each run did).
    pub fn finished(&self) -> u64 {
        self.handle().finished()
    }

    /// A handle that can enqueue-and-run on this node from other tasks.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle(self.state.clone())
    }

    /// Enqueues a job and runs it on this node at once, ahead of the queue
    /// and outside its concurrency limit (Bildad's `enqueue_and_run`).
    pub async fn enqueue_and_run(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        self.handle().enqueue_and_run(request).await
    }

    /// Stops claiming, lets runs finish within the grace period, then
    /// interrupts the rest (recorded as failed with reason `shutdown`, so they
    /// run again) and deregisters the node.
    pub async fn shutdown(self) -> ShutdownReport {
        let state = &self.state;
        // Loops are stopped by signal and awaited, never aborted: an aborted
        // database call could leave a transaction open.
        let _ = self.phase.send(Phase::Draining);
        for task in self.claimers {
            let _ = task.await;
        }
        let at_start = state.total.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + state.config.shutdown_grace;
        wait_idle(state, Some(deadline)).await;
        let interrupted = state.total.load(Ordering::SeqCst);
        if interrupted > 0 {
            state.shutting_down.store(true, Ordering::SeqCst);
            let handles: Vec<CancelHandle> = state.client.shared.local_runs.lock().unwrap().values().cloned().collect();
            for handle in handles {
                handle.cancel();
            }
            wait_idle(state, None).await;
        }
        let _ = self.phase.send(Phase::Halted);
        for task in self.keepers {
            let _ = task.await;
        }
        if let Err(e) = state.client.store().node_remove(&state.id).await {
            tracing::warn!(error = %e, "could not deregister the node; its entry will look silent");
        }
        tracing::info!(node = %state.id, interrupted, "node stopped");
        ShutdownReport { finished: at_start.saturating_sub(interrupted), interrupted }
    }
}

async fn wait_idle(state: &NodeState, deadline: Option<tokio::time::Instant>) {
    loop {
        let freed = state.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if state.total.load(Ordering::SeqCst) == 0 {
            return;
        }
        match deadline {
            Some(at) => {
                if tokio::time::timeout_at(at, freed).await.is_err() {
                    return;
                }
            }
            None => freed.await,
        }
    }
}

/// Keeps the in-flight counts right even if a run task panics.
struct Slot {
    state: Arc<NodeState>,
    queue: String,
    job_id: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.client.shared.local_runs.lock().unwrap().remove(&self.job_id);
        if let Some(n) = self.state.in_flight.get(&self.queue) {
            n.fetch_sub(1, Ordering::SeqCst);
        }
        self.state.total.fetch_sub(1, Ordering::SeqCst);
        self.state.slot_freed.notify_waiters();
    }
}

fn spawn_run(state: &Arc<NodeState>, claimed: Claimed) {
    let queue = claimed.job.queue.clone();
    if let Some(n) = state.in_flight.get(&queue) {
        n.fetch_add(1, Ordering::SeqCst);
    }
    state.total.fetch_add(1, Ordering::SeqCst);
    let cancel = CancelHandle::new();
    state.client.shared.local_runs.lock().unwrap().insert(claimed.job.id, cancel.clone());
    let slot = Slot { state: state.clone(), queue, job_id: claimed.job.id };
    // Boxed: the run's future is a few KiB, and tokio would copy it into
    // the task and again over it when the task completes.
    tokio::spawn(Box::pin(async move {
        let state = slot.state.clone();
        let shutting_down = || state.shutting_down.load(Ordering::SeqCst);
        if executor::execute(&state.client, &state.writer, &state.id, claimed, cancel, shutting_down).await {
            state.finished.fetch_add(1, Ordering::Relaxed);
        }
        drop(slot);
    }));
}

async fn claim_loop(state: Arc<NodeState>, queue: String, limit: u32, mut phase: watch::Receiver<Phase>) {
    let client = state.client.clone();
    let mut failures = 0u32;
    loop {
        // Register for wake-ups before looking, so none is missed in between.
        let woken = client.shared.wake.notified();
        let freed = state.slot_freed.notified();
        tokio::pin!(woken, freed);
        woken.as_mut().enable();
        freed.as_mut().enable();
        if *phase.borrow() != Phase::Running {
            return;
        }
        let busy = state.in_flight[&queue].load(Ordering::SeqCst);
        let free = limit.saturating_sub(busy);
        let mut full_batch = false;
        if free > 0 {
            let now = client.clock().now();
            let expires = now + state.config.run_ttl.as_millis() as i64;
            let started = std::time::Instant::now();
            match client.store().job_claim(&state.id, &queue, free, now, expires).await {
                Ok(claimed) => {
                    tracing::debug!(claimed = claimed.len(), free, took_us = started.elapsed().as_micros() as u64, "claimed");
                    failures = 0;
                    full_batch = claimed.len() as u32 == free;
                    for c in claimed {
                        spawn_run(&state, c);
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, queue = %queue, "claiming failed; retrying");
                }
            }
        }
        if full_batch {
            continue;
        }
        let pause = if failures > 0 {
            (state.config.poll_interval * failures.min(20)).min(Duration::from_secs(5))
        } else {
            state.config.poll_interval
        };
        tokio::select! {
            _ = &mut woken => {}
            _ = &mut freed, if free == 0 => {
                // Let the runs finishing together free their slots, so the
                // next claim takes a batch instead of one job per statement.
                tokio::time::sleep(CLAIM_COOLDOWN).await;
            }
            _ = tokio::time::sleep(pause) => {}
            _ = phase.changed() => {}
        }
    }
}

async fn heartbeat_loop(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>) {
    // Heartbeats go on while draining, so runs in flight do not expire.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.heartbeat_interval) => {}
            _ = phase.changed() => {}
        }
        if *phase.borrow() == Phase::Halted {
            return;
        }
        let now = state.client.clock().now();
        let info = NodeInfo { heartbeat_at: now, ..state.info.clone() };
        if let Err(e) = state.client.store().node_heartbeat(&info, now + state.config.run_ttl.as_millis() as i64).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

async fn cancel_loop(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.cancel_poll) => {}
            _ = phase.changed() => {}
        }
        if *phase.borrow() == Phase::Halted {
            return;
        }
        if state.total.load(Ordering::SeqCst) == 0 {
            continue;
        }
        match state.client.store().job_cancel_requested(&state.id).await {
            Ok(ids) => {
                for id in ids {
                    state.client.shared.cancel_local(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking for cancels failed"),
        }
    }
}

/// Reacts to the database's notices: new jobs wake the claim loops, a cancel
/// interrupts the run at once; after a reconnect, look again.
async fn notice_loop(
    state: Arc<NodeState>,
    mut notices: tokio::sync::mpsc::UnboundedReceiver<Notice>,
    mut phase: watch::Receiver<Phase>,
) {
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            _ = phase.changed() => {
                if *phase.borrow() == Phase::Halted {
                    return;
                }
                continue;
            }
        };
        match notice {
            Some(Notice::JobsAvailable { queue }) => {
                if state.in_flight.contains_key(&queue) {
                    state.client.trigger();
                }
            }
            Some(Notice::CancelRequested { job_id }) => state.client.shared.cancel_local(job_id),
            Some(Notice::Reconnected) => state.client.trigger(),
            None => return,
        }
    }
}

async fn maintenance_loop(state: Arc<NodeState>, mut phase: watch::Receiver<Phase>) {
    let client = state.client.clone();
    let mut last_prune: Option<i64> = None;
    loop {
        if *phase.borrow() != Phase::Running {
            return;
        }
        let now = client.clock().now();
        let lease_until = now + state.config.leader_ttl.as_millis() as i64;
        match client.store().leader_acquire(&state.id, now, lease_until).await {
            Ok(true) => {
                if let Err(e) = maintenance::expire_dead_runs(&client, now).await {
                    tracing::warn!(error = %e, "expiring dead runs failed");
                }
                if let Err(e) = maintenance::fire_schedules(&client, now).await {
                    tracing::warn!(error = %e, "firing schedules failed");
                }
                if let Some(keep) = state.config.prune_after
                    && last_prune.is_none_or(|at| now - at >= 60_000)
                {
                    last_prune = Some(now);
                    match client.store().run_prune(now - keep.as_millis() as i64).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(pruned = n, "pruned old runs"),
                        Err(e) => tracing::warn!(error = %e, "pruning failed"),
                    }
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(state.config.maintenance_interval) => {}
            _ = phase.changed() => {}
        }
    }
}
