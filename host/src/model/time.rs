//! `Millis`: milliseconds since the Unix epoch, UTC, the one time type of
//! elihu. Durations are added with `+`, never converted by hand.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Millis(pub i64);

/// A duration in whole milliseconds, saturating at `i64::MAX`.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Millis {
    /// How long after `earlier` this is; zero when it is not after it.
    pub fn duration_since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// The time as RFC 3339 in UTC with milliseconds (`2026-11-22T10:00:00.000Z`).
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| self.0.to_string())
    }

    /// Reads an RFC 3339 time (`2026-11-22T10:00:00Z`).
    pub fn parse_rfc3339(text: &str) -> Option<Millis> {
        chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| Millis(t.timestamp_millis()))
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;

    fn add(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(millis(d)))
    }
}

impl AddAssign<Duration> for Millis {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Millis {
    type Output = Millis;

    fn sub(self, d: Duration) -> Millis {
        Millis(self.0.saturating_sub(millis(d)))
    }
}

impl std::fmt::Display for Millis {
    /// RFC 3339, as [`Millis::to_rfc3339`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_add_and_subtract() {
        let t = Millis(1_000);
        assert_eq!(t + Duration::from_millis(250), Millis(1_250));
        assert_eq!(t - Duration::from_secs(2), Millis(-1_000));
        assert_eq!((t + Duration::from_secs(3)).duration_since(t), Duration::from_secs(3));
        assert_eq!(t.duration_since(t + Duration::from_secs(3)), Duration::ZERO);
        assert_eq!(Millis(i64::MAX - 1) + Duration::MAX, Millis(i64::MAX));
        let mut u = t;
        u += Duration::from_millis(1);
        assert_eq!(u, Millis(1_001));
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = Millis::parse_rfc3339("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T10:00:00.000Z");
        assert_eq!(t.to_string(), "2026-11-22T10:00:00.000Z");
        assert_eq!(Millis::parse_rfc3339("yesterday"), None);
    }
}
