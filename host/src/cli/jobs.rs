//! `elihu enqueue`, `jobs ls`, `cancel`, `runs ls|show`, `stats`, `nodes`,
//! `migrate`: the queue from the command line, straight on the database.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use elihu::model::{JobId, Millis, Reason, RunId, RunResult};
use elihu::schema::parse_json;
use elihu::store::{CancelOutcome, Inserted, JobFilter, JobState, Run, RunFilter, RunStatus};
use elihu::{Client, Enqueue, units};

use super::settings::{DbArgs, open};

/// Arguments of `elihu enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The template.
    template: String,
    /// The context, as JSON.
    #[arg(long, default_value = "{}", conflicts_with = "batch")]
    context: String,
    /// Many contexts at once, as a JSON array: one job each, in one transaction.
    #[arg(long, value_name = "JSON-ARRAY")]
    batch: Option<String>,
    /// Priority, lower runs first [default: the template's]
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Queue [default: the template's]
    #[arg(long)]
    queue: Option<String>,
    /// Run after this delay (`30s`, `5m`).
    #[arg(long = "in", value_name = "DURATION", value_parser = units::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Run at this time (RFC 3339, `2026-11-22T10:00:00Z`).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Attempts in all [default: the template's]
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Timeout per run [default: the template's]
    #[arg(long, value_parser = units::parse_duration)]
    timeout: Option<Duration>,
    /// Memory limit per run [default: the template's]
    #[arg(long, value_parser = units::parse_size)]
    memory: Option<u64>,
    /// Refuse a second job with this key while the first is queued or running.
    #[arg(long)]
    unique_key: Option<String>,
    /// Narrow the template's allowed hosts for this job to ENTRY (repeatable;
    /// each must be covered by one of the template's).
    #[arg(long = "allow-host", value_name = "ENTRY", value_parser = elihu::grants::AllowedHost::parse)]
    allow_host: Vec<elihu::grants::AllowedHost>,
    /// Follow the job to its end, showing its progress; exit 1 if it fails.
    #[arg(long, conflicts_with = "batch")]
    wait: bool,
}

pub async fn enqueue(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let run_at = match &args.at {
        Some(text) => Some(Millis::parse_rfc3339(text).with_context(|| format!("`{text}` is not an RFC 3339 time such as 2026-11-22T10:00:00Z"))?),
        None => None,
    };
    let contexts: Vec<Value> = match &args.batch {
        Some(text) => match parse_json("the batch", text)? {
            Value::Array(items) => items,
            _ => bail!("--batch takes a JSON array of contexts"),
        },
        None => vec![parse_json("the context", &args.context)?],
    };
    let requests: Vec<Enqueue> = contexts
        .into_iter()
        .map(|context| Enqueue {
            template: args.template.clone(),
            context,
            priority: args.priority,
            queue: args.queue.clone(),
            run_at,
            delay: args.delay,
            traceparent: None,
            max_attempts: args.max_attempts,
            timeout: args.timeout,
            memory: args.memory,
            unique_key: args.unique_key.clone(),
            allowed_hosts: (!args.allow_host.is_empty()).then(|| args.allow_host.clone()),
        })
        .collect();
    let client = open(&args.db).await?;
    let batch = args.batch.is_some();
    let inserted = if batch { client.enqueue_batch(requests).await? } else { vec![client.enqueue(requests.into_iter().next().unwrap()).await?] };
    for i in &inserted {
        match i {
            Inserted::New(id) => println!("enqueued job {id}"),
            Inserted::Existing(id) => println!("job {id} with this unique key is already queued or running"),
        }
    }
    if args.wait {
        return wait(&client, inserted[0].id()).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows a job until it is over, printing each run's start, progress and
/// end, then the final output (exit 0) or failure (exit 1).
async fn wait(client: &Client, job_id: JobId) -> anyhow::Result<ExitCode> {
    let mut started = std::collections::HashSet::new();
    let mut ended = std::collections::HashSet::new();
    let mut last_progress = None;
    loop {
        // The job first: once it is gone, the runs read after it are final
        // (a run's end and the job's removal are one transaction).
        let job = client.job_get(job_id).await?;
        let mut runs = client.run_list(&RunFilter { job_id: Some(job_id), limit: Some(1000), ..RunFilter::default() }).await?;
        runs.reverse();
        for run in &runs {
            if started.insert(run.id) {
                eprintln!("run {} started: attempt {} of {} on {}", run.id, run.attempt, run.max_attempts, run.node_id);
            }
            if run.status == RunStatus::Running && run.progress.is_some() && run.progress != last_progress {
                let p = run.progress.clone().unwrap();
                eprintln!("[{:>3}%] {}", p.percent, p.message);
                last_progress = Some(p);
            }
            if run.status == RunStatus::Done && ended.insert(run.id) {
                eprintln!("run {} ended: {}", run.id, describe(run));
            }
        }
        if job.is_none() {
            match runs.last() {
                None => {
                    eprintln!("job {job_id} was removed before it ran (cancelled)");
                    return Ok(ExitCode::FAILURE);
                }
                Some(last) if last.status == RunStatus::Done => {
                    for line in &last.logs {
                        eprintln!("[{:>6}] {}", line.level.as_str(), line.message);
                    }
                    if last.result == Some(RunResult::Succeeded) {
                        println!("{}", pretty(last.output.as_deref().unwrap_or("null")));
                        return Ok(ExitCode::SUCCESS);
                    }
                    eprintln!("job {job_id} {}", describe(last));
                    return Ok(ExitCode::FAILURE);
                }
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn describe(run: &Run) -> String {
    match run.result {
        Some(RunResult::Succeeded) => "succeeded".into(),
        Some(RunResult::Cancelled) => "was cancelled".into(),
        Some(RunResult::Snoozed) => run.message.clone().unwrap_or_else(|| "snoozed".into()),
        Some(RunResult::Failed) => format!(
            "failed ({}): {}",
            run.reason.map_or("unknown", Reason::as_str),
            run.message.as_deref().unwrap_or("")
        ),
        None => "is running".into(),
    }
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<Value>(json).and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or_else(|_| json.to_string())
}

/// `elihu jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List queued and running jobs in claim order.
    Ls {
        #[command(flatten)]
        db: DbArgs,
        /// Only this template.
        #[arg(long)]
        template: Option<String>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only `available` or `running` jobs.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn jobs(command: JobsCommand) -> anyhow::Result<ExitCode> {
    let JobsCommand::Ls { db, template, queue, state, limit, json } = command;
    let state = match state.as_deref() {
        None => None,
        Some(text) => Some(JobState::parse(text).with_context(|| format!("--state `{text}` is not `available` or `running`"))?),
    };
    let client = open(&db).await?;
    let jobs = client.job_list(&JobFilter { template, queue, state, limit: Some(limit) }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>8} {:<16} {:<10} {:>5} {:<10} {:>8} {:<24}", "ID", "TEMPLATE", "QUEUE", "PRIO", "STATE", "ATTEMPT", "RUN AT");
    for j in jobs {
        println!(
            "{:>8} {:<16} {:<10} {:>5} {:<10} {:>8} {:<24}",
            j.id,
            j.template,
            j.queue,
            j.priority,
            j.state.as_str(),
            format!("{}/{}", j.attempt, j.max_attempts),
            j.run_at.to_rfc3339()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `elihu cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The job.
    id: JobId,
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let client = open(&args.db).await?;
    match client.cancel(args.id).await? {
        CancelOutcome::Removed => println!("job {} removed from its queue", args.id),
        CancelOutcome::Requested => println!("job {} is running; its node will interrupt it", args.id),
        CancelOutcome::NotFound => bail!("there is no queued or running job {}", args.id),
    }
    Ok(ExitCode::SUCCESS)
}

/// `elihu runs ...`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    Ls {
        #[command(flatten)]
        db: DbArgs,
        /// Only this job's runs.
        #[arg(long)]
        job: Option<JobId>,
        /// Only this template's runs.
        #[arg(long)]
        template: Option<String>,
        /// Only `running` runs, or only `done` ones.
        #[arg(long, value_parser = parse_status)]
        status: Option<RunStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: result, output and logs.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The run.
        id: RunId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    match text {
        "running" => Ok(RunStatus::Running),
        "done" => Ok(RunStatus::Done),
        _ => Err(format!("`{text}` is not `running` or `done`")),
    }
}

pub fn print_runs(runs: &[Run]) {
    println!("{:>6} {:>6} {:<14} {:>7} {:<10} {:<10} {:>8}  MESSAGE", "RUN", "JOB", "TEMPLATE", "ATTEMPT", "RESULT", "REASON", "TOOK");
    for r in runs {
        let result = match (r.status, r.result) {
            (RunStatus::Running, _) | (_, None) => r.status.as_str(),
            (_, Some(result)) => result.as_str(),
        };
        let took = r.finished_at.map(|f| units::format_duration(f.duration_since(r.started_at)));
        let message = r.message.clone().or_else(|| r.output.clone()).unwrap_or_default();
        let message: String = message.chars().take(60).collect();
        println!(
            "{:>6} {:>6} {:<14} {:>7} {:<10} {:<10} {:>8}  {}",
            r.id,
            r.job_id,
            r.template,
            format!("{}/{}", r.attempt, r.max_attempts),
            result,
            r.reason.map_or("", Reason::as_str),
            took.unwrap_or_default(),
            message
        );
    }
}

pub async fn runs(command: RunsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RunsCommand::Ls { db, job, template, status, limit, json } => {
            let client = open(&db).await?;
            let runs = client.run_list(&RunFilter { job_id: job, template, status, limit: Some(limit) }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print_runs(&runs);
            }
        }
        RunsCommand::Show { db, id, json } => {
            let client = open(&db).await?;
            let Some(run) = client.run_get(id).await? else { bail!("there is no run {id}") };
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("run {} of job {} ({}), attempt {} of {}", run.id, run.job_id, run.template, run.attempt, run.max_attempts);
            println!("node {}, component {}", run.node_id, run.digest.short());
            println!("started {}", run.started_at);
            if let Some(f) = run.finished_at {
                println!("finished {f}: {}", describe(&run));
            } else {
                println!("{}", describe(&run));
            }
            if let Some(p) = &run.progress {
                println!("progress {}%: {}", p.percent, p.message);
            }
            if let Some(c) = &run.checkpoint {
                println!("checkpoint {c}");
            }
            if let Some(o) = &run.output {
                println!("output:\n{}", pretty(o));
            }
            if !run.logs.is_empty() {
                println!("logs:");
                for line in &run.logs {
                    println!("  {:>6}ms [{}] {}", line.at_ms, line.level.as_str(), line.message);
                }
            }
            if !run.calls.is_empty() {
                println!("calls:");
                for call in &run.calls {
                    println!("  {}", describe_call(call));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One outbound call of a run, for people: when, what, and what came of it.
fn describe_call(call: &elihu::model::Call) -> String {
    let bytes = |b: Option<u64>| b.map_or_else(|| "-".to_string(), |b| units::format_size_human(b as usize));
    let what = match (&call.denied, call.status, &call.error) {
        (Some(why), _, _) => format!("refused: {why}"),
        (None, Some(status), None) => status.to_string(),
        (None, Some(status), Some(error)) => format!("{status}, then {error}"),
        (None, None, Some(error)) => format!("failed: {error}"),
        (None, None, None) => "connected".to_string(),
    };
    format!(
        "{:>6}ms {} {} {what} (sent {}, received {}, {}ms)",
        call.at_ms,
        call.method,
        call.target,
        bytes(call.bytes_sent),
        bytes(call.bytes_received),
        call.duration_ms
    )
}

/// Arguments of commands that only need the database.
#[derive(Debug, Args)]
pub struct DbOnly {
    #[command(flatten)]
    pub db: DbArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn stats(args: DbOnly) -> anyhow::Result<ExitCode> {
    let client = open(&args.db).await?;
    let stats = client.stats().await?;
    let queues = client.queue_list().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"templates": stats, "queues": queues}))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7}",
        "TEMPLATE", "SUCCEEDED", "FAILED", "CANCELLED", "SNOOZED", "QUEUED", "RUNNING", "P50", "P95", "CALLS", "REFUSED"
    );
    let ms = |v: Option<i64>| v.map(|v| format!("{v}ms")).unwrap_or_else(|| "-".into());
    for s in stats {
        println!(
            "{:<20} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7}",
            s.template,
            s.succeeded,
            s.failed,
            s.cancelled,
            s.snoozed,
            s.queued,
            s.running,
            ms(s.duration_p50_ms),
            ms(s.duration_p95_ms),
            s.calls,
            s.calls_denied
        );
    }
    println!();
    super::queue::print_queues(&queues);
    Ok(ExitCode::SUCCESS)
}

pub async fn nodes(args: DbOnly) -> anyhow::Result<ExitCode> {
    let client = open(&args.db).await?;
    let nodes = client.node_list().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<32} {:<16} {:>7} {:<24} {:<24}", "NODE", "HOST", "PID", "QUEUES", "LAST HEARTBEAT");
    for n in nodes {
        println!("{:<32} {:<16} {:>7} {:<24} {:<24}", n.id, n.hostname, n.pid, n.queues, n.heartbeat_at);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(args: DbOnly) -> anyhow::Result<ExitCode> {
    let file = args.db.file()?;
    let url = args.db.url(&file);
    let store = elihu::store::connect(&url).await.with_context(|| format!("opening {url}"))?;
    store.migrate().await?;
    println!("database {url} is up to date");
    Ok(ExitCode::SUCCESS)
}
