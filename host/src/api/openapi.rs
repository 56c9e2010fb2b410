//! The OpenAPI 3.1 document of the `/v1` routes, served at `/v1/openapi.json`.
//! The test suite checks that every operation listed here is routed.

use serde_json::{Value, json};

fn error_responses(codes: &[&str]) -> Value {
    let mut responses = serde_json::Map::new();
    for code in codes {
        responses.insert(code.to_string(), json!({"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    }
    Value::Object(responses)
}

fn op(summary: &str, ok: &str, errors: &[&str]) -> Value {
    let mut responses = error_responses(errors);
    responses[ok] = json!({"description": "success", "content": {"application/json": {}}});
    json!({"summary": summary, "responses": responses})
}

fn with(mut op: Value, key: &str, value: Value) -> Value {
    op[key] = value;
    op
}

fn path_param(name: &str, ty: &str) -> Value {
    json!([{"name": name, "in": "path", "required": true, "schema": {"type": ty}}])
}

fn query_params(names: &[(&str, &str)]) -> Value {
    Value::Array(names.iter().map(|(n, t)| json!({"name": n, "in": "query", "required": false, "schema": {"type": t}})).collect())
}

fn json_body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "elihu", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A job runner whose jobs are WebAssembly components."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {"get": op("Liveness, and this server's node id", "200", &["401"])},
            "/v1/openapi.json": {"get": op("This document", "200", &["401"])},
            "/v1/components": {"put": with(op("Upload a job component (.wasm bytes); it must export elihu's job world", "201", &["401", "422"]),
                "requestBody", json!({"required": true, "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}}))},
            "/v1/templates": {"get": op("List templates", "200", &["401"])},
            "/v1/templates/{name}": {
                "parameters": path_param("name", "string"),
                "get": op("Show a template", "200", &["401", "404"]),
                "put": with(op("Create or update a template from an uploaded component", "200", &["400", "401", "422"]), "requestBody", json_body("TemplateBody")),
                "delete": with(op("Delete a template (refused while it has jobs, unless force)", "204", &["401", "404", "409"]),
                    "parameters", query_params(&[("force", "boolean")]))
            },
            "/v1/jobs": {
                "get": with(op("List queued and running jobs", "200", &["400", "401"]), "parameters",
                    query_params(&[("template", "string"), ("queue", "string"), ("state", "string"), ("limit", "integer")])),
                "post": with(op("Enqueue a job (the context is checked against the template's schema)", "201", &["400", "401", "404", "422"]),
                    "requestBody", json_body("EnqueueBody"))
            },
            "/v1/jobs/batch": {"post": with(op("Enqueue many jobs in one transaction: all or none", "201", &["400", "401", "404", "422"]),
                "requestBody", json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["jobs"],
                    "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/EnqueueBody"}}}}}}}))},
            "/v1/jobs/{id}": {"parameters": path_param("id", "integer"), "get": op("Show a queued or running job", "200", &["401", "404"])},
            "/v1/jobs/{id}/cancel": {"parameters": path_param("id", "integer"),
                "post": op("Cancel a job: removed if queued, interrupted if running", "200", &["401", "404"])},
            "/v1/runs": {"get": with(op("List runs, newest first", "200", &["401"]), "parameters",
                query_params(&[("job_id", "integer"), ("template", "string"), ("limit", "integer")]))},
            "/v1/runs/{id}": {"parameters": path_param("id", "integer"), "get": op("Show a run with its output and logs", "200", &["401", "404"])},
            "/v1/schedules": {"get": op("List schedules with their next firing", "200", &["401"])},
            "/v1/schedules/{name}": {
                "parameters": path_param("name", "string"),
                "get": op("Show a schedule", "200", &["401", "404"]),
                "put": with(op("Create or replace a schedule (cron with seconds, or an interval)", "200", &["400", "401", "404", "422"]),
                    "requestBody", json_body("ScheduleBody")),
                "delete": op("Delete a schedule", "204", &["401", "404"])
            },
            "/v1/schedules/{name}/pause": {"parameters": path_param("name", "string"),
                "post": op("Pause a schedule (its queued job is withdrawn)", "200", &["401", "404"])},
            "/v1/schedules/{name}/resume": {"parameters": path_param("name", "string"),
                "post": op("Resume a schedule; its next firing counts from now", "200", &["401", "404"])},
            "/v1/stats": {"get": op("Per-template counts, run duration p50/p95 and queue depth", "200", &["401"])},
            "/v1/nodes": {"get": op("Nodes working this database", "200", &["401"])},
            "/v1/engine/run": {"post": op("Wake this server's node now (the engine trigger)", "202", &["401"])}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}},
                "TemplateBody": {"type": "object", "required": ["digest", "schema"], "additionalProperties": false, "properties": {
                    "digest": {"type": "string", "description": "sha256 of an uploaded component"},
                    "schema": {"type": "object", "description": "JSON Schema of the jobs' contexts"},
                    "queue": {"type": "string"}, "priority": {"type": "integer", "description": "lower runs first"},
                    "max_attempts": {"type": "integer", "minimum": 1},
                    "timeout": {"type": "string", "examples": ["30s"]}, "memory": {"type": "string", "examples": ["64MiB"]},
                    "backoff_base": {"type": "string", "examples": ["1s"]}, "backoff_max": {"type": "string", "examples": ["1h"]},
                    "config": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "ScheduleBody": {"type": "object", "required": ["template"], "additionalProperties": false, "properties": {
                    "template": {"type": "string"}, "context": {},
                    "cron": {"type": "string", "description": "second minute hour day-of-month month day-of-week", "examples": ["0 30 8 * * MON-FRI"]},
                    "every": {"type": "string", "examples": ["5m"]}, "timezone": {"type": "string", "examples": ["Europe/Paris"]},
                    "catch_up": {"enum": ["one", "skip"]}}},
                "EnqueueBody": {"type": "object", "required": ["template"], "additionalProperties": false, "properties": {
                    "template": {"type": "string"}, "context": {}, "priority": {"type": "integer"}, "queue": {"type": "string"},
                    "run_at": {"type": "string", "format": "date-time"}, "delay": {"type": "string", "examples": ["30s"]},
                    "max_attempts": {"type": "integer"}, "timeout": {"type": "string"}, "memory": {"type": "string"},
                    "unique_key": {"type": "string"}, "run_now": {"type": "boolean"}}}
            }
        }
    })
}
