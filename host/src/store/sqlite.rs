//! The SQLite store: embedded, one file, WAL mode, a busy timeout, and every
//! writing transaction opened with `BEGIN IMMEDIATE` so concurrent writers
//! queue on the lock instead of failing on a read-to-write upgrade.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, Transaction};

use super::rows::*;
use super::*;
use crate::runtime::Progress;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// elihu's store on an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`: `sqlite://PATH`,
    /// `sqlite::memory:` or a plain file path. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(|_| StoreError::BadUrl(url.to_string()))?
        } else if url.contains("://") {
            return Err(StoreError::BadUrl(url.to_string()));
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:");
        if !in_memory {
            // Create the file and switch it to WAL on one connection first:
            // pooled connections racing to change the journal mode of a new
            // file fail with "database is locked", busy timeout or not.
            let first = SqliteConnection::connect_with(&options).await?;
            first.close().await?;
        }
        let pool = SqlitePoolOptions::new()
            // An in-memory database exists per connection: keep exactly one.
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    /// Opens a write transaction: `BEGIN IMMEDIATE` takes the write lock at
    /// once, so concurrent writers queue instead of failing on an upgrade.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        begin_detached(&self.pool, "BEGIN IMMEDIATE").await
    }
}

/// Opens a run for each freshly claimed job, with the component and config of
/// its template as they are now, in a fixed number of statements whatever
/// the batch size.
async fn open_runs(
    tx: &mut Transaction<'static, Sqlite>,
    node_id: &str,
    jobs: Vec<Job>,
    now: Millis,
    expires_at: Millis,
) -> Result<Vec<Claimed>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&jobs.iter().map(|j| j.id).collect::<Vec<_>>()).expect("ids serialise");
    let opened = sqlx::query(
        "INSERT INTO runs (job_id, template, attempt, max_attempts, node_id, digest, status, started_at, expires_at, unique_key)
         SELECT j.id, j.template, j.attempt, j.max_attempts, ?1, t.digest, 'running', ?2, ?3, j.unique_key
         FROM json_each(?4) AS e JOIN jobs AS j ON j.id = e.value JOIN templates AS t ON t.name = j.template
         RETURNING id, job_id, digest",
    )
    .bind(node_id)
    .bind(now)
    .bind(expires_at)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut runs: std::collections::HashMap<i64, (i64, String)> = std::collections::HashMap::with_capacity(opened.len());
    for row in &opened {
        runs.insert(row.try_get("job_id")?, (row.try_get("id")?, row.try_get("digest")?));
    }
    let pairs = serde_json::to_string(&runs.iter().map(|(job, (run, _))| [*job, *run]).collect::<Vec<_>>()).expect("ids serialise");
    sqlx::query("UPDATE jobs SET current_run = e.value ->> 1 FROM json_each(?) AS e WHERE jobs.id = e.value ->> 0")
        .bind(pairs)
        .execute(&mut **tx)
        .await?;
    let mut configs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut claimed = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        let Some((run_id, digest)) = runs.remove(&job.id) else {
            // Its template was deleted: the job cannot run; drop it.
            sqlx::query("DELETE FROM jobs WHERE id = ?").bind(job.id).execute(&mut **tx).await?;
            tracing::warn!(job = job.id, template = %job.template, "dropping a job whose template was deleted");
            continue;
        };
        if !configs.contains_key(&job.template) {
            let row = sqlx::query("SELECT config FROM templates WHERE name = ?").bind(&job.template).fetch_one(&mut **tx).await?;
            let config = serde_json::from_str(row.try_get::<&str, _>("config")?).map_err(corrupt("a template config"))?;
            configs.insert(job.template.clone(), config);
        }
        job.current_run = Some(run_id);
        claimed.push(Claimed { run_id, digest: digest_of(digest)?, config: configs[&job.template].clone(), job });
    }
    Ok(claimed)
}

/// Inserts one job, or finds the queued or running job holding its unique key.
async fn insert_job(tx: &mut Transaction<'static, Sqlite>, job: &NewJob, now: Millis) -> Result<Inserted, StoreError> {
    let row = sqlx::query(
        "INSERT INTO jobs (template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes, unique_key, created_at, discard_after)
         VALUES (?, ?, ?, ?, ?, 'available', ?, ?, ?, ?, ?, ?)
         ON CONFLICT (unique_key) DO NOTHING RETURNING id",
    )
    .bind(&job.template)
    .bind(&job.context)
    .bind(&job.queue)
    .bind(job.priority)
    .bind(job.run_at)
    .bind(job.max_attempts as i64)
    .bind(job.timeout_ms as i64)
    .bind(job.memory_bytes as i64)
    .bind(&job.unique_key)
    .bind(now)
    .bind(job.discard_after)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(row) => Inserted::New(row.try_get("id")?),
        None => {
            let row = sqlx::query("SELECT id FROM jobs WHERE unique_key = ?").bind(&job.unique_key).fetch_one(&mut **tx).await?;
            Inserted::Existing(row.try_get("id")?)
        }
    })
}

