//! Schedules (bg_jobs' scheduled jobs): a template enqueued by itself with a
//! context, on a cron-like rule with seconds or on an interval. The next job
//! is enqueued only once the previous one has ended, so runs never overlap.
//! Cron text is parsed and evaluated by the `croner` crate; this module adds
//! the error messages that name the field and value, time zones, and a builder.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use crate::clock::{Clock, SystemClock};
use crate::model::Millis;
pub use crate::model::CatchUp;

/// Why a schedule was refused. Every variant names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No cron text at all.
    #[error("the cron expression is empty; write six fields: second minute hour day-of-month month day-of-week")]
    Empty,
    /// Not 5 or 6 fields.
    #[error(
        "the cron expression `{expr}` has {count} fields; write six (second minute hour day-of-month month day-of-week), or five to fire at second 0"
    )]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many fields it has.
        count: usize,
    },
    /// One field is out of range or malformed.
    #[error("cron field {field} `{value}` is invalid: {why} ({field} takes {allowed})")]
    Field {
        /// The field's name (`second`, `month`, ...).
        field: &'static str,
        /// What was written in it.
        value: String,
        /// What is wrong.
        why: String,
        /// What the field accepts.
        allowed: &'static str,
    },
    /// The fields are each valid but no instant matches them all.
    #[error("the cron expression `{0}` never fires: no date matches all of its fields")]
    Never(String),
    /// Not an IANA time zone.
    #[error("`{0}` is not an IANA time zone (for example UTC, Europe/Paris, America/New_York)")]
    TimeZone(String),
    /// An interval outside 1 ms..=52 weeks.
    #[error("the interval {0} is out of range: use 1ms to 52 weeks")]
    Interval(String),
    /// Neither or both of cron and interval.
    #[error("a schedule takes exactly one of a cron expression and an interval")]
    Rule,
}

const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 (0 and 7 are Sunday) or SUN-SAT"),
];

fn parser() -> CronParser {
    // AND across fields, day of month and day of week included (bg_jobs).
    CronParser::builder().seconds(Seconds::Required).dom_and_dow(true).build()
}

/// A cron-like rule with seconds, in UTC or an IANA time zone.
#[derive(Debug, Clone)]
pub struct CronRule {
    text: String,
    cron: Cron,
    zone: Option<Tz>,
}

impl PartialEq for CronRule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

impl CronRule {
    /// Parses `second minute hour day-of-month month day-of-week` (or five
    /// fields, second 0). Each field is `*`, a value, a range `a-b`, a step
    /// `*/n` or `a-b/n`, or a list of those (`0,15,30-40`); OR within a field,
    /// AND across fields. `zone` is an IANA time zone name (UTC when `None`).
    pub fn parse(text: &str, zone: Option<&str>) -> Result<Self, ScheduleError> {
        let zone = match zone {
            None => None,
            Some(name) => Some(Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?),
        };
        let mut fields: Vec<&str> = text.split_whitespace().collect();
        match fields.len() {
            0 => return Err(ScheduleError::Empty),
            5 => fields.insert(0, "0"),
            6 => {}
            count => return Err(ScheduleError::FieldCount { expr: text.trim().to_string(), count }),
        }
        for (i, value) in fields.iter().enumerate() {
            check_field(i, value)?;
        }
        let normalized = fields.join(" ");
        let cron = parser().parse(&normalized).map_err(|e| ScheduleError::Never(format!("{normalized}: {e}")))?;
        let rule = CronRule { text: normalized, cron, zone };
        // Fields each valid but never all at once (30 February): refuse.
        if rule.next_after(SystemClock.now()).is_none() {
            return Err(ScheduleError::Never(rule.text));
        }
        Ok(rule)
    }

