//! What the row mapping of the store's types needs beyond sqlx's derives:
//! JSON kept as text, a run's progress in two columns, a template's backoff
//! in two; and how a batch of outcomes or new jobs is sorted for the
//! database.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use sqlx::{Decode, Row, Type};

use super::{JobNext, NewJob, Run, RunEnd};
use crate::grants::{AllowedHost, Grants};
use crate::model::{Backoff, Call, JobId, LogLine, Progress, RunId, TemplateLimits};

/// A column holding JSON as text (both databases store JSON as text), read
/// into the type it holds with `#[sqlx(try_from = "JsonText")]`.
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct JsonText(pub String);

macro_rules! from_json_text {
    ($($held:ty),*) => {$(
        impl TryFrom<JsonText> for $held {
            type Error = serde_json::Error;

            fn try_from(text: JsonText) -> Result<Self, Self::Error> {
                serde_json::from_str(&text.0)
            }
        }
    )*};
}

from_json_text!(serde_json::Value, BTreeMap<String, String>, Vec<LogLine>, Grants, TemplateLimits, Vec<Call>);

/// A nullable column holding JSON as text, read with
/// `#[sqlx(try_from = "NullableJsonText")]` (NULL reads as `None`).
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct NullableJsonText(pub Option<String>);

impl TryFrom<NullableJsonText> for Option<Vec<AllowedHost>> {
    type Error = serde_json::Error;

    fn try_from(text: NullableJsonText) -> Result<Self, Self::Error> {
        text.0.map(|t| serde_json::from_str(&t)).transpose()
    }
}

/// JSON text of a value the store writes (its own types always serialise).
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("the store's values serialise")
}

/// How a run is read from its row: the run, and its progress from two
/// columns. (Public only because the shared store's bounds name it.)
#[derive(sqlx::FromRow)]
pub struct RunRow {
    #[sqlx(flatten)]
    run: Run,
    progress_percent: Option<i64>,
    progress_message: Option<String>,
}

impl From<RunRow> for Run {
    fn from(row: RunRow) -> Run {
        let progress = row.progress_percent.map(|percent| Progress {
            percent: percent.clamp(0, 100) as u8,
            message: row.progress_message.unwrap_or_default(),
        });
        Run { progress, ..row.run }
    }
}

/// A template's backoff, from its `backoff_base_ms` and `backoff_max_ms` columns.
impl<'r, R: Row> sqlx::FromRow<'r, R> for Backoff
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let ms = |column: &'static str| -> Result<Duration, sqlx::Error> {
            let value: i64 = row.try_get(column)?;
            u64::try_from(value)
                .map(Duration::from_millis)
                .map_err(|e| sqlx::Error::ColumnDecode { index: column.into(), source: Box::new(e) })
        };
        Ok(Backoff { base: ms("backoff_base_ms")?, max: ms("backoff_max_ms")? })
    }
}

/// For a batch of run ends of which the runs `closed` were closed (the rest
/// were fenced off): whether each end applied, in order, and the (job, run)
/// pairs whose jobs are finished and must be deleted.
pub(crate) fn sort_closed(ends: &[(RunEnd, JobNext)], closed: &[RunId]) -> (Vec<bool>, Vec<(JobId, RunId)>) {
    let closed: HashSet<RunId> = closed.iter().copied().collect();
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
    use crate::model::Millis;

    fn new_job(key: Option<&str>) -> NewJob {
        NewJob {
            template: "t".into(),
            context: "{}".into(),
            queue: "q".into(),
            priority: 0,
            run_at: Millis(0),
            max_attempts: 1,
            timeout_ms: 1,
            memory_bytes: 1,
            unique_key: key.map(str::to_string),
            discard_after: None,
            allowed_hosts: None,
            traceparent: None,
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

    #[test]
    fn json_text_reads_what_it_holds_and_names_what_is_wrong() {
        let logs: Vec<LogLine> = JsonText(r#"[{"at_ms": 1, "level": "info", "message": "hi"}]"#.into()).try_into().unwrap();
        assert_eq!(logs[0].message, "hi");
        let err = BTreeMap::<String, String>::try_from(JsonText("[1]".into())).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
