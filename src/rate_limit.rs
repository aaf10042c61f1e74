//! [`PrincipalLimitLayer`]: a request-rate limit and a concurrent-request limit per caller.
//!
//! The caller is the authenticated [`Principal`] (its subject), or, for a request without one,
//! the client's IP address from a [`ClientAddr`] extension (which the server inserts per
//! connection); a request with neither shares one anonymous allowance. Over a limit the request
//! is refused before its body is read: `429 Too Many Requests` with `Retry-After` and a
//! [`TransportError`] of kind [`TooManyRequests`](crate::TransportErrorKind::TooManyRequests) in the
//! extensions, which [`JsonRpcErrorLayer`](crate::error_map::JsonRpcErrorLayer) renders as a
//! JSON-RPC error body.
//!
//! - **Rate**: GCRA (a token bucket without a timer): `per_second` requests a second on
//!   average, `burst` at once. Every request counts, `GET` streams included.
//! - **Concurrency**: requests whose response has not ended, per caller. An SSE answer counts
//!   until its last event; standalone `GET` streams are not counted (they last as long as
//!   their session, which `max_sessions` bounds), nor, when the parsed
//!   [`Payload`] is known, a POST carrying only responses or notifications (the
//!   client's answer to an elicitation that a request in flight waits for must get through).
//!
//! The table of callers is bounded ([`max_keys`](PrincipalLimitLayer::max_keys), default
//! 10,000): when it is full, callers whose bucket is full again and who have nothing in flight
//! are forgotten (they lose nothing: a fresh entry is the same). If every entry is still busy, a
//! new caller is refused with 429 until one frees up.
//!
//! [`McpStack::principal_limits`](crate::McpStack::principal_limits) puts it in a stack: the
//! rate is checked right after authentication, before the body is read (a cheap refusal), the
//! concurrency once the body is parsed; both share one table.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::rate_limit::PrincipalLimitLayer;
//! use mcp_tower_http::Principal;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(PrincipalLimitLayer::new().rate(1.0, 2).max_concurrent_requests(8))
//!     .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let request = || {
//!     let mut request = Request::post("/mcp").body(()).unwrap();
//!     request.extensions_mut().insert(Principal::new("alice"));
//!     request
//! };
//! // A burst of two, then one a second.
//! assert_eq!(service.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(service.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! let refused = service.oneshot(request()).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! # }
//! ```

use crate::error::TransportError;
use crate::jsonrpc::Payload;
use crate::principal::Principal;
use bytes::Buf;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;

/// The default bound on the number of callers tracked at once.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// The client's socket address, as a server inserts it into request extensions (like axum's
/// `ConnectInfo`): the key of [`PrincipalLimitLayer`] for unauthenticated requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Limits each caller's request rate and concurrent requests; see the
/// [module docs](crate::rate_limit).
///
/// Clones share one table: build the layer once and apply it wherever the same callers should
/// share an allowance.
#[derive(Clone, Debug)]
#[must_use]
pub struct PrincipalLimitLayer {
    settings: Settings,
    limiter: Option<Arc<Limiter>>,
    phase: Phase,
}

/// Which limits one instance enforces: [`McpStack`](crate::McpStack) checks the rate before the
/// body is read and the concurrency after it is parsed, with one shared table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Both,
    Rate,
    Concurrency,
}

#[derive(Clone, Copy, Debug, Default)]
struct Settings {
    /// Emission interval and burst tolerance (GCRA), when rate-limited.
    rate: Option<(Duration, Duration)>,
    max_concurrent: Option<usize>,
    max_keys: usize,
}

impl Default for PrincipalLimitLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PrincipalLimitLayer {
    /// No limits yet (every request passes until [`rate`](Self::rate) or
    /// [`max_concurrent_requests`](Self::max_concurrent_requests) sets one).
    pub fn new() -> Self {
        Self {
            settings: Settings {
                max_keys: DEFAULT_MAX_KEYS,
                ..Settings::default()
            },
            limiter: None,
            phase: Phase::Both,
        }
    }

