//! [`ClusterLayer`]: sends a request for another instance's session to that instance, adopts
//! sessions whose instance is gone, and publishes the sessions created here.

use super::{Cluster, FORWARDED_HEADER, StoredRecord};
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::{Id, Payload};
use crate::jsonrpc_body::ParsedBody;
use crate::modern::RequestMeta;
use crate::principal::Principal;
use crate::session::{MCP_SESSION_ID, SessionRegistry};
use crate::sse::ResponseBody;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

/// Routes requests across the instances of a [`Cluster`]; see the [module docs](super).
///
/// Its place is after the era decision ([`ModernLayer`](crate::modern::ModernLayer): 2026-07-28
/// requests have no session and pass through) and before the session layer, whose registry it
/// is given. [`McpStack::cluster`](crate::McpStack::cluster) puts it there.
#[derive(Clone, Debug)]
pub struct ClusterLayer {
    state: Option<State>,
}

#[derive(Clone, Debug)]
struct State {
    cluster: Cluster,
    registry: Arc<SessionRegistry>,
}

impl ClusterLayer {
    /// The layer of `cluster` in front of the session layer owning `registry`.
    pub fn new(cluster: Cluster, registry: Arc<SessionRegistry>) -> Self {
        Self {
            state: Some(State { cluster, registry }),
        }
    }

    /// A layer that passes every request through (a stack without a cluster).
    pub fn disabled() -> Self {
        Self { state: None }
    }
}

impl<S> Layer<S> for ClusterLayer {
    type Service = ClusterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClusterService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service made by [`ClusterLayer`].
#[derive(Clone, Debug)]
pub struct ClusterService<S> {
    inner: S,
    state: Option<State>,
}

impl<S> ClusterService<S> {
    crate::macros::define_inner_service_accessors!();
}

type BoxFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, Infallible>> + Send>>;

pin_project! {
    /// Response future of [`ClusterService`]: the inner service's, or the cluster's work.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Cluster { future: BoxFuture<B> },
    }
}

impl<F, B> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<ResponseBody<B>>, Infallible>>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Cluster { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, B> Service<Request<ParsedBody>> for ClusterService<S>
where
    S: Service<Request<ParsedBody>, Response = Response<ResponseBody<B>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResponseBody<B>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ParsedBody>) -> Self::Future {
        let inner = |this: &mut Self, req| ResponseFuture {
            kind: Kind::Inner {
                future: this.inner.call(req),
            },
        };
        let Some(state) = &self.state else {
            return inner(self, req);
        };
        // The hot path: a session held here (found by the lookup in front) costs no Redis round
        // trip, no allocation, not even a clone of this layer's state.
        if crate::session::was_looked_up(&req) && !req.headers().contains_key(FORWARDED_HEADER) {
            return inner(self, req);
        }
        let state = state.clone();
        // 2026-07-28 requests have no session: served where they land, except what must reach
        // the handler of a running task.
        if req.extensions().get::<Arc<RequestMeta>>().is_some() {
            let Some(task) = task_for_runner(&req) else {
                return inner(self, req);
            };
            if req.headers().contains_key(FORWARDED_HEADER) {
                // Sent here by another instance: this is the runner (or it is gone).
                let valid = req.headers_mut().remove(FORWARDED_HEADER).is_some_and(|v| {
                    bool::from(v.as_bytes().ct_eq(state.cluster.secret().as_bytes()))
                });
                if !valid {
                    return ready(forbidden(&req));
                }
                return inner(self, req);
            }
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            return boxed(to_task_runner(state, service, req, task));
        }
        let forwarded = match req.headers_mut().remove(FORWARDED_HEADER) {
            None => false,
            Some(value)
                if bool::from(value.as_bytes().ct_eq(state.cluster.secret().as_bytes())) =>
            {
                true
            }
            Some(_) => return ready(forbidden(&req)),
        };
        let session_id = req
            .headers()
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(id) = session_id else {
            // No session yet: an `initialize` answered here makes this instance its owner.
            if req.method() != http::Method::POST {
                return inner(self, req);
            }
            let future = self.inner.call(req);
            return boxed(publish(state, future));
        };
        // Held here (perhaps for another principal, which the session layer refuses).
        if crate::session::was_looked_up(&req) || state.registry.get(&id).is_some() {
            return inner(self, req);
        }
        // Take the service that is ready; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        boxed(route(state, service, req, id, forwarded))
    }
}

fn ready<F, B: Send + 'static>(response: Response<ResponseBody<B>>) -> ResponseFuture<F, B> {
    boxed(async move { response })
}

