//! The PostgreSQL dialect, for many nodes on one database: a claim takes a
//! batch in one statement with `FOR UPDATE SKIP LOCKED` (two nodes never
//! claim the same job), batches are bound as arrays and read with `unnest`,
//! and enqueues and cancels `NOTIFY` listening nodes.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{FromRow, Postgres, Transaction};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::rows::json_text;
use super::flow;
use super::sql::{Dialect, Pick, SqlStore};
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The channel enqueues notify: the payload is the queue.
const JOBS_CHANNEL: &str = "elihu_jobs";
/// The channel cancels notify: the payload is the job id.
const CANCEL_CHANNEL: &str = "elihu_cancel";
/// The channel a new watcher of live events notifies (no payload).
const WATCH_CHANNEL: &str = "elihu_watch";
/// The channel batches of live events go out on.
const EVENTS_CHANNEL: &str = "elihu_events";
/// Event batches a listening process holds before it drops the newest.
const EVENT_BACKLOG: usize = 256;

/// A batch of run ends as the columns `unnest` reads.
pub struct PgEnds {
    run_id: Vec<RunId>,
    job_id: Vec<JobId>,
    node_id: Vec<Option<String>>,
    result: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    message: Vec<Option<String>>,
    output: Vec<Option<String>>,
    logs: Vec<Option<String>>,
    progress_percent: Vec<Option<i64>>,
    progress_message: Vec<Option<String>>,
    checkpoint: Vec<Option<String>>,
    calls: Vec<String>,
    calls_made: Vec<i64>,
    calls_denied: Vec<i64>,
    finished_at: Vec<Millis>,
}

/// What PostgreSQL supplies to the shared store.
#[derive(Debug, Clone, Copy)]
pub struct PostgresDialect;

/// elihu's store on PostgreSQL.
pub type PostgresStore = SqlStore<PostgresDialect>;

impl PostgresStore {
    /// Connects to `postgres://…`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(SqlStore::new(pool))
    }
}

/// Claims the jobs `picked` selects (a query over `jobs j`, with `$1` the
/// node, `$3` now and `$5` the expiry) and opens their runs, all in one
/// statement; `also` adds statements on the claimed jobs (`claimed c`). A
/// picked job whose template was deleted is deleted. The update finds the
/// picked jobs through an array so that PostgreSQL looks them up by primary
/// key: joined to the CTE, it hashed the whole jobs table on every claim, a
/// cost that grew with the backlog.
fn claim_sql(picked: &str, also: &str) -> String {
    format!(
        "WITH picked AS (SELECT j.id FROM jobs j {picked} FOR UPDATE OF j SKIP LOCKED),
         dropped AS (
             DELETE FROM jobs j WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
                 AND NOT EXISTS (SELECT 1 FROM templates t WHERE t.name = j.template)),
         claimed AS (
             UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, node_id = $1,
                 current_run = nextval('runs_id_seq')
             WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND EXISTS (SELECT 1 FROM templates t WHERE t.name = j.template)
             RETURNING j.*),
         opened AS (
             INSERT INTO runs (id, job_id, template, attempt, max_attempts, node_id, digest, status, started_at, expires_at, unique_key)
             SELECT c.current_run, c.id, c.template, c.attempt, c.max_attempts, $1, t.digest, 'running', $3, $5, c.unique_key
             FROM claimed c JOIN templates t ON t.name = c.template){also}
         SELECT c.*, t.digest AS template_digest, t.config AS template_config, t.backoff_base_ms, t.backoff_max_ms,
                t.grants AS template_grants, t.limits AS template_limits
         FROM claimed c JOIN templates t ON t.name = c.template
         ORDER BY c.priority, c.run_at, c.id"
    )
}

