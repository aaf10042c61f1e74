//! [`RedisTaskStore`]: 2026-07-28 tasks visible from every instance of a cluster.

use super::Cluster;
use crate::tasks::{TaskRecord, TaskStore, TaskStoreError};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A task as kept in Redis: the record and the instance whose handler runs it.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredTask {
    /// `host:port` of the instance running the handler: `tasks/update` and `tasks/cancel` go
    /// there.
    pub(crate) runner: String,
    pub(crate) record: TaskRecord,
}

/// The task store of a [`Cluster`] (for [`Tasks::new`](crate::tasks::Tasks::new)): each task is
/// one Redis key (`<prefix>task:<id>`) expiring with the task's TTL, so `tasks/get` answers on
/// any instance. The key also names the instance running the task's handler, to which the
/// [`ClusterLayer`](super::ClusterLayer) sends `tasks/update` and `tasks/cancel`.
///
/// Memory: every task expires at `created_at + ttl`; the number of tasks running at once on an
/// instance stays bounded by [`Tasks::max_running`](crate::tasks::Tasks::max_running).
#[derive(Clone, Debug)]
pub struct RedisTaskStore {
    cluster: Cluster,
}

impl RedisTaskStore {
    /// The task store of `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

fn backend(error: redis::RedisError) -> TaskStoreError {
    TaskStoreError::Backend(Box::new(error))
}

/// Milliseconds until `record` expires; `None` once it has.
fn remaining_millis(record: &TaskRecord) -> Option<u64> {
    let end = record.created_at.checked_add(record.ttl)?;
    let left = end.duration_since(SystemTime::now()).ok()?;
    Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1))
}

impl TaskStore for RedisTaskStore {
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<(), TaskStoreError>> {
        Box::pin(async move {
            let Some(ttl) = remaining_millis(&record) else {
                return Ok(());
            };
            let key = self.cluster.task_key(&record.task_id);
            let stored = StoredTask {
                runner: self.cluster.advertised_address().to_owned(),
                record,
            };
            let json =
                serde_json::to_string(&stored).map_err(|e| TaskStoreError::Backend(Box::new(e)))?;
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("PX")
                .arg(ttl)
                .arg("NX")
                .query_async(&mut self.cluster.redis())
                .await
                .map_err(backend)?;
            match set {
                Some(_) => Ok(()),
                None => Err(TaskStoreError::Backend("task id already taken".into())),
            }
        })
    }

    fn get<'a>(
        &'a self,
        task_id: &'a str,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>, TaskStoreError>> {
        Box::pin(async move {
            let stored = self.cluster.read_task(task_id).await.map_err(backend)?;
            Ok(stored.map(|s| s.record).filter(|record| {
                record.owner.as_deref() == owner && !record.is_expired(SystemTime::now())
            }))
        })
    }

    fn update(&self, record: TaskRecord) -> BoxFuture<'_, Result<(), TaskStoreError>> {
        Box::pin(async move {
            let key = self.cluster.task_key(&record.task_id);
            let stored = StoredTask {
                runner: self.cluster.advertised_address().to_owned(),
                record,
            };
            let json =
                serde_json::to_string(&stored).map_err(|e| TaskStoreError::Backend(Box::new(e)))?;
            // XX: a task that expired stays gone; KEEPTTL: it still ends at created_at + ttl.
            let _: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("XX")
                .arg("KEEPTTL")
                .query_async(&mut self.cluster.redis())
                .await
                .map_err(backend)?;
            Ok(())
        })
    }
}
