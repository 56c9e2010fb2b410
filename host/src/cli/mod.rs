//! `elihu` subcommands: argument parsing and dispatch; each command lives in its own module.

mod bench;
mod cache;
mod demo;
mod jobs;
mod new;
mod queue;
mod run;
mod schedule;
mod secret;
mod serve;
mod settings;
mod template;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// elihu runs background jobs that are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "elihu", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The first run: a node on SQLite working the example jobs, then serving.
    Demo(demo::DemoArgs),
    /// Run a node working the queues, with the HTTP API.
    Serve(serve::ServeArgs),
    /// Run a job component once, locally: the job author's loop.
    Run(run::RunArgs),
    /// Start a job project in Rust, JavaScript or Python.
    New(new::NewArgs),
    /// Manage templates.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Enqueue a job (or a batch).
    Enqueue(jobs::EnqueueArgs),
    /// Look at queued and running jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Cancel a job.
    Cancel(jobs::CancelArgs),
    /// Queues across all nodes: pause, resume, global and rate limits, partitions.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Schedules: templates enqueued by cron rule or interval.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Secrets: values stored encrypted, granted to templates.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Look at runs: the history of every attempt.
    #[command(subcommand)]
    Runs(jobs::RunsCommand),
    /// Per-template figures (counts, durations, queue depth) and per-queue limits.
    Stats(jobs::DbOnly),
    /// Nodes working the database.
    Nodes(jobs::DbOnly),
    /// Measure throughput and latency with no-op wasm jobs or a component of yours (its own data only).
    Bench(bench::BenchArgs),
    /// Create or update the database's tables.
    Migrate(jobs::DbOnly),
    /// The compiled-artifact cache on this machine: list, prune.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

pub fn main() -> ExitCode {
    // The raw matches tell the order of flags (each `--header` belongs to
    // the `--allow-host` before it).
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let telemetry = match elihu::telemetry::Telemetry::init() {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: could not set up the OTLP trace exporter from OTEL_EXPORTER_OTLP_*: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let result = match cli.command {
            Command::Demo(args) => demo::demo(args).await,
            Command::Serve(args) => serve::serve(args).await,
            Command::Run(args) => run::run(args).await,
            Command::New(args) => new::new(args),
            Command::Template(command) => template::run(command, matches.subcommand_matches("template")).await,
            Command::Enqueue(args) => jobs::enqueue(args).await,
            Command::Jobs(command) => jobs::jobs(command).await,
            Command::Cancel(args) => jobs::cancel(args).await,
            Command::Runs(command) => jobs::runs(command).await,
            Command::Queue(command) => queue::run(command).await,
            Command::Schedule(command) => schedule::run(command).await,
            Command::Secret(command) => secret::run(command).await,
            Command::Stats(args) => jobs::stats(args).await,
            Command::Nodes(args) => jobs::nodes(args).await,
            Command::Migrate(args) => jobs::migrate(args).await,
            Command::Bench(args) => bench::bench(args).await,
            Command::Cache(command) => cache::run(command),
        };
        // Spans still queued go out before the process ends.
        telemetry.shutdown().await;
        result
    });
    // Runs still blocked in host calls must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `--config key=value`.
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}
