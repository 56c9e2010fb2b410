//! The PostgreSQL store, for many nodes on one database: claims take a batch
//! in one statement with `FOR UPDATE SKIP LOCKED` (two nodes never claim the
//! same job), enqueues and cancels `NOTIFY` listening nodes, and the leader
//! lease is a row with an expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::rows::*;
use super::*;
use crate::runtime::Progress;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The channel enqueues notify: the payload is the queue.
const JOBS_CHANNEL: &str = "elihu_jobs";
/// The channel cancels notify: the payload is the job id.
const CANCEL_CHANNEL: &str = "elihu_cancel";

/// elihu's store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(PostgresStore { pool })
    }

    /// Opens a transaction (see `begin_detached`).
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        begin_detached(&self.pool, "BEGIN").await
    }
}

/// A claimed job row (with its template's digest and config) as a `Claimed`.
fn claimed_from(row: &PgRow) -> Result<Claimed, StoreError> {
    let job = job_from(row)?;
    let config: &str = row.try_get("template_config")?;
    Ok(Claimed {
        run_id: job.current_run.ok_or(StoreError::Corrupt { what: "a claimed job", why: "no current run".into() })?,
        digest: digest_of(row.try_get("template_digest")?)?,
        config: serde_json::from_str(config).map_err(corrupt("a template config"))?,
        job,
    })
}

/// Claims the jobs `picked` selects (a query over `jobs j` with `$1` node,
/// `$3` now, `$5` expiry) and opens their runs, all in one statement. The
/// update finds the picked jobs through an array so that PostgreSQL looks
/// them up by primary key: joined to the CTE, it hashed the whole jobs table
/// on every claim, a cost that grew with the backlog.
fn claim_sql(picked: &str) -> String {
    format!(
        "WITH picked AS ({picked} FOR UPDATE OF j SKIP LOCKED),
         claimed AS (
             UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, node_id = $1,
                 current_run = nextval('runs_id_seq')
             WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
             RETURNING j.*),
         opened AS (
             INSERT INTO runs (id, job_id, template, attempt, max_attempts, node_id, digest, status, started_at, expires_at, unique_key)
             SELECT c.current_run, c.id, c.template, c.attempt, c.max_attempts, $1, t.digest, 'running', $3, $5, c.unique_key
             FROM claimed c JOIN templates t ON t.name = c.template)
         SELECT c.*, t.digest AS template_digest, t.config AS template_config
         FROM claimed c JOIN templates t ON t.name = c.template
         ORDER BY c.priority, c.run_at, c.id"
    )
}

/// Inserts one job, or finds the queued or running job holding its unique key.
async fn insert_job(tx: &mut Transaction<'static, Postgres>, job: &NewJob, now: Millis) -> Result<Inserted, StoreError> {
    let row = sqlx::query(
        "INSERT INTO jobs (template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes, unique_key, created_at, discard_after)
         VALUES ($1, $2, $3, $4, $5, 'available', $6, $7, $8, $9, $10, $11)
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id",
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
            let row = sqlx::query("SELECT id FROM jobs WHERE unique_key = $1").bind(&job.unique_key).fetch_one(&mut **tx).await?;
            Inserted::Existing(row.try_get("id")?)
        }
    })
}

/// Inserts jobs without unique keys in two statements whatever their number.
/// Their ids are drawn from the sequence first, so they follow the batch.
async fn insert_jobs_bulk(tx: &mut Transaction<'static, Postgres>, jobs: &[NewJob], now: Millis) -> Result<Vec<i64>, StoreError> {
    let mut ids: Vec<i64> = sqlx::query_scalar("SELECT nextval('jobs_id_seq') FROM generate_series(1, $1)")
        .bind(jobs.len() as i64)
        .fetch_all(&mut **tx)
        .await?;
    ids.sort_unstable();
    sqlx::query(
        "INSERT INTO jobs (id, template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes, created_at, discard_after)
         SELECT id, template, context, queue, priority, run_at, 'available', max_attempts, timeout_ms, memory_bytes, $10, discard_after
         FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::INT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[],
                     $9::BIGINT[], $11::BIGINT[])
             AS t(id, template, context, queue, priority, run_at, max_attempts, timeout_ms, memory_bytes, discard_after)",
    )
    .bind(&ids)
    .bind(jobs.iter().map(|j| j.template.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.context.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.max_attempts as i64).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.timeout_ms as i64).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.memory_bytes as i64).collect::<Vec<_>>())
    .bind(now)
    .bind(jobs.iter().map(|j| j.discard_after).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(ids)
}

