//! What a guest sends the host while it runs (log lines, stdout/stderr,
//! progress, checkpoints) and what it leaves behind (output, error message),
//! each within a bound ([`GuestLimits`]): the journal keeps what fits, counts
//! what does not, notes every cut on the run's log, and hands watchers a
//! bounded live [`RunFeed`] that holds only the latest progress and
//! checkpoint however fast the guest reports them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::outcome::{LogLevel, LogLine, Progress};
use crate::units::format_size_human;

/// Every bound a guest meets besides its memory and time, per run. The node
/// defaults suit most jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Log lines kept per run (host logs, stdout and stderr together);
    /// later lines are counted and dropped.
    pub max_log_lines: usize,
    /// Bytes of log text kept per run.
    pub max_log_bytes: usize,
    /// The longest log line (or stdout/stderr line); longer ones are cut.
    pub max_log_line_bytes: usize,
    /// The longest failure message (the guest's error, a trap's message);
    /// a longer one is truncated.
    pub max_message_bytes: usize,
    /// The longest progress message; a longer one is cut.
    pub max_progress_message_bytes: usize,
    /// Largest checkpoint accepted; a larger one is refused and the previous
    /// checkpoint stands.
    pub max_checkpoint_bytes: usize,
    /// Largest output accepted; a larger one fails the run.
    pub max_output_bytes: usize,
    /// Progress is stored and streamed at most once per this interval; reports
    /// in between are coalesced to the latest.
    pub progress_interval: Duration,
    /// A running job's checkpoint is stored at most once per this interval
    /// (the latest one is always stored with the run's outcome).
    pub checkpoint_interval: Duration,
    /// Log lines waiting to be streamed to watchers; past it lines are kept
    /// in the run's log but not streamed live.
    pub max_streamed_lines: usize,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            max_log_lines: 10_000,
            max_log_bytes: 256 << 10,
            max_log_line_bytes: 16 << 10,
            max_message_bytes: 64 << 10,
            max_progress_message_bytes: 1 << 10,
            max_checkpoint_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            progress_interval: Duration::from_millis(250),
            checkpoint_interval: Duration::from_secs(1),
            max_streamed_lines: 1024,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
}

/// What a run has said so far and what was cut from it. Shared between the
/// host imports and the captured stdout/stderr.
pub(crate) struct Journal {
    started: Instant,
    limits: GuestLimits,
    pub(crate) lines: Vec<LogLine>,
    bytes: usize,
    /// Lines dropped past the line or byte cap.
    dropped: u64,
    /// Lines cut to the longest line, and the longest seen.
    lines_cut: (u64, usize),
    /// Progress messages cut, and the longest seen.
    progress_cut: (u64, usize),
    /// Checkpoints refused for their size, and the largest seen.
    checkpoints_refused: (u64, usize),
    pub(crate) progress: Option<Progress>,
    pub(crate) checkpoint: Option<String>,
    /// Unterminated stdout/stderr text, and whether the rest of an
    /// over-long line is being skipped.
    partial: [Vec<u8>; 2],
    skipping: [bool; 2],
    /// Bytes of the current stdout/stderr line so far, skipped ones included.
    line_len: [usize; 2],
    /// Cuts noted by the runtime itself (the failure message).
    notes: Vec<String>,
    feed: Option<Arc<RunFeed>>,
}

impl Journal {
    pub(crate) fn new(started: Instant, limits: GuestLimits, feed: Option<Arc<RunFeed>>) -> Self {
        Journal {
            started,
            limits,
            lines: Vec::new(),
            bytes: 0,
            dropped: 0,
            lines_cut: (0, 0),
            progress_cut: (0, 0),
            checkpoints_refused: (0, 0),
            progress: None,
            checkpoint: None,
            partial: [Vec::new(), Vec::new()],
            skipping: [false; 2],
            line_len: [0; 2],
            notes: Vec::new(),
            feed,
        }
    }

    fn at_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn log(&mut self, level: LogLevel, mut message: String) {
        let max = self.limits.max_log_line_bytes;
        let whole = message.len();
        if whole > max {
            self.line_cut(whole);
            truncate_utf8(&mut message, max);
            message.push_str(&format!(" … [line cut at {} of {}]", format_size_human(max), format_size_human(whole)));
        }
        self.push_line(level, message);
    }

    /// Keeps a line if the run's log has room for it, and streams it.
    fn push_line(&mut self, level: LogLevel, message: String) {
        if self.lines.len() >= self.limits.max_log_lines || self.bytes + message.len() > self.limits.max_log_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        let line = LogLine { at_ms: self.at_ms(), level, message };
        if let Some(feed) = &self.feed {
            feed.line(line.clone());
        }
        self.lines.push(line);
    }

