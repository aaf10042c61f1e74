//! Resumable streams: one pump task per stream stores every event before delivering it to the
//! connection attached at that moment, if any.
//!
//! Ordering argument (why nothing is lost or duplicated on resume): the pump is the only writer
//! of a stream, and it appends an event to the store *before* delivering it. A resuming client
//! first swaps itself in as the live connection, *then* reads the store. Every event is therefore
//! either in the store when it is read, or delivered to the new connection afterwards (or both,
//! and the body drops the duplicate by sequence number).
//!
//! Backpressure (why a client that reads gets everything, and memory stays bounded): the pump
//! waits while the attached connection's queue is full, and the handler's own bounded queue then
//! makes it wait in `Peer::send`. Only a connection that takes nothing for the stall timeout is
//! closed. With no connection attached the pump stores up to a queue's worth of events (the
//! connection capacity) for the client's return, then waits for it, again at most the stall
//! timeout; a client that is not back by then is given up on: the handler runs on unhindered and
//! the stream's events are kept within the session's store quota, oldest evicted first.
//!
//! A stream's events are reported delivered to the store (which then keeps only a window of
//! them) when the stream ends with its client attached: while it runs, what was handed to a
//! connection may still sit unread in socket buffers, so it stays resumable.

use super::StreamEvent;
use super::event::{EventId, encode_data, encode_priming, encode_retry};
use super::store::DynEventStore;
use crate::session::{Session, SessionId};
use crate::sync::lock;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// The default time a stream waits for its client: for an attached connection to take a frame
/// from its full queue, and for a client without a connection to come back.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An encoded SSE frame and the sequence number of its event (for de-duplication on resume).
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) seq: Option<u64>,
    pub(crate) bytes: Bytes,
}

/// The connection currently attached to a stream.
#[derive(Debug, Default)]
pub(crate) struct LiveSlot {
    tx: Mutex<Option<mpsc::Sender<Frame>>>,
    /// Wakes a pump waiting for a reader: a connection attached, or the session ended.
    wake: Notify,
    /// The last sequence number handed to a connection.
    delivered: AtomicU64,
    /// The last sequence number in the store.
    stored: AtomicU64,
}

/// What became of a frame the pump tried to deliver.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Delivered,
    /// No connection took it (none attached, or the attached one stalled and was closed).
    NoReader,
}

impl LiveSlot {
    /// Attaches a new connection, replacing (and so closing) any previous one.
    pub(crate) fn attach(&self, tx: mpsc::Sender<Frame>) {
        *lock(&self.tx) = Some(tx);
        self.wake.notify_waiters();
    }

    /// Attaches a new connection and returns the previous one, which stays open while held.
    pub(crate) fn swap(&self, tx: mpsc::Sender<Frame>) -> Option<mpsc::Sender<Frame>> {
        let previous = lock(&self.tx).replace(tx);
        self.wake.notify_waiters();
        previous
    }

    /// Puts `previous` back if `ours` is still the attached connection.
    pub(crate) fn restore(
        &self,
        ours: &mpsc::Sender<Frame>,
        previous: Option<mpsc::Sender<Frame>>,
    ) {
        let mut slot = lock(&self.tx);
        if slot.as_ref().is_some_and(|tx| tx.same_channel(ours)) {
            *slot = previous;
        }
        drop(slot);
        self.wake.notify_waiters();
    }

    /// `true` while a connection is attached and open.
    pub(crate) fn is_attached(&self) -> bool {
        lock(&self.tx).as_ref().is_some_and(|tx| !tx.is_closed())
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// `true` while the pump has stored nothing but (perhaps) the start marker: a resume from
    /// the start (`seq` 0) is then valid even if the store does not know the stream yet.
    pub(crate) fn just_started(&self, seq: u64) -> bool {
        seq == 0 && self.stored.load(Ordering::Acquire) == 0
    }

    fn detach(&self) {
        lock(&self.tx).take();
    }

    /// Closes `tx` if it is still the attached connection.
    fn detach_if(&self, tx: &mpsc::Sender<Frame>) {
        let mut slot = lock(&self.tx);
        if slot
            .as_ref()
            .is_some_and(|attached| attached.same_channel(tx))
        {
            slot.take();
        }
    }

    /// The attached connection, if it is open.
    fn current(&self) -> Option<mpsc::Sender<Frame>> {
        let mut slot = lock(&self.tx);
        if slot.as_ref().is_some_and(mpsc::Sender::is_closed) {
            slot.take();
        }
        slot.clone()
    }

    fn mark(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.delivered.store(seq, Ordering::Release);
        }
    }

