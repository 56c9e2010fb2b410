//! The one shape of every API error: `{"error": {"code", "message", "details"}}`,
//! and how each client error maps to a status and a code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::client::ClientError;
use crate::runtime::LoadError;
use crate::schema::SchemaError;
use crate::store::StoreError;

/// An error answered by the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`context_rejected`, `unknown_template`, ...).
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
    /// Structured details (the schema violations, the batch index, ...).
    pub details: Value,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, in an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code (`context_rejected`, `unknown_template`, ...).
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
    /// Structured details (the schema violations, the batch index, ...), or null.
    pub details: Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Value::Null }
    }

    /// A 400 naming the problem.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 404 naming what was not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message, details: self.details } };
        (self.status, Json(body)).into_response()
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        let (status, code, details) = classify(&e);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %e, "request failed");
        }
        ApiError { status, code, message: e.to_string(), details }
    }
}

fn classify(e: &ClientError) -> (StatusCode, &'static str, Value) {
    match e {
        ClientError::Schema(SchemaError::ContextRejected(v)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "context_rejected", json!({"violations": v}))
        }
        ClientError::Schema(SchemaError::InvalidSchema(v)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_schema", json!({"violations": v}))
        }
        ClientError::Schema(SchemaError::NotJson { .. }) => (StatusCode::BAD_REQUEST, "bad_request", Value::Null),
        ClientError::Component(load) => {
            let kind = match load {
                LoadError::NotWasm => "not_wasm",
                LoadError::CoreModule => "core_module",
                LoadError::Compile(_) => "does_not_compile",
                LoadError::MissingExport { .. } => "missing_export",
                LoadError::MistypedExport { .. } => "mistyped_export",
                LoadError::UnknownImport { .. } => "unknown_import",
            };
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_component", json!({"kind": kind}))
        }
        ClientError::UnknownTemplate(_) | ClientError::Store(StoreError::UnknownTemplate(_)) => {
            (StatusCode::NOT_FOUND, "unknown_template", Value::Null)
        }
        ClientError::Schedule(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_schedule", Value::Null),
        ClientError::UnknownSchedule(_) => (StatusCode::NOT_FOUND, "unknown_schedule", Value::Null),
        ClientError::UnknownComponent(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_component", Value::Null),
        ClientError::Invalid { field, .. } => (StatusCode::BAD_REQUEST, "invalid", json!({"field": field})),
        ClientError::Batch { index, source } => {
            let (status, code, details) = classify(source);
            (status, code, json!({"index": index, "job": details}))
        }
        ClientError::Store(StoreError::TemplateInUse { jobs, .. }) => {
            (StatusCode::CONFLICT, "template_in_use", json!({"jobs": jobs}))
        }
        ClientError::Grant(_) => (StatusCode::BAD_REQUEST, "invalid_grant", Value::Null),
        ClientError::Limit(_) => (StatusCode::BAD_REQUEST, "invalid_limit", Value::Null),
        ClientError::Secret(_) => (StatusCode::BAD_REQUEST, "invalid_secret", Value::Null),
        ClientError::UnknownSecret { secret, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_secret", json!({"secret": secret})),
        ClientError::NoSuchSecret(_) => (StatusCode::NOT_FOUND, "unknown_secret", Value::Null),
        ClientError::SecretInUse { .. } => (StatusCode::CONFLICT, "secret_in_use", Value::Null),
        ClientError::NoSecretsKey { .. } | ClientError::SecretsKeyMissing { .. } | ClientError::WrongSecretsKey { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "no_secrets_key", Value::Null)
        }
        ClientError::Store(_) | ClientError::Runtime(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Value::Null),
    }
}
