use super::event::{EventId, EventStore};
use crate::session::SessionId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The default number of events kept per session (as the TypeScript `mcp-proxy`).
pub const DEFAULT_MAX_EVENTS_PER_SESSION: usize = 1000;

/// The default bound on the bytes of all stored events, across sessions: 64 MiB.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// An [`EventStore`] in memory, bounded per session and in total.
///
/// - At most `max_events_per_session` events per session: the session's oldest event goes first.
/// - At most `max_total_bytes` bytes of event data across all sessions: the oldest event of the
///   whole store goes first.
/// - A session's events are freed when it ends ([`EventStore::forget_session`]).
/// - Within a stream, sequence numbers are contiguous, so the resume point is found by
///   subtraction, never by a scan.
#[derive(Clone, Debug)]
pub struct InMemoryEventStore {
    inner: Arc<Mutex<Inner>>,
    max_events_per_session: usize,
    max_total_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, SessionEvents>,
    /// Insertion order across the whole store, for the byte bound. Entries of events already
    /// evicted or forgotten are skipped when popped, and compacted when they outnumber live ones.
    order: VecDeque<(SessionId, u64, u64)>,
    live_events: usize,
    total_bytes: usize,
}

#[derive(Debug, Default)]
struct SessionEvents {
    streams: HashMap<u64, VecDeque<(u64, Bytes)>>,
    /// Events in append order, for the per-session bound; entries already evicted by the total
    /// bound are skipped when popped.
    order: VecDeque<(u64, u64)>,
    count: usize,
}

/// Removes `(stream, seq)` if it is still the oldest event of its stream; returns its size. A
/// stream left empty is dropped, so a session's map only holds streams with events.
fn evict(events: &mut SessionEvents, stream_id: u64, seq: u64) -> Option<usize> {
    let stream = events.streams.get_mut(&stream_id)?;
    if stream.front().is_none_or(|(s, _)| *s != seq) {
        return None;
    }
    let (_, data) = stream.pop_front()?;
    if stream.is_empty() {
        events.streams.remove(&stream_id);
    }
    events.count -= 1;
    Some(data.len())
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEventStore {
    /// A store with the default bounds (1000 events per session, 64 MiB in total).
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            max_events_per_session: DEFAULT_MAX_EVENTS_PER_SESSION,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }

    /// Keeps at most `max` events per session (at least 1).
    pub fn max_events_per_session(mut self, max: usize) -> Self {
        self.max_events_per_session = max.max(1);
        self
    }

    /// Keeps at most `max` bytes of event data in total.
    pub fn max_total_bytes(mut self, max: usize) -> Self {
        self.max_total_bytes = max;
        self
    }

    /// The number of stored events.
    pub fn len(&self) -> usize {
        self.lock().live_events
    }

    /// `true` when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of stored event data.
    pub fn total_bytes(&self) -> usize {
        self.lock().total_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    fn append_sync(&self, session: &SessionId, id: EventId, data: Bytes) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let len = data.len();
        let events = inner.sessions.entry(session.clone()).or_default();
        let stream = events.streams.entry(id.stream).or_default();
        // Sequence numbers must stay contiguous for O(1) lookups; a gap (a writer that skipped)
        // starts the stream afresh.
        if stream.back().is_some_and(|(last, _)| last + 1 != id.seq) {
            let dropped = std::mem::take(stream);
            events.count -= dropped.len();
            inner.live_events -= dropped.len();
            inner.total_bytes -= dropped.iter().map(|(_, d)| d.len()).sum::<usize>();
        }
        stream.push_back((id.seq, data));
        events.order.push_back((id.stream, id.seq));
        events.count += 1;
        inner.order.push_back((session.clone(), id.stream, id.seq));
        inner.live_events += 1;
        inner.total_bytes += len;

        while events.count > self.max_events_per_session {
            let Some((stream_id, seq)) = events.order.pop_front() else {
                break;
            };
            if let Some(freed) = evict(events, stream_id, seq) {
                inner.live_events -= 1;
                inner.total_bytes -= freed;
            }
        }
        while inner.total_bytes > self.max_total_bytes {
            let Some((sid, stream_id, seq)) = inner.order.pop_front() else {
                break;
            };
            if let Some(freed) = inner
                .sessions
                .get_mut(&sid)
                .and_then(|events| evict(events, stream_id, seq))
            {
                inner.live_events -= 1;
                inner.total_bytes -= freed;
            }
        }
        if inner.order.len() > 2 * inner.live_events + 64 {
            let sessions = &inner.sessions;
            inner.order.retain(|(sid, stream_id, seq)| {
                sessions
                    .get(sid)
                    .and_then(|e| e.streams.get(stream_id))
                    .and_then(|s| s.front().map(|(front, _)| *seq >= *front))
                    .unwrap_or(false)
            });
        }
    }

    fn replay_sync(&self, session: &SessionId, after: EventId) -> Option<Vec<(EventId, Bytes)>> {
        let inner = self.lock();
        let stream = inner.sessions.get(session)?.streams.get(&after.stream)?;
        let front = stream.front()?.0;
        // The client needs everything after `after`: fine while the oldest stored event is at
        // most the next one (a stream's first stored event may be 1, its start being id 0).
        let next = after.seq.checked_add(1)?;
        if next < front {
            return None;
        }
        let start = usize::try_from(next - front).ok()?;
        if start > stream.len() {
            return None;
        }
        Some(
            stream
                .range(start..)
                .map(|(seq, data)| {
                    let id = EventId {
                        stream: after.stream,
                        seq: *seq,
                    };
                    (id, data.clone())
                })
                .collect(),
        )
    }

    fn forget_sync(&self, session: &SessionId) {
        let mut inner = self.lock();
        if let Some(events) = inner.sessions.remove(session) {
            inner.live_events -= events.count;
            for stream in events.streams.values() {
                inner.total_bytes -= stream.iter().map(|(_, d)| d.len()).sum::<usize>();
            }
        }
    }
}