fn boxed<F, B>(
    future: impl Future<Output = Response<ResponseBody<B>>> + Send + 'static,
) -> ResponseFuture<F, B> {
    ResponseFuture {
        kind: Kind::Cluster {
            future: Box::pin(async move { Ok(future.await) }),
        },
    }
}

fn forbidden<B>(req: &Request<ParsedBody>) -> Response<ResponseBody<B>> {
    tracing::warn!("refused a request with a wrong cluster secret");
    TransportError::new(TransportErrorKind::Forbidden)
        .with_message("Forbidden: bad cluster credentials")
        .with_id(request_id(req))
        .into_response()
}

/// The task id of a `tasks/update` or `tasks/cancel`: requests the task's handler must see.
fn task_for_runner(req: &Request<ParsedBody>) -> Option<String> {
    match req.extensions().get::<Payload>()? {
        Payload::Single(crate::jsonrpc::Message::Request(request))
            if matches!(request.method.as_str(), "tasks/update" | "tasks/cancel") =>
        {
            let id = request.params.as_ref()?.get("taskId")?.as_str()?;
            Some(id.to_owned())
        }
        _ => None,
    }
}

/// Sends a `tasks/update` or `tasks/cancel` to the instance running the task. A task this
/// instance runs, an unknown one or one whose runner is gone is answered here.
async fn to_task_runner<S, B>(
    state: State,
    mut service: S,
    req: Request<ParsedBody>,
    task: String,
) -> Response<ResponseBody<B>>
where
    S: Service<Request<ParsedBody>, Response = Response<ResponseBody<B>>, Error = Infallible>,
{
    let runner = match state.cluster.read_task(&task).await {
        Ok(stored) => stored.map(|s| s.runner),
        Err(error) => return unavailable(request_id(&req), &error),
    };
    if let Some(runner) = runner.filter(|r| r != state.cluster.advertised_address()) {
        match forward(&state.cluster, &runner, &req).await {
            Ok(response) => return response,
            Err(error) => tracing::info!(task, %runner, %error, "task runner unreachable"),
        }
    }
    call(&mut service, req).await
}

fn request_id<T>(req: &Request<T>) -> Option<Id> {
    req.extensions()
        .get::<Payload>()
        .and_then(Payload::first_request_id)
        .cloned()
}

fn unavailable<B>(id: Option<Id>, error: &redis::RedisError) -> Response<ResponseBody<B>> {
    tracing::warn!(%error, "Redis unreachable");
    TransportError::new(TransportErrorKind::Unavailable)
        .with_message("Service unavailable: the cluster's session store cannot be reached")
        .with_id(id)
        .into_response()
}

/// Writes the record of a session this instance just created; a session Redis does not know
/// could not be served by the other instances, so it is ended and the client told to retry.
async fn publish<F, B>(state: State, future: F) -> Response<ResponseBody<B>>
where
    F: Future<Output = Result<Response<ResponseBody<B>>, Infallible>>,
{
    let response = match future.await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if !response.status().is_success() {
        return response;
    }
    state.cluster.start_refresher(&state.registry);
    let Some(session) = response
        .headers()
        .get(MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|id| state.registry.get(id))
    else {
        return response;
    };
    match state.cluster.publish(&session).await {
        Ok(()) => response,
        Err(error) => {
            state.registry.terminate(session.id()).await;
            unavailable(None, &error)
        }
    }
}

/// A request for a session this instance does not hold.
async fn route<S, B>(
    state: State,
    mut service: S,
    req: Request<ParsedBody>,
    id: String,
    forwarded: bool,
) -> Response<ResponseBody<B>>
where
    S: Service<Request<ParsedBody>, Response = Response<ResponseBody<B>>, Error = Infallible>,
{
    let request_id = request_id(&req);
    let stored = match state.cluster.read(&id).await {
        Ok(stored) => stored,
        Err(error) => return unavailable(request_id, &error),
    };
    let subject = req.extensions().get::<Principal>().map(|p| &*p.subject);
    // Unknown, or another principal's: the session layer answers 404 as for a local session.
    let Some(stored) = stored.filter(|s| s.record.principal.as_deref() == subject) else {
        return call(&mut service, req).await;
    };
    let record = &stored.record;
    if record.instance == state.cluster.instance_id() {
        // Ours by the record, yet not held: it ended here a moment ago.
        return call(&mut service, req).await;
    }
    // A forwarded request reaches the owner's address: if the session is not here, the owner
    // that had this address is gone (this is a restarted instance).
    let owner_gone = forwarded || record.owner == state.cluster.advertised_address();
    if !owner_gone {
        match forward(&state.cluster, &record.owner, &req).await {
            Ok(response) => return response,
            Err(error) => {
                tracing::info!(session = %id, owner = %record.owner, %error, "session owner unreachable");
            }
        }
    }
    take_over(state, service, req, &id, stored).await
}

