//! Helpers shared by the test modules: runtimes, example jobs, requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use elihu::grants::{AllowedHost, Grants, HeaderGrant};
use elihu::runtime::{Capabilities, JobInfo, LoadedJob, RunLimits, RunOutcome, RunRequest, Runtime, RuntimeConfig};
use serde_json::Value;

pub mod browser;
pub mod node;
pub mod otlp;
pub mod polyglot;
pub mod postgres;
pub mod process;
pub mod servers;
pub mod sse;

/// A directory for compiled artifacts shared by every runtime in this test
/// process, so each example is compiled once.
pub fn artifact_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path()
}

/// A runtime with the given epoch tick, sharing the test process's artifacts.
pub fn runtime_with_tick(tick: Duration) -> Runtime {
    Runtime::new(RuntimeConfig {
        epoch_tick: tick,
        max_concurrent_runs: 32,
        artifact_dir: Some(artifact_dir().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// A runtime that trusts the certificates in `ca_file` for outbound HTTPS.
pub fn runtime_trusting(ca_file: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_concurrent_runs: 8,
        artifact_dir: Some(artifact_dir().to_path_buf()),
        ca_file: Some(ca_file.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// What a test run may reach, built up grant by grant.
#[derive(Default)]
pub struct Grant(Capabilities);

impl Grant {
    /// Allowed hosts.
    pub fn hosts(entries: &[&str]) -> Grant {
        let allowed_hosts = entries.iter().map(|e| AllowedHost::parse(e).unwrap()).collect();
        Grant(Capabilities { grants: Grants { allowed_hosts, ..Grants::default() }, ..Capabilities::default() })
    }

    /// A header (`Name=Value`) the host adds for `host`, one of the allowed hosts.
    pub fn header(mut self, host: &str, text: &str) -> Grant {
        self.0.grants.headers.push(HeaderGrant::parse(AllowedHost::parse(host).unwrap(), text).unwrap());
        self
    }

    /// A secret's value, for the header placeholders.
    pub fn secret(mut self, name: &str, value: &str) -> Grant {
        self.0.secrets.insert(name.into(), value.to_string().into());
        self
    }

    /// A secret the job may read.
    pub fn readable(mut self, name: &str, value: &str) -> Grant {
        self.0.grants.secrets.push(name.into());
        self.secret(name, value)
    }

    /// The capabilities of a run.
    pub fn build(self) -> Option<Arc<Capabilities>> {
        Some(Arc::new(self.0))
    }
}

/// The runtime most tests share (10 ms tick).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| runtime_with_tick(Duration::from_millis(10)))
}

/// The bytes of an example job.
pub fn example(name: &str) -> &'static [u8] {
    elihu::examples::get(name).unwrap_or_else(|| panic!("no example job {name}")).wasm
}

/// The path of an example job's context schema.
pub fn schema_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-jobs").join(name).join("schema.json")
}

/// An example job loaded into `rt`.
pub fn load(rt: &Runtime, name: &str) -> Arc<LoadedJob> {
    rt.load(example(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A request for attempt 1 of 1 with a context and limits.
pub fn request(template: &str, context: Value, limits: RunLimits) -> RunRequest {
    RunRequest {
        context: context.to_string(),
        info: JobInfo { id: 1, template: template.into(), attempt: 1, max_attempts: 1, checkpoint: None },
        limits,
        ..RunRequest::default()
    }
}

/// Limits with a timeout and the default memory cap.
pub fn timeout(d: Duration) -> RunLimits {
    RunLimits { timeout: d, ..RunLimits::default() }
}

/// Runs an example job once on the shared runtime with default limits.
pub async fn run(name: &str, context: Value) -> RunOutcome {
    let rt = runtime();
    rt.run(&load(rt, name), request(name, context, RunLimits::default())).await
}

/// Config values for a request.
pub fn config(pairs: &[(&str, &str)]) -> Arc<BTreeMap<String, String>> {
    Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The output of a successful run, parsed; panics with the ending otherwise.
pub fn output(outcome: &RunOutcome) -> Value {
    match &outcome.ending {
        elihu::runtime::Ending::Succeeded { output } => serde_json::from_str(output).expect("output is JSON"),
        other => panic!("expected success, got {other:?}; logs: {:#?}", outcome.logs),
    }
}

/// The reason and message of a failed run; panics on success.
pub fn failure(outcome: &RunOutcome) -> (elihu::runtime::Reason, String) {
    match &outcome.ending {
        elihu::runtime::Ending::Failed { reason, message } => (*reason, message.clone()),
        other => panic!("expected failure, got {other:?}"),
    }
}
