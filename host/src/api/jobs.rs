//! Jobs and runs over HTTP: enqueue one (optionally running it on this node
//! at once) or a batch, list, show and cancel jobs, list and show runs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState, ErrorBody, duration, empty_object, parse, size};
use crate::client::Enqueue;
use crate::grants::AllowedHost;
use crate::model::{JobId, Millis, RunId};
use crate::store::{CancelOutcome, Inserted, Job, JobFilter, JobState, Run, RunFilter, RunStatus};

/// One job in `POST /v1/jobs` and `POST /v1/jobs/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnqueueBody {
    /// The template.
    template: String,
    /// The context, checked against the template's schema (`{}`).
    #[serde(default = "empty_object")]
    context: Value,
    /// Lower runs first [the template's].
    priority: Option<i32>,
    /// The queue [the template's].
    queue: Option<String>,
    /// Not before this time (RFC 3339).
    #[schema(format = DateTime)]
    run_at: Option<String>,
    /// Not before this delay from now (`30s`).
    #[schema(examples("30s"))]
    delay: Option<String>,
    /// Attempts in all [the template's].
    max_attempts: Option<u32>,
    /// Timeout of each run [the template's].
    timeout: Option<String>,
    /// Memory limit of each run [the template's].
    memory: Option<String>,
    /// While a job with this key is queued or running, answer with it instead.
    unique_key: Option<String>,
    /// Narrows the template's allowed hosts for this job (each entry must be
    /// covered by one of the template's) [the template's].
    #[schema(value_type = Option<Vec<String>>, examples(json!(["https://api.example.com"])))]
    allowed_hosts: Option<Vec<AllowedHost>>,
    /// Run it on this node at once, ahead of the queue.
    #[serde(default)]
    run_now: bool,
    /// The W3C trace context of the caller (`00-<trace id>-<span id>-<flags>`):
    /// the job's runs are traced as its children. The `traceparent` header
    /// does the same for every job of the request; this field wins.
    traceparent: Option<String>,
}

impl EnqueueBody {
    fn into_request(self) -> Result<Enqueue, ApiError> {
        let run_at = match &self.run_at {
            Some(text) => Some(Millis::parse_rfc3339(text).ok_or_else(|| {
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
            allowed_hosts: self.allowed_hosts,
            traceparent: self.traceparent,
        })
    }
}

/// Whether an enqueue added a job.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Added {
    /// A new job.
    New,
    /// A job with the same unique key was already queued or running.
    Existing,
}

/// What an enqueue did.
#[derive(Serialize, ToSchema)]
pub(super) struct Enqueued {
    /// The job.
    id: JobId,
    /// New, or the job already holding the unique key.
    status: Added,
}

impl From<Inserted> for Enqueued {
    fn from(inserted: Inserted) -> Self {
        match inserted {
            Inserted::New(id) => Enqueued { id, status: Added::New },
            Inserted::Existing(id) => Enqueued { id, status: Added::Existing },
        }
    }
}

/// Enqueue a job (its context is checked against the template's schema).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = EnqueueBody,
    responses(
        (status = 201, description = "a new job", body = Enqueued),
        (status = 200, description = "the job already holding the unique key", body = Enqueued),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
        (status = 422, description = "the context breaks the schema", body = ErrorBody)))]
pub(super) async fn job_enqueue(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let body: EnqueueBody = parse(&body)?;
    let run_now = body.run_now;
    let mut request = body.into_request()?;
    request.traceparent = request.traceparent.or(traceparent(&headers)?);
    let inserted = if run_now {
        let node = state.node.as_ref().ok_or_else(|| ApiError::bad_request("run_now needs a node; this server runs none"))?;
        node.enqueue_and_run(request).await?
    } else {
        state.client.enqueue(request).await?
    };
    let status = if matches!(inserted, Inserted::New(_)) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(inserted.into())))
}

/// The body of `POST /v1/jobs/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchBody {
    /// The jobs, in order.
    jobs: Vec<EnqueueBody>,
}

/// What a batch enqueue did, job by job.
#[derive(Serialize, ToSchema)]
pub(super) struct EnqueuedBatch {
    jobs: Vec<Enqueued>,
}

/// Enqueue many jobs in one transaction: all or none.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs",
    request_body = BatchBody,
    responses(
        (status = 201, description = "every job, in order", body = EnqueuedBatch),
        (status = 400, description = "a field is invalid", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
        (status = 422, description = "a context breaks its schema", body = ErrorBody)))]
