//! Prometheus metrics of one process (one registry per `Client`, no global
//! recorder, so nodes embedded side by side keep their own counts), in the
//! text format `GET /metrics` serves. Labels are template, queue, result,
//! reason and node names, never job or run ids, so cardinality stays bounded
//! by what the operator configured. Counters count what this process did;
//! the queue gauges are the whole cluster's, read from the database when
//! scraped (at most every 5 s).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::model::{Millis, Reason, RunResult};
use crate::store::{Store, StoreError};

/// How long queue gauges read from the database are reused.
const QUEUE_GAUGES_FOR: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Enqueued {
    template: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    template: String,
    result: &'static str,
    /// Empty when the run succeeded.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabel {
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueState {
    queue: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 9 minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

fn memory_histogram() -> Histogram {
    // 64 KiB to 4 GiB.
    Histogram::new(exponential_buckets(65_536.0, 2.0, 17))
}

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    jobs_enqueued: Family<Enqueued, Counter>,
    runs_finished: Family<Finished, Counter>,
    run_duration: Family<TemplateLabel, Histogram, fn() -> Histogram>,
    start_latency: Family<QueueLabel, Histogram, fn() -> Histogram>,
    run_memory: Family<TemplateLabel, Histogram, fn() -> Histogram>,
    running: Family<QueueLabel, Gauge>,
    queue_jobs: Family<QueueState, Gauge>,
    claim_batch: Histogram,
    writer_lag: Histogram,
    node_up: Family<NodeLabel, Gauge>,
    leader: Family<NodeLabel, Gauge>,
    /// When the queue gauges were last read from the database.
    queue_read: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with every elihu metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("elihu");
        let m = Metrics {
            jobs_enqueued: Family::default(),
            runs_finished: Family::default(),
            run_duration: Family::new_with_constructor(seconds_histogram),
            start_latency: Family::new_with_constructor(seconds_histogram),
            run_memory: Family::new_with_constructor(memory_histogram),
            running: Family::default(),
            queue_jobs: Family::default(),
            claim_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            writer_lag: seconds_histogram(),
            node_up: Family::default(),
            leader: Family::default(),
            queue_read: Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register("jobs_enqueued", "Jobs enqueued through this process", m.jobs_enqueued.clone());
        registry.register("runs_finished", "Runs whose outcome this process recorded, by template, result and reason", m.runs_finished.clone());
        registry.register_with_unit("run_duration", "Run time, by template", Unit::Seconds, m.run_duration.clone());
        registry.register_with_unit(
            "start_latency",
            "From when a job was due (its run-at or enqueue) to the start of its run, by queue",
            Unit::Seconds,
            m.start_latency.clone(),
        );
        registry.register_with_unit("run_memory", "Peak linear memory of a run, by template", Unit::Bytes, m.run_memory.clone());
        registry.register("running", "Runs in flight on this process's nodes, by queue", m.running.clone());
        registry.register(
            "queue_jobs",
            "Jobs in the whole cluster by queue and state (available, scheduled, retrying, running); read at scrape",
            m.queue_jobs.clone(),
        );
        registry.register("claim_batch", "Jobs taken per claim", m.claim_batch.clone());
        registry.register_with_unit("outcome_writer_lag", "From a run's end to its outcome committed", Unit::Seconds, m.writer_lag.clone());
        registry.register("node_up", "1 while a node of this process runs", m.node_up.clone());
        registry.register("leader", "1 while a node of this process holds the leader lease", m.leader.clone());
        Metrics { registry, ..m }
    }

    pub(crate) fn enqueued(&self, template: &str, queue: &str) {
        self.jobs_enqueued.get_or_create(&Enqueued { template: template.into(), queue: queue.into() }).inc();
    }

    /// A run started: its latency from due to start, and one more running.
    pub(crate) fn started(&self, queue: &str, due: Millis, now: Millis) {
        let label = QueueLabel { queue: queue.into() };
        self.start_latency.get_or_create(&label).observe((now.0 - due.0).max(0) as f64 / 1000.0);
        self.running.get_or_create(&label).inc();
    }

    /// A run is no longer in flight (recorded or fenced off).
    pub(crate) fn stopped(&self, queue: &str) {
        self.running.get_or_create(&QueueLabel { queue: queue.into() }).dec();
    }

    /// A run's outcome was recorded.
    pub(crate) fn finished(&self, template: &str, result: RunResult, reason: Option<Reason>, duration: Duration, peak_memory: u64) {
        let label = Finished { template: template.into(), result: result.as_str(), reason: reason.map_or("", Reason::as_str) };
        self.runs_finished.get_or_create(&label).inc();
        let template = TemplateLabel { template: template.into() };
        self.run_duration.get_or_create(&template).observe(duration.as_secs_f64());
        if peak_memory > 0 {
            self.run_memory.get_or_create(&template).observe(peak_memory as f64);
        }
    }

    /// A run of another node expired (recorded by this leader).
    pub(crate) fn expired(&self, template: &str) {
        let label = Finished { template: template.into(), result: RunResult::Failed.as_str(), reason: Reason::Expired.as_str() };
        self.runs_finished.get_or_create(&label).inc();
    }

    pub(crate) fn claimed(&self, jobs: usize) {
        self.claim_batch.observe(jobs as f64);
    }

    pub(crate) fn written(&self, lag: Duration) {
        self.writer_lag.observe(lag.as_secs_f64());
    }

    pub(crate) fn node(&self, node: &str, up: bool) {
        self.node_up.get_or_create(&NodeLabel { node: node.into() }).set(i64::from(up));
        if !up {
            self.leading(node, false);
        }
    }

    pub(crate) fn leading(&self, node: &str, leads: bool) {
        self.leader.get_or_create(&NodeLabel { node: node.into() }).set(i64::from(leads));
    }

    /// Refreshes the cluster's queue gauges from the database, unless they
    /// were read in the last 5 s.
    pub async fn refresh_queues(&self, store: &dyn Store, now: Millis) -> Result<(), StoreError> {
        {
            let mut read = self.queue_read.lock().unwrap();
            if read.is_some_and(|at| at.elapsed() < QUEUE_GAUGES_FOR) {
                return Ok(());
            }
            *read = Some(Instant::now());
        }
        let counts = store.job_counts(now).await?;
        self.queue_jobs.clear();
        for (queue, state, n) in counts {
            self.queue_jobs.get_or_create(&QueueState { queue, state }).set(n);
        }
        Ok(())
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
