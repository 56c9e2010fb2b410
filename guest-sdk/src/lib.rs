//! Write [elihu](https://github.com/elihu) jobs in Rust.
//!
//! A job is a function from a context to an output, marked with
//! [`#[job]`](macro@job). The attribute turns it into the export of elihu's
//! `job` world: the SDK parses the context JSON into your type, calls your
//! function, and serialises what it returns. Build the crate with
//! `cargo build --release --target wasm32-wasip2` and the `.wasm` file in
//! `target/wasm32-wasip2/release/` is a component ready to push as a template.
//!
//! ```no_run
//! use elihu_guest::{job, JobInfo};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Resize { width: u32, height: u32, factor: f64 }
//!
//! #[derive(Serialize)]
//! struct Resized { width: u32, height: u32 }
//!
//! #[job]
//! fn run(ctx: Resize, job: &JobInfo) -> Result<Resized, String> {
//!     elihu_guest::info!("attempt {} of {}", job.attempt, job.max_attempts);
//!     if ctx.factor <= 0.0 {
//!         return Err(format!("factor must be positive, got {}", ctx.factor));
//!     }
//!     elihu_guest::progress(50, "computing");
//!     Ok(Resized {
//!         width: (ctx.width as f64 * ctx.factor) as u32,
//!         height: (ctx.height as f64 * ctx.factor) as u32,
//!     })
//! }
//! # fn main() {}
//! ```
//!
//! What the SDK does for you:
//! - a context that does not parse into your type fails the run with a clean
//!   error (reason `error`) naming the problem, never a trap;
//! - an `Err(e)` becomes the run's failure message through `e.to_string()`,
//!   so any `Display` error works;
//! - the output is serialised to JSON; `()` gives `null`.
//!
//! While it runs, a job can [`log`] (or use the [`info!`] family of macros),
//! report [`progress`], save a [`checkpoint`] that the next attempt receives
//! in [`JobInfo::checkpoint`], read [`config`] values set on its template,
//! call the hosts its template grants with the blocking [`http`] client
//! (or open TCP connections to granted `tcp://` entries with
//! `std::net::TcpStream`), read the [`secret`]s its template grants, and
//! [`snooze`]: end the run and run again later without using an attempt.
#![deny(missing_docs)]

extern crate self as elihu_guest;

pub mod http;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns `fn NAME(context: C, job: &JobInfo) -> Result<O, E>` into the job's
/// export. `C: Deserialize`, `O: Serialize`, `E: Display`. Use it once per
/// crate.
pub use elihu_guest_macro::job;

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    /// The generated bindings of the `job` world; not part of the public API.
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "job",
            pub_export_macro: true,
            export_macro_name: "__export_job",
            default_bindings_module: "::elihu_guest::__private::bindings",
            runtime_path: "::elihu_guest::__private::wit_bindgen::rt",
        });
    }

    pub use bindings::Guest;
    pub use bindings::JobInfo as RawJobInfo;

    /// Glue called by the code `#[job]` writes: parse, call, serialise.
    pub fn dispatch<C, O, E>(
        context: String,
        info: RawJobInfo,
        job: impl FnOnce(C, &super::JobInfo) -> Result<O, E>,
    ) -> Result<String, String>
    where
        C: serde::de::DeserializeOwned,
        O: serde::Serialize,
        E: std::fmt::Display,
    {
        let info = super::JobInfo::from(info);
        let context: C = serde_json::from_str(&context)
            .map_err(|e| format!("the context does not fit this job: {e}"))?;
        let output = job(context, &info).map_err(|e| e.to_string())?;
        serde_json::to_string(&output).map_err(|e| format!("the job's output is not JSON: {e}"))
    }
}

use __private::bindings::elihu::job::host;
use __private::bindings::elihu::job::types::Level as RawLevel;

/// What a run knows about its job and this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job's id.
    pub id: u64,
    /// The name of the template the job was enqueued against.
    pub template: String,
    /// This attempt's number, starting at 1.
    pub attempt: u32,
    /// How many attempts the job may make in all.
    pub max_attempts: u32,
    /// The raw checkpoint an earlier attempt saved, if any.
    pub checkpoint: Option<String>,
}

impl JobInfo {
    /// Whether this is the job's last attempt: a failure now is final.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The checkpoint an earlier attempt saved with [`checkpoint`], parsed as
    /// `T`. `None` when there is none; `Some(Err(..))` when it does not parse.
    pub fn checkpoint_as<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.checkpoint.as_deref().map(serde_json::from_str)
    }
}

impl From<__private::RawJobInfo> for JobInfo {
    fn from(raw: __private::RawJobInfo) -> Self {
        JobInfo {
            id: raw.id,
            template: raw.template,
            attempt: raw.attempt,
            max_attempts: raw.max_attempts,
            checkpoint: raw.checkpoint,
        }
    }
}

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected the job recovered from.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for RawLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => RawLevel::Trace,
            Level::Debug => RawLevel::Debug,
            Level::Info => RawLevel::Info,
            Level::Warn => RawLevel::Warn,
            Level::Error => RawLevel::Error,
        }
    }
}

