//! The per-run sandbox: the store's data (WASI context without files or
//! environment, with network only as the template grants through the run's
//! [`RunNet`]; stdout/stderr captured into the run's journal; memory
//! limiter; the `wasi:http` context) and the host imports a job calls
//! (`log`, `progress`, `checkpoint`, `config`, `secret`, `snooze`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::elihu::job::{host, types};
use super::journal::Journal;
use super::net::{Capabilities, NetHooks, RunNet, socket_check};
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
    /// The most linear memory granted, in bytes (for the memory metric).
    pub(crate) peak: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        MemoryLimiter { cap, refused: None, peak: 0 }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = Some(self.refused.map_or(desired, |d| d.max(desired)));
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
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
    /// The run broke one of its outbound bounds.
    Limit,
}

/// The data of one run's wasmtime `Store`.
pub(crate) struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: NetHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) journal: Arc<Mutex<Journal>>,
    config: Arc<BTreeMap<String, String>>,
    capabilities: Option<Arc<Capabilities>>,
    pub(crate) interrupted: Option<Interruption>,
    /// The job called `snooze`: the delay it asked for, or why it was refused.
    pub(crate) snooze: Option<Result<Duration, String>>,
}

/// The longest a job may snooze at once.
pub const MAX_SNOOZE: Duration = Duration::from_secs(30 * 24 * 3600);

impl RunState {
    pub(crate) fn new(
        journal: Arc<Mutex<Journal>>,
        memory_cap: usize,
        config: Arc<BTreeMap<String, String>>,
        hooks: NetHooks,
        capabilities: Option<Arc<Capabilities>>,
    ) -> Self {
        let (tcp, lookup) = hooks.tcp();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(CapturedStream::stdout(&journal))
            .stderr(CapturedStream::stderr(&journal))
            .allow_tcp(tcp)
            .allow_udp(false)
            .allow_ip_name_lookup(lookup);
        if let Some(net) = hooks.granted().filter(|_| tcp) {
            wasi.socket_addr_check(socket_check(net.clone()));
        } else {
            wasi.socket_addr_check(|_, _| Box::pin(async { false }));
        }
        RunState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            limiter: MemoryLimiter::new(memory_cap),
            journal,
            config,
            capabilities,
            interrupted: None,
            snooze: None,
        }
    }

    /// The sockets view and the run's network state, borrowed together (for
    /// the granted name lookup).
    pub(crate) fn sockets_and_net(&mut self) -> (WasiSocketsCtxView<'_>, &Arc<RunNet>) {
        (WasiSocketsCtxView { ctx: self.wasi.sockets(), table: &mut self.table }, self.hooks.net())
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
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

    fn secret(&mut self, name: String) -> Option<String> {
        self.capabilities.as_ref()?.readable(&name).map(|v| v.expose().to_string())
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
