//! The SQLite dialect: embedded, one file, WAL mode, a busy timeout, every
//! writing transaction opened with `BEGIN IMMEDIATE` (concurrent writers
//! queue on the lock instead of failing on a read-to-write upgrade), and
//! batches passed as JSON and read with `json_each`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, FromRow, Sqlite, SqliteConnection, Transaction};

use super::rows::json_text;
use super::flow;
use super::sql::{Dialect, Pick, SqlStore};
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// What SQLite supplies to the shared store.
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

/// elihu's store on an SQLite file.
pub type SqliteStore = SqlStore<SqliteDialect>;

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
        Ok(SqlStore::new(pool))
    }
}

/// What a claim needs of a job's template, as it is at claim time.
#[derive(sqlx::FromRow)]
struct TemplateNow {
    #[sqlx(try_from = "String")]
    digest: Digest,
    #[sqlx(try_from = "JsonText")]
    config: BTreeMap<String, String>,
    #[sqlx(flatten)]
    backoff: Backoff,
    #[sqlx(try_from = "JsonText")]
    grants: Grants,
    #[sqlx(try_from = "JsonText")]
    limits: TemplateLimits,
}

/// The earliest start of `queue` still in its rate window.
async fn earliest_start(tx: &mut Transaction<'static, Sqlite>, queue: &str, window_start: Millis) -> Result<Option<Millis>, StoreError> {
    let (earliest,): (Option<Millis>,) = sqlx::query_as(flow::EARLIEST_START).bind(queue).bind(window_start).fetch_one(&mut **tx).await?;
    Ok(earliest)
}

/// A list of values as the JSON text `json_each` reads.
fn json_list<T: serde::Serialize>(values: impl Iterator<Item = T>) -> String {
    serde_json::to_string(&values.collect::<Vec<T>>()).expect("plain values serialise")
}

