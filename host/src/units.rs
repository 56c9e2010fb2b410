//! Human units for durations (`30s`, `1m 30s`, `250ms`) and sizes (`64MiB`, `512KiB`, `1G`).

use std::time::Duration;

/// A duration or size that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    /// The text is not a duration such as `30s`, `250ms` or `1h 30m`.
    #[error("`{text}` is not a duration: {why} (write it like `30s`, `250ms` or `1h 30m`)")]
    Duration {
        /// What was given.
        text: String,
        /// Why it was refused.
        why: String,
    },
    /// The text is not a size such as `64MiB`.
    #[error("`{0}` is not a size (write it like `64MiB`, `512KiB`, `2GiB` or a number of bytes)")]
    Size(String),
}

/// Reads a duration such as `30s`, `250ms` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim()).map_err(|e| UnitError::Duration { text: text.to_string(), why: e.to_string() })
}

/// Writes a duration the way [`parse_duration`] reads it (`1m 30s`, `250ms`).
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Reads a size: a number of bytes, optionally followed by a unit. Binary
/// units (`KiB`, `MiB`, `GiB`) and their short forms (`K`, `M`, `G`) are
/// powers of 1024; decimal units (`KB`, `MB`, `GB`) are powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| UnitError::Size(text.to_string()))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(UnitError::Size(text.to_string())),
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(UnitError::Size(text.to_string()));
    }
    Ok(bytes.round() as u64)
}

/// Writes a size in the largest binary unit that keeps it whole (`64MiB`).
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Writes a size for people: exact in the largest binary unit that keeps it
/// whole (`64KiB`), else to one decimal (`19.1MiB`); bytes below 1 KiB.
pub fn format_size_human(bytes: usize) -> String {
    let bytes = bytes as u64;
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor {
            return if bytes % factor == 0 {
                format!("{}{unit}", bytes / factor)
            } else {
                format!("{:.1}{unit}", bytes as f64 / factor as f64)
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(matches!(parse_size("lots"), Err(UnitError::Size(_))));
        assert!(matches!(parse_size("12 parsecs"), Err(UnitError::Size(_))));
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size_human(64 << 10), "64KiB");
        assert_eq!(format_size_human(20_000_000), "19.1MiB");
        assert_eq!(format_size_human(1000), "1000B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        let err = parse_duration("soon").unwrap_err().to_string();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
    }
}
