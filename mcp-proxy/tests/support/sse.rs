//! The one SSE parser of these tests, for whole bodies ([`sse_messages`]) and open streams
//! ([`EventStream`]).

use super::HTTP_TIMEOUT;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The JSON-RPC message it carries: an `event: message` (or unnamed) event with data.
    pub fn message(&self) -> Option<Value> {
        if self.event.as_deref().unwrap_or("message") != "message" || self.data.is_empty() {
            return None;
        }
        Some(
            serde_json::from_str(&self.data)
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data)),
        )
    }
}

/// Takes the complete events off the front of `buf` (CRLF or LF line ends), leaving a partial
/// one; comments (keep-alives) and blocks without a field are skipped.
pub fn sse_events(buf: &mut String) -> Vec<SseEvent> {
    if buf.contains('\r') {
        *buf = buf.replace("\r\n", "\n");
    }
    let mut events = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let mut event = SseEvent::default();
        let mut data = Vec::new();
        let mut has_field = false;
        for line in block.lines() {
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            has_field = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = Some(value.to_owned()),
                "id" => event.id = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
        if has_field {
            event.data = data.join("\n");
            events.push(event);
        }
    }
    events
}

/// The JSON-RPC messages of a complete SSE body.
pub fn sse_messages(body: &str) -> Vec<Value> {
    let mut buf = body.to_owned();
    sse_events(&mut buf)
        .iter()
        .filter_map(SseEvent::message)
        .collect()
}

/// An open SSE response, read event by event. Dropping it closes the connection.
pub struct EventStream {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    frames: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, String>>,
    buf: String,
    ready: std::collections::VecDeque<SseEvent>,
    reader: tokio::task::JoinHandle<()>,
    /// `Some(Ok(()))` after a clean end of the body, `Some(Err(_))` after a body error.
    pub ended: Option<Result<(), String>>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl EventStream {
    /// Sends a GET (`Accept: text/event-stream`) and returns once the response head has arrived.
    pub async fn open(url: &str) -> EventStream {
        Self::request(
            Method::GET,
            url,
            &[("accept", "text/event-stream")],
            Bytes::new(),
        )
        .await
    }

    /// Sends any request and returns once the response head has arrived (e.g. a POST answered
    /// with a stream).
    pub async fn request(
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> EventStream {
        let mut request = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("request");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let response = tokio::time::timeout(HTTP_TIMEOUT, client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {url}: no answer within {HTTP_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
        let status = response.status();
        let (parts, mut body) = response.into_parts();
        let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data()
                            && tx.send(Ok(data)).is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:?}")));
                        return;
                    }
                }
            }
        });
        EventStream {
            status,
            headers: parts.headers,
            frames,
            buf: String::new(),
            ready: Default::default(),
            reader,
            ended: None,
        }
    }

    /// The next event: `None` once the body has ended (see [`EventStream::ended`]); panics if
    /// nothing arrives within `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            self.ready.extend(sse_events(&mut self.buf));
            if !self.ready.is_empty() {
                continue;
            }
            if self.ended.is_some() {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Err(_) => panic!("no SSE event within {limit:?} (buffered: {:?})", self.buf),
                Ok(Some(Ok(data))) => self.buf.push_str(&String::from_utf8_lossy(&data)),
                Ok(Some(Err(e))) => self.ended = Some(Err(e)),
                Ok(None) => self.ended = Some(Ok(())),
            }
        }
    }

    /// The next JSON-RPC message (`event: message`), skipping other events; `None` at the end.
    pub async fn next_message(&mut self, limit: Duration) -> Option<Value> {
        loop {
            if let Some(message) = self.next_event(limit).await?.message() {
                return Some(message);
            }
        }
    }
}
