//! `elihu bench`: throughput and latency of this node on a database, with
//! no-op wasm jobs (each in a fresh sandbox), a job component of your own
//! (`--job FILE.wasm`, e.g. the JavaScript or Python hello example), or jobs
//! of one HTTP call each (`--http`: the `fetch` example, granted a server this
//! command runs on 127.0.0.1). Burn-down: enqueue N, work them all, report
//! jobs per second. Continuous: enqueue at a fixed rate for a while, report
//! enqueue-to-start latency percentiles. Peak memory either way. It touches
//! only its own data: the templates `elihu-bench-noop`, `elihu-bench-job` and
//! `elihu-bench-http` on the queue `elihu-bench`, and that queue's settings
//! (cleared, or a global limit with `--global-limit`, to measure what a
//! limited claim costs).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use elihu::engine::{Node, NodeConfig};
use elihu::model::JobId;
use elihu::runtime::RuntimeConfig;
use elihu::store::{JobFilter, QueueChange, TemplateDefaults, TemplateSettings};
use elihu::{Enqueue, Event, units};

use super::settings::{DbArgs, open_with};

/// The template of the carried no-op job, of a `--job` component and of the
/// `--http` jobs.
const NOOP_TEMPLATE: &str = "elihu-bench-noop";
const JOB_TEMPLATE: &str = "elihu-bench-job";
const HTTP_TEMPLATE: &str = "elihu-bench-http";
const QUEUE: &str = "elihu-bench";

/// Arguments of `elihu bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Burn-down: enqueue this many jobs, then work them all.
    #[arg(short = 'n', long, conflicts_with = "duration")]
    jobs: Option<u64>,
    /// Continuous: enqueue at `--rate` for this long (`30s`).
    #[arg(long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// Jobs per second in continuous mode.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Jobs per enqueue batch in burn-down mode.
    #[arg(long, default_value_t = 5000)]
    batch_size: usize,
    /// Runs in flight at once on this node.
    #[arg(long, default_value_t = 1000)]
    concurrency: u32,
    /// A global concurrency limit on the bench queue (its claims then go
    /// through the limited path); none by default.
    #[arg(long)]
    global_limit: Option<u32>,
    /// The job component to run instead of the carried no-op job (for
    /// example `example-jobs/js/dist/hello.wasm`; use a small `--concurrency`
    /// for big components: each run in flight holds its own heap).
    #[arg(long, value_name = "FILE.wasm")]
    job: Option<PathBuf>,
    /// The context of every job.
    #[arg(long, default_value = "{}")]
    context: String,
    /// Each job makes one HTTP GET to a server on 127.0.0.1 that this
    /// command runs (the cost of a granted outbound call).
    #[arg(long, conflicts_with_all = ["job", "context"])]
    http: bool,
}