    /// The six-field text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The time zone's name, if not UTC.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_ref().map(|z| z.name())
    }

    /// The first instant strictly after `after` that the rule matches.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let utc = DateTime::<Utc>::from_timestamp_millis(after.0)?;
        let next = match self.zone {
            Some(zone) => self.cron.find_next_occurrence(&utc.with_timezone(&zone), false).ok().map(|t| t.timestamp_millis()),
            None => self.cron.find_next_occurrence(&utc, false).ok().map(|t| t.timestamp_millis()),
        };
        next.map(Millis)
    }

    /// A builder for a rule from values and ranges (bg_jobs' ScheduleBuilder).
    pub fn builder() -> CronBuilder {
        CronBuilder::default()
    }
}

/// Checks one field on its own: the crate parses it in an otherwise
/// all-`*` pattern, so an error can name the field and its value.
fn check_field(index: usize, value: &str) -> Result<(), ScheduleError> {
    let (field, allowed) = FIELDS[index];
    let error = |why: String| ScheduleError::Field { field, value: value.to_string(), why, allowed };
    // A reversed range is refused outright rather than read as wrapping.
    for item in value.split(',') {
        let range = item.split('/').next().unwrap_or("");
        if let Some((from, to)) = range.split_once('-')
            && let (Ok(from), Ok(to)) = (from.parse::<u32>(), to.parse::<u32>())
            && from > to
        {
            return Err(error(format!("the range {from}-{to} runs backwards")));
        }
    }
    let mut probe = ["*"; 6];
    probe[index] = value;
    parser().parse(&probe.join(" ")).map(|_| ()).map_err(|e| {
        let why = e.to_string();
        let why = why.strip_prefix("Component error: ").unwrap_or(&why).trim_end_matches('.').to_string();
        error(why)
    })
}

/// Builds a [`CronRule`] from values and ranges per field. Fields left alone
/// match every value, except seconds, which default to 0.
#[derive(Debug, Clone, Default)]
pub struct CronBuilder {
    fields: [Vec<(u32, u32)>; 6],
    zone: Option<String>,
}

macro_rules! field_methods {
    ($($index:literal $one:ident $many:ident $what:literal;)*) => {$(
        #[doc = concat!("Adds one ", $what, " value.")]
        pub fn $one(mut self, value: u32) -> Self {
            self.fields[$index].push((value, value));
            self
        }
        #[doc = concat!("Adds a range of ", $what, " values, both ends included.")]
        pub fn $many(mut self, range: std::ops::RangeInclusive<u32>) -> Self {
            self.fields[$index].push((*range.start(), *range.end()));
            self
        }
    )*};
}

impl CronBuilder {
    field_methods! {
        0 second seconds "second";
        1 minute minutes "minute";
        2 hour hours "hour";
        3 day days "day-of-month";
        4 month months "month";
        5 weekday weekdays "day-of-week (0 or 7 is Sunday)";
    }

    /// Evaluates the rule in this IANA time zone instead of UTC.
    pub fn timezone(mut self, zone: &str) -> Self {
        self.zone = Some(zone.to_string());
        self
    }

    /// Checks and builds the rule.
    pub fn build(self) -> Result<CronRule, ScheduleError> {
        let text: Vec<String> = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, parts)| {
                if parts.is_empty() {
                    return if i == 0 { "0".to_string() } else { "*".to_string() };
                }
                let items: Vec<String> =
                    parts.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
                items.join(",")
            })
            .collect();
        CronRule::parse(&text.join(" "), self.zone.as_deref())
    }
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// At the instants a cron rule matches (the next one after the previous job ended).
    Cron(CronRule),
    /// This long after the previous job ended (the first one this long after creation).
    Every(Duration),
}

impl Rule {
    /// A rule from the stored or given parts: exactly one of cron and interval.
    pub fn from_parts(cron: Option<&str>, every: Option<Duration>, zone: Option<&str>) -> Result<Rule, ScheduleError> {
        match (cron, every) {
            (Some(text), None) => Ok(Rule::Cron(CronRule::parse(text, zone)?)),
            (None, Some(every)) => {
                if every.is_zero() || every > Duration::from_secs(52 * 7 * 24 * 3600) {
                    return Err(ScheduleError::Interval(crate::units::format_duration(every)));
                }
                if let Some(zone) = zone {
                    Tz::from_str(zone).map_err(|_| ScheduleError::TimeZone(zone.to_string()))?;
                }
                Ok(Rule::Every(every))
            }
            _ => Err(ScheduleError::Rule),
        }
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        match self {
            Rule::Cron(cron) => cron.next_after(after),
            Rule::Every(every) => Some(after + *every),
        }
    }