    fn line_cut(&mut self, whole: usize) {
        self.lines_cut = (self.lines_cut.0 + 1, self.lines_cut.1.max(whole));
    }

    pub(crate) fn progress(&mut self, percent: u8, mut message: String) {
        if message.len() > self.limits.max_progress_message_bytes {
            self.progress_cut = (self.progress_cut.0 + 1, self.progress_cut.1.max(message.len()));
            truncate_utf8(&mut message, self.limits.max_progress_message_bytes);
        }
        let progress = Progress { percent: percent.min(100), message };
        if let Some(feed) = &self.feed {
            feed.progress(progress.clone());
        }
        self.progress = Some(progress);
    }

    pub(crate) fn checkpoint(&mut self, state: String) {
        if state.len() > self.limits.max_checkpoint_bytes {
            self.checkpoints_refused = (self.checkpoints_refused.0 + 1, self.checkpoints_refused.1.max(state.len()));
            return;
        }
        if let Some(feed) = &self.feed {
            feed.checkpoint(state.clone());
        }
        self.checkpoint = Some(state);
    }

    /// Bytes written to stdout (`stream` 0) or stderr (1), split into lines.
    /// A line longer than the longest log line is logged cut as soon as it
    /// is that long, and the rest of it, up to its newline, is skipped:
    /// nothing is held without bound.
    pub(crate) fn write(&mut self, stream: usize, mut bytes: &[u8]) {
        let max = self.limits.max_log_line_bytes;
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest) = match newline {
                Some(end) => (&bytes[..end], &bytes[end + 1..]),
                None => (bytes, &[][..]),
            };
            self.line_len[stream] = self.line_len[stream].saturating_add(chunk.len());
            if !self.skipping[stream] {
                let room = max.saturating_sub(self.partial[stream].len());
                if chunk.len() > room {
                    self.partial[stream].extend_from_slice(&chunk[..room]);
                    let line = std::mem::take(&mut self.partial[stream]);
                    self.log_stream_line(stream, &line, true);
                    self.skipping[stream] = true;
                } else {
                    self.partial[stream].extend_from_slice(chunk);
                }
            }
            if newline.is_some() {
                self.end_stream_line(stream);
            }
            bytes = rest;
        }
    }

    /// The guest ended a stdout/stderr line (or the run ended).
    fn end_stream_line(&mut self, stream: usize) {
        if self.skipping[stream] {
            self.line_cut(self.line_len[stream]);
        } else if !self.partial[stream].is_empty() || self.line_len[stream] == 0 {
            let line = std::mem::take(&mut self.partial[stream]);
            self.log_stream_line(stream, &line, false);
        }
        self.skipping[stream] = false;
        self.line_len[stream] = 0;
    }

    fn log_stream_line(&mut self, stream: usize, line: &[u8], cut: bool) {
        let level = if stream == 0 { LogLevel::Stdout } else { LogLevel::Stderr };
        let mut text = String::from_utf8_lossy(line).trim_end_matches('\r').to_string();
        if cut {
            text.push_str(&format!(" … [line cut at {}]", format_size_human(self.limits.max_log_line_bytes)));
        }
        self.push_line(level, text);
    }

    /// Records a cut the runtime made itself (the failure message): it is
    /// written to the run's log when the run ends.
    pub(crate) fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Bounds a failure message, noting the cut.
    pub(crate) fn bound_message(&mut self, mut message: String) -> String {
        let max = self.limits.max_message_bytes;
        if message.len() <= max {
            return message;
        }
        let whole = message.len();
        truncate_utf8(&mut message, max);
        let cut = format!("truncated at {} of {}", format_size_human(max), format_size_human(whole));
        message.push_str(&format!(" … [{cut}]"));
        self.note(format!("the failure message was {cut}"));
        message
    }

    /// Flushes unterminated stdout/stderr lines and writes every cut the run
    /// met as host lines at the end of its log (they bypass the caps, so the
    /// log always says what was cut).
    pub(crate) fn finish(&mut self) {
        for stream in 0..2 {
            if self.skipping[stream] || !self.partial[stream].is_empty() {
                self.end_stream_line(stream);
            }
        }
        let l = self.limits;
        let mut notes = std::mem::take(&mut self.notes);
        if self.dropped > 0 {
            notes.push(format!(
                "{} log lines dropped: a run keeps at most {} lines and {} of log",
                self.dropped,
                l.max_log_lines,
                format_size_human(l.max_log_bytes)
            ));
        }
        if self.lines_cut.0 > 0 {
            notes.push(format!(
                "{} log lines cut at {} (the longest was {})",
                self.lines_cut.0,
                format_size_human(l.max_log_line_bytes),
                format_size_human(self.lines_cut.1)
            ));
        }
        if self.progress_cut.0 > 0 {
            notes.push(format!(
                "{} progress messages cut at {} (the longest was {})",
                self.progress_cut.0,
                format_size_human(l.max_progress_message_bytes),
                format_size_human(self.progress_cut.1)
            ));
        }
        if self.checkpoints_refused.0 > 0 {
            notes.push(format!(
                "{} checkpoints refused: the largest was {} and the limit is {}; the previous checkpoint stands",
                self.checkpoints_refused.0,
                format_size_human(self.checkpoints_refused.1),
                format_size_human(l.max_checkpoint_bytes)
            ));
        }
        let at_ms = self.at_ms();
        self.lines.extend(notes.into_iter().map(|message| LogLine { at_ms, level: LogLevel::Host, message }));
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

/// A running job's live reports for whoever watches it, in bounded memory:
/// log lines up to [`GuestLimits::max_streamed_lines`] waiting, and only the
/// latest progress and checkpoint. The guest never waits on it; a slow
/// watcher (or a slow database behind it) misses intermediate reports
/// instead of making the node buffer them.
#[derive(Debug)]
pub struct RunFeed {
    pending: Mutex<FeedBatch>,
    changed: tokio::sync::Notify,
    max_lines: usize,
}

/// What a [`RunFeed`] gathered since it was last taken.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedBatch {
    /// New log lines, in order.
    pub lines: Vec<LogLine>,
    /// Lines not streamed because watchers fell behind (they are in the run's log).
    pub lines_skipped: u64,
    /// The latest progress, if reported since.
    pub progress: Option<Progress>,
    /// The latest checkpoint, if saved since.
    pub checkpoint: Option<String>,
}

