//! Schedules over HTTP: create or replace, show, list, pause, resume, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, ApiState, ErrorBody, duration, empty_object, parse};
use crate::client::{ClientError, Schedule, ScheduleSpec};
use crate::model::CatchUp;
use crate::schedule::Rule;

/// The body of `PUT /v1/schedules/{name}`: exactly one of `cron` and `every`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleBody {
    /// The template it enqueues.
    template: String,
    /// The context of every job it enqueues (`{}`).
    #[serde(default = "empty_object")]
    context: Value,
    /// Six fields: second minute hour day-of-month month day-of-week.
    #[schema(examples("0 30 8 * * MON-FRI"))]
    cron: Option<String>,
    /// Or an interval (`5m`).
    #[schema(examples("5m"))]
    every: Option<String>,
    /// The IANA time zone of the cron rule (UTC).
    #[schema(examples("Europe/Paris"))]
    timezone: Option<String>,
    /// What to do about firings missed while no node ran (`one`).
    #[serde(default)]
    catch_up: CatchUp,
}

/// Create or replace a schedule (cron with seconds, or an interval).
#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "the schedule with its next firing", body = Schedule),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
        (status = 422, description = "the rule or the context is refused", body = ErrorBody)))]
pub(super) async fn schedule_put(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Result<Json<Schedule>, ApiError> {
    let body: ScheduleBody = parse(&body)?;
    let every = duration("every", &body.every)?;
    let rule = Rule::from_parts(body.cron.as_deref(), every, body.timezone.as_deref()).map_err(ClientError::from)?;
    let spec = ScheduleSpec { name, template: body.template, context: body.context, rule, catch_up: body.catch_up };
    Ok(Json(state.client.schedule_put(spec).await?))
}

/// Every schedule.
#[derive(Serialize, ToSchema)]
pub(super) struct Schedules {
    schedules: Vec<Schedule>,
}

/// List schedules with their next firing.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses(
        (status = 200, description = "every schedule, by name", body = Schedules),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn schedule_list(State(state): State<ApiState>) -> Result<Json<Schedules>, ApiError> {
    Ok(Json(Schedules { schedules: state.client.schedule_list().await? }))
}

/// Show a schedule.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule")),
    responses(
        (status = 200, description = "the schedule", body = Schedule),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such schedule", body = ErrorBody)))]
pub(super) async fn schedule_get(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.client.schedule_get(&name).await?))
}

/// Delete a schedule (its queued job is withdrawn).
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such schedule", body = ErrorBody)))]
pub(super) async fn schedule_delete(State(state): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.client.schedule_delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause a schedule (its queued job is withdrawn).
#[utoipa::path(post, path = "/v1/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "the schedule")),
    responses(
        (status = 200, description = "the paused schedule", body = Schedule),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such schedule", body = ErrorBody)))]
pub(super) async fn schedule_pause(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.client.schedule_pause(&name).await?))
}

/// Resume a schedule; its next firing counts from now.
#[utoipa::path(post, path = "/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "the schedule")),
    responses(
        (status = 200, description = "the resumed schedule", body = Schedule),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such schedule", body = ErrorBody)))]
pub(super) async fn schedule_resume(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.client.schedule_resume(&name).await?))
}