/// The owner of `stored` is gone: adopt the session if its server can be rebuilt, otherwise
/// drop its record so the client gets 404 and starts over.
async fn take_over<S, B>(
    state: State,
    mut service: S,
    req: Request<ParsedBody>,
    id: &str,
    stored: StoredRecord,
) -> Response<ResponseBody<B>>
where
    S: Service<Request<ParsedBody>, Response = Response<ResponseBody<B>>, Error = Infallible>,
{
    let request_id = request_id(&req);
    if !stored.record.rebuildable {
        state.cluster.forget(id).await;
        return call(&mut service, req).await;
    }
    let claimed = match state.cluster.claim(id, &stored).await {
        Ok(claimed) => claimed,
        Err(error) => return unavailable(request_id, &error),
    };
    let Some(record) = claimed else {
        // Another instance adopted it first: go there.
        return match state.cluster.read(id).await {
            Ok(Some(now)) if now.record.instance != state.cluster.instance_id() => {
                match forward(&state.cluster, &now.record.owner, &req).await {
                    Ok(response) => response,
                    Err(_) => call(&mut service, req).await,
                }
            }
            Ok(_) => call(&mut service, req).await,
            Err(error) => unavailable(request_id, &error),
        };
    };
    let Some(session) = state.cluster.adopted_session(id, &record) else {
        state.cluster.forget(id).await;
        return call(&mut service, req).await;
    };
    let Some(session) = state.registry.adopt(session) else {
        return TransportError::too_many_sessions(crate::session::DEFAULT_RETRY_AFTER_SECS)
            .with_id(request_id)
            .into_response();
    };
    state.cluster.watch_adopted(&session);
    state.cluster.start_refresher(&state.registry);
    tracing::info!(session = %id, "adopted a session whose instance is gone");
    call(&mut service, req).await
}

async fn call<S, B>(service: &mut S, req: Request<ParsedBody>) -> Response<ResponseBody<B>>
where
    S: Service<Request<ParsedBody>, Response = Response<ResponseBody<B>>, Error = Infallible>,
{
    match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
        Ok(()) => {}
        Err(never) => match never {},
    }
    match service.call(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Headers that describe one hop, never passed on.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

/// Sends `req` to the instance at `owner` and streams its answer back. An error means the owner
/// could not be reached or did not answer.
async fn forward<B>(
    cluster: &Cluster,
    owner: &str,
    req: &Request<ParsedBody>,
) -> Result<Response<ResponseBody<B>>, Box<dyn std::error::Error + Send + Sync>> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = format!("http://{owner}{path}").parse()?;
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(uri)
        .body(Full::new(req.body().clone().into_bytes()))?;
    copy_headers(req.headers(), out.headers_mut());
    out.headers_mut().insert(
        HeaderName::from_static(FORWARDED_HEADER),
        HeaderValue::from_str(cluster.secret())?,
    );
    let response = cluster.client().request(out).await?;
    let (mut parts, body) = response.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        // This instance's CORS layer sets its own on the way out.
        if !is_hop_by_hop(name) && !name.as_str().starts_with("access-control-") {
            headers.append(name.clone(), value.clone());
        }
    }
    parts.headers = headers;
    let body = ForwardedBody { inner: body }.boxed_unsync();
    Ok(Response::from_parts(parts, ResponseBody::forwarded(body)))
}

/// Copies a request's end-to-end headers, `Host` included: the owner checks it against its
/// allowed hosts like any request's.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

pin_project! {
    /// The owner's answer as it arrives. If the owner goes away mid-stream, the stream just
    /// ends: its client resumes with `Last-Event-ID` elsewhere.
    struct ForwardedBody {
        #[pin]
        inner: hyper::body::Incoming,
    }
}

impl Body for ForwardedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match std::task::ready!(self.project().inner.poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Err(error)) => {
                tracing::debug!(%error, "forwarded stream ended by its instance");
                Poll::Ready(None)
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_request_keeps_host_and_end_to_end_headers_only() {
        let mut from = HeaderMap::new();
        for (name, value) in [
            ("host", "mcp.example.com"),
            ("authorization", "Bearer t"),
            ("mcp-session-id", "s"),
            ("connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("te", "trailers"),
        ] {
            from.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        let mut names: Vec<&str> = to.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "host", "mcp-session-id"]);
        assert_eq!(to["host"], "mcp.example.com");
    }
}
