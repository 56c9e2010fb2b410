//! The library API over a store: upload components and templates, enqueue
//! (validating contexts against template schemas), cancel, and read jobs,
//! runs and stats. The CLI, the HTTP API and embedding applications all go
//! through a `Client`; a `Node` (see `engine`) works the jobs it enqueues.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, broadcast};

use crate::clock::{Clock, SystemClock};
use crate::events::Event;
use crate::runtime::{CancelHandle, Digest, LoadError, Runtime, RuntimeConfig, RuntimeError};
use crate::schedule::{CatchUp, Rule};
use crate::schema::{ContextSchema, SchemaError};
use crate::store::{
    CancelOutcome, Inserted, Job, JobFilter, NewJob, NodeInfo, Run, RunFilter, Store, StoreError, StoredSchedule,
    Template, TemplateDefaults, TemplateStats,
};

/// Why the client refused or failed a request. Every variant names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A schema or a context was refused.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A component was refused.
    #[error(transparent)]
    Component(#[from] LoadError),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A schedule was refused.
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// No schedule of that name.
    #[error("there is no schedule named `{0}`")]
    UnknownSchedule(String),
    /// No template of that name.
    #[error("there is no template named `{0}`; push it first (`elihu template push {0} FILE.wasm --schema FILE`)")]
    UnknownTemplate(String),
    /// No component with that digest.
    #[error("there is no component with digest {0}; upload the .wasm first")]
    UnknownComponent(String),
    /// A field has a value elihu cannot accept.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong and what would be right.
        message: String,
    },
    /// One job of a batch was refused; nothing of the batch was stored.
    #[error("job {index} of the batch was refused (nothing was enqueued): {source}")]
    Batch {
        /// Its position in the batch, from 0.
        index: usize,
        /// Why.
        source: Box<ClientError>,
    },
}

/// A request to enqueue one job. Everything but the template and the context
/// defaults to the template's settings.
#[derive(Debug, Clone, Default)]
pub struct Enqueue {
    /// The template's name.
    pub template: String,
    /// The context; checked against the template's schema.
    pub context: Value,
    /// Priority, lower first.
    pub priority: Option<i32>,
    /// Queue.
    pub queue: Option<String>,
    /// Not before this time (ms since the epoch).
    pub run_at: Option<i64>,
    /// Not before now + this delay (ignored when `run_at` is given).
    pub delay: Option<Duration>,
    /// Attempts in all.
    pub max_attempts: Option<u32>,
    /// Timeout of each run.
    pub timeout: Option<Duration>,
    /// Memory limit of each run, in bytes.
    pub memory: Option<u64>,
    /// While a job with this key is queued or running, another enqueue with
    /// it returns that job instead of adding one.
    pub unique_key: Option<String>,
}

impl Enqueue {
    /// A request for `template` with `context` and the template's defaults.
    pub fn new(template: impl Into<String>, context: Value) -> Self {
        Enqueue { template: template.into(), context, ..Enqueue::default() }
    }
}

/// A schedule to create or replace.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// Its name.
    pub name: String,
    /// The template it enqueues.
    pub template: String,
    /// The context of every job; checked against the template's schema.
    pub context: Value,
    /// When it fires.
    pub rule: Rule,
    /// What to do about firings missed while no node ran.
    pub catch_up: CatchUp,
}

/// A schedule as shown: its rule, state and next firing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// The template it enqueues.
    pub template: String,
    /// The context of every job.
    pub context: Value,
    /// Its cron rule (six fields), if it has one.
    pub cron: Option<String>,
    /// Or its interval, as a duration (`5m`).
    pub every: Option<String>,
    /// The IANA time zone of its cron rule.
    pub timezone: Option<String>,
    /// `one` or `skip`.
    pub catch_up: CatchUp,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The firing time of the job it enqueued last (ms since the epoch).
    pub last_firing: Option<i64>,
    /// When it fires next (ms since the epoch): the run-at of its queued job,
    /// or what the rule gives now; `None` while paused or running.
    pub next_firing: Option<i64>,
    /// Its job, while queued or running.
    pub current_job: Option<i64>,
}

