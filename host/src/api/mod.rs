//! The HTTP API under `/v1`: JSON in and out, one error shape, bearer-token
//! auth on every route when a token is configured, the engine trigger
//! (`POST /v1/engine/run`) and the OpenAPI document (`/v1/openapi.json`),
//! which utoipa derives from the handlers and their types as the router is
//! built. Handlers live by concern: `templates`, `jobs` (and runs),
//! `schedules`, `queues` (settings, pause, resume), `secrets`, `service`
//! (health, the document, stats, nodes, the trigger), `events` (live events
//! over SSE), `metrics` (`GET /metrics`).

mod error;
mod events;
mod jobs;
mod metrics;
mod queues;
mod schedules;
mod secrets;
mod service;
mod templates;

use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody, ErrorDetail};

use crate::client::Client;
use crate::engine::NodeHandle;

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

#[derive(OpenApi)]
#[openapi(
    info(title = "elihu", description = "A job runner whose jobs are WebAssembly components."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Adds the bearer scheme every route is guarded by when a token is set.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// Every documented route: the router and the OpenAPI document both come from here.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(service::health))
        .routes(routes!(service::openapi))
        .routes(routes!(templates::component_put))
        .routes(routes!(templates::template_list))
        .routes(routes!(templates::template_get, templates::template_put, templates::template_delete))
        .routes(routes!(jobs::job_list, jobs::job_enqueue))
        .routes(routes!(jobs::job_enqueue_batch))
        .routes(routes!(jobs::job_get))
        .routes(routes!(jobs::job_cancel))
        .routes(routes!(jobs::run_list))
        .routes(routes!(jobs::run_get))
        .routes(routes!(schedules::schedule_list))
        .routes(routes!(schedules::schedule_get, schedules::schedule_put, schedules::schedule_delete))
        .routes(routes!(schedules::schedule_pause))
        .routes(routes!(schedules::schedule_resume))
        .routes(routes!(secrets::secret_list))
        .routes(routes!(secrets::secret_put, secrets::secret_delete))
        .routes(routes!(queues::queue_list))
        .routes(routes!(queues::queue_get, queues::queue_set))
        .routes(routes!(queues::queue_pause))
        .routes(routes!(queues::queue_resume))
        .routes(routes!(service::stats))
        .routes(routes!(service::nodes))
        .routes(routes!(service::engine_run))
}

/// The OpenAPI 3.1 document of the `/v1` routes, served at `/v1/openapi.json`.
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| routes().into_openapi())
}

/// The `/v1` router, with the dashboard at `/` (see [`crate::dashboard`]).
pub fn router(state: ApiState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .route("/v1/events", axum::routing::get(events::stream))
        .route("/metrics", axum::routing::get(metrics::scrape))
        .fallback(|| async { ApiError::not_found("no such route; see GET /v1/openapi.json") })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone())
        .merge(crate::dashboard::router(state))
}

async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // A page of another site must not change anything through a browser
    // that can reach this elihu (a token-less one on loopback, above all):
    // changes come from programs (no Origin) or this elihu's own pages.
    if !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD)
        && !crate::dashboard::same_origin_request(request.headers())
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "a request from another site's page is refused; call the API from a program (no Origin header) or this elihu's dashboard",
        )
        .into_response();
    }
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // A dashboard page streams its job's events with the session cookie
        // (a browser's EventSource cannot send a bearer token); reading only.
        let session = request.method() == axum::http::Method::GET
            && request.uri().path() == "/v1/events"
            && crate::dashboard::session_cookie_valid(request.headers(), token);
        if given != Some(token.as_str()) && !session {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this elihu requires `Authorization: Bearer <token>` with the token it was started with",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// A JSON body, refused with a message naming what is wrong.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not what this route takes: {e}")))
}

/// An optional duration field (`30s`).
fn duration(field: &str, text: &Option<String>) -> Result<Option<std::time::Duration>, ApiError> {
    text.as_deref()
        .map(crate::units::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

/// An optional size field (`64MiB`).
fn size(field: &str, text: &Option<String>) -> Result<Option<u64>, ApiError> {
    text.as_deref().map(crate::units::parse_size).transpose().map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

/// An empty JSON object, the default context.
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
