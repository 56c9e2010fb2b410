//! `elihu queue ls|pause|resume|set`: queue settings for the whole cluster,
//! straight on the database.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use elihu::model::{Partition, Rate};
use elihu::store::{QueueChange, QueueInfo, QueueSettings};

use super::settings::{DbArgs, open};

/// `elihu queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queues: depth, running jobs, settings, and how many due jobs
    /// each setting holds back now.
    Ls {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a queue on every node: nothing more starts; runs in flight finish.
    Pause {
        #[command(flatten)]
        db: DbArgs,
        /// The queue.
        name: String,
    },
    /// Resume a paused queue.
    Resume {
        #[command(flatten)]
        db: DbArgs,
        /// The queue.
        name: String,
    },
    /// Set (or clear, with `none`) a queue's limits and partition for every node.
    Set(SetArgs),
}

/// Arguments of `elihu queue set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The queue.
    name: String,
    /// At most N runs of the queue in flight across all nodes (per
    /// partition when partitioned); `none` clears it.
    #[arg(long, value_name = "N|none", allow_hyphen_values = true, value_parser = parse_global_limit)]
    global_limit: Option<Setting<u32>>,
    /// At most STARTS per PERIOD across all nodes (per partition when
    /// partitioned), a sliding window: `100/1m`, `50/1s`; `none` clears it.
    #[arg(long, value_name = "STARTS/PERIOD|none", allow_hyphen_values = true, value_parser = parse_rate)]
    rate: Option<Setting<Rate>>,
    /// Limit each partition on its own: `template`, or a JSON pointer into
    /// the context such as `/customer_id`; `none` clears it.
    #[arg(long, value_name = "POINTER|template|none", value_parser = parse_partition)]
    partition: Option<Setting<Partition>>,
}

/// A value to set, or `none` to clear the setting.
#[derive(Debug, Clone)]
pub struct Setting<T>(Option<T>);

fn setting<T>(text: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Setting<T>, String> {
    if text.trim() == "none" { Ok(Setting(None)) } else { parse(text).map(|v| Setting(Some(v))) }
}

fn parse_global_limit(text: &str) -> Result<Setting<u32>, String> {
    setting(text, |t| match t.trim().parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("{n} is more than elihu can count")),
        _ => Err(format!("`{t}` is not a number of runs of at least 1 (or `none`)")),
    })
}

fn parse_rate(text: &str) -> Result<Setting<Rate>, String> {
    setting(text, Rate::parse)
}

fn parse_partition(text: &str) -> Result<Setting<Partition>, String> {
    setting(text, Partition::parse)
}

pub async fn run(command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::Ls { db, json } => {
            let queues = open(&db).await?.queue_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
            } else {
                print_queues(&queues);
            }
        }
        QueueCommand::Pause { db, name } => {
            open(&db).await?.queue_pause(&name).await?;
            println!("queue {name} paused: no node starts its jobs until `elihu queue resume {name}`");
        }
        QueueCommand::Resume { db, name } => {
            open(&db).await?.queue_resume(&name).await?;
            println!("queue {name} resumed");
        }
        QueueCommand::Set(args) => {
            let change = QueueChange {
                paused: None,
                global_limit: args.global_limit.map(|s| s.0),
                rate: args.rate.map(|s| s.0),
                partition: args.partition.map(|s| s.0),
            };
            if change == QueueChange::default() {
                anyhow::bail!("nothing to set: give --global-limit, --rate or --partition (each takes `none` to clear it)");
            }
            let settings = open(&args.db).await?.queue_set(&args.name, change).await?;
            println!("queue {}: {}", settings.name, describe(&settings));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings in a few words.
fn describe(s: &QueueSettings) -> String {
    let mut parts = vec![if s.paused { "paused".to_string() } else { "running".to_string() }];
    let per = if s.partition.is_some() { " per partition" } else { "" };
    parts.push(match s.global_limit {
        Some(n) => format!("at most {n} in flight{per}"),
        None => "no global limit".into(),
    });
    parts.push(match s.rate {
        Some(rate) => format!("at most {rate} starts{per}"),
        None => "no rate limit".into(),
    });
    if let Some(p) = &s.partition {
        parts.push(format!("partitioned by {p}"));
    }
    parts.join(", ")
}

/// The table of `queue ls` (and of `stats`).
pub fn print_queues(queues: &[QueueInfo]) {
    // HELD-*: due jobs each setting holds back now.
    println!(
        "{:<16} {:<6} {:>7} {:>7} {:>7} {:>12} {:>10} {:<16} {:>10} {:>10} {:>9}",
        "QUEUE", "PAUSED", "QUEUED", "DUE", "RUNNING", "GLOBAL-LIMIT", "RATE", "PARTITION", "HELD-PAUSE", "HELD-LIMIT", "HELD-RATE"
    );
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for q in queues {
        let s = &q.settings;
        println!(
            "{:<16} {:<6} {:>7} {:>7} {:>7} {:>12} {:>10} {:<16} {:>10} {:>10} {:>9}",
            s.name,
            if s.paused { "yes" } else { "no" },
            q.queued,
            q.due,
            q.running,
            or_dash(s.global_limit.map(|n| n.to_string())),
            or_dash(s.rate.map(|r| r.to_string())),
            or_dash(s.partition.as_ref().map(|p| p.to_string())),
            q.held.paused,
            q.held.global_limit,
            q.held.rate
        );
    }
}