/// How a client is opened.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The runtime used to check components at upload (and by a node to run them).
    pub runtime: RuntimeConfig,
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) events: broadcast::Sender<Event>,
    /// Wakes this process's node when a job is enqueued or cancelled here.
    pub(crate) wake: Notify,
    /// Runs in flight in this process, by job id: a local cancel is instant.
    pub(crate) local_runs: Mutex<HashMap<i64, CancelHandle>>,
    schemas: Mutex<HashMap<String, (i64, Arc<ContextSchema>)>>,
}

impl Shared {
    /// Interrupts the run of `job_id` if it runs in this process.
    pub(crate) fn cancel_local(&self, job_id: i64) {
        if let Some(handle) = self.local_runs.lock().unwrap().get(&job_id) {
            handle.cancel();
        }
    }
}

/// The library's handle on an elihu database. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

const NAME_RULE: &str = "use 1 to 100 letters, digits, '-', '_' or '.'";

fn check_name(field: &'static str, name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(ClientError::Invalid { field, message: format!("`{name}`: {NAME_RULE}") }) }
}

impl Client {
    /// Opens the database at `url` (see [`crate::store::connect`]), applies
    /// migrations, and starts a runtime.
    pub async fn open(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let store = crate::store::connect(url).await?;
        store.migrate().await?;
        let runtime = Arc::new(Runtime::new(options.runtime)?);
        Ok(Client::new(store, runtime, Arc::new(SystemClock)))
    }

