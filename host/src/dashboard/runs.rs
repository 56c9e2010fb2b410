//! Runs: the recent failures, grouped by template and reason, each with the
//! latest failure's message and a link to its job.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{Failure, Live, RUN_WINDOW, Shell, thousands};
use crate::api::ApiState;

/// `GET /runs`.
pub(crate) async fn page(State(state): State<ApiState>, shell: Shell) -> Result<Response, Failure> {
    let views = state.client.store().views();
    let groups = views.run_failures(RUN_WINDOW).await?;
    let latest: Vec<_> = groups.iter().map(|g| g.last_run).collect();
    let messages = views.run_messages(&latest).await?;
    let main = html! {
        h1 { "Failures" }
        p.note { "Failed runs among the latest " (thousands(RUN_WINDOW)) " runs, by template and reason." }
        @if groups.is_empty() { p.empty #no-failures { "No failed runs." } } @else {
            table #failures {
                thead { tr { th { "template" } th { "reason" } th.num { "runs" } th { "latest message" } } }
                tbody {
                    @for g in &groups {
                        @let latest = messages.iter().find(|m| m.id == g.last_run);
                        tr data-template=(g.template) data-reason=(g.reason) {
                            td { a href={ "/templates/" (g.template) } { (g.template) } }
                            td.reason { (g.reason) }
                            td.num { (thousands(g.runs)) }
                            td.message {
                                @if let Some(m) = latest {
                                    a href={ "/jobs/" (m.job_id) } { "job " (m.job_id) } ": " (m.message.as_deref().unwrap_or(""))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell.page(StatusCode::OK, "runs", Live::No, main))
}
