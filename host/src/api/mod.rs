//! The HTTP API under `/v1`: JSON in and out, one error shape, bearer-token
//! auth on every route when a token is configured, the engine trigger
//! (`POST /v1/engine/run`) and the OpenAPI document (`/v1/openapi.json`).

mod error;
mod openapi;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use error::ApiError;
pub use openapi::document as openapi_document;

use crate::client::{Client, Enqueue, ScheduleSpec};
use crate::schedule::{CatchUp, Rule};
use crate::engine::NodeHandle;
use crate::runtime::Digest;
use crate::store::{Inserted, JobFilter, JobState, RunFilter, TemplateDefaults};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The client over the database.
    pub client: Client,
    /// The node of this process, for `run_now` enqueues (absent: refused).
    pub node: Option<NodeHandle>,
    /// The bearer token every request must carry, if any.
    pub token: Option<String>,
}

/// The `/v1` router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/components", put(component_put))
        .route("/v1/templates", get(template_list))
        .route("/v1/templates/{name}", get(template_get).put(template_put).delete(template_delete))
        .route("/v1/jobs", get(job_list).post(job_enqueue))
        .route("/v1/jobs/batch", post(job_enqueue_batch))
        .route("/v1/jobs/{id}", get(job_get))
        .route("/v1/jobs/{id}/cancel", post(job_cancel))
        .route("/v1/runs", get(run_list))
        .route("/v1/runs/{id}", get(run_get))
        .route("/v1/schedules", get(schedule_list))
        .route("/v1/schedules/{name}", get(schedule_get).put(schedule_put).delete(schedule_delete))
        .route("/v1/schedules/{name}/pause", post(schedule_pause))
        .route("/v1/schedules/{name}/resume", post(schedule_resume))
        .route("/v1/stats", get(stats))
        .route("/v1/nodes", get(nodes))
        .route("/v1/engine/run", post(engine_run))
        .fallback(|| async { ApiError::not_found("no such route; see GET /v1/openapi.json") })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                message: "this elihu requires `Authorization: Bearer <token>` with the token it was started with".into(),
                details: Value::Null,
            }
            .into_response();
        }
    }
    next.run(request).await
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not what this route takes: {e}")))
}

fn duration(field: &str, text: &Option<String>) -> Result<Option<std::time::Duration>, ApiError> {
    text.as_deref()
        .map(crate::units::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn size(field: &str, text: &Option<String>) -> Result<Option<u64>, ApiError> {
    text.as_deref().map(crate::units::parse_size).transpose().map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

async fn health(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({"status": "ok", "node": state.node.as_ref().map(|n| n.id().to_string())}))
}

async fn openapi() -> Json<Value> {
    Json(openapi::document())
}

async fn component_put(State(state): State<ApiState>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let digest = state.client.component_put(&body).await?;
    Ok((StatusCode::CREATED, Json(json!({"digest": digest}))))
}

async fn template_list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"templates": state.client.template_list().await?})))
}

async fn template_get(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(state.client.template_get(&name).await?).expect("templates serialise")))
}

/// The body of `PUT /v1/templates/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    digest: String,
    schema: Value,
    queue: Option<String>,
    priority: Option<i32>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
    memory: Option<String>,
    backoff_base: Option<String>,
    backoff_max: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