    /// How people read it: `cron 0 30 8 * * MON` or `every 5m`.
    pub fn describe(&self) -> String {
        match self {
            Rule::Cron(c) => match c.zone() {
                Some(z) => format!("cron {} ({z})", c.text()),
                None => format!("cron {}", c.text()),
            },
            Rule::Every(d) => format!("every {}", crate::units::format_duration(*d)),
        }
    }
}


/// How late a firing may be (the scheduler runs on an interval) before it
/// counts as missed, for `CatchUp::Skip`.
pub const LATE_GRACE: Duration = Duration::from_secs(5);

/// The unique key of the job a schedule enqueues for a firing: it names both,
/// so one firing can never become two jobs.
pub fn firing_key(schedule: &str, firing: Millis) -> String {
    format!("schedule:{schedule}:{}", firing.0)
}

/// Reads the firing time back from a scheduled job's unique key.
pub fn firing_of(key: &str) -> Option<(&str, Millis)> {
    let rest = key.strip_prefix("schedule:")?;
    let (name, at) = rest.rsplit_once(':')?;
    Some((name, Millis(at.parse().ok()?)))
}

/// The next firing of `rule` given the previous job's end (`None`: never
/// fired, or resumed) and the catch-up policy, at `now`.
pub fn next_firing(rule: &Rule, previous_end: Option<Millis>, catch_up: CatchUp, now: Millis) -> Option<Millis> {
    let firing = rule.next_after(previous_end.unwrap_or(now))?;
    if firing < now - LATE_GRACE && catch_up == CatchUp::Skip {
        return rule.next_after(now);
    }
    Some(firing)
}

