//! `tracing` spans for MCP traffic: one per HTTP request ([`McpTraceLayer`]) and one per
//! JSON-RPC request (opened by [`McpEndpoint`](crate::endpoint::McpEndpoint) around the
//! handler, always: a span nobody listens to costs one atomic load).
//!
//! Both spans have the target [`TARGET`] and level DEBUG, so one filter directive keeps or drops
//! them (`mcp_tower_http::trace=debug` / `=off`), and a subscriber logging at `info` does not
//! pay for them (with a formatting subscriber, two spans a request cost about half the server's
//! CPU per request at `info`); an exporter gives them a filter of its own. Field names follow the OpenTelemetry semantic
//! conventions for HTTP and MCP, and `otel.name`/`otel.kind`/`otel.status_code` are read by
//! `tracing-opentelemetry`, so the spans export as they are:
//!
//! | span `http.request` (server) | span `mcp.request` (server, child of the first) |
//! |---|---|
//! | `otel.name`: `POST /mcp` | `otel.name`: `tools/call echo` (method and tool, prompt or resource) |
//! | `http.request.method`, `url.path` (no query), `network.protocol.version` | `mcp.method.name`, `jsonrpc.request.id`, `mcp.protocol.version` |
//! | `mcp.session.id` (request header, else the one `initialize` got) | `mcp.session.id` |
//! | `enduser.id`: the [`Principal`]'s subject, recorded by the auth layer | `enduser.id` |
//! | `http.response.status_code`; `error.type` on 5xx | `gen_ai.tool.name`, `gen_ai.prompt.name` or `mcp.resource.uri` |
//! | `rpc.response.status_code`: the JSON-RPC code of a rejection | `rpc.response.status_code` and `error.type`: the JSON-RPC error code; `error.type = tool_error` for a result with `isError: true` |
//!
//! Nothing else from the request goes in: no header but `Mcp-Session-Id`, no query string,
//! no body, no arguments or results, so no credential (`Authorization`, `X-API-Key`, cookies,
//! tokens in a query) can reach a span.
//!
//! The HTTP span ends with the response head: a streamed body (SSE) is not inside it, while a
//! JSON-RPC span lasts as long as its handler, streamed answers and tasks included.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::trace::McpTraceLayer;
//! use mcp_tower_http::{McpStack, SessionContext, everything::EverythingServer};
//! use tower::Layer;
//!
//! let mcp = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new()).into_service();
//! // Outermost, so rejections (401, 403, 413, ...) are traced too.
//! let traced = McpTraceLayer::new().layer(mcp);
//! # let _ = traced;
//! ```

use crate::error::TransportError;
use crate::jsonrpc::{Message, Request};
use crate::principal::Principal;
use crate::protocol::ProtocolVersion;
use crate::session::{MCP_SESSION_ID, SessionId};
use crate::sse::Outgoing;
use http::{Response, Version};
use pin_project_lite::pin_project;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tower::{Layer, Service};
use tracing::Span;
use tracing::field::{Empty, display};

/// The target of every span of this module.
pub const TARGET: &str = "mcp_tower_http::trace";

/// A session id longer than this is not recorded (real ones are 36 characters).
const MAX_SESSION_ID: usize = 128;

/// Opens a span per HTTP request; see the [module docs](crate::trace).
#[derive(Clone, Copy, Debug, Default)]
pub struct McpTraceLayer {
    _private: (),
}

impl McpTraceLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for McpTraceLayer {
    type Service = McpTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpTrace { inner }
    }
}

/// The service of [`McpTraceLayer`].
#[derive(Clone, Debug)]
pub struct McpTrace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for McpTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let span = http_span(&req);
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            span,
            start: Instant::now(),
        }
    }
}

