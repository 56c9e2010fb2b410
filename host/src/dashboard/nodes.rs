//! The nodes page (and the overview's node table): host name, started, last
//! heartbeat, lease, runs in flight, and which node leads.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{Failure, Live, Shell, ago, at};
use crate::api::ApiState;
use crate::model::Millis;
use crate::store::{NodeInfo, NodeLoad};

/// The nodes with their lease and load, and the leader.
pub(crate) struct Nodes {
    nodes: Vec<(NodeInfo, Option<NodeLoad>)>,
    leader: Option<String>,
}

pub(crate) async fn read(state: &ApiState) -> Result<Nodes, Failure> {
    let views = state.client.store().views();
    let now = state.client.clock().now();
    let mut loads = views.node_loads().await?;
    let nodes = state
        .client
        .node_list()
        .await?
        .into_iter()
        .map(|n| {
            let load = loads.iter().position(|l| l.id == n.id).map(|i| loads.swap_remove(i));
            (n, load)
        })
        .collect();
    Ok(Nodes { nodes, leader: views.leader(now).await? })
}

/// The table of nodes.
pub(crate) fn table(nodes: &Nodes, now: Millis) -> Markup {
    html! {
        @if nodes.nodes.is_empty() {
            p.empty { "No node is running." }
        } @else {
            table #nodes {
                thead { tr { th { "node" } th { "host" } th { "queues" } th { "started" } th { "heartbeat" } th { "lease" } th.num { "running" } } }
                tbody {
                    @for (n, load) in &nodes.nodes {
                        tr data-node=(n.id) {
                            td {
                                (n.id)
                                @if nodes.leader.as_deref() == Some(n.id.as_str()) { " " span.badge.leader { "leader" } }
                            }
                            td { (n.hostname) " (pid " (n.pid) ")" }
                            td { (n.queues) }
                            td title=(at(n.started_at)) { (ago(now, n.started_at)) }
                            td.heartbeat title=(at(n.heartbeat_at)) { (ago(now, n.heartbeat_at)) }
                            td { @if let Some(l) = load { (ago(now, l.expires_at)) } }
                            td.num { @if let Some(l) = load { (l.running) } @else { "0" } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /nodes`.
pub(crate) async fn page(State(state): State<ApiState>, shell: Shell) -> Result<Response, Failure> {
    let nodes = read(&state).await?;
    let now = state.client.clock().now();
    let main = html! {
        h1 { "Nodes" }
        (table(&nodes, now))
    };
    Ok(shell.page(StatusCode::OK, "nodes", Live::Every(2000), main))
}
