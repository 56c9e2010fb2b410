//! `GET /v1/events`: live events as Server-Sent Events, from every node on
//! the database, filtered by `?job=`, `?template=` and `?queue=` (ANDed;
//! node events pass unless a job is named). A stream that falls behind gets
//! `event: lagged` and carries on; the database stays the truth to re-read.
//! There are no event ids: a reconnecting client re-reads the database.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{ApiError, ApiState};
use crate::events::{Watch, WireEvent};

/// Which events a stream wants.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventFilter {
    /// Only this job's events.
    job: Option<i64>,
    /// Only jobs of this template.
    template: Option<String>,
    /// Only jobs of this queue.
    queue: Option<String>,
}

impl EventFilter {
    fn matches(&self, event: &WireEvent) -> bool {
        if event.job_id.is_none() {
            return self.job.is_none();
        }
        self.job.is_none_or(|job| event.job_id == Some(job))
            && self.template.as_ref().is_none_or(|t| event.template.as_ref() == Some(t))
            && self.queue.as_ref().is_none_or(|q| event.queue.as_ref() == Some(q))
    }
}

/// Live events (Server-Sent Events; `event:` is the kind, `data:` the JSON).
pub(super) async fn stream(
    State(state): State<ApiState>,
    filter: Result<Query<EventFilter>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(format!("{e}; this route takes job, template and queue")))?;
    let Watch { registration, events } = state.client.watch().await?;
    let closed = state.client.hub().closed();
    let events = BroadcastStream::new(events).filter_map(move |item| {
        // The registration lives as long as the stream.
        let _registered = &registration;
        std::future::ready(match item {
            Ok(event) if filter.matches(&event) => Some(Ok(to_sse(&event))),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(SseEvent::default().event("lagged").data(format!("{{\"event\":\"lagged\",\"missed\":{n}}}"))))
            }
        })
    });
    let opening = futures_util::stream::once(std::future::ready(Ok(SseEvent::default().retry(Duration::from_secs(2)).comment("elihu events"))));
    Ok(Sse::new(opening.chain(events).take_until(closed)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(event: &Arc<WireEvent>) -> SseEvent {
    SseEvent::default().event(&event.kind).data(&event.json)
}
