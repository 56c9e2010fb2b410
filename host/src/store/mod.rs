//! The store: every durable fact of elihu (components, templates, jobs, runs,
//! nodes, the leader lease, schedules, secrets, queue settings) behind one `Store` trait with
//! object-first method names. One implementation (`sql`) serves every
//! database; a `Dialect` per database (`sqlite`, `postgres`) supplies only the
//! statements that truly differ. Rows map to these types by derive. Queue
//! logic (retry policy, backoff, what happens at the last attempt) lives
//! above, in `queue` and `engine`; the queue settings (pause, global and rate
//! limits, partitions) are enforced here, in the claim itself.

mod flow;
mod postgres;
mod rows;
mod sql;
mod sqlite;
mod views;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::grants::{AllowedHost, Grants};
use crate::model::{
    Backoff, Call, CatchUp, Digest, Ending, JobId, LogLine, Millis, Partition, Progress, Reason, RunId, RunResult,
    TemplateLimits,
};

pub use flow::{Claim, ClaimHints, DepthRow, Held, HeldBack, QueueChange, QueueInfo, QueueRow, QueueSettings, StartsRow};
pub use postgres::{PostgresDialect, PostgresStore};
pub use rows::{JsonText, NullableJsonText, RunRow};
pub use sql::{Dialect, Param, Pick, SqlStore};
pub use sqlite::{SqliteDialect, SqliteStore};
pub use views::{FailureGroup, JobPageQuery, MinuteCount, NodeLoad, QueueCounts, RunMessage, TemplateVersion, Views};

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("could not migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL is not one elihu understands.
    #[error("`{0}` is not a database URL elihu understands; use `postgres://USER@HOST/DB`, `sqlite://PATH` or a plain file path")]
    BadUrl(String),
    /// No template has that name.
    #[error("there is no template named `{0}`")]
    UnknownTemplate(String),
    /// A template still has queued or running jobs.
    #[error("template `{name}` still has {jobs} queued or running jobs; cancel them first or delete with force")]
    TemplateInUse {
        /// The template.
        name: String,
        /// How many jobs it has.
        jobs: i64,
    },
    /// A stored value could not be read back.
    #[error("corrupt stored value in {what}: {why}")]
    Corrupt {
        /// Where.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// Defaults a template gives its jobs, each overridable at enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct TemplateDefaults {
    /// Queue the jobs go to.
    pub queue: String,
    /// Priority: lower runs first (0 is the most urgent).
    pub priority: i32,
    /// Attempts a job may make in all.
    #[sqlx(try_from = "i64")]
    pub max_attempts: u32,
    /// Timeout of each run, in milliseconds.
    #[sqlx(try_from = "i64")]
    pub timeout_ms: u64,
    /// Memory limit of each run, in bytes.
    #[sqlx(try_from = "i64")]
    pub memory_bytes: u64,
    /// First retry delay, in milliseconds; it doubles per attempt.
    #[sqlx(try_from = "i64")]
    pub backoff_base_ms: u64,
    /// The longest retry delay, in milliseconds.
    #[sqlx(try_from = "i64")]
    pub backoff_max_ms: u64,
}

impl Default for TemplateDefaults {
    fn default() -> Self {
        TemplateDefaults {
            queue: "default".into(),
            priority: 0,
            max_attempts: 3,
            timeout_ms: 30_000,
            memory_bytes: 64 << 20,
            backoff_base_ms: 1_000,
            backoff_max_ms: 3_600_000,
        }
    }
}

/// What a template gives its jobs besides its component, schema and
/// defaults: config values to read, what they may reach and read (grants),
/// and the limits they run within.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSettings {
    /// Values jobs read with `config(key)`.
    pub config: BTreeMap<String, String>,
    /// Allowed hosts, granted headers, readable secrets.
    pub grants: Grants,
    /// Bounds tightening the node's for its jobs.
    pub limits: TemplateLimits,
}

impl From<BTreeMap<String, String>> for TemplateSettings {
    fn from(config: BTreeMap<String, String>) -> Self {
        TemplateSettings { config, ..TemplateSettings::default() }
    }
}

