use super::event::{EventId, EventStore};
use crate::session::SessionId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The default number of delivered events kept per session (as the TypeScript `mcp-proxy`
/// keeps 1000 events): what a client that lost the tail of a finished response can resume.
pub const DEFAULT_MAX_EVENTS_PER_SESSION: usize = 1000;

/// The default byte quota of one session: 16 MiB. Room for what a stalled client's socket
/// buffers hold (a few MiB on Linux) plus what its stream stores while it is away.
pub const DEFAULT_MAX_SESSION_BYTES: usize = 16 * 1024 * 1024;

/// The default bound on the bytes of all stored events, across sessions: 64 MiB.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// What each event counts against the byte bounds beyond its data: about what its bookkeeping
/// takes, so that a flood of tiny (or empty) events is bounded by bytes too.
pub const EVENT_OVERHEAD: usize = 128;

/// An [`EventStore`] in memory, bounded per session and in total.
///
/// Events are *pending* until [`EventStore::delivered`] reports them: those of a live stream
/// (its client may be stalled with them unread in its socket buffers) and those a client that
/// is away has yet to resume. [`SseLayer`](super::SseLayer) reports a stream's events delivered
/// once the stream has ended with its client attached, or at once for an answer sent whole.
///
/// - **Delivered events**: the last `max_events_per_session` of a session are kept (default
///   1000), for a client that lost the tail of a response; older ones go first.
/// - **Per session** (`max_session_bytes`, every event counting its data plus
///   [`EVENT_OVERHEAD`]): a session over its quota gives up its own events, never another
///   session's: delivered ones first, then pending ones, oldest first.
/// - **In total** (`max_total_bytes`): when the store is full, the sessions holding the most
///   give way (each its delivered events first) down to a common level, so a session holding
///   less than the others keeps every event; among equals the appending session goes first.
///   Each pass frees 1/64 of the budget beyond the excess, so it runs once per that much
///   appended data, not on every append.
///
/// A session's events are freed when it ends ([`EventStore::forget_session`]). Within a stream,
/// sequence numbers are contiguous, so the resume point is found by subtraction, never by a scan.
#[derive(Clone, Debug)]
pub struct InMemoryEventStore {
    inner: Arc<Mutex<Inner>>,
    max_events_per_session: usize,
    max_session_bytes: usize,
    max_total_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, SessionEvents>,
    live_events: usize,
    /// Charged bytes (data plus [`EVENT_OVERHEAD`] per event) across all sessions.
    total_bytes: usize,
}

#[derive(Debug, Default)]
struct SessionEvents {
    streams: HashMap<u64, StreamEvents>,
    /// `(stream, seq)` in append order, for evicting pending events. Entries of events already
    /// evicted are skipped when popped, and compacted when they outnumber live ones.
    order: VecDeque<(u64, u64)>,
    /// `(stream, seq)` of delivered events in the order they were reported: evicted first.
    delivered: VecDeque<(u64, u64)>,
    count: usize,
    /// How many of the stored events are delivered.
    delivered_count: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct StreamEvents {
    events: VecDeque<(u64, Bytes)>,
    /// The events up to this sequence number were delivered.
    delivered_through: Option<u64>,
}

fn charge(data: &Bytes) -> usize {
    data.len() + EVENT_OVERHEAD
}

impl SessionEvents {
    /// `true` while `(stream, seq)` is stored.
    fn holds(&self, stream: u64, seq: u64) -> bool {
        self.streams
            .get(&stream)
            .and_then(|s| s.events.front())
            .is_some_and(|(front, _)| seq >= *front)
    }

    /// Removes `(stream, seq)` if it is still the oldest event of its stream; returns its charge.
    /// A stream left empty is dropped, so the map only holds streams with events.
    fn evict(&mut self, stream_id: u64, seq: u64) -> Option<usize> {
        let stream = self.streams.get_mut(&stream_id)?;
        if stream.events.front().is_none_or(|(s, _)| *s != seq) {
            return None;
        }
        let (_, data) = stream.events.pop_front()?;
        if stream.delivered_through.is_some_and(|d| seq <= d) {
            self.delivered_count -= 1;
        }
        if stream.events.is_empty() {
            self.streams.remove(&stream_id);
        }
        let freed = charge(&data);
        self.count -= 1;
        self.bytes -= freed;
        Some(freed)
    }

    /// Evicts the session's oldest delivered event; returns its charge.
    fn evict_delivered(&mut self) -> Option<usize> {
        while let Some(entry) = self.delivered.pop_front() {
            if let Some(freed) = self.evict(entry.0, entry.1) {
                // Usually also the oldest event: drop its entry now rather than in `compact`.
                if self.order.front() == Some(&entry) {
                    self.order.pop_front();
                }
                return Some(freed);
            }
        }
        None
    }

    /// Evicts the session's next event: the oldest delivered one, else the oldest one. Returns
    /// its charge; `None` when the session holds nothing.
    fn evict_one(&mut self) -> Option<usize> {
        if let Some(freed) = self.evict_delivered() {
            return Some(freed);
        }
        while let Some(entry) = self.order.pop_front() {
            if let Some(freed) = self.evict(entry.0, entry.1) {
                return Some(freed);
            }
        }
        None
    }

    /// Drops queue entries of events no longer stored, once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.count + 64 {
            let mut order = std::mem::take(&mut self.order);
            order.retain(|(stream, seq)| self.holds(*stream, *seq));
            order.shrink_to(2 * order.len() + 64);
            self.order = order;
        }
        if self.delivered.len() > 2 * self.delivered_count + 64 {
            let mut delivered = std::mem::take(&mut self.delivered);
            delivered.retain(|(stream, seq)| self.holds(*stream, *seq));
            delivered.shrink_to(2 * delivered.len() + 64);
            self.delivered = delivered;
        }
    }
}

