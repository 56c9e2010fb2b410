//! `elihu schedule add|ls|show|rm|pause|resume`: schedules from the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use elihu::schedule::{CatchUp, Rule};
use elihu::schema::parse_json;
use elihu::{Schedule, ScheduleSpec, units};

use super::settings::{DbArgs, open};

/// `elihu schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create (or replace) a schedule.
    Add(AddArgs),
    /// List schedules with their next firing.
    Ls {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule.
        name: String,
    },
    /// Delete a schedule (its queued job is withdrawn).
    Rm {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule.
        name: String,
    },
    /// Pause a schedule.
    Pause {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule.
        name: String,
    },
    /// Resume a paused schedule.
    Resume {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule.
        name: String,
    },
}

/// Arguments of `elihu schedule add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The schedule's name.
    name: String,
    /// The template it enqueues.
    #[arg(long)]
    template: String,
    /// Cron rule with seconds: `SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK`,
    /// each `*`, values, ranges or both (`0,15,30-40`).
    #[arg(long, conflicts_with = "every", required_unless_present = "every")]
    cron: Option<String>,
    /// Or an interval, counted from the end of the previous run (`30s`, `5m`, `1h`).
    #[arg(long, value_parser = units::parse_duration)]
    every: Option<Duration>,
    /// The context of every job, as JSON.
    #[arg(long, default_value = "{}")]
    context: String,
    /// IANA time zone of the cron rule [default: UTC]
    #[arg(long)]
    timezone: Option<String>,
    /// Missed firings after downtime: `one` catch-up job, or `skip` them.
    #[arg(long, default_value = "one", value_parser = parse_catch_up)]
    catch_up: CatchUp,
}

fn parse_catch_up(text: &str) -> Result<CatchUp, String> {
    CatchUp::parse(text).ok_or_else(|| format!("`{text}` is not `one` or `skip`"))
}

fn describe(s: &Schedule) -> String {
    match (&s.cron, &s.every) {
        (Some(cron), _) => match &s.timezone {
            Some(z) => format!("cron {cron} ({z})"),
            None => format!("cron {cron}"),
        },
        (None, Some(every)) => format!("every {every}"),
        _ => "?".into(),
    }
}

fn next(s: &Schedule) -> String {
    match (s.paused, s.next_firing) {
        (true, _) => "paused".into(),
        (false, Some(at)) => at.to_rfc3339(),
        (false, None) => "running".into(),
    }
}

pub async fn run(command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::Add(args) => {
            let rule = Rule::from_parts(args.cron.as_deref(), args.every, args.timezone.as_deref())?;
            let context = parse_json("the context", &args.context)?;
            let client = open(&args.db).await?;
            let spec = ScheduleSpec { name: args.name, template: args.template, context, rule, catch_up: args.catch_up };
            let s = client.schedule_put(spec).await?;
            println!("schedule {} ({}) fires next at {}", s.name, describe(&s), next(&s));
        }
        ScheduleCommand::Ls { db, json } => {
            let client = open(&db).await?;
            let schedules = client.schedule_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&schedules)?);
            } else {
                println!("{:<20} {:<16} {:<34} {:<26}", "NAME", "TEMPLATE", "RULE", "NEXT");
                for s in schedules {
                    println!("{:<20} {:<16} {:<34} {:<26}", s.name, s.template, describe(&s), next(&s));
                }
            }
        }
        ScheduleCommand::Show { db, name } => {
            let client = open(&db).await?;
            println!("{}", serde_json::to_string_pretty(&client.schedule_get(&name).await?)?);
        }
        ScheduleCommand::Rm { db, name } => {
            open(&db).await?.schedule_delete(&name).await?;
            println!("deleted schedule {name}");
        }
        ScheduleCommand::Pause { db, name } => {
            open(&db).await?.schedule_pause(&name).await?;
            println!("paused schedule {name}");
        }
        ScheduleCommand::Resume { db, name } => {
            let s = open(&db).await?.schedule_resume(&name).await?;
            println!("resumed schedule {name}; it fires next at {}", next(&s));
        }
    }
    Ok(ExitCode::SUCCESS)
}