pub(super) async fn job_enqueue_batch(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<EnqueuedBatch>), ApiError> {
    let body: BatchBody = parse(&body)?;
    let header = traceparent(&headers)?;
    let mut requests = Vec::with_capacity(body.jobs.len());
    for (index, job) in body.jobs.into_iter().enumerate() {
        if job.run_now {
            return Err(ApiError::bad_request(format!("jobs[{index}]: run_now is not available in a batch")));
        }
        let mut request = job.into_request().map_err(|mut e| {
            e.message = format!("jobs[{index}]: {}", e.message);
            e
        })?;
        request.traceparent = request.traceparent.or_else(|| header.clone());
        requests.push(request);
    }
    let inserted = state.client.enqueue_batch(requests).await?;
    Ok((StatusCode::CREATED, Json(EnqueuedBatch { jobs: inserted.into_iter().map(Enqueued::from).collect() })))
}

/// Which jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct JobQuery {
    /// Only this template.
    template: Option<String>,
    /// Only this queue.
    queue: Option<String>,
    /// Only `available` or `running` jobs.
    state: Option<String>,
    /// At most this many (100).
    limit: Option<i64>,
}

/// Queued and running jobs.
#[derive(Serialize, ToSchema)]
pub(super) struct Jobs {
    jobs: Vec<Job>,
}

/// List queued and running jobs, in claim order.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(JobQuery),
    responses(
        (status = 200, description = "the jobs", body = Jobs),
        (status = 400, description = "a filter is invalid", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn job_list(State(state): State<ApiState>, Query(q): Query<JobQuery>) -> Result<Json<Jobs>, ApiError> {
    let job_state = match q.state.as_deref() {
        None => None,
        Some(text) => Some(
            JobState::parse(text).ok_or_else(|| ApiError::bad_request(format!("state: `{text}` is not `available` or `running`")))?,
        ),
    };
    let filter = JobFilter { template: q.template, queue: q.queue, state: job_state, limit: q.limit };
    Ok(Json(Jobs { jobs: state.client.job_list(&filter).await? }))
}

/// Show a queued or running job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "the job")),
    responses(
        (status = 200, description = "the job", body = Job),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "not queued or running", body = ErrorBody)))]
pub(super) async fn job_get(State(state): State<ApiState>, Path(id): Path<JobId>) -> Result<Json<Job>, ApiError> {
    match state.client.job_get(id).await? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::not_found(format!(
            "there is no queued or running job {id}; a finished job's history is under GET /v1/runs?job_id={id}"
        ))),
    }
}

/// What a cancel did.
#[derive(Serialize, ToSchema)]
pub(super) struct Cancelled {
    /// The job.
    id: JobId,
    /// Removed from its queue, or its running run asked to stop.
    outcome: CancelOutcome,
}

/// Cancel a job: removed if queued, interrupted if running.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, description = "the job")),
    responses(
        (status = 200, description = "what the cancel did", body = Cancelled),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "not queued or running", body = ErrorBody)))]
pub(super) async fn job_cancel(State(state): State<ApiState>, Path(id): Path<JobId>) -> Result<Json<Cancelled>, ApiError> {
    match state.client.cancel(id).await? {
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("there is no queued or running job {id}"))),
        outcome => Ok(Json(Cancelled { id, outcome })),
    }
}

/// Which runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunQuery {
    /// Only this job's runs.
    job_id: Option<JobId>,
    /// Only this template's runs.
    template: Option<String>,
    /// Only runs in flight (`running`) or over (`done`).
    status: Option<RunStatus>,
    /// At most this many (100).
    limit: Option<i64>,
}

/// Runs, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct Runs {
    runs: Vec<Run>,
}

/// List runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    params(RunQuery),
    responses(
        (status = 200, description = "the runs", body = Runs),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn run_list(State(state): State<ApiState>, Query(q): Query<RunQuery>) -> Result<Json<Runs>, ApiError> {
    let filter = RunFilter { job_id: q.job_id, template: q.template, status: q.status, limit: q.limit };
    Ok(Json(Runs { runs: state.client.run_list(&filter).await? }))
}

/// Show a run with its output and logs.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "the run")),
    responses(
        (status = 200, description = "the run", body = Run),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such run", body = ErrorBody)))]
pub(super) async fn run_get(State(state): State<ApiState>, Path(id): Path<RunId>) -> Result<Json<Run>, ApiError> {
    match state.client.run_get(id).await? {
        Some(run) => Ok(Json(run)),
        None => Err(ApiError::not_found(format!("there is no run {id}"))),
    }
}

/// The `traceparent` header of a request, if it has one.
fn traceparent(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("traceparent")
        .map(|v| v.to_str().map(str::to_string).map_err(|_| ApiError::bad_request("the traceparent header is not text")))
        .transpose()
}