/// A named job type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Template {
    /// Its name.
    pub name: String,
    /// The component its jobs run.
    #[sqlx(try_from = "String")]
    pub digest: Digest,
    /// The JSON Schema of its jobs' contexts.
    #[sqlx(try_from = "JsonText")]
    pub schema: serde_json::Value,
    /// Defaults for its jobs.
    #[sqlx(flatten)]
    pub defaults: TemplateDefaults,
    /// Values jobs read with `config(key)`.
    #[sqlx(try_from = "JsonText")]
    pub config: BTreeMap<String, String>,
    /// What its jobs may reach and read.
    #[sqlx(try_from = "JsonText")]
    pub grants: Grants,
    /// Its own bounds, tightening the node's.
    #[sqlx(try_from = "JsonText")]
    pub limits: TemplateLimits,
    /// 1 on creation, +1 on every update.
    pub version: i64,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last changed.
    pub updated_at: Millis,
}

/// Whether a job waits or runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its run-at and a free slot.
    Available,
    /// A run of it is in flight.
    Running,
}

impl JobState {
    /// The state's name as stored and shown (`available`, `running`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
        }
    }

    /// Reads `available` or `running`.
    pub fn parse(text: &str) -> Option<JobState> {
        match text {
            "available" => Some(JobState::Available),
            "running" => Some(JobState::Running),
            _ => None,
        }
    }
}

/// A job to insert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The template.
    pub template: String,
    /// The validated context, as JSON text.
    pub context: String,
    /// Its queue.
    pub queue: String,
    /// Its priority (lower first).
    pub priority: i32,
    /// Not before this time.
    pub run_at: Millis,
    /// Attempts in all.
    pub max_attempts: u32,
    /// Per-run timeout.
    pub timeout_ms: u64,
    /// Per-run memory limit.
    pub memory_bytes: u64,
    /// At most one queued or running job per key.
    pub unique_key: Option<String>,
    /// Not claimed after this time (a skipped missed firing).
    pub discard_after: Option<Millis>,
    /// The job's narrowing of its template's allowed hosts (`None`: the template's).
    pub allowed_hosts: Option<Vec<AllowedHost>>,
    /// The W3C `traceparent` of the request that enqueued it: its runs'
    /// spans are children of it.
    pub traceparent: Option<String>,
}

/// What inserting a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new job with this id.
    New(JobId),
    /// A job with the same unique key was already queued or running.
    Existing(JobId),
}

impl Inserted {
    /// The job's id either way.
    pub fn id(self) -> JobId {
        match self {
            Inserted::New(id) | Inserted::Existing(id) => id,
        }
    }
}

/// A queued or running job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Its template.
    pub template: String,
    /// Its context (JSON text).
    pub context: String,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: i32,
    /// Not before this time.
    pub run_at: Millis,
    /// Waiting or running.
    pub state: JobState,
    /// Attempts made so far (the running one included).
    #[sqlx(try_from = "i64")]
    pub attempt: u32,
    /// Attempts in all.
    #[sqlx(try_from = "i64")]
    pub max_attempts: u32,
    /// Per-run timeout.
    #[sqlx(try_from = "i64")]
    pub timeout_ms: u64,
    /// Per-run memory limit.
    #[sqlx(try_from = "i64")]
    pub memory_bytes: u64,
    /// Its unique key.
    pub unique_key: Option<String>,
    /// Not claimed after this time.
    pub discard_after: Option<Millis>,
    /// The checkpoint the latest attempt saved.
    pub checkpoint: Option<String>,
    /// The run in flight, if running.
    pub current_run: Option<RunId>,
    /// The node running it.
    pub node_id: Option<String>,
    /// A cancel was asked while it ran.
    pub cancel_requested: bool,
    /// When it was enqueued.
    pub created_at: Millis,
    /// Its narrowing of its template's allowed hosts (`None`: the template's).
    #[sqlx(try_from = "NullableJsonText")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_hosts: Option<Vec<AllowedHost>>,
    /// The W3C `traceparent` it was enqueued with, if any.
    pub traceparent: Option<String>,
    /// Its partition key while its queue is partitioned (see
    /// [`Partition::key`]).
    pub partition_key: Option<String>,
    /// How many times it snoozed.
    #[sqlx(try_from = "i64")]
    pub snoozes: u32,
}

/// A job claimed for a run, with what the run needs from its template as
/// it was at claim time.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Claimed {
    /// The new run's id.
    #[sqlx(rename = "current_run")]
    pub run_id: RunId,
    /// The job, with `attempt` already counting this run.
    #[sqlx(flatten)]
    pub job: Job,
    /// The component the run uses.
    #[sqlx(rename = "template_digest", try_from = "String")]
    pub digest: Digest,
    /// The template's config values.
    #[sqlx(rename = "template_config", try_from = "JsonText")]
    pub config: BTreeMap<String, String>,
    /// How the template spaces retries.
    #[sqlx(flatten)]
    pub backoff: Backoff,
    /// What the template grants its jobs.
    #[sqlx(rename = "template_grants", try_from = "JsonText")]
    pub grants: Grants,
    /// The template's own limits.
    #[sqlx(rename = "template_limits", try_from = "JsonText")]
    pub limits: TemplateLimits,
}