    fn settings(&self) -> Settings {
        self.settings
    }

    fn with(settings: Settings) -> Self {
        let on = settings.rate.is_some() || settings.max_concurrent.is_some();
        Self {
            settings,
            limiter: on.then(|| {
                Arc::new(Limiter {
                    settings,
                    table: Mutex::new(Table::default()),
                })
            }),
            phase: Phase::Both,
        }
    }

    /// This layer checking only the rate (sharing the table); disabled without a rate.
    pub(crate) fn rate_only(&self) -> Self {
        Self {
            settings: self.settings,
            limiter: self.limiter.clone().filter(|l| l.settings.rate.is_some()),
            phase: Phase::Rate,
        }
    }

    /// This layer checking only the concurrency (sharing the table); disabled without a limit.
    pub(crate) fn concurrency_only(&self) -> Self {
        Self {
            settings: self.settings,
            limiter: self
                .limiter
                .clone()
                .filter(|l| l.settings.max_concurrent.is_some()),
            phase: Phase::Concurrency,
        }
    }

    /// At most `per_second` requests a second per caller on average, and `burst` (at least 1)
    /// at once. A non-positive or non-finite `per_second` removes the rate limit.
    pub fn rate(self, per_second: f64, burst: u32) -> Self {
        let mut settings = self.settings();
        settings.rate = (per_second.is_finite() && per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / per_second).ok())
            .flatten()
            .map(|interval| (interval, interval.saturating_mul(burst.max(1) - 1)));
        Self::with(settings)
    }

    /// At most `max` requests in flight per caller (a response counts until its body ends);
    /// `None` removes the limit.
    pub fn max_concurrent_requests(self, max: impl Into<Option<usize>>) -> Self {
        let mut settings = self.settings();
        settings.max_concurrent = max.into();
        Self::with(settings)
    }

    /// The most callers tracked at once (default [`DEFAULT_MAX_KEYS`], at least 1).
    pub fn max_keys(self, max: usize) -> Self {
        let mut settings = self.settings();
        settings.max_keys = max.max(1);
        Self::with(settings)
    }

    /// `true` when no limit is set (the layer passes everything through).
    pub fn is_disabled(&self) -> bool {
        self.limiter.is_none()
    }
}

impl<S> tower::Layer<S> for PrincipalLimitLayer {
    type Service = PrincipalLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PrincipalLimit {
            inner,
            limiter: self.limiter.clone(),
            phase: self.phase,
        }
    }
}

/// The service made by [`PrincipalLimitLayer`].
#[derive(Clone, Debug)]
pub struct PrincipalLimit<S> {
    inner: S,
    limiter: Option<Arc<Limiter>>,
    phase: Phase,
}

impl<S> PrincipalLimit<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for PrincipalLimit<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(limiter) = self
            .limiter
            .as_ref()
            .filter(|_| req.method() != Method::OPTIONS)
        else {
            return ResponseFuture::inner(self.inner.call(req), None);
        };
        let key = Key::of(&req);
        // GET streams last as long as their session; a POST of only responses or notifications
        // (e.g. the answer to an elicitation a request in flight waits for) is no request.
        let counted = self.phase != Phase::Rate
            && req.method() != Method::GET
            && req
                .extensions()
                .get::<Payload>()
                .is_none_or(|p| p.first_request_id().is_some());
        let rated = self.phase != Phase::Concurrency;
        if !rated && !counted {
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        match limiter.admit(key, rated, counted, Instant::now()) {
            Ok(guard) => ResponseFuture::inner(self.inner.call(req), guard),
            Err(refusal) => ResponseFuture::reject(refusal),
        }
    }
}

/// Who a request is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Principal(Arc<str>),
    Addr(IpAddr),
    Anonymous,
}

impl Key {
    fn of<B>(req: &Request<B>) -> Self {
        if let Some(principal) = req.extensions().get::<Principal>() {
            return Key::Principal(principal.subject.clone());
        }
        match req.extensions().get::<ClientAddr>() {
            Some(ClientAddr(addr)) => Key::Addr(addr.ip().to_canonical()),
            None => Key::Anonymous,
        }
    }
}

