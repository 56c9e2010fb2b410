//! Settings shared by the database commands: flags, then environment
//! variables, then the config file (`elihu.toml`), then defaults that need no
//! configuration at all (`./elihu.db`, `127.0.0.1:7450`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;

use elihu::secrets::SecretsKey;
use elihu::units;

/// Where the database is; every database command takes it.
#[derive(Debug, Args, Clone, Default)]
pub struct DbArgs {
    /// The database: an SQLite file path or `sqlite://PATH` [default: ./elihu.db]
    #[arg(long, env = "ELIHU_DATABASE_URL", global = true)]
    pub database: Option<String>,
    /// The config file [default: ./elihu.toml when it exists]
    #[arg(long, env = "ELIHU_CONFIG_FILE", global = true)]
    pub config_file: Option<PathBuf>,
    /// A file holding the secrets key (64 hex digits or base64); or set
    /// ELIHU_SECRETS_KEY to the key itself. Every node needs the same key.
    #[arg(long, env = "ELIHU_SECRETS_KEY_FILE", global = true, value_name = "PATH")]
    pub secrets_key_file: Option<PathBuf>,
    /// Extra trusted root certificates (PEM) for jobs' outbound HTTPS.
    #[arg(long, env = "ELIHU_CA_FILE", global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// The config file's contents; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub database: Option<String>,
    pub listen: Option<String>,
    pub token: Option<String>,
    pub tick: Option<String>,
    pub poll: Option<String>,
    pub grace: Option<String>,
    pub heartbeat: Option<String>,
    pub run_ttl: Option<String>,
    pub max_memory: Option<String>,
    pub max_concurrent_runs: Option<u32>,
    pub cache_dir: Option<PathBuf>,
    pub secrets_key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub max_snoozes: Option<u32>,
    /// `[queues]`: `NAME = N` (this node works NAME with N runs at once),
    /// or `[queues.NAME]` tables that also set the queue's limits.
    #[serde(default)]
    pub queues: BTreeMap<String, FileQueue>,
    /// `[schedules.NAME]` tables: created or replaced when `serve` starts.
    #[serde(default)]
    pub schedules: BTreeMap<String, FileSchedule>,
    /// `[limits]`: the node's bounds on what a guest sends the host.
    #[serde(default)]
    pub limits: FileLimits,
}

/// The `[limits]` table: every key optional, sizes like `64KiB`, durations
/// like `250ms` (see the README's Limits table for the defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub log_lines: Option<usize>,
    pub log_bytes: Option<String>,
    pub log_line: Option<String>,
    pub message: Option<String>,
    pub progress_message: Option<String>,
    pub checkpoint: Option<String>,
    pub output: Option<String>,
    pub progress_interval: Option<String>,
    pub checkpoint_interval: Option<String>,
    pub connect_timeout: Option<String>,
    pub max_requests: Option<u32>,
    pub max_request_body: Option<String>,
    pub max_response_body: Option<String>,
}

impl FileLimits {
    /// `base` with the keys this table sets, each checked.
    pub fn apply(&self, mut base: elihu::runtime::GuestLimits) -> anyhow::Result<elihu::runtime::GuestLimits> {
        let bytes = |key: &str, value: &Option<String>| -> anyhow::Result<Option<u64>> {
            let Some(text) = value else { return Ok(None) };
            let bytes = units::parse_size(text).with_context(|| format!("config file key `limits.{key}`"))?;
            if bytes == 0 {
                bail!("config file key `limits.{key}`: the limit must be more than 0 bytes");
            }
            Ok(Some(bytes))
        };
        let size = |key: &str, value: &Option<String>, into: &mut usize| -> anyhow::Result<()> {
            if let Some(b) = bytes(key, value)? {
                *into = b as usize;
            }
            Ok(())
        };
        size("log_bytes", &self.log_bytes, &mut base.max_log_bytes)?;
        size("log_line", &self.log_line, &mut base.max_log_line_bytes)?;
        size("message", &self.message, &mut base.max_message_bytes)?;
        size("progress_message", &self.progress_message, &mut base.max_progress_message_bytes)?;
        size("checkpoint", &self.checkpoint, &mut base.max_checkpoint_bytes)?;
        size("output", &self.output, &mut base.max_output_bytes)?;
        if let Some(n) = self.log_lines {
            base.max_log_lines = n;
        }
        if let Some(d) = file_duration("limits.progress_interval", &self.progress_interval)? {
            base.progress_interval = d;
        }
        if let Some(d) = file_duration("limits.checkpoint_interval", &self.checkpoint_interval)? {
            base.checkpoint_interval = d;
        }
        if let Some(d) = file_duration("limits.connect_timeout", &self.connect_timeout)? {
            if d.is_zero() {
                bail!("config file key `limits.connect_timeout`: the timeout must be more than 0");
            }
            base.connect_timeout = d;
        }
        if let Some(n) = self.max_requests {
            if n == 0 {
                bail!("config file key `limits.max_requests`: the limit must be more than 0");
            }
            base.max_requests = n;
        }
        if let Some(b) = bytes("max_request_body", &self.max_request_body)? {
            base.max_request_body = b;
        }
        if let Some(b) = bytes("max_response_body", &self.max_response_body)? {
            base.max_response_body = b;
        }
        Ok(base)
    }
}

