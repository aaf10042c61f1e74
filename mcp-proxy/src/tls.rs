//! TLS: the rustls acceptor from `--ssl-cert`, `--ssl-key` and `--ssl-ca` (mutual TLS),
//! reloaded from the same files on SIGHUP without a restart.

use crate::config::TlsFiles;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// How long a TLS client may take to finish its handshake.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor of new connections, swapped on reload: a connection keeps the configuration it
/// was accepted with.
#[derive(Clone)]
pub(crate) struct Tls {
    files: Arc<(PathBuf, PathBuf, Option<PathBuf>)>,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl Tls {
    /// The acceptor for the next connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        // Only a panic while swapping could poison it, and the swap cannot panic.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again; on an error the current configuration stays.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let (cert, key, ca) = &*self.files;
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        let acceptor = acceptor(&files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }

    /// Reloads the certificate, key and CA on every SIGHUP (registered before this returns,
    /// so a SIGHUP sent once the proxy says it listens is never lost).
    pub(crate) fn reload_on_sighup(&self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP: no certificate reload");
                    return;
                }
            };
            let tls = self.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    match tls.reload() {
                        Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                        Err(e) => tracing::error!(
                            "SIGHUP: TLS certificate not reloaded, keeping the current one: {e}"
                        ),
                    }
                }
            });
        }
    }
}

/// Reads the certificate, key and optional client CA.
pub(crate) fn load_tls(files: &TlsFiles) -> Result<Tls, String> {
    Ok(Tls {
        files: Arc::new((files.cert.clone(), files.key.clone(), files.ca.clone())),
        current: Arc::new(RwLock::new(acceptor(files)?)),
    })
}

/// Reads the certificate, key and optional client CA into a rustls acceptor.
fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read {what} file '{}': {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "no PEM certificate in {what} file '{}'",
                path.display()
            ));
        }
        Ok(certs)
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read key file '{}': {e}", files.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match &files.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca, "CA")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in '{}': {e}", ca.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("cannot use CA file '{}': {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
