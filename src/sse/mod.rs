//! Server-Sent Events framing of MCP responses, and the standalone GET stream.
//!
//! The endpoint below answers a POST with an [`Outgoing`] value in the response extensions: the
//! complete answer, or a channel of messages (notifications and requests to the client, then the
//! response). [`SseLayer`] turns it into the HTTP body:
//!
//! - SSE mode (default): `text/event-stream` with `event: message` frames, event ids
//!   `<stream>/<seq>` (see [`EventId`]), a priming event (id, empty data) first for clients at
//!   2025-11-25 or later, `: keepalive` comments (default every 15 s),
//!   `Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`.
//! - JSON mode ([`SseLayer::json_response`]): one `application/json` body.
//!
//! # Slow clients and backpressure
//!
//! A client that reads its stream gets every event, however fast the handler produces them:
//!
//! - Each connection has a bounded queue ([`SseLayer::connection_capacity`], 64 frames). While
//!   it is full the stream waits, so the handler's own bounded queue fills and the handler waits
//!   in `Peer::send` / `Peer::notify` (a stdio child's output waits likewise). Memory stays
//!   bounded whatever the handler produces.
//! - With an event store, a connection that takes nothing for [`SseLayer::stall_timeout`]
//!   (default 30 s) is closed; its client resumes with `Last-Event-ID`. While it is away the
//!   stream stores up to a queue's worth of further events, then holds the handler back until
//!   the client returns, at most the stall timeout again; after that the stream goes on without
//!   waiting, and its events are kept within the session's store quota (newest kept).
//! - [`InMemoryEventStore`] keeps a byte quota per session beside its global bound: a session
//!   gives up its own events (delivered ones first), and when the store is full the sessions
//!   holding the most give way, so one session's traffic cannot push out another's events. The
//!   events of a live stream stay pending (its client may have them unread in socket buffers);
//!   once a stream ends with its client reading they count as delivered, of which a session
//!   keeps the last 1000.
//! - Without an event store nothing can be resumed: a slow reader makes the handler wait, with
//!   no stall timeout (connection-level timeouts still apply).
//!
//! It tells the endpoint which mode to produce through a [`ResponseMode`] request extension,
//! checks `Accept` (406 unless a POST accepts both `application/json` and `text/event-stream`, or
//! a GET accepts `text/event-stream`), and serves the standalone GET stream of a session (one
//! per session; a second gets 409).
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc::{Id, Message};
//! use mcp_tower_http::sse::{Outgoing, SseLayer};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(SseLayer::new())
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         let mut response = Response::new(Full::<Bytes>::default());
//!         let answer = Message::result(Id::Number(1), serde_json::json!({}));
//!         response.extensions_mut().insert(Outgoing::One(answer));
//!         Ok::<_, Infallible>(response)
//!     });
//!
//! let request = Request::post("/mcp")
//!     .header("accept", "application/json, text/event-stream")
//!     .body(Full::<Bytes>::default())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&body[..], b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n");
//! # }
//! ```

mod body;
mod event;
mod future;
mod layer;
mod pump;
mod store;

pub use self::body::ResponseBody;
#[cfg(feature = "legacy-sse")]
pub(crate) use self::body::{EventStream, Source};
pub use self::event::{EventId, EventStore, InvalidEventId};
pub use self::future::ResponseFuture;
#[cfg(feature = "legacy-sse")]
pub(crate) use self::layer::sse_headers;
pub use self::layer::{SseLayer, SseService};
pub use self::pump::DEFAULT_STALL_TIMEOUT;
pub use self::store::{
    DEFAULT_MAX_EVENTS_PER_SESSION, DEFAULT_MAX_SESSION_BYTES, DEFAULT_MAX_TOTAL_BYTES,
    EVENT_OVERHEAD, InMemoryEventStore,
};

use crate::jsonrpc::Message;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The default interval of keep-alive comments.
pub const DEFAULT_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// How the endpoint should shape its answer, decided by [`SseLayer`] and placed in the request
/// extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// Complete the answer before responding; it becomes one JSON body.
    Json,
    /// Stream messages as they are produced.
    Sse,
}

/// An endpoint's answer to a POST, placed in the response extensions for [`SseLayer`].
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// One complete message.
    One(Message),
    /// The answers to a batch.
    Batch(Vec<Message>),
    /// Messages as the handler produces them.
    Stream(MessageStream),
}

/// What a handler puts on its response stream.
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// A message for the client.
    Message(Message),
    /// Close the client's connection after telling it to reconnect in `retry` (SSE polling,
    /// 2025-11-25). The stream goes on: the client resumes with `Last-Event-ID`. Ignored when no
    /// event store is configured, since the rest of the stream could not be replayed.
    CloseConnection {
        /// How long the client should wait before reconnecting.
        retry: std::time::Duration,
    },
}

/// The receiving end of a response's messages; the stream ends when every sender is dropped.
///
/// Extensions must be `Clone`, so the receiver sits in a shared slot that the framing layer
/// takes it from once.
#[derive(Clone, Debug)]
pub struct MessageStream(Arc<Mutex<Option<mpsc::Receiver<StreamEvent>>>>);

impl MessageStream {
    /// Wraps a receiver.
    pub fn new(rx: mpsc::Receiver<StreamEvent>) -> Self {
        Self(Arc::new(Mutex::new(Some(rx))))
    }

    /// Takes the receiver; `None` if it was taken already.
    pub fn take(&self) -> Option<mpsc::Receiver<StreamEvent>> {
        crate::sync::lock(&self.0).take()
    }
}

#[cfg(test)]
mod tests;
