//! The one SQL implementation of `Store`, generic over a `Dialect`: every
//! method whose SQL both databases accept (sqlx takes `$N` placeholders on
//! SQLite too) is written here once; a dialect supplies its pool and
//! migrations and the few statements that truly differ (the claim, bulk
//! inserts and completions, notifications, stats). Queue settings and their
//! partition keys are kept here too; the picks of limited claims are in
//! `flow`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};
use tokio::sync::mpsc::UnboundedReceiver;

use super::flow::{self, ClaimHints, DepthRow, QueueRow, StartsRow};
use super::rows::{RunRow, insert_stretches, json_text, sort_closed};
use super::*;

/// What one database supplies to the shared store: its migrations, how it
/// opens a writing transaction, and the statements that truly differ.
#[async_trait::async_trait]
pub trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// The statement that opens a transaction that will write.
    const BEGIN_WRITE: &'static str;
    /// A statement (`$1`: the name) that keeps a template's jobs from being
    /// claimed until the transaction ends, where the write lock does not.
    const LOCK_TEMPLATE: Option<&'static str>;
    /// A statement that waits for every transaction writing jobs to end and
    /// holds new ones until this one ends (while a queue's partition keys
    /// are recomputed), where the write lock does not.
    const LOCK_JOBS: Option<&'static str>;
    /// The suffix of [`flow::SETTINGS`] that keeps the row for this
    /// transaction: a queue's settings cannot change under a claim.
    const LOCK_SETTINGS: &'static str;

    /// The database's migrations.
    fn migrator() -> &'static Migrator;
    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Claims the jobs `pick` names that are available and due at `now`,
    /// opening a run for each (with the template's digest and config as they
    /// are now), in claim order, within the queue's settings (see
    /// [`Store::job_claim`]; `hints` remembers which queues were limited). A
    /// picked job whose template was deleted can never run: it is deleted
    /// instead.
    async fn claim(
        pool: &Pool<Self::Db>,
        hints: &ClaimHints,
        node_id: &str,
        pick: Pick<'_>,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Claim, StoreError>;
    /// Sets the partition key of each job named.
    async fn set_partition_keys(tx: &mut Transaction<'static, Self::Db>, keys: &[(JobId, String)]) -> Result<(), StoreError>;
    /// Inserts jobs without unique keys in a fixed number of statements;
    /// their ids follow the order of `jobs`.
    async fn insert_unkeyed(tx: &mut Transaction<'static, Self::Db>, jobs: &[NewJob], now: Millis) -> Result<Vec<JobId>, StoreError>;
    /// A batch of run ends as the closing statement binds it.
    type Ends: Send + Sync;
    /// Encodes a batch of run ends, before the transaction opens: the write
    /// lock (SQLite's is the database's) is not held meanwhile.
    fn encode_ends(ends: &[(RunEnd, JobNext)]) -> Self::Ends;
    /// Closes the runs of `ends` still running on their node, in one
    /// statement; returns the ids of those it closed.
    async fn close_runs(tx: &mut Transaction<'static, Self::Db>, ends: Self::Ends) -> Result<Vec<RunId>, StoreError>;
    /// Deletes each job whose current run is the one paired with it.
    async fn delete_finished(tx: &mut Transaction<'static, Self::Db>, done: &[(JobId, RunId)]) -> Result<(), StoreError>;
    /// Tells listening nodes, at commit; nothing where the database cannot push.
    async fn notify(_tx: &mut Transaction<'static, Self::Db>, _notice: &Notice) -> Result<(), StoreError> {
        Ok(())
    }
    /// Per-template figures.
    async fn stats(pool: &Pool<Self::Db>) -> Result<Vec<TemplateStats>, StoreError>;
    /// Notices pushed by the database; `None` where it cannot push.
    async fn listen(_pool: &Pool<Self::Db>) -> Result<Option<UnboundedReceiver<Notice>>, StoreError> {
        Ok(None)
    }

    // Live events across processes: see the matching `Store` methods.

    /// Publishes a batch of wire events, outside any other transaction.
    async fn event_publish(pool: &Pool<Self::Db>, origin: &str, batch: &str, now: Millis) -> Result<(), StoreError>;
    /// Published batches as the database pushes them; `None` where it cannot.
    async fn event_listen(pool: &Pool<Self::Db>) -> Result<Option<tokio::sync::mpsc::Receiver<String>>, StoreError>;
    /// The latest stored batch's id.
    async fn event_cursor(pool: &Pool<Self::Db>) -> Result<i64, StoreError>;
    /// Stored batches after an id.
    async fn event_read(pool: &Pool<Self::Db>, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>, StoreError>;
    /// Deletes stored batches older than `before`.
    async fn event_prune(pool: &Pool<Self::Db>, before: Millis) -> Result<u64, StoreError>;
    /// Jobs by queue and state ([`JOB_COUNTS`]).
    async fn job_counts(pool: &Pool<Self::Db>, now: Millis) -> Result<Vec<(String, String, i64)>, StoreError>;
}

/// Jobs by queue and state at `$1` (now), for the metrics.
pub(super) const JOB_COUNTS: &str = "SELECT queue, state, COUNT(*) FROM (
         SELECT queue, CASE WHEN state = 'running' THEN 'running' WHEN run_at <= $1 THEN 'available'
                            WHEN attempt > 0 THEN 'retrying' ELSE 'scheduled' END AS state
         FROM jobs) j
     GROUP BY queue, state ORDER BY queue, state";

/// Which jobs a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick<'a> {
    /// Up to `limit` due jobs of `queue`, by (priority, run-at, id).
    Queue {
        /// The queue.
        queue: &'a str,
        /// At most this many.
        limit: u32,
    },
    /// This job, whatever its run-at or queue.
    Job(JobId),
}

/// elihu's store on an SQL database; see [`SqliteStore`] and [`PostgresStore`].
pub struct SqlStore<D: Dialect> {
    pub(super) pool: Pool<D::Db>,
    hints: Arc<ClaimHints>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore { pool: self.pool.clone(), hints: self.hints.clone() }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("database", &std::any::type_name::<D::Db>()).finish_non_exhaustive()
    }
}

/// A value sqlx binds as a parameter of a `DB` statement.
pub trait Param<'q, DB: Database>: Encode<'q, DB> + Type<DB> + Send + 'q {}
impl<'q, DB: Database, T: Encode<'q, DB> + Type<DB> + Send + 'q> Param<'q, DB> for T {}

/// Writes an implementation for every dialect, under the bounds the shared
/// SQL needs of its database (stated once, here): executors, arguments, the
/// parameter types it binds and the row types it reads.
macro_rules! for_every_dialect {
    (impl SqlStore $body:tt) => {
        for_every_dialect!(@ [impl<D: Dialect> SqlStore<D>] $body);
    };
    (#[$attr:meta] impl $trait_:ident for SqlStore $body:tt) => {
        for_every_dialect!(@ [#[$attr] impl<D: Dialect> $trait_ for SqlStore<D>] $body);
    };
    (@ [$($head:tt)*] $body:tt) => {
        $($head)*
        where
            for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
            for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
            <D::Db as Database>::Connection: Migrate,
            for<'q> i64: Param<'q, D::Db>,
            for<'q> i32: Param<'q, D::Db>,
            for<'q> bool: Param<'q, D::Db>,
            for<'q> String: Param<'q, D::Db>,
            for<'q> &'q str: Param<'q, D::Db>,
            for<'q> &'q [u8]: Param<'q, D::Db>,
            for<'q> JobId: Param<'q, D::Db>,
            for<'q> RunId: Param<'q, D::Db>,
            for<'q> Millis: Param<'q, D::Db>,
            for<'q> Option<&'q str>: Param<'q, D::Db>,
            for<'q> Option<String>: Param<'q, D::Db>,
            for<'q> Option<i64>: Param<'q, D::Db>,
            for<'q> Option<JobId>: Param<'q, D::Db>,
            for<'q> Option<Millis>: Param<'q, D::Db>,
            for<'r> (i64,): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> (Option<Millis>,): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> (Option<String>,): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> (JobId, String, String): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> QueueRow: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> DepthRow: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> StartsRow: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> (JobId,): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> (String,): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> (Vec<u8>,): FromRow<'r, <D::Db as Database>::Row>,
            for<'r> SecretInfo: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> KeyCheck: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> Template: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> Job: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> RunRow: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> NodeInfo: FromRow<'r, <D::Db as Database>::Row>,
            for<'r> StoredSchedule: FromRow<'r, <D::Db as Database>::Row>,
            SqlStore<D>: Views,
        $body
    };
}

for_every_dialect! {
impl SqlStore {
    /// A store over an opened pool.
    pub(super) fn new(pool: Pool<D::Db>) -> Self {
        SqlStore { pool, hints: Arc::default() }
    }

    /// Opens a writing transaction (see [`begin_detached`]).
    async fn write(&self) -> Result<Transaction<'static, D::Db>, StoreError> {
        begin_detached(&self.pool, D::BEGIN_WRITE).await
    }

    /// Inserts jobs in their order, and tells listening nodes about the
    /// queues that have jobs due now.
    async fn insert(tx: &mut Transaction<'static, D::Db>, jobs: &[NewJob], now: Millis) -> Result<Vec<Inserted>, StoreError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut due = BTreeSet::new();
        for stretch in insert_stretches(jobs) {
            let inserted = if stretch[0].unique_key.is_none() {
                D::insert_unkeyed(tx, stretch, now).await?.into_iter().map(Inserted::New).collect()
            } else {
                vec![Self::insert_keyed(tx, &stretch[0], now).await?]
            };
            for (job, inserted) in stretch.iter().zip(inserted) {
                if matches!(inserted, Inserted::New(_)) && job.run_at <= now {
                    due.insert(job.queue.as_str());
                }
                out.push(inserted);
            }
        }
        Self::set_traceparents(tx, jobs, &out).await?;
        Self::key_partitions(tx, jobs, &out).await?;
        for queue in due {
            D::notify(tx, &Notice::JobsAvailable { queue: queue.to_string() }).await?;
        }
        Ok(out)
    }

    /// Gives the new jobs of partitioned queues their partition keys. Read
    /// after the insert: on PostgreSQL the insert holds the lock a change of
    /// partition waits for, so the setting read here is the one in force.
    async fn key_partitions(tx: &mut Transaction<'static, D::Db>, jobs: &[NewJob], inserted: &[Inserted]) -> Result<(), StoreError> {
        let mut partitions: HashMap<&str, Option<Partition>> = HashMap::new();
        let mut keys = Vec::new();
        for (job, inserted) in jobs.iter().zip(inserted) {
            let Inserted::New(id) = inserted else { continue };
            if !partitions.contains_key(job.queue.as_str()) {
                let partition = Self::settings(&mut **tx, &job.queue, "").await?.partition;
                partitions.insert(&job.queue, partition);
            }
            if let Some(partition) = &partitions[job.queue.as_str()] {
                keys.push((*id, partition.key(&job.template, &job.context)));
            }
        }
        if !keys.is_empty() {
            D::set_partition_keys(tx, &keys).await?;
        }
        Ok(())
    }

    /// A queue's settings, read with `lock` appended (a row-lock clause or nothing).
    pub(super) async fn settings<'e, E>(executor: E, queue: &str, lock: &str) -> Result<QueueSettings, StoreError>
    where
        E: Executor<'e, Database = D::Db>,
    {
        let sql = format!("{}{lock}", flow::SETTINGS);
        let row: Option<QueueRow> = sqlx::query_as(&sql).bind(queue).fetch_optional(executor).await?;
        row.map_or_else(|| Ok(QueueSettings::none(queue)), QueueSettings::try_from)
    }

    /// The `now` of a claim of a queue with these settings, taken after the
    /// claim got the queue's settings row or the write lock: for a
    /// rate-limited queue no earlier than its latest start (see
    /// [`flow::LATEST_START`]).
    pub(super) async fn claim_now<'e, E>(executor: E, settings: &QueueSettings, now: Millis) -> Result<Millis, StoreError>
    where
        E: Executor<'e, Database = D::Db>,
    {
        if settings.rate.is_none() {
            return Ok(now);
        }
        let (latest,): (Option<Millis>,) = sqlx::query_as(flow::LATEST_START).bind(&settings.name).fetch_one(executor).await?;
        Ok(flow::not_before_latest_start(now, latest))
    }

    /// Inserts one job, or finds the queued or running job holding its unique key.
    async fn insert_keyed(tx: &mut Transaction<'static, D::Db>, job: &NewJob, now: Millis) -> Result<Inserted, StoreError> {
        let id: Option<JobId> = sqlx::query_scalar(
            "INSERT INTO jobs (template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes,
                 unique_key, created_at, discard_after, allowed_hosts)
             VALUES ($1, $2, $3, $4, $5, 'available', $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id",
        )
        .bind(job.template.as_str())
        .bind(job.context.as_str())
        .bind(job.queue.as_str())
        .bind(job.priority)
        .bind(job.run_at)
        .bind(i64::from(job.max_attempts))
        .bind(job.timeout_ms as i64)
        .bind(job.memory_bytes as i64)
        .bind(job.unique_key.as_deref())
        .bind(now)
        .bind(job.discard_after)
        .bind(job.allowed_hosts.as_ref().map(json_text))
        .fetch_optional(&mut **tx)
        .await?;
        Ok(match id {
            Some(id) => Inserted::New(id),
            None => Inserted::Existing(
                sqlx::query_scalar("SELECT id FROM jobs WHERE unique_key = $1")
                    .bind(job.unique_key.as_deref())
                    .fetch_one(&mut **tx)
                    .await?,
            ),
        })
    }

    /// Removes a schedule's queued (not yet running) job and forgets it.
    async fn withdraw_queued_job(tx: &mut Transaction<'static, D::Db>, schedule: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM jobs WHERE state = 'available' AND id = (SELECT current_job FROM schedules WHERE name = $1)")
            .bind(schedule)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE schedules SET current_job = NULL WHERE name = $1").bind(schedule).execute(&mut **tx).await?;
        Ok(())
    }

    /// Moves a retried or snoozed job back to its queue once its run is
    /// closed, and wakes listening nodes when it is due at once.
    async fn move_on(tx: &mut Transaction<'static, D::Db>, end: &RunEnd, at: Millis, refund: bool, snoozed: bool) -> Result<(), StoreError> {
        let queue: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'available', run_at = $1, node_id = NULL, current_run = NULL,
                 attempt = attempt - $2, checkpoint = COALESCE($3, checkpoint), snoozes = snoozes + $6
             WHERE id = $4 AND current_run = $5
             RETURNING queue",
        )
        .bind(at)
        .bind(i64::from(refund))
        .bind(end.checkpoint.as_deref())
        .bind(end.job_id)
        .bind(end.run_id)
        .bind(i64::from(snoozed))
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(queue) = queue
            && at <= end.finished_at
        {
            D::notify(tx, &Notice::JobsAvailable { queue }).await?;
        }
        Ok(())
    }

    /// Stores the `traceparent` of each new job that has one (rare: only
    /// traced requests carry one), in the inserting transaction.
    async fn set_traceparents(tx: &mut Transaction<'static, D::Db>, jobs: &[NewJob], inserted: &[Inserted]) -> Result<(), StoreError> {
        for (job, inserted) in jobs.iter().zip(inserted) {
            if let (Some(traceparent), Inserted::New(id)) = (&job.traceparent, inserted) {
                sqlx::query("UPDATE jobs SET traceparent = $1 WHERE id = $2").bind(traceparent.as_str()).bind(*id).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Recomputes the partition key of every job of `queue`, a batch of
    /// jobs at a time.
    async fn repartition(tx: &mut Transaction<'static, D::Db>, queue: &str, partition: Option<&Partition>) -> Result<(), StoreError> {
        let Some(partition) = partition else {
            sqlx::query("UPDATE jobs SET partition_key = NULL WHERE queue = $1").bind(queue).execute(&mut **tx).await?;
            return Ok(());
        };
        let mut after = JobId(0);
        loop {
            let jobs: Vec<(JobId, String, String)> =
                sqlx::query_as("SELECT id, template, context FROM jobs WHERE queue = $1 AND id > $2 ORDER BY id LIMIT 10000")
                    .bind(queue)
                    .bind(after)
                    .fetch_all(&mut **tx)
                    .await?;
            let Some(last) = jobs.last() else { return Ok(()) };
            after = last.0;
            let keys: Vec<(JobId, String)> = jobs.iter().map(|(id, template, context)| (*id, partition.key(template, context))).collect();
            D::set_partition_keys(tx, &keys).await?;
        }
    }

    /// The changes of `statement` bound to `name`, in `tx`.
    async fn delete_named(tx: &mut Transaction<'static, D::Db>, statement: &'static str, name: &str) -> Result<u64, StoreError> {
        Ok(D::rows_affected(&sqlx::query(statement).bind(name).execute(&mut **tx).await?))
    }
}
}

for_every_dialect! {
#[async_trait::async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        D::migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn component_put(&self, digest: &Digest, bytes: &[u8], now: Millis) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO components (digest, bytes, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn component_get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT bytes FROM components WHERE digest = $1").bind(digest.as_str()).fetch_optional(&self.pool).await?)
    }

    async fn template_put(
        &self,
        name: &str,
        digest: &Digest,
        schema: &serde_json::Value,
        defaults: &TemplateDefaults,
        settings: &TemplateSettings,
        now: Millis,
    ) -> Result<Template, StoreError> {
        let mut tx = self.write().await?;
        let template: Template = sqlx::query_as(
            "INSERT INTO templates (name, digest, schema, queue, priority, max_attempts, timeout_ms, memory_bytes,
                 backoff_base_ms, backoff_max_ms, config, version, created_at, updated_at, grants, limits)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12, $13, $14)
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, schema = excluded.schema,
                 queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
                 timeout_ms = excluded.timeout_ms, memory_bytes = excluded.memory_bytes,
                 backoff_base_ms = excluded.backoff_base_ms, backoff_max_ms = excluded.backoff_max_ms,
                 config = excluded.config, grants = excluded.grants, limits = excluded.limits,
                 version = templates.version + 1, updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(name)
        .bind(digest.as_str())
        .bind(schema.to_string())
        .bind(defaults.queue.as_str())
        .bind(defaults.priority)
        .bind(i64::from(defaults.max_attempts))
        .bind(defaults.timeout_ms as i64)
        .bind(defaults.memory_bytes as i64)
        .bind(defaults.backoff_base_ms as i64)
        .bind(defaults.backoff_max_ms as i64)
        .bind(json_text(&settings.config))
        .bind(now)
        .bind(json_text(&settings.grants))
        .bind(json_text(&settings.limits))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO template_versions (template, version, digest, pushed_at) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(template.version)
            .bind(digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(template)
    }

    async fn template_get(&self, name: &str) -> Result<Option<Template>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM templates WHERE name = $1").bind(name).fetch_optional(&self.pool).await?)
    }

    async fn template_list(&self) -> Result<Vec<Template>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM templates ORDER BY name").fetch_all(&self.pool).await?)
    }

    async fn template_delete(&self, name: &str, force: bool) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        if let Some(lock) = D::LOCK_TEMPLATE {
            sqlx::query(lock).bind(name).execute(&mut *tx).await?;
        }
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE template = $1").bind(name).fetch_one(&mut *tx).await?;
        if jobs > 0 && !force {
            tx.rollback().await?;
            return Err(StoreError::TemplateInUse { name: name.to_string(), jobs });
        }
        Self::delete_named(&mut tx, "DELETE FROM jobs WHERE template = $1 AND state = 'available'", name).await?;
        let flagged: Vec<JobId> =
            sqlx::query_scalar("UPDATE jobs SET cancel_requested = TRUE WHERE template = $1 AND state = 'running' RETURNING id")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        for job_id in flagged {
            D::notify(&mut tx, &Notice::CancelRequested { job_id }).await?;
        }
        Self::delete_named(&mut tx, "DELETE FROM template_versions WHERE template = $1", name).await?;
        let deleted = Self::delete_named(&mut tx, "DELETE FROM templates WHERE name = $1", name).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn job_insert(&self, jobs: &[NewJob], now: Millis) -> Result<Vec<Inserted>, StoreError> {
        let mut tx = self.write().await?;
        let inserted = Self::insert(&mut tx, jobs, now).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM jobs
             WHERE (CAST($1 AS TEXT) IS NULL OR template = $1) AND (CAST($2 AS TEXT) IS NULL OR queue = $2)
                 AND (CAST($3 AS TEXT) IS NULL OR state = $3)
             ORDER BY state DESC, priority, run_at, id LIMIT $4",
        )
        .bind(filter.template.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.state.map(JobState::as_str))
        .bind(filter.limit.unwrap_or(100))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn job_claim(
        &self,
        node_id: &str,
        queue: &str,
        limit: u32,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Claim, StoreError> {
        D::claim(&self.pool, &self.hints, node_id, Pick::Queue { queue, limit }, now, expires_at).await
    }

    async fn job_claim_id(&self, node_id: &str, id: JobId, now: Millis, expires_at: Millis) -> Result<Option<Claimed>, StoreError> {
        Ok(D::claim(&self.pool, &self.hints, node_id, Pick::Job(id), now, expires_at).await?.jobs.pop())
    }

    async fn job_cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.write().await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'available'").bind(id).execute(&mut *tx).await?;
        let outcome = if D::rows_affected(&removed) > 0 {
            CancelOutcome::Removed
        } else {
            let flagged =
                sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'").bind(id).execute(&mut *tx).await?;
            if D::rows_affected(&flagged) > 0 {
                D::notify(&mut tx, &Notice::CancelRequested { job_id: id }).await?;
                CancelOutcome::Requested
            } else {
                CancelOutcome::NotFound
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn job_cancel_requested(&self, node_id: &str) -> Result<Vec<JobId>, StoreError> {
        Ok(sqlx::query_scalar("SELECT id FROM jobs WHERE node_id = $1 AND state = 'running' AND cancel_requested = TRUE")
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn run_finish_many(&self, ends: &[(RunEnd, JobNext)]) -> Result<Vec<bool>, StoreError> {
        // The whole batch in three statements: close the runs still running
        // on their node, delete the finished jobs, then move the retried ones.
        let encoded = D::encode_ends(ends);
        let mut tx = self.write().await?;
        let closed = D::close_runs(&mut tx, encoded).await?;
        let (applied, done) = sort_closed(ends, &closed);
        // A final failure keeps its job's context on the run, so the job can
        // be retried once it is gone (rare: no statement otherwise).
        for ((end, next), ok) in ends.iter().zip(&applied) {
            if *ok && *next == JobNext::Delete && end.ending.result() == RunResult::Failed {
                sqlx::query("UPDATE runs SET context = (SELECT context FROM jobs WHERE id = $1) WHERE id = $2")
                    .bind(end.job_id)
                    .bind(end.run_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if !done.is_empty() {
            D::delete_finished(&mut tx, &done).await?;
        }
        for ((end, next), ok) in ends.iter().zip(&applied) {
            match (next, ok) {
                (JobNext::Retry { at, refund }, true) => Self::move_on(&mut tx, end, *at, *refund, false).await?,
                (JobNext::Snooze { at }, true) => Self::move_on(&mut tx, end, *at, true, true).await?,
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn run_checkpoint(&self, run_id: RunId, node_id: &str, checkpoint: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let saved = sqlx::query("UPDATE runs SET checkpoint = $1 WHERE id = $2 AND node_id = $3 AND status = 'running'")
            .bind(checkpoint)
            .bind(run_id)
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        let ok = D::rows_affected(&saved) > 0;
        if ok {
            sqlx::query("UPDATE jobs SET checkpoint = $1 WHERE current_run = $2").bind(checkpoint).bind(run_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ok)
    }

    async fn run_progress(&self, run_id: RunId, progress: &Progress) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET progress_percent = $1, progress_message = $2 WHERE id = $3 AND status = 'running'")
            .bind(i64::from(progress.percent))
            .bind(progress.message.as_str())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn run_get(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        let row: Option<RunRow> = sqlx::query_as("SELECT * FROM runs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(Run::from))
    }

    async fn run_list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT * FROM runs WHERE (CAST($1 AS BIGINT) IS NULL OR job_id = $1) AND (CAST($2 AS TEXT) IS NULL OR template = $2)
                 AND (CAST($4 AS TEXT) IS NULL OR status = $4)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(filter.job_id)
        .bind(filter.template.as_deref())
        .bind(filter.limit.unwrap_or(100))
        .bind(filter.status.map(RunStatus::as_str))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Run::from).collect())
    }

    async fn run_expired(&self, now: Millis) -> Result<Vec<Run>, StoreError> {
        // A running run is its running job's current run.
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT r.* FROM jobs j JOIN runs r ON r.id = j.current_run LEFT JOIN nodes n ON n.id = j.node_id
             WHERE j.state = 'running' AND r.status = 'running' AND r.expires_at < $1
               AND (n.id IS NULL OR n.expires_at < $1)
             ORDER BY r.id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Run::from).collect())
    }

    async fn template_purge(&self, name: &str) -> Result<(u64, u64), StoreError> {
        let mut tx = self.write().await?;
        let jobs = Self::delete_named(&mut tx, "DELETE FROM jobs WHERE template = $1", name).await?;
        let runs = Self::delete_named(&mut tx, "DELETE FROM runs WHERE template = $1", name).await?;
        tx.commit().await?;
        Ok((jobs, runs))
    }

    async fn run_prune(&self, before: Millis) -> Result<u64, StoreError> {
        // A run ends after it starts: `runs_started` finds the candidates.
        let done = sqlx::query("DELETE FROM runs WHERE started_at < $1 AND status = 'done' AND finished_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(D::rows_affected(&done))
    }

    async fn node_heartbeat(&self, node: &NodeInfo, expires_at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (id, hostname, pid, queues, started_at, heartbeat_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, queues = excluded.queues,
                 expires_at = excluded.expires_at",
        )
        .bind(node.id.as_str())
        .bind(node.hostname.as_str())
        .bind(node.pid)
        .bind(node.queues.as_str())
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn node_remove(&self, node_id: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        Self::delete_named(&mut tx, "DELETE FROM nodes WHERE id = $1", node_id).await?;
        Self::delete_named(&mut tx, "DELETE FROM leader WHERE node_id = $1", node_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn node_list(&self) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM nodes ORDER BY started_at, id").fetch_all(&self.pool).await?)
    }

    async fn leader_acquire(&self, node_id: &str, now: Millis, expires_at: Millis) -> Result<bool, StoreError> {
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO leader (name, node_id, expires_at) VALUES ('leader', $1, $3)
             ON CONFLICT (name) DO UPDATE SET node_id = excluded.node_id, expires_at = excluded.expires_at
             WHERE leader.node_id = excluded.node_id OR leader.expires_at < $2
             RETURNING node_id",
        )
        .bind(node_id)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(holder.is_some())
    }

    async fn stats(&self) -> Result<Vec<TemplateStats>, StoreError> {
        D::stats(&self.pool).await
    }

    async fn secret_put(&self, name: &str, sealed: &[u8], key: &KeyCheck, now: Millis) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO secrets_key (id, key_id, check_value) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(key.key_id.as_str())
            .bind(key.check_value.as_slice())
            .execute(&mut *tx)
            .await?;
        let existed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO secrets (name, sealed, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed == 0)
    }

    async fn secret_list(&self) -> Result<Vec<SecretInfo>, StoreError> {
        Ok(sqlx::query_as("SELECT name, created_at, updated_at FROM secrets ORDER BY name").fetch_all(&self.pool).await?)
    }

    async fn secret_sealed(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::with_capacity(names.len());
        for name in names {
            if let Some(sealed) =
                sqlx::query_scalar("SELECT sealed FROM secrets WHERE name = $1").bind(name.as_str()).fetch_optional(&self.pool).await?
            {
                found.push((name.clone(), sealed));
            }
        }
        Ok(found)
    }

    async fn secret_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let deleted = Self::delete_named(&mut tx, "DELETE FROM secrets WHERE name = $1", name).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn secrets_key(&self) -> Result<Option<KeyCheck>, StoreError> {
        Ok(sqlx::query_as("SELECT key_id, check_value FROM secrets_key WHERE id = 1").fetch_optional(&self.pool).await?)
    }

    async fn queue_get(&self, name: &str) -> Result<QueueSettings, StoreError> {
        Self::settings(&self.pool, name, "").await
    }

    async fn queue_set(&self, name: &str, change: &QueueChange, now: Millis) -> Result<QueueSettings, StoreError> {
        let mut tx = self.write().await?;
        // The row first, then the jobs: a claim holds the row and then writes
        // jobs, so taking them in the other order could deadlock with it.
        sqlx::query("INSERT INTO queues (name, updated_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let before = Self::settings(&mut *tx, name, D::LOCK_SETTINGS).await?;
        let after = before.changed(change);
        let repartition = after.partition != before.partition;
        if repartition && let Some(lock) = D::LOCK_JOBS {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let rate = after.rate;
        sqlx::query(
            "UPDATE queues SET paused = $1, global_limit = $2, rate_limit = $3, rate_period_ms = $4, partition_by = $5,
                 updated_at = $6
             WHERE name = $7",
        )
        .bind(after.paused)
        .bind(after.global_limit.map(i64::from))
        .bind(rate.map(|r| i64::from(r.limit)))
        .bind(rate.map(|r| r.period.as_millis() as i64))
        .bind(after.partition.as_ref().map(Partition::as_str))
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if repartition {
            Self::repartition(&mut tx, name, after.partition.as_ref()).await?;
        }
        if rate.is_none() || repartition {
            // The window's starts were counted under the old setting.
            sqlx::query("DELETE FROM queue_starts WHERE queue = $1").bind(name).execute(&mut *tx).await?;
        }
        if !after.paused {
            D::notify(&mut tx, &Notice::JobsAvailable { queue: name.to_string() }).await?;
        }
        tx.commit().await?;
        if after.limits_claims() {
            self.hints.set(name, true);
        }
        Ok(after)
    }

    async fn queue_list(&self, now: Millis) -> Result<Vec<QueueInfo>, StoreError> {
        let rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT name, paused, global_limit, rate_limit, rate_period_ms, partition_by FROM queues ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let settings = rows.into_iter().map(QueueSettings::try_from).collect::<Result<Vec<_>, _>>()?;
        let depths: Vec<DepthRow> = sqlx::query_as(flow::DEPTHS).bind(now).fetch_all(&self.pool).await?;
        let starts: Vec<StartsRow> = sqlx::query_as(flow::STARTS_IN_WINDOW).bind(now).fetch_all(&self.pool).await?;
        Ok(flow::queue_infos(settings, depths, starts))
    }

    fn views(&self) -> &dyn Views {
        self
    }

    async fn schedule_put(&self, schedule: &StoredSchedule, now: Millis) -> Result<StoredSchedule, StoreError> {
        let mut tx = self.write().await?;
        Self::withdraw_queued_job(&mut tx, &schedule.name).await?;
        let stored = sqlx::query_as(
            "INSERT INTO schedules (name, template, context, cron, interval_ms, timezone, catch_up, paused, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (name) DO UPDATE SET template = excluded.template, context = excluded.context,
                 cron = excluded.cron, interval_ms = excluded.interval_ms, timezone = excluded.timezone,
                 catch_up = excluded.catch_up, current_job = NULL, updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(schedule.name.as_str())
        .bind(schedule.template.as_str())
        .bind(schedule.context.as_str())
        .bind(schedule.cron.as_deref())
        .bind(schedule.interval_ms)
        .bind(schedule.timezone.as_deref())
        .bind(schedule.catch_up.as_str())
        .bind(schedule.paused)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM schedules WHERE name = $1").bind(name).fetch_optional(&self.pool).await?)
    }

    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM schedules ORDER BY name").fetch_all(&self.pool).await?)
    }

    async fn schedule_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        Self::withdraw_queued_job(&mut tx, name).await?;
        let deleted = Self::delete_named(&mut tx, "DELETE FROM schedules WHERE name = $1", name).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn schedule_pause(&self, name: &str, paused: bool, now: Millis) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        if paused {
            Self::withdraw_queued_job(&mut tx, name).await?;
        }
        let changed = sqlx::query("UPDATE schedules SET paused = $1, updated_at = $2 WHERE name = $3")
            .bind(paused)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(D::rows_affected(&changed) > 0)
    }

    async fn schedule_skip(&self, name: &str, job_id: JobId) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'available'").bind(job_id).execute(&mut *tx).await?;
        let removed = D::rows_affected(&removed) > 0;
        if removed {
            sqlx::query("UPDATE schedules SET current_job = NULL WHERE name = $1 AND current_job = $2")
                .bind(name)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn schedule_fire(
        &self,
        name: &str,
        expected: Option<Millis>,
        firing: Millis,
        job: &NewJob,
        now: Millis,
    ) -> Result<Option<Inserted>, StoreError> {
        let mut tx = self.write().await?;
        let fired = sqlx::query(
            "UPDATE schedules SET last_firing = $1 WHERE name = $2 AND NOT paused AND last_firing IS NOT DISTINCT FROM $3",
        )
        .bind(firing)
        .bind(name)
        .bind(expected)
        .execute(&mut *tx)
        .await?;
        if D::rows_affected(&fired) == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let inserted = Self::insert(&mut tx, std::slice::from_ref(job), now).await?[0];
        sqlx::query("UPDATE schedules SET current_job = $1 WHERE name = $2").bind(inserted.id()).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(inserted))
    }

    async fn listen(&self) -> Result<Option<UnboundedReceiver<Notice>>, StoreError> {
        D::listen(&self.pool).await
    }

    async fn watcher_put(&self, id: &str, expires_at: Millis) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO watchers (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at")
            .bind(id)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        D::notify(&mut tx, &Notice::Watched).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn watcher_remove(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM watchers WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn watchers_any(&self, now: Millis) -> Result<bool, StoreError> {
        let fresh: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM watchers WHERE expires_at > $1 LIMIT 1) w")
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        Ok(fresh > 0)
    }

    async fn event_publish(&self, origin: &str, batch: &str, now: Millis) -> Result<(), StoreError> {
        D::event_publish(&self.pool, origin, batch, now).await
    }

    async fn event_listen(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>, StoreError> {
        D::event_listen(&self.pool).await
    }

    async fn event_cursor(&self) -> Result<i64, StoreError> {
        D::event_cursor(&self.pool).await
    }

    async fn event_read(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        D::event_read(&self.pool, after, limit).await
    }

    async fn event_prune(&self, before: Millis, now: Millis) -> Result<u64, StoreError> {
        let watchers = sqlx::query("DELETE FROM watchers WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
        Ok(D::rows_affected(&watchers) + D::event_prune(&self.pool, before).await?)
    }

    async fn job_counts(&self, now: Millis) -> Result<Vec<(String, String, i64)>, StoreError> {
        D::job_counts(&self.pool, now).await
    }
}
}
