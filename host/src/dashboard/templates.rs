//! Templates: the list, and a template's page (version, digest, every pushed
//! version with its digest, defaults,
//! config keys, schema) with the enqueue form its schema gives. A submitted
//! form goes through the same `Client::enqueue` as the API; its refusal is
//! shown next to the fields and nothing is stored.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::form::{self, Errors, WHOLE};
use super::{Failure, Live, Shell, at, csrf_field, json_block, see_other, span};
use crate::api::ApiState;
use crate::client::{ClientError, Enqueue};
use crate::schema::SchemaError;
use crate::store::{Template, TemplateVersion};

/// `GET /templates`.
pub(crate) async fn list(State(state): State<ApiState>, shell: Shell) -> Result<Response, Failure> {
    let templates = state.client.template_list().await?;
    let main = html! {
        h1 { "Templates" }
        @if templates.is_empty() { p.empty { "No template yet: " code { "elihu template push NAME job.wasm" } "." } } @else {
            table #templates {
                thead { tr { th { "name" } th.num { "version" } th { "digest" } th { "queue" } th { "updated" } } }
                tbody {
                    @for t in &templates {
                        tr data-template=(t.name) {
                            td { a href={ "/templates/" (t.name) } { (t.name) } }
                            td.num { (t.version) }
                            td title=(t.digest.as_str()) { code { (t.digest.short()) } }
                            td { (t.defaults.queue) }
                            td { (at(t.updated_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(shell.page(StatusCode::OK, "templates", Live::No, main))
}

fn view(template: &Template, versions: &[TemplateVersion], submitted: Option<&[(String, String)]>, errors: &Errors) -> maud::Markup {
    let d = &template.defaults;
    let spec = form::spec(&template.schema);
    html! {
        h1 { "Template " (template.name) }
        dl.facts {
            dt { "version" } dd { (template.version) " (updated " (at(template.updated_at)) ", created " (at(template.created_at)) ")" }
            dt { "digest" } dd { code #digest { (template.digest.as_str()) } }
            dt { "queue" } dd { (d.queue) }
            dt { "priority" } dd { (d.priority) }
            dt { "max attempts" } dd { (d.max_attempts) }
            dt { "timeout" } dd { (span(d.timeout_ms as i64)) }
            dt { "memory" } dd { (d.memory_bytes >> 20) " MiB" }
            dt { "backoff" } dd { (span(d.backoff_base_ms as i64)) " doubling up to " (span(d.backoff_max_ms as i64)) }
            dt { "config keys" } dd #config-keys {
                @if template.config.is_empty() { "none" }
                @for key in template.config.keys() { code { (key) } " " }
            }
        }
        h2 { "Enqueue" }
        form #enqueue method="post" action={ "/templates/" (template.name) "/enqueue" } novalidate {
            (csrf_field())
            (form::render(&spec, submitted, errors))
            div.field {
                label for="queue" { "queue" }
                input #queue type="text" name="queue" placeholder=(d.queue) value=[submitted.and_then(|s| s.iter().find(|(k, _)| k == "queue")).map(|(_, v)| v)];
                @for e in errors.get("queue").into_iter().flatten() { span.error data-field="queue" { (e) } }
            }
            button #submit type="submit" { "Enqueue" }
        }
        h2 { "Context schema" }
        (json_block("schema", &template.schema.to_string()))
        h2 { "Versions" }
        table #versions {
            thead { tr { th.num { "version" } th { "digest" } th { "pushed" } } }
            tbody {
                @for v in versions {
                    tr { td.num { (v.version) } td { code { (v.digest.as_str()) } } td { (at(v.pushed_at)) } }
                }
            }
        }
        @if versions.len() as i64 == VERSIONS_SHOWN { p.note { "The latest " (VERSIONS_SHOWN) " versions." } }
    }
}

/// How many of a template's versions its page lists.
const VERSIONS_SHOWN: i64 = 50;

/// The latest versions of `name`.
async fn versions(state: &ApiState, name: &str) -> Result<Vec<TemplateVersion>, Failure> {
    Ok(state.client.store().views().template_versions(name, VERSIONS_SHOWN).await?)
}

/// `GET /templates/{name}`.
pub(crate) async fn page(State(state): State<ApiState>, shell: Shell, Path(name): Path<String>) -> Result<Response, Failure> {
    let template = state.client.template_get(&name).await?;
    let versions = versions(&state, &name).await?;
    Ok(shell.page(StatusCode::OK, &format!("template {name}"), Live::No, view(&template, &versions, None, &Errors::new())))
}

/// `POST /templates/{name}/enqueue`: the job's page, or the form again with
/// the refusal next to the fields (422; nothing enqueued).
pub(crate) async fn enqueue(State(state): State<ApiState>, shell: Shell, Path(name): Path<String>, body: Bytes) -> Result<Response, Failure> {
    let template = state.client.template_get(&name).await?;
    let versions = versions(&state, &name).await?;
    let submitted: Vec<(String, String)> = super::form(&body)?;
    let spec = form::spec(&template.schema);
    let again = |errors: Errors| {
        shell.page(StatusCode::UNPROCESSABLE_ENTITY, &format!("template {name}"), Live::No, view(&template, &versions, Some(&submitted), &errors))
    };
    let context: Value = match form::context(&spec, &submitted) {
        Ok(context) => context,
        Err(errors) => return Ok(again(errors)),
    };
    let fields: HashMap<&str, &str> = submitted.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut request = Enqueue::new(name.clone(), context);
    request.queue = fields.get("queue").map(|q| q.trim()).filter(|q| !q.is_empty()).map(String::from);
    match state.client.enqueue(request).await {
        Ok(inserted) => Ok(see_other(&format!("/jobs/{}", inserted.id()))),
        Err(ClientError::Schema(e @ SchemaError::ContextRejected(_))) => Ok(again(form::place(&spec, e.violations()))),
        Err(ClientError::Invalid { field, message }) => Ok(again(Errors::from([(field.to_string(), vec![message])]))),
        Err(e @ (ClientError::Schema(_) | ClientError::UnknownTemplate(_))) => Ok(again(Errors::from([(WHOLE.to_string(), vec![e.to_string()])]))),
        Err(e) => Err(e.into()),
    }
}
