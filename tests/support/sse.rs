//! A live-event client for tests: `GET /v1/events` over a real socket,
//! parsed with `eventsource-stream`, each event's JSON at hand.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

type Events = Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, String>> + Send>>;

/// An open event stream.
pub struct EventStream {
    events: Events,
}

impl EventStream {
    /// Opens `GET /v1/events?{query}` on `addr`; it returns once the server
    /// has answered (the stream is registered then).
    pub async fn open(addr: &str, query: &str) -> EventStream {
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/v1/events?{query}"))
            .send()
            .await
            .expect("the event stream answers");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let events = response.bytes_stream().eventsource().map(|e| e.map_err(|e| e.to_string()));
        EventStream { events: Box::pin(events) }
    }

    /// The next event: its kind and JSON (the test fails after 30 s).
    pub async fn next(&mut self) -> (String, Value) {
        let event = tokio::time::timeout(Duration::from_secs(30), self.events.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream is open")
            .expect("a well-formed event");
        let data = serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("event data is JSON ({e}): {}", event.data));
        (event.event, data)
    }

    /// The next event matching `pred`.
    pub async fn next_where(&mut self, pred: impl Fn(&str, &Value) -> bool) -> (String, Value) {
        loop {
            let (kind, data) = self.next().await;
            if pred(&kind, &data) {
                return (kind, data);
            }
        }
    }
}