/// Removes a schedule's queued (not yet running) job and forgets it.
async fn withdraw_queued_job(tx: &mut Transaction<'static, Postgres>, schedule: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE state = 'available' AND id = (SELECT current_job FROM schedules WHERE name = $1)")
        .bind(schedule)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE schedules SET current_job = NULL WHERE name = $1").bind(schedule).execute(&mut **tx).await?;
    Ok(())
}

/// Moves a retried job back to the queue once its run is closed, and
/// wakes listening nodes when it is due at once.
async fn move_on(tx: &mut Transaction<'static, Postgres>, end: &RunEnd, next: JobNext) -> Result<(), StoreError> {
    if let JobNext::Retry { at, refund } = next {
        sqlx::query(
            "UPDATE jobs SET state = 'available', run_at = $1, node_id = NULL, current_run = NULL,
                 attempt = attempt - $2, checkpoint = COALESCE($3, checkpoint)
             WHERE id = $4 AND current_run = $5",
        )
        .bind(at)
        .bind(refund as i64)
        .bind(&end.checkpoint)
        .bind(end.job_id)
        .bind(end.run_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, queue) FROM jobs WHERE id = $2 AND run_at <= $3")
            .bind(JOBS_CHANNEL)
            .bind(end.job_id)
            .bind(end.finished_at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
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
        let row = sqlx::query("SELECT bytes FROM components WHERE digest = $1").bind(digest.as_str()).fetch_optional(&self.pool).await?;
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
        let row = sqlx::query(
            "INSERT INTO templates (name, digest, schema, queue, priority, max_attempts, timeout_ms, memory_bytes,
                 backoff_base_ms, backoff_max_ms, config, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12)
             ON CONFLICT (name) DO UPDATE SET digest = EXCLUDED.digest, schema = EXCLUDED.schema,
                 queue = EXCLUDED.queue, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
                 timeout_ms = EXCLUDED.timeout_ms, memory_bytes = EXCLUDED.memory_bytes,
                 backoff_base_ms = EXCLUDED.backoff_base_ms, backoff_max_ms = EXCLUDED.backoff_max_ms,
                 config = EXCLUDED.config, version = templates.version + 1, updated_at = EXCLUDED.updated_at
             RETURNING *",
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
        .fetch_one(&self.pool)
        .await?;
        template_from(&row)
    }

    async fn template_get(&self, name: &str) -> Result<Option<Template>, StoreError> {
        let row = sqlx::query("SELECT * FROM templates WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(template_from).transpose()
    }

    async fn template_list(&self) -> Result<Vec<Template>, StoreError> {
        let rows = sqlx::query("SELECT * FROM templates ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(template_from).collect()
    }

    async fn template_delete(&self, name: &str, force: bool) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Lock the template row so no job is claimed against it meanwhile.
        sqlx::query("SELECT name FROM templates WHERE name = $1 FOR UPDATE").bind(name).execute(&mut *tx).await?;
        let jobs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE template = $1").bind(name).fetch_one(&mut *tx).await?.try_get("n")?;
        if jobs > 0 && !force {
            tx.rollback().await?;
            return Err(StoreError::TemplateInUse { name: name.to_string(), jobs });
        }
        sqlx::query("DELETE FROM jobs WHERE template = $1 AND state = 'available'").bind(name).execute(&mut *tx).await?;
        let flagged = sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE template = $1 AND state = 'running' RETURNING id")
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for row in flagged {
            let id: i64 = row.try_get("id")?;
            sqlx::query("SELECT pg_notify($1, $2)").bind(CANCEL_CHANNEL).bind(id.to_string()).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM templates WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn job_insert(&self, jobs: &[NewJob], now: Millis) -> Result<Vec<Inserted>, StoreError> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(jobs.len());
        let mut due_queues = BTreeSet::new();
        for stretch in insert_stretches(jobs) {
            let inserted = if stretch[0].unique_key.is_none() {
                insert_jobs_bulk(&mut tx, stretch, now).await?.into_iter().map(Inserted::New).collect()
            } else {
                vec![insert_job(&mut tx, &stretch[0], now).await?]
            };
            for (job, inserted) in stretch.iter().zip(inserted) {
                if matches!(inserted, Inserted::New(_)) && job.run_at <= now {
                    due_queues.insert(job.queue.as_str());
                }
                out.push(inserted);
            }
        }
        // Delivered at commit, to every listening node.
        for queue in due_queues {
            sqlx::query("SELECT pg_notify($1, $2)").bind(JOBS_CHANNEL).bind(queue).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn job_get(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn job_list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE ($1::TEXT IS NULL OR template = $1) AND ($2::TEXT IS NULL OR queue = $2)
                 AND ($3::TEXT IS NULL OR state = $3)
             ORDER BY state DESC, priority, run_at, id LIMIT $4",
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
        let sql = claim_sql(
            "SELECT j.id FROM jobs j
             WHERE j.queue = $2 AND j.state = 'available' AND j.run_at <= $3
               AND (j.discard_after IS NULL OR j.discard_after >= $3)
               AND EXISTS (SELECT 1 FROM templates t WHERE t.name = j.template)
             ORDER BY j.priority, j.run_at, j.id LIMIT $4",
        );
        let rows = sqlx::query(&sql)
            .bind(node_id)
            .bind(queue)
            .bind(now)
            .bind(limit as i64)
            .bind(expires_at)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(claimed_from).collect()
    }

    async fn job_claim_id(&self, node_id: &str, id: i64, now: Millis, expires_at: Millis) -> Result<Option<Claimed>, StoreError> {
        let sql = claim_sql(
            "SELECT j.id FROM jobs j WHERE j.id = $2 AND j.state = 'available' LIMIT $4",
        );
        let row = sqlx::query(&sql)
            .bind(node_id)
            .bind(id)
            .bind(now)
            .bind(1i64)
            .bind(expires_at)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(claimed_from).transpose()
    }

    async fn job_cancel(&self, id: i64) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'available'").bind(id).execute(&mut *tx).await?.rows_affected();
        let outcome = if removed > 0 {
            CancelOutcome::Removed
        } else {
            let flagged = sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if flagged > 0 {
                sqlx::query("SELECT pg_notify($1, $2)").bind(CANCEL_CHANNEL).bind(id.to_string()).execute(&mut *tx).await?;
                CancelOutcome::Requested
            } else {
                CancelOutcome::NotFound
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn job_cancel_requested(&self, node_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT id FROM jobs WHERE node_id = $1 AND state = 'running' AND cancel_requested")
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get("id").map_err(StoreError::from)).collect()
    }

    async fn run_finish_many(&self, ends: &[(RunEnd, JobNext)]) -> Result<Vec<bool>, StoreError> {
        // The whole batch in three statements: close the runs still running
        // on their node, delete the finished jobs, then move the retried ones.
        let col = |f: &dyn Fn(&RunEnd) -> Option<String>| ends.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
        let mut tx = self.begin().await?;
        let closed = sqlx::query(
            "UPDATE runs r SET status = 'done', result = e.result, reason = e.reason, message = e.message,
                 output = e.output, logs = e.logs, progress_percent = e.progress_percent,
                 progress_message = e.progress_message, checkpoint = COALESCE(e.checkpoint, r.checkpoint),
                 finished_at = e.finished_at
             FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
                         $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[])
                 AS e(run_id, job_id, node_id, result, reason, message, output, logs, progress_percent,
                      progress_message, checkpoint, finished_at)
             WHERE r.id = e.run_id AND r.job_id = e.job_id AND r.node_id = e.node_id AND r.status = 'running'
             RETURNING r.id",
        )
        .bind(ends.iter().map(|(e, _)| e.run_id).collect::<Vec<_>>())
        .bind(ends.iter().map(|(e, _)| e.job_id).collect::<Vec<_>>())
        .bind(ends.iter().map(|(e, _)| e.node_id.clone()).collect::<Vec<_>>())
        .bind(ends.iter().map(|(e, _)| result_str(e.result).to_string()).collect::<Vec<_>>())
        .bind(col(&|e| e.reason.map(|r| r.as_str().to_string())))
        .bind(col(&|e| e.message.clone()))
        .bind(col(&|e| e.output.clone()))
        .bind(ends.iter().map(|(e, _)| serde_json::to_string(&e.logs).expect("log lines serialise")).collect::<Vec<_>>())
        .bind(ends.iter().map(|(e, _)| e.progress.as_ref().map(|p| p.percent as i64)).collect::<Vec<_>>())
        .bind(col(&|e| e.progress.as_ref().map(|p| p.message.clone())))
        .bind(col(&|e| e.checkpoint.clone()))
        .bind(ends.iter().map(|(e, _)| e.finished_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let closed: Vec<i64> = closed.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
        let (applied, done) = sort_closed(ends, &closed);
        if !done.is_empty() {
            sqlx::query(
                "DELETE FROM jobs j USING unnest($1::BIGINT[], $2::BIGINT[]) AS d(id, run)
                 WHERE j.id = d.id AND j.current_run = d.run",
            )
                .bind(done.iter().map(|d| d.0).collect::<Vec<_>>())
                .bind(done.iter().map(|d| d.1).collect::<Vec<_>>())
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
        let mut tx = self.begin().await?;
        let ok = sqlx::query("UPDATE runs SET checkpoint = $1 WHERE id = $2 AND node_id = $3 AND status = 'running'")
            .bind(checkpoint)
            .bind(run_id)
            .bind(node_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if ok {
            sqlx::query("UPDATE jobs SET checkpoint = $1 WHERE current_run = $2").bind(checkpoint).bind(run_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ok)
    }

    async fn run_progress(&self, run_id: i64, progress: &Progress) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET progress_percent = $1, progress_message = $2 WHERE id = $3 AND status = 'running'")
            .bind(progress.percent as i64)
            .bind(&progress.message)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn run_get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(run_from).transpose()
    }

    async fn run_list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE ($1::BIGINT IS NULL OR job_id = $1) AND ($2::TEXT IS NULL OR template = $2)
             ORDER BY id DESC LIMIT $3",
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
             WHERE j.state = 'running' AND r.status = 'running' AND r.expires_at < $1
               AND (n.id IS NULL OR n.expires_at < $1)
             ORDER BY r.id",
        )
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from).collect()
    }

    async fn template_purge(&self, name: &str) -> Result<(u64, u64), StoreError> {
        let mut tx = self.begin().await?;
        let jobs = sqlx::query("DELETE FROM jobs WHERE template = $1").bind(name).execute(&mut *tx).await?.rows_affected();
        let runs = sqlx::query("DELETE FROM runs WHERE template = $1").bind(name).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok((jobs, runs))
    }

    async fn run_prune(&self, before: Millis) -> Result<u64, StoreError> {
        // A run ends after it starts: `runs_started` finds the candidates.
        let done = sqlx::query("DELETE FROM runs WHERE started_at < $1 AND status = 'done' AND finished_at < $1").bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn node_heartbeat(&self, node: &NodeInfo, expires_at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (id, hostname, pid, queues, started_at, heartbeat_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, queues = EXCLUDED.queues,
                 expires_at = EXCLUDED.expires_at",
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
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1").bind(node_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM leader WHERE node_id = $1").bind(node_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn node_list(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY started_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(node_from).collect()
    }

    async fn leader_acquire(&self, node_id: &str, now: Millis, expires_at: Millis) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO leader (name, node_id, expires_at) VALUES ('leader', $1, $3)
             ON CONFLICT (name) DO UPDATE SET node_id = EXCLUDED.node_id, expires_at = EXCLUDED.expires_at
             WHERE leader.node_id = EXCLUDED.node_id OR leader.expires_at < $2
             RETURNING node_id",
        )
        .bind(node_id)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn schedule_put(&self, schedule: &StoredSchedule, now: Millis) -> Result<StoredSchedule, StoreError> {
        let mut tx = self.begin().await?;
        withdraw_queued_job(&mut tx, &schedule.name).await?;
        sqlx::query(
            "INSERT INTO schedules (name, template, context, cron, interval_ms, timezone, catch_up, paused, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (name) DO UPDATE SET template = EXCLUDED.template, context = EXCLUDED.context,
                 cron = EXCLUDED.cron, interval_ms = EXCLUDED.interval_ms, timezone = EXCLUDED.timezone,
                 catch_up = EXCLUDED.catch_up, current_job = NULL, updated_at = EXCLUDED.updated_at",
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
        let row = sqlx::query("SELECT * FROM schedules WHERE name = $1").bind(&schedule.name).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        schedule_from(&row)
    }

    async fn schedule_get(&self, name: &str) -> Result<Option<StoredSchedule>, StoreError> {
        let row = sqlx::query("SELECT * FROM schedules WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(schedule_from).transpose()
    }

    async fn schedule_list(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = sqlx::query("SELECT * FROM schedules ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(schedule_from).collect()
    }

    async fn schedule_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        withdraw_queued_job(&mut tx, name).await?;
        let deleted = sqlx::query("DELETE FROM schedules WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn schedule_pause(&self, name: &str, paused: bool, now: Millis) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if paused {
            withdraw_queued_job(&mut tx, name).await?;
        }
        let changed = sqlx::query("UPDATE schedules SET paused = $1, updated_at = $2 WHERE name = $3")
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
        let mut tx = self.begin().await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'available'")
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed > 0 {
            sqlx::query("UPDATE schedules SET current_job = NULL WHERE name = $1 AND current_job = $2")
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
        let mut tx = self.begin().await?;
        let claimed = sqlx::query("UPDATE schedules SET last_firing = $1 WHERE name = $2 AND NOT paused AND last_firing IS NOT DISTINCT FROM $3")
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
        sqlx::query("UPDATE schedules SET current_job = $1 WHERE name = $2").bind(inserted.id()).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(inserted))
    }

    async fn stats(&self) -> Result<Vec<TemplateStats>, StoreError> {
        let rows = sqlx::query(
            "WITH names AS (SELECT name AS template FROM templates UNION SELECT DISTINCT template FROM runs
                            UNION SELECT DISTINCT template FROM jobs),
             r AS (SELECT template,
                          COUNT(*) FILTER (WHERE result = 'succeeded') AS s,
                          COUNT(*) FILTER (WHERE result = 'failed') AS f,
                          COUNT(*) FILTER (WHERE result = 'cancelled') AS c
                   FROM runs WHERE status = 'done' GROUP BY template),
             j AS (SELECT template, COUNT(*) FILTER (WHERE state = 'available') AS q,
                          COUNT(*) FILTER (WHERE state = 'running') AS rn
                   FROM jobs GROUP BY template),
             d AS (SELECT template,
                          percentile_disc(0.5) WITHIN GROUP (ORDER BY finished_at - started_at) AS p50,
                          percentile_disc(0.95) WITHIN GROUP (ORDER BY finished_at - started_at) AS p95
                   FROM (SELECT template, started_at, finished_at,
                                row_number() OVER (PARTITION BY template ORDER BY id DESC) AS k
                         FROM runs WHERE status = 'done') latest
                   WHERE k <= 10000 GROUP BY template)
             SELECT names.template, COALESCE(r.s, 0) AS s, COALESCE(r.f, 0) AS f, COALESCE(r.c, 0) AS c,
                    COALESCE(j.q, 0) AS q, COALESCE(j.rn, 0) AS rn, d.p50, d.p95
             FROM names LEFT JOIN r USING (template) LEFT JOIN j USING (template) LEFT JOIN d USING (template)
             ORDER BY names.template",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TemplateStats {
                    template: row.try_get("template")?,
                    succeeded: row.try_get("s")?,
                    failed: row.try_get("f")?,
                    cancelled: row.try_get("c")?,
                    queued: row.try_get("q")?,
                    running: row.try_get("rn")?,
                    duration_p50_ms: row.try_get("p50")?,
                    duration_p95_ms: row.try_get("p95")?,
                })
            })
            .collect()
    }

    async fn listen(&self) -> Result<Option<UnboundedReceiver<Notice>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([JOBS_CHANNEL, CANCEL_CHANNEL]).await?;
        let (tx, rx) = unbounded_channel();
        tokio::spawn(async move {
            loop {
                let notice = match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == JOBS_CHANNEL => Notice::JobsAvailable { queue: n.payload().to_string() },
                    Ok(Some(n)) => match n.payload().parse() {
                        Ok(job_id) => Notice::CancelRequested { job_id },
                        Err(_) => continue,
                    },
                    // The connection dropped; the next call reconnects and
                    // listens again. Notices sent meanwhile are lost.
                    Ok(None) => Notice::Reconnected,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for notifications failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if tx.send(notice).is_err() {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}
