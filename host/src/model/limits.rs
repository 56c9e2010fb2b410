//! The bounds a guest meets besides its memory and time: the node's
//! [`GuestLimits`] (from `[limits]` in elihu.toml) and a template's
//! [`TemplateLimits`], which may tighten some of them for its jobs. Each
//! template value is checked (positive, at most the node's) before it is
//! stored, and a run applies the smaller of the two.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{format_duration, format_size_human};

/// Every bound a guest meets besides its memory and time, per run. The node
/// defaults suit most jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Log lines kept per run (host logs, stdout and stderr together);
    /// later lines are counted and dropped.
    pub max_log_lines: usize,
    /// Bytes of log text kept per run.
    pub max_log_bytes: usize,
    /// The longest log line (or stdout/stderr line); longer ones are cut.
    pub max_log_line_bytes: usize,
    /// The longest failure message (the guest's error, a trap's message);
    /// a longer one is truncated.
    pub max_message_bytes: usize,
    /// The longest progress message; a longer one is cut.
    pub max_progress_message_bytes: usize,
    /// Largest checkpoint accepted; a larger one is refused and the previous
    /// checkpoint stands.
    pub max_checkpoint_bytes: usize,
    /// Largest output accepted; a larger one fails the run.
    pub max_output_bytes: usize,
    /// Progress is stored and streamed at most once per this interval; reports
    /// in between are coalesced to the latest.
    pub progress_interval: Duration,
    /// A running job's checkpoint is stored at most once per this interval
    /// (the latest one is always stored with the run's outcome).
    pub checkpoint_interval: Duration,
    /// Log lines waiting to be streamed to watchers; past it lines are kept
    /// in the run's log but not streamed live.
    pub max_streamed_lines: usize,
    /// How long an outbound connection (TCP connect plus TLS handshake) may take.
    pub connect_timeout: Duration,
    /// Outbound requests and connections a run may attempt, denied ones
    /// included; one more fails the run.
    pub max_requests: u32,
    /// Largest outbound request body; a larger one fails the run.
    pub max_request_body: u64,
    /// Largest response body a run may receive; a larger one fails the run.
    pub max_response_body: u64,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            max_log_lines: 10_000,
            max_log_bytes: 256 << 10,
            max_log_line_bytes: 16 << 10,
            max_message_bytes: 64 << 10,
            max_progress_message_bytes: 1 << 10,
            max_checkpoint_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            progress_interval: Duration::from_millis(250),
            checkpoint_interval: Duration::from_secs(1),
            max_streamed_lines: 1024,
            connect_timeout: Duration::from_secs(10),
            max_requests: 100,
            max_request_body: 10 << 20,
            max_response_body: 10 << 20,
        }
    }
}


/// A template limit that is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Zero or negative.
    #[error("the template limit `{field}` must be more than 0 (it is {value})")]
    NotPositive {
        /// The limit's name.
        field: &'static str,
        /// What was given.
        value: i64,
    },
    /// Above what the node allows.
    #[error("the template limit `{field}` is {value}, above this node's limit of {node}; a template may only tighten the node's [limits]")]
    AboveNode {
        /// The limit's name.
        field: &'static str,
        /// What was given, for people.
        value: String,
        /// The node's limit, for people.
        node: String,
    },
}

/// A template's own bounds for its jobs: each one set replaces the node's
/// (when smaller). Sizes in bytes, the connect timeout in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "RawTemplateLimits")]
pub struct TemplateLimits {
    /// Largest output accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Largest checkpoint accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_checkpoint_bytes: Option<u64>,
    /// Log lines kept per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_log_lines: Option<u64>,
    /// Bytes of log kept per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
    /// The longest failure message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u64>,
    /// How long an outbound connection may take to open, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Outbound requests and connections per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u64>,
    /// Largest outbound request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// Largest response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_body_bytes: Option<u64>,
}

/// What a limit counts, for checks and display.
#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Count,
    Millis,
}

impl Unit {
    fn show(self, value: u64) -> String {
        match self {
            Unit::Bytes => format_size_human(value as usize),
            Unit::Count => value.to_string(),
            Unit::Millis => format_duration(Duration::from_millis(value)),
        }
    }
}

