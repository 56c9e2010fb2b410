//! What flow control speaks: a queue's rate limit (`100/1m`) and partition
//! (`template`, or a JSON pointer into the context), how each is written and
//! read, and the partition key a job gets from its template and context.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest rate period: the starts of one period are kept to count them.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// At most `limit` starts in any window of `period` (a sliding window over
/// the recorded starts: for every start, the starts in the `period` that
/// ends with it, itself included, number at most `limit`). Written and read
/// as `LIMIT/PERIOD`: `100/1m`, `50/1s`, `50/s`, `1000/1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per window, at least 1.
    pub limit: u32,
    /// The window, from 1 ms to a day.
    pub period: Duration,
}

impl Rate {
    /// Reads `LIMIT/PERIOD`; the error says what is wrong with which part.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let usage = "write it as STARTS/PERIOD, e.g. `100/1m`, `50/1s` or `50/s`";
        let Some((limit, period)) = text.trim().split_once('/') else {
            return Err(format!("`{text}` has no `/`: {usage}"));
        };
        let limit: u32 = match limit.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("`{}` is not a number of starts of at least 1: {usage}", limit.trim())),
        };
        let period = period.trim();
        // `50/s` reads as `50/1s`.
        let spelled = if period.starts_with(|c: char| c.is_ascii_digit()) { period.to_string() } else { format!("1{period}") };
        let period = humantime::parse_duration(&spelled).map_err(|e| format!("`{period}` is not a period ({e}): {usage}"))?;
        if period < Duration::from_millis(1) || period > MAX_RATE_PERIOD {
            return Err(format!("the period must be from 1ms to 1 day, not {}", humantime::format_duration(period)));
        }
        Ok(Rate { limit, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, humantime::format_duration(self.period))
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        Rate::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What splits a queue into partitions, each limited on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partition {
    /// The job's template: `template`.
    Template,
    /// The value a JSON pointer (RFC 6901, e.g. `/customer_id`) finds in
    /// the job's context; jobs where it finds nothing share one partition.
    Pointer(String),
}

impl Partition {
    /// Reads `template` or a JSON pointer; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Partition, String> {
        let text = text.trim();
        if text == "template" {
            return Ok(Partition::Template);
        }
        let usage = "use `template` or a JSON pointer into the context such as `/customer_id`";
        if !text.starts_with('/') {
            return Err(format!("`{text}` is not a JSON pointer (it must start with `/`): {usage}"));
        }
        if text.len() > 200 {
            return Err(format!("the pointer is {} bytes long; the limit is 200", text.len()));
        }
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!("`{text}` is not a JSON pointer: `~` must be followed by `0` or `1` (RFC 6901)"));
            }
        }
        Ok(Partition::Pointer(text.to_string()))
    }

    /// The partition key of a job of `template` with this context (JSON
    /// text): the JSON text of the value the pointer finds (`"acme"`, `42`),
    /// `""` when it finds none, or the template's name as a JSON string.
    pub fn key(&self, template: &str, context: &str) -> String {
        let value = match self {
            Partition::Template => return serde_json::Value::from(template).to_string(),
            Partition::Pointer(pointer) => serde_json::from_str::<serde_json::Value>(context)
                .ok()
                .and_then(|context| context.pointer(pointer).map(serde_json::Value::to_string)),
        };
        value.unwrap_or_default()
    }

    /// As written and stored: `template` or the pointer.
    pub fn as_str(&self) -> &str {
        match self {
            Partition::Template => "template",
            Partition::Pointer(pointer) => pointer,
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Partition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Partition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Partition, D::Error> {
        Partition::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_write_as_starts_per_period() {
        assert_eq!(Rate::parse("100/1m").unwrap(), Rate { limit: 100, period: Duration::from_secs(60) });
        assert_eq!(Rate::parse(" 50 / s ").unwrap(), Rate { limit: 50, period: Duration::from_secs(1) });
        assert_eq!(Rate::parse("1000/1d").unwrap().to_string(), "1000/1day");
        assert_eq!(Rate::parse("5/250ms").unwrap().to_string(), "5/250ms");
        for (bad, says) in [
            ("100", "has no `/`"),
            ("0/1s", "at least 1"),
            ("-3/1s", "at least 1"),
            ("ten/1s", "`ten` is not a number"),
            ("10/0s", "from 1ms to 1 day"),
            ("10/2d", "from 1ms to 1 day"),
            ("10/fortnight", "`fortnight` is not a period"),
        ] {
            let e = Rate::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn partitions_are_the_template_or_a_pointer() {
        assert_eq!(Partition::parse("template").unwrap(), Partition::Template);
        assert_eq!(Partition::parse("/customer/id").unwrap(), Partition::Pointer("/customer/id".into()));
        assert_eq!(Partition::parse("/a~1b~0c").unwrap().as_str(), "/a~1b~0c");
        assert!(Partition::parse("customer_id").unwrap_err().contains("must start with `/`"));
        assert!(Partition::parse("").unwrap_err().contains("must start with `/`"));
        assert!(Partition::parse("/a~2").unwrap_err().contains("RFC 6901"));
        assert!(Partition::parse("/a~").unwrap_err().contains("RFC 6901"));
    }

    #[test]
    fn keys_are_the_json_text_of_what_the_pointer_finds() {
        let p = Partition::Pointer("/customer".into());
        assert_eq!(p.key("t", r#"{"customer": "acme"}"#), r#""acme""#);
        assert_eq!(p.key("t", r#"{"customer": 42}"#), "42");
        assert_eq!(p.key("t", r#"{"other": 1}"#), "");
        assert_eq!(Partition::Pointer("/a/1".into()).key("t", r#"{"a": [7, 8]}"#), "8");
        assert_eq!(Partition::Pointer("/a~1b".into()).key("t", r#"{"a/b": true}"#), "true");
        assert_eq!(Partition::Template.key("export", "{}"), r#""export""#);
    }
}
