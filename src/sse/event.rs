use crate::jsonrpc::Message;
use crate::session::SessionId;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::future::Future;
use std::str::FromStr;

/// An SSE event id: `<stream>/<seq>`.
///
/// Ids are unique across all streams of a session and name the stream they belong to, so a
/// `Last-Event-ID` maps straight to its stream and position without a search. Stream `0` is the
/// standalone GET stream; POST streams count up from `1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    /// The stream within the session.
    pub stream: u64,
    /// The position within the stream, from `0`.
    pub seq: u64,
}

impl EventId {
    /// The standalone GET stream's number.
    pub const STANDALONE_STREAM: u64 = 0;
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream, self.seq)
    }
}

/// A `Last-Event-ID` that is not of the form `<stream>/<seq>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidEventId;

impl fmt::Display for InvalidEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid event id")
    }
}

impl std::error::Error for InvalidEventId {}

impl FromStr for EventId {
    type Err = InvalidEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (stream, seq) = s.split_once('/').ok_or(InvalidEventId)?;
        Ok(EventId {
            stream: stream.parse().map_err(|_| InvalidEventId)?,
            seq: seq.parse().map_err(|_| InvalidEventId)?,
        })
    }
}

/// Stores the events of SSE streams so a client can resume with `Last-Event-ID`.
///
/// The store is asynchronous so an external one (Redis, a database) can implement it. Events
/// are the exact bytes of the `data:` field as sent, so a replay re-sends them untouched.
pub trait EventStore: Send + Sync + 'static {
    /// Records an event as it is sent.
    fn append(
        &self,
        session: &SessionId,
        id: EventId,
        data: Bytes,
    ) -> impl Future<Output = ()> + Send;

    /// The events of `after.stream` that follow `after`, in order; `None` if `after` is unknown
    /// or was evicted (the client then gets a 4xx and starts over). `<stream>/0` is the start
    /// of a stream, which is not always stored: it is known when the stream's first stored
    /// event is `<stream>/1`.
    fn replay_after(
        &self,
        session: &SessionId,
        after: EventId,
    ) -> impl Future<Output = Option<Vec<(EventId, Bytes)>>> + Send;

    /// Frees every event of a session that ended.
    fn forget_session(&self, session: &SessionId) -> impl Future<Output = ()> + Send;

    /// Tells the store that the events of `id.stream` up to `id` were delivered: the stream
    /// ended with its client reading, or was answered whole. A client needs them again only if
    /// it lost the tail of what it was sent, so a bounded store may keep just a window of such
    /// events and evict them before those a stalled or disconnected client has yet to resume.
    /// Called once per stream; the default ignores it.
    fn delivered(&self, session: &SessionId, id: EventId) -> impl Future<Output = ()> + Send {
        let _ = (session, id);
        std::future::ready(())
    }
}

/// The keep-alive comment.
pub(crate) const KEEP_ALIVE: &[u8] = b": keepalive\n\n";

/// Appends one `event: message` frame, serializing the message straight into the buffer.
pub(crate) fn encode_message(buf: &mut BytesMut, id: Option<EventId>, message: &Message) {
    put_event_head(buf, id);
    // Compact JSON has no raw newlines, so the message is one `data:` line. Writing into a
    // BytesMut cannot fail.
    let _ = serde_json::to_writer(buf.writer(), message);
    buf.put_slice(b"\n\n");
}

/// Appends one `event: message` frame around already-serialized JSON.
pub(crate) fn encode_data(buf: &mut BytesMut, id: Option<EventId>, json: &[u8]) {
    put_event_head(buf, id);
    buf.put_slice(json);
    buf.put_slice(b"\n\n");
}

/// The start of an `event: message` frame, up to its `data: `.
fn put_event_head(buf: &mut BytesMut, id: Option<EventId>) {
    buf.put_slice(b"event: message\n");
    if let Some(id) = id {
        put_id(buf, id);
    }
    buf.put_slice(b"data: ");
}

/// Appends a `retry:` field, sent before the server closes a connection it expects the client to
/// resume (2025-11-25 polling).
pub(crate) fn encode_retry(buf: &mut BytesMut, retry: std::time::Duration) {
    use std::fmt::Write;
    let _ = write!(WriteBuf(buf), "retry: {}\n\n", retry.as_millis());
}

/// Appends a priming event: an id and empty data, so the client has a resume point at once.
pub(crate) fn encode_priming(buf: &mut BytesMut, id: EventId) {
    put_id(buf, id);
    buf.put_slice(b"data: \n\n");
}

fn put_id(buf: &mut BytesMut, id: EventId) {
    use std::fmt::Write;
    buf.put_slice(b"id: ");
    let _ = write!(WriteBuf(buf), "{id}");
    buf.put_slice(b"\n");
}

struct WriteBuf<'a>(&'a mut BytesMut);

impl fmt::Write for WriteBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// Serializes a batch of messages as a JSON array.
pub(crate) fn encode_json_batch(messages: &[Message]) -> Bytes {
    serde_json::to_vec(messages)
        .map(Bytes::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Id;
    use serde_json::json;

    #[test]
    fn event_ids_round_trip_and_reject_garbage() {
        let id = EventId { stream: 3, seq: 14 };
        assert_eq!(id.to_string(), "3/14");
        assert_eq!("3/14".parse::<EventId>(), Ok(id));
        for bad in ["", "3", "3/", "/1", "a/1", "1/b", "1/2/3"] {
            assert_eq!(bad.parse::<EventId>(), Err(InvalidEventId), "{bad}");
        }
    }

    #[test]
    fn frames() {
        let mut buf = BytesMut::new();
        encode_priming(&mut buf, EventId { stream: 1, seq: 0 });
        encode_message(
            &mut buf,
            Some(EventId { stream: 1, seq: 1 }),
            &Message::result(Id::Number(1), json!({"a":"x\ny"})),
        );
        assert_eq!(
            &buf[..],
            &b"id: 1/0\ndata: \n\nevent: message\nid: 1/1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"a\":\"x\\ny\"}}\n\n"[..]
        );
    }
}
