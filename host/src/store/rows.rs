//! Reading store rows back into the domain types, shared by every backend
//! (their column types decode alike: INTEGER/BIGINT as `i64`, `i32` or `bool`).

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::*;
use crate::runtime::{LogLine, Progress, Reason, RunResult};

pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt { what, why: e.to_string() }
}

pub(crate) fn digest_of(text: String) -> Result<Digest, StoreError> {
    Digest::parse(&text).ok_or(StoreError::Corrupt { what: "a digest", why: format!("`{text}` is not a sha256 digest") })
}

pub(crate) fn template_from<'r, R>(row: &'r R) -> Result<Template, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Template {
        name: row.try_get("name")?,
        digest: digest_of(row.try_get("digest")?)?,
        schema: serde_json::from_str(row.try_get::<&str, _>("schema")?).map_err(corrupt("a template schema"))?,
        defaults: TemplateDefaults {
            queue: row.try_get("queue")?,
            priority: row.try_get("priority")?,
            max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
            timeout_ms: row.try_get::<i64, _>("timeout_ms")? as u64,
            memory_bytes: row.try_get::<i64, _>("memory_bytes")? as u64,
            backoff_base_ms: row.try_get::<i64, _>("backoff_base_ms")? as u64,
            backoff_max_ms: row.try_get::<i64, _>("backoff_max_ms")? as u64,
        },
        config: serde_json::from_str(row.try_get::<&str, _>("config")?).map_err(corrupt("a template config"))?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn job_from<'r, R>(row: &'r R) -> Result<Job, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: &str = row.try_get("state")?;
    Ok(Job {
        id: row.try_get("id")?,
        template: row.try_get("template")?,
        context: row.try_get("context")?,
        queue: row.try_get("queue")?,
        priority: row.try_get("priority")?,
        run_at: row.try_get("run_at")?,
        state: if state == "running" { JobState::Running } else { JobState::Available },
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        timeout_ms: row.try_get::<i64, _>("timeout_ms")? as u64,
        memory_bytes: row.try_get::<i64, _>("memory_bytes")? as u64,
        unique_key: row.try_get("unique_key")?,
        discard_after: row.try_get("discard_after")?,
        checkpoint: row.try_get("checkpoint")?,
        current_run: row.try_get("current_run")?,
        node_id: row.try_get("node_id")?,
        cancel_requested: row.try_get("cancel_requested")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn result_from(text: Option<String>) -> Option<RunResult> {
    match text.as_deref() {
        Some("succeeded") => Some(RunResult::Succeeded),
        Some("failed") => Some(RunResult::Failed),
        Some("cancelled") => Some(RunResult::Cancelled),
        _ => None,
    }
}

pub(crate) fn result_str(result: RunResult) -> &'static str {
    match result {
        RunResult::Succeeded => "succeeded",
        RunResult::Failed => "failed",
        RunResult::Cancelled => "cancelled",
    }
}

pub(crate) fn reason_from(text: Option<&str>) -> Option<Reason> {
    Some(match text? {
        "error" => Reason::Error,
        "timeout" => Reason::Timeout,
        "memory" => Reason::Memory,
        "trap" => Reason::Trap,
        "cancelled" => Reason::Cancelled,
        "expired" => Reason::Expired,
        "shutdown" => Reason::Shutdown,
        _ => return None,
    })
}

pub(crate) fn run_from<'r, R>(row: &'r R) -> Result<Run, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: &str = row.try_get("status")?;
    let percent: Option<i64> = row.try_get("progress_percent")?;
    let progress = percent.map(|p| -> Result<Progress, StoreError> {
        Ok(Progress { percent: p as u8, message: row.try_get::<Option<String>, _>("progress_message")?.unwrap_or_default() })
    });
    Ok(Run {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        template: row.try_get("template")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        node_id: row.try_get("node_id")?,
        digest: digest_of(row.try_get("digest")?)?,
        status: if status == "running" { RunStatus::Running } else { RunStatus::Done },
        result: result_from(row.try_get("result")?),
        reason: reason_from(row.try_get::<Option<&str>, _>("reason")?),
        message: row.try_get("message")?,
        output: row.try_get("output")?,
        logs: serde_json::from_str::<Vec<LogLine>>(row.try_get::<&str, _>("logs")?).map_err(corrupt("a run's logs"))?,
        progress: progress.transpose()?,
        checkpoint: row.try_get("checkpoint")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        expires_at: row.try_get("expires_at")?,
        unique_key: row.try_get("unique_key")?,
    })
}

pub(crate) fn node_from<'r, R>(row: &'r R) -> Result<NodeInfo, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(NodeInfo {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        pid: row.try_get("pid")?,
        queues: row.try_get("queues")?,
        started_at: row.try_get("started_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
    })
}

pub(crate) fn schedule_from<'r, R>(row: &'r R) -> Result<StoredSchedule, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredSchedule {
        name: row.try_get("name")?,
        template: row.try_get("template")?,
        context: row.try_get("context")?,
        cron: row.try_get("cron")?,
        interval_ms: row.try_get("interval_ms")?,
        timezone: row.try_get("timezone")?,
        catch_up: row.try_get("catch_up")?,
        paused: row.try_get("paused")?,
        last_firing: row.try_get("last_firing")?,
        current_job: row.try_get("current_job")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// For a batch of run ends of which the runs `closed` were closed (the rest
/// were fenced off): whether each end applied, in order, and the (job, run)
/// pairs whose jobs are finished and must be deleted.
pub(crate) fn sort_closed(ends: &[(RunEnd, JobNext)], closed: &[i64]) -> (Vec<bool>, Vec<(i64, i64)>) {
    let closed: std::collections::HashSet<i64> = closed.iter().copied().collect();
    let applied: Vec<bool> = ends.iter().map(|(end, _)| closed.contains(&end.run_id)).collect();
    let done = ends
        .iter()
        .zip(&applied)
        .filter(|((_, next), ok)| **ok && *next == JobNext::Delete)
        .map(|((end, _), _)| (end.job_id, end.run_id))
        .collect();
    (applied, done)
}

/// Splits a batch of new jobs into consecutive stretches, in order: jobs
/// without a unique key can be inserted together in one statement, a job
/// with a key is inserted alone (it may find the job holding its key).
/// Keeping the order keeps ids, and so claim order, as the caller gave them.
pub(crate) fn insert_stretches(jobs: &[NewJob]) -> impl Iterator<Item = &[NewJob]> {
    jobs.chunk_by(|a, b| a.unique_key.is_none() && b.unique_key.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_job(key: Option<&str>) -> NewJob {
        NewJob {
            template: "t".into(),
            context: "{}".into(),
            queue: "q".into(),
            priority: 0,
            run_at: 0,
            max_attempts: 1,
            timeout_ms: 1,
            memory_bytes: 1,
            unique_key: key.map(str::to_string),
            discard_after: None,
        }
    }

    #[test]
    fn stretches_keep_the_order_and_put_keyed_jobs_alone() {
        let jobs = [new_job(None), new_job(None), new_job(Some("a")), new_job(Some("b")), new_job(None)];
        let shape: Vec<(bool, usize)> = insert_stretches(&jobs).map(|s| (s[0].unique_key.is_none(), s.len())).collect();
        assert_eq!(shape, [(true, 2), (false, 1), (false, 1), (true, 1)]);
        assert_eq!(insert_stretches(&[]).count(), 0);
        assert_eq!(insert_stretches(&jobs[2..3]).count(), 1);
    }
}
