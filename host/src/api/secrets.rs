//! Secrets over HTTP: set (the value in the body, sealed by the node under
//! its key), list (names and times only) and delete. No route ever returns
//! a value.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::{ApiError, ApiState, ErrorBody, parse};
use crate::store::SecretInfo;

/// Every secret, without values.
#[derive(Serialize, ToSchema)]
pub(super) struct Secrets {
    secrets: Vec<SecretInfo>,
}

/// List secrets: names and times, never values.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses(
        (status = 200, description = "every secret, by name", body = Secrets),
        (status = 401, description = "no or wrong token", body = ErrorBody)))]
pub(super) async fn secret_list(State(state): State<ApiState>) -> Result<Json<Secrets>, ApiError> {
    Ok(Json(Secrets { secrets: state.client.secret_list().await? }))
}

/// The body of `PUT /v1/secrets/{name}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretBody {
    /// The value: 4 B to 16 KiB of text.
    value: String,
}

/// Whether a set created the secret.
#[derive(Serialize, ToSchema)]
pub(super) struct SecretSet {
    /// The secret's name.
    name: String,
    /// True when it did not exist before.
    created: bool,
}

/// Set a secret (create or replace); the node seals it under its key.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "the secret")),
    request_body = SecretBody,
    responses(
        (status = 200, description = "stored, sealed", body = SecretSet),
        (status = 400, description = "a bad name or value", body = ErrorBody),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 503, description = "this node has no secrets key, or another key", body = ErrorBody)))]
pub(super) async fn secret_put(State(state): State<ApiState>, Path(name): Path<String>, body: Bytes) -> Result<Json<SecretSet>, ApiError> {
    let body: SecretBody = parse(&body)?;
    let value = Zeroizing::new(body.value);
    let created = state.client.secret_set(&name, value.as_bytes()).await?;
    Ok(Json(SecretSet { name, created }))
}

/// Delete a secret (refused while a template uses it).
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "the secret")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no or wrong token", body = ErrorBody),
        (status = 404, description = "no such secret", body = ErrorBody),
        (status = 409, description = "a template uses it", body = ErrorBody)))]
pub(super) async fn secret_delete(State(state): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.client.secret_delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
