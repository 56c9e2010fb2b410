//! Queue logic shared by every store: what becomes of a job after a run ends
//! (retry with exponential backoff and jitter, a snooze, or the end of the
//! job), and the cap on a job's snoozes.

use std::time::Duration;

use rand::Rng;

use crate::model::{Backoff, Ending, Millis, Reason};
use crate::store::{JobNext, TemplateDefaults};

/// Retries are spaced `base * 2^(attempt-1)`, capped at `max`, then spread
/// by ±25% jitter so failed jobs do not come back in lockstep.
impl Backoff {
    /// No delay at all (where the run's end is not the job's fault).
    pub const NONE: Backoff = Backoff { base: Duration::ZERO, max: Duration::ZERO };

    /// The backoff a template sets.
    pub fn of(defaults: &TemplateDefaults) -> Self {
        Backoff { base: Duration::from_millis(defaults.backoff_base_ms), max: Duration::from_millis(defaults.backoff_max_ms) }
    }

    /// The delay before the attempt after `attempt` (which failed), without jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(40);
        self.base.saturating_mul(1u32 << doublings.min(31)).min(self.max)
    }

    /// The delay with jitter drawn from `rng`.
    pub fn jittered(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        self.delay(attempt).mul_f64(rng.random_range(0.75..=1.25))
    }
}

/// The ending of a run that snoozed with the job's `snoozes` so far: past
/// `max_snoozes` it fails with reason `snooze_limit` instead.
pub fn cap_snoozes(ending: Ending, snoozes: u32, max_snoozes: u32) -> Ending {
    match ending {
        Ending::Snoozed { .. } if snoozes >= max_snoozes => Ending::Failed {
            reason: Reason::SnoozeLimit,
            message: format!(
                "the job snoozed {snoozes} times and asked for another; a job may snooze at most {max_snoozes} times \
                 (the node's `max_snoozes`), so it is over"
            ),
        },
        other => other,
    }
}

/// What to do with a job whose run (attempt `attempt` of `max_attempts`) ended so.
pub fn after_run(ending: &Ending, attempt: u32, max_attempts: u32, backoff: Backoff, now: Millis) -> JobNext {
    match ending {
        Ending::Succeeded { .. } => JobNext::Delete,
        // A snooze is not an attempt: the job comes back after its delay.
        Ending::Snoozed { delay } => JobNext::Snooze { at: now + *delay },
        Ending::Failed { reason: Reason::Cancelled | Reason::SnoozeLimit, .. } => JobNext::Delete,
        // A shutdown is not the job's fault: it comes back at once, the attempt refunded.
        Ending::Failed { reason: Reason::Shutdown, .. } => JobNext::Retry { at: now, refund: true },
        Ending::Failed { .. } if attempt >= max_attempts => JobNext::Delete,
        // Its node died: not the job's fault, so no backoff (the attempt still counts).
        Ending::Failed { reason: Reason::Expired, .. } => JobNext::Retry { at: now, refund: false },
        Ending::Failed { .. } => {
            let delay = backoff.jittered(attempt, &mut rand::rng());
            JobNext::Retry { at: now + delay, refund: false }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(reason: Reason) -> Ending {
        Ending::Failed { reason, message: String::new() }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(10) };
        let delays: Vec<u64> = (1..=6).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(1000), Duration::from_secs(10));
        let mut rng = rand::rng();
        for _ in 0..100 {
            let d = b.jittered(3, &mut rng).as_millis();
            assert!((3000..=5000).contains(&d), "{d}");
        }
    }

    #[test]
    fn failures_retry_until_the_last_attempt() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };
        let t = |ms: i64| Millis(ms);
        let JobNext::Retry { at, refund: false } = after_run(&failed(Reason::Error), 2, 3, b, t(1_000)) else { panic!() };
        assert!((t(1_000 + 1_500)..=t(1_000 + 2_500)).contains(&at), "{at:?}");
        assert_eq!(after_run(&failed(Reason::Timeout), 3, 3, b, t(0)), JobNext::Delete);
        assert_eq!(after_run(&failed(Reason::Cancelled), 1, 3, b, t(0)), JobNext::Delete);
        assert_eq!(after_run(&Ending::Succeeded { output: "1".into() }, 1, 3, b, t(0)), JobNext::Delete);
        assert_eq!(after_run(&failed(Reason::Shutdown), 3, 3, b, t(7)), JobNext::Retry { at: t(7), refund: true });
        assert_eq!(after_run(&failed(Reason::Expired), 1, 2, b, t(9)), JobNext::Retry { at: t(9), refund: false });
        assert_eq!(after_run(&failed(Reason::Expired), 2, 2, b, t(0)), JobNext::Delete);
    }

    #[test]
    fn a_snooze_gives_the_attempt_back_until_the_cap() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };
        let snooze = Ending::Snoozed { delay: Duration::from_millis(1500) };
        // Even at the last attempt a snooze comes back, after its delay.
        assert_eq!(after_run(&snooze, 3, 3, b, Millis(1_000)), JobNext::Snooze { at: Millis(2_500) });
        assert_eq!(cap_snoozes(snooze.clone(), 2, 3), snooze);
        let capped = cap_snoozes(snooze, 3, 3);
        let Ending::Failed { reason: Reason::SnoozeLimit, message } = &capped else { panic!("{capped:?}") };
        assert!(message.contains("at most 3 times"), "{message}");
        assert_eq!(after_run(&capped, 1, 3, b, Millis(0)), JobNext::Delete);
    }
}