impl EventStore for InMemoryEventStore {
    fn append(
        &self,
        session: &SessionId,
        id: EventId,
        data: Bytes,
    ) -> impl Future<Output = ()> + Send {
        self.append_sync(session, id, data);
        std::future::ready(())
    }

    fn replay_after(
        &self,
        session: &SessionId,
        after: EventId,
    ) -> impl Future<Output = Option<Vec<(EventId, Bytes)>>> + Send {
        std::future::ready(self.replay_sync(session, after))
    }

    fn forget_session(&self, session: &SessionId) -> impl Future<Output = ()> + Send {
        self.forget_sync(session);
        std::future::ready(())
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`EventStore`] behind a pointer, so layers need not be generic over the store.
pub(crate) trait DynEventStore: Send + Sync + 'static {
    fn append<'a>(&'a self, session: &'a SessionId, id: EventId, data: Bytes) -> BoxFuture<'a, ()>;
    fn replay_after<'a>(
        &'a self,
        session: &'a SessionId,
        after: EventId,
    ) -> BoxFuture<'a, Option<Vec<(EventId, Bytes)>>>;
    fn forget_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, ()>;
}

impl<S: EventStore> DynEventStore for S {
    fn append<'a>(&'a self, session: &'a SessionId, id: EventId, data: Bytes) -> BoxFuture<'a, ()> {
        Box::pin(EventStore::append(self, session, id, data))
    }