impl FeedBatch {
    /// Whether nothing new is in it.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.lines_skipped == 0 && self.progress.is_none() && self.checkpoint.is_none()
    }
}

impl RunFeed {
    /// A feed holding at most `max_lines` unread log lines.
    pub fn new(max_lines: usize) -> Arc<Self> {
        Arc::new(RunFeed { pending: Mutex::new(FeedBatch::default()), changed: tokio::sync::Notify::new(), max_lines })
    }

    /// Waits until something new arrived since the last [`take`](Self::take)
    /// (returns at once if something did).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Everything new since the last take.
    pub fn take(&self) -> FeedBatch {
        std::mem::take(&mut *self.pending.lock().unwrap())
    }

    fn update(&self, f: impl FnOnce(&mut FeedBatch)) {
        f(&mut self.pending.lock().unwrap());
        self.changed.notify_one();
    }

    fn line(&self, line: LogLine) {
        let max = self.max_lines;
        self.update(|p| {
            if p.lines.len() < max {
                p.lines.push(line)
            } else {
                p.lines_skipped += 1
            }
        });
    }

    fn progress(&self, progress: Progress) {
        self.update(|p| p.progress = Some(progress));
    }

    fn checkpoint(&self, checkpoint: String) {
        self.update(|p| p.checkpoint = Some(checkpoint));
    }
}

/// Spaces out writes of the latest value of a coalesced stream (progress,
/// checkpoints): at most one per interval, the first at once.
#[derive(Debug)]
pub struct Throttle<T> {
    interval: Duration,
    next: Option<tokio::time::Instant>,
    pending: VecDeque<T>,
}