/// Inserts jobs without unique keys in one statement whatever their number.
/// SQLite numbers them in the order of the batch.
async fn insert_jobs_bulk(tx: &mut Transaction<'static, Sqlite>, jobs: &[NewJob], now: Millis) -> Result<Vec<i64>, StoreError> {
    let batch: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            serde_json::json!([j.template, j.context, j.queue, j.priority, j.run_at, j.max_attempts, j.timeout_ms, j.memory_bytes, j.discard_after])
        })
        .collect();
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes, created_at, discard_after)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, 'available', value ->> 5, value ->> 6, value ->> 7,
                ?2, value ->> 8
         FROM json_each(?1) ORDER BY key
         RETURNING id",
    )
    .bind(serde_json::Value::Array(batch).to_string())
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// Removes a schedule's queued (not yet running) job and forgets it.
async fn withdraw_queued_job(tx: &mut Transaction<'static, Sqlite>, schedule: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE state = 'available' AND id = (SELECT current_job FROM schedules WHERE name = ?)")
        .bind(schedule)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE schedules SET current_job = NULL WHERE name = ?").bind(schedule).execute(&mut **tx).await?;
    Ok(())
}

/// Moves a retried job back to the queue once its run is closed.
async fn move_on(tx: &mut Transaction<'static, Sqlite>, end: &RunEnd, next: JobNext) -> Result<(), StoreError> {
    if let JobNext::Retry { at, refund } = next {
        sqlx::query(
            "UPDATE jobs SET state = 'available', run_at = ?, node_id = NULL, current_run = NULL,
                 attempt = attempt - ?, checkpoint = COALESCE(?, checkpoint)
             WHERE id = ? AND current_run = ?",
        )
        .bind(at)
        .bind(refund as i64)
        .bind(&end.checkpoint)
        .bind(end.job_id)
        .bind(end.run_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn component_put(&self, digest: &Digest, bytes: &[u8], now: Millis) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO components (digest, bytes, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn component_get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT bytes FROM components WHERE digest = ?").bind(digest.as_str()).fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(row) => Some(row.try_get("bytes")?),
            None => None,
        })
    }

    async fn template_put(
        &self,
        name: &str,
        digest: &Digest,
        schema: &serde_json::Value,
        defaults: &TemplateDefaults,
        config: &BTreeMap<String, String>,
        now: Millis,
    ) -> Result<Template, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO templates (name, digest, schema, queue, priority, max_attempts, timeout_ms, memory_bytes,
                 backoff_base_ms, backoff_max_ms, config, version, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?12)
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, schema = excluded.schema,
                 queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
                 timeout_ms = excluded.timeout_ms, memory_bytes = excluded.memory_bytes,
                 backoff_base_ms = excluded.backoff_base_ms, backoff_max_ms = excluded.backoff_max_ms,
                 config = excluded.config, version = templates.version + 1, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(digest.as_str())
        .bind(schema.to_string())
        .bind(&defaults.queue)
        .bind(defaults.priority)
        .bind(defaults.max_attempts as i64)
        .bind(defaults.timeout_ms as i64)
        .bind(defaults.memory_bytes as i64)
        .bind(defaults.backoff_base_ms as i64)
        .bind(defaults.backoff_max_ms as i64)
        .bind(serde_json::to_string(config).expect("a map of strings serialises"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM templates WHERE name = ?").bind(name).fetch_one(&mut *tx).await?;
        let template = template_from(&row)?;
        tx.commit().await?;
        Ok(template)
    }

    async fn template_get(&self, name: &str) -> Result<Option<Template>, StoreError> {
        let row = sqlx::query("SELECT * FROM templates WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(template_from).transpose()
    }

    async fn template_list(&self) -> Result<Vec<Template>, StoreError> {
        let rows = sqlx::query("SELECT * FROM templates ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(template_from).collect()
    }

    async fn template_delete(&self, name: &str, force: bool) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let jobs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE template = ?").bind(name).fetch_one(&mut *tx).await?.try_get("n")?;
        if jobs > 0 && !force {
            return Err(StoreError::TemplateInUse { name: name.to_string(), jobs });
        }
        sqlx::query("DELETE FROM jobs WHERE template = ? AND state = 'available'").bind(name).execute(&mut *tx).await?;
        sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE template = ? AND state = 'running'").bind(name).execute(&mut *tx).await?;
        let deleted = sqlx::query("DELETE FROM templates WHERE name = ?").bind(name).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn job_insert(&self, jobs: &[NewJob], now: Millis) -> Result<Vec<Inserted>, StoreError> {
        let mut tx = self.write().await?;
        let mut out = Vec::with_capacity(jobs.len());
        for stretch in insert_stretches(jobs) {
            if stretch[0].unique_key.is_none() {
                out.extend(insert_jobs_bulk(&mut tx, stretch, now).await?.into_iter().map(Inserted::New));
            } else {
                out.push(insert_job(&mut tx, &stretch[0], now).await?);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn job_get(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE (?1 IS NULL OR template = ?1) AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR state = ?3)
             ORDER BY state DESC, priority, run_at, id LIMIT ?4",
        )
        .bind(&filter.template)
        .bind(&filter.queue)
        .bind(filter.state.map(|s| if s == JobState::Running { "running" } else { "available" }))
        .bind(filter.limit.unwrap_or(100))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    async fn job_claim(
        &self,
        node_id: &str,
        queue: &str,
        limit: u32,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, node_id = ?1
             WHERE id IN (SELECT id FROM jobs WHERE queue = ?2 AND state = 'available' AND run_at <= ?3
                          AND (discard_after IS NULL OR discard_after >= ?3)
                          ORDER BY priority, run_at, id LIMIT ?4)
             RETURNING *",
        )
        .bind(node_id)
        .bind(queue)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs: Vec<Job> = rows.iter().map(job_from).collect::<Result<_, _>>()?;
        jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
        let claimed = open_runs(&mut tx, node_id, jobs, now, expires_at).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn job_claim_id(&self, node_id: &str, id: i64, now: Millis, expires_at: Millis) -> Result<Option<Claimed>, StoreError> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, node_id = ? WHERE id = ? AND state = 'available' RETURNING *",
        )
        .bind(node_id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let jobs: Vec<Job> = rows.iter().map(job_from).collect::<Result<_, _>>()?;
        let mut claimed = open_runs(&mut tx, node_id, jobs, now, expires_at).await?;
        tx.commit().await?;
        Ok(claimed.pop())
    }

    async fn job_cancel(&self, id: i64) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.write().await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE id = ? AND state = 'available'").bind(id).execute(&mut *tx).await?.rows_affected();
        let outcome = if removed > 0 {
            CancelOutcome::Removed
        } else {
            let flagged = sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if flagged > 0 { CancelOutcome::Requested } else { CancelOutcome::NotFound }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn job_cancel_requested(&self, node_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT id FROM jobs WHERE node_id = ? AND state = 'running' AND cancel_requested = 1")
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get("id").map_err(StoreError::from)).collect()
    }

    async fn run_finish_many(&self, ends: &[(RunEnd, JobNext)]) -> Result<Vec<bool>, StoreError> {
        // The whole batch in three statements: close the runs still running
        // on their node, delete the finished jobs, then move the retried ones.
        // (`+runs.status` keeps the planner from driving the update from the
        // running-runs index, which would re-read the JSON once per run.)
        let rows: Vec<serde_json::Value> = ends
            .iter()
            .map(|(end, _)| {
                serde_json::json!({
                    "run_id": end.run_id,
                    "job_id": end.job_id,
                    "node_id": end.node_id,
                    "result": result_str(end.result),
                    "reason": end.reason.map(|r| r.as_str()),
                    "message": end.message,
                    "output": end.output,
                    "logs": serde_json::to_string(&end.logs).expect("log lines serialise"),
                    "progress_percent": end.progress.as_ref().map(|p| p.percent),
                    "progress_message": end.progress.as_ref().map(|p| p.message.clone()),
                    "checkpoint": end.checkpoint,
                    "finished_at": end.finished_at,
                })
            })
            .collect();
        let mut tx = self.write().await?;
        let closed = sqlx::query(
            "UPDATE runs SET status = 'done', result = e.value ->> 'result', reason = e.value ->> 'reason',
                 message = e.value ->> 'message', output = e.value ->> 'output', logs = e.value ->> 'logs',
                 progress_percent = e.value ->> 'progress_percent', progress_message = e.value ->> 'progress_message',
                 checkpoint = COALESCE(e.value ->> 'checkpoint', runs.checkpoint), finished_at = e.value ->> 'finished_at'
             FROM json_each(?) AS e
             WHERE runs.id = e.value ->> 'run_id' AND runs.job_id = e.value ->> 'job_id'
               AND runs.node_id = e.value ->> 'node_id' AND +runs.status = 'running'
             RETURNING runs.id",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *tx)
        .await?;
        let closed: Vec<i64> = closed.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
        let (applied, done) = sort_closed(ends, &closed);
        if !done.is_empty() {
            // A run id belongs to one job, so matching ids and current runs
            // as two sets is matching the pairs.
            let ids = serde_json::to_string(&done.iter().map(|d| d.0).collect::<Vec<_>>()).expect("ids serialise");
            let runs = serde_json::to_string(&done.iter().map(|d| d.1).collect::<Vec<_>>()).expect("ids serialise");
            sqlx::query(
                "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1)) AND current_run IN (SELECT value FROM json_each(?2))",
            )
            .bind(ids)
            .bind(runs)
            .execute(&mut *tx)
            .await?;
        }
        for ((end, next), ok) in ends.iter().zip(&applied) {
            if let (JobNext::Retry { .. }, true) = (next, ok) {
                move_on(&mut tx, end, *next).await?;
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn run_checkpoint(&self, run_id: i64, node_id: &str, checkpoint: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let ok = sqlx::query("UPDATE runs SET checkpoint = ? WHERE id = ? AND node_id = ? AND status = 'running'")
            .bind(checkpoint)
            .bind(run_id)
            .bind(node_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if ok {
            sqlx::query("UPDATE jobs SET checkpoint = ? WHERE current_run = ?").bind(checkpoint).bind(run_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ok)
    }

    async fn run_progress(&self, run_id: i64, progress: &Progress) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET progress_percent = ?, progress_message = ? WHERE id = ? AND status = 'running'")
            .bind(progress.percent as i64)
            .bind(&progress.message)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn run_get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(run_from).transpose()
    }

    async fn run_list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE (?1 IS NULL OR job_id = ?1) AND (?2 IS NULL OR template = ?2) ORDER BY id DESC LIMIT ?3",
        )
        .bind(filter.job_id)
        .bind(&filter.template)
        .bind(filter.limit.unwrap_or(100))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from).collect()
    }

    async fn run_expired(&self, now: Millis) -> Result<Vec<Run>, StoreError> {
        // A running run is its running job's current run.
        let rows = sqlx::query(
            "SELECT r.* FROM jobs j JOIN runs r ON r.id = j.current_run LEFT JOIN nodes n ON n.id = j.node_id
             WHERE j.state = 'running' AND r.status = 'running' AND r.expires_at < ?1
               AND (n.id IS NULL OR n.expires_at < ?1)
             ORDER BY r.id",
        )
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from).collect()
    }

    async fn template_purge(&self, name: &str) -> Result<(u64, u64), StoreError> {
        let mut tx = self.write().await?;
        let jobs = sqlx::query("DELETE FROM jobs WHERE template = ?").bind(name).execute(&mut *tx).await?.rows_affected();
        let runs = sqlx::query("DELETE FROM runs WHERE template = ?").bind(name).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok((jobs, runs))
    }

    async fn run_prune(&self, before: Millis) -> Result<u64, StoreError> {
        // A run ends after it starts: `runs_started` finds the candidates.
        let done = sqlx::query("DELETE FROM runs WHERE started_at < ?1 AND status = 'done' AND finished_at < ?1").bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn node_heartbeat(&self, node: &NodeInfo, expires_at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (id, hostname, pid, queues, started_at, heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, queues = excluded.queues,
                 expires_at = excluded.expires_at",
        )
        .bind(&node.id)
        .bind(&node.hostname)
        .bind(node.pid)
        .bind(&node.queues)
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn node_remove(&self, node_id: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM nodes WHERE id = ?").bind(node_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM leader WHERE node_id = ?").bind(node_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn node_list(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY started_at").fetch_all(&self.pool).await?;
        rows.iter().map(node_from).collect()
    }

    async fn leader_acquire(&self, node_id: &str, now: Millis, expires_at: Millis) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO leader (name, node_id, expires_at) VALUES ('leader', ?1, ?3)
             ON CONFLICT (name) DO UPDATE SET node_id = excluded.node_id, expires_at = excluded.expires_at
             WHERE leader.node_id = excluded.node_id OR leader.expires_at < ?2
             RETURNING node_id",
        )
        .bind(node_id)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.is_some())
    }

    async fn schedule_put(&self, schedule: &StoredSchedule, now: Millis) -> Result<StoredSchedule, StoreError> {
        let mut tx = self.write().await?;
        withdraw_queued_job(&mut tx, &schedule.name).await?;
        sqlx::query(
            "INSERT INTO schedules (name, template, context, cron, interval_ms, timezone, catch_up, paused, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
             ON CONFLICT (name) DO UPDATE SET template = excluded.template, context = excluded.context,
                 cron = excluded.cron, interval_ms = excluded.interval_ms, timezone = excluded.timezone,
                 catch_up = excluded.catch_up, current_job = NULL, updated_at = excluded.updated_at",
        )
        .bind(&schedule.name)
        .bind(&schedule.template)
        .bind(&schedule.context)
        .bind(&schedule.cron)
        .bind(schedule.interval_ms)
        .bind(&schedule.timezone)
        .bind(&schedule.catch_up)
        .bind(schedule.paused)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM schedules WHERE name = ?").bind(&schedule.name).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        schedule_from(&row)
    }

    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>, StoreError> {
        let row = sqlx::query("SELECT * FROM schedules WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(schedule_from).transpose()
    }

    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = sqlx::query("SELECT * FROM schedules ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(schedule_from).collect()
    }

    async fn schedule_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        withdraw_queued_job(&mut tx, name).await?;
        let deleted = sqlx::query("DELETE FROM schedules WHERE name = ?").bind(name).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn schedule_pause(&self, name: &str, paused: bool, now: Millis) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        if paused {
            withdraw_queued_job(&mut tx, name).await?;
        }
        let changed = sqlx::query("UPDATE schedules SET paused = ?, updated_at = ? WHERE name = ?")
            .bind(paused)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn schedule_skip(&self, name: &str, job_id: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE id = ? AND state = 'available'")
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed > 0 {
            sqlx::query("UPDATE schedules SET current_job = NULL WHERE name = ? AND current_job = ?")
                .bind(name)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed > 0)
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
        let claimed = sqlx::query("UPDATE schedules SET last_firing = ? WHERE name = ? AND NOT paused AND last_firing IS ?")
            .bind(firing)
            .bind(name)
            .bind(expected)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let inserted = insert_job(&mut tx, job, now).await?;
        sqlx::query("UPDATE schedules SET current_job = ? WHERE name = ?").bind(inserted.id()).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(inserted))
    }

    async fn stats(&self) -> Result<Vec<TemplateStats>, StoreError> {
        let mut stats: BTreeMap<String, TemplateStats> = BTreeMap::new();
        let blank = |template: &str| TemplateStats {
            template: template.to_string(),
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            queued: 0,
            running: 0,
            duration_p50_ms: None,
            duration_p95_ms: None,
        };
        for row in sqlx::query("SELECT name FROM templates").fetch_all(&self.pool).await? {
            let name: String = row.try_get("name")?;
            stats.insert(name.clone(), blank(&name));
        }
        let rows = sqlx::query(
            "SELECT template, SUM(result = 'succeeded') AS s, SUM(result = 'failed') AS f, SUM(result = 'cancelled') AS c
             FROM runs WHERE status = 'done' GROUP BY template",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let template: String = row.try_get("template")?;
            let entry = stats.entry(template.clone()).or_insert_with(|| blank(&template));
            entry.succeeded = row.try_get("s")?;
            entry.failed = row.try_get("f")?;
            entry.cancelled = row.try_get("c")?;
        }
        let rows = sqlx::query(
            "SELECT template, SUM(state = 'available') AS q, SUM(state = 'running') AS r FROM jobs GROUP BY template",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let template: String = row.try_get("template")?;
            let entry = stats.entry(template.clone()).or_insert_with(|| blank(&template));
            entry.queued = row.try_get("q")?;
            entry.running = row.try_get("r")?;
        }
        for entry in stats.values_mut() {
            // The latest 10,000 finished runs of the template.
            let rows = sqlx::query(
                "SELECT finished_at - started_at AS d FROM runs WHERE template = ? AND status = 'done' ORDER BY id DESC LIMIT 10000",
            )
            .bind(&entry.template)
            .fetch_all(&self.pool)
            .await?;
            let mut durations: Vec<i64> = rows.iter().map(|r| r.try_get("d")).collect::<Result<_, _>>()?;
            durations.sort_unstable();
            entry.duration_p50_ms = percentile(&durations, 50.0);
            entry.duration_p95_ms = percentile(&durations, 95.0);
        }
        Ok(stats.into_values().collect())
    }
}
