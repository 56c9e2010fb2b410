//! The sandboxed runtime: one wasmtime `Engine` (epoch interruption, pooling
//! allocator), a digest-keyed cache of ready-to-instantiate components, and
//! `Runtime::run`, which gives every run a fresh instance with a memory cap,
//! a deadline and a WASI context without files or environment, with network
//! only as its [`Capabilities`] grant, and classifies how it ended. Knows
//! nothing of SQL: it speaks the values of `model` and decides only what the
//! sandbox decides.

mod artifacts;
mod audit;
mod cancel;
mod component;
mod journal;
mod net;
mod outcome;
mod redact;
mod sandbox;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

pub use artifacts::Artifact;
pub use cancel::CancelHandle;
pub use crate::model::{Call, GuestLimits, LimitError, TemplateLimits};
pub use component::{LoadError, LoadSource, LoadedJob};
pub use journal::{FeedBatch, RunFeed, Throttle};
pub use net::{Capabilities, TlsError};
pub use outcome::{Ending, Reason, RunOutcome};
pub use sandbox::MAX_SNOOZE;

use crate::model::Digest;
use component::ComponentCache;
use journal::Journal;
use net::{GrantedLookup, NetHooks, RunNet};
use redact::Redactor;
use sandbox::{Interruption, RunState};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "job",
        exports: { default: async },
        // A snooze stops the guest: the host function traps.
        imports: { "elihu:job/host.snooze": trappable },
    });
}

/// Core instances the pool holds per run in flight: a Python component
/// (componentize-py) instantiates 14; a single component may use twice this.
const CORE_INSTANCES_PER_RUN: u32 = 16;

/// How the runtime is set up. `Default` suits one node on a small machine.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How often the epoch advances: the granularity of timeouts and cancels.
    pub epoch_tick: Duration,
    /// How many runs may be live at once (sizes the pooling allocator).
    pub max_concurrent_runs: u32,
    /// The largest memory limit any run may have, in bytes.
    pub max_memory: u64,
    /// Where compiled artifacts are kept between restarts (`None`: in memory only).
    pub artifact_dir: Option<PathBuf>,
    /// Every other bound a guest meets: logs, messages, progress,
    /// checkpoints, output, outbound calls. A template may tighten them.
    pub limits: GuestLimits,
    /// Extra trusted root certificates (PEM) for outbound HTTPS, beside the
    /// public web roots: a private CA, a test server's own certificate.
    pub ca_file: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            epoch_tick: Duration::from_millis(10),
            max_concurrent_runs: 256,
            max_memory: 1 << 30,
            artifact_dir: None,
            limits: GuestLimits::default(),
            ca_file: None,
        }
    }
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("the wasm engine could not be configured: {0}")]
    Engine(String),
    /// The extra trusted roots could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Wall time the run may take, instantiation included.
    pub timeout: Duration,
    /// Bytes of linear memory the run may use (capped at [`RuntimeConfig::max_memory`]).
    pub memory: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { timeout: Duration::from_secs(30), memory: 64 << 20 }
    }
}

/// What a run knows about its job (the WIT `job-info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobInfo {
    /// The job's id.
    pub id: u64,
    /// Its template's name.
    pub template: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The checkpoint the latest earlier attempt saved.
    pub checkpoint: Option<String>,
}

/// Everything one run needs besides the component.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The validated context, as JSON text.
    pub context: String,
    /// The job and attempt.
    pub info: JobInfo,
    /// Timeout and memory cap.
    pub limits: RunLimits,
    /// Values the guest reads with `host.config`.
    pub config: Arc<BTreeMap<String, String>>,
    /// Interrupts the run when cancelled.
    pub cancel: CancelHandle,
    /// Receives logs, progress and checkpoints as they happen, in bounded
    /// memory (see [`RunFeed`]).
    pub feed: Option<Arc<RunFeed>>,
    /// What the run may reach and read (`None`: nothing).
    pub capabilities: Option<Arc<Capabilities>>,
    /// The template's own bounds, tightening the node's.
    pub template_limits: TemplateLimits,
}