#[derive(Debug)]
struct Limiter {
    settings: Settings,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    /// No sweep can free an entry before this (the earliest bucket refill seen by the last
    /// sweep that freed nothing), unless a request ends first.
    next_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    /// GCRA's theoretical arrival time: the bucket is full again at `tat`.
    tat: Instant,
    in_flight: usize,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Rate(Duration),
    Concurrency,
    Full(Duration),
}

impl Refusal {
    fn into_error(self) -> TransportError {
        let secs = |d: Duration| {
            // Whole seconds, rounded up: retrying at once would only be refused again.
            let ceil = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            u32::try_from(ceil.max(1)).unwrap_or(u32::MAX)
        };
        let (secs, what) = match self {
            Refusal::Rate(wait) => (secs(wait), "request rate limit exceeded"),
            Refusal::Concurrency => (1, "too many concurrent requests"),
            Refusal::Full(wait) => (secs(wait), "too many clients"),
        };
        TransportError::too_many_requests(secs)
            .with_message(format!("Too Many Requests: {what}"))
            .with_data(serde_json::json!({ "retryAfter": secs }))
    }
}

impl Limiter {
    fn admit(
        self: &Arc<Self>,
        key: Key,
        rated: bool,
        counted: bool,
        now: Instant,
    ) -> Result<Option<Guard>, Refusal> {
        let settings = self.settings;
        // Poisoning needs a panic while the table is held, and nothing here panics; a
        // poisoned table is still consistent.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.entries.contains_key(&key) && table.entries.len() >= settings.max_keys {
            table.sweep(now, settings.max_keys)?;
        }
        let entry = table.entries.entry(key.clone()).or_insert(Entry {
            tat: now,
            in_flight: 0,
        });
        let concurrency = settings.max_concurrent.filter(|_| counted);
        if concurrency.is_some_and(|max| entry.in_flight >= max) {
            return Err(Refusal::Concurrency);
        }
        if let Some((interval, tolerance)) = settings.rate.filter(|_| rated) {
            let tat = entry.tat.max(now);
            let ahead = tat - now;
            if ahead > tolerance {
                return Err(Refusal::Rate(ahead - tolerance));
            }
            entry.tat = tat + interval;
        }
        if concurrency.is_none() {
            return Ok(None);
        }
        entry.in_flight += 1;
        Ok(Some(Guard {
            limiter: self.clone(),
            key,
        }))
    }
}

impl Table {
    /// Forgets the callers with a full bucket and nothing in flight; refuses a new caller when
    /// that frees no room.
    fn sweep(&mut self, now: Instant, max_keys: usize) -> Result<(), Refusal> {
        if let Some(at) = self.next_sweep.filter(|at| *at > now) {
            return Err(Refusal::Full(at - now));
        }
        self.entries
            .retain(|_, entry| entry.in_flight > 0 || entry.tat > now);
        if self.entries.len() < max_keys {
            self.next_sweep = None;
            return Ok(());
        }
        // Every caller is busy: none can be forgotten before the earliest bucket refill (or a
        // request ending, which clears the memo), so later newcomers skip the O(n) sweep.
        let at = self
            .entries
            .values()
            .filter(|entry| entry.in_flight == 0)
            .map(|entry| entry.tat)
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        self.next_sweep = Some(at);
        Err(Refusal::Full(at - now))
    }
}

/// A counted request in flight: released when its response body ends or is dropped.
#[derive(Debug)]
struct Guard {
    limiter: Arc<Limiter>,
    key: Key,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut table = self.limiter.table.lock().unwrap_or_else(|e| e.into_inner());
        table.next_sweep = None;
        if let Some(entry) = table.entries.get_mut(&self.key) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }
}

