//! Queues over HTTP: list them with their depth and what their settings hold
//! back, show and change one queue's settings (global limit, rate limit,
//! partition), pause and resume.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiState, ErrorBody, parse};
use crate::client::ClientError;
use crate::model::{Partition, Rate};
use crate::store::{QueueChange, QueueInfo, QueueSettings};

/// Every queue.
#[derive(Serialize, ToSchema)]
pub(super) struct Queues {
    queues: Vec<QueueInfo>,
}

/// List queues: settings, depth, running jobs and what each setting holds back.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses(
        (status = 200, description = "every queue with settings or jobs, by name", body = Queues),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn queue_list(State(state): State<ApiState>) -> Result<Json<Queues>, ApiError> {
    Ok(Json(Queues { queues: state.client.queue_list().await? }))
}

/// Show a queue's settings.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "the queue")),
    responses(
        (status = 200, description = "its settings (none set: not paused, no limits)", body = QueueSettings),
        (status = 400, description = "not a queue name", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn queue_get(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<QueueSettings>, ApiError> {
    Ok(Json(state.client.queue_get(&name).await?))
}

/// The body of `PATCH /v1/queues/{name}`: a key left out keeps its
/// setting, `null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QueueBody {
    /// At most this many runs in flight across all nodes (per partition
    /// when partitioned), at least 1.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, examples(5))]
    global_limit: Option<Option<i64>>,
    /// At most this many starts per period across all nodes (per partition
    /// when partitioned): `STARTS/PERIOD`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, examples("100/1m"))]
    rate: Option<Option<String>>,
    /// `template`, or a JSON pointer into the context such as `/customer_id`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, examples("/customer_id"))]
    partition: Option<Option<String>>,
    /// Pause (`true`) or resume (`false`).
    paused: Option<bool>,
}

/// A key that is present: `Some(None)` when it is `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl QueueBody {
    /// The change it asks for; a bad value is refused naming its key.
    fn change(self) -> Result<QueueChange, ClientError> {
        let invalid = |field: &'static str| move |message: String| ClientError::Invalid { field, message };
        let global_limit = match self.global_limit {
            Some(Some(n)) => Some(Some(
                u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| invalid("global_limit")(format!("{n}: use at least 1, or null")))?,
            )),
            Some(None) => Some(None),
            None => None,
        };
        let rate = self.rate.map(|r| r.as_deref().map(Rate::parse).transpose().map_err(invalid("rate"))).transpose()?;
        let partition =
            self.partition.map(|p| p.as_deref().map(Partition::parse).transpose().map_err(invalid("partition"))).transpose()?;
        Ok(QueueChange { paused: self.paused, global_limit, rate, partition })
    }
}

/// Change a queue's settings for every node; a bad value changes nothing.
#[utoipa::path(patch, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "the queue")),
    request_body = QueueBody,
    responses(
        (status = 200, description = "its settings now", body = QueueSettings),
        (status = 400, description = "a value is refused (`details.field` names it)", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn queue_set(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Result<Json<QueueSettings>, ApiError> {
    let body: QueueBody = parse(&body)?;
    Ok(Json(state.client.queue_set(&name, body.change()?).await?))
}

/// Pause a queue: no node claims its jobs; runs in flight finish.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "the queue")),
    responses(
        (status = 200, description = "its settings now", body = QueueSettings),
        (status = 400, description = "not a queue name", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn queue_pause(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<QueueSettings>, ApiError> {
    Ok(Json(state.client.queue_pause(&name).await?))
}

/// Resume a paused queue.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "the queue")),
    responses(
        (status = 200, description = "its settings now", body = QueueSettings),
        (status = 400, description = "not a queue name", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn queue_resume(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<QueueSettings>, ApiError> {
    Ok(Json(state.client.queue_resume(&name).await?))
}
