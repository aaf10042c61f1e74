//! TLS over real sockets: `--ssl-cert/--ssl-key` with HTTP/1.1 and HTTP/2 chosen by ALPN,
//! `--ssl-ca` client certificates, and the certificate reloaded on SIGHUP without a restart.
//! Every certificate is made here (rcgen), under a fresh temporary directory.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A directory of its own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcp-proxy-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        Self(dir)
    }

    /// Writes `contents` to `name` atomically (a rename), as a deployment tool would.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        path.to_str().expect("a UTF-8 path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn make_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate and its key, signed by a CA.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn leaf(ca: &Ca, name: &str, client: bool) -> Leaf {
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// One TLS connection to the proxy, HTTP/1.1 or HTTP/2 as ALPN chose.
struct Conn {
    sender: Sender,
    authority: String,
    alpn: Option<Vec<u8>>,
    server_cert: CertificateDer<'static>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Connects to `https://HOST:PORT`, trusting `ca`, presenting `client` if given, offering
/// `alpn`; `Err` if the handshake fails.
async fn connect(
    base: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    alpn: &[&[u8]],
) -> Result<Conn, String> {
    let authority = base
        .strip_prefix("https://")
        .expect("an https URL")
        .to_owned();
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).expect("trust the CA");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let handshake = async {
        let tcp = TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        let server_name = ServerName::try_from("localhost").expect("a server name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let server_cert = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .cloned()
            .ok_or("no server certificate")?;
        let io = TokioIo::new(tls);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(connection);
            Sender::H2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1 handshake: {e}"))?;
            tokio::spawn(connection);
            Sender::H1(sender)
        };
        Ok(Conn {
            sender,
            authority: authority.clone(),
            alpn,
            server_cert,
        })
    };
    tokio::time::timeout(HTTP_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err("no handshake within the timeout".to_owned()))
}

impl Conn {
    /// Sends one request on this connection; `Err` if the connection fails.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(Version, StatusCode, String), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = Full::new(Bytes::from(body.to_owned()));
        let exchange = async {
            let response = match &mut self.sender {
                Sender::H1(sender) => {
                    let request = request
                        .header("host", &self.authority)
                        .body(body)
                        .map_err(|e| e.to_string())?;
                    sender.send_request(request).await
                }
                Sender::H2(sender) => {
                    let request = request.body(body).map_err(|e| e.to_string())?;
                    sender.send_request(request).await
                }
            }
            .map_err(|e| format!("request: {e}"))?;
            let version = response.version();
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok((
                version,
                status,
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        };
        tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("no answer within the timeout".to_owned()))
    }

    async fn ping(&mut self) -> Result<(Version, StatusCode, String), String> {
        self.send(Method::GET, "/ping", &[], "").await
    }
}

/// A connection and a `/ping` on it: `Err` if either fails.
async fn ping(
    base: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    alpn: &[&[u8]],
) -> Result<(Conn, Version), String> {
    let mut conn = connect(base, ca, client, alpn).await?;
    let (version, status, body) = conn.ping().await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    Ok((conn, version))
}

/// Starts the built-in server with `--ssl-cert/--ssl-key` of `server` and `extra` flags.
fn start(dir: &TempDir, server: &Leaf, extra: &[&str]) -> Proxy {
    let cert = dir.write("cert.pem", &server.cert_pem);
    let key = dir.write("key.pem", &server.key_pem);
    let mut flags = vec!["--ssl-cert", cert.as_str(), "--ssl-key", key.as_str()];
    flags.extend_from_slice(extra);
    let proxy = Proxy::builtin(&flags);
    assert!(proxy.base.starts_with("https://"), "{}", proxy.base);
    proxy
}

