//! Schedules: each with its rule, next and last firing and its job; pause
//! and resume.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Failure, Live, Shell, ago, at, badge, csrf_field, see_other};
use crate::api::ApiState;

/// `GET /schedules`.
pub(crate) async fn page(State(state): State<ApiState>, shell: Shell) -> Result<Response, Failure> {
    let schedules = state.client.schedule_list().await?;
    let now = state.client.clock().now();
    let main = html! {
        h1 { "Schedules" }
        @if schedules.is_empty() { p.empty { "No schedule yet: " code { "elihu schedule put" } "." } } @else {
            table #schedules {
                thead { tr { th { "name" } th { "template" } th { "rule" } th { "next firing" } th { "last firing" } th { "job" } th { "state" } th {} } }
                tbody {
                    @for s in &schedules {
                        tr data-schedule=(s.name) {
                            td { (s.name) }
                            td { a href={ "/templates/" (s.template) } { (s.template) } }
                            td { code { @if let Some(c) = &s.cron { (c) @if let Some(z) = &s.timezone { " " (z) } } @if let Some(e) = &s.every { "every " (e) } } }
                            td.next { @if let Some(n) = s.next_firing { span title=(at(n)) { (ago(now, n)) } } @else { "—" } }
                            td { @if let Some(l) = s.last_firing { span title=(at(l)) { (ago(now, l)) } } @else { "never" } }
                            td { @if let Some(j) = s.current_job { a href={ "/jobs/" (j) } { (j) } } }
                            td.state { (badge(if s.paused { "paused" } else { "active" })) }
                            td {
                                form method="post" action={ "/schedules/" (s.name) (if s.paused { "/resume" } else { "/pause" }) } {
                                    (csrf_field())
                                    button type="submit" { (if s.paused { "Resume" } else { "Pause" }) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell.page(StatusCode::OK, "schedules", Live::No, main))
}

/// `POST /schedules/{name}/pause`.
pub(crate) async fn pause(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Response, Failure> {
    state.client.schedule_pause(&name).await?;
    Ok(see_other("/schedules"))
}

/// `POST /schedules/{name}/resume`.
pub(crate) async fn resume(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Response, Failure> {
    state.client.schedule_resume(&name).await?;
    Ok(see_other("/schedules"))
}