/// Whether a run is in flight or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum RunStatus {
    /// In flight.
    Running,
    /// Over; see its result.
    Done,
}

impl RunStatus {
    /// The status's name as stored and shown (`running`, `done`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
        }
    }
}

/// One attempt of a job, as history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// The job.
    pub job_id: JobId,
    /// The job's template.
    pub template: String,
    /// Which attempt.
    #[sqlx(try_from = "i64")]
    pub attempt: u32,
    /// Of how many.
    #[sqlx(try_from = "i64")]
    pub max_attempts: u32,
    /// The node that ran it.
    pub node_id: String,
    /// The component it ran.
    #[sqlx(try_from = "String")]
    pub digest: Digest,
    /// In flight or over.
    pub status: RunStatus,
    /// How it ended.
    pub result: Option<RunResult>,
    /// Why it did not succeed.
    pub reason: Option<Reason>,
    /// The failure message.
    pub message: Option<String>,
    /// The output JSON.
    pub output: Option<String>,
    /// Its log.
    #[sqlx(try_from = "JsonText")]
    pub logs: Vec<LogLine>,
    /// The last progress it reported (two columns, read by the store).
    #[sqlx(skip)]
    pub progress: Option<Progress>,
    /// The last checkpoint it saved.
    pub checkpoint: Option<String>,
    /// When it started.
    pub started_at: Millis,
    /// When it ended.
    pub finished_at: Option<Millis>,
    /// The lease it was claimed with. Once it has passed, the run counts as
    /// abandoned when its node's lease (renewed by the node's heartbeats)
    /// has passed too, or the node is gone.
    pub expires_at: Millis,
    /// Its job's unique key (a scheduled job's names the firing).
    pub unique_key: Option<String>,
    /// The outbound calls it made or tried, in order (its audit).
    #[sqlx(try_from = "JsonText")]
    pub calls: Vec<Call>,
}

/// How a run ended, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// The run.
    pub run_id: RunId,
    /// Its job.
    pub job_id: JobId,
    /// The node that owns the run: the write only counts if it still does.
    pub node_id: String,
    /// How it ended (its result, reason, message or output follow).
    pub ending: Ending,
    /// The log.
    pub logs: Vec<LogLine>,
    /// The last progress.
    pub progress: Option<Progress>,
    /// The last checkpoint (kept on the job for the next attempt).
    pub checkpoint: Option<String>,
    /// The outbound calls it made or tried.
    pub calls: Vec<Call>,
    /// When it ended.
    pub finished_at: Millis,
}

/// What becomes of the job after a run ends: decided by the queue logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobNext {
    /// The job is finished: delete it.
    Delete,
    /// Try again at `at`; with `refund` the attempt does not count (a shutdown).
    Retry {
        /// When.
        at: Millis,
        /// Give the attempt back.
        refund: bool,
    },
    /// The job snoozed: available again at `at`, the attempt given back,
    /// one more snooze counted.
    Snooze {
        /// When.
        at: Millis,
    },
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelOutcome {
    /// The job was waiting and is gone.
    Removed,
    /// The job is running; its node will interrupt it.
    Requested,
    /// No such job (finished, or never existed).
    NotFound,
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this template.
    pub template: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this job's runs.
    pub job_id: Option<JobId>,
    /// Only this template's runs.
    pub template: Option<String>,
    /// Only runs in flight, or only runs that are over.
    pub status: Option<RunStatus>,
    /// At most this many (default 100), newest first.
    pub limit: Option<i64>,
}

/// A node, as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Its host name.
    pub hostname: String,
    /// Its process id.
    pub pid: i64,
    /// The queues it works, as `name=concurrency` pairs.
    pub queues: String,
    /// When it started.
    pub started_at: Millis,
    /// Its last heartbeat.
    pub heartbeat_at: Millis,
}