/// The sandboxed runtime. Cheap to share (`Arc`); one per process is plenty.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    tls: Arc<rustls::ClientConfig>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.config).finish()
    }
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let runs = config.max_concurrent_runs.max(1);
        // Sized for every run in flight being a big guest: a JavaScript job
        // (componentize-js, ~12 MiB) has 4 core instances, a Python one
        // (componentize-py, ~18 MiB) 14, each with 1 memory, 2 tables and up
        // to 10,600 functions in one module; a Rust job has 3. Totals only
        // reserve address space; a slot's pages are committed when used.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(runs)
            .total_core_instances(runs * CORE_INSTANCES_PER_RUN)
            .total_memories(runs * 2)
            .total_tables(runs * 4)
            .total_stacks(runs)
            .max_core_instances_per_component(2 * CORE_INSTANCES_PER_RUN)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instance_size(2 << 20)
            .table_elements(1 << 16)
            .max_memory_size(config.max_memory as usize)
            .max_unused_warm_slots(runs.min(64))
            // Between runs a slot is reset in place rather than unmapped and
            // faulted in again: PAGEMAP_SCAN (Linux 6.7+) finds the pages the
            // last run dirtied and only those are restored, up to these sizes
            // (a Rust guest's 1 MiB stack, its data and a small heap fit).
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(256 << 10);

        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let tls = net::tls_config(config.ca_file.as_deref())?;
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_err)?;
        // Name lookup resolves only granted names: wasmtime-wasi's is
        // replaced by one that checks first and then delegates to it.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::add_to_linker::<RunState, GrantedLookup>(
            &mut linker,
            GrantedLookup::view,
        )
        .map_err(engine_err)?;
        linker.allow_shadowing(false);
        bindings::Job::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(engine_err)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("elihu-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("could not start the epoch ticker: {e}")))?;

        let cache = ComponentCache::new(&engine, config.artifact_dir.clone());
        Ok(Runtime { engine, linker, cache, config, tls, ticker_stop })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Checks and compiles a component (or finds it already loaded, in memory
    /// or in the artifact directory). Refuses anything that is not a component
    /// of elihu's `job` world, saying what is wrong.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedJob>, LoadError> {
        self.load_with_source(bytes).map(|(job, _)| job)
    }

    /// Like [`load`](Self::load), also telling where the compiled code came from.
    pub fn load_with_source(&self, bytes: &[u8]) -> Result<(Arc<LoadedJob>, LoadSource), LoadError> {
        self.cache.load(&self.engine, &self.linker, bytes)
    }

    /// A component loaded earlier, by digest.
    pub fn loaded(&self, digest: &crate::model::Digest) -> Option<Arc<LoadedJob>> {
        self.cache.get(digest)
    }

    /// Whether the component `digest` is compiled already (loaded in this
    /// process, or its artifact on disk): loading it will not compile.
    pub fn is_compiled(&self, digest: &Digest) -> bool {
        self.cache.is_compiled(digest)
    }

    /// The compiled artifacts in the artifact directory, most recently used
    /// first; [`Artifact::current`] tells those this build can load.
    pub fn artifacts(&self) -> std::io::Result<Vec<Artifact>> {
        self.cache.artifacts()
    }

    /// Removes from the artifact directory what other builds of elihu wrote
    /// (this one cannot load it) and, given `unused_since`, the artifacts
    /// last used before then. Returns what it removed.
    pub fn prune_artifacts(&self, unused_since: Option<std::time::SystemTime>) -> std::io::Result<Vec<Artifact>> {
        self.cache.prune(unused_since)
    }

    /// Runs a job once in a fresh sandbox and says how it ended. Never fails
    /// itself: every way a run can end is an [`Ending`].
    pub async fn run(&self, job: &LoadedJob, mut request: RunRequest) -> RunOutcome {
        let started = Instant::now();
        let deadline = started + request.limits.timeout;
        let memory_cap = request.limits.memory.min(self.config.max_memory) as usize;
        let limits = if request.template_limits.is_empty() {
            self.config.limits
        } else {
            self.config.limits.with(&request.template_limits)
        };
        let mut journal = Journal::new(started, limits, request.feed.clone());
        if let Some(caps) = &request.capabilities
            && let Some(redactor) = Redactor::new(caps.secrets.values().map(|v| v.expose()))
        {
            journal.redact_with(redactor);
        }
        let journal = Arc::new(Mutex::new(journal));
        let template = std::mem::take(&mut request.info.template);
        let net = match RunNet::new(&template, &journal, limits, request.capabilities.as_ref(), &self.tls) {
            Ok(net) => net,
            Err(e) => return finish(Ending::Failed { reason: Reason::Error, message: e.to_string() }, &journal, started, 0),
        };
        let hooks = NetHooks::new(net, template.clone(), journal.clone());
        let state = RunState::new(journal.clone(), memory_cap, request.config.clone(), hooks, request.capabilities.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        let cancel = request.cancel.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            let interruption = if cancel.is_cancelled() {
                Some(Interruption::Cancelled)
            } else if Instant::now() >= deadline {
                Some(Interruption::Timeout)
            } else if ctx.data().journal.lock().unwrap().violation.is_some() {
                Some(Interruption::Limit)
            } else {
                None
            };
            match interruption {
                Some(why) => {
                    ctx.data_mut().interrupted = Some(why);
                    Ok(UpdateDeadline::Interrupt)
                }
                // Yield every tick so long runs share the executor fairly.
                // tokio's `yield_now` defers the wake-up until the timer and
                // I/O drivers have run; a plain yield would starve them.
                None => Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))),
            }
        });

        let info = bindings::JobInfo {
            id: request.info.id,
            template,
            attempt: request.info.attempt,
            max_attempts: request.info.max_attempts,
            checkpoint: request.info.checkpoint.take(),
        };
        let finished = {
            let call = async {
                let instance = match job.pre.instantiate_async(&mut store).await {
                    Ok(instance) => instance,
                    Err(e) => return Err(Failure::Instantiate(e)),
                };
                instance.call_run(&mut store, &request.context, &info).await.map_err(Failure::Call)
            };
            // The epoch callback stops a guest busy in wasm; these stop one
            // blocked in a host call, where epochs are never checked.
            tokio::select! {
                result = call => Some(result),
                _ = tokio::time::sleep_until(deadline.into()) => None,
                _ = request.cancel.cancelled() => None,
            }
        };
        let peak_memory = store.data().limiter.peak as u64;
        let ending = self.classify(&mut store, finished, &request, deadline, &limits);
        // Dropping the store ends whatever the run left in flight (requests,
        // connections) and closes their audit rows.
        drop(store);
        finish(ending, &journal, started, peak_memory)
    }

    fn classify(
        &self,
        store: &mut Store<RunState>,
        finished: Option<Result<Result<String, String>, Failure>>,
        request: &RunRequest,
        deadline: Instant,
        limits: &GuestLimits,
    ) -> Ending {
        let timeout_message =
            || format!("the run passed its timeout of {}", crate::units::format_duration(request.limits.timeout));
        let cancelled = || Ending::Failed { reason: Reason::Cancelled, message: "the run was cancelled".into() };
        let state = store.data();
        if let Some(message) = state.journal.lock().unwrap().violation.clone()
            && !request.cancel.is_cancelled()
        {
            return Ending::Failed { reason: Reason::Error, message };
        }
        if let (Some(snooze), Some(Err(Failure::Call(_)))) = (&state.snooze, &finished) {
            return match snooze {
                Ok(delay) => Ending::Snoozed { delay: *delay },
                Err(message) => Ending::Failed { reason: Reason::Error, message: message.clone() },
            };
        }
        let memory_message = |wanted: usize| {
            format!(
                "the run hit its memory limit of {} (it tried to grow its memory to {})",
                crate::units::format_size(request.limits.memory.min(self.config.max_memory)),
                crate::units::format_size(wanted as u64)
            )
        };
        match finished {
            None if request.cancel.is_cancelled() => cancelled(),
            None => Ending::Failed { reason: Reason::Timeout, message: timeout_message() },
            Some(Ok(Ok(output))) => {
                let max = limits.max_output_bytes;
                if output.len() > max {
                    Ending::Failed {
                        reason: Reason::Error,
                        message: format!(
                            "the output is {}; the limit is {}",
                            crate::units::format_size_human(output.len()),
                            crate::units::format_size_human(max)
                        ),
                    }
                } else {
                    Ending::Succeeded { output }
                }
            }
            // A guest whose runtime turns a refused allocation into an
            // exception (JavaScript, Python) returns an error: still `memory`.
            Some(Ok(Err(message))) => match state.limiter.refused {
                Some(wanted) => Ending::Failed {
                    reason: Reason::Memory,
                    message: format!("{}; the job then failed with: {message}", memory_message(wanted)),
                },
                None => Ending::Failed { reason: Reason::Error, message },
            },
            Some(Err(Failure::Instantiate(error))) if state.limiter.refused.is_none() => Ending::Failed {
                reason: Reason::Error,
                message: format!("the sandbox could not start the job: {error:#}"),
            },
            Some(Err(Failure::Instantiate(error) | Failure::Call(error))) => match state.interrupted {
                Some(Interruption::Cancelled) => cancelled(),
                Some(Interruption::Timeout) => Ending::Failed { reason: Reason::Timeout, message: timeout_message() },
                Some(Interruption::Limit) => Ending::Failed {
                    reason: Reason::Error,
                    message: "the run broke one of its outbound limits".into(),
                },
                None if Instant::now() >= deadline && error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                    Ending::Failed { reason: Reason::Timeout, message: timeout_message() }
                }
                None => match state.limiter.refused {
                    Some(wanted) => Ending::Failed { reason: Reason::Memory, message: memory_message(wanted) },
                    None => match error.downcast_ref::<Trap>() {
                        Some(trap) => Ending::Failed { reason: Reason::Trap, message: trap.to_string() },
                        None => Ending::Failed {
                            reason: Reason::Trap,
                            message: format!("{error:#}").lines().next().unwrap_or("the job failed").to_string(),
                        },
                    },
                },
            },
        }
    }
}

