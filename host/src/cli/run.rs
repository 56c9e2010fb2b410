//! `elihu run FILE.wasm --context JSON`: runs a job once, locally, printing its
//! logs and progress as they come and its output at the end. It shares the
//! node's compiled-artifact cache, so only the first run of a component
//! compiles it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use elihu::model::{LogLevel, LogLine};
use elihu::runtime::{Ending, JobInfo, LoadSource, RunFeed, RunLimits, RunRequest, Runtime, RuntimeConfig, Throttle};
use elihu::schema::{ContextSchema, parse_json};
use elihu::units;

/// Arguments of `elihu run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job component (`.wasm`).
    #[arg(required_unless_present = "example", conflicts_with = "example")]
    file: Option<PathBuf>,
    /// Run one of the example jobs elihu carries (`hello`, `wordfreq`, `flaky`, ...)
    /// instead of a file; its schema is checked unless `--schema` is given.
    #[arg(long, value_name = "NAME")]
    example: Option<String>,
    /// The job's context, as JSON.
    #[arg(long, default_value = "{}")]
    context: String,
    /// A JSON Schema file the context must satisfy.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// How long the run may take (`30s`, `500ms`, `2m`).
    #[arg(long, default_value = "30s", value_parser = units::parse_duration)]
    timeout: Duration,
    /// How much memory the run may use (`64MiB`, `1GiB`).
    #[arg(long, default_value = "64MiB", value_parser = units::parse_size)]
    memory: u64,
    /// A configuration value the job reads with `config(key)`; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    config: Vec<(String, String)>,
    /// The checkpoint to hand the run, as if an earlier attempt saved it.
    #[arg(long)]
    checkpoint: Option<String>,
    /// The attempt number to report to the job.
    #[arg(long, default_value_t = 1)]
    attempt: u32,
    /// Epoch tick: the granularity of timeouts (`10ms`).
    #[arg(long, default_value = "10ms", value_parser = units::parse_duration)]
    tick: Duration,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let context = parse_json("the context", &args.context)?;
    let (name, bytes, example_schema) = match (&args.file, &args.example) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (name, bytes, None)
        }
        (None, Some(name)) => {
            let Some(example) = elihu::examples::get(name) else {
                let names: Vec<&str> = elihu::examples::ALL.iter().map(|e| e.name).collect();
                anyhow::bail!("there is no example job `{name}`; the examples are: {}", names.join(", "));
            };
            (name.clone(), example.wasm.to_vec(), example.schema.map(|s| (format!("the {name} example's schema"), s.to_string())))
        }
        (None, None) => anyhow::bail!("give a .wasm file or --example NAME"),
    };
    let schema = match &args.schema {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading the schema {}", path.display()))?,
        )),
        None => example_schema,
    };
    if let Some((source, text)) = schema {
        let schema = ContextSchema::from_text(&text).with_context(|| format!("in {source}"))?;
        if let Err(e) = schema.validate(&context) {
            eprintln!("error: the context does not match {source}:");
            for v in e.violations() {
                eprintln!("  {v}");
            }
            return Ok(ExitCode::from(2));
        }
    }
    // The config file may name the artifact directory (`cache_dir`).
    let settings = super::settings::DbArgs {
        database: None,
        config_file: std::env::var_os("ELIHU_CONFIG_FILE").map(PathBuf::from),
        ..Default::default()
    };
    let artifact_dir = super::settings::cache_dir(&settings.file()?);
    let runtime = Runtime::new(RuntimeConfig {
        epoch_tick: args.tick,
        max_concurrent_runs: 4,
        max_memory: args.memory.max(RuntimeConfig::default().max_memory),
        artifact_dir: Some(artifact_dir.clone()),
        ..RuntimeConfig::default()
    })?;
    let loading = Instant::now();
    let (job, source) = runtime.load_with_source(&bytes).with_context(|| format!("loading {name}"))?;
    let took = units::format_duration(round_ms(loading.elapsed()));
    match source {
        LoadSource::Compiled => {
            eprintln!("[ host] compiled {name} in {took}; kept in the artifact cache ({}) for the next run", artifact_dir.display())
        }
        LoadSource::Disk | LoadSource::Memory => eprintln!("[ host] loaded {name} from the artifact cache in {took}"),
    }

    let limits = runtime.config().limits;
    let feed = RunFeed::new(limits.max_streamed_lines);
    let (ended, mut ended_rx) = tokio::sync::oneshot::channel::<()>();
    let printer = tokio::spawn({
        let feed = feed.clone();
        async move {
            let mut progress = Throttle::new(limits.progress_interval);
            loop {
                let due = progress.due_at();
                let over = tokio::select! {
                    biased;
                    _ = &mut ended_rx => true,
                    _ = feed.changed() => false,
                    _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => false,
                };
                let batch = feed.take();
                for line in batch.lines {
                    print_line(&line);
                }
                if batch.lines_skipped > 0 {
                    eprintln!("[ host] {} log lines not shown live (the job logs faster than they print)", batch.lines_skipped);
                }
                if let Some(p) = batch.progress {
                    progress.offer(p);
                }
                if let Some(state) = batch.checkpoint {
                    eprintln!("[checkpoint] {state}");
                }
                // When the run is over the latest progress is shown at once.
                let now = if over { tokio::time::Instant::now() + limits.progress_interval } else { tokio::time::Instant::now() };
                if let Some(p) = progress.take_due(now) {
                    eprintln!("[{:>3}%] {}", p.percent, p.message);
                }
                if over {
                    return;
                }
            }
        }
    });
    let request = RunRequest {
        context: args.context.clone(),
        info: JobInfo {
            id: 0,
            template: name,
            attempt: args.attempt,
            max_attempts: args.attempt,
            checkpoint: args.checkpoint.clone(),
        },
        limits: RunLimits { timeout: args.timeout, memory: args.memory },
        config: Arc::new(args.config.into_iter().collect::<BTreeMap<_, _>>()),
        feed: Some(feed),
        ..RunRequest::default()
    };
    let outcome = runtime.run(&job, request).await;
    let _ = ended.send(());
    let _ = printer.await;
    // What elihu cut from the run (written when it ended).
    for line in outcome.logs.iter().filter(|l| l.level == LogLevel::Host) {
        print_line(line);
    }
    match outcome.ending {
        Ending::Succeeded { output } => {
            let pretty = serde_json::from_str::<serde_json::Value>(&output)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or(output);
            println!("{pretty}");
            eprintln!("succeeded in {}", units::format_duration(round_ms(outcome.duration)));
            Ok(ExitCode::SUCCESS)
        }
        Ending::Failed { reason, message } => {
            eprintln!(
                "failed ({reason}) after {}: {message}",
                units::format_duration(round_ms(outcome.duration))
            );
            Ok(ExitCode::FAILURE)
        }
        Ending::Snoozed { delay } => {
            eprintln!(
                "snoozed after {}: a node would run the job again in {}, with the attempt given back \
                 (run it again with --checkpoint to hand it the checkpoint it saved)",
                units::format_duration(round_ms(outcome.duration)),
                units::format_duration(delay)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_line(line: &LogLine) {
    match line.level {
        LogLevel::Stdout | LogLevel::Stderr => eprintln!("[{}] {}", line.level.as_str(), line.message),
        level => eprintln!("[{:>5}] {}", level.as_str(), line.message),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
