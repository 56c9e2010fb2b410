//! `elihu serve`: a node working the queues, plus the HTTP API, until
//! SIGTERM or Ctrl-C, then a graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use elihu::api::{ApiState, router};
use elihu::engine::{Node, NodeConfig};
use elihu::runtime::RuntimeConfig;
use elihu::units;

use super::settings::{DbArgs, FileSettings, file_duration, open_with};

/// Arguments of `elihu serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Where the HTTP API listens [default: 127.0.0.1:7450]
    #[arg(long, env = "ELIHU_LISTEN")]
    pub listen: Option<String>,
    /// Bearer token the API requires; needed to listen beyond loopback
    #[arg(long, env = "ELIHU_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A queue to work and its concurrency, `NAME=N`; repeatable [default: default=10]
    #[arg(long = "queue", value_name = "NAME=N", value_parser = parse_queue)]
    pub queues: Vec<(String, u32)>,
    /// Epoch tick: the granularity of timeouts and cancels [default: 10ms]
    #[arg(long, env = "ELIHU_TICK", value_parser = units::parse_duration)]
    pub tick: Option<Duration>,
    /// How often queues are polled when nothing wakes them [default: 250ms]
    #[arg(long, env = "ELIHU_POLL", value_parser = units::parse_duration)]
    pub poll: Option<Duration>,
    /// How long a shutdown lets runs finish [default: 10s]
    #[arg(long, env = "ELIHU_GRACE", value_parser = units::parse_duration)]
    pub grace: Option<Duration>,
    /// How long after a node's last heartbeat its runs expire [default: 30s]
    #[arg(long, env = "ELIHU_RUN_TTL", value_parser = units::parse_duration)]
    pub run_ttl: Option<Duration>,
    /// How often the node heartbeats [default: 5s, and at most a third of the run TTL]
    #[arg(long, env = "ELIHU_HEARTBEAT", value_parser = units::parse_duration)]
    pub heartbeat: Option<Duration>,
}

fn parse_queue(text: &str) -> Result<(String, u32), String> {
    let (name, n) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=N"))?;
    let n: u32 = n.parse().map_err(|_| format!("`{n}` is not a number of concurrent runs"))?;
    if n == 0 {
        return Err(format!("queue `{name}` needs a concurrency of at least 1"));
    }
    Ok((name.to_string(), n))
}

/// The node and runtime configuration from flags, environment and file.
pub fn node_config(args: &ServeArgs, file: &FileSettings) -> anyhow::Result<(NodeConfig, RuntimeConfig, String, Option<String>)> {
    let mut node = NodeConfig::default();
    let mut queues: BTreeMap<String, u32> = BTreeMap::new();
    for (name, entry) in &file.queues {
        queues.insert(name.clone(), entry.parse(name)?.0);
    }
    if !args.queues.is_empty() {
        queues = args.queues.iter().cloned().collect();
    }
    if !queues.is_empty() {
        node.queues = queues;
    }
    if let Some(poll) = args.poll.or(file_duration("poll", &file.poll)?) {
        node.poll_interval = poll;
    }
    if let Some(grace) = args.grace.or(file_duration("grace", &file.grace)?) {
        node.shutdown_grace = grace;
    }
    if let Some(ttl) = args.run_ttl.or(file_duration("run_ttl", &file.run_ttl)?) {
        node.run_ttl = ttl;
        node.heartbeat_interval = node.heartbeat_interval.min(ttl / 3);
        node.leader_ttl = node.leader_ttl.min(ttl);
    }
    if let Some(hb) = args.heartbeat.or(file_duration("heartbeat", &file.heartbeat)?) {
        node.heartbeat_interval = hb;
    }
    if let Some(n) = file.max_snoozes {
        node.max_snoozes = n;
    }
    let mut runtime = RuntimeConfig::default();
    if let Some(tick) = args.tick.or(file_duration("tick", &file.tick)?) {
        runtime.epoch_tick = tick;
    }
    let total: u32 = node.queues.values().sum();
    runtime.max_concurrent_runs = runtime.max_concurrent_runs.max(total + 16);
    let listen = args.listen.clone().or_else(|| file.listen.clone()).unwrap_or_else(|| "127.0.0.1:7450".into());
    let token = args.token.clone().or_else(|| file.token.clone()).filter(|t| !t.is_empty());
    Ok((node, runtime, listen, token))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let file = args.db.file()?;
    let (node_config, runtime, listen, token) = node_config(&args, &file)?;
    let addr: SocketAddr = listen.parse().with_context(|| format!("`{listen}` is not an address such as 127.0.0.1:7450"))?;
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "refusing to listen on {addr} without a token: anyone who can reach it could run jobs. \
             Set --token (or ELIHU_TOKEN), or listen on 127.0.0.1"
        );
    }
    // Every schedule in the config file is checked before anything starts.
    let mut schedules = Vec::new();
    for (name, entry) in &file.schedules {
        schedules.push(entry.spec(name).with_context(|| format!("schedule `{name}` in the config file"))?);
    }
    let mut queue_settings = Vec::new();
    for (name, entry) in &file.queues {
        let (_, change) = entry.parse(name)?;
        if change != elihu::store::QueueChange::default() {
            queue_settings.push((name, change));
        }
    }
    let client = open_with(&args.db, &file, runtime).await?;
    for (name, change) in queue_settings {
        client.queue_set(name, change).await.with_context(|| format!("queue `{name}` in the config file"))?;
    }
    for spec in schedules {
        let name = spec.name.clone();
        client.schedule_put(spec).await.with_context(|| format!("schedule `{name}` in the config file"))?;
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    let node = Node::start(client.clone(), node_config).await?;
    let state = ApiState { client: client.clone(), node: Some(node.handle()), token };
    eprintln!(
        "elihu serving http://{} (node {}, database {})",
        listener.local_addr()?,
        node.id(),
        args.db.url(&file)
    );
    let closing = client.clone();
    let stop = async move {
        shutdown_signal().await;
        // Open live streams would hold the graceful shutdown forever.
        closing.close_watches();
    };
    axum::serve(listener, router(state)).with_graceful_shutdown(stop).await?;
    eprintln!("elihu: shutting down; letting runs finish");
    let report = node.shutdown().await;
    eprintln!("elihu: stopped ({} runs finished, {} interrupted and queued again)", report.finished, report.interrupted);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
