//! Components and templates over HTTP: upload a component, create, update,
//! show, list and delete templates.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState, ErrorBody, duration, parse, size};
use crate::grants::Grants;
use crate::model::{Digest, TemplateLimits};
use crate::store::{Template, TemplateDefaults, TemplateSettings};

/// The bytes of a `.wasm` component.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub(super) struct WasmBytes(#[allow(dead_code)] Vec<u8>);

/// A stored component.
#[derive(Serialize, ToSchema)]
pub(super) struct Stored {
    /// The sha256 of its bytes: what templates name it by.
    digest: Digest,
}

/// Upload a job component; it must export elihu's job world.
#[utoipa::path(put, path = "/v1/components", tag = "templates",
    request_body(content = WasmBytes, content_type = "application/wasm"),
    responses(
        (status = 201, description = "stored (or already there)", body = Stored),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 422, description = "not a component of the job world", body = ErrorBody)))]
pub(super) async fn component_put(State(state): State<ApiState>, body: Bytes) -> Result<(StatusCode, Json<Stored>), ApiError> {
    let digest = state.client.component_put(&body).await?;
    Ok((StatusCode::CREATED, Json(Stored { digest })))
}

/// Every template.
#[derive(Serialize, ToSchema)]
pub(super) struct Templates {
    templates: Vec<Template>,
}

/// List templates.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses(
        (status = 200, description = "every template, by name", body = Templates),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn template_list(State(state): State<ApiState>) -> Result<Json<Templates>, ApiError> {
    Ok(Json(Templates { templates: state.client.template_list().await? }))
}

/// Show a template.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "the template")),
    responses(
        (status = 200, description = "the template", body = Template),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody)))]
pub(super) async fn template_get(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Template>, ApiError> {
    Ok(Json(state.client.template_get(&name).await?))
}

/// The body of `PUT /v1/templates/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TemplateBody {
    /// The sha256 of an uploaded component.
    digest: String,
    /// The JSON Schema of the jobs' contexts.
    schema: serde_json::Value,
    /// The queue its jobs go to (`default`).
    queue: Option<String>,
    /// Lower runs first (0).
    priority: Option<i32>,
    /// Attempts in all (3).
    max_attempts: Option<u32>,
    /// Timeout of each run (`30s`).
    #[schema(examples("30s"))]
    timeout: Option<String>,
    /// Memory limit of each run (`64MiB`).
    #[schema(examples("64MiB"))]
    memory: Option<String>,
    /// First retry delay, doubling per attempt (`1s`).
    backoff_base: Option<String>,
    /// Longest retry delay (`1h`).
    backoff_max: Option<String>,
    /// Values the jobs read with `config(key)`.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// What its jobs may reach and read: allowed hosts, headers the host
    /// adds (`{{secret:NAME}}` placeholders), readable secrets (nothing).
    #[serde(default)]
    grants: Grants,
    /// Its own limits, each at most the node's (the node's).
    #[serde(default)]
    limits: TemplateLimits,
}

/// Create or update a template from an uploaded component.
#[utoipa::path(put, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "the template")),
    request_body = TemplateBody,
    responses(
        (status = 200, description = "the template as stored", body = Template),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 422, description = "unknown component or invalid schema", body = ErrorBody)))]
pub(super) async fn template_put(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Result<Json<Template>, ApiError> {
    let body: TemplateBody = parse(&body)?;
    let digest = Digest::parse(&body.digest)
        .ok_or_else(|| ApiError::bad_request(format!("digest: `{}` is not a sha256 hex digest", body.digest)))?;
    let base = TemplateDefaults::default();
    let ms = |d: Option<std::time::Duration>, default: u64| d.map_or(default, |d| d.as_millis() as u64);
    let defaults = TemplateDefaults {
        queue: body.queue.unwrap_or(base.queue),
        priority: body.priority.unwrap_or(base.priority),
        max_attempts: body.max_attempts.unwrap_or(base.max_attempts),
        timeout_ms: ms(duration("timeout", &body.timeout)?, base.timeout_ms),
        memory_bytes: size("memory", &body.memory)?.unwrap_or(base.memory_bytes),
        backoff_base_ms: ms(duration("backoff_base", &body.backoff_base)?, base.backoff_base_ms),
        backoff_max_ms: ms(duration("backoff_max", &body.backoff_max)?, base.backoff_max_ms),
    };
    let settings = TemplateSettings { config: body.config, grants: body.grants, limits: body.limits };
    Ok(Json(state.client.template_put(&name, &digest, &body.schema, &defaults, &settings).await?))
}

/// How to delete a template.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// Delete even with jobs: queued ones are removed, running ones cancelled.
    #[serde(default)]
    force: bool,
}

/// Delete a template (refused while it has jobs, unless forced).
#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "the template"), DeleteQuery),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
        (status = 409, description = "it still has jobs", body = ErrorBody)))]
pub(super) async fn template_delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    state.client.template_delete(&name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}
