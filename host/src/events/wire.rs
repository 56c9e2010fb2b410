//! Events as they travel to live streams and between processes: one JSON
//! object each, serialised once and shared by every stream, trimmed so none
//! exceeds about 2 KiB (outputs are replaced by their size, messages and log
//! lines are cut; the full values are in the run), and packed into batches
//! under PostgreSQL's NOTIFY payload limit.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Event;

/// Longest failure or progress message on the wire, in bytes.
const MESSAGE_CUT: usize = 512;
/// Longest log line on the wire, in bytes.
const LINE_CUT: usize = 1024;
/// Largest batch payload: PostgreSQL refuses 8,000 bytes and more.
pub(crate) const BATCH_LIMIT: usize = 7_900;

/// One event on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct WireEvent {
    /// Its kind (`started`, `progress`, `node_joined`, …), the SSE event name.
    pub kind: String,
    /// The job it is about (none for node events).
    pub job_id: Option<i64>,
    /// The job's template, where known.
    pub template: Option<String>,
    /// The job's queue, where known.
    pub queue: Option<String>,
    /// The JSON object, as sent.
    pub json: String,
}

impl WireEvent {
    /// The wire form of a job event, tagged with its job's template and queue where known.
    pub(crate) fn of(event: &Event, template: Option<&str>, queue: Option<&str>) -> WireEvent {
        let Value::Object(mut object) = serde_json::to_value(event).expect("events serialise") else {
            unreachable!("an event serialises to an object")
        };
        if let Some(Value::String(output)) = object.remove("output") {
            object.insert("output_bytes".into(), json!(output.len()));
        }
        cut(&mut object, "message", MESSAGE_CUT);
        if let Some(Value::Object(line)) = object.get_mut("line") {
            cut(line, "message", LINE_CUT);
        }
        if let Some(template) = template {
            object.entry("template").or_insert_with(|| json!(template));
        }
        if let Some(queue) = queue {
            object.entry("queue").or_insert_with(|| json!(queue));
        }
        WireEvent::from_object(object).expect("a job event has a kind")
    }

    /// A node event (`node_joined`, `node_left`, `leader_changed`, `lagged`).
    pub(crate) fn node(kind: &str, fields: Value) -> WireEvent {
        let mut object = match fields {
            Value::Object(object) => object,
            _ => Map::new(),
        };
        object.insert("event".into(), json!(kind));
        WireEvent::from_object(object).expect("the kind was just set")
    }

    /// Reads an event object received from another process.
    fn from_object(object: Map<String, Value>) -> Option<WireEvent> {
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
        Some(WireEvent {
            kind: text("event")?,
            job_id: object.get("job_id").and_then(Value::as_i64),
            template: text("template"),
            queue: text("queue"),
            json: Value::Object(object).to_string(),
        })
    }
}

/// Cuts the string at `key` to at most `limit` bytes (on a character
/// boundary) and marks it `<key>_cut`.
fn cut(object: &mut Map<String, Value>, key: &str, limit: usize) {
    if let Some(Value::String(text)) = object.get_mut(key)
        && text.len() > limit
    {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        object.insert(format!("{key}_cut"), json!(true));
    }
}

/// A batch of wire events from one process, filled up to [`BATCH_LIMIT`]:
/// `{"v":1,"origin":"…","events":[…]}`.
pub(crate) struct Batch {
    text: String,
    count: usize,
}

impl Batch {
    pub(crate) fn new(origin: &str) -> Batch {
        Batch { text: format!("{{\"v\":1,\"origin\":{},\"events\":[", json!(origin)), count: 0 }
    }

    /// Adds an event if it fits; false when the batch is full.
    pub(crate) fn push(&mut self, event: &WireEvent) -> bool {
        if self.count > 0 && self.text.len() + event.json.len() + 3 > BATCH_LIMIT {
            return false;
        }
        if self.count > 0 {
            self.text.push(',');
        }
        self.text.push_str(&event.json);
        self.count += 1;
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload.
    pub(crate) fn finish(mut self) -> String {
        self.text.push_str("]}");
        self.text
    }
}

/// The events of a batch received from another process, unless it came from
/// `own` (this process, whose events reached its streams directly).
pub(crate) fn unpack(payload: &str, own: &str) -> Vec<Arc<WireEvent>> {
    #[derive(serde::Deserialize)]
    struct Received {
        origin: String,
        events: Vec<Map<String, Value>>,
    }
    match serde_json::from_str::<Received>(payload) {
        Ok(batch) if batch.origin != own => batch.events.into_iter().filter_map(WireEvent::from_object).map(Arc::new).collect(),
        Ok(_) => Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed batch of live events");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobId, RunId};

    #[test]
    fn outputs_and_long_messages_are_trimmed_and_batches_stay_under_the_limit() {
        let event = Event::Succeeded { job_id: JobId(7), run_id: RunId(9), output: "x".repeat(100_000) };
        let wire = WireEvent::of(&event, Some("t"), Some("q"));
        assert!(wire.json.len() < 200, "{}", wire.json);
        assert!(wire.json.contains("\"output_bytes\":100000"));
        assert_eq!((wire.kind.as_str(), wire.job_id, wire.template.as_deref()), ("succeeded", Some(7), Some("t")));
        let failed = Event::Failed { job_id: JobId(1), run_id: RunId(2), reason: crate::model::Reason::Error, message: "é".repeat(2000) };
        let wire = WireEvent::of(&failed, None, None);
        assert!(wire.json.len() < 700 && wire.json.contains("\"message_cut\":true"));
        let mut batch = Batch::new("me");
        let mut n = 0;
        while batch.push(&wire) {
            n += 1;
        }
        let payload = batch.finish();
        assert!(n > 1 && payload.len() < BATCH_LIMIT);
        assert_eq!(unpack(&payload, "other").len(), n);
        assert!(unpack(&payload, "me").is_empty());
    }
}