/// Milliseconds to a UTC time, for tests and display.
pub fn utc(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms.0).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Weekday};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
        Millis(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap().timestamp_millis())
    }

    /// bg_jobs' example: second 1 or 10-15, minute 30, hour 8 or 14-16,
    /// Thursdays, March to June, over a whole simulated year.
    #[test]
    fn the_bg_jobs_example_fires_exactly_at_the_expected_instants_over_a_year() {
        let text = CronRule::parse("1,10-15 30 8,14-16 * 3-6 4", None).unwrap();
        let built = CronRule::builder()
            .second(1)
            .seconds(10..=15)
            .minute(30)
            .hour(8)
            .hours(14..=16)
            .weekday(4)
            .months(3..=6)
            .build()
            .unwrap();
        assert_eq!(built.text(), "1,10-15 30 8,14-16 * 3-6 4");
        let mut expected = Vec::new();
        let mut day = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        while day.year() == 2027 {
            if (3..=6).contains(&day.month()) && day.weekday() == Weekday::Thu {
                for hour in [8, 14, 15, 16] {
                    for second in [1, 10, 11, 12, 13, 14, 15] {
                        expected.push(at(2027, day.month(), day.day(), hour, 30, second));
                    }
                }
            }
            day = day.succ_opt().unwrap();
        }
        for rule in [&text, &built] {
            let mut fired = Vec::new();
            let mut t = at(2026, 12, 31, 23, 59, 59);
            while let Some(next) = rule.next_after(t) {
                if next >= at(2028, 1, 1, 0, 0, 0) {
                    break;
                }
                fired.push(next);
                t = next;
            }
            assert_eq!(fired.len(), 17 * 4 * 7, "17 Thursdays from March to June 2027");
            assert_eq!(fired, expected);
        }
    }

    #[test]
    fn every_validation_error_names_the_field_and_value() {
        let cases = [
            ("0 0 0 1 13 *", "cron field month `13` is invalid"),
            ("50-30 * * * * *", "cron field second `50-30` is invalid: the range 50-30 runs backwards"),
            ("* 60 * * * *", "cron field minute `60` is invalid"),
            ("* * 24 * * *", "cron field hour `24` is invalid"),
            ("* * * 0 * *", "cron field day-of-month `0` is invalid"),
            ("* * * * * 8", "cron field day-of-week `8` is invalid"),
            ("* * * * * FUNDAY", "cron field day-of-week `FUNDAY` is invalid"),
            ("", "the cron expression is empty"),
            ("* * *", "the cron expression `* * *` has 3 fields"),
            ("0 0 0 30 2 *", "the cron expression `0 0 0 30 2 *` never fires"),
        ];
        for (text, expected) in cases {
            let err = CronRule::parse(text, None).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
        let err = CronRule::builder().seconds(50..=30).build().unwrap_err().to_string();
        assert!(err.starts_with("cron field second `50-30` is invalid: the range 50-30 runs backwards"), "{err}");
        let err = CronRule::parse("* * * * * *", Some("Mars/Olympus")).unwrap_err().to_string();
        assert_eq!(err, "`Mars/Olympus` is not an IANA time zone (for example UTC, Europe/Paris, America/New_York)");
        let err = Rule::from_parts(None, Some(Duration::ZERO), None).unwrap_err().to_string();
        assert_eq!(err, "the interval 0s is out of range: use 1ms to 52 weeks");
        assert_eq!(Rule::from_parts(Some("* * * * * *"), Some(Duration::from_secs(1)), None), Err(ScheduleError::Rule));
    }

    #[test]
    fn lists_ranges_and_steps_mix_and_day_fields_are_anded() {
        let rule = CronRule::parse("0,15,30-32 0 12 * * *", None).unwrap();
        let mut t = at(2027, 5, 1, 0, 0, 0);
        let mut seconds = Vec::new();
        for _ in 0..5 {
            t = rule.next_after(t).unwrap();
            seconds.push(utc(t).format("%H:%M:%S").to_string());
        }
        assert_eq!(seconds, ["12:00:00", "12:00:15", "12:00:30", "12:00:31", "12:00:32"]);
        // Friday the 13th only (AND), not every Friday and every 13th (OR).
        let friday13 = CronRule::parse("0 0 0 13 * 5", None).unwrap();
        let next = utc(friday13.next_after(at(2027, 1, 1, 0, 0, 0)).unwrap());
        assert_eq!(next.format("%Y-%m-%d %a").to_string(), "2027-08-13 Fri");
        // Five fields fire at second 0.
        assert_eq!(CronRule::parse("*/15 * * * *", None).unwrap().text(), "0 */15 * * * *");
    }

    #[test]
    fn a_time_zone_moves_the_firing() {
        let paris = CronRule::parse("0 0 9 * * *", Some("Europe/Paris")).unwrap();
        let next = paris.next_after(at(2027, 1, 10, 0, 0, 0)).unwrap();
        assert_eq!(utc(next).format("%H:%M").to_string(), "08:00", "09:00 in Paris is 08:00 UTC in winter");
        let next = paris.next_after(at(2027, 7, 10, 0, 0, 0)).unwrap();
        assert_eq!(utc(next).format("%H:%M").to_string(), "07:00", "and 07:00 UTC in summer");
    }

    #[test]
    fn missed_firings_catch_up_once_or_are_skipped() {
        let every_minute = Rule::Every(Duration::from_secs(60));
        let end = at(2027, 1, 1, 0, 0, 0);
        let minute = Duration::from_secs(60);
        let now = end + Duration::from_secs(3600);
        assert_eq!(next_firing(&every_minute, Some(end), CatchUp::One, now), Some(end + minute), "one catch-up, at once");
        assert_eq!(next_firing(&every_minute, Some(end), CatchUp::Skip, now), Some(now + minute));
        assert_eq!(next_firing(&every_minute, None, CatchUp::One, now), Some(now + minute));
        let key = firing_key("nightly", Millis(1234));
        assert_eq!((key.as_str(), firing_of(&key)), ("schedule:nightly:1234", Some(("nightly", Millis(1234)))));
    }
}
