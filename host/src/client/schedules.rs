//! Schedules: create or replace (checked against the template's schema),
//! read with their next firing, pause, resume and delete; and reading a
//! stored schedule's rule and context back.

use std::time::Duration;

use serde_json::Value;

use super::requests::check_name;
use super::{Client, ClientError, Schedule, ScheduleSpec};
use crate::model::Millis;
use crate::schedule::Rule;
use crate::store::{JobState, StoreError, StoredSchedule};

impl Client {
    /// Creates or replaces a schedule. The template must exist and the
    /// context satisfy its schema; nothing is stored otherwise. Replacing a
    /// schedule withdraws the job it had queued; its next firing follows the
    /// new rule.
    pub async fn schedule_put(&self, spec: ScheduleSpec) -> Result<Schedule, ClientError> {
        check_name("schedule name", &spec.name)?;
        let template = self.template_get(&spec.template).await?;
        self.schema_of(&template)?.validate(&spec.context)?;
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
            catch_up: spec.catch_up,
            paused: false,
            last_firing: None,
            current_job: None,
            created_at: Millis(0),
            updated_at: Millis(0),
        };
        // Unchanged (a node re-reading its config file): keep it as it is. A
        // stored context that does not parse is not unchanged: it is replaced.
        if let Some(existing) = self.store().schedule_get(&spec.name).await?
            && (&existing.template, &existing.cron, existing.interval_ms, &existing.timezone, existing.catch_up)
                == (&stored.template, &stored.cron, stored.interval_ms, &stored.timezone, stored.catch_up)
            && stored_context(&existing).ok().as_ref() == Some(&spec.context)
        {
            return self.show_schedule(existing).await;
        }
        let stored = self.store().schedule_put(&stored, self.clock().now()).await?;
        self.trigger();
        self.show_schedule(stored).await
    }

    /// A schedule by name.
    pub async fn schedule_get(&self, name: &str) -> Result<Schedule, ClientError> {
        match self.store().schedule_get(name).await? {
            Some(stored) => self.show_schedule(stored).await,
            None => Err(ClientError::UnknownSchedule(name.to_string())),
        }
    }

    /// Every schedule.
    pub async fn schedule_list(&self) -> Result<Vec<Schedule>, ClientError> {
        let mut out = Vec::new();
        for stored in self.store().schedule_list().await? {
            out.push(self.show_schedule(stored).await?);
        }
        Ok(out)
    }

    /// Deletes a schedule (its queued job is withdrawn; a running one finishes).
    pub async fn schedule_delete(&self, name: &str) -> Result<(), ClientError> {
        if self.store().schedule_delete(name).await? { Ok(()) } else { Err(ClientError::UnknownSchedule(name.to_string())) }
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
        if !self.store().schedule_pause(name, paused, self.clock().now()).await? {
            return Err(ClientError::UnknownSchedule(name.to_string()));
        }
        self.trigger();
        self.schedule_get(name).await
    }

    async fn show_schedule(&self, stored: StoredSchedule) -> Result<Schedule, ClientError> {
        let rule = stored_rule(&stored)?;
        let context = stored_context(&stored)?;
        let pending = match stored.current_job {
            Some(id) => self.store().job_get(id).await?,
            None => None,
        };
        let next_firing = match (&pending, stored.paused) {
            (_, true) => None,
            (Some(job), false) if job.state == JobState::Available => Some(job.run_at),
            (Some(_), false) => None,
            (None, false) => crate::schedule::next_firing(&rule, None, stored.catch_up, self.clock().now()),
        };
        Ok(Schedule {
            name: stored.name,
            template: stored.template,
            context,
            cron: stored.cron,
            every: stored.interval_ms.map(|ms| crate::units::format_duration(Duration::from_millis(ms as u64))),
            timezone: stored.timezone,
            catch_up: stored.catch_up,
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

/// The context a stored schedule gives its jobs.
pub(crate) fn stored_context(stored: &StoredSchedule) -> Result<Value, ClientError> {
    serde_json::from_str(&stored.context).map_err(|e| {
        ClientError::Store(StoreError::Corrupt { what: "a schedule's context", why: format!("schedule `{}`: {e}", stored.name) })
    })
}