/// Per-template figures (Bildad's job stats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct TemplateStats {
    /// The template.
    pub template: String,
    /// Runs that succeeded.
    pub succeeded: i64,
    /// Runs that failed.
    pub failed: i64,
    /// Runs that were cancelled.
    pub cancelled: i64,
    /// Runs that snoozed.
    pub snoozed: i64,
    /// Jobs waiting.
    pub queued: i64,
    /// Jobs running.
    pub running: i64,
    /// Median duration of finished runs, in milliseconds.
    pub duration_p50_ms: Option<i64>,
    /// 95th percentile duration of finished runs, in milliseconds.
    pub duration_p95_ms: Option<i64>,
    /// Outbound calls its finished runs made or tried.
    pub calls: i64,
    /// Of those, calls the host refused.
    pub calls_denied: i64,
}

/// A secret as listed: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When it was first set.
    pub created_at: Millis,
    /// When it was last set.
    pub updated_at: Millis,
}

/// What tells the key the secrets were sealed with from any other: its id
/// (for people) and a value sealed with it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyCheck {
    /// The key's id (`SecretsKey::id`).
    pub key_id: String,
    /// A fixed text sealed with the key (`SecretsKey::check_value`).
    pub check_value: Vec<u8>,
}

/// A schedule as stored (see `crate::schedule` for its meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StoredSchedule {
    /// Its name.
    pub name: String,
    /// The template it enqueues.
    pub template: String,
    /// The context of every job it enqueues (JSON text).
    pub context: String,
    /// Its cron rule, six fields.
    pub cron: Option<String>,
    /// Or its interval, in milliseconds.
    pub interval_ms: Option<i64>,
    /// The IANA time zone of its cron rule.
    pub timezone: Option<String>,
    /// What to do about missed firings.
    pub catch_up: CatchUp,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The firing time of the job it last enqueued.
    pub last_firing: Option<Millis>,
    /// That job, while it is queued or running.
    pub current_job: Option<JobId>,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last changed.
    pub updated_at: Millis,
}