/// Appends a line to the run's log, stored with the run and streamed live.
pub fn log(level: Level, message: impl AsRef<str>) {
    host::log(level.into(), message.as_ref());
}

/// Reports how far the run has come (`percent` is clamped to 100).
pub fn progress(percent: u8, message: impl AsRef<str>) {
    host::progress(percent.min(100), message.as_ref());
}

/// Saves `state` as the job's checkpoint, handed to the next attempt in
/// [`JobInfo::checkpoint`] (read it back with [`JobInfo::checkpoint_as`]).
/// Each call replaces the previous checkpoint.
pub fn checkpoint<T: Serialize + ?Sized>(state: &T) -> Result<(), serde_json::Error> {
    let text = serde_json::to_string(state)?;
    host::checkpoint(&text);
    Ok(())
}

/// The configuration value `key` set on the job's template, if any.
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// The value of the secret `name`, if the job's template grants it to the
/// job (`elihu template push --secret NAME`); `None` otherwise.
///
/// Prefer a header grant for HTTP (`--header 'Authorization=Bearer
/// {{secret:NAME}}'`): the host adds it and the job never holds the value.
/// Read a secret only where the job must speak it itself (a password in a
/// line protocol). Wherever the value shows up in the run's logs, stdout,
/// stderr, progress, checkpoint, output or error, elihu stores `***`.
pub fn secret(name: &str) -> Option<String> {
    host::secret(name)
}

/// Ends this run now and asks elihu to run the job again after `delay`
/// (rounded up to whole milliseconds). It does not return: the host stops
/// the guest at once, so nothing after the call runs (no destructors
/// either). The run is recorded as `snoozed`; the attempt is given back, so
/// the next run sees the same [`JobInfo::attempt`]; the latest
/// [`checkpoint`] is handed to it, which is where a job keeps count of its
/// own snoozes.
///
/// A node caps the snoozes of one job (`max_snoozes`, 100 by default): the
/// snooze past the cap fails the run with reason `snooze_limit` and the job
/// is over. A delay over 30 days fails the run with reason `error`.
///
/// ```no_run
/// use std::time::Duration;
/// # fn ready() -> bool { true }
/// if !ready() {
///     elihu_guest::snooze(Duration::from_secs(30));
/// }
/// ```
pub fn snooze(delay: Duration) -> ! {
    let ms = delay.as_nanos().div_ceil(1_000_000);
    host::snooze(u64::try_from(ms).unwrap_or(u64::MAX));
    unreachable!("the host ends the run at a snooze")
}

/// Formats and logs a line at a [`Level`]; the macros below are shorthands.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, ::std::format!($($arg)+))
    };
}

/// Logs a formatted line at [`Level::Trace`].
#[macro_export]
macro_rules! trace { ($($arg:tt)+) => { $crate::log!($crate::Level::Trace, $($arg)+) }; }
/// Logs a formatted line at [`Level::Debug`].
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::log!($crate::Level::Debug, $($arg)+) }; }
/// Logs a formatted line at [`Level::Info`].
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::log!($crate::Level::Info, $($arg)+) }; }
/// Logs a formatted line at [`Level::Warn`].
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::log!($crate::Level::Warn, $($arg)+) }; }
/// Logs a formatted line at [`Level::Error`].
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::log!($crate::Level::Error, $($arg)+) }; }

#[cfg(test)]
mod tests {
    use super::__private::{RawJobInfo, dispatch};
    use super::JobInfo;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize)]
    struct In {
        n: u32,
    }
    #[derive(Serialize)]
    struct Out {
        double: u32,
    }

    fn info() -> RawJobInfo {
        RawJobInfo { id: 7, template: "t".into(), attempt: 2, max_attempts: 2, checkpoint: Some("[1,2]".into()) }
    }

    #[test]
    fn dispatch_parses_calls_and_serialises() {
        let out = dispatch(r#"{"n":21}"#.into(), info(), |c: In, job: &JobInfo| {
            assert!(job.is_last_attempt());
            assert_eq!(job.checkpoint_as::<Vec<u8>>().unwrap().unwrap(), vec![1, 2]);
            Ok::<_, String>(Out { double: c.n * 2 })
        });
        assert_eq!(out.unwrap(), r#"{"double":42}"#);
    }

    #[test]
    fn a_context_that_does_not_parse_is_a_clean_error() {
        let out = dispatch(r#"{"n":"x"}"#.into(), info(), |c: In, _: &JobInfo| Ok::<_, String>(c.n));
        let err = out.unwrap_err();
        assert!(err.starts_with("the context does not fit this job: invalid type"), "{err}");
    }

    #[test]
    fn a_display_error_becomes_the_message() {
        let out = dispatch("{\"n\":1}".into(), info(), |_: In, _: &JobInfo| Err::<(), _>(std::fmt::Error));
        assert_eq!(out.unwrap_err(), "an error occurred when formatting an argument");
    }
}
