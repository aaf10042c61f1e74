//! Resumable streams: one pump task per stream stores every event before delivering it to the
//! connection attached at that moment, if any.
//!
//! Ordering argument (why nothing is lost or duplicated on resume): the pump is the only writer
//! of a stream, and it appends an event to the store *before* delivering it. A resuming client
//! first swaps itself in as the live connection, *then* reads the store. Every event is therefore
//! either in the store when it is read, or delivered to the new connection afterwards (or both,
//! and the body drops the duplicate by sequence number).

use super::StreamEvent;
use super::event::{EventId, encode_data, encode_priming, encode_retry};
use super::store::DynEventStore;
use crate::session::{Session, SessionId};
use crate::sync::lock;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

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
    /// The last sequence number handed to a connection.
    delivered: AtomicU64,
    /// The last sequence number in the store.
    stored: AtomicU64,
}

impl LiveSlot {
    /// Attaches a new connection, replacing (and so closing) any previous one.
    pub(crate) fn attach(&self, tx: mpsc::Sender<Frame>) {
        *lock(&self.tx) = Some(tx);
    }

    /// Attaches a new connection and returns the previous one, which stays open while held.
    pub(crate) fn swap(&self, tx: mpsc::Sender<Frame>) -> Option<mpsc::Sender<Frame>> {
        lock(&self.tx).replace(tx)
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

    /// Hands a frame to the attached connection without waiting. A connection whose queue is
    /// full has stopped reading: it is closed, and the client resumes from the store.
    fn deliver(&self, frame: Frame) {
        let mut slot = lock(&self.tx);
        let Some(tx) = slot.as_ref() else {
            return;
        };
        let seq = frame.seq;
        match tx.try_send(frame) {
            Ok(()) => {
                if let Some(seq) = seq {
                    self.delivered.store(seq, Ordering::Release);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("SSE client is not reading; closing its connection (it can resume)");
                slot.take();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                slot.take();
            }
        }
    }
}

/// Pumps, live slots and the store, shared by every clone of an [`SseLayer`](super::SseLayer).
pub(crate) struct Streams {
    pub(crate) store: Arc<dyn DynEventStore>,
    live: Mutex<HashMap<(SessionId, u64), Arc<LiveSlot>>>,
    pub(crate) connection_capacity: usize,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("live", &lock(&self.live).len())
            .finish_non_exhaustive()
    }
}

impl Streams {
    pub(crate) fn new(store: Arc<dyn DynEventStore>, connection_capacity: usize) -> Self {
        Self {
            store,
            live: Mutex::new(HashMap::new()),
            connection_capacity,
        }
    }

    /// The live slot of a stream whose pump is still running.
    pub(crate) fn slot(&self, session: &SessionId, stream: u64) -> Option<Arc<LiveSlot>> {
        lock(&self.live).get(&(session.clone(), stream)).cloned()
    }

    /// Frees the session's stored events when it ends (arranged once per session).
    fn forget_on_close(self: &Arc<Self>, session: &Arc<Session>) {
        if session.mark_events_stored() {
            let streams = Arc::downgrade(self);
            let id = session.id().clone();
            session.on_close(Box::new(move || {
                Box::pin(async move {
                    if let Some(streams) = streams.upgrade() {
                        streams.store.forget_session(&id).await;
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
        let sid = session.id().clone();
        let mut append = Box::pin(async move {
            for (id, data) in events {
                streams.store.append(&sid, id, data).await;
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
        mut rx: mpsc::Receiver<StreamEvent>,
        priming: bool,
    ) -> mpsc::Receiver<Frame> {
        let (tx, first) = mpsc::channel(self.connection_capacity);
        let slot = Arc::new(LiveSlot::default());
        slot.attach(tx);
        let key = (session.id().clone(), stream);
        lock(&self.live).insert(key.clone(), slot.clone());
        self.forget_on_close(session);
        let streams = self.clone();
        tokio::spawn(async move {
            let (sid, stream) = &key;
            // Sequence 0 marks the stream's start, so "everything after 0" is a valid resume point
            // even when no priming event was sent.
            let start = EventId {
                stream: *stream,
                seq: 0,
            };
            streams.store.append(sid, start, Bytes::new()).await;
            if priming {
                let mut buf = BytesMut::with_capacity(24);
                encode_priming(&mut buf, start);
                slot.deliver(Frame {
                    seq: Some(0),
                    bytes: buf.freeze(),
                });
            }
            let mut seq = 1;
            while let Some(event) = rx.recv().await {
                match event {
                    StreamEvent::Message(message) => {
                        let data = message.to_bytes();
                        let id = EventId {
                            stream: *stream,
                            seq,
                        };
                        streams.store.append(sid, id, data.clone()).await;
                        slot.stored.store(seq, Ordering::Release);
                        let mut buf = BytesMut::with_capacity(data.len() + 40);
                        encode_data(&mut buf, Some(id), &data);
                        slot.deliver(Frame {
                            seq: Some(seq),
                            bytes: buf.freeze(),
                        });
                        seq += 1;
                    }
                    StreamEvent::CloseConnection { retry } => {
                        let mut buf = BytesMut::with_capacity(24);
                        encode_retry(&mut buf, retry);
                        slot.deliver(Frame {
                            seq: None,
                            bytes: buf.freeze(),
                        });
                        slot.detach();
                    }
                }
            }
            let mut live = lock(&streams.live);
            if live.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                live.remove(&key);
            }
            drop(live);
            // Ends the attached connection's body: the stream is complete.
            slot.detach();
        });
        first
    }
}