impl TemplateLimits {
    /// Each limit: its name, the template's value, the node's value and its unit.
    fn fields(&self, node: &GuestLimits) -> [(&'static str, Option<u64>, u64, Unit); 9] {
        [
            ("max_output_bytes", self.max_output_bytes, node.max_output_bytes as u64, Unit::Bytes),
            ("max_checkpoint_bytes", self.max_checkpoint_bytes, node.max_checkpoint_bytes as u64, Unit::Bytes),
            ("max_log_lines", self.max_log_lines, node.max_log_lines as u64, Unit::Count),
            ("max_log_bytes", self.max_log_bytes, node.max_log_bytes as u64, Unit::Bytes),
            ("max_message_bytes", self.max_message_bytes, node.max_message_bytes as u64, Unit::Bytes),
            ("connect_timeout_ms", self.connect_timeout_ms, node.connect_timeout.as_millis() as u64, Unit::Millis),
            ("max_requests", self.max_requests, u64::from(node.max_requests), Unit::Count),
            ("max_request_body_bytes", self.max_request_body_bytes, node.max_request_body, Unit::Bytes),
            ("max_response_body_bytes", self.max_response_body_bytes, node.max_response_body, Unit::Bytes),
        ]
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == TemplateLimits::default()
    }

    /// Checks every set limit against the node's: more than zero (as read)
    /// and at most the node's value.
    pub fn check(&self, node: &GuestLimits) -> Result<(), LimitError> {
        for (field, value, node_value, unit) in self.fields(node) {
            match value {
                Some(0) => return Err(LimitError::NotPositive { field, value: 0 }),
                Some(v) if v > node_value => {
                    return Err(LimitError::AboveNode { field, value: unit.show(v), node: unit.show(node_value) });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The set limits as `name = value` lines for people.
    pub fn describe(&self) -> Vec<String> {
        self.fields(&GuestLimits::default())
            .into_iter()
            .filter_map(|(field, value, _, unit)| value.map(|v| format!("{field} = {}", unit.show(v))))
            .collect()
    }
}

impl GuestLimits {
    /// These limits tightened by a template's: each set template limit
    /// replaces the node's when it is smaller.
    pub fn with(mut self, t: &TemplateLimits) -> GuestLimits {
        fn min_usize(node: &mut usize, t: Option<u64>) {
            if let Some(v) = t {
                *node = (*node).min(usize::try_from(v).unwrap_or(usize::MAX));
            }
        }
        min_usize(&mut self.max_output_bytes, t.max_output_bytes);
        min_usize(&mut self.max_checkpoint_bytes, t.max_checkpoint_bytes);
        min_usize(&mut self.max_log_lines, t.max_log_lines);
        min_usize(&mut self.max_log_bytes, t.max_log_bytes);
        min_usize(&mut self.max_message_bytes, t.max_message_bytes);
        if let Some(ms) = t.connect_timeout_ms {
            self.connect_timeout = self.connect_timeout.min(Duration::from_millis(ms));
        }
        if let Some(n) = t.max_requests {
            self.max_requests = self.max_requests.min(u32::try_from(n).unwrap_or(u32::MAX));
        }
        if let Some(n) = t.max_request_body_bytes {
            self.max_request_body = self.max_request_body.min(n);
        }
        if let Some(n) = t.max_response_body_bytes {
            self.max_response_body = self.max_response_body.min(n);
        }
        self
    }
}

/// The wire form, read as signed numbers so a negative value is refused by
/// name rather than as a type error.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTemplateLimits {
    max_output_bytes: Option<i64>,
    max_checkpoint_bytes: Option<i64>,
    max_log_lines: Option<i64>,
    max_log_bytes: Option<i64>,
    max_message_bytes: Option<i64>,
    connect_timeout_ms: Option<i64>,
    max_requests: Option<i64>,
    max_request_body_bytes: Option<i64>,
    max_response_body_bytes: Option<i64>,
}

impl TryFrom<RawTemplateLimits> for TemplateLimits {
    type Error = LimitError;
    fn try_from(r: RawTemplateLimits) -> Result<Self, LimitError> {
        let positive = |field: &'static str, value: Option<i64>| match value {
            Some(v) if v <= 0 => Err(LimitError::NotPositive { field, value: v }),
            v => Ok(v.map(|v| v as u64)),
        };
        Ok(TemplateLimits {
            max_output_bytes: positive("max_output_bytes", r.max_output_bytes)?,
            max_checkpoint_bytes: positive("max_checkpoint_bytes", r.max_checkpoint_bytes)?,
            max_log_lines: positive("max_log_lines", r.max_log_lines)?,
            max_log_bytes: positive("max_log_bytes", r.max_log_bytes)?,
            max_message_bytes: positive("max_message_bytes", r.max_message_bytes)?,
            connect_timeout_ms: positive("connect_timeout_ms", r.connect_timeout_ms)?,
            max_requests: positive("max_requests", r.max_requests)?,
            max_request_body_bytes: positive("max_request_body_bytes", r.max_request_body_bytes)?,
            max_response_body_bytes: positive("max_response_body_bytes", r.max_response_body_bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_limits_tighten_the_node_and_never_loosen_it() {
        let node = GuestLimits::default();
        let t = TemplateLimits { max_output_bytes: Some(10), max_requests: Some(3), ..TemplateLimits::default() };
        assert_eq!(t.check(&node), Ok(()));
        let run = node.with(&t);
        assert_eq!((run.max_output_bytes, run.max_requests), (10, 3));
        assert_eq!(run.max_log_lines, node.max_log_lines);
        let small_node = GuestLimits { max_output_bytes: 5, ..node };
        assert_eq!(small_node.with(&t).max_output_bytes, 5, "a node never goes above its own limit");
        assert_eq!(t.describe(), ["max_output_bytes = 10B", "max_requests = 3"]);
    }

    #[test]
    fn zero_negative_and_over_the_node_are_refused_by_name() {
        let node = GuestLimits::default();
        let zero = TemplateLimits { max_log_lines: Some(0), ..TemplateLimits::default() };
        assert_eq!(zero.check(&node).unwrap_err().to_string(), "the template limit `max_log_lines` must be more than 0 (it is 0)");
        let over = TemplateLimits { max_output_bytes: Some(2 << 20), ..TemplateLimits::default() };
        assert_eq!(
            over.check(&node).unwrap_err().to_string(),
            "the template limit `max_output_bytes` is 2MiB, above this node's limit of 1MiB; a template may only tighten the node's [limits]"
        );
        let err = serde_json::from_str::<TemplateLimits>(r#"{"connect_timeout_ms": -5}"#).unwrap_err().to_string();
        assert!(err.contains("`connect_timeout_ms` must be more than 0 (it is -5)"), "{err}");
        assert!(serde_json::from_str::<TemplateLimits>(r#"{"max_outputs": 5}"#).is_err());
        let t: TemplateLimits = serde_json::from_str(r#"{"max_requests": 2}"#).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"max_requests":2}"#);
    }
}