/// Decodes the rows of a claim statement. The rows are taken first and
/// decoded after the statement, which then ends as soon as PostgreSQL has
/// sent them.
fn decode(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Claimed>, StoreError> {
    Ok(rows.iter().map(Claimed::from_row).collect::<Result<_, _>>()?)
}

/// The claim statement of a limited queue with these settings: the pick of
/// `flow`, and for a rate-limited queue its starts recorded and those that
/// left the window forgotten, in the same statement.
fn limited_claim_sql(settings: &QueueSettings) -> &'static str {
    const RECORD_STARTS: &str = ",
         started AS (INSERT INTO queue_starts (queue, partition_key, started_at) SELECT c.queue, c.partition_key, $3 FROM claimed c),
         forgotten AS (DELETE FROM queue_starts WHERE queue = $2 AND started_at <= $8)";
    static SQL: LazyLock<[String; 4]> = LazyLock::new(|| {
        // The job's own state is checked again on the row as locked: a row
        // another claim took after this statement's snapshot is skipped. The
        // pick is an array, computed once and looked up by primary key: as
        // `IN (pick)` on a freshly filled, unanalysed jobs table PostgreSQL
        // ran the pick again for every row it scanned (one claim of 100,000
        // waiting jobs took 170 s).
        let picked = |pick: &str| {
            format!(
                "WHERE j.id = ANY(ARRAY({pick})) AND j.queue = $2 AND j.state = 'available' AND j.run_at <= $3
                   AND (j.discard_after IS NULL OR j.discard_after >= $3)"
            )
        };
        [
            claim_sql(&picked(flow::PICK_LIMITED), ""),
            claim_sql(&picked(flow::PICK_LIMITED), RECORD_STARTS),
            claim_sql(&picked(flow::PICK_PARTITIONED), ""),
            claim_sql(&picked(flow::PICK_PARTITIONED), RECORD_STARTS),
        ]
    });
    let index = 2 * usize::from(settings.partition.is_some()) + usize::from(settings.rate.is_some());
    &SQL[index]
}