impl<T> Throttle<T> {
    /// A throttle letting one value through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Throttle { interval, next: None, pending: VecDeque::with_capacity(1) }
    }

    /// Replaces the waiting value with `value`.
    pub fn offer(&mut self, value: T) {
        self.pending.clear();
        self.pending.push_back(value);
    }

    /// When the waiting value may go, if one waits.
    pub fn due_at(&self) -> Option<tokio::time::Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.next.unwrap_or_else(tokio::time::Instant::now))
    }

    /// The waiting value, if its time has come.
    pub fn take_due(&mut self, now: tokio::time::Instant) -> Option<T> {
        if self.pending.is_empty() || self.next.is_some_and(|next| next > now) {
            return None;
        }
        self.next = Some(now + self.interval);
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(max_log_lines: usize, max_log_bytes: usize) -> Journal {
        let limits = GuestLimits { max_log_lines, max_log_bytes, ..GuestLimits::default() };
        Journal::new(Instant::now(), limits, None)
    }

    fn messages(j: &Journal) -> Vec<(LogLevel, &str)> {
        j.lines.iter().map(|l| (l.level, l.message.as_str())).collect()
    }

    #[test]
    fn stdout_is_split_into_lines_and_flushed_at_the_end() {
        let mut j = journal(100, 1000);
        j.write(0, b"one\ntw");
        j.write(0, b"o\r\nthree");
        j.write(1, b"err\n");
        j.finish();
        assert_eq!(
            messages(&j),
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
        assert_eq!(j.lines.len(), 4);
        assert_eq!(j.lines[3].message, "7 log lines dropped: a run keeps at most 3 lines and 1000B of log");
        assert_eq!(j.lines[3].level, LogLevel::Host);

        let mut j = journal(100, 10);
        j.log(LogLevel::Info, "0123456789".into());
        j.log(LogLevel::Info, "x".into());
        assert_eq!((j.lines.len(), j.dropped), (1, 1));
    }

    #[test]
    fn a_long_line_is_cut_and_the_rest_of_it_skipped() {
        let limits = GuestLimits { max_log_line_bytes: 8, ..GuestLimits::default() };
        let mut j = Journal::new(Instant::now(), limits, None);
        j.log(LogLevel::Info, "0123456789abcdef".into());
        // 1 MB written to stdout in pieces, with no newline until the end.
        for _ in 0..1000 {
            j.write(0, &[b'y'; 1000]);
        }
        j.write(0, b"\nnext\n");
        j.finish();
        let m = messages(&j);
        assert_eq!(m[0], (LogLevel::Info, "01234567 … [line cut at 8B of 16B]"));
        assert_eq!(m[1], (LogLevel::Stdout, "yyyyyyyy … [line cut at 8B]"));
        assert_eq!(m[2], (LogLevel::Stdout, "next"));
        assert_eq!(m[3], (LogLevel::Host, "2 log lines cut at 8B (the longest was 976.6KiB)"));
        assert!(j.partial[0].capacity() < 1000, "the skipped line was not held");
    }

    #[test]
    fn an_oversized_checkpoint_is_refused_and_the_previous_one_stands() {
        let mut j = Journal::new(Instant::now(), GuestLimits { max_checkpoint_bytes: 4, ..GuestLimits::default() }, None);
        j.checkpoint("ok".into());
        j.checkpoint("too long".into());
        j.checkpoint("longer still".into());
        j.finish();
        assert_eq!(j.checkpoint.as_deref(), Some("ok"));
        assert_eq!(
            messages(&j),
            [(LogLevel::Host, "2 checkpoints refused: the largest was 12B and the limit is 4B; the previous checkpoint stands")]
        );
    }

    #[test]
    fn messages_and_progress_are_bounded() {
        let limits = GuestLimits { max_message_bytes: 4, max_progress_message_bytes: 3, ..GuestLimits::default() };
        let mut j = Journal::new(Instant::now(), limits, None);
        assert_eq!(j.bound_message("short".chars().take(4).collect()), "shor");
        assert_eq!(j.bound_message("aéé".into()), "aé … [truncated at 4B of 5B]");
        j.progress(150, "abcdef".into());
        assert_eq!(j.progress, Some(Progress { percent: 100, message: "abc".into() }));
        j.finish();
        assert_eq!(
            messages(&j),
            [
                (LogLevel::Host, "the failure message was truncated at 4B of 5B"),
                (LogLevel::Host, "1 progress messages cut at 3B (the longest was 6B)"),
            ]
        );
    }

    #[test]
    fn the_feed_keeps_the_latest_progress_and_a_bounded_backlog_of_lines() {
        let feed = RunFeed::new(2);
        let mut j = Journal::new(Instant::now(), GuestLimits::default(), Some(feed.clone()));
        for i in 0..1_000 {
            j.progress((i % 100) as u8, format!("p{i}"));
            j.log(LogLevel::Info, format!("l{i}"));
        }
        j.checkpoint("c".into());
        let batch = feed.take();
        assert_eq!(batch.progress, Some(Progress { percent: 99, message: "p999".into() }));
        assert_eq!(batch.lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["l0", "l1"]);
        assert_eq!(batch.lines_skipped, 998);
        assert_eq!(batch.checkpoint.as_deref(), Some("c"));
        assert!(feed.take().is_empty());
        assert_eq!(j.lines.len(), 1_000, "every line is still in the run's log");
    }

    #[test]
    fn a_throttle_lets_the_latest_value_through_once_per_interval() {
        let start = tokio::time::Instant::now();
        let mut t = Throttle::new(Duration::from_millis(100));
        assert_eq!(t.due_at(), None);
        t.offer(1);
        assert_eq!(t.take_due(start), Some(1));
        t.offer(2);
        t.offer(3);
        assert_eq!(t.due_at(), Some(start + Duration::from_millis(100)));
        assert_eq!(t.take_due(start + Duration::from_millis(50)), None);
        assert_eq!(t.take_due(start + Duration::from_millis(100)), Some(3));
        assert_eq!(t.take_due(start + Duration::from_millis(500)), None);
    }

    #[test]
    fn the_panic_message_is_found_in_stderr() {
        let mut j = journal(100, 10_000);
        j.write(1, b"\nthread '<unnamed>' panicked at src/lib.rs:13:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n");
        assert_eq!(j.panic_message().unwrap(), "panicked at src/lib.rs:13:5: boom");
    }
}
