//! Flow control in the store: a queue's settings as stored (paused, global
//! limit, rate limit, partition), what a claim reports about the limits that
//! held it back, the claim's pick for a limited queue (SQL both databases
//! run, so that the limits are enforced in the claim statement itself), and
//! how many jobs each limit holds back, for `queue ls`, stats and dashboards.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Claimed, StoreError};
use crate::model::{Millis, Partition, Rate};

/// A queue's flow-control settings, for the whole cluster. A queue nobody
/// configured has none of them (not paused, no limits, no partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueSettings {
    /// The queue.
    pub name: String,
    /// A paused queue is claimed by no node; runs in flight finish.
    pub paused: bool,
    /// At most this many runs of the queue in flight across all nodes (per
    /// partition when the queue is partitioned).
    pub global_limit: Option<u32>,
    /// At most this many starts per period across all nodes (per partition
    /// when the queue is partitioned), `LIMIT/PERIOD` such as `100/1m`.
    #[schema(value_type = Option<String>, examples("100/1m"))]
    pub rate: Option<Rate>,
    /// What splits the queue into partitions limited one by one: `template`,
    /// or a JSON pointer into the context such as `/customer_id`.
    #[schema(value_type = Option<String>, examples("/customer_id"))]
    pub partition: Option<Partition>,
}

impl QueueSettings {
    /// The settings of a queue nobody configured.
    pub fn none(name: &str) -> Self {
        QueueSettings { name: name.to_string(), paused: false, global_limit: None, rate: None, partition: None }
    }

    /// Whether claims of the queue must look at its settings: it is paused
    /// or has a limit. (A partition without a limit changes nothing.)
    pub fn limits_claims(&self) -> bool {
        self.paused || self.global_limit.is_some() || self.rate.is_some()
    }

    /// The settings after `change`.
    pub fn changed(&self, change: &QueueChange) -> QueueSettings {
        QueueSettings {
            name: self.name.clone(),
            paused: change.paused.unwrap_or(self.paused),
            global_limit: change.global_limit.unwrap_or(self.global_limit),
            rate: change.rate.unwrap_or(self.rate),
            partition: change.partition.clone().unwrap_or_else(|| self.partition.clone()),
        }
    }
}

/// A change to a queue's settings: `None` leaves a setting as it is,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueChange {
    /// Pause (`true`) or resume (`false`).
    pub paused: Option<bool>,
    /// Set or clear the global concurrency limit.
    pub global_limit: Option<Option<u32>>,
    /// Set or clear the rate limit.
    pub rate: Option<Option<Rate>>,
    /// Set or clear the partition.
    pub partition: Option<Option<Partition>>,
}

/// A queue as `elihu queue ls`, stats and the dashboard show it: its
/// settings, its depth, and how many due jobs each limit holds back now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueInfo {
    /// Its settings.
    #[serde(flatten)]
    pub settings: QueueSettings,
    /// Jobs waiting, due or not.
    pub queued: i64,
    /// Jobs waiting whose run-at has come.
    pub due: i64,
    /// Jobs running, on any node.
    pub running: i64,
    /// Due jobs each setting holds back now.
    pub held: HeldBack,
}

/// How many due jobs each setting holds back: the jobs that could not start
/// now because of that setting alone, whatever the nodes' free slots (summed
/// over partitions when the queue is partitioned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct HeldBack {
    /// By the pause: every due job of a paused queue.
    pub paused: i64,
    /// By the global concurrency limit.
    pub global_limit: i64,
    /// By the rate limit.
    pub rate: i64,
}

/// What one claim took, and whether the queue's settings held jobs back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    /// The jobs claimed, in claim order.
    pub jobs: Vec<Claimed>,
    /// Set when the queue is paused, or limited and the claim took fewer
    /// jobs than asked: the node should not ask again before a run of its
    /// own ends, `until`, a wake-up or its next poll.
    pub held: Option<Held>,
}