pin_project! {
    /// The response future of [`McpTrace`]: polls the inner future inside the span and records
    /// the answer's status.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        start: Instant,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let output = ready!(this.inner.poll(cx));
        if let Ok(response) = &output
            && !this.span.is_disabled()
        {
            record_http_response(this.span, response);
            tracing::debug!(
                target: TARGET,
                status = response.status().as_u16(),
                latency_us = u64::try_from(this.start.elapsed().as_micros()).unwrap_or(u64::MAX),
                "answered"
            );
        }
        Poll::Ready(output)
    }
}

fn http_span<B>(req: &http::Request<B>) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        "http.request",
        otel.name = %format_args!("{} {}", req.method(), req.uri().path()),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        network.protocol.version = protocol_version(req.version()),
        http.response.status_code = Empty,
        mcp.session.id = Empty,
        enduser.id = Empty,
        rpc.response.status_code = Empty,
        error.type = Empty,
    );
    if !span.is_disabled()
        && let Some(id) = req.headers().get(MCP_SESSION_ID)
        && let Ok(id) = id.to_str()
        && id.len() <= MAX_SESSION_ID
    {
        span.record("mcp.session.id", id);
    }
    span
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

fn record_http_response<B>(span: &Span, response: &Response<B>) {
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("error.type", status.as_u16());
        span.record("otel.status_code", "error");
    }
    // `initialize` got its session id in the answer.
    if let Some(id) = response.headers().get(MCP_SESSION_ID)
        && let Ok(id) = id.to_str()
        && id.len() <= MAX_SESSION_ID
    {
        span.record("mcp.session.id", id);
    }
    if let Some(error) = response.extensions().get::<TransportError>() {
        span.record("rpc.response.status_code", display(error.kind().code()));
    }
}

/// Records the authenticated principal on the current span (the HTTP one, when
/// [`McpTraceLayer`] is outside the auth layer; a no-op on a span without the field).
#[cfg(feature = "auth")]
pub(crate) fn record_principal(principal: &Principal) {
    Span::current().record("enduser.id", &*principal.subject);
}