/// Everything the run left behind, with secret values hidden before any cut.
fn finish(ending: Ending, journal: &Mutex<Journal>, started: Instant, peak_memory: u64) -> RunOutcome {
    let mut journal = journal.lock().unwrap();
    let ending = match ending {
        Ending::Succeeded { mut output } => {
            journal.redact(&mut output);
            Ending::Succeeded { output }
        }
        Ending::Failed { reason, mut message } => {
            journal.redact(&mut message);
            match refine_trap(Ending::Failed { reason, message }, &journal) {
                Ending::Failed { reason, message } => Ending::Failed { reason, message: journal.bound_message(message) },
                other => other,
            }
        }
        snoozed @ Ending::Snoozed { .. } => snoozed,
    };
    journal.finish();
    let mut calls = journal.audit.finish();
    for call in &mut calls {
        for text in [&mut call.target].into_iter().chain(call.denied.as_mut()).chain(call.error.as_mut()) {
            journal.redact(text);
        }
    }
    RunOutcome {
        ending,
        logs: std::mem::take(&mut journal.lines),
        progress: journal.progress.take(),
        checkpoint: journal.checkpoint.take(),
        calls,
        duration: started.elapsed(),
        peak_memory,
    }
}

/// Where a run that did not return went wrong.
enum Failure {
    /// Creating the instance failed (pool exhausted, memory limit at start).
    Instantiate(wasmtime::Error),
    /// The call trapped or was interrupted.
    Call(wasmtime::Error),
}

/// Adds the guest's panic message (from its stderr) to a trap's message.
fn refine_trap(ending: Ending, journal: &Journal) -> Ending {
    match ending {
        Ending::Failed { reason: Reason::Trap, message } => match journal.panic_message() {
            Some(panic) => Ending::Failed { reason: Reason::Trap, message: format!("{message}: the job {panic}") },
            None => Ending::Failed { reason: Reason::Trap, message },
        },
        other => other,
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