    /// Hands a frame to the attached connection, waiting while its queue is full. A connection
    /// that takes nothing for `stall` is closed (its client resumes from the store); a
    /// connection attached meanwhile gets the frame instead.
    async fn deliver(&self, frame: Frame, stall: Duration) -> Delivery {
        // Fast path: room in the queue, no timer, no clone of the sender.
        let frame = {
            let mut slot = lock(&self.tx);
            let Some(tx) = slot.as_ref() else {
                return Delivery::NoReader;
            };
            let seq = frame.seq;
            match tx.try_send(frame) {
                Ok(()) => {
                    self.mark(seq);
                    return Delivery::Delivered;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    slot.take();
                    return Delivery::NoReader;
                }
                Err(mpsc::error::TrySendError::Full(frame)) => frame,
            }
        };
        self.deliver_waiting(frame, stall).await
    }

    async fn deliver_waiting(&self, frame: Frame, stall: Duration) -> Delivery {
        enum Wait {
            Room(Result<mpsc::OwnedPermit<Frame>, mpsc::error::SendError<()>>),
            Woken,
            Stalled,
        }
        loop {
            let mut woken = pin!(self.wake.notified());
            // Registered before the slot is read again, so an attach in between is not missed.
            woken.as_mut().enable();
            let Some(tx) = self.current() else {
                return Delivery::NoReader;
            };
            let mut room = pin!(tx.clone().reserve_owned());
            let mut stalled = pin!(tokio::time::sleep(stall));
            let wait = std::future::poll_fn(|cx| {
                if let Poll::Ready(permit) = room.as_mut().poll(cx) {
                    return Poll::Ready(Wait::Room(permit));
                }
                if woken.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::Woken);
                }
                if stalled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::Stalled);
                }
                Poll::Pending
            })
            .await;
            match wait {
                Wait::Room(Ok(permit)) => {
                    let seq = frame.seq;
                    permit.send(frame);
                    self.mark(seq);
                    return Delivery::Delivered;
                }
                Wait::Room(Err(_)) => self.detach_if(&tx),
                // Another connection may have taken over: deliver there.
                Wait::Woken => {}
                Wait::Stalled => {
                    tracing::warn!(
                        "SSE client took nothing for {stall:?}; closing its connection (it can resume)"
                    );
                    self.detach_if(&tx);
                }
            }
        }
    }
}

/// Pumps, live slots and the store, shared by every clone of an [`SseLayer`](super::SseLayer).
pub(crate) struct Streams {
    pub(crate) store: Arc<dyn DynEventStore>,
    live: Mutex<HashMap<(SessionId, u64), Arc<LiveSlot>>>,
    pub(crate) connection_capacity: usize,
    pub(crate) stall_timeout: Duration,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("live", &lock(&self.live).len())
            .field("connection_capacity", &self.connection_capacity)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

impl Streams {
    pub(crate) fn new(
        store: Arc<dyn DynEventStore>,
        connection_capacity: usize,
        stall_timeout: Duration,
    ) -> Self {
        Self {
            store,
            live: Mutex::new(HashMap::new()),
            connection_capacity,
            stall_timeout,
        }
    }

    /// The live slot of a stream whose pump is still running.
    pub(crate) fn slot(&self, session: &SessionId, stream: u64) -> Option<Arc<LiveSlot>> {
        lock(&self.live).get(&(session.clone(), stream)).cloned()
    }

