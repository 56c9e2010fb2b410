//! The per-run sandbox: the store's data (WASI context without files,
//! environment or network; captured stdout/stderr; memory limiter) and the
//! host imports a job calls (`log`, `progress`, `checkpoint`, `config`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::elihu::job::{host, types};
use super::outcome::RunEvent;
use crate::model::{LogLevel, LogLine, Progress};

/// Caps on what a run may leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    /// Log lines kept per run; later lines are counted and dropped.
    pub max_log_lines: usize,
    /// Bytes of log text kept per run.
    pub max_log_bytes: usize,
    /// Largest checkpoint accepted, in bytes; a larger one is refused with a log line.
    pub max_checkpoint_bytes: usize,
    /// Largest output accepted, in bytes; a larger one fails the run.
    pub max_output_bytes: usize,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits {
            max_log_lines: 10_000,
            max_log_bytes: 256 << 10,
            max_checkpoint_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
        }
    }
}

/// What a run has said so far: logs, progress, checkpoint. Shared between the
/// host imports and the captured stdout/stderr.
pub(crate) struct Journal {
    started: Instant,
    limits: JournalLimits,
    pub(crate) lines: Vec<LogLine>,
    bytes: usize,
    pub(crate) dropped: u64,
    pub(crate) progress: Option<Progress>,
    pub(crate) checkpoint: Option<String>,
    partial: [Vec<u8>; 2],
    events: Option<UnboundedSender<RunEvent>>,
}

impl Journal {
    pub(crate) fn new(started: Instant, limits: JournalLimits, events: Option<UnboundedSender<RunEvent>>) -> Self {
        Journal {
            started,
            limits,
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
            progress: None,
            checkpoint: None,
            partial: [Vec::new(), Vec::new()],
            events,
        }
    }

    fn emit(&self, event: RunEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        if self.lines.len() >= self.limits.max_log_lines || self.bytes + message.len() > self.limits.max_log_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        let line = LogLine { at_ms: self.started.elapsed().as_millis() as u64, level, message };
        self.emit(RunEvent::Log(line.clone()));
        self.lines.push(line);
    }

    fn progress(&mut self, percent: u8, message: String) {
        let progress = Progress { percent: percent.min(100), message };
        self.emit(RunEvent::Progress(progress.clone()));
        self.progress = Some(progress);
    }

    fn checkpoint(&mut self, state: String) {
        if state.len() > self.limits.max_checkpoint_bytes {
            let message = format!(
                "checkpoint of {} bytes refused: the limit is {} bytes; the previous checkpoint stands",
                state.len(),
                self.limits.max_checkpoint_bytes
            );
            self.log(LogLevel::Warn, message);
            return;
        }
        self.emit(RunEvent::Checkpoint(state.clone()));
        self.checkpoint = Some(state);
    }

    /// Bytes written to stdout (`stream` 0) or stderr (1), split into lines.
    fn write(&mut self, stream: usize, bytes: &[u8]) {
        self.partial[stream].extend_from_slice(bytes);
        while let Some(end) = self.partial[stream].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial[stream].drain(..=end).collect();
            self.log_stream_line(stream, &line[..line.len() - 1]);
        }
        // A line longer than the whole log budget is cut rather than held forever.
        if self.partial[stream].len() > self.limits.max_log_bytes {
            let line = std::mem::take(&mut self.partial[stream]);
            self.log_stream_line(stream, &line);
        }
    }

    fn log_stream_line(&mut self, stream: usize, line: &[u8]) {
        let level = if stream == 0 { LogLevel::Stdout } else { LogLevel::Stderr };
        let text = String::from_utf8_lossy(line).trim_end_matches('\r').to_string();
        self.log(level, text);
    }

    /// Flushes unterminated stdout/stderr lines at the end of the run.
    pub(crate) fn finish(&mut self) {
        for stream in 0..2 {
            if !self.partial[stream].is_empty() {
                let line = std::mem::take(&mut self.partial[stream]);
                self.log_stream_line(stream, &line);
            }
        }
        if self.dropped > 0 {
            let note = format!(
                "{} log lines dropped: a run keeps at most {} lines and {} bytes of log",
                self.dropped, self.limits.max_log_lines, self.limits.max_log_bytes
            );
            // The note itself bypasses the cap so the log always says what happened.
            self.lines.push(LogLine { at_ms: self.started.elapsed().as_millis() as u64, level: LogLevel::Warn, message: note });
        }
    }

    /// The panic message a Rust guest printed to stderr, if any.
    pub(crate) fn panic_message(&self) -> Option<String> {
        let stderr: Vec<&str> =
            self.lines.iter().filter(|l| l.level == LogLevel::Stderr).map(|l| l.message.as_str()).collect();
        let at = stderr.iter().position(|l| l.contains("panicked at"))?;
        let location = stderr[at].split("panicked at").nth(1).unwrap_or("").trim().trim_end_matches(':');
        let message: Vec<&str> =
            stderr[at + 1..].iter().take_while(|l| !l.starts_with("note: ")).copied().collect();
        Some(format!("panicked at {location}: {}", message.join("\n")))
    }
}

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
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(max_log_lines: usize, max_log_bytes: usize) -> Journal {
        let limits = JournalLimits { max_log_lines, max_log_bytes, ..JournalLimits::default() };
        Journal::new(Instant::now(), limits, None)
    }

    #[test]
    fn stdout_is_split_into_lines_and_flushed_at_the_end() {
        let mut j = journal(100, 1000);
        j.write(0, b"one\ntw");
        j.write(0, b"o\r\nthree");
        j.write(1, b"err\n");
        j.finish();
        let lines: Vec<(LogLevel, &str)> = j.lines.iter().map(|l| (l.level, l.message.as_str())).collect();
        assert_eq!(
            lines,
            [(LogLevel::Stdout, "one"), (LogLevel::Stdout, "two"), (LogLevel::Stderr, "err"), (LogLevel::Stdout, "three")]
        );
    }

    #[test]
    fn logs_past_the_cap_are_counted_and_said() {
        let mut j = journal(3, 1000);
        for i in 0..10 {
            j.log(LogLevel::Info, format!("line {i}"));
        }
        j.finish();
        assert_eq!(j.dropped, 7);
        assert_eq!(j.lines.len(), 4);
        assert_eq!(j.lines[3].message, "7 log lines dropped: a run keeps at most 3 lines and 1000 bytes of log");

        let mut j = journal(100, 10);
        j.log(LogLevel::Info, "0123456789".into());
        j.log(LogLevel::Info, "x".into());
        assert_eq!((j.lines.len(), j.dropped), (1, 1));
    }

    #[test]
    fn an_oversized_checkpoint_is_refused_and_the_previous_one_stands() {
        let mut j = Journal::new(Instant::now(), JournalLimits { max_checkpoint_bytes: 4, ..JournalLimits::default() }, None);
        j.checkpoint("ok".into());
        j.checkpoint("too long".into());
        assert_eq!(j.checkpoint.as_deref(), Some("ok"));
        assert!(j.lines[0].message.starts_with("checkpoint of 8 bytes refused"));
    }

    #[test]
    fn the_panic_message_is_found_in_stderr() {
        let mut j = journal(100, 10_000);
        j.write(1, b"\nthread '<unnamed>' panicked at src/lib.rs:13:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(j.panic_message().unwrap(), "panicked at src/lib.rs:13:5: boom");
    }
}
