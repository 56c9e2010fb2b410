//! The audit of a run's outbound calls: one [`Call`] per HTTP request or TCP
//! connection the guest attempted, granted or refused, with what came of it
//! and the body bytes each way. Rows are opened when the guest asks, filled
//! in as the call goes, and closed when its response body ends, when it
//! fails, or when the run ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::model::Call;

/// Body byte counters of one call in flight, shared with its bodies.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

struct Open {
    started: Instant,
    meter: Option<Arc<Meter>>,
}

/// The calls of one run, in the order they were made.
#[derive(Default)]
pub(crate) struct Audit {
    calls: Vec<Call>,
    open: Vec<Option<Open>>,
}

impl Audit {
    /// How many calls were made so far.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The target of a row.
    pub(crate) fn target(&self, index: usize) -> String {
        self.calls.get(index).map(|c| c.target.clone()).unwrap_or_default()
    }

    /// Records a call the host refused outright.
    pub(crate) fn denied(&mut self, at_ms: u64, method: &str, target: String, why: String) {
        self.calls.push(Call {
            at_ms,
            method: method.to_string(),
            target,
            status: None,
            denied: Some(why),
            error: None,
            bytes_sent: None,
            bytes_received: None,
            duration_ms: 0,
        });
        self.open.push(None);
    }

    /// Records an allowed TCP connection.
    pub(crate) fn connected(&mut self, at_ms: u64, target: String) {
        self.calls.push(Call {
            at_ms,
            method: "CONNECT".into(),
            target,
            status: None,
            denied: None,
            error: None,
            bytes_sent: None,
            bytes_received: None,
            duration_ms: 0,
        });
        self.open.push(None);
    }

    /// Opens the row of an allowed HTTP request; returns its index.
    pub(crate) fn open(&mut self, at_ms: u64, method: &str, target: String, meter: Arc<Meter>) -> usize {
        self.calls.push(Call {
            at_ms,
            method: method.to_string(),
            target,
            status: None,
            denied: None,
            error: None,
            bytes_sent: Some(0),
            bytes_received: Some(0),
            duration_ms: 0,
        });
        self.open.push(Some(Open { started: Instant::now(), meter: Some(meter) }));
        self.calls.len() - 1
    }

    /// The call was refused after it was opened (the forgery guard). A
    /// refused call sent nothing, so it carries no byte counts.
    pub(crate) fn refuse(&mut self, index: usize, why: String) {
        if let Some(call) = self.calls.get_mut(index) {
            call.denied = Some(why);
            call.bytes_sent = None;
            call.bytes_received = None;
        }
        self.close(index);
    }

    /// A response head arrived.
    pub(crate) fn status(&mut self, index: usize, status: u16) {
        if let Some(call) = self.calls.get_mut(index) {
            call.status = Some(status);
        }
    }

    /// The call failed; the first failure is the one kept. Closes it.
    pub(crate) fn fail(&mut self, index: usize, error: String) {
        if let Some(call) = self.calls.get_mut(index) {
            call.error.get_or_insert(error);
        }
        self.close(index);
    }

    /// The call is over: bytes and duration become final.
    pub(crate) fn close(&mut self, index: usize) {
        let Some(open) = self.open.get_mut(index).and_then(Option::take) else { return };
        let call = &mut self.calls[index];
        call.duration_ms = open.started.elapsed().as_millis() as u64;
        if let Some(meter) = open.meter
            && call.denied.is_none()
        {
            call.bytes_sent = Some(meter.sent.load(Ordering::Relaxed));
            call.bytes_received = Some(meter.received.load(Ordering::Relaxed));
        }
    }

    /// Ends the audit with the run: calls still waiting for a response are
    /// marked cut, every row is closed.
    pub(crate) fn finish(&mut self) -> Vec<Call> {
        for index in 0..self.calls.len() {
            if self.open[index].is_some() && self.calls[index].status.is_none() {
                self.calls[index].error.get_or_insert_with(|| "the run ended before the response arrived".into());
            }
            self.close(index);
        }
        self.open.clear();
        std::mem::take(&mut self.calls)
    }
}