/// Why a claim took less than it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The queue is paused.
    Paused,
    /// The queue has a global or rate limit, and took fewer jobs than asked
    /// (its limits, or no more due jobs).
    Limited {
        /// When the rate window next lets a start through, for a
        /// rate-limited queue whose window is not empty.
        until: Option<Millis>,
    },
}

/// A row of `queues`.
#[derive(sqlx::FromRow)]
pub struct QueueRow {
    name: String,
    paused: bool,
    global_limit: Option<i64>,
    rate_limit: Option<i64>,
    rate_period_ms: Option<i64>,
    partition_by: Option<String>,
}

impl TryFrom<QueueRow> for QueueSettings {
    type Error = StoreError;

    fn try_from(row: QueueRow) -> Result<QueueSettings, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt { what: "queue settings", why: format!("queue `{}`: {why}", row.name) };
        let positive = |n: i64| u32::try_from(n).ok().filter(|n| *n > 0);
        let global_limit = match row.global_limit {
            None => None,
            Some(n) => Some(positive(n).ok_or_else(|| corrupt(format!("global limit {n}")))?),
        };
        let rate = match (row.rate_limit, row.rate_period_ms) {
            (Some(n), Some(ms)) if ms > 0 => Some(Rate {
                limit: positive(n).ok_or_else(|| corrupt(format!("rate limit {n}")))?,
                period: Duration::from_millis(ms as u64),
            }),
            (None, None) => None,
            (n, ms) => return Err(corrupt(format!("rate {n:?} per {ms:?} ms"))),
        };
        let partition = row.partition_by.as_deref().map(Partition::parse).transpose().map_err(corrupt)?;
        Ok(QueueSettings { name: row.name, paused: row.paused, global_limit, rate, partition })
    }
}

/// Reads a queue's row (`$1`: the name).
pub const SETTINGS: &str = "SELECT name, paused, global_limit, rate_limit, rate_period_ms, partition_by FROM queues WHERE name = $1";

/// The parameters of the limited picks after those of the claim (`$1` node,
/// `$2` queue, `$3` now, `$4` jobs wanted, `$5` run expiry): `$6` the global
/// limit, `$7` the rate limit (each NULL when not set), `$8` the start of the
/// rate window (starts after it count).
pub fn limit_params(settings: &QueueSettings, now: Millis) -> (Option<i64>, Option<i64>, Millis) {
    (
        settings.global_limit.map(i64::from),
        settings.rate.map(|r| i64::from(r.limit)),
        settings.rate.map_or(now, |r| now - r.period),
    )
}

/// The ids a claim of a limited, unpartitioned queue takes: the first due
/// jobs in claim order, no more than the global limit leaves beside the
/// queue's running jobs, nor the rate limit beside the starts in its window.
pub const PICK_LIMITED: &str = "
    SELECT c.id FROM (
        SELECT d.id, row_number() OVER (ORDER BY d.priority, d.run_at, d.id) AS rank
        FROM (SELECT id, priority, run_at FROM jobs
              WHERE queue = $2 AND state = 'available' AND run_at <= $3
                AND (discard_after IS NULL OR discard_after >= $3)
              ORDER BY priority, run_at, id LIMIT $4) d
    ) c
    WHERE c.rank <= COALESCE($6 - (SELECT COUNT(*) FROM jobs WHERE state = 'running' AND queue = $2), $4)
      AND c.rank <= COALESCE($7 - (SELECT COUNT(*) FROM queue_starts WHERE queue = $2 AND started_at > $8), $4)";