/// The span of one JSON-RPC request, a child of the current span.
pub(crate) fn request_span(
    request: &Request,
    session: Option<&SessionId>,
    principal: Option<&Principal>,
    version: ProtocolVersion,
) -> Span {
    // What the request acts on, by the MCP conventions' names.
    let param = |name| {
        request
            .params
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(Value::as_str)
    };
    let (tool, prompt, resource) = match request.method.as_str() {
        "tools/call" => (param("name"), None, None),
        "prompts/get" => (None, param("name"), None),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (None, None, param("uri"))
        }
        _ => (None, None, None),
    };
    let target = tool.or(prompt).or(resource);
    tracing::debug_span!(
        target: TARGET,
        "mcp.request",
        otel.name = %format_args!("{}{}{}", request.method, if target.is_some() { " " } else { "" }, target.unwrap_or("")),
        otel.kind = "server",
        otel.status_code = Empty,
        mcp.method.name = %request.method,
        jsonrpc.request.id = %request.id,
        mcp.protocol.version = version.as_str(),
        mcp.session.id = session.map(SessionId::as_str),
        enduser.id = principal.map(|p| &*p.subject),
        gen_ai.tool.name = tool,
        gen_ai.prompt.name = prompt,
        mcp.resource.uri = resource,
        rpc.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Records the outcome of a JSON-RPC request on its span (the error code, or `tool_error` for a
/// tool result with `isError: true`) and logs `answered` (debug) inside it.
pub(crate) fn record_answer(span: &Span, answer: &Message) {
    if span.is_disabled() {
        return;
    }
    match answer {
        Message::Error(error) => {
            let code = error.error.code;
            span.record("rpc.response.status_code", display(code));
            span.record("error.type", display(code));
            span.record("otel.status_code", "error");
        }
        Message::Response(response)
            if response.result.get("isError").and_then(Value::as_bool) == Some(true) =>
        {
            span.record("error.type", "tool_error");
            span.record("otel.status_code", "error");
        }
        _ => {}
    }
    span.in_scope(|| tracing::debug!(target: TARGET, "answered"));
}

/// Records the answer carried by an endpoint response, when it is not a stream: the last
/// message of a batch is the answer (notifications go first).
pub(crate) fn record_response<B>(span: &Span, response: &Response<B>) {
    if span.is_disabled() {
        return;
    }
    match response.extensions().get::<Outgoing>() {
        Some(Outgoing::One(message)) => record_answer(span, message),
        Some(Outgoing::Batch(messages)) => {
            if let Some(message) = messages.last() {
                record_answer(span, message);
            }
        }
        _ => {
            if let Some(error) = response.extensions().get::<TransportError>() {
                record_answer(span, &error.to_message());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{ErrorObject, Id};
    use std::sync::{Arc, Mutex};
    use tracing::Subscriber;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id as SpanId, Record};

    /// Records every span's fields as `name.field=value` strings.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<Vec<String>>>);

    struct Collect<'a>(&'a str, &'a Mutex<Vec<String>>);

    impl Visit for Collect<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let entry = format!("{}.{}={value:?}", self.0, field.name());
            self.1.lock().unwrap().push(entry);
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            let entry = format!("{}.{}={value}", self.0, field.name());
            self.1.lock().unwrap().push(entry);
        }
    }

    impl Subscriber for Fields {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> SpanId {
            span.record(&mut Collect(span.metadata().name(), &self.0));
            SpanId::from_u64(1)
        }
        fn record(&self, _: &SpanId, values: &Record<'_>) {
            values.record(&mut Collect("recorded", &self.0));
        }
        fn record_follows_from(&self, _: &SpanId, _: &SpanId) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &SpanId) {}
        fn exit(&self, _: &SpanId) {}
    }

    fn captured(f: impl FnOnce()) -> Vec<String> {
        let fields = Fields::default();
        tracing::subscriber::with_default(fields.clone(), f);
        fields.0.lock().unwrap().clone()
    }

    #[test]
    fn a_tool_call_span_names_the_tool_and_its_error_code() {
        let request = Request {
            id: Id::Number(7),
            method: "tools/call".into(),
            params: Some(serde_json::json!({ "name": "echo", "arguments": { "secret": "s3" } })),
        };
        let fields = captured(|| {
            let span = request_span(
                &request,
                None,
                Some(&Principal::new("alice")),
                ProtocolVersion::V2025_06_18,
            );
            let error = ErrorObject::invalid_params("nope");
            record_answer(&span, &Message::error(Some(Id::Number(7)), error));
        });
        for expected in [
            "mcp.request.otel.name=tools/call echo",
            "mcp.request.mcp.method.name=tools/call",
            "mcp.request.gen_ai.tool.name=echo",
            "mcp.request.enduser.id=alice",
            "mcp.request.jsonrpc.request.id=7",
            "recorded.rpc.response.status_code=-32602",
            "recorded.error.type=-32602",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} in {fields:?}"
            );
        }
        // Arguments are never recorded.
        assert!(!fields.iter().any(|f| f.contains("s3")), "{fields:?}");
    }

    #[test]
    fn an_http_span_keeps_the_session_id_and_no_other_header() {
        let req = http::Request::post("/mcp?token=t0ken")
            .header("mcp-session-id", "abc")
            .header("authorization", "Bearer t0ken")
            .body(())
            .unwrap();
        let fields = captured(|| {
            let span = http_span(&req);
            let response = TransportError::new(crate::TransportErrorKind::SessionNotFound)
                .into_response::<()>();
            record_http_response(&span, &response);
        });
        for expected in [
            "http.request.otel.name=POST /mcp",
            "http.request.url.path=/mcp",
            "recorded.mcp.session.id=abc",
            "recorded.http.response.status_code=404",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} in {fields:?}"
            );
        }
        assert!(!fields.iter().any(|f| f.contains("t0ken")), "{fields:?}");
    }
}