    /// Frees the session's stored events when it ends (arranged once per session), and wakes
    /// its pumps that wait for a client who can no longer come back.
    fn forget_on_close(self: &Arc<Self>, session: &Arc<Session>) {
        if session.mark_events_stored() {
            let streams = Arc::downgrade(self);
            let id = session.id().clone();
            session.on_close(Box::new(move || {
                Box::pin(async move {
                    if let Some(streams) = streams.upgrade() {
                        streams.store.forget_session(&id).await;
                        let slots: Vec<_> = lock(&streams.live)
                            .iter()
                            .filter(|((sid, _), _)| *sid == id)
                            .map(|(_, slot)| slot.clone())
                            .collect();
                        for slot in slots {
                            slot.wake.notify_waiters();
                        }
                    }
                })
            }));
        }
    }

    /// Stores a complete answer as a new stream and encodes it in one chunk: the fast path for
    /// handlers that answered without waiting (no pump task, no channel). The appends run at
    /// once when the store is synchronous underneath (as the in-memory one is), else in a task.
    pub(crate) fn store_complete(
        self: &Arc<Self>,
        session: &Arc<Session>,
        messages: &[crate::jsonrpc::Message],
        priming: bool,
    ) -> Bytes {
        self.forget_on_close(session);
        let stream = session.next_stream_id();
        let mut buf = BytesMut::with_capacity(24 + messages.len() * 160);
        let start = EventId { stream, seq: 0 };
        if priming {
            encode_priming(&mut buf, start);
        }
        // No start marker: the whole stream is stored at once, from seq 1 (see
        // `EventStore::replay_after` on `<stream>/0`).
        let mut events = Vec::with_capacity(messages.len());
        for (seq, message) in (1..).zip(messages) {
            let data = message.to_bytes();
            let id = EventId { stream, seq };
            encode_data(&mut buf, Some(id), &data);
            events.push((id, data));
        }
        let streams = self.clone();
        let session = session.clone();
        let mut append = Box::pin(async move {
            let sid = session.id();
            let last = events.last().map(|(id, _)| *id);
            for (id, data) in events {
                streams.store.append(sid, id, data).await;
            }
            // The answer goes out in the response being built: delivered.
            if let Some(last) = last {
                streams.store.delivered(sid, last).await;
            }
            if session.is_closed() {
                // Closed while appending: its events may have been forgotten before ours.
                streams.store.forget_session(sid).await;
            }
        });
        let waker = futures_util::task::noop_waker_ref();
        if append
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
            .is_pending()
        {
            tokio::spawn(append);
        }
        buf.freeze()
    }

    /// Starts pumping `rx` as stream `stream` of `session`; returns the first connection.
    pub(crate) fn start(
        self: &Arc<Self>,
        session: &Arc<Session>,
        stream: u64,
        rx: mpsc::Receiver<StreamEvent>,
        priming: bool,
    ) -> mpsc::Receiver<Frame> {
        self.start_at(session, stream, rx, priming, 1)
    }