pin_project! {
    /// Response future of [`PrincipalLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F, guard: Option<Guard> },
        Reject { refusal: Option<Refusal> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F, guard: Option<Guard>) -> Self {
        Self {
            kind: Kind::Inner { future, guard },
        }
    }

    fn reject(refusal: Refusal) -> Self {
        Self {
            kind: Kind::Reject {
                refusal: Some(refusal),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, guard } => {
                let response = ready!(future.poll(cx))?;
                let guard = guard.take();
                Poll::Ready(Ok(response.map(|body| ResponseBody {
                    kind: BodyKind::Inner { body, guard },
                })))
            }
            // Polled again after completion: stay pending rather than panic.
            KindProj::Reject { refusal } => match refusal.take() {
                Some(refusal) => {
                    tracing::debug!(?refusal, "request refused by the per-caller limit");
                    Poll::Ready(Ok(refusal.into_error().into_response()))
                }
                None => Poll::Pending,
            },
        }
    }
}

pin_project! {
    /// Response body of [`PrincipalLimit`]: the inner body, holding the caller's concurrency
    /// slot until it ends; or the empty body of a refusal.
    pub struct ResponseBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B, guard: Option<Guard> },
        Empty,
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self {
            kind: BodyKind::Empty,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body, guard } => {
                let polled = body.poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    guard.take();
                }
                polled
            }
            BodyKindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body, .. } => body.is_end_stream(),
            BodyKind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body, .. } => body.size_hint(),
            BodyKind::Empty => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportErrorKind;
    use http::StatusCode;
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt};

    fn request(method: Method, who: Option<&str>, addr: Option<&str>) -> Request<()> {
        let mut req = Request::builder().method(method).body(()).unwrap();
        if let Some(who) = who {
            req.extensions_mut().insert(Principal::new(who));
        }
        if let Some(addr) = addr {
            req.extensions_mut()
                .insert(ClientAddr(addr.parse().unwrap()));
        }
        req
    }

    fn ok_service(
        layer: &PrincipalLimitLayer,
    ) -> PrincipalLimit<
        impl tower::Service<
            Request<()>,
            Response = Response<String>,
            Error = Infallible,
            Future = impl Send,
        > + Clone,
    > {
        layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new("ok".to_owned()))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn rate_allows_a_burst_then_the_average_per_caller() {
        let layer = PrincipalLimitLayer::new().rate(2.0, 3);
        let svc = ok_service(&layer);
        let status = |who: &'static str| {
            let svc = svc.clone();
            async move {
                svc.oneshot(request(Method::POST, Some(who), None))
                    .await
                    .unwrap()
            }
        };
        for _ in 0..3 {
            assert_eq!(status("alice").await.status(), StatusCode::OK);
        }
        let refused = status("alice").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "1");
        let error = refused.extensions().get::<TransportError>().unwrap();
        assert_eq!(error.kind(), TransportErrorKind::TooManyRequests);
        assert!(error.message().contains("rate"), "{}", error.message());
        // Another caller has its own bucket.
        assert_eq!(status("bob").await.status(), StatusCode::OK);
        // Half a second later, one more for alice (2/s), and not two.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(status("alice").await.status(), StatusCode::OK);
        assert_eq!(
            status("alice").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unauthenticated_callers_are_keyed_by_ip() {
        let layer = PrincipalLimitLayer::new().rate(1.0, 1);
        let svc = ok_service(&layer);
        let call = |addr: Option<&'static str>| {
            let svc = svc.clone();
            async move {
                svc.oneshot(request(Method::POST, None, addr))
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(call(Some("127.0.0.1:1000")).await, StatusCode::OK);
        // Another port of the same address is the same caller.
        assert_eq!(
            call(Some("127.0.0.1:2000")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(call(Some("127.0.0.2:1000")).await, StatusCode::OK);
        assert_eq!(call(None).await, StatusCode::OK);
        assert_eq!(call(None).await, StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn concurrency_holds_until_the_body_ends_and_skips_get() {
        use http_body_util::{BodyExt, Full};
        let layer = PrincipalLimitLayer::new().max_concurrent_requests(1);
        let svc = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(b"x"))))
        }));
        let first = svc
            .clone()
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        let second = svc
            .clone()
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        let error = second.extensions().get::<TransportError>().unwrap();
        assert!(error.message().contains("concurrent"));
        // GET streams are not counted; other callers are not affected.
        for (method, who) in [(Method::GET, "alice"), (Method::POST, "bob")] {
            let r = svc
                .clone()
                .oneshot(request(method, Some(who), None))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        // The first answer's body ends: its slot is free again.
        first.into_body().collect().await.unwrap();
        let third = svc
            .clone()
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        assert_eq!(third.status(), StatusCode::OK);
        drop(third);
        let dropped = svc
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        assert_eq!(dropped.status(), StatusCode::OK, "a dropped body frees too");
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_forgets_idle_callers() {
        let layer = PrincipalLimitLayer::new().rate(1.0, 1).max_keys(2);
        let svc = ok_service(&layer);
        let call = |who: String| {
            let svc = svc.clone();
            async move {
                svc.oneshot(request(Method::POST, Some(&who), None))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(call("a".into()).await.status(), StatusCode::OK);
        assert_eq!(call("b".into()).await.status(), StatusCode::OK);
        // Both buckets are still refilling: a third caller has no room yet.
        let full = call("c".into()).await;
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.headers()["retry-after"], "1");
        let limiter = layer.limiter.as_ref().unwrap();
        assert_eq!(limiter.table.lock().unwrap().entries.len(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        for who in 0..50 {
            assert_eq!(call(format!("n{who}")).await.status(), StatusCode::OK);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(limiter.table.lock().unwrap().entries.len() <= 2);
    }

    #[tokio::test]
    async fn without_limits_and_for_preflights_nothing_is_counted() {
        let layer = PrincipalLimitLayer::new();
        assert!(layer.is_disabled());
        let svc = ok_service(&layer);
        for _ in 0..100 {
            let r = svc
                .clone()
                .oneshot(request(Method::POST, None, None))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let layer = PrincipalLimitLayer::new().rate(1.0, 1);
        let svc = ok_service(&layer);
        for _ in 0..5 {
            let r = svc
                .clone()
                .oneshot(request(Method::OPTIONS, None, None))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        // Removing the rate again turns the layer off; settings survive in any order.
        assert!(layer.clone().rate(0.0, 1).is_disabled());
        let late = PrincipalLimitLayer::new()
            .max_keys(7)
            .max_concurrent_requests(2);
        assert_eq!(late.limiter.as_ref().unwrap().settings.max_keys, 7);
    }

    #[tokio::test]
    async fn a_post_of_only_responses_is_not_counted_and_phases_split_the_limits() {
        let layer = PrincipalLimitLayer::new()
            .rate(1000.0, 1000)
            .max_concurrent_requests(1);
        let svc = ok_service(&layer);
        let with_payload = |json: &str| {
            let mut req = request(Method::POST, Some("alice"), None);
            req.extensions_mut()
                .insert(Payload::parse(json.as_bytes()).unwrap());
            req
        };
        let held = svc
            .clone()
            .oneshot(with_payload(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            ))
            .await
            .unwrap();
        // The client's answer to the held request's elicitation gets through.
        let answer = svc
            .clone()
            .oneshot(with_payload(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let another = svc
            .clone()
            .oneshot(with_payload(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#))
            .await
            .unwrap();
        assert_eq!(another.status(), StatusCode::TOO_MANY_REQUESTS);
        // The rate phase never counts concurrency; the concurrency phase never the rate.
        let rate_layer = layer.rate_only();
        let rate = ok_service(&rate_layer);
        let r = rate
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        drop(held);
        let only_rate = PrincipalLimitLayer::new().rate(1.0, 1);
        assert!(only_rate.concurrency_only().is_disabled());
        let concurrency_layer = only_rate.concurrency_only();
        let concurrency = ok_service(&concurrency_layer);
        for _ in 0..3 {
            let r = concurrency
                .clone()
                .oneshot(request(Method::POST, Some("alice"), None))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
}