/// The ids a claim of a limited, partitioned queue takes. `keys` walks the
/// distinct partitions with waiting jobs through the `jobs_partition` index
/// (one lookup each: a skip scan); `room` is what each partition's limits
/// leave beside its running jobs and its starts in the window; `heads` takes
/// the first due jobs of each partition with room, up to its room, one index
/// lookup per job; the claim takes the first of those in claim order. A
/// saturated partition costs one lookup, however many jobs it has waiting.
pub const PICK_PARTITIONED: &str = "
    WITH RECURSIVE
    keys(k) AS (
        SELECT (SELECT partition_key FROM jobs WHERE queue = $2 AND state = 'available' AND partition_key IS NOT NULL
                ORDER BY partition_key LIMIT 1)
        UNION ALL
        SELECT (SELECT partition_key FROM jobs WHERE queue = $2 AND state = 'available' AND partition_key > keys.k
                ORDER BY partition_key LIMIT 1)
        FROM keys WHERE keys.k IS NOT NULL
    ),
    running(k, n) AS (
        SELECT partition_key, COUNT(*) FROM jobs WHERE state = 'running' AND queue = $2 GROUP BY partition_key
    ),
    started(k, n) AS (
        SELECT partition_key, COUNT(*) FROM queue_starts WHERE queue = $2 AND started_at > $8 GROUP BY partition_key
    ),
    rooms(k, c, r) AS (
        SELECT keys.k, COALESCE($6 - COALESCE(running.n, 0), $4), COALESCE($7 - COALESCE(started.n, 0), $4)
        FROM keys LEFT JOIN running ON running.k = keys.k LEFT JOIN started ON started.k = keys.k
        WHERE keys.k IS NOT NULL
    ),
    room(k, n) AS (
        SELECT k, CASE WHEN c < r THEN c ELSE r END FROM rooms
    ),
    heads(k, n, id, priority, run_at) AS (
        SELECT room.k, 1, j.id, j.priority, j.run_at
        FROM room JOIN jobs j ON j.id = (
            SELECT id FROM jobs
            WHERE queue = $2 AND partition_key = room.k AND state = 'available' AND run_at <= $3
              AND (discard_after IS NULL OR discard_after >= $3)
            ORDER BY priority, run_at, id LIMIT 1)
        WHERE room.n > 0
        UNION ALL
        SELECT h.k, h.n + 1, j.id, j.priority, j.run_at
        FROM heads h JOIN room ON room.k = h.k AND h.n < room.n AND h.n < $4
        JOIN jobs j ON j.id = (
            SELECT id FROM jobs
            WHERE queue = $2 AND partition_key = h.k AND state = 'available' AND run_at <= $3
              AND (discard_after IS NULL OR discard_after >= $3)
              AND (priority, run_at, id) > (h.priority, h.run_at, h.id)
            ORDER BY priority, run_at, id LIMIT 1)
    )
    SELECT id FROM heads ORDER BY priority, run_at, id LIMIT $4";

/// The pick for a limited queue with these settings.
pub fn pick_sql(settings: &QueueSettings) -> &'static str {
    if settings.partition.is_some() { PICK_PARTITIONED } else { PICK_LIMITED }
}

/// The latest start recorded for a queue (`$1`). A claim takes its `now`
/// before it waits for the queue's settings row (PostgreSQL) or the write
/// lock (SQLite); meanwhile a claim stamped later may have committed and
/// forgotten the starts that left its window, starts still inside the
/// earlier-stamped claim's window. So a rate-limited claim stamps its starts
/// no earlier than the latest one ([`not_before_latest_start`]): the starts
/// of a queue are then stamped in commit order, and what one claim forgot
/// has left the window of every claim after it.
pub const LATEST_START: &str = "SELECT MAX(started_at) FROM queue_starts WHERE queue = $1";

/// The `now` of a rate-limited claim: its clock's, or the latest start
/// recorded when that is later (see [`LATEST_START`]).
pub fn not_before_latest_start(now: Millis, latest: Option<Millis>) -> Millis {
    latest.map_or(now, |latest| latest.max(now))
}

/// The earliest start still in the rate window (`$1` queue, `$2` window
/// start): the window lets another start through once it has left.
pub const EARLIEST_START: &str = "SELECT MIN(started_at) FROM queue_starts WHERE queue = $1 AND started_at > $2";

/// When the rate window of a queue next lets a start through, from its
/// earliest start still in the window.
pub fn rate_until(settings: &QueueSettings, earliest: Option<Millis>) -> Option<Millis> {
    Some(earliest? + settings.rate?.period)
}

