//! [`HttpClient`]: the outgoing HTTP client of the JWKS fetcher and the introspection client.

use crate::BoxError;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::fmt;
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// The default time limit of one exchange (connect, send, read the whole body).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body read: 1 MiB (a JWKS or an introspection answer is a few KiB).
const MAX_BODY: usize = 1024 * 1024;

type BoxService =
    BoxCloneSyncService<Request<Full<Bytes>>, Response<UnsyncBoxBody<Bytes, BoxError>>, BoxError>;

/// The HTTP client used to fetch a JWKS URL and to call an introspection endpoint.
///
/// The default is `HttpClient::https()` with the `https-client` feature (on with `cli`): hyper-util's
/// pooled HTTP/1.1 client over rustls (ring) with the Mozilla root certificates of
/// `webpki-roots`, for `https://` and `http://` URLs. Without that feature it is
/// [`HttpClient::plain`]: plain HTTP only, fine for an authorization server on localhost or a
/// private network. For private certificate authorities, client certificates or proxies, pass
/// any tower HTTP client service to [`HttpClient::from_service`].
///
/// Every exchange is bounded by [`timeout`](Self::timeout) (default 10 s) and reads at most 1 MiB.
/// Redirects are not followed.
#[derive(Clone)]
pub struct HttpClient {
    service: BoxService,
    timeout: Duration,
    tls: bool,
}

impl HttpClient {
    /// hyper-util's legacy client over plain HTTP/1.1 (`https://` URLs fail).
    pub fn plain() -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut this = Self::from_service(client);
        this.tls = false;
        this
    }

    /// hyper-util's legacy client over HTTP/1.1, with TLS (rustls, ring, the `webpki-roots`
    /// certificates) for `https://` URLs.
    #[cfg(feature = "https-client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "https-client")))]
    pub fn https() -> Result<Self, super::ConfigError> {
        let provider = tokio_rustls::rustls::crypto::ring::default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| super::ConfigError::new(format!("TLS client configuration: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Full<Bytes>>(connector);
        Ok(Self::from_service(client))
    }

    /// Any tower HTTP client service (it must follow no redirects it should not).
    pub fn from_service<S, B>(service: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|r: Response<B>| r.map(|b| b.map_err(Into::into).boxed_unsync()))
            .map_err(Into::into);
        Self {
            service: BoxCloneSyncService::new(service),
            timeout: DEFAULT_TIMEOUT,
            tls: true,
        }
    }

    /// The time limit of one exchange (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `request`; the status and the whole body (at most 1 MiB), within the time limit.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), BoxError> {
        if !self.tls && request.uri().scheme_str() == Some("https") {
            return Err(
                "https URLs need a TLS-capable client: see HttpClient::from_service".into(),
            );
        }
        let exchange = exchange(self.service.clone(), request);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(BoxError::from("timed out")),
        }
    }
}

/// One exchange: the status and the whole body, at most [`MAX_BODY`] bytes.
async fn exchange(
    service: BoxService,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), BoxError> {
    let response = match service.oneshot(request).await {
        Ok(response) => response,
        Err(e) => return Err(e),
    };
    let status = response.status();
    let mut body = response.into_body();
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if collected.len() + data.len() > MAX_BODY {
            return Err("the response body is too large".into());
        }
        collected.extend_from_slice(&data);
    }
    Ok((status, Bytes::from(collected)))
}

impl Default for HttpClient {
    /// `HttpClient::https()` with the `https-client` feature, else [`HttpClient::plain`].
    fn default() -> Self {
        #[cfg(feature = "https-client")]
        match Self::https() {
            Ok(client) => return client,
            Err(error) => tracing::warn!(%error, "no TLS client; https:// URLs will fail"),
        }
        Self::plain()
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
#[cfg(feature = "introspection")]
pub(crate) fn form_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// Standard base64 with padding (for HTTP Basic credentials).
#[cfg(feature = "introspection")]
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod test_server {
    //! A tiny HTTP/1.1 server on 127.0.0.1 for the JWKS and introspection tests.

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// Serves `handle` (given the request head and the whole body) until the test ends.
    pub(crate) async fn serve<F, Fut>(handle: F) -> SocketAddr
    where
        F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = Arc::new(handle);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let handle = handle.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, Infallible>(handle(parts, body).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "introspection")]
    fn encodings() {
        let mut out = String::new();
        form_encode("a b+c/d=é~", &mut out);
        assert_eq!(out, "a+b%2Bc%2Fd%3D%C3%A9%7E");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"client:s3cret"), "Y2xpZW50OnMzY3JldA==");
    }

    #[cfg(feature = "https-client")]
    #[tokio::test]
    async fn the_https_client_speaks_tls_and_plain_http() {
        let addr = test_server::serve(|_, _| async { Response::new(Full::from("plain")) }).await;
        let client = HttpClient::https().unwrap().timeout(Duration::from_secs(5));
        let request = Request::get(format!("http://{addr}/"))
            .body(Full::default())
            .unwrap();
        let (status, body) = client.send(request).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"plain"[..]));
        // A TLS handshake against a plain HTTP server fails (and does not hang).
        let request = Request::get(format!("https://localhost:{}/", addr.port()))
            .body(Full::default())
            .unwrap();
        let e = client.send(request).await.unwrap_err();
        assert!(!e.to_string().contains("TLS-capable"), "{e}");
    }

    #[tokio::test]
    async fn plain_client_refuses_https_and_times_out() {
        let client = HttpClient::plain();
        let request = Request::get("https://example.com/jwks")
            .body(Full::default())
            .unwrap();
        let e = client.send(request).await.unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");

        let addr = test_server::serve(|_, _| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::new(Full::default())
        })
        .await;
        let client = HttpClient::plain().timeout(Duration::from_millis(100));
        let request = Request::get(format!("http://{addr}/"))
            .body(Full::default())
            .unwrap();
        let e = client.send(request).await.unwrap_err();
        assert_eq!(e.to_string(), "timed out");
    }

    #[tokio::test]
    async fn bodies_are_capped() {
        let addr = test_server::serve(|_, _| async {
            Response::new(Full::from(vec![b'x'; MAX_BODY + 1]))
        })
        .await;
        let request = Request::get(format!("http://{addr}/"))
            .body(Full::default())
            .unwrap();
        assert!(HttpClient::plain().send(request).await.is_err());
    }
}

/// base64url without padding, for building test tokens by hand.
#[cfg(all(test, feature = "jwt"))]
pub(crate) fn tests_b64url(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
