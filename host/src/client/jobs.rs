//! Jobs: prepare a request against its template (schema, defaults, limits),
//! enqueue one or a batch, cancel, and read jobs, runs, stats and nodes.

use std::collections::HashMap;

use super::requests::{check_name, check_unique_key};
use super::{Client, ClientError, Enqueue};
use crate::events::Event;
use crate::model::{JobId, RunId};
use crate::store::{CancelOutcome, Inserted, Job, JobFilter, NewJob, NodeInfo, Run, RunFilter, Template, TemplateStats};

impl Client {
    /// The job a request asks for: its context checked against the
    /// template's schema, everything it leaves out taken from the template.
    /// `templates` caches the templates a batch has read so far.
    pub(crate) async fn prepare(&self, request: &Enqueue, templates: &mut HashMap<String, Template>) -> Result<NewJob, ClientError> {
        if !templates.contains_key(&request.template) {
            let template = self.template_get(&request.template).await?;
            templates.insert(request.template.clone(), template);
        }
        let template = &templates[&request.template];
        self.schema_of(template)?.validate(&request.context)?;
        let d = &template.defaults;
        let queue = request.queue.clone().unwrap_or_else(|| d.queue.clone());
        check_name("queue", &queue)?;
        let max_attempts = request.max_attempts.unwrap_or(d.max_attempts);
        let timeout_ms = request.timeout.map(|t| t.as_millis() as u64).unwrap_or(d.timeout_ms);
        let memory = request.memory.unwrap_or(d.memory_bytes);
        self.check_limits(max_attempts, timeout_ms, memory)?;
        check_unique_key(request.unique_key.as_deref())?;
        if let Some(traceparent) = &request.traceparent {
            crate::telemetry::check_traceparent(traceparent).map_err(|message| ClientError::Invalid { field: "traceparent", message })?;
        }
        let run_at = request.run_at.unwrap_or_else(|| self.clock().now() + request.delay.unwrap_or_default());
        if let Some(hosts) = &request.allowed_hosts {
            template.grants.narrow(&template.name, hosts)?;
        }
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
            allowed_hosts: request.allowed_hosts.clone(),
            traceparent: request.traceparent.clone(),
        })
    }

    /// Enqueues one job after checking its context against the template's
    /// schema; a violation is refused with every error and its JSON pointer.
    pub async fn enqueue(&self, request: Enqueue) -> Result<Inserted, ClientError> {
        let job = self.prepare(&request, &mut HashMap::new()).await?;
        let inserted = self.store().job_insert(std::slice::from_ref(&job), self.clock().now()).await?[0];
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
        let inserted = self.store().job_insert(&jobs, self.clock().now()).await?;
        self.after_insert(&jobs, &inserted);
        Ok(inserted)
    }

    fn after_insert(&self, jobs: &[NewJob], inserted: &[Inserted]) {
        for (job, result) in jobs.iter().zip(inserted) {
            if let Inserted::New(id) = result {
                self.metrics().enqueued(&job.template, &job.queue);
                self.emit(Event::Enqueued { job_id: *id, template: job.template.clone(), queue: job.queue.clone() });
            }
        }
        self.trigger();
    }

    /// Cancels a job: a queued one is removed; a running one is interrupted by
    /// the node running it (at once if that is this process, else within its
    /// cancel poll or at once through its database's notifications) and its
    /// run ends `cancelled`.
    pub async fn cancel(&self, job_id: JobId) -> Result<CancelOutcome, ClientError> {
        let outcome = self.store().job_cancel(job_id).await?;
        match outcome {
            CancelOutcome::Removed => self.emit(Event::Cancelled { job_id, run_id: None }),
            CancelOutcome::Requested => self.cancel_local(job_id),
            CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// A queued or running job.
    pub async fn job_get(&self, id: JobId) -> Result<Option<Job>, ClientError> {
        Ok(self.store().job_get(id).await?)
    }

    /// Queued and running jobs.
    pub async fn job_list(&self, filter: &JobFilter) -> Result<Vec<Job>, ClientError> {
        Ok(self.store().job_list(filter).await?)
    }

    /// A run by id.
    pub async fn run_get(&self, id: RunId) -> Result<Option<Run>, ClientError> {
        Ok(self.store().run_get(id).await?)
    }

    /// Runs, newest first.
    pub async fn run_list(&self, filter: &RunFilter) -> Result<Vec<Run>, ClientError> {
        Ok(self.store().run_list(filter).await?)
    }

    /// Per-template figures.
    pub async fn stats(&self) -> Result<Vec<TemplateStats>, ClientError> {
        Ok(self.store().stats().await?)
    }

    /// Known nodes.
    pub async fn node_list(&self) -> Result<Vec<NodeInfo>, ClientError> {
        Ok(self.store().node_list().await?)
    }
}
