//! `GET /metrics`: this process's Prometheus metrics in the OpenMetrics text
//! format (see `crate::metrics`), behind the same token as the API.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// The metrics, with the cluster's queue gauges read (at most every 5 s).
pub(super) async fn scrape(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let client = &state.client;
    client.metrics().refresh_queues(client.store().as_ref(), client.clock().now()).await.map_err(crate::client::ClientError::from)?;
    let body = client.metrics().encode();
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}
