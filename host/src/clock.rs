//! Time for the queue: an injectable clock (what time it is, and waiting
//! until a time) so tests move time instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::model::Millis;

/// A wait on a clock.
pub type Wait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the engine and the client read "now" from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The time now.
    fn now(&self) -> Millis;

    /// Resolves once the clock has reached `deadline`.
    fn sleep_until(&self, deadline: Millis) -> Wait<'_>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis(chrono::Utc::now().timestamp_millis())
    }

    fn sleep_until(&self, deadline: Millis) -> Wait<'_> {
        Box::pin(tokio::time::sleep(deadline.duration_since(self.now())))
    }
}

/// A clock that moves only when told to. Cloning shares the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug)]
struct Manual {
    now: AtomicI64,
    moved: Notify,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Millis) -> Self {
        ManualClock(Arc::new(Manual { now: AtomicI64::new(start.0), moved: Notify::new() }))
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.now.fetch_add(by, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }

    /// Sets the time.
    pub fn set(&self, to: Millis) {
        self.0.now.store(to.0, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.now.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, deadline: Millis) -> Wait<'_> {
        Box::pin(async move {
            loop {
                let moved = self.0.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                if self.now() >= deadline {
                    return;
                }
                moved.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use super::*;

    #[test]
    fn a_manual_clock_wakes_a_sleeper_when_it_reaches_its_time() {
        let clock = ManualClock::new(Millis(0));
        let mut wait = clock.sleep_until(Millis(1_000));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(999));
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "woken before its time");
        clock.advance(Duration::from_millis(1));
        assert!(wait.as_mut().poll(&mut cx).is_ready(), "not woken at its time");
        assert!(clock.sleep_until(Millis(500)).as_mut().poll(&mut cx).is_ready(), "a time already passed");
    }
}