    fn replay_after<'a>(
        &'a self,
        session: &'a SessionId,
        after: EventId,
    ) -> BoxFuture<'a, Option<Vec<(EventId, Bytes)>>> {
        Box::pin(EventStore::replay_after(self, session, after))
    }

    fn forget_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, ()> {
        Box::pin(EventStore::forget_session(self, session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SessionId {
        SessionId::from_raw(s)
    }

    fn id(stream: u64, seq: u64) -> EventId {
        EventId { stream, seq }
    }

    fn data(n: u64) -> Bytes {
        Bytes::from(format!("e{n}"))
    }

    #[test]
    fn replays_only_later_events_of_the_same_stream() {
        let store = InMemoryEventStore::new();
        let s = sid("a");
        for seq in 0..5 {
            store.append_sync(&s, id(1, seq), data(seq));
            store.append_sync(&s, id(2, seq), data(100 + seq));
        }
        let replay = store.replay_sync(&s, id(1, 1)).unwrap();
        assert_eq!(
            replay,
            vec![
                (id(1, 2), data(2)),
                (id(1, 3), data(3)),
                (id(1, 4), data(4))
            ]
        );
        assert_eq!(store.replay_sync(&s, id(2, 4)).unwrap(), vec![]);
        assert_eq!(store.replay_sync(&s, id(2, 5)), None, "never sent");
        assert_eq!(store.replay_sync(&s, id(3, 0)), None, "unknown stream");
        assert_eq!(
            store.replay_sync(&sid("b"), id(1, 0)),
            None,
            "other session"
        );
    }

    #[test]
    fn bounded_per_session_and_evicted_ids_are_unknown() {
        let store = InMemoryEventStore::new().max_events_per_session(3);
        let s = sid("a");
        for seq in 0..5 {
            store.append_sync(&s, id(1, seq), data(seq));
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.replay_sync(&s, id(1, 0)), None, "event 1 was evicted");
        assert_eq!(
            store.replay_sync(&s, id(1, 1)).unwrap().len(),
            3,
            "2..=4 are all there"
        );
        assert_eq!(store.replay_sync(&s, id(1, 2)).unwrap().len(), 2);
        // Another session has its own bound.
        store.append_sync(&sid("b"), id(1, 0), data(0));
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn bounded_in_total_bytes_across_sessions() {
        let store = InMemoryEventStore::new().max_total_bytes(10);
        for (i, name) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            store.append_sync(&sid(name), id(1, 0), data(i as u64));
        }
        assert!(store.total_bytes() <= 10, "{}", store.total_bytes());
        assert_eq!(
            store.replay_sync(&sid("a"), id(1, 0)),
            None,
            "oldest evicted"
        );
        assert!(store.replay_sync(&sid("g"), id(1, 0)).is_some());
    }

    #[test]
    fn a_stream_stored_from_seq_1_resumes_from_its_start() {
        let store = InMemoryEventStore::new();
        let s = sid("a");
        store.append_sync(&s, id(5, 1), data(1));
        store.append_sync(&s, id(5, 2), data(2));
        assert_eq!(
            store.replay_sync(&s, id(5, 0)).unwrap(),
            vec![(id(5, 1), data(1)), (id(5, 2), data(2))]
        );
    }

    #[test]
    fn evicted_streams_leave_no_entry_behind() {
        let store = InMemoryEventStore::new().max_events_per_session(4);
        let s = sid("a");
        for stream in 1..=1000 {
            store.append_sync(&s, id(stream, 0), data(0));
            store.append_sync(&s, id(stream, 1), data(1));
        }
        let inner = store.lock();
        let events = &inner.sessions[&s];
        assert_eq!(events.count, 4);
        assert_eq!(
            events.streams.len(),
            2,
            "only the streams still holding events"
        );
    }

    #[test]
    fn forgetting_a_session_frees_it_and_the_order_queue_stays_bounded() {
        let store = InMemoryEventStore::new();
        for round in 0..1000u64 {
            let s = sid(&format!("s{round}"));
            store.append_sync(&s, id(1, 0), data(round));
            store.forget_sync(&s);
        }
        assert_eq!(store.len(), 0);
        assert_eq!(store.total_bytes(), 0);
        assert!(store.lock().order.len() <= 64 + 1);
    }
}