    /// A client over an opened, migrated store.
    pub fn new(store: Arc<dyn Store>, runtime: Arc<Runtime>, clock: Arc<dyn Clock>) -> Client {
        let (events, _) = broadcast::channel(4096);
        Client {
            shared: Arc::new(Shared {
                store,
                runtime,
                clock,
                events,
                wake: Notify::new(),
                local_runs: Mutex::new(HashMap::new()),
                schemas: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.shared.runtime
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Subscribes to the events of this process (enqueues made here, runs of
    /// the node running here).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub(crate) fn emit(&self, event: Event) {
        let _ = self.shared.events.send(event);
    }

    /// Wakes the node of this process now instead of at its next poll
    /// (Bildad's engine trigger).
    pub fn trigger(&self) {
        self.shared.wake.notify_waiters();
    }

    /// Checks that `wasm` is a component of elihu's job world and stores it.
    pub async fn component_put(&self, wasm: &[u8]) -> Result<Digest, ClientError> {
        let job = self.shared.runtime.load(wasm)?;
        self.shared.store.component_put(job.digest(), wasm, self.shared.clock.now()).await?;
        Ok(job.digest().clone())
    }

    /// Checks everything about a template that does not need the store.
    fn check_template(&self, name: &str, schema: &Value, defaults: &TemplateDefaults) -> Result<(), ClientError> {
        check_name("template name", name)?;
        check_name("queue", &defaults.queue)?;
        ContextSchema::compile(schema)?;
        self.check_limits(defaults.max_attempts, defaults.timeout_ms, defaults.memory_bytes)?;
        if defaults.backoff_base_ms > defaults.backoff_max_ms {
            return Err(ClientError::Invalid {
                field: "backoff",
                message: format!(
                    "the base delay ({} ms) is longer than the maximum ({} ms)",
                    defaults.backoff_base_ms, defaults.backoff_max_ms
                ),
            });
        }
        Ok(())
    }

    /// Creates or updates a template from a stored component. The schema must
    /// be a valid JSON Schema; nothing is stored otherwise.
    pub async fn template_put(
        &self,
        name: &str,
        digest: &Digest,
        schema: &Value,
        defaults: &TemplateDefaults,
        config: &BTreeMap<String, String>,
    ) -> Result<Template, ClientError> {
        self.check_template(name, schema, defaults)?;
        if self.shared.store.component_get(digest).await?.is_none() {
            return Err(ClientError::UnknownComponent(digest.to_string()));
        }
        Ok(self.shared.store.template_put(name, digest, schema, defaults, config, self.shared.clock.now()).await?)
    }

    /// Uploads a component and creates or updates a template for it in one go.
    /// Nothing is stored unless the component, the schema and the defaults
    /// are all valid.
    pub async fn template_push(
        &self,
        name: &str,
        wasm: &[u8],
        schema: &Value,
        defaults: &TemplateDefaults,
        config: &BTreeMap<String, String>,
    ) -> Result<Template, ClientError> {
        self.check_template(name, schema, defaults)?;
        let digest = self.component_put(wasm).await?;
        // Checked above, and the component was just stored: no second check.
        Ok(self.shared.store.template_put(name, &digest, schema, defaults, config, self.shared.clock.now()).await?)
    }

    fn check_limits(&self, max_attempts: u32, timeout_ms: u64, memory: u64) -> Result<(), ClientError> {
        if !(1..=1000).contains(&max_attempts) {
            return Err(ClientError::Invalid { field: "max attempts", message: format!("{max_attempts}: use 1 to 1000") });
        }
        if !(1..=86_400_000).contains(&timeout_ms) {
            return Err(ClientError::Invalid {
                field: "timeout",
                message: format!("{timeout_ms} ms: use 1ms to 24h"),
            });
        }
        let max = self.shared.runtime.config().max_memory;
        if memory < (1 << 20) || memory > max {
            return Err(ClientError::Invalid {
                field: "memory limit",
                message: format!(
                    "{}: use 1MiB to {} (this node's maximum)",
                    crate::units::format_size(memory),
                    crate::units::format_size(max)
                ),
            });
        }
        Ok(())
    }

    /// A template by name.
    pub async fn template_get(&self, name: &str) -> Result<Template, ClientError> {
        self.shared.store.template_get(name).await?.ok_or_else(|| ClientError::UnknownTemplate(name.to_string()))
    }

    /// Every template.
    pub async fn template_list(&self) -> Result<Vec<Template>, ClientError> {
        Ok(self.shared.store.template_list().await?)
    }

    /// Deletes a template: refused while it has queued or running jobs,
    /// unless `force` (which removes its queued jobs and cancels its running ones).
    pub async fn template_delete(&self, name: &str, force: bool) -> Result<(), ClientError> {
        if self.shared.store.template_delete(name, force).await? {
            self.trigger();
            Ok(())
        } else {
            Err(ClientError::UnknownTemplate(name.to_string()))
        }
    }

    async fn schema_of(&self, template: &Template) -> Result<Arc<ContextSchema>, ClientError> {
        if let Some((version, schema)) = self.shared.schemas.lock().unwrap().get(&template.name)
            && *version == template.version
        {
            return Ok(schema.clone());
        }
        let schema = Arc::new(ContextSchema::compile(&template.schema)?);
        self.shared.schemas.lock().unwrap().insert(template.name.clone(), (template.version, schema.clone()));
        Ok(schema)
    }

    pub(crate) async fn prepare(&self, request: &Enqueue, templates: &mut HashMap<String, Template>) -> Result<NewJob, ClientError> {
        if !templates.contains_key(&request.template) {
            let template = self.template_get(&request.template).await?;
            templates.insert(request.template.clone(), template);
        }
        let template = &templates[&request.template];
        self.schema_of(template).await?.validate(&request.context)?;
        let d = &template.defaults;
        let queue = request.queue.clone().unwrap_or_else(|| d.queue.clone());
        check_name("queue", &queue)?;
        let max_attempts = request.max_attempts.unwrap_or(d.max_attempts);
        let timeout_ms = request.timeout.map(|t| t.as_millis() as u64).unwrap_or(d.timeout_ms);
        let memory = request.memory.unwrap_or(d.memory_bytes);
        self.check_limits(max_attempts, timeout_ms, memory)?;
        if let Some(key) = &request.unique_key
            && (key.is_empty() || key.len() > 500)
        {
            return Err(ClientError::Invalid { field: "unique key", message: "use 1 to 500 characters".into() });
        }
        let now = self.shared.clock.now();
        let run_at = request.run_at.unwrap_or_else(|| now + request.delay.map_or(0, |d| d.as_millis() as i64));
        Ok(NewJob {
            template: template.name.clone(),
            context: request.context.to_string(),
            queue,
            priority: request.priority.unwrap_or(d.priority),
            run_at,
            max_attempts,
            timeout_ms,
            memory_bytes: memory,
            unique_key: request.unique_key.clone(),
            discard_after: None,
        })
    }

    /// Enqueues one job after checking its context against the template's
    /// schema; a violation is refused with every error and its JSON pointer.
    pub async fn enqueue(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        let job = self.prepare(&request, &mut HashMap::new()).await?;
        let inserted = self.shared.store.job_insert(std::slice::from_ref(&job), self.shared.clock.now()).await?[0];
        self.after_insert(&[job], &[inserted]);
        Ok(inserted)
    }

    /// Enqueues a job and wakes the engine at once (Bildad's
    /// `enqueue_and_trigger`). Nodes in this process are woken by every
    /// enqueue anyway; nodes elsewhere pick the job up at their next poll,
    /// or at once through their database's notifications where it has them.
    pub async fn enqueue_and_trigger(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        let inserted = self.enqueue(request).await?;
        self.trigger();
        Ok(inserted)
    }

    /// Enqueues many jobs in one transaction: all are checked first, and if
    /// any is refused nothing is stored.
    pub async fn enqueue_batch(&self, requests: Vec<Enqueue>) -> Result<Vec<Inserted>, ClientError> {
        let mut templates = HashMap::new();
        let mut jobs = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            jobs.push(
                self.prepare(request, &mut templates)
                    .await
                    .map_err(|e| ClientError::Batch { index, source: Box::new(e) })?,
            );
        }
        let inserted = self.shared.store.job_insert(&jobs, self.shared.clock.now()).await?;
        self.after_insert(&jobs, &inserted);
        Ok(inserted)
    }

    fn after_insert(&self, jobs: &[NewJob], inserted: &[Inserted]) {
        for (job, result) in jobs.iter().zip(inserted) {
            if let Inserted::New(id) = result {
                self.emit(Event::Enqueued { job_id: *id, template: job.template.clone(), queue: job.queue.clone() });
            }
        }
        self.trigger();
    }

    /// Cancels a job: a queued one is removed; a running one is interrupted by
    /// the node running it (at once if that is this process, else within its
    /// cancel poll) and its run ends `cancelled`.
    pub async fn cancel(&self, job_id: i64) -> Result<CancelOutcome, ClientError> {
        let outcome = self.shared.store.job_cancel(job_id).await?;
        match outcome {
            CancelOutcome::Removed => self.emit(Event::Cancelled { job_id, run_id: None }),
            CancelOutcome::Requested => self.shared.cancel_local(job_id),
            CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// A queued or running job.
    pub async fn job_get(&self, id: i64) -> Result<Option<Job>, ClientError> {
        Ok(self.shared.store.job_get(id).await?)
    }

    /// Queued and running jobs.
    pub async fn job_list(&self, filter: &JobFilter) -> Result<Vec<Job>, ClientError> {
        Ok(self.shared.store.job_list(filter).await?)
    }

    /// A run by id.
    pub async fn run_get(&self, id: i64) -> Result<Option<Run>, ClientError> {
        Ok(self.shared.store.run_get(id).await?)
    }

    /// Runs, newest first.
    pub async fn run_list(&self, filter: &RunFilter) -> Result<Vec<Run>, ClientError> {
        Ok(self.shared.store.run_list(filter).await?)
    }

    /// Per-template figures.
    pub async fn stats(&self) -> Result<Vec<TemplateStats>, ClientError> {
        Ok(self.shared.store.stats().await?)
    }

    /// Known nodes.
    pub async fn node_list(&self) -> Result<Vec<NodeInfo>, ClientError> {
        Ok(self.shared.store.node_list().await?)
    }

    /// Creates or replaces a schedule. The template must exist and the
    /// context satisfy its schema; nothing is stored otherwise. Replacing a
    /// schedule withdraws the job it had queued; its next firing follows the
    /// new rule.
    pub async fn schedule_put(&self, spec: ScheduleSpec) -> Result<Schedule, ClientError> {
        check_name("schedule name", &spec.name)?;
        let template = self.template_get(&spec.template).await?;
        self.schema_of(&template).await?.validate(&spec.context)?;
        let (cron, interval_ms, timezone) = match &spec.rule {
            Rule::Cron(c) => (Some(c.text().to_string()), None, c.zone().map(String::from)),
            Rule::Every(d) => (None, Some(d.as_millis() as i64), None),
        };
        let stored = StoredSchedule {
            name: spec.name.clone(),
            template: spec.template.clone(),
            context: spec.context.to_string(),
            cron,
            interval_ms,
            timezone,
            catch_up: spec.catch_up.as_str().to_string(),
            paused: false,
            last_firing: None,
            current_job: None,
            created_at: 0,
            updated_at: 0,
        };
        // Unchanged (a node re-reading its config file): keep it as it is.
        if let Some(existing) = self.shared.store.schedule_get(&spec.name).await?
            && (&existing.template, &existing.cron, existing.interval_ms, &existing.timezone, &existing.catch_up)
                == (&stored.template, &stored.cron, stored.interval_ms, &stored.timezone, &stored.catch_up)
            && serde_json::from_str::<Value>(&existing.context).ok().as_ref() == Some(&spec.context)
        {
            return self.show_schedule(existing).await;
        }
        let stored = self.shared.store.schedule_put(&stored, self.shared.clock.now()).await?;
        self.trigger();
        self.show_schedule(stored).await
    }

    /// A schedule by name.
    pub async fn schedule_get(&self, name: &str) -> Result<Schedule, ClientError> {
        match self.shared.store.schedule_get(name).await? {
            Some(stored) => self.show_schedule(stored).await,
            None => Err(ClientError::UnknownSchedule(name.to_string())),
        }
    }

    /// Every schedule.
    pub async fn schedule_list(&self) -> Result<Vec<Schedule>, ClientError> {
        let mut out = Vec::new();
        for stored in self.shared.store.schedule_list().await? {
            out.push(self.show_schedule(stored).await?);
        }
        Ok(out)
    }

    /// Deletes a schedule (its queued job is withdrawn; a running one finishes).
    pub async fn schedule_delete(&self, name: &str) -> Result<(), ClientError> {
        if self.shared.store.schedule_delete(name).await? { Ok(()) } else { Err(ClientError::UnknownSchedule(name.to_string())) }
    }

    /// Pauses a schedule: its queued job is withdrawn and it fires no more
    /// until resumed.
    pub async fn schedule_pause(&self, name: &str) -> Result<Schedule, ClientError> {
        self.set_paused(name, true).await
    }

    /// Resumes a paused schedule: its next firing is counted from now.
    pub async fn schedule_resume(&self, name: &str) -> Result<Schedule, ClientError> {
        self.set_paused(name, false).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Schedule, ClientError> {
        if !self.shared.store.schedule_pause(name, paused, self.shared.clock.now()).await? {
            return Err(ClientError::UnknownSchedule(name.to_string()));
        }
        self.trigger();
        self.schedule_get(name).await
    }

    async fn show_schedule(&self, stored: StoredSchedule) -> Result<Schedule, ClientError> {
        let rule = stored_rule(&stored)?;
        let catch_up = CatchUp::parse(&stored.catch_up).unwrap_or_default();
        let pending = match stored.current_job {
            Some(id) => self.shared.store.job_get(id).await?,
            None => None,
        };
        let next_firing = match (&pending, stored.paused) {
            (_, true) => None,
            (Some(job), false) if job.state == crate::store::JobState::Available => Some(job.run_at),
            (Some(_), false) => None,
            (None, false) => crate::schedule::next_firing(&rule, None, catch_up, self.shared.clock.now()),
        };
        Ok(Schedule {
            name: stored.name,
            template: stored.template,
            context: serde_json::from_str(&stored.context).unwrap_or(Value::Null),
            cron: stored.cron,
            every: stored.interval_ms.map(|ms| crate::units::format_duration(Duration::from_millis(ms as u64))),
            timezone: stored.timezone,
            catch_up,
            paused: stored.paused,
            last_firing: stored.last_firing,
            next_firing,
            current_job: pending.map(|j| j.id),
        })
    }
}

/// The rule of a stored schedule.
pub(crate) fn stored_rule(stored: &StoredSchedule) -> Result<Rule, ClientError> {
    let every = stored.interval_ms.map(|ms| Duration::from_millis(ms as u64));
    Ok(Rule::from_parts(stored.cron.as_deref(), every, stored.timezone.as_deref())?)
}
