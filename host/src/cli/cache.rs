//! `elihu cache ls|prune`: the compiled-artifact cache on this machine, which
//! `serve`, `run`, `template push` and `bench` share.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use elihu::runtime::{Artifact, Runtime, RuntimeConfig};
use elihu::units;

use super::settings::{DbArgs, cache_dir};

/// `elihu cache ...`
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the compiled artifacts, most recently used first.
    Ls {
        #[command(flatten)]
        settings: CacheArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the artifacts this build of elihu cannot load (another version
    /// wrote them); with --unused-for also those not used for that long.
    Prune {
        #[command(flatten)]
        settings: CacheArgs,
        /// Also remove artifacts not used for this long (`30d`, `12h`).
        #[arg(long, value_parser = units::parse_duration, conflicts_with = "all")]
        unused_for: Option<Duration>,
        /// Remove every artifact: each component compiles again on its next load.
        #[arg(long)]
        all: bool,
    },
}

/// Where the cache is: the config file's `cache_dir`, else `ELIHU_CACHE_DIR`,
/// else `~/.cache/elihu/artifacts`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The config file [default: ./elihu.toml when it exists]
    #[arg(long, env = "ELIHU_CONFIG_FILE")]
    config_file: Option<PathBuf>,
}

impl CacheArgs {
    /// A runtime over the artifact directory (it knows which artifacts it can load).
    fn runtime(&self) -> anyhow::Result<(Runtime, PathBuf)> {
        let file = DbArgs { database: None, config_file: self.config_file.clone() }.file()?;
        let dir = cache_dir(&file);
        let runtime =
            Runtime::new(RuntimeConfig { artifact_dir: Some(dir.clone()), max_concurrent_runs: 1, ..RuntimeConfig::default() })?;
        Ok((runtime, dir))
    }
}

pub fn run(command: CacheCommand) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::Ls { settings, json } => {
            let (runtime, dir) = settings.runtime()?;
            let artifacts = runtime.artifacts().with_context(|| format!("reading the artifact cache {}", dir.display()))?;
            if json {
                let rows: Vec<serde_json::Value> = artifacts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "digest": a.digest,
                            "path": a.path,
                            "bytes": a.bytes,
                            "last_used": chrono::DateTime::<chrono::Utc>::from(a.last_used).to_rfc3339(),
                            "current": a.current,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            if artifacts.is_empty() {
                println!("no compiled artifacts in {}", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<14} {:>10}  {:<19}  ", "DIGEST", "SIZE", "LAST USED");
            for a in &artifacts {
                let note = if a.current { "" } else { "stale: another elihu build wrote it (prune removes it)" };
                println!("{:<14} {:>10}  {:<19}  {note}", a.digest.short(), units::format_size_human(a.bytes as usize), local_time(a.last_used));
            }
            println!("{} in {}", count(&artifacts), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Prune { settings, unused_for, all } => {
            let (runtime, dir) = settings.runtime()?;
            let now = SystemTime::now();
            let unused_since = if all { Some(now + Duration::from_secs(1)) } else { unused_for.map(|d| now - d) };
            let removed =
                runtime.prune_artifacts(unused_since).with_context(|| format!("pruning the artifact cache {}", dir.display()))?;
            for a in &removed {
                let why = if !a.current { "stale" } else { "unused" };
                println!("removed {} ({}, {why}, last used {})", a.digest.short(), units::format_size_human(a.bytes as usize), local_time(a.last_used));
            }
            println!("removed {} from {}", count(&removed), dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn count(artifacts: &[Artifact]) -> String {
    let bytes: u64 = artifacts.iter().map(|a| a.bytes).sum();
    let noun = if artifacts.len() == 1 { "artifact" } else { "artifacts" };
    format!("{} {noun}, {}", artifacts.len(), units::format_size_human(bytes as usize))
}

fn local_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t).format("%Y-%m-%d %H:%M:%S").to_string()
}