#[tokio::test]
async fn https_serves_http1_and_http2_by_alpn() {
    let dir = TempDir::new();
    let ca = make_ca("test CA");
    let server = leaf(&ca, "server", false);
    let proxy = start(&dir, &server, &[]);

    let (conn, version) = ping(&proxy.base, &ca, None, &[b"h2", b"http/1.1"])
        .await
        .expect("HTTP/2");
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(conn.server_cert, server.der);
    let (conn, version) = ping(&proxy.base, &ca, None, &[b"http/1.1"])
        .await
        .expect("HTTP/1.1");
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(version, Version::HTTP_11);
    // No ALPN at all: HTTP/1.1.
    let (conn, version) = ping(&proxy.base, &ca, None, &[]).await.expect("no ALPN");
    assert_eq!(conn.alpn, None);
    assert_eq!(version, Version::HTTP_11);

    // MCP itself over HTTP/2 and TLS.
    let (mut conn, _) = ping(&proxy.base, &ca, None, &[b"h2"])
        .await
        .expect("HTTP/2");
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ];
    let (version, status, body) = conn
        .send(
            Method::POST,
            "/mcp",
            &headers,
            &initialize_body(1).to_string(),
        )
        .await
        .expect("initialize");
    assert_eq!(
        (version, status),
        (Version::HTTP_2, StatusCode::OK),
        "{body}"
    );
    assert!(body.contains("\"protocolVersion\""), "{body}");

    // A client that does not trust the proxy's CA is refused by itself.
    let other = make_ca("another CA");
    assert!(ping(&proxy.base, &other, None, &[]).await.is_err());
    // Plain HTTP on the TLS port gets no answer.
    let plain = proxy.base.replacen("https://", "http://", 1);
    let reply = send(Method::GET, &format!("{plain}/ping"), &[], "").await;
    assert!(
        reply.as_ref().map_or(true, |r| r.status != StatusCode::OK),
        "{reply:?}"
    );
}

#[tokio::test]
async fn ssl_ca_requires_a_client_certificate_signed_by_it() {
    let dir = TempDir::new();
    let ca = make_ca("test CA");
    let server = leaf(&ca, "server", false);
    let clients = make_ca("client CA");
    let client = leaf(&clients, "alice", true);
    let ca_file = dir.write("clients.pem", &clients.pem());
    let proxy = start(&dir, &server, &["--ssl-ca", &ca_file]);

    for alpn in [&[&b"h2"[..]][..], &[b"http/1.1"]] {
        let refused = ping(&proxy.base, &ca, None, alpn).await;
        assert!(
            refused.is_err(),
            "no client certificate must be refused ({alpn:?})"
        );
        let (_, version) = ping(&proxy.base, &ca, Some(&client), alpn)
            .await
            .expect("a client certificate signed by --ssl-ca");
        let expected = if alpn == [b"h2"] {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(version, expected);
    }
    // A certificate from a CA the proxy does not know is refused too.
    let stranger = leaf(&ca, "mallory", true);
    assert!(
        ping(&proxy.base, &ca, Some(&stranger), &[b"http/1.1"])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_only() {
    let dir = TempDir::new();
    let ca = make_ca("test CA");
    let a = leaf(&ca, "server A", false);
    let b = leaf(&ca, "server B", false);
    let proxy = start(&dir, &a, &[]);

    let (mut old, _) = ping(&proxy.base, &ca, None, &[b"http/1.1"])
        .await
        .expect("a connection");
    assert_eq!(old.server_cert, a.der);
    let (mut old_h2, _) = ping(&proxy.base, &ca, None, &[b"h2"])
        .await
        .expect("an HTTP/2 connection");

    // Replace the files and signal: new connections see B.
    dir.write("cert.pem", &b.cert_pem);
    dir.write("key.pem", &b.key_pem);
    signal(proxy.pid, "HUP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = connect(&proxy.base, &ca, None, &[])
            .await
            .map(|conn| conn.server_cert);
        if seen.as_ref() == Ok(&b.der) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {seen:?} 10 s after SIGHUP\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.log().contains("TLS certificate reloaded"));

    // The connections accepted before the reload are unaffected: still open, still serving.
    let (_, status, body) = old.ping().await.expect("the old HTTP/1.1 connection");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    assert_eq!(old.server_cert, a.der);
    let (version, status, _) = old_h2.ping().await.expect("the old HTTP/2 connection");
    assert_eq!((version, status), (Version::HTTP_2, StatusCode::OK));

    // A broken file is not loaded: the proxy keeps serving B, and says why.
    dir.write("cert.pem", "not a certificate");
    signal(proxy.pid, "HUP");
    let logged = wait_until(Duration::from_secs(10), || {
        proxy.log().contains("not reloaded")
    })
    .await;
    assert!(logged.is_ok(), "{}", proxy.log());
    let (conn, _) = ping(&proxy.base, &ca, None, &[])
        .await
        .expect("still serving");
    assert_eq!(conn.server_cert, b.der);
}
