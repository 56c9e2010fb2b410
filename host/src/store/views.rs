//! The dashboard's reads: queries whose cost is bounded however big `jobs`
//! and `runs` grow (capped per-queue counts, keyset pages of jobs scanning
//! at most a window of ids, aggregates over the latest runs only), and the
//! few small lookups its pages need (leader, leases, runs in flight, the
//! context kept with a job's final failure). Read-only; one SQL text serves
//! both databases.

use serde::Serialize;

use super::{Job, PostgresStore, Run, RunRow, SqliteStore, StoreError};
use crate::model::{Digest, JobId, Millis, RunId};

/// Per-queue job counts; each is exact up to the cap it was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Waiting and due now.
    pub available: i64,
    /// Running.
    pub running: i64,
    /// Waiting for a future run-at, never tried.
    pub scheduled: i64,
    /// Waiting out a backoff after a failed attempt.
    pub retrying: i64,
}

/// Which jobs a page lists: newest first, older than `before`, scanning at
/// most the ids in `[floor, before)`.
#[derive(Debug, Clone, Default)]
pub struct JobPageQuery {
    /// `available` or `running`.
    pub state: Option<String>,
    /// Only this template.
    pub template: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs whose context contains this text.
    pub text: Option<String>,
    /// Only ids below this.
    pub before: i64,
    /// Only ids at or above this (the scan window's end).
    pub floor: i64,
    /// At most this many.
    pub limit: i64,
}

/// Finished runs of one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct MinuteCount {
    /// Minutes since the epoch (finished at).
    pub minute: i64,
    /// Runs that succeeded.
    pub succeeded: i64,
    /// Runs that failed.
    pub failed: i64,
}

/// Failed runs of one template with one reason.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FailureGroup {
    /// The template.
    pub template: String,
    /// The reason.
    pub reason: String,
    /// How many.
    pub runs: i64,
    /// The latest of them.
    pub last_run: RunId,
}

/// A run's id with its failure message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunMessage {
    /// The run.
    pub id: RunId,
    /// The job.
    pub job_id: JobId,
    /// Its message.
    pub message: Option<String>,
}

/// One pushed version of a template.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateVersion {
    /// 1, 2, ...
    pub version: i64,
    /// Its component.
    #[sqlx(try_from = "String")]
    pub digest: Digest,
    /// When it was pushed.
    pub pushed_at: Millis,
}

/// A node's lease and runs in flight.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeLoad {
    /// The node.
    pub id: String,
    /// Until when its lease keeps its runs alive.
    pub expires_at: Millis,
    /// Its jobs running now.
    pub running: i64,
}

/// The dashboard's read-only queries (see the module doc).
#[async_trait::async_trait]
pub trait Views: Send + Sync {
    /// Counts of `queue`'s jobs, each read up to `cap` rows (`cap` means "at least").
    async fn queue_counts(&self, queue: &str, now: Millis, cap: i64) -> Result<QueueCounts, StoreError>;
    /// The queues named by templates and nodes, by name.
    async fn queue_names(&self) -> Result<Vec<String>, StoreError>;
    /// The highest job id (0 when none).
    async fn job_max_id(&self) -> Result<i64, StoreError>;
    /// A page of jobs (see [`JobPageQuery`]).
    async fn job_page(&self, query: &JobPageQuery) -> Result<Vec<Job>, StoreError>;
    /// Per-minute succeeded/failed counts of the runs that finished at or
    /// after `since`, among the latest `window` runs.
    async fn run_minutes(&self, since: Millis, window: i64) -> Result<Vec<MinuteCount>, StoreError>;
    /// Durations (ms) of the succeeded runs among the latest `window` runs.
    async fn run_durations(&self, window: i64) -> Result<Vec<i64>, StoreError>;
    /// Failures among the latest `window` runs, by template and reason.
    async fn run_failures(&self, window: i64) -> Result<Vec<FailureGroup>, StoreError>;
    /// The messages of these runs.
    async fn run_messages(&self, ids: &[RunId]) -> Result<Vec<RunMessage>, StoreError>;
    /// The latest `limit` runs of a job, oldest first, through the `runs_job` index.
    async fn job_runs(&self, job_id: JobId, limit: i64) -> Result<Vec<Run>, StoreError>;
    /// The context a job had when its run `run_id` was its final failure.
    async fn run_context(&self, run_id: RunId) -> Result<Option<String>, StoreError>;
    /// The latest `limit` pushed versions of `template`, newest first.
    async fn template_versions(&self, template: &str, limit: i64) -> Result<Vec<TemplateVersion>, StoreError>;
    /// The node holding the leader lease at `now`.
    async fn leader(&self, now: Millis) -> Result<Option<String>, StoreError>;
    /// Every node's lease and running jobs.
    async fn node_loads(&self) -> Result<Vec<NodeLoad>, StoreError>;
}