#[async_trait::async_trait]
impl Dialect for PostgresDialect {
    type Db = Postgres;
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_TEMPLATE: Option<&'static str> = Some("SELECT name FROM templates WHERE name = $1 FOR UPDATE");
    // Waits for enqueues, claims and completions in flight; holds new ones.
    const LOCK_JOBS: Option<&'static str> = Some("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE");
    // Claims of one queue exclude each other; enqueues (which read the row
    // without locking it) go on.
    const LOCK_SETTINGS: &'static str = " FOR NO KEY UPDATE";

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn claim(
        pool: &PgPool,
        hints: &ClaimHints,
        node_id: &str,
        pick: Pick<'_>,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Claim, StoreError> {
        // Jobs of a paused or limited queue are claimed by the limited path
        // only: these two statements leave them alone.
        const UNLIMITED: &str = "AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = j.queue
                                     AND (q.paused OR q.global_limit IS NOT NULL OR q.rate_limit IS NOT NULL))";
        static BY_QUEUE: LazyLock<String> = LazyLock::new(|| {
            claim_sql(
                &format!(
                    "WHERE j.queue = $2 AND j.state = 'available' AND j.run_at <= $3
                       AND (j.discard_after IS NULL OR j.discard_after >= $3) {UNLIMITED}
                     ORDER BY j.priority, j.run_at, j.id LIMIT $4"
                ),
                "",
            )
        });
        static BY_ID: LazyLock<String> =
            LazyLock::new(|| claim_sql(&format!("WHERE j.id = $2 AND j.state = 'available' {UNLIMITED} LIMIT $4"), ""));
        let (queue, limit) = match pick {
            Pick::Queue { queue, limit } => (queue, limit),
            Pick::Job(id) => {
                let query = sqlx::query(&BY_ID).bind(node_id).bind(id).bind(now).bind(1i64).bind(expires_at);
                return Ok(Claim { jobs: decode(query.fetch_all(pool).await?)?, held: None });
            }
        };
        let unlimited = async || decode(sqlx::query(&BY_QUEUE).bind(node_id).bind(queue).bind(now).bind(i64::from(limit)).bind(expires_at).fetch_all(pool).await?);
        if !hints.limited(queue) {
            // Today's path, one statement: nothing taken means nothing due,
            // or a queue that has just become paused or limited.
            let jobs = unlimited().await?;
            if !jobs.is_empty() || !SqlStore::<Self>::settings(pool, queue, "").await?.limits_claims() {
                return Ok(Claim { jobs, held: None });
            }
            hints.set(queue, true);
        }
        // A limited queue: its claims take its settings row in turn, and each
        // counts, in a statement begun after it got the row, the runs and
        // starts of the claims before it.
        let mut tx = begin_detached(pool, Self::BEGIN_WRITE).await?;
        let settings = SqlStore::<Self>::settings(&mut *tx, queue, Self::LOCK_SETTINGS).await?;
        if !settings.limits_claims() {
            tx.rollback().await?;
            hints.set(queue, false);
            return Ok(Claim { jobs: unlimited().await?, held: None });
        }
        if settings.paused {
            tx.rollback().await?;
            return Ok(Claim { jobs: Vec::new(), held: Some(Held::Paused) });
        }
        let now = SqlStore::<Self>::claim_now(&mut *tx, &settings, now).await?;
        let (global_limit, rate_limit, window_start) = flow::limit_params(&settings, now);
        let rows = sqlx::query(limited_claim_sql(&settings))
            .bind(node_id)
            .bind(queue)
            .bind(now)
            .bind(i64::from(limit))
            .bind(expires_at)
            .bind(global_limit)
            .bind(rate_limit)
            .bind(window_start)
            .fetch_all(&mut *tx)
            .await?;
        let jobs = decode(rows)?;
        let until = match settings.rate {
            Some(_) if jobs.len() < limit as usize => {
                let (earliest,): (Option<Millis>,) =
                    sqlx::query_as(flow::EARLIEST_START).bind(queue).bind(window_start).fetch_one(&mut *tx).await?;
                flow::rate_until(&settings, earliest)
            }
            _ => None,
        };
        tx.commit().await?;
        Ok(flow::limited_claim(jobs, limit, || until))
    }

    async fn set_partition_keys(tx: &mut Transaction<'static, Postgres>, keys: &[(JobId, String)]) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs j SET partition_key = k.key FROM unnest($1::BIGINT[], $2::TEXT[]) AS k(id, key) WHERE j.id = k.id")
            .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn insert_unkeyed(tx: &mut Transaction<'static, Postgres>, jobs: &[NewJob], now: Millis) -> Result<Vec<JobId>, StoreError> {
        // The ids are drawn from the sequence first, so they follow the batch.
        let mut ids: Vec<JobId> = sqlx::query_scalar("SELECT nextval('jobs_id_seq') FROM generate_series(1, $1)")
            .bind(jobs.len() as i64)
            .fetch_all(&mut **tx)
            .await?;
        ids.sort_unstable();
        let column = |f: fn(&NewJob) -> i64| jobs.iter().map(f).collect::<Vec<i64>>();
        sqlx::query(
            "INSERT INTO jobs (id, template, context, queue, priority, run_at, state, max_attempts, timeout_ms, memory_bytes,
                 created_at, discard_after, allowed_hosts)
             SELECT id, template, context, queue, priority, run_at, 'available', max_attempts, timeout_ms, memory_bytes, $10,
                 discard_after, allowed_hosts
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::INT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[],
                         $9::BIGINT[], $11::BIGINT[], $12::TEXT[])
                 AS t(id, template, context, queue, priority, run_at, max_attempts, timeout_ms, memory_bytes, discard_after,
                      allowed_hosts)",
        )
        .bind(&ids)
        .bind(jobs.iter().map(|j| j.template.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.context.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(column(|j| i64::from(j.max_attempts)))
        .bind(column(|j| j.timeout_ms as i64))
        .bind(column(|j| j.memory_bytes as i64))
        .bind(now)
        .bind(jobs.iter().map(|j| j.discard_after).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.allowed_hosts.as_ref().map(json_text)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        Ok(ids)
    }

    type Ends = PgEnds;

    fn encode_ends(ends: &[(RunEnd, JobNext)]) -> PgEnds {
        let text = |f: &dyn Fn(&RunEnd) -> Option<&str>| ends.iter().map(|(e, _)| f(e).map(str::to_string)).collect();
        let message = ends.iter().map(|(e, _)| e.ending.message().map(String::from)).collect();
        PgEnds {
            run_id: ends.iter().map(|(e, _)| e.run_id).collect(),
            job_id: ends.iter().map(|(e, _)| e.job_id).collect(),
            node_id: text(&|e| Some(&e.node_id)),
            result: text(&|e| Some(e.ending.result().as_str())),
            reason: text(&|e| e.ending.reason().map(Reason::as_str)),
            message,
            output: text(&|e| e.ending.output()),
            logs: ends.iter().map(|(e, _)| Some(serde_json::to_string(&e.logs).expect("log lines serialise"))).collect(),
            progress_percent: ends.iter().map(|(e, _)| e.progress.as_ref().map(|p| i64::from(p.percent))).collect(),
            progress_message: text(&|e| e.progress.as_ref().map(|p| p.message.as_str())),
            checkpoint: text(&|e| e.checkpoint.as_deref()),
            calls: ends.iter().map(|(e, _)| json_text(&e.calls)).collect(),
            calls_made: ends.iter().map(|(e, _)| e.calls.len() as i64).collect(),
            calls_denied: ends.iter().map(|(e, _)| e.calls.iter().filter(|c| c.denied.is_some()).count() as i64).collect(),
            finished_at: ends.iter().map(|(e, _)| e.finished_at).collect(),
        }
    }

    async fn close_runs(tx: &mut Transaction<'static, Postgres>, e: PgEnds) -> Result<Vec<RunId>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE runs r SET status = 'done', result = e.result, reason = e.reason, message = e.message,
                 output = e.output, logs = e.logs, progress_percent = e.progress_percent,
                 progress_message = e.progress_message, checkpoint = COALESCE(e.checkpoint, r.checkpoint),
                 finished_at = e.finished_at, calls = e.calls, calls_made = e.calls_made, calls_denied = e.calls_denied
             FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
                         $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[], $13::TEXT[], $14::BIGINT[],
                         $15::BIGINT[])
                 AS e(run_id, job_id, node_id, result, reason, message, output, logs, progress_percent,
                      progress_message, checkpoint, finished_at, calls, calls_made, calls_denied)
             WHERE r.id = e.run_id AND r.job_id = e.job_id AND r.node_id = e.node_id AND r.status = 'running'
             RETURNING r.id",
        )
        .bind(e.run_id)
        .bind(e.job_id)
        .bind(e.node_id)
        .bind(e.result)
        .bind(e.reason)
        .bind(e.message)
        .bind(e.output)
        .bind(e.logs)
        .bind(e.progress_percent)
        .bind(e.progress_message)
        .bind(e.checkpoint)
        .bind(e.finished_at)
        .bind(e.calls)
        .bind(e.calls_made)
        .bind(e.calls_denied)
        .fetch_all(&mut **tx)
        .await?)
    }

    async fn delete_finished(tx: &mut Transaction<'static, Postgres>, done: &[(JobId, RunId)]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM jobs j USING unnest($1::BIGINT[], $2::BIGINT[]) AS d(id, run) WHERE j.id = d.id AND j.current_run = d.run")
            .bind(done.iter().map(|d| d.0).collect::<Vec<_>>())
            .bind(done.iter().map(|d| d.1).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn notify(tx: &mut Transaction<'static, Postgres>, notice: &Notice) -> Result<(), StoreError> {
        let (channel, payload) = match notice {
            Notice::JobsAvailable { queue } => (JOBS_CHANNEL, queue.clone()),
            Notice::CancelRequested { job_id } => (CANCEL_CHANNEL, job_id.to_string()),
            Notice::Watched => (WATCH_CHANNEL, String::new()),
            Notice::Reconnected => return Ok(()),
        };
        // Delivered at commit, to every listening node.
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&mut **tx).await?;
        Ok(())
    }

    async fn stats(pool: &PgPool) -> Result<Vec<TemplateStats>, StoreError> {
        Ok(sqlx::query_as(
            "WITH names AS (SELECT name AS template FROM templates UNION SELECT DISTINCT template FROM runs
                            UNION SELECT DISTINCT template FROM jobs),
             r AS (SELECT template,
                          COUNT(*) FILTER (WHERE result = 'succeeded') AS s,
                          COUNT(*) FILTER (WHERE result = 'failed') AS f,
                          COUNT(*) FILTER (WHERE result = 'cancelled') AS c,
                          COUNT(*) FILTER (WHERE result = 'snoozed') AS z,
                          SUM(calls_made) AS calls, SUM(calls_denied) AS calls_denied
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
             SELECT names.template, COALESCE(r.s, 0) AS succeeded, COALESCE(r.f, 0) AS failed, COALESCE(r.c, 0) AS cancelled,
                    COALESCE(r.z, 0) AS snoozed,
                    COALESCE(j.q, 0) AS queued, COALESCE(j.rn, 0) AS running, d.p50 AS duration_p50_ms, d.p95 AS duration_p95_ms,
                    COALESCE(r.calls, 0)::BIGINT AS calls, COALESCE(r.calls_denied, 0)::BIGINT AS calls_denied
             FROM names LEFT JOIN r USING (template) LEFT JOIN j USING (template) LEFT JOIN d USING (template)
             ORDER BY names.template",
        )
        .fetch_all(pool)
        .await?)
    }

    async fn listen(pool: &PgPool) -> Result<Option<UnboundedReceiver<Notice>>, StoreError> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen_all([JOBS_CHANNEL, CANCEL_CHANNEL, WATCH_CHANNEL]).await?;
        let (tx, rx) = unbounded_channel();
        tokio::spawn(async move {
            loop {
                let notice = match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == JOBS_CHANNEL => Notice::JobsAvailable { queue: n.payload().to_string() },
                    Ok(Some(n)) if n.channel() == WATCH_CHANNEL => Notice::Watched,
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

    async fn event_publish(pool: &PgPool, _origin: &str, batch: &str, _now: Millis) -> Result<(), StoreError> {
        // Its own autocommit statement: NOTIFY serialises committing
        // transactions cluster-wide, so it never joins a claim or an outcome.
        sqlx::query("SELECT pg_notify($1, $2)").bind(EVENTS_CHANNEL).bind(batch).execute(pool).await?;
        Ok(())
    }

    async fn event_listen(pool: &PgPool) -> Result<Option<tokio::sync::mpsc::Receiver<String>>, StoreError> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(EVENT_BACKLOG);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    received = listener.try_recv() => match received {
                        // A full backlog drops the batch: watchers resync from the database.
                        Ok(Some(n)) => match tx.try_send(n.payload().to_string()) {
                            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                            _ => {}
                        },
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for live events failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    },
                }
            }
        });
        Ok(Some(rx))
    }

    async fn event_cursor(_pool: &PgPool) -> Result<i64, StoreError> {
        Ok(0)
    }

    async fn event_read(_pool: &PgPool, _after: i64, _limit: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(Vec::new())
    }

    async fn job_counts(pool: &PgPool, now: Millis) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(super::sql::JOB_COUNTS).bind(now).fetch_all(pool).await?)
    }

    async fn event_prune(_pool: &PgPool, _before: Millis) -> Result<u64, StoreError> {
        Ok(0)
    }
}