    /// Starts a stream's pump whose first event is `first_seq`: a stream that went on in
    /// another process before (a session adopted from a dead instance of a cluster) continues
    /// after the events that process stored.
    pub(crate) fn start_at(
        self: &Arc<Self>,
        session: &Arc<Session>,
        stream: u64,
        rx: mpsc::Receiver<StreamEvent>,
        priming: bool,
        first_seq: u64,
    ) -> mpsc::Receiver<Frame> {
        let (tx, first) = mpsc::channel(self.connection_capacity);
        let slot = Arc::new(LiveSlot::default());
        slot.attach(tx);
        let key = (session.id().clone(), stream);
        lock(&self.live).insert(key.clone(), slot.clone());
        self.forget_on_close(session);
        let pump = Pump {
            streams: self.clone(),
            slot,
            session: session.clone(),
            stream,
            away: 0,
            given_up: false,
        };
        tokio::spawn(pump.run(rx, priming, first_seq.max(1)));
        first
    }
}

/// One stream's pump task.
struct Pump {
    streams: Arc<Streams>,
    slot: Arc<LiveSlot>,
    session: Arc<Session>,
    stream: u64,
    /// Events stored since the client lost its connection.
    away: usize,
    /// The client did not come back within the stall timeout: stop waiting for it.
    given_up: bool,
}

impl Pump {
    async fn run(mut self, mut rx: mpsc::Receiver<StreamEvent>, priming: bool, first_seq: u64) {
        let sid = self.session.id().clone();
        // Sequence 0 marks the stream's start, so "everything after 0" is a valid resume point
        // even when no priming event was sent. A continued stream has its start stored.
        let start = EventId {
            stream: self.stream,
            seq: 0,
        };
        if first_seq == 1 {
            self.streams.store.append(&sid, start, Bytes::new()).await;
        }
        if priming && first_seq == 1 {
            let mut buf = BytesMut::with_capacity(24);
            encode_priming(&mut buf, start);
            let frame = Frame {
                seq: Some(0),
                bytes: buf.freeze(),
            };
            self.slot.deliver(frame, self.streams.stall_timeout).await;
        }
        let mut seq = first_seq;
        while let Some(event) = rx.recv().await {
            let closed = self.session.is_closed();
            if closed && !self.slot.is_attached() {
                // Nobody can resume a session that ended: stop, and the handler's next send
                // fails with `SendError::Closed`.
                break;
            }
            match event {
                StreamEvent::Message(message) => {
                    let data = message.to_bytes();
                    let id = EventId {
                        stream: self.stream,
                        seq,
                    };
                    if !closed {
                        self.streams.store.append(&sid, id, data.clone()).await;
                        self.slot.stored.store(seq, Ordering::Release);
                    }
                    let mut buf = BytesMut::with_capacity(data.len() + 40);
                    encode_data(&mut buf, Some(id), &data);
                    let frame = Frame {
                        seq: Some(seq),
                        bytes: buf.freeze(),
                    };
                    match self.slot.deliver(frame, self.streams.stall_timeout).await {
                        Delivery::Delivered => {
                            self.away = 0;
                            self.given_up = false;
                        }
                        Delivery::NoReader if self.given_up => {}
                        Delivery::NoReader => {
                            self.away += 1;
                            if self.away >= self.streams.connection_capacity {
                                self.wait_for_client(&sid).await;
                            }
                        }
                    }
                    seq += 1;
                }
                StreamEvent::CloseConnection { retry } => {
                    let mut buf = BytesMut::with_capacity(24);
                    encode_retry(&mut buf, retry);
                    let frame = Frame {
                        seq: None,
                        bytes: buf.freeze(),
                    };
                    self.slot.deliver(frame, self.streams.stall_timeout).await;
                    self.slot.detach();
                }
            }
        }
        if self.session.is_closed() {
            // Closed while the pump appended: its events may have been forgotten before ours.
            self.streams.store.forget_session(&sid).await;
        } else if self.slot.is_attached() {
            // The client is reading and has been handed everything: the store may keep just a
            // window of these, for a client that loses the tail.
            let id = EventId {
                stream: self.stream,
                seq: self.slot.delivered(),
            };
            self.streams.store.delivered(&sid, id).await;
        }
        let key = (sid, self.stream);
        let mut live = lock(&self.streams.live);
        if live.get(&key).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
            live.remove(&key);
        }
        drop(live);
        // Ends the attached connection's body: the stream is complete.
        self.slot.detach();
    }

    /// The client has been away for a queue's worth of events: hold the handler back (it waits
    /// in `Peer::send`) until a connection attaches, the session ends, or the stall timeout
    /// passes; then the client is given up on.
    async fn wait_for_client(&mut self, sid: &SessionId) {
        let deadline = tokio::time::Instant::now() + self.streams.stall_timeout;
        let slot = self.slot.clone();
        loop {
            let mut woken = pin!(slot.wake.notified());
            woken.as_mut().enable();
            if slot.is_attached() {
                // The resume replayed what was stored; what follows goes out live.
                self.away = 0;
                return;
            }
            if self.session.is_closed() {
                break;
            }
            // Woken for nothing (a refused resume put nothing back): wait out the rest.
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                tracing::info!(
                    session = %sid,
                    stream = self.stream,
                    "SSE client did not come back within {:?}; its stream goes on without waiting",
                    self.streams.stall_timeout
                );
                break;
            }
        }
        self.given_up = true;
    }
}