/// A queue in the config file: `NAME = N`, or a `[queues.NAME]` table.
#[derive(Debug)]
pub enum FileQueue {
    /// This node's concurrency on the queue.
    Concurrency(i64),
    /// A table: this node's concurrency and the queue's cluster-wide settings.
    Table(FileQueueTable),
}

/// A `[queues.NAME]` table. The settings it names are stored for every
/// node when `serve` starts; those it leaves out stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQueueTable {
    /// This node's runs in flight at once [10].
    pub concurrency: Option<i64>,
    /// At most this many in flight across all nodes.
    pub global_limit: Option<i64>,
    /// `STARTS/PERIOD` across all nodes.
    pub rate: Option<String>,
    /// `template` or a JSON pointer.
    pub partition: Option<String>,
}

impl<'de> Deserialize<'de> for FileQueue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FileQueue, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FileQueue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a concurrency (`mail = 4`) or a table of concurrency, global_limit, rate and partition")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FileQueue, E> {
                Ok(FileQueue::Concurrency(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FileQueue, E> {
                Ok(FileQueue::Concurrency(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<FileQueue, A::Error> {
                FileQueueTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(FileQueue::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl FileQueue {
    /// This node's concurrency on the queue and the settings change the
    /// entry asks for, each value checked and named by its key.
    pub fn parse(&self, name: &str) -> anyhow::Result<(u32, elihu::store::QueueChange)> {
        let key = |field: &str| format!("config file key `queues.{name}{field}`");
        let positive = |field: &str, n: i64| -> anyhow::Result<u32> {
            u32::try_from(n).ok().filter(|n| *n > 0).with_context(|| format!("{}: {n} is not a number of runs of at least 1", key(field)))
        };
        let table = match self {
            FileQueue::Concurrency(n) => return Ok((positive("", *n)?, elihu::store::QueueChange::default())),
            FileQueue::Table(table) => table,
        };
        let concurrency = positive(".concurrency", table.concurrency.unwrap_or(10))?;
        let mut change = elihu::store::QueueChange::default();
        if let Some(n) = table.global_limit {
            change.global_limit = Some(Some(positive(".global_limit", n)?));
        }
        if let Some(rate) = &table.rate {
            let rate = elihu::model::Rate::parse(rate).map_err(|e| anyhow::anyhow!("{}: {e}", key(".rate")))?;
            change.rate = Some(Some(rate));
        }
        if let Some(partition) = &table.partition {
            let partition = elihu::model::Partition::parse(partition).map_err(|e| anyhow::anyhow!("{}: {e}", key(".partition")))?;
            change.partition = Some(Some(partition));
        }
        Ok((concurrency, change))
    }
}

/// A schedule in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSchedule {
    pub template: String,
    pub cron: Option<String>,
    pub every: Option<String>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub catch_up: elihu::schedule::CatchUp,
    /// The context, as a TOML table.
    #[serde(default)]
    pub context: Option<toml::Table>,
}

impl FileSchedule {
    /// The schedule this entry describes, checked.
    pub fn spec(&self, name: &str) -> anyhow::Result<elihu::ScheduleSpec> {
        let every = file_duration("every", &self.every)?;
        let rule = elihu::schedule::Rule::from_parts(self.cron.as_deref(), every, self.timezone.as_deref())?;
        let context = match &self.context {
            Some(table) => serde_json::to_value(table)?,
            None => serde_json::json!({}),
        };
        Ok(elihu::ScheduleSpec { name: name.to_string(), template: self.template.clone(), context, rule, catch_up: self.catch_up })
    }
}

impl DbArgs {
    /// Reads the config file named by the flag or environment, or
    /// `./elihu.toml` if it exists.
    pub fn file(&self) -> anyhow::Result<FileSettings> {
        let (path, required) = match &self.config_file {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("elihu.toml"), false),
        };
        if !path.exists() {
            if required {
                bail!("the config file {} does not exist", path.display());
            }
            return Ok(FileSettings::default());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// The database URL to use.
    pub fn url(&self, file: &FileSettings) -> String {
        self.database.clone().or_else(|| file.database.clone()).unwrap_or_else(|| "elihu.db".into())
    }
}

/// Parses a duration setting from the config file, naming the key on error.
pub fn file_duration(key: &str, value: &Option<String>) -> anyhow::Result<Option<Duration>> {
    value
        .as_deref()
        .map(|v| units::parse_duration(v).with_context(|| format!("config file key `{key}`")))
        .transpose()
}

/// Where compiled artifacts are kept: `ELIHU_CACHE_DIR`, else the config
/// file's `cache_dir`, else `$XDG_CACHE_HOME/elihu` or `~/.cache/elihu`, else
/// the temp dir.
pub fn cache_dir(file: &FileSettings) -> PathBuf {
    if let Ok(dir) = std::env::var("ELIHU_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = &file.cache_dir {
        return dir.clone();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("elihu").join("artifacts")
}

/// Opens the database named by the settings (migrating it) with a runtime
/// whose artifacts are cached on disk.
pub async fn open(db: &DbArgs) -> anyhow::Result<elihu::Client> {
    let file = db.file()?;
    open_with(db, &file, elihu::runtime::RuntimeConfig::default()).await
}

/// Like [`open`], with a given runtime configuration and file settings.
pub async fn open_with(
    db: &DbArgs,
    file: &FileSettings,
    mut runtime: elihu::runtime::RuntimeConfig,
) -> anyhow::Result<elihu::Client> {
    runtime.artifact_dir = Some(cache_dir(file));
    if let Some(max) = &file.max_memory {
        runtime.max_memory = units::parse_size(max).context("config file key `max_memory`")?;
    }
    if let Some(n) = file.max_concurrent_runs {
        runtime.max_concurrent_runs = n;
    }
    runtime.limits = file.limits.apply(runtime.limits)?;
    runtime.ca_file = db.ca_file.clone().or_else(|| file.ca_file.clone());
    let secrets_key = db.secrets_key(file)?;
    let url = db.url(file);
    elihu::Client::open(&url, elihu::ClientOptions { runtime, secrets_key })
        .await
        .with_context(|| format!("opening the database {url}"))
}

impl DbArgs {
    /// The secrets key: from `--secrets-key-file` / `ELIHU_SECRETS_KEY_FILE`,
    /// else `ELIHU_SECRETS_KEY` (the key itself), else the config file's
    /// `secrets_key_file`; `None` when none is given.
    pub fn secrets_key(&self, file: &FileSettings) -> anyhow::Result<Option<SecretsKey>> {
        if let Some(path) = &self.secrets_key_file {
            return Ok(Some(SecretsKey::from_file(path)?));
        }
        if let Ok(text) = std::env::var("ELIHU_SECRETS_KEY") {
            return Ok(Some(SecretsKey::parse(&text).context("ELIHU_SECRETS_KEY")?));
        }
        match &file.secrets_key_file {
            Some(path) => Ok(Some(SecretsKey::from_file(path).context("config file key `secrets_key_file`")?)),
            None => Ok(None),
        }
    }
}