/// A server on 127.0.0.1 answering `GET /hook` with 11 bytes of JSON; its address.
async fn local_server() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the local HTTP server")?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/hook", axum::routing::get(|| async { r#"{"ok":true}"# }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Resident memory now and at its peak, in bytes (Linux).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    elihu::store::percentile(sorted, p).unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.jobs.is_none() && args.duration.is_none() {
        bail!("give -n COUNT (burn-down) or --duration D (continuous at --rate)");
    }
    let mut context = elihu::schema::parse_json("the context", &args.context)?;
    let mut settings = TemplateSettings::default();
    let (template, what, wasm) = match &args.job {
        Some(path) => {
            let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (JOB_TEMPLATE, format!("{} wasm", path.display()), wasm)
        }
        None if args.http => {
            let origin = format!("http://{}", local_server().await?);
            settings.grants.allowed_hosts = vec![elihu::grants::AllowedHost::parse(&origin)?];
            context = json!({"url": format!("{origin}/hook")});
            let fetch = elihu::examples::get("fetch").expect("elihu carries the fetch example");
            (HTTP_TEMPLATE, "one-HTTP-call wasm".to_string(), fetch.wasm.to_vec())
        }
        None => {
            let noop = elihu::examples::get("noop").expect("elihu carries the noop example");
            (NOOP_TEMPLATE, "no-op wasm".to_string(), noop.wasm.to_vec())
        }
    };
    let file = args.db.file()?;
    let runtime = RuntimeConfig { max_concurrent_runs: args.concurrency + 16, ..RuntimeConfig::default() };
    let client = open_with(&args.db, &file, runtime).await?;
    let (mut jobs, mut runs) = (0, 0);
    for name in [NOOP_TEMPLATE, JOB_TEMPLATE, HTTP_TEMPLATE] {
        let (j, r) = client.store().template_purge(name).await?;
        (jobs, runs) = (jobs + j, runs + r);
    }
    eprintln!(
        "elihu bench on {}: removed its own earlier data ({jobs} jobs, {runs} runs of templates {NOOP_TEMPLATE}, {JOB_TEMPLATE} and {HTTP_TEMPLATE}); nothing else is touched",
        args.db.url(&file)
    );
    let limits = QueueChange { paused: Some(false), global_limit: Some(args.global_limit), rate: Some(None), partition: Some(None) };
    client.queue_set(QUEUE, limits).await.context("setting the bench queue's limits")?;
    if let Some(n) = args.global_limit {
        eprintln!("the queue {QUEUE} has a global limit of {n} runs in flight");
    }
    let defaults = TemplateDefaults { queue: QUEUE.into(), max_attempts: 1, ..TemplateDefaults::default() };
    let loaded = Instant::now();
    client
        .template_push(template, &wasm, &json!({"type": "object"}), &defaults, &settings)
        .await
        .context("pushing the bench template")?;
    eprintln!("pushed {what} as template {template} in {:.2} s", loaded.elapsed().as_secs_f64());
    let config = NodeConfig {
        queues: BTreeMap::from([(QUEUE.to_string(), args.concurrency)]),
        prune_after: None,
        ..NodeConfig::default()
    };
    let remaining = |client: elihu::Client| async move {
        let filter = JobFilter { template: Some(template.into()), limit: Some(1), ..JobFilter::default() };
        client.job_list(&filter).await.map(|j| j.len())
    };

    if let Some(total) = args.jobs {
        let inserted = Instant::now();
        let mut left = total;
        while left > 0 {
            let n = left.min(args.batch_size as u64);
            let batch = (0..n).map(|_| Enqueue::new(template, context.clone())).collect();
            client.enqueue_batch(batch).await?;
            left -= n;
        }
        let took = inserted.elapsed();
        eprintln!("enqueued {total} jobs in {:.2} s ({:.0} jobs/s)", took.as_secs_f64(), total as f64 / took.as_secs_f64());
        let started = Instant::now();
        let node = Node::start(client.clone(), config).await?;
        // Progress is read off the node's count of recorded outcomes, not the
        // event stream: a subscriber woken twice per job would cost the node
        // more than the runs themselves. Read every 10 ms, so the end is
        // known to within 10 ms.
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut last_report = Instant::now();
        let mut done_at_report = 0u64;
        let mut rss_at_100k = None;
        loop {
            tick.tick().await;
            let done = node.finished();
            if rss_at_100k.is_none() && done >= 100_000 {
                rss_at_100k = Some(memory().0);
            }
            if done >= total {
                break;
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                // No progress for a second: a run may have been fenced off
                // (its outcome discarded); the database says what is left.
                if done == done_at_report && remaining(client.clone()).await? == 0 {
                    break;
                }
                let rate = (done - done_at_report) as f64 / last_report.elapsed().as_secs_f64();
                eprintln!("  {done}/{total} done, {rate:.0} jobs/s, RSS {}", mib(memory().0));
                last_report = Instant::now();
                done_at_report = done;
            }
        }
        let took = started.elapsed();
        node.shutdown().await;
        let (rss, peak) = memory();
        println!(
            "burn-down: {total} {what} jobs in {:.2} s = {:.0} jobs/s (RSS {}, peak {}{})",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64(),
            mib(rss),
            mib(peak),
            rss_at_100k.map(|r| format!(", RSS after the first 100,000: {}", mib(r))).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }

    // Continuous: a steady rate, latency from enqueue to start.
    let duration = args.duration.expect("checked above");
    let node = Node::start(client.clone(), config).await?;
    let enqueued_at: Arc<Mutex<HashMap<JobId, Instant>>> = Arc::default();
    let mut events = client.subscribe();
    let producer = {
        let client = client.clone();
        let enqueued_at = enqueued_at.clone();
        let rate = args.rate.max(1);
        let context = context.clone();
        tokio::spawn(async move {
            let tick = Duration::from_millis(10);
            let per_tick = (rate as f64 * tick.as_secs_f64()).max(1.0);
            let mut owed = 0.0;
            let mut interval = tokio::time::interval(tick);
            let end = Instant::now() + duration;
            while Instant::now() < end {
                interval.tick().await;
                owed += per_tick;
                let n = owed.floor() as usize;
                owed -= n as f64;
                if n == 0 {
                    continue;
                }
                let at = Instant::now();
                let batch = (0..n).map(|_| Enqueue::new(template, context.clone())).collect();
                match client.enqueue_batch(batch).await {
                    Ok(ids) => {
                        let mut map = enqueued_at.lock().unwrap();
                        for id in ids {
                            map.insert(id.id(), at);
                        }
                    }
                    Err(e) => eprintln!("enqueue failed: {e}"),
                }
            }
        })
    };
    let mut latencies: Vec<Duration> = Vec::new();
    let mut window: Vec<Duration> = Vec::new();
    let mut last_report = Instant::now();
    let started = Instant::now();
    while !producer.is_finished() || !enqueued_at.lock().unwrap().is_empty() {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Ok(Event::Started { job_id, .. })) => {
                if let Some(at) = enqueued_at.lock().unwrap().remove(&job_id) {
                    window.push(at.elapsed());
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => eprintln!("  (missed {n} events)"),
            _ => {}
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            window.sort();
            eprintln!(
                "  {} started, latency p50 {} p95 {} p99 {}, RSS {}",
                window.len(),
                ms(percentile(&window, 50.0)),
                ms(percentile(&window, 95.0)),
                ms(percentile(&window, 99.0)),
                mib(memory().0)
            );
            latencies.append(&mut window);
            last_report = Instant::now();
        }
        if started.elapsed() > duration + Duration::from_secs(60) {
            eprintln!("stopping: jobs are still waiting a minute after the last enqueue");
            break;
        }
    }
    latencies.append(&mut window);
    node.shutdown().await;
    latencies.sort();
    let (_, peak) = memory();
    println!(
        "continuous: {} jobs at {} jobs/s for {}: enqueue-to-start p50 {} p95 {} p99 {} (peak RSS {})",
        latencies.len(),
        args.rate,
        units::format_duration(duration),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(percentile(&latencies, 99.0)),
        mib(peak)
    );
    Ok(ExitCode::SUCCESS)
}
