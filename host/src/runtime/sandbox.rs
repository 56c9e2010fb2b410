//! The per-run sandbox: the store's data (WASI context without files,
//! environment or network; stdout/stderr captured into the run's journal;
//! memory limiter) and the host imports a job calls (`log`, `progress`,
//! `checkpoint`, `config`, `snooze`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::elihu::job::{host, types};
use super::journal::Journal;
use crate::model::LogLevel;

/// The guest's stdout or stderr, captured into the run's journal.
#[derive(Clone)]
pub(crate) struct CapturedStream {
    journal: Arc<Mutex<Journal>>,
    stream: usize,
}

impl CapturedStream {
    pub(crate) fn stdout(journal: &Arc<Mutex<Journal>>) -> Self {
        CapturedStream { journal: journal.clone(), stream: 0 }
    }
    pub(crate) fn stderr(journal: &Arc<Mutex<Journal>>) -> Self {
        CapturedStream { journal: journal.clone(), stream: 1 }
    }
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.journal.lock().unwrap().write(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready; past the cap lines are counted and dropped, never a trap.
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.journal.lock().unwrap().write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Caps a run's linear memory and remembers whether the cap was hit, so that
/// the resulting abort is reported as `memory` rather than a plain trap.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub(crate) refused: Option<usize>,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        MemoryLimiter { cap, refused: None }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = Some(self.refused.map_or(desired, |d| d.max(desired)));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Why the host interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    Timeout,
    Cancelled,
}

/// The data of one run's wasmtime `Store`.
pub(crate) struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) journal: Arc<Mutex<Journal>>,
    config: Arc<BTreeMap<String, String>>,
    pub(crate) interrupted: Option<Interruption>,
    /// The job called `snooze`: the delay it asked for, or why it was refused.
    pub(crate) snooze: Option<Result<Duration, String>>,
}

/// The longest a job may snooze at once.
pub const MAX_SNOOZE: Duration = Duration::from_secs(30 * 24 * 3600);

impl RunState {
    pub(crate) fn new(journal: Arc<Mutex<Journal>>, memory_cap: usize, config: Arc<BTreeMap<String, String>>) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(CapturedStream::stdout(&journal))
            .stderr(CapturedStream::stderr(&journal))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_cap),
            journal,
            config,
            interrupted: None,
            snooze: None,
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for RunState {}

impl host::Host for RunState {
    fn log(&mut self, level: types::Level, message: String) {
        let level = match level {
            types::Level::Trace => LogLevel::Trace,
            types::Level::Debug => LogLevel::Debug,
            types::Level::Info => LogLevel::Info,
            types::Level::Warn => LogLevel::Warn,
            types::Level::Error => LogLevel::Error,
        };
        self.journal.lock().unwrap().log(level, message);
    }

    fn progress(&mut self, percent: u8, message: String) {
        self.journal.lock().unwrap().progress(percent, message);
    }

    fn checkpoint(&mut self, state: String) {
        self.journal.lock().unwrap().checkpoint(state);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn snooze(&mut self, milliseconds: u64) -> wasmtime::Result<()> {
        let delay = Duration::from_millis(milliseconds);
        self.snooze = Some(if delay <= MAX_SNOOZE {
            Ok(delay)
        } else {
            Err(format!(
                "the job asked to snooze for {}; the longest snooze is {}",
                crate::units::format_duration(delay),
                crate::units::format_duration(MAX_SNOOZE)
            ))
        });
        // The trap stops the guest here; `classify` reads what was asked.
        Err(wasmtime::Error::msg("the job snoozed"))
    }
}