#[async_trait::async_trait]
impl Dialect for SqliteDialect {
    type Db = Sqlite;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // `BEGIN IMMEDIATE` holds the database's one write lock already.
    const LOCK_TEMPLATE: Option<&'static str> = None;
    const LOCK_JOBS: Option<&'static str> = None;
    const LOCK_SETTINGS: &'static str = "";

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn claim(
        pool: &SqlitePool,
        _hints: &ClaimHints,
        node_id: &str,
        pick: Pick<'_>,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Claim, StoreError> {
        let mut tx = begin_detached(pool, Self::BEGIN_WRITE).await?;
        // The write lock serialises claims: the settings read here hold
        // until the claim commits.
        let (settings, wanted) = match pick {
            Pick::Queue { queue, limit } => (SqlStore::<Self>::settings(&mut *tx, queue, "").await?, limit),
            Pick::Job(_) => (QueueSettings::none(""), 1),
        };
        if settings.paused {
            tx.rollback().await?;
            return Ok(Claim { jobs: Vec::new(), held: Some(Held::Paused) });
        }
        let now = SqlStore::<Self>::claim_now(&mut *tx, &settings, now).await?;
        let (global_limit, rate_limit, window_start) = flow::limit_params(&settings, now);
        // The rows are taken first and decoded after the statement: decoding
        // them as they stream would keep the write lock held meanwhile.
        let rows: Vec<SqliteRow> = match pick {
            Pick::Queue { queue, limit } if settings.limits_claims() => {
                let sql = format!(
                    "UPDATE jobs SET state = 'running', attempt = attempt + 1, node_id = $1 WHERE id IN ({}) RETURNING *",
                    flow::pick_sql(&settings)
                );
                sqlx::query(&sql)
                    .bind(node_id)
                    .bind(queue)
                    .bind(now)
                    .bind(i64::from(limit))
                    .bind(expires_at)
                    .bind(global_limit)
                    .bind(rate_limit)
                    .bind(window_start)
                    .fetch_all(&mut *tx)
                    .await?
            }
            Pick::Queue { queue, limit } => sqlx::query(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, node_id = $1
                 WHERE id IN (SELECT id FROM jobs WHERE queue = $2 AND state = 'available' AND run_at <= $3
                              AND (discard_after IS NULL OR discard_after >= $3)
                              ORDER BY priority, run_at, id LIMIT $4)
                 RETURNING *",
            )
            .bind(node_id)
            .bind(queue)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?,
            // A job of a paused or limited queue waits for the queue's claims.
            Pick::Job(id) => sqlx::query(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, node_id = $1
                 WHERE id = $2 AND state = 'available' AND NOT EXISTS (
                     SELECT 1 FROM queues q WHERE q.name = jobs.queue
                         AND (q.paused OR q.global_limit IS NOT NULL OR q.rate_limit IS NOT NULL))
                 RETURNING *",
            )
            .bind(node_id)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?,
        };
        let mut jobs = rows.iter().map(Job::from_row).collect::<Result<Vec<Job>, _>>()?;
        if jobs.is_empty() {
            let until = match settings.rate {
                Some(_) => flow::rate_until(&settings, earliest_start(&mut tx, &settings.name, window_start).await?),
                None => None,
            };
            tx.rollback().await?;
            return Ok(if settings.limits_claims() { flow::limited_claim(Vec::new(), wanted, || until) } else { Claim::default() });
        }
        jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
        // A run for each job whose template exists, with its digest as it is now.
        let ids = json_list(jobs.iter().map(|j| j.id));
        let opened: HashMap<JobId, RunId> = sqlx::query_as(
            "INSERT INTO runs (job_id, template, attempt, max_attempts, node_id, digest, status, started_at, expires_at, unique_key)
             SELECT j.id, j.template, j.attempt, j.max_attempts, $1, t.digest, 'running', $2, $3, j.unique_key
             FROM json_each($4) AS e JOIN jobs AS j ON j.id = e.value JOIN templates AS t ON t.name = j.template
             RETURNING job_id, id",
        )
        .bind(node_id)
        .bind(now)
        .bind(expires_at)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        sqlx::query("UPDATE jobs SET current_run = e.value ->> 1 FROM json_each($1) AS e WHERE jobs.id = e.value ->> 0")
            .bind(json_list(opened.iter().map(|(job, run)| [job.0, run.0])))
            .execute(&mut *tx)
            .await?;
        // The templates of the batch (usually one), as they are now.
        let mut templates: HashMap<String, Option<TemplateNow>> = HashMap::new();
        for job in &jobs {
            if !templates.contains_key(&job.template) {
                let now: Option<TemplateNow> =
                    sqlx::query_as("SELECT digest, config, backoff_base_ms, backoff_max_ms, grants, limits FROM templates WHERE name = $1")
                        .bind(&job.template)
                        .fetch_optional(&mut *tx)
                        .await?;
                templates.insert(job.template.clone(), now);
            }
        }
        let (mut claimed, mut dropped) = (Vec::with_capacity(jobs.len()), Vec::new());
        for mut job in jobs {
            match (opened.get(&job.id), &templates[&job.template]) {
                (Some(&run_id), Some(t)) => {
                    job.current_run = Some(run_id);
                    claimed.push(Claimed {
                        run_id,
                        job,
                        digest: t.digest.clone(),
                        config: t.config.clone(),
                        backoff: t.backoff,
                        grants: t.grants.clone(),
                        limits: t.limits,
                    });
                }
                _ => dropped.push(job.id),
            }
        }
        if !dropped.is_empty() {
            sqlx::query("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each($1))").bind(json_list(dropped.iter())).execute(&mut *tx).await?;
            tracing::warn!(jobs = ?dropped, "dropped jobs whose template was deleted: they cannot run");
        }
        if !settings.limits_claims() {
            tx.commit().await?;
            return Ok(Claim { jobs: claimed, held: None });
        }
        let mut until = None;
        if settings.rate.is_some() {
            // Record the starts, forget those that left the window.
            sqlx::query(
                "INSERT INTO queue_starts (queue, partition_key, started_at)
                 SELECT queue, partition_key, $2 FROM jobs WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(json_list(claimed.iter().map(|c| c.job.id)))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM queue_starts WHERE queue = $1 AND started_at <= $2")
                .bind(&settings.name)
                .bind(window_start)
                .execute(&mut *tx)
                .await?;
            if claimed.len() < wanted as usize {
                until = flow::rate_until(&settings, earliest_start(&mut tx, &settings.name, window_start).await?);
            }
        }
        tx.commit().await?;
        Ok(flow::limited_claim(claimed, wanted, || until))
    }

    async fn set_partition_keys(tx: &mut Transaction<'static, Sqlite>, keys: &[(JobId, String)]) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET partition_key = e.value ->> 1 FROM json_each($1) AS e WHERE jobs.id = e.value ->> 0")
            .bind(serde_json::to_string(keys).expect("ids and keys serialise"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn insert_unkeyed(tx: &mut Transaction<'static, Sqlite>, jobs: &[NewJob], now: Millis) -> Result<Vec<JobId>, StoreError> {
        // SQLite numbers the rows in the order of the batch.
        let batch = json_list(jobs.iter().map(|j| {
            serde_json::json!([
                j.template, j.context, j.queue, j.priority, j.run_at, j.max_attempts, j.timeout_ms, j.memory_bytes, j.discard_after,
                j.allowed_hosts.as_ref().map(json_text)
            ])
        }));
        let mut ids: Vec<JobId> = sqlx::query_scalar(
            "INSERT INTO jobs (template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes, created_at,
                 discard_after, allowed_hosts)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, 'available', value ->> 5, value ->> 6, value ->> 7,
                    $2, value ->> 8, value ->> 9
             FROM json_each($1) ORDER BY key
             RETURNING id",
        )
        .bind(batch)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        ids.sort_unstable();
        Ok(ids)
    }

    type Ends = String;

    fn encode_ends(ends: &[(RunEnd, JobNext)]) -> String {
        json_list(ends.iter().map(|(end, _)| {
            serde_json::json!({
                "run_id": end.run_id,
                "job_id": end.job_id,
                "node_id": end.node_id,
                "result": end.ending.result().as_str(),
                "reason": end.ending.reason().map(Reason::as_str),
                "message": end.ending.message(),
                "output": end.ending.output(),
                "logs": serde_json::to_string(&end.logs).expect("log lines serialise"),
                "progress_percent": end.progress.as_ref().map(|p| p.percent),
                "progress_message": end.progress.as_ref().map(|p| p.message.as_str()),
                "checkpoint": end.checkpoint,
                "calls": json_text(&end.calls),
                "calls_made": end.calls.len(),
                "calls_denied": end.calls.iter().filter(|c| c.denied.is_some()).count(),
                "finished_at": end.finished_at,
            })
        }))
    }

    async fn close_runs(tx: &mut Transaction<'static, Sqlite>, ends: String) -> Result<Vec<RunId>, StoreError> {
        // `+runs.status` keeps the planner from driving the update from the
        // running-runs index, which would re-read the JSON once per run.
        Ok(sqlx::query_scalar(
            "UPDATE runs SET status = 'done', result = e.value ->> 'result', reason = e.value ->> 'reason',
                 message = e.value ->> 'message', output = e.value ->> 'output', logs = e.value ->> 'logs',
                 progress_percent = e.value ->> 'progress_percent', progress_message = e.value ->> 'progress_message',
                 checkpoint = COALESCE(e.value ->> 'checkpoint', runs.checkpoint), finished_at = e.value ->> 'finished_at',
                 calls = e.value ->> 'calls', calls_made = e.value ->> 'calls_made', calls_denied = e.value ->> 'calls_denied'
             FROM json_each($1) AS e
             WHERE runs.id = e.value ->> 'run_id' AND runs.job_id = e.value ->> 'job_id'
               AND runs.node_id = e.value ->> 'node_id' AND +runs.status = 'running'
             RETURNING runs.id",
        )
        .bind(ends)
        .fetch_all(&mut **tx)
        .await?)
    }

    async fn delete_finished(tx: &mut Transaction<'static, Sqlite>, done: &[(JobId, RunId)]) -> Result<(), StoreError> {
        // A run id belongs to one job, so matching ids and current runs as
        // two sets is matching the pairs.
        sqlx::query("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each($1)) AND current_run IN (SELECT value FROM json_each($2))")
            .bind(json_list(done.iter().map(|d| d.0)))
            .bind(json_list(done.iter().map(|d| d.1)))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn stats(pool: &SqlitePool) -> Result<Vec<TemplateStats>, StoreError> {
        // Counts in two grouped queries; durations sorted here from the
        // latest 10,000 finished runs of each template.
        let counts: Vec<TemplateStats> = sqlx::query_as(
            "WITH names AS (SELECT name AS template FROM templates UNION SELECT template FROM runs UNION SELECT template FROM jobs),
             r AS (SELECT template, SUM(result = 'succeeded') AS succeeded, SUM(result = 'failed') AS failed,
                          SUM(result = 'cancelled') AS cancelled, SUM(result = 'snoozed') AS snoozed,
                          SUM(calls_made) AS calls, SUM(calls_denied) AS calls_denied
                   FROM runs WHERE status = 'done' GROUP BY template),
             j AS (SELECT template, SUM(state = 'available') AS queued, SUM(state = 'running') AS running FROM jobs GROUP BY template)
             SELECT names.template, COALESCE(r.succeeded, 0) AS succeeded, COALESCE(r.failed, 0) AS failed,
                    COALESCE(r.cancelled, 0) AS cancelled, COALESCE(r.snoozed, 0) AS snoozed,
                    COALESCE(j.queued, 0) AS queued, COALESCE(j.running, 0) AS running,
                    NULL AS duration_p50_ms, NULL AS duration_p95_ms,
                    COALESCE(r.calls, 0) AS calls, COALESCE(r.calls_denied, 0) AS calls_denied
             FROM names LEFT JOIN r USING (template) LEFT JOIN j USING (template)
             ORDER BY names.template",
        )
        .fetch_all(pool)
        .await?;
        let mut stats = Vec::with_capacity(counts.len());
        for entry in counts {
            let mut durations: Vec<i64> = sqlx::query_scalar(
                "SELECT finished_at - started_at FROM runs WHERE template = $1 AND status = 'done' ORDER BY id DESC LIMIT 10000",
            )
            .bind(&entry.template)
            .fetch_all(pool)
            .await?;
            durations.sort_unstable();
            stats.push(TemplateStats {
                duration_p50_ms: percentile(&durations, 50.0),
                duration_p95_ms: percentile(&durations, 95.0),
                ..entry
            });
        }
        Ok(stats)
    }

    async fn event_publish(pool: &SqlitePool, origin: &str, batch: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO events (origin, created_at, payload) VALUES ($1, $2, $3)")
            .bind(origin)
            .bind(now)
            .bind(batch)
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn event_listen(_pool: &SqlitePool) -> Result<Option<tokio::sync::mpsc::Receiver<String>>, StoreError> {
        Ok(None)
    }

    async fn event_cursor(pool: &SqlitePool) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(pool).await?)
    }

    async fn event_read(pool: &SqlitePool, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT id, origin, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?)
    }

    async fn job_counts(pool: &SqlitePool, now: Millis) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(super::sql::JOB_COUNTS).bind(now).fetch_all(pool).await?)
    }

    async fn event_prune(pool: &SqlitePool, before: Millis) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM events WHERE created_at < $1").bind(before).execute(pool).await?.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_json_arrays() {
        assert_eq!(json_list([JobId(1), JobId(2)].iter()), "[1,2]");
    }

}