/// The durable state of elihu. Every method is one transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stores component bytes under their digest (a no-op when present).
    async fn component_put(&self, digest: &Digest, bytes: &[u8], now: Millis) -> Result<(), StoreError>;
    /// The bytes of a component.
    async fn component_get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError>;

    /// Creates a template, or updates it (bumping its version). Running jobs
    /// keep the component they claimed.
    async fn template_put(
        &self,
        name: &str,
        digest: &Digest,
        schema: &serde_json::Value,
        defaults: &TemplateDefaults,
        settings: &TemplateSettings,
        now: Millis,
    ) -> Result<Template, StoreError>;
    /// A template by name.
    async fn template_get(&self, name: &str) -> Result<Option<Template>, StoreError>;
    /// Every template, by name.
    async fn template_list(&self) -> Result<Vec<Template>, StoreError>;
    /// Deletes a template; refused while it has jobs unless `force`, which
    /// deletes its waiting jobs and asks its running ones to cancel.
    async fn template_delete(&self, name: &str, force: bool) -> Result<bool, StoreError>;

    /// Inserts jobs in one transaction; a job whose unique key is taken by a
    /// queued or running job is not inserted and reports that job instead.
    async fn job_insert(&self, jobs: &[NewJob], now: Millis) -> Result<Vec<Inserted>, StoreError>;
    /// A queued or running job.
    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError>;
    /// Queued and running jobs, in claim order.
    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;
    /// Claims up to `limit` available jobs of `queue` due at `now`, by
    /// (priority, run-at, id), opening a run for each, within the queue's
    /// settings: none from a paused queue; no more than its global limit
    /// allows beside its running jobs, nor its rate limit beside its starts
    /// in the window (per partition when it is partitioned). The limits are
    /// checked in the claim statement itself, on every database; claims of a
    /// limited queue are serialised for the length of the claim (PostgreSQL
    /// locks its settings row), those of other queues are not.
    async fn job_claim(
        &self,
        node_id: &str,
        queue: &str,
        limit: u32,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Claim, StoreError>;
    /// Claims one specific available job now, whatever its run-at (Bildad's
    /// `enqueue_and_run`). `None` when it is not available, or when its queue
    /// is paused or limited: then it waits for the queue's claims.
    async fn job_claim_id(&self, node_id: &str, id: JobId, now: Millis, expires_at: Millis) -> Result<Option<Claimed>, StoreError>;
    /// Cancels a job: removes it if waiting, flags it if running.
    async fn job_cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError>;
    /// Running jobs of `node_id` whose cancel was requested.
    async fn job_cancel_requested(&self, node_id: &str) -> Result<Vec<JobId>, StoreError>;

    /// Records a run's end and moves its job on, only while the run is still
    /// running on `end.node_id` and is the job's current run (fencing).
    /// Returns false when fenced off (nothing is written).
    async fn run_finish(&self, end: &RunEnd, next: JobNext) -> Result<bool, StoreError> {
        Ok(self.run_finish_many(&[(end.clone(), next)]).await?[0])
    }
    /// [`run_finish`](Store::run_finish) for many runs in one transaction;
    /// one answer per run, in order.
    async fn run_finish_many(&self, ends: &[(RunEnd, JobNext)]) -> Result<Vec<bool>, StoreError>;
    /// Saves a checkpoint of a running run on its job (fenced like `run_finish`).
    async fn run_checkpoint(&self, run_id: RunId, node_id: &str, checkpoint: &str) -> Result<bool, StoreError>;
    /// Saves the latest progress of a running run.
    async fn run_progress(&self, run_id: RunId, progress: &Progress) -> Result<(), StoreError>;
    /// A run by id.
    async fn run_get(&self, id: RunId) -> Result<Option<Run>, StoreError>;
    /// Runs, newest first.
    async fn run_list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError>;
    /// Running runs that are abandoned: their own lease has passed, and so
    /// has their node's (it stopped heartbeating) or the node is gone.
    async fn run_expired(&self, now: Millis) -> Result<Vec<Run>, StoreError>;
    /// Deletes every job and run of a template, whatever their state (for
    /// `elihu bench`, which owns its template); returns (jobs, runs) deleted.
    async fn template_purge(&self, name: &str) -> Result<(u64, u64), StoreError>;
    /// Deletes finished runs older than `before`; returns how many.
    async fn run_prune(&self, before: Millis) -> Result<u64, StoreError>;

    /// Records a node's heartbeat and renews its lease until `expires_at`;
    /// the node's lease keeps every run it has in flight alive.
    async fn node_heartbeat(&self, node: &NodeInfo, expires_at: Millis) -> Result<(), StoreError>;
    /// Removes a node that stopped cleanly.
    async fn node_remove(&self, node_id: &str) -> Result<(), StoreError>;
    /// Known nodes.
    async fn node_list(&self) -> Result<Vec<NodeInfo>, StoreError>;
    /// Takes or renews the leader lease; true when `node_id` holds it until `expires_at`.
    async fn leader_acquire(&self, node_id: &str, now: Millis, expires_at: Millis) -> Result<bool, StoreError>;

    /// Stores a sealed secret (creating or replacing it) and, with the first
    /// secret, the check of the key it was sealed with. True when created.
    async fn secret_put(&self, name: &str, sealed: &[u8], key: &KeyCheck, now: Millis) -> Result<bool, StoreError>;
    /// Every secret's name and times, by name.
    async fn secret_list(&self) -> Result<Vec<SecretInfo>, StoreError>;
    /// The sealed values of the secrets named, those that exist.
    async fn secret_sealed(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Deletes a secret; false when there was none.
    async fn secret_delete(&self, name: &str) -> Result<bool, StoreError>;
    /// The check of the key the secrets were sealed with, once one was stored.
    async fn secrets_key(&self) -> Result<Option<KeyCheck>, StoreError>;

    /// Per-template figures.
    async fn stats(&self) -> Result<Vec<TemplateStats>, StoreError>;

    /// A queue's settings (none set: [`QueueSettings::none`]).
    async fn queue_get(&self, name: &str) -> Result<QueueSettings, StoreError>;
    /// Changes a queue's settings. A new partition recomputes the partition
    /// key of every job of the queue in the same transaction (PostgreSQL
    /// holds enqueues, claims and completions meanwhile). Resuming or
    /// changing limits wakes listening nodes.
    async fn queue_set(&self, name: &str, change: &QueueChange, now: Millis) -> Result<QueueSettings, StoreError>;
    /// Every queue with settings or jobs, by name: settings, depth, running
    /// jobs, and how many due jobs each setting holds back at `now`.
    async fn queue_list(&self, now: Millis) -> Result<Vec<QueueInfo>, StoreError>;
    /// The dashboard's bounded reads (see [`Views`]).
    fn views(&self) -> &dyn Views;

    /// Creates or replaces a schedule (its name, template, context, rule and
    /// catch-up). Replacing one withdraws the job it had queued, so the next
    /// firing follows the new rule; `paused`, `last_firing` are kept.
    async fn schedule_put(&self, schedule: &StoredSchedule, now: Millis) -> Result<StoredSchedule, StoreError>;
    /// A schedule by name.
    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>, StoreError>;
    /// Every schedule, by name.
    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>, StoreError>;
    /// Deletes a schedule and withdraws its queued (not running) job.
    async fn schedule_delete(&self, name: &str) -> Result<bool, StoreError>;
    /// Pauses (withdrawing its queued job) or resumes a schedule.
    async fn schedule_pause(&self, name: &str, paused: bool, now: Millis) -> Result<bool, StoreError>;
    /// Withdraws a schedule's queued job `job_id` if it is still waiting (a
    /// missed firing under `catch_up = skip`); false if it already runs.
    async fn schedule_skip(&self, name: &str, job_id: JobId) -> Result<bool, StoreError>;
    /// Enqueues the job of a firing, only if the schedule's last firing is
    /// still `expected` (so two leaders cannot both fire it), recording the
    /// firing and the job. `None` when another node fired first.
    async fn schedule_fire(
        &self,
        name: &str,
        expected: Option<Millis>,
        firing: Millis,
        job: &NewJob,
        now: Millis,
    ) -> Result<Option<Inserted>, StoreError>;

    /// Notices pushed by the database (enqueues and cancels made by any
    /// process), for a node to react at once instead of at its next poll.
    /// `None` where the database cannot push (SQLite: nodes poll).
    async fn listen(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<Notice>>, StoreError> {
        Ok(None)
    }

    // Live events across processes (see `crate::events`).

    /// Registers or renews the watcher `id` (a process with live event
    /// streams open) until `expires_at`. On PostgreSQL, listening nodes hear
    /// of it at once ([`Notice::Watched`]).
    async fn watcher_put(&self, id: &str, expires_at: Millis) -> Result<(), StoreError>;
    /// Removes a watcher (its process closed its last stream).
    async fn watcher_remove(&self, id: &str) -> Result<(), StoreError>;
    /// Whether any watcher is fresh at `now`: nodes publish their events to
    /// the cluster only then.
    async fn watchers_any(&self, now: Millis) -> Result<bool, StoreError>;
    /// Publishes one batch of wire events (JSON text under 8,000 bytes) from
    /// the process `origin` to every watching process, in its own statement.
    async fn event_publish(&self, origin: &str, batch: &str, now: Millis) -> Result<(), StoreError>;
    /// Published batches pushed as they come (PostgreSQL); `None` where the
    /// database cannot push, and the batches are read with `event_read`.
    async fn event_listen(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>, StoreError>;
    /// The id of the latest stored batch (0 where batches are not stored).
    async fn event_cursor(&self) -> Result<i64, StoreError>;
    /// Stored batches after id `after`, oldest first, at most `limit`:
    /// (id, origin, batch).
    async fn event_read(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>, StoreError>;
    /// Deletes stored batches older than `before` and watchers that expired.
    async fn event_prune(&self, before: Millis, now: Millis) -> Result<u64, StoreError>;

    /// Jobs by queue and state at `now` (for the metrics): `available` (due),
    /// `scheduled` (future, never run), `retrying` (future, after a failed
    /// attempt) and `running`.
    async fn job_counts(&self, now: Millis) -> Result<Vec<(String, String, i64)>, StoreError>;
}

/// What a database pushes to listening nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Jobs became available in this queue.
    JobsAvailable {
        /// The queue.
        queue: String,
    },
    /// A cancel was requested for this running job.
    CancelRequested {
        /// The job.
        job_id: JobId,
    },
    /// The notification connection was lost and is back: notices may have
    /// been missed, so look again.
    Reconnected,
    /// A process started watching live events: publish them from now on.
    Watched,
}

/// The `p`-th percentile (0–100, nearest rank) of values sorted ascending;
/// `None` when there are none. Used for run-duration stats and by
/// `elihu bench`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Opens a transaction (with `statement`, e.g. `BEGIN IMMEDIATE`) in its own
/// task. If the caller gives up while it waits (a dropped future), the task
/// still finishes and the transaction it got is rolled back on drop, instead
/// of a pooled connection being left inside an open transaction (on SQLite,
/// holding the write lock).
pub(crate) async fn begin_detached<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    statement: &'static str,
) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin_with(statement).await }).await {
        Ok(tx) => Ok(tx?),
        Err(e) => {
            tracing::error!(error = %e, "the task opening a transaction failed");
            Err(StoreError::Database(sqlx::Error::WorkerCrashed))
        }
    }
}

/// Opens the store a database URL names: `postgres://…` (PostgreSQL, for
/// many nodes), or `sqlite://PATH`, `sqlite::memory:` or a plain file path
/// (SQLite, embedded). Does not migrate.
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(PostgresStore::connect(url).await?));
    }
    Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
}
