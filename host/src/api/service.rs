//! The service itself over HTTP: health, the OpenAPI document, stats (per
//! template and per queue), the nodes working the database, and the engine
//! trigger.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiState, ErrorBody};
use crate::store::{NodeInfo, QueueInfo, TemplateStats};

/// This server is up.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok`.
    status: &'static str,
    /// The id of the node this server runs, if any.
    node: Option<String>,
}

/// Liveness, and this server's node id.
#[utoipa::path(get, path = "/v1/health", tag = "service",
    responses(
        (status = 200, description = "up", body = Health),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn health(State(state): State<ApiState>) -> Json<Health> {
    Json(Health { status: "ok", node: state.node.as_ref().map(|n| n.id().to_string()) })
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service",
    responses(
        (status = 200, description = "the OpenAPI 3.1 document of these routes", body = Object),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(super::openapi_document())
}

/// Per-template and per-queue figures.
#[derive(Serialize, ToSchema)]
pub(super) struct Stats {
    templates: Vec<TemplateStats>,
    /// Every queue: settings, depth, running jobs, what each setting holds back.
    queues: Vec<QueueInfo>,
}

/// Per-template counts, run duration p50/p95 and queue depth; per-queue depth and limits.
#[utoipa::path(get, path = "/v1/stats", tag = "service",
    responses(
        (status = 200, description = "per template", body = Stats),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(Stats { templates: state.client.stats().await?, queues: state.client.queue_list().await? }))
}

/// The nodes working this database.
#[derive(Serialize, ToSchema)]
pub(super) struct Nodes {
    nodes: Vec<NodeInfo>,
}

/// Nodes working this database.
#[utoipa::path(get, path = "/v1/nodes", tag = "service",
    responses(
        (status = 200, description = "by start time", body = Nodes),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn nodes(State(state): State<ApiState>) -> Result<Json<Nodes>, ApiError> {
    Ok(Json(Nodes { nodes: state.client.node_list().await? }))
}

/// The node was woken.
#[derive(Serialize, ToSchema)]
pub(super) struct Triggered {
    /// Always true.
    triggered: bool,
}

/// Wake this server's node now (the engine trigger).
#[utoipa::path(post, path = "/v1/engine/run", tag = "service",
    responses(
        (status = 202, description = "woken", body = Triggered),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn engine_run(State(state): State<ApiState>) -> (StatusCode, Json<Triggered>) {
    state.client.trigger();
    (StatusCode::ACCEPTED, Json(Triggered { triggered: true }))
}