/// One implementation per database from one body (the SQL is the same).
macro_rules! views_for {
    ($($store:ty),*) => {$(
#[async_trait::async_trait]
impl Views for $store {
    async fn queue_counts(&self, queue: &str, now: Millis, cap: i64) -> Result<QueueCounts, StoreError> {
        let capped = |condition: &str| {
            format!("SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE state = 'available' AND queue = $1 AND {condition} LIMIT $3) t")
        };
        let count = |sql: String| async move {
            sqlx::query_scalar::<_, i64>(&sql).bind(queue).bind(now).bind(cap).fetch_one(&self.pool).await
        };
        let available = count(capped("run_at <= $2")).await?;
        let scheduled = count(capped("run_at > $2 AND attempt = 0")).await?;
        let retrying = count(capped("run_at > $2 AND attempt > 0")).await?;
        let running = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jobs WHERE state = 'running' AND queue = $1")
            .bind(queue)
            .fetch_one(&self.pool)
            .await?;
        Ok(QueueCounts { available, running, scheduled, retrying })
    }

    async fn queue_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = sqlx::query_scalar("SELECT DISTINCT queue FROM templates").fetch_all(&self.pool).await?;
        let nodes: Vec<String> = sqlx::query_scalar("SELECT queues FROM nodes").fetch_all(&self.pool).await?;
        for pairs in nodes {
            names.extend(pairs.split(',').filter_map(|p| p.split('=').next()).map(str::trim).filter(|q| !q.is_empty()).map(String::from));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn job_max_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM jobs").fetch_one(&self.pool).await?.unwrap_or(0))
    }

    async fn job_page(&self, q: &JobPageQuery) -> Result<Vec<Job>, StoreError> {
        let like = q.text.as_deref().map(|t| format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        Ok(sqlx::query_as(
            "SELECT * FROM jobs WHERE id < $1 AND id >= $2
                 AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR template = $4) AND ($5 IS NULL OR queue = $5)
                 AND ($6 IS NULL OR context LIKE $6 ESCAPE '\\')
             ORDER BY id DESC LIMIT $7",
        )
        .bind(q.before)
        .bind(q.floor)
        .bind(q.state.as_deref())
        .bind(q.template.as_deref())
        .bind(q.queue.as_deref())
        .bind(like.as_deref())
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn run_minutes(&self, since: Millis, window: i64) -> Result<Vec<MinuteCount>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT finished_at / 60000 AS minute,
                    COUNT(CASE WHEN result = 'succeeded' THEN 1 END) AS succeeded,
                    COUNT(CASE WHEN result = 'failed' THEN 1 END) AS failed
             FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs) - $1 AND status = 'done' AND finished_at >= $2
             GROUP BY finished_at / 60000 ORDER BY minute",
        )
        .bind(window)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn run_durations(&self, window: i64) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT finished_at - started_at FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs) - $1 AND status = 'done' AND result = 'succeeded'",
        )
        .bind(window)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn run_failures(&self, window: i64) -> Result<Vec<FailureGroup>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT template, reason, COUNT(*) AS runs, MAX(id) AS last_run FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs) - $1 AND status = 'done' AND result = 'failed'
             GROUP BY template, reason ORDER BY COUNT(*) DESC, template, reason",
        )
        .bind(window)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn run_messages(&self, ids: &[RunId]) -> Result<Vec<RunMessage>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<RunMessage> = sqlx::query_as("SELECT id, job_id, message FROM runs WHERE id = $1")
                .bind(*id)
                .fetch_optional(&self.pool)
                .await?;
            out.extend(row);
        }
        Ok(out)
    }

    async fn job_runs(&self, job_id: JobId, limit: i64) -> Result<Vec<Run>, StoreError> {
        let rows: Vec<RunRow> = sqlx::query_as("SELECT * FROM runs WHERE job_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(job_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().rev().map(Run::from).collect())
    }

    async fn template_versions(&self, template: &str, limit: i64) -> Result<Vec<TemplateVersion>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT version, digest, pushed_at FROM template_versions WHERE template = $1 ORDER BY version DESC LIMIT $2",
        )
        .bind(template)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn run_context(&self, run_id: RunId) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>("SELECT context FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?
            .flatten())
    }

    async fn leader(&self, now: Millis) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT node_id FROM leader WHERE name = 'leader' AND expires_at >= $1")
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn node_loads(&self) -> Result<Vec<NodeLoad>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT n.id, n.expires_at,
                    (SELECT COUNT(*) FROM jobs j WHERE j.state = 'running' AND j.node_id = n.id) AS running
             FROM nodes n ORDER BY n.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
    )*};
}

views_for!(SqliteStore, PostgresStore);
