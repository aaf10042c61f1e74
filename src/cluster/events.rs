//! [`RedisEventStore`]: SSE events kept in Redis, one capped Redis stream per session.

use super::Cluster;
use crate::session::SessionId;
use crate::sse::{EventId, EventStore};
use bytes::Bytes;
use redis::streams::{StreamMaxlen, StreamRangeReply};
use std::future::Future;

/// The event store of a [`Cluster`]: every SSE event of a session goes to one Redis stream
/// (`<prefix>events:<session>`), capped at the configured number of events (oldest trimmed
/// first) and expiring with the session record, so a client can resume on any instance.
///
/// An append is one pipelined round trip (the entry and the expiry), made before the event is
/// sent; a resume reads the session's log once. Redis errors are logged: an event that could not
/// be stored is still delivered, it just cannot be replayed.
#[derive(Clone, Debug)]
pub struct RedisEventStore {
    cluster: Cluster,
}

impl RedisEventStore {
    pub(crate) fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    async fn append_entry(&self, session: &SessionId, id: EventId, data: Bytes) {
        let key = self.cluster.events_key(session);
        let ttl = self.cluster.ttl_millis() as i64;
        let cap = StreamMaxlen::Approx(self.cluster.max_events_per_session());
        let mut pipe = redis::pipe();
        pipe.xadd_maxlen(
            &key,
            cap,
            "*",
            &[
                ("s", id.stream.to_string().into_bytes()),
                ("q", id.seq.to_string().into_bytes()),
                ("d", data.to_vec()),
            ],
        )
        .ignore();
        pipe.pexpire(&key, ttl).ignore();
        let stored: redis::RedisResult<()> = pipe.query_async(&mut self.cluster.redis()).await;
        if let Err(error) = stored {
            tracing::warn!(session = %session, event = %id, %error, "cannot store an SSE event in Redis");
        }
    }

    async fn replay(&self, session: &SessionId, after: EventId) -> Option<Vec<(EventId, Bytes)>> {
        let key = self.cluster.events_key(session);
        let mut redis = self.cluster.redis();
        let reply: StreamRangeReply = match redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut redis)
            .await
        {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(session = %session, %error, "cannot read SSE events from Redis");
                return None;
            }
        };
        let events = reply.ids.iter().filter_map(|entry| {
            let number = |field: &str| -> Option<u64> {
                let bytes: Vec<u8> = entry.get(field)?;
                std::str::from_utf8(&bytes).ok()?.parse().ok()
            };
            let id = EventId {
                stream: number("s")?,
                seq: number("q")?,
            };
            let data: Vec<u8> = entry.get("d")?;
            (id.stream == after.stream).then(|| (id, Bytes::from(data)))
        });
        let mut found = false;
        let mut first = true;
        let mut replay = Vec::new();
        for (id, data) in events {
            if first {
                // `<stream>/0` is a stream's start: known if its log starts at 0 or 1.
                found = after.seq == 0 && id.seq <= 1;
                first = false;
            }
            if id.seq == after.seq {
                found = true;
            } else if id.seq > after.seq {
                replay.push((id, data));
            }
        }
        found.then_some(replay)
    }
}

impl EventStore for RedisEventStore {
    fn append(
        &self,
        session: &SessionId,
        id: EventId,
        data: Bytes,
    ) -> impl Future<Output = ()> + Send {
        self.append_entry(session, id, data)
    }

    fn replay_after(
        &self,
        session: &SessionId,
        after: EventId,
    ) -> impl Future<Output = Option<Vec<(EventId, Bytes)>>> + Send {
        self.replay(session, after)
    }

    fn forget_session(&self, session: &SessionId) -> impl Future<Output = ()> + Send {
        let cluster = self.cluster.clone();
        let key = cluster.events_key(session);
        async move {
            // A leaving instance's sessions may be adopted elsewhere: their events stay (they
            // expire with the record).
            if cluster.is_leaving() {
                return;
            }
            let deleted: redis::RedisResult<()> =
                redis::AsyncCommands::del(&mut cluster.redis(), key).await;
            if let Err(error) = deleted {
                tracing::warn!(%error, "cannot delete SSE events from Redis");
            }
        }
    }
}
