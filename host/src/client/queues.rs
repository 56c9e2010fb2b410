//! Queue settings for the whole cluster: pause and resume, the global
//! concurrency limit, the rate limit and the partition of a queue, each
//! checked before anything is stored; and every queue as shown by
//! `elihu queue ls`, stats and dashboards.

use super::requests::check_name;
use super::{Client, ClientError};
use crate::model::{MAX_RATE_PERIOD, Partition, Rate};
use crate::store::{QueueChange, QueueInfo, QueueSettings};

impl Client {
    /// Every queue with settings or jobs, by name: its settings, depth,
    /// running jobs and how many due jobs each setting holds back now. The
    /// one read behind `elihu queue ls`, `GET /v1/queues` and stats.
    pub async fn queue_list(&self) -> Result<Vec<QueueInfo>, ClientError> {
        Ok(self.store().queue_list(self.clock().now()).await?)
    }

    /// A queue's settings (a queue nobody configured has none).
    pub async fn queue_get(&self, name: &str) -> Result<QueueSettings, ClientError> {
        check_name("queue", name)?;
        Ok(self.store().queue_get(name).await?)
    }

    /// Changes a queue's settings: each `Some` sets (or, `Some(None)`,
    /// clears) one setting for every node at once. A bad value is refused
    /// naming the field, and nothing is stored. Nodes of this process look
    /// for work at once; others at their next poll, or at once through their
    /// database's notifications.
    pub async fn queue_set(&self, name: &str, change: QueueChange) -> Result<QueueSettings, ClientError> {
        check_name("queue", name)?;
        check_change(&change)?;
        let settings = self.store().queue_set(name, &change, self.clock().now()).await?;
        self.trigger();
        Ok(settings)
    }

    /// Pauses a queue: no node claims its jobs until it is resumed (runs in
    /// flight finish). The pause is stored, so it outlives node restarts.
    pub async fn queue_pause(&self, name: &str) -> Result<QueueSettings, ClientError> {
        self.queue_set(name, QueueChange { paused: Some(true), ..QueueChange::default() }).await
    }

    /// Resumes a paused queue.
    pub async fn queue_resume(&self, name: &str) -> Result<QueueSettings, ClientError> {
        self.queue_set(name, QueueChange { paused: Some(false), ..QueueChange::default() }).await
    }
}

/// Checks the values a change sets (values built in code skip the parsers).
fn check_change(change: &QueueChange) -> Result<(), ClientError> {
    if let Some(Some(0)) = change.global_limit {
        return Err(ClientError::Invalid { field: "global limit", message: "0: use at least 1, or clear the limit".into() });
    }
    if let Some(Some(Rate { limit, period })) = change.rate {
        let text = Rate { limit, period }.to_string();
        if limit == 0 {
            return Err(ClientError::Invalid { field: "rate", message: format!("{text}: allow at least 1 start per period") });
        }
        if period.is_zero() || period > MAX_RATE_PERIOD || period.subsec_nanos() % 1_000_000 != 0 {
            return Err(ClientError::Invalid { field: "rate", message: format!("{text}: the period must be whole milliseconds from 1ms to 1 day") });
        }
    }
    if let Some(Some(partition @ Partition::Pointer(_))) = &change.partition {
        Partition::parse(partition.as_str()).map_err(|message| ClientError::Invalid { field: "partition", message })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let field = |change: QueueChange| match check_change(&change) {
            Err(ClientError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(QueueChange { global_limit: Some(Some(0)), ..QueueChange::default() }), "global limit");
        let rate = |limit, period| QueueChange { rate: Some(Some(Rate { limit, period })), ..QueueChange::default() };
        assert_eq!(field(rate(0, Duration::from_secs(1))), "rate");
        assert_eq!(field(rate(5, Duration::ZERO)), "rate");
        assert_eq!(field(rate(5, Duration::from_secs(2 * 86_400))), "rate");
        assert_eq!(field(rate(5, Duration::from_micros(1500))), "rate");
        let pointer = QueueChange { partition: Some(Some(Partition::Pointer("customer".into()))), ..QueueChange::default() };
        assert_eq!(field(pointer), "partition");
        assert!(check_change(&rate(5, Duration::from_millis(1500))).is_ok());
        assert!(check_change(&QueueChange { global_limit: Some(None), rate: Some(None), ..QueueChange::default() }).is_ok());
    }
}