/// What a claim of a limited queue reports: held when it took fewer than asked.
pub fn limited_claim(jobs: Vec<Claimed>, wanted: u32, until: impl FnOnce() -> Option<Millis>) -> Claim {
    let held = (jobs.len() < wanted as usize).then(|| Held::Limited { until: until() });
    Claim { jobs, held }
}

/// Per queue (and partition, where partitioned): waiting jobs, due jobs
/// and running jobs (`$1`: now). Unpartitioned queues have one row, with a
/// NULL key.
pub const DEPTHS: &str = "
    SELECT queue, partition_key,
           SUM(CASE WHEN state = 'available' THEN 1 ELSE 0 END) AS queued,
           SUM(CASE WHEN state = 'available' AND run_at <= $1 AND (discard_after IS NULL OR discard_after >= $1)
                    THEN 1 ELSE 0 END) AS due,
           SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS running
    FROM jobs GROUP BY queue, partition_key";

/// Per rate-limited queue and partition: the starts in its window (`$1`: now).
pub const STARTS_IN_WINDOW: &str = "
    SELECT s.queue, s.partition_key, COUNT(*) AS started
    FROM queue_starts s JOIN queues q ON q.name = s.queue
    WHERE q.rate_period_ms IS NOT NULL AND s.started_at > $1 - q.rate_period_ms
    GROUP BY s.queue, s.partition_key";

/// One row of [`DEPTHS`].
#[derive(sqlx::FromRow)]
pub struct DepthRow {
    queue: String,
    partition_key: Option<String>,
    queued: i64,
    due: i64,
    running: i64,
}

/// One row of [`STARTS_IN_WINDOW`].
#[derive(sqlx::FromRow)]
pub struct StartsRow {
    queue: String,
    partition_key: Option<String>,
    started: i64,
}

/// Every queue that has settings or jobs, by name, with what its settings
/// hold back.
pub fn queue_infos(settings: Vec<QueueSettings>, depths: Vec<DepthRow>, starts: Vec<StartsRow>) -> Vec<QueueInfo> {
    let mut started: BTreeMap<(String, Option<String>), i64> = BTreeMap::new();
    for row in starts {
        started.insert((row.queue, row.partition_key), row.started);
    }
    let mut infos: BTreeMap<String, QueueInfo> = settings
        .into_iter()
        .map(|s| (s.name.clone(), QueueInfo { settings: s, queued: 0, due: 0, running: 0, held: HeldBack::default() }))
        .collect();
    for row in depths {
        let info = infos.entry(row.queue.clone()).or_insert_with(|| QueueInfo {
            settings: QueueSettings::none(&row.queue),
            queued: 0,
            due: 0,
            running: 0,
            held: HeldBack::default(),
        });
        info.queued += row.queued;
        info.due += row.due;
        info.running += row.running;
        let s = &info.settings;
        if s.paused {
            info.held.paused += row.due;
        }
        // Jobs of a partitioned queue each count in their own partition; the
        // limits are per partition then.
        let beyond = |room: i64| (row.due - room.max(0)).max(0);
        if let Some(limit) = s.global_limit {
            info.held.global_limit += beyond(i64::from(limit) - row.running);
        }
        if let Some(rate) = s.rate {
            let used = started.get(&(row.queue.clone(), row.partition_key.clone())).copied().unwrap_or(0);
            info.held.rate += beyond(i64::from(rate.limit) - used);
        }
    }
    infos.into_values().collect()
}

/// Which queues this store last found limited: their claims skip the
/// unlimited statement and go straight to the limited one. A hint only:
/// both statements check the queue's settings themselves.
#[derive(Debug, Default)]
pub struct ClaimHints(Mutex<HashSet<String>>);

impl ClaimHints {
    /// Whether `queue` was limited at its last claim.
    pub fn limited(&self, queue: &str) -> bool {
        self.0.lock().unwrap().contains(queue)
    }

    /// Remembers whether `queue` is limited.
    pub fn set(&self, queue: &str, limited: bool) {
        let mut queues = self.0.lock().unwrap();
        if limited {
            queues.insert(queue.to_string());
        } else {
            queues.remove(queue);
        }
    }
}