async fn template_put(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
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
    let template = state.client.template_put(&name, &digest, &body.schema, &defaults, &body.config).await?;
    Ok(Json(serde_json::to_value(template).expect("templates serialise")))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn template_delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    state.client.template_delete(&name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One job in `POST /v1/jobs` and `POST /v1/jobs/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
    template: String,
    #[serde(default = "empty_object")]
    context: Value,
    priority: Option<i32>,
    queue: Option<String>,
    /// RFC 3339.
    run_at: Option<String>,
    /// A duration: `30s`.
    delay: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
    memory: Option<String>,
    unique_key: Option<String>,
    /// Run it on this node at once, ahead of the queue.
    #[serde(default)]
    run_now: bool,
}

fn empty_object() -> Value {
    json!({})
}

impl EnqueueBody {
    fn into_request(self) -> Result<Enqueue, ApiError> {
        let run_at = match &self.run_at {
            Some(text) => Some(crate::clock::parse_time(text).ok_or_else(|| {
                ApiError::bad_request(format!("run_at: `{text}` is not an RFC 3339 time such as 2026-11-22T10:00:00Z"))
            })?),
            None => None,
        };
        Ok(Enqueue {
            template: self.template,
            context: self.context,
            priority: self.priority,
            queue: self.queue,
            run_at,
            delay: duration("delay", &self.delay)?,
            max_attempts: self.max_attempts,
            timeout: duration("timeout", &self.timeout)?,
            memory: size("memory", &self.memory)?,
            unique_key: self.unique_key,
        })
    }
}

fn inserted_json(inserted: Inserted) -> Value {
    match inserted {
        Inserted::New(id) => json!({"id": id, "status": "new"}),
        Inserted::Existing(id) => json!({"id": id, "status": "existing"}),
    }
}

async fn job_enqueue(State(state): State<ApiState>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let body: EnqueueBody = parse(&body)?;
    let run_now = body.run_now;
    let request = body.into_request()?;
    let inserted = if run_now {
        let node = state.node.as_ref().ok_or_else(|| ApiError::bad_request("run_now needs a node; this server runs none"))?;
        node.enqueue_and_run(request).await?
    } else {
        state.client.enqueue(request).await?
    };
    let status = if matches!(inserted, Inserted::New(_)) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(inserted_json(inserted))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    jobs: Vec<EnqueueBody>,
}

async fn job_enqueue_batch(State(state): State<ApiState>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let body: BatchBody = parse(&body)?;
    let mut requests = Vec::with_capacity(body.jobs.len());
    for (index, job) in body.jobs.into_iter().enumerate() {
        if job.run_now {
            return Err(ApiError::bad_request(format!("jobs[{index}]: run_now is not available in a batch")));
        }
        requests.push(job.into_request().map_err(|mut e| {
            e.message = format!("jobs[{index}]: {}", e.message);
            e
        })?);
    }
    let inserted = state.client.enqueue_batch(requests).await?;
    Ok((StatusCode::CREATED, Json(json!({"jobs": inserted.into_iter().map(inserted_json).collect::<Vec<_>>()}))))
}

#[derive(Debug, Deserialize)]
struct JobQuery {
    template: Option<String>,
    queue: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn job_list(State(state): State<ApiState>, Query(q): Query<JobQuery>) -> Result<Json<Value>, ApiError> {
    let job_state = match q.state.as_deref() {
        None => None,
        Some("available") => Some(JobState::Available),
        Some("running") => Some(JobState::Running),
        Some(other) => return Err(ApiError::bad_request(format!("state: `{other}` is not `available` or `running`"))),
    };
    let filter = JobFilter { template: q.template, queue: q.queue, state: job_state, limit: q.limit };
    Ok(Json(json!({"jobs": state.client.job_list(&filter).await?})))
}

async fn job_get(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    match state.client.job_get(id).await? {
        Some(job) => Ok(Json(serde_json::to_value(job).expect("jobs serialise"))),
        None => Err(ApiError::not_found(format!(
            "there is no queued or running job {id}; a finished job's history is under GET /v1/runs?job_id={id}"
        ))),
    }
}

async fn job_cancel(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    match state.client.cancel(id).await? {
        crate::store::CancelOutcome::NotFound => Err(ApiError::not_found(format!("there is no queued or running job {id}"))),
        outcome => Ok(Json(json!({"id": id, "outcome": outcome}))),
    }
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    job_id: Option<i64>,
    template: Option<String>,
    limit: Option<i64>,
}

async fn run_list(State(state): State<ApiState>, Query(q): Query<RunQuery>) -> Result<Json<Value>, ApiError> {
    let filter = RunFilter { job_id: q.job_id, template: q.template, limit: q.limit };
    Ok(Json(json!({"runs": state.client.run_list(&filter).await?})))
}

async fn run_get(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    match state.client.run_get(id).await? {
        Some(run) => Ok(Json(serde_json::to_value(run).expect("runs serialise"))),
        None => Err(ApiError::not_found(format!("there is no run {id}"))),
    }
}

async fn stats(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"templates": state.client.stats().await?})))
}

async fn nodes(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"nodes": state.client.node_list().await?})))
}

async fn engine_run(State(state): State<ApiState>) -> impl IntoResponse {
    state.client.trigger();
    (StatusCode::ACCEPTED, Json(json!({"triggered": true})))
}

/// The body of `PUT /v1/schedules/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    template: String,
    #[serde(default = "empty_object")]
    context: Value,
    /// Six fields: second minute hour day-of-month month day-of-week.
    cron: Option<String>,
    /// A duration: `5m`.
    every: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    catch_up: CatchUp,
}

async fn schedule_put(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body: ScheduleBody = parse(&body)?;
    let every = duration("every", &body.every)?;
    let rule = Rule::from_parts(body.cron.as_deref(), every, body.timezone.as_deref()).map_err(crate::client::ClientError::from)?;
    let spec = ScheduleSpec { name, template: body.template, context: body.context, rule, catch_up: body.catch_up };
    Ok(Json(serde_json::to_value(state.client.schedule_put(spec).await?).expect("schedules serialise")))
}

async fn schedule_list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"schedules": state.client.schedule_list().await?})))
}

async fn schedule_get(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(state.client.schedule_get(&name).await?).expect("schedules serialise")))
}

async fn schedule_delete(State(state): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.client.schedule_delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn schedule_pause(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(state.client.schedule_pause(&name).await?).expect("schedules serialise")))
}

async fn schedule_resume(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(state.client.schedule_resume(&name).await?).expect("schedules serialise")))
}
