//! `elihu template push|ls|show|rm`: manage templates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use elihu::schema::parse_json;
use elihu::store::TemplateDefaults;
use elihu::units;

use super::settings::{DbArgs, open};

/// `elihu template ...`
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Upload a component as a template (create, or update to a new version).
    Push(PushArgs),
    /// List templates.
    Ls {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a template.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The template.
        name: String,
    },
    /// Delete a template (refused while it has jobs unless --force).
    Rm {
        #[command(flatten)]
        db: DbArgs,
        /// The template.
        name: String,
        /// Also remove its queued jobs and cancel its running ones.
        #[arg(long)]
        force: bool,
    },
}

/// Arguments of `elihu template push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The template's name.
    name: String,
    /// The job component (.wasm).
    file: PathBuf,
    /// The JSON Schema file of the jobs' contexts.
    #[arg(long)]
    schema: PathBuf,
    /// Queue [default: default]
    #[arg(long)]
    queue: Option<String>,
    /// Priority, lower runs first [default: 0]
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Attempts in all [default: 3]
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Timeout per run [default: 30s]
    #[arg(long, value_parser = units::parse_duration)]
    timeout: Option<Duration>,
    /// Memory limit per run [default: 64MiB]
    #[arg(long, value_parser = units::parse_size)]
    memory: Option<u64>,
    /// First retry delay, doubling per attempt [default: 1s]
    #[arg(long, value_parser = units::parse_duration)]
    backoff_base: Option<Duration>,
    /// Longest retry delay [default: 1h]
    #[arg(long, value_parser = units::parse_duration)]
    backoff_max: Option<Duration>,
    /// A config value for the jobs, `KEY=VALUE`; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    config: Vec<(String, String)>,
}

pub async fn run(command: TemplateCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplateCommand::Push(args) => push(args).await,
        TemplateCommand::Ls { db, json } => {
            let client = open(&db).await?;
            let templates = client.template_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&templates)?);
            } else if templates.is_empty() {
                println!("no templates; push one with `elihu template push NAME FILE.wasm --schema FILE`");
            } else {
                println!("{:<20} {:>4} {:<14} {:<12} {:>8} {:>8} {:>8}", "NAME", "VER", "DIGEST", "QUEUE", "ATTEMPTS", "TIMEOUT", "MEMORY");
                for t in templates {
                    let d = &t.defaults;
                    println!(
                        "{:<20} {:>4} {:<14} {:<12} {:>8} {:>8} {:>8}",
                        t.name,
                        t.version,
                        t.digest.short(),
                        d.queue,
                        d.max_attempts,
                        units::format_duration(Duration::from_millis(d.timeout_ms)),
                        units::format_size(d.memory_bytes)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::Show { db, name } => {
            let client = open(&db).await?;
            println!("{}", serde_json::to_string_pretty(&client.template_get(&name).await?)?);
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::Rm { db, name, force } => {
            let client = open(&db).await?;
            client.template_delete(&name, force).await?;
            println!("deleted template {name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let text = std::fs::read_to_string(&args.schema).with_context(|| format!("reading {}", args.schema.display()))?;
    let schema = parse_json("the schema", &text).with_context(|| format!("in {}", args.schema.display()))?;
    let client = open(&args.db).await?;
    let base = match client.store().template_get(&args.name).await? {
        Some(existing) => existing.defaults,
        None => TemplateDefaults::default(),
    };
    let ms = |d: Option<Duration>, default: u64| d.map_or(default, |d| d.as_millis() as u64);
    let defaults = TemplateDefaults {
        queue: args.queue.unwrap_or(base.queue),
        priority: args.priority.unwrap_or(base.priority),
        max_attempts: args.max_attempts.unwrap_or(base.max_attempts),
        timeout_ms: ms(args.timeout, base.timeout_ms),
        memory_bytes: args.memory.unwrap_or(base.memory_bytes),
        backoff_base_ms: ms(args.backoff_base, base.backoff_base_ms),
        backoff_max_ms: ms(args.backoff_max, base.backoff_max_ms),
    };
    let config: BTreeMap<String, String> = args.config.into_iter().collect();
    // Compiled on this machine before (by `elihu run`, a push, a node)? Then
    // the push loads the artifact instead of compiling.
    let compiled = client.runtime().is_compiled(&elihu::model::Digest::of(&wasm));
    let pushing = std::time::Instant::now();
    let template = client
        .template_push(&args.name, &wasm, &schema, &defaults, &config)
        .await
        .with_context(|| format!("pushing {} as template `{}`", args.file.display(), args.name))?;
    let how = if compiled {
        "compiled code from the artifact cache".to_string()
    } else {
        format!("compiled in {}", units::format_duration(Duration::from_millis(pushing.elapsed().as_millis() as u64)))
    };
    println!("template {} version {} ({}; {how})", template.name, template.version, template.digest.short());
    Ok(ExitCode::SUCCESS)
}