/// The level the largest sessions are cut down to so that `excess` bytes are freed: with the
/// sizes sorted largest first, the highest `level` with `sum(max(0, size - level)) >= excess`.
fn water_level(sizes: &[usize], excess: usize) -> usize {
    let mut prefix = 0usize;
    for (k, size) in sizes.iter().enumerate() {
        prefix += size;
        let taken = k + 1;
        let next = sizes.get(taken).copied().unwrap_or(0);
        // Cutting the `taken` largest down to `next` frees `prefix - taken * next`.
        if prefix - taken * next >= excess {
            return (prefix - excess) / taken;
        }
    }
    0
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEventStore {
    /// A store with the default bounds: 16 MiB and 1000 delivered events per session, 64 MiB in
    /// total.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            max_events_per_session: DEFAULT_MAX_EVENTS_PER_SESSION,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }

    /// Keeps at most `max` delivered events per session (at least 1); pending events are bounded
    /// by the byte quota instead.
    pub fn max_events_per_session(mut self, max: usize) -> Self {
        self.max_events_per_session = max.max(1);
        self
    }

    /// The byte quota of one session (data plus [`EVENT_OVERHEAD`] per event).
    pub fn max_session_bytes(mut self, max: usize) -> Self {
        self.max_session_bytes = max;
        self
    }

    /// Keeps at most `max` bytes in total (data plus [`EVENT_OVERHEAD`] per event).
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

    /// The bytes counted against the bounds: stored data plus [`EVENT_OVERHEAD`] per event.
    pub fn total_bytes(&self) -> usize {
        self.lock().total_bytes
    }

    /// The bytes counted against `session`'s quota.
    pub fn session_bytes(&self, session: &SessionId) -> usize {
        self.lock().sessions.get(session).map_or(0, |s| s.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    fn append_sync(&self, session: &SessionId, id: EventId, data: Bytes) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let cost = charge(&data);
        let events = inner.sessions.entry(session.clone()).or_default();
        let stream = events.streams.entry(id.stream).or_default();
        // Sequence numbers must stay contiguous for O(1) lookups; a gap (a writer that skipped)
        // starts the stream afresh.
        if stream
            .events
            .back()
            .is_some_and(|(last, _)| last + 1 != id.seq)
        {
            let dropped = std::mem::take(stream);
            let freed: usize = dropped.events.iter().map(|(_, d)| charge(d)).sum();
            let delivered = dropped
                .events
                .iter()
                .filter(|(seq, _)| dropped.delivered_through.is_some_and(|d| *seq <= d))
                .count();
            events.count -= dropped.events.len();
            events.delivered_count -= delivered;
            events.bytes -= freed;
            inner.live_events -= dropped.events.len();
            inner.total_bytes -= freed;
        }
        stream.events.push_back((id.seq, data));
        events.order.push_back((id.stream, id.seq));
        events.count += 1;
        events.bytes += cost;
        inner.live_events += 1;
        inner.total_bytes += cost;

        // The session's own quota: it gives up its own events, delivered ones first.
        while events.bytes > self.max_session_bytes {
            let Some(freed) = events.evict_one() else {
                break;
            };
            inner.live_events -= 1;
            inner.total_bytes -= freed;
        }
        events.compact();
        if events.count == 0 {
            inner.sessions.remove(session);
        }
        if inner.total_bytes > self.max_total_bytes {
            self.level(inner, session);
        }
    }

    /// The store is full: the sessions holding the most give way, down to a common level, until
    /// the store is 1/64 below its bound. Among equals the appending session goes first.
    fn level(&self, inner: &mut Inner, appending: &SessionId) {
        let target = self.max_total_bytes - self.max_total_bytes / 64;
        let excess = inner.total_bytes.saturating_sub(target);
        let mut sizes: Vec<(usize, bool, SessionId)> = inner
            .sessions
            .iter()
            .map(|(id, events)| (events.bytes, id == appending, id.clone()))
            .collect();
        sizes.sort_unstable_by_key(|s| std::cmp::Reverse((s.0, s.1)));
        let level = water_level(&sizes.iter().map(|s| s.0).collect::<Vec<_>>(), excess);
        for (_, _, id) in sizes {
            if inner.total_bytes <= target {
                break;
            }
            let Some(events) = inner.sessions.get_mut(&id) else {
                continue;
            };
            while events.bytes > level && inner.total_bytes > target {
                let Some(freed) = events.evict_one() else {
                    break;
                };
                inner.live_events -= 1;
                inner.total_bytes -= freed;
            }
            events.compact();
            if events.count == 0 {
                inner.sessions.remove(&id);
            }
        }
    }

    fn delivered_sync(&self, session: &SessionId, id: EventId) {
        let mut inner = self.lock();
        let Some(events) = inner.sessions.get_mut(session) else {
            return;
        };
        let Some(stream) = events.streams.get_mut(&id.stream) else {
            return;
        };
        let (Some((front, _)), Some((back, _))) = (stream.events.front(), stream.events.back())
        else {
            return;
        };
        let from = stream
            .delivered_through
            .map_or(*front, |d| (d + 1).max(*front));
        let through = id.seq.min(*back);
        if from > through {
            return;
        }
        stream.delivered_through = Some(through);
        events
            .delivered
            .extend((from..=through).map(|seq| (id.stream, seq)));
        events.delivered_count += usize::try_from(through - from + 1).unwrap_or(usize::MAX);
        let mut freed_events = 0;
        let mut freed_bytes = 0;
        while events.delivered_count > self.max_events_per_session {
            let Some(freed) = events.evict_delivered() else {
                break;
            };
            freed_events += 1;
            freed_bytes += freed;
        }
        events.compact();
        let empty = events.count == 0;
        inner.live_events -= freed_events;
        inner.total_bytes -= freed_bytes;
        if empty {
            inner.sessions.remove(session);
        }
    }

    fn replay_sync(&self, session: &SessionId, after: EventId) -> Option<Vec<(EventId, Bytes)>> {
        let inner = self.lock();
        let stream = &inner
            .sessions
            .get(session)?
            .streams
            .get(&after.stream)?
            .events;
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
            inner.total_bytes -= events.bytes;
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

    fn delivered(&self, session: &SessionId, id: EventId) -> impl Future<Output = ()> + Send {
        self.delivered_sync(session, id);
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
    fn delivered<'a>(&'a self, session: &'a SessionId, id: EventId) -> BoxFuture<'a, ()>;
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

    fn delivered<'a>(&'a self, session: &'a SessionId, id: EventId) -> BoxFuture<'a, ()> {
        Box::pin(EventStore::delivered(self, session, id))
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
    fn delivered_events_are_kept_in_a_window_and_evicted_ids_are_unknown() {
        let store = InMemoryEventStore::new().max_events_per_session(3);
        let s = sid("a");
        for seq in 0..5 {
            store.append_sync(&s, id(1, seq), data(seq));
        }
        // Pending events are bounded by bytes only: all five are kept...
        assert_eq!(store.len(), 5);
        // ... until delivered: then the window of three.
        store.delivered_sync(&s, id(1, 4));
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
        store.delivered_sync(&sid("b"), id(1, 0));
        assert_eq!(store.len(), 4);
    }

    /// The charge of one `data(n)` event (`e<n>`, 2 bytes for n < 10).
    const SMALL: usize = 2 + EVENT_OVERHEAD;

    #[test]
    fn a_full_store_takes_from_the_largest_sessions_first() {
        let store = InMemoryEventStore::new().max_total_bytes(10 * SMALL);
        // Six one-event sessions, and one holding four.
        for name in ["a", "b", "c", "d", "e", "f"] {
            store.append_sync(&sid(name), id(1, 0), data(0));
        }
        for seq in 0..4 {
            store.append_sync(&sid("big"), id(1, seq), data(seq));
        }
        assert_eq!(store.total_bytes(), 10 * SMALL);
        // The store is full: whoever appends, the largest session gives way.
        store.append_sync(&sid("g"), id(1, 0), data(0));
        assert!(store.total_bytes() <= 10 * SMALL, "{}", store.total_bytes());
        for name in ["a", "b", "c", "d", "e", "f", "g"] {
            assert!(store.replay_sync(&sid(name), id(1, 0)).is_some(), "{name}");
        }
        assert_eq!(
            store.replay_sync(&sid("big"), id(1, 0)),
            None,
            "its oldest went"
        );
        assert!(store.replay_sync(&sid("big"), id(1, 1)).is_some());
        assert!(store.session_bytes(&sid("big")) < 4 * SMALL);
    }

    #[test]
    fn one_session_cannot_push_out_anothers_events() {
        let store = InMemoryEventStore::new()
            .max_session_bytes(16 * 1024)
            .max_total_bytes(64 * 1024);
        let a = sid("a");
        for seq in 0..5 {
            store.append_sync(&a, id(1, seq), data(seq));
        }
        store.delivered_sync(&a, id(1, 4));
        let big = Bytes::from(vec![b'x'; 4096]);
        for round in 0..100 {
            let b = sid("b");
            store.append_sync(&b, id(round + 1, 1), big.clone());
            store.delivered_sync(&b, id(round + 1, 1));
            assert!(store.session_bytes(&b) <= 16 * 1024);
        }
        assert_eq!(store.replay_sync(&a, id(1, 0)).map(|r| r.len()), Some(4));
        // Many sessions filling the store: still only the largest give way.
        for n in 0..40 {
            let other = sid(&format!("s{n}"));
            for seq in 0..4 {
                store.append_sync(&other, id(1, seq), big.clone());
            }
            assert!(store.total_bytes() <= 64 * 1024);
        }
        assert_eq!(store.replay_sync(&a, id(1, 0)).map(|r| r.len()), Some(4));
    }

    #[test]
    fn a_session_over_its_quota_gives_up_delivered_events_first() {
        let store = InMemoryEventStore::new().max_session_bytes(8 * SMALL);
        let s = sid("a");
        // Stream 1: six events, the first four delivered. Stream 2: two, undelivered.
        for seq in 0..6 {
            store.append_sync(&s, id(1, seq), data(seq));
        }
        store.delivered_sync(&s, id(1, 3));
        store.append_sync(&s, id(2, 0), data(0));
        store.append_sync(&s, id(2, 1), data(1));
        assert_eq!(store.len(), 8);
        // Three more on stream 2: the three oldest delivered events make room.
        for seq in 2..5 {
            store.append_sync(&s, id(2, seq), data(seq));
        }
        assert_eq!(store.len(), 8);
        assert_eq!(store.replay_sync(&s, id(1, 2)).map(|r| r.len()), Some(3));
        assert_eq!(store.replay_sync(&s, id(1, 1)), None);
        // Then the last delivered one, then the oldest undelivered (stream 1's 4).
        store.append_sync(&s, id(2, 5), data(5));
        store.append_sync(&s, id(2, 6), data(6));
        assert_eq!(store.replay_sync(&s, id(1, 3)), None);
        assert_eq!(store.replay_sync(&s, id(1, 4)).map(|r| r.len()), Some(1));
        assert_eq!(store.replay_sync(&s, id(2, 0)).map(|r| r.len()), Some(6));
    }

    #[test]
    fn water_level_frees_the_excess_from_the_top() {
        assert_eq!(water_level(&[10, 4, 2], 3), 7);
        assert_eq!(water_level(&[10, 4, 2], 6), 4);
        assert_eq!(water_level(&[10, 4, 2], 8), 3);
        assert_eq!(water_level(&[10, 4, 2], 16), 0);
        assert_eq!(water_level(&[5, 5, 5], 3), 4);
        assert_eq!(water_level(&[], 3), 0);
    }

    #[test]
    fn delivery_marks_stay_bounded_and_ignore_unknown_events() {
        let store = InMemoryEventStore::new().max_events_per_session(10);
        let s = sid("a");
        store.delivered_sync(&s, id(1, 5));
        for seq in 0..10_000 {
            store.append_sync(&s, id(1, seq), data(seq % 10));
            store.delivered_sync(&s, id(1, seq + 100));
        }
        store.delivered_sync(&s, id(9, 0));
        let inner = store.lock();
        let events = &inner.sessions[&s];
        assert_eq!(events.count, 10);
        assert!(
            events.delivered.len() <= 2 * 10 + 64,
            "{}",
            events.delivered.len()
        );
        assert!(events.order.len() <= 2 * 10 + 64, "{}", events.order.len());
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
            store.delivered_sync(&s, id(stream, 1));
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
        assert!(store.lock().sessions.is_empty());
    }
}
