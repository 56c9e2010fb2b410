//! `elihu demo`: the first run. Starts a node on embedded SQLite, pushes the
//! example templates elihu carries, enqueues a handful of jobs (one succeeds,
//! one is retried, one times out, one resumes from its checkpoint), shows
//! what happens to them, then keeps serving the API and the dashboard until
//! Ctrl-C.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use elihu::api::{ApiState, router};
use elihu::engine::{Node, NodeConfig};
use elihu::model::JobId;
use elihu::runtime::RuntimeConfig;
use elihu::store::{RunFilter, TemplateDefaults, TemplateSettings};
use elihu::{Enqueue, Event, units};

use super::settings::{DbArgs, open_with};

/// Arguments of `elihu demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Where the HTTP API listens afterwards.
    #[arg(long, default_value = "127.0.0.1:7450")]
    listen: String,
    /// Stop after showing the runs instead of serving.
    #[arg(long)]
    exit: bool,
}

fn defaults(max_attempts: u32, timeout: Duration) -> TemplateDefaults {
    TemplateDefaults {
        max_attempts,
        timeout_ms: timeout.as_millis() as u64,
        backoff_base_ms: 500,
        backoff_max_ms: 5_000,
        ..TemplateDefaults::default()
    }
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let file = args.db.file()?;
    let client = open_with(&args.db, &file, RuntimeConfig::default()).await?;
    eprintln!("elihu demo on {}", args.db.url(&file));

    let templates = [
        ("hello", defaults(3, Duration::from_secs(10))),
        ("wordfreq", defaults(3, Duration::from_secs(10))),
        ("flaky", defaults(3, Duration::from_secs(10))),
        ("progress", defaults(2, Duration::from_secs(10))),
        ("spin", defaults(1, Duration::from_secs(1))),
    ];
    for (name, defaults) in &templates {
        let example = elihu::examples::get(name).expect("elihu carries its examples");
        let schema = serde_json::from_str(example.schema.expect("examples have schemas"))?;
        let t = client.template_push(name, example.wasm, &schema, defaults, &TemplateSettings::default()).await?;
        eprintln!("pushed template {name} (version {}, component {})", t.version, t.digest.short());
    }

    let mut events = client.subscribe();
    let node = Node::start(client.clone(), NodeConfig { poll_interval: Duration::from_millis(100), ..NodeConfig::default() }).await?;
    let jobs = vec![
        Enqueue::new("hello", json!({"name": "world"})),
        Enqueue::new("wordfreq", json!({"text": "the cat and the hat and the bat", "top": 3})),
        Enqueue::new("flaky", json!({"fail_times": 1})),
        Enqueue::new("progress", json!({"steps": 4, "fail_after": 2})),
        Enqueue::new("spin", json!({})),
    ];
    let inserted = client.enqueue_batch(jobs).await?;
    let ids: HashSet<JobId> = inserted.iter().map(|i| i.id()).collect();
    eprintln!("enqueued jobs {:?}", inserted.iter().map(|i| i.id()).collect::<Vec<_>>());

    let mut open: HashSet<JobId> = ids.clone();
    while !open.is_empty() {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .context("the demo jobs did not finish within a minute")?;
        let Ok(event) = event else { continue };
        if !ids.contains(&event.job_id()) {
            continue;
        }
        match &event {
            Event::Started { job_id, attempt, .. } => eprintln!("job {job_id}: attempt {attempt} started"),
            Event::Progress { job_id, percent, message, .. } => eprintln!("job {job_id}: {percent}% {message}"),
            Event::Succeeded { job_id, output, .. } => eprintln!("job {job_id}: succeeded: {output}"),
            Event::Retried { job_id, reason, message, run_at, .. } => {
                let wait = run_at.duration_since(client.clock().now());
                eprintln!("job {job_id}: failed ({reason}): {message}; retrying in {}", units::format_duration(wait));
            }
            Event::Failed { job_id, reason, message, .. } => eprintln!("job {job_id}: failed for good ({reason}): {message}"),
            _ => {}
        }
        if event.is_final() {
            open.remove(&event.job_id());
        }
    }
    let runs = client.run_list(&RunFilter { limit: Some(20), ..RunFilter::default() }).await?;
    let mine: Vec<_> = runs.into_iter().filter(|r| ids.contains(&r.job_id)).collect();
    println!();
    super::jobs::print_runs(&mine);
    println!();

    if args.exit {
        node.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    let addr: SocketAddr = args.listen.parse().with_context(|| format!("`{}` is not an address", args.listen))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    let state = ApiState { client: client.clone(), node: Some(node.handle()), token: None };
    eprintln!("elihu is serving http://{addr} (Ctrl-C stops it): open http://{addr}/ for the dashboard. In another shell, try:");
    eprintln!("  elihu enqueue hello --context '{{\"name\": \"you\"}}' --wait");
    eprintln!("  elihu runs ls");
    eprintln!("  curl -s http://{addr}/v1/stats");
    axum::serve(listener, router(state)).with_graceful_shutdown(super::serve::shutdown_signal()).await?;
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
