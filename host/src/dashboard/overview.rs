//! The overview: per queue the jobs available, running, scheduled and
//! retrying; succeeded and failed runs per minute over the last hour; p50
//! and p95 run time; the nodes with their heartbeat age and the leader.
//! Refreshed live. Every figure is read with a bounded query (capped counts,
//! the latest runs only), so the page stays fast on a big database.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{COUNT_CAP, Failure, Live, RUN_WINDOW, Shell, capped, nodes, plot, span, thousands};
use crate::api::ApiState;
use crate::model::Millis;
use crate::store::percentile;

/// How many of the latest runs the run-time percentiles cover.
const DURATION_WINDOW: i64 = 10_000;

/// `GET /`.
pub(crate) async fn page(State(state): State<ApiState>, shell: Shell) -> Result<Response, Failure> {
    let views = state.client.store().views();
    let now = state.client.clock().now();
    let mut queues = Vec::new();
    for queue in views.queue_names().await? {
        let counts = views.queue_counts(&queue, now, COUNT_CAP).await?;
        queues.push((queue, counts));
    }
    let minutes = views.run_minutes(Millis(now.0 - 3_600_000), RUN_WINDOW).await?;
    let mut durations = views.run_durations(DURATION_WINDOW).await?;
    durations.sort_unstable();
    let nodes = nodes::read(&state).await?;
    let main = html! {
        h1 { "Overview" }
        section {
            h2 { "Queues" }
            @if queues.is_empty() {
                p.empty { "No queues yet: push a template and start a node." }
            } @else {
                table #queues {
                    thead { tr { th { "queue" } th.num { "available" } th.num { "running" } th.num { "scheduled" } th.num { "retrying" } } }
                    tbody {
                        @for (queue, c) in &queues {
                            tr data-queue=(queue) {
                                td { a href={ "/jobs?queue=" (queue) } { (queue) } }
                                td.num.available { (capped(c.available)) }
                                td.num.running { (thousands(c.running)) }
                                td.num.scheduled { (capped(c.scheduled)) }
                                td.num.retrying { (capped(c.retrying)) }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Runs per minute, last hour" }
            (plot::minutes(&minutes, now.0 / 60_000))
            p.legend { span.swatch.ok {} " succeeded " span.swatch.bad {} " failed" }
        }
        section {
            h2 { "Run time" }
            p #durations {
                @match (percentile(&durations, 50.0), percentile(&durations, 95.0)) {
                    (Some(p50), Some(p95)) => {
                        "p50 " strong #p50 { (span(p50)) } " · p95 " strong #p95 { (span(p95)) }
                        " over the latest " (thousands(durations.len() as i64)) " succeeded runs"
                    }
                    _ => { "No succeeded runs yet." }
                }
            }
        }
        section {
            h2 { "Nodes" }
            (nodes::table(&nodes, now))
        }
        p.note { "Counts stop at " (thousands(COUNT_CAP)) "; the plot and run times cover the latest " (thousands(RUN_WINDOW)) " runs." }
    };
    Ok(shell.page(StatusCode::OK, "overview", Live::Every(2000), main))
}
