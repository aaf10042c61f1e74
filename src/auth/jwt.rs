//! [`JwtAuthenticator`]: JWT access tokens (RFC 9068 style), validated locally.

use super::http_client::HttpClient;
use super::{AuthError, Authenticator, ConfigError, Credentials, principal_from_claims};
use crate::principal::Principal;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Keys read from one JWKS document at most.
const MAX_JWKS_KEYS: usize = 64;
/// Keys tried for a token without `kid` at most (each try is a signature check).
const MAX_KEYS_WITHOUT_KID: usize = 4;
/// The default clock-skew leeway for `exp` and `nbf`.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The default shortest time between two JWKS fetches.
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The default age after which cached JWKS keys are fetched again.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// Validates JWT access tokens sent as `Authorization: Bearer`.
///
/// * **Keys.** An HS256 secret ([`hs256_secret`](Self::hs256_secret)) and/or a JWKS
///   ([`jwks`](Self::jwks)) of RSA, EC and Ed25519 public keys, from a file or a URL. Each key is
///   pinned to one algorithm: the JWK's `alg` or its type's default (RSA → RS256, P-256 → ES256,
///   P-384 → ES384, Ed25519 → EdDSA); the secret only to HS256. A token is checked only with
///   keys pinned to its header's `alg`, so `alg: none` and algorithm confusion (an HS256 token
///   "signed" with an RSA public key) are refused. Symmetric (`oct`) and encryption keys in a
///   JWKS are ignored.
/// * **JWKS.** Keys are cached. A `kid` not in the cache triggers one fetch (a file is re-read),
///   at most once per [`jwks_refresh_interval`](Self::jwks_refresh_interval) (default 30 s);
///   keys older than [`jwks_max_age`](Self::jwks_max_age) (default 1 h) are fetched again. A
///   failed fetch keeps the old keys; with none, requests get `503`.
/// * **Claims.** `aud` must name the resource (or an added [`audience`](Self::audience)): tokens
///   for other servers are refused (MCP: no token passthrough). `exp` is required, `exp` and
///   `nbf` are checked with a leeway of 30 s, `iss` when [`issuer`](Self::issuer) is set.
/// * **Principal.** Subject `sub` (else `client_id`; a token with neither is refused), scopes from
///   `scope` (space-separated) and `scp` (array or string), all claims.
///
/// # Example
///
/// ```
/// use mcp_tower_http::auth::{Authenticator, Credentials, JwtAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let jwt = JwtAuthenticator::new("https://mcp.example.com/mcp").hs256_secret("a long shared secret");
/// let error = jwt
///     .authenticate(&Credentials::new().with_bearer("not.a.jwt"))
///     .await
///     .unwrap_err();
/// assert_eq!(error.status(), 401);
/// # }
/// ```
pub struct JwtAuthenticator {
    audiences: Vec<String>,
    issuers: Vec<String>,
    leeway: Duration,
    hmac: Option<DecodingKey>,
    jwks: Option<Jwks>,
    client: HttpClient,
    refresh_interval: Duration,
    max_age: Duration,
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("audiences", &self.audiences)
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .field("hs256", &self.hmac.is_some())
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Accepts tokens whose `aud` names `resource` (the canonical URL of this MCP server,
    /// exactly). Add keys with [`hs256_secret`](Self::hs256_secret) and/or [`jwks`](Self::jwks).
    ///
    /// Installs jsonwebtoken's RustCrypto provider as its process default unless one is already
    /// installed: were another crate to enable jsonwebtoken's `aws_lc_rs` backend too,
    /// jsonwebtoken could not pick one and would panic while verifying.
    pub fn new(resource: impl Into<String>) -> Self {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        Self {
            audiences: super::resource_audiences(resource.into()),
            issuers: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            hmac: None,
            jwks: None,
            client: HttpClient::default(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Also accepts tokens for `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Requires `iss` to be `issuer` (call again to allow several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts HS256 tokens signed with `secret`.
    pub fn hs256_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.hmac = Some(DecodingKey::from_secret(secret.as_ref()));
        self
    }

    /// Accepts tokens signed by the keys of `source`.
    pub fn jwks(mut self, source: JwksSource) -> Self {
        self.jwks = Some(Jwks::new(source));
        self
    }

    /// The clock-skew leeway for `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The shortest time between two JWKS fetches (default 30 s).
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The age after which cached JWKS keys are fetched again (default 1 h).
    pub fn jwks_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The client for a JWKS URL (default: [`HttpClient::default`]).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = client;
        self
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.set_audience(&self.audiences);
        let mut required = vec!["exp", "aud"];
        if !self.issuers.is_empty() {
            v.set_issuer(&self.issuers);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Value, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Value>(token, key, &self.validation(alg)).map(|data| data.claims)
    }

    /// Verifies `token` (whose header says `alg`) with the JWKS keys.
    async fn verify_with_jwks(
        &self,
        jwks: &Jwks,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Value, AuthError> {
        let keys = jwks
            .keys(kid, &self.client, self.refresh_interval, self.max_age)
            .await?;
        let candidates: Vec<&VerifyKey> = match kid {
            Some(kid) => {
                let named: Vec<&VerifyKey> = keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return Err(AuthError::invalid_token(
                        "The access token was signed with an unknown key",
                    ));
                }
                named.into_iter().filter(|k| k.alg == alg).collect()
            }
            None => keys
                .iter()
                .filter(|k| k.alg == alg)
                .take(MAX_KEYS_WITHOUT_KID)
                .collect(),
        };
        let mut last = None;
        for key in candidates {
            match self.decode(token, &key.key, alg) {
                Ok(claims) => return Ok(claims),
                // Only a bad signature is worth trying the next key for.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = Some(e),
                Err(e) => return Err(AuthError::invalid_token(describe(e.kind()))),
            }
        }
        Err(AuthError::invalid_token(match last {
            Some(e) => describe(e.kind()),
            None => UNSUPPORTED_ALG,
        }))
    }
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "The access token expired",
        ErrorKind::ImmatureSignature => "The access token is not valid yet",
        ErrorKind::InvalidAudience => "The access token was not issued for this resource",
        ErrorKind::InvalidIssuer => "The access token was issued by an untrusted issuer",
        ErrorKind::InvalidSignature => "The access token signature is invalid",
        ErrorKind::InvalidAlgorithm => "The access token algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "The access token has no exp claim",
            "aud" => "The access token was not issued for this resource",
            "iss" => "The access token was issued by an untrusted issuer",
            _ => "The access token lacks a required claim",
        },
        _ => "The access token is malformed",
    }
}

const UNSUPPORTED_ALG: &str = "The access token algorithm is not accepted";

impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        let Some(token) = credentials.bearer() else {
            return Err(AuthError::missing_credentials());
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid_token("The access token is too large"));
        }
        // An unknown `alg` (such as `none`) fails here: `Algorithm` has no such variant.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthError::invalid_token(
                "The access token is malformed or uses an algorithm that is not accepted",
            )
        })?;
        let alg = header.alg;
        let claims = if alg.family() == AlgorithmFamily::Hmac {
            match (&self.hmac, alg) {
                (Some(key), Algorithm::HS256) => self
                    .decode(token, key, alg)
                    .map_err(|e| AuthError::invalid_token(describe(e.kind())))?,
                _ => return Err(AuthError::invalid_token(UNSUPPORTED_ALG)),
            }
        } else {
            let Some(jwks) = &self.jwks else {
                return Err(AuthError::invalid_token(UNSUPPORTED_ALG));
            };
            self.verify_with_jwks(jwks, token, header.kid.as_deref(), alg)
                .await?
        };
        principal_from_claims(claims)
    }
}

/// One verification key and the one algorithm it accepts.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Where JWKS keys come from; see [`JwtAuthenticator::jwks`].
pub struct JwksSource {
    kind: SourceKind,
    initial: Vec<VerifyKey>,
}

enum SourceKind {
    Static,
    File(PathBuf),
    Url(http::Uri),
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Static => f.write_str("JwksSource::Static"),
            SourceKind::File(path) => write!(f, "JwksSource::File({path:?})"),
            SourceKind::Url(url) => write!(f, "JwksSource::Url({url})"),
        }
    }
}

impl JwksSource {
    /// A fixed JWKS document (`{"keys":[...]}`).
    pub fn json(jwks: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            kind: SourceKind::Static,
            initial: parse_jwks(jwks.as_bytes()).map_err(ConfigError::new)?,
        })
    }

    /// A JWKS file, read now (so a bad file fails at startup) and again when a token names an
    /// unknown `kid` (key rotation by replacing the file).
    pub fn file(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let bytes = std::fs::read(&path).map_err(|e| {
            ConfigError::new(format!("cannot read JWKS file {}: {e}", path.display()))
        })?;
        let initial = parse_jwks(&bytes)
            .map_err(|e| ConfigError::new(format!("JWKS file {}: {e}", path.display())))?;
        Ok(Self {
            kind: SourceKind::File(path),
            initial,
        })
    }

    /// A JWKS URL, fetched on first use.
    pub fn url(url: &str) -> Result<Self, ConfigError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| ConfigError::new(format!("invalid JWKS URL {url:?}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(ConfigError::new(format!(
                "invalid JWKS URL {url:?}: expected an absolute http(s) URL"
            )));
        }
        Ok(Self {
            kind: SourceKind::Url(uri),
            initial: Vec::new(),
        })
    }
}

/// Parses a JWKS document into the keys that can verify signatures.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = document.get("keys").and_then(Value::as_array) else {
        return Err("no \"keys\" array".into());
    };
    let keys: Vec<VerifyKey> = keys
        .iter()
        .take(MAX_JWKS_KEYS)
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter_map(|jwk| verify_key(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("no usable signature verification key".into());
    }
    Ok(keys)
}

/// The verification key of `jwk` pinned to its algorithm, or `None` for keys that must not
/// verify tokens (symmetric, encryption, unknown type or curve, `alg` of another family).
fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    let default = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(declared) => Algorithm::from_str(&declared.to_string()).ok()?,
        None => default,
    };
    // RSA keys may declare another RSA algorithm; curves fix theirs.
    let fits = match default.family() {
        AlgorithmFamily::Rsa => alg.family() == AlgorithmFamily::Rsa,
        _ => alg == default,
    };
    if !fits {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// The JWKS cache.
struct Jwks {
    kind: SourceKind,
    state: RwLock<State>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

struct State {
    keys: Arc<[VerifyKey]>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = crate::sync::read(&self.state);
        f.debug_struct("Jwks")
            .field("keys", &state.keys.len())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    fn new(source: JwksSource) -> Self {
        let loaded = !source.initial.is_empty();
        let now = Instant::now();
        Self {
            kind: source.kind,
            state: RwLock::new(State {
                keys: source.initial.into(),
                fetched: loaded.then_some(now),
                attempted: loaded.then_some(now),
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (Arc<[VerifyKey]>, Option<Instant>) {
        let state = crate::sync::read(&self.state);
        (state.keys.clone(), state.fetched)
    }

    /// The cached keys, fetched first when never fetched, older than `max_age`, or without
    /// `kid`; `503` when there are none.
    async fn keys(
        &self,
        kid: Option<&str>,
        client: &HttpClient,
        interval: Duration,
        max_age: Duration,
    ) -> Result<Arc<[VerifyKey]>, AuthError> {
        let (mut keys, fetched) = self.snapshot();
        let stale = fetched.is_none_or(|at| at.elapsed() >= max_age);
        let unknown_kid =
            kid.is_some_and(|kid| !keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        if !matches!(self.kind, SourceKind::Static) && (stale || unknown_kid) {
            keys = self.refresh(client, interval).await;
        }
        if keys.is_empty() {
            return Err(AuthError::unavailable());
        }
        Ok(keys)
    }

    /// Fetches the keys again unless a fetch was attempted less than `interval` ago; the keys
    /// after it (the old ones when it fails).
    async fn refresh(&self, client: &HttpClient, interval: Duration) -> Arc<[VerifyKey]> {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let state = crate::sync::read(&self.state);
            if state.attempted.is_some_and(|at| at.elapsed() < interval) {
                return state.keys.clone();
            }
        }
        crate::sync::write(&self.state).attempted = Some(Instant::now());
        let loaded = match &self.kind {
            SourceKind::Static => return self.snapshot().0,
            SourceKind::File(path) => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
                    Ok(Ok(bytes)) => parse_jwks(&bytes),
                    Ok(Err(e)) => Err(format!("cannot read the JWKS file: {e}")),
                    Err(e) => Err(format!("cannot read the JWKS file: {e}")),
                }
            }
            SourceKind::Url(uri) => fetch(client, uri).await,
        };
        let mut state = crate::sync::write(&self.state);
        match loaded {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "loaded JWKS keys");
                state.keys = keys.into();
                state.fetched = Some(Instant::now());
            }
            Err(error) => tracing::warn!(%error, "JWKS refresh failed; keeping the cached keys"),
        }
        state.keys.clone()
    }
}

async fn fetch(client: &HttpClient, uri: &http::Uri) -> Result<Vec<VerifyKey>, String> {
    let request = Request::get(uri.clone())
        .header(header::ACCEPT, "application/json")
        .body(Full::<Bytes>::default())
        .map_err(|e| e.to_string())?;
    let (status, body) = client
        .send(request)
        .await
        .map_err(|e| format!("GET {uri}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("GET {uri}: status {status}"));
    }
    parse_jwks(&body).map_err(|e| format!("GET {uri}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthErrorKind;
    use crate::auth::http_client::test_server;
    use http::Response;
    use jsonwebtoken::{EncodingKey, Header, get_current_timestamp};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RESOURCE: &str = "https://mcp.example.com/mcp";
    const SECRET: &[u8] = b"a shared secret of reasonable length";
    const JWKS: &str = include_str!("testdata/jwks.json");
    const JWKS_ROTATED: &str = include_str!("testdata/jwks-rotated.json");

    fn rsa1() -> EncodingKey {
        EncodingKey::from_rsa_der(include_bytes!("testdata/rsa1.der"))
    }
    fn rsa2() -> EncodingKey {
        EncodingKey::from_rsa_der(include_bytes!("testdata/rsa2.der"))
    }
    fn ec1() -> EncodingKey {
        EncodingKey::from_ec_der(include_bytes!("testdata/ec1.der"))
    }

    fn claims() -> Value {
        json!({
            "sub": "alice",
            "aud": RESOURCE,
            "iss": "https://as.example.com",
            "exp": get_current_timestamp() + 300,
            "scope": "mcp:read mcp:write",
        })
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        if let Some(map) = claims.as_object_mut() {
            match value {
                Value::Null => map.remove(key),
                value => map.insert(key.into(), value),
            };
        }
        claims
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            None,
            claims,
            &EncodingKey::from_secret(SECRET),
        )
    }

    fn b64url(bytes: &[u8]) -> String {
        crate::auth::http_client::tests_b64url(bytes)
    }

    async fn check(a: &JwtAuthenticator, token: &str) -> Result<Principal, AuthError> {
        a.authenticate(&Credentials::new().with_bearer(token)).await
    }

    fn refused(outcome: Result<Principal, AuthError>) -> String {
        let e = outcome.expect_err("token accepted");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{e:?}");
        e.kind().description().unwrap_or_default().to_owned()
    }

    fn secret_only() -> JwtAuthenticator {
        JwtAuthenticator::new(RESOURCE).hs256_secret(SECRET)
    }

    fn jwks_only() -> JwtAuthenticator {
        JwtAuthenticator::new(RESOURCE).jwks(JwksSource::json(JWKS).unwrap())
    }

    #[tokio::test]
    async fn a_good_hs256_token_becomes_a_principal() {
        let p = check(&secret_only(), &hs256(&claims())).await.unwrap();
        assert_eq!(&*p.subject, "alice");
        assert_eq!(p.scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(p.claims["iss"], "https://as.example.com");
    }

    #[tokio::test]
    async fn expired_immature_and_exp_less_tokens_are_refused() {
        let a = secret_only();
        let now = get_current_timestamp();
        let expired = with(claims(), "exp", json!(now - 120));
        assert_eq!(
            refused(check(&a, &hs256(&expired)).await),
            "The access token expired"
        );
        // Within the 30 s leeway: accepted.
        let just_expired = with(claims(), "exp", json!(now - 10));
        assert!(check(&a, &hs256(&just_expired)).await.is_ok());
        let immature = with(claims(), "nbf", json!(now + 120));
        assert_eq!(
            refused(check(&a, &hs256(&immature)).await),
            "The access token is not valid yet"
        );
        let no_exp = with(claims(), "exp", Value::Null);
        assert_eq!(
            refused(check(&a, &hs256(&no_exp)).await),
            "The access token has no exp claim"
        );
    }

    #[tokio::test]
    async fn tokens_for_other_audiences_are_refused() {
        let a = secret_only();
        for aud in [
            json!("https://other.example.com"),
            json!(["x", "y"]),
            Value::Null,
        ] {
            let token = hs256(&with(claims(), "aud", aud.clone()));
            assert_eq!(
                refused(check(&a, &token).await),
                "The access token was not issued for this resource",
                "{aud}"
            );
        }
        let listed = hs256(&with(claims(), "aud", json!(["x", RESOURCE])));
        assert!(check(&a, &listed).await.is_ok());
        // A trailing slash is another resource.
        let slash = hs256(&with(claims(), "aud", json!(format!("{RESOURCE}/"))));
        assert!(check(&a, &slash).await.is_err());
        let extra = secret_only().audience(format!("{RESOURCE}/"));
        assert!(check(&extra, &slash).await.is_ok());
    }

    #[tokio::test]
    async fn issuer_is_checked_when_configured() {
        let a = secret_only().issuer("https://as.example.com");
        assert!(check(&a, &hs256(&claims())).await.is_ok());
        let other = hs256(&with(claims(), "iss", json!("https://evil.example.com")));
        assert_eq!(
            refused(check(&a, &other).await),
            "The access token was issued by an untrusted issuer"
        );
        let none = hs256(&with(claims(), "iss", Value::Null));
        assert!(check(&a, &none).await.is_err());
    }

    #[tokio::test]
    async fn unsigned_alg_none_tokens_are_refused() {
        let payload = b64url(claims().to_string().as_bytes());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE","kid":"rsa1"}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            let token = format!("{}.{payload}.", b64url(header.as_bytes()));
            for a in [secret_only(), jwks_only()] {
                assert_eq!(
                    refused(check(&a, &token).await),
                    "The access token is malformed or uses an algorithm that is not accepted",
                    "{header}"
                );
            }
        }
        // A valid HS256 token with its signature stripped.
        let token = hs256(&claims());
        let unsigned = &token[..=token.rfind('.').unwrap()];
        assert!(check(&secret_only(), unsigned).await.is_err());
    }

    #[tokio::test]
    async fn wrong_keys_are_refused() {
        let other_secret = sign(
            Algorithm::HS256,
            None,
            &claims(),
            &EncodingKey::from_secret(b"other"),
        );
        assert_eq!(
            refused(check(&secret_only(), &other_secret).await),
            "The access token signature is invalid"
        );
        let a = jwks_only();
        // rsa2 signs but claims to be rsa1.
        let forged = sign(Algorithm::RS256, Some("rsa1"), &claims(), &rsa2());
        assert_eq!(
            refused(check(&a, &forged).await),
            "The access token signature is invalid"
        );
        // rsa2 is not in the (static) JWKS.
        let unknown = sign(Algorithm::RS256, Some("rsa2"), &claims(), &rsa2());
        assert_eq!(
            refused(check(&a, &unknown).await),
            "The access token was signed with an unknown key"
        );
        // No kid: every RS256 key is tried, none fits.
        let no_kid = sign(Algorithm::RS256, None, &claims(), &rsa2());
        assert_eq!(
            refused(check(&a, &no_kid).await),
            "The access token signature is invalid"
        );
        // The right keys pass, with or without kid.
        assert!(
            check(
                &a,
                &sign(Algorithm::RS256, Some("rsa1"), &claims(), &rsa1())
            )
            .await
            .is_ok()
        );
        assert!(
            check(&a, &sign(Algorithm::RS256, None, &claims(), &rsa1()))
                .await
                .is_ok()
        );
        assert!(
            check(&a, &sign(Algorithm::ES256, Some("ec1"), &claims(), &ec1()))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn algorithm_confusion_is_refused() {
        // The classic attack: HS256 "signed" with the RSA public key as the HMAC secret.
        let public_pem = include_bytes!("testdata/rsa1.pub.pem");
        let confused = sign(
            Algorithm::HS256,
            Some("rsa1"),
            &claims(),
            &EncodingKey::from_secret(public_pem),
        );
        assert_eq!(
            refused(check(&jwks_only(), &confused).await),
            "The access token algorithm is not accepted"
        );
        // With an HS256 secret configured too, the token is checked against the secret only.
        let both = jwks_only().hs256_secret(SECRET);
        assert_eq!(
            refused(check(&both, &confused).await),
            "The access token signature is invalid"
        );
        // The JWKS has an `oct` key "sym" (secret "secret"): it is never used.
        let oct = sign(
            Algorithm::HS256,
            Some("sym"),
            &claims(),
            &EncodingKey::from_secret(b"secret"),
        );
        assert!(check(&both, &oct).await.is_err());
        // RS256 token against a secret-only authenticator.
        let rs = sign(Algorithm::RS256, Some("rsa1"), &claims(), &rsa1());
        assert_eq!(
            refused(check(&secret_only(), &rs).await),
            "The access token algorithm is not accepted"
        );
        // Key pinned to its algorithm: an ES256 token naming the RSA key, an RS384 token naming
        // the RS256 key.
        let es_as_rsa = sign(Algorithm::ES256, Some("rsa1"), &claims(), &ec1());
        assert!(check(&jwks_only(), &es_as_rsa).await.is_err());
        let rs384 = sign(Algorithm::RS384, Some("rsa1"), &claims(), &rsa1());
        assert_eq!(
            refused(check(&jwks_only(), &rs384).await),
            "The access token algorithm is not accepted"
        );
        // HS384 is not accepted even with the right secret.
        let hs384 = sign(
            Algorithm::HS384,
            None,
            &claims(),
            &EncodingKey::from_secret(SECRET),
        );
        assert!(check(&secret_only(), &hs384).await.is_err());
    }

    #[tokio::test]
    async fn scopes_and_subjects() {
        let a = secret_only();
        let scp = with(
            with(claims(), "scope", Value::Null),
            "scp",
            json!(["a", "b c", "a"]),
        );
        assert_eq!(
            check(&a, &hs256(&scp)).await.unwrap().scopes,
            ["a", "b", "c"]
        );
        let scp = with(claims(), "scp", json!("mcp:read extra"));
        assert_eq!(
            check(&a, &hs256(&scp)).await.unwrap().scopes,
            ["mcp:read", "mcp:write", "extra"]
        );
        let client = with(
            with(claims(), "sub", Value::Null),
            "client_id",
            json!("app"),
        );
        assert_eq!(&*check(&a, &hs256(&client)).await.unwrap().subject, "app");
        let nobody = with(claims(), "sub", Value::Null);
        assert!(check(&a, &hs256(&nobody)).await.is_err());
    }

    #[tokio::test]
    async fn garbage_and_missing_tokens() {
        let a = secret_only();
        for token in [
            "",
            "x",
            "a.b",
            "a.b.c",
            "....",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(check(&a, token).await.is_err(), "{token}");
        }
        let e = a
            .authenticate(&Credentials::new().with_api_key("k"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), &AuthErrorKind::MissingCredentials);
    }

    #[test]
    fn jwks_parsing_keeps_only_verification_keys() {
        let keys = parse_jwks(JWKS.as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            kids,
            [
                (Some("rsa1"), Algorithm::RS256),
                (Some("ec1"), Algorithm::ES256)
            ]
        );
        let mut doc: Value = serde_json::from_str(JWKS).unwrap();
        let rsa = doc["keys"][0].clone();
        let variants = [
            with(rsa.clone(), "use", json!("enc")),
            with(rsa.clone(), "alg", json!("ES256")),
            with(rsa.clone(), "alg", json!("HS256")),
            with(rsa.clone(), "key_ops", json!(["encrypt"])),
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "weird"}),
        ];
        doc["keys"] = Value::Array(variants.to_vec());
        assert!(parse_jwks(doc.to_string().as_bytes()).is_err());
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"not json").is_err());
        assert!(JwksSource::json("{\"keys\":[]}").is_err());
        assert!(JwksSource::file("/nonexistent/jwks.json").is_err());
        assert!(JwksSource::url("/relative").is_err());
    }

    /// A JWKS endpoint serving `documents` (the last one repeatedly); counts fetches.
    async fn jwks_server(documents: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let documents = Arc::new(documents);
        let addr = test_server::serve(move |_, _| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let document = documents[n.min(documents.len() - 1)];
            async move { Response::new(Full::from(document)) }
        })
        .await;
        (format!("http://{addr}/jwks.json"), fetches)
    }

    #[tokio::test]
    async fn jwks_url_is_cached_and_refetched_for_unknown_kids() {
        let (url, fetches) = jwks_server(vec![JWKS, JWKS_ROTATED]).await;
        let a = JwtAuthenticator::new(RESOURCE)
            .jwks(JwksSource::url(&url).unwrap())
            .jwks_refresh_interval(Duration::ZERO);
        let rsa1_token = sign(Algorithm::RS256, Some("rsa1"), &claims(), &rsa1());
        assert!(check(&a, &rsa1_token).await.is_ok());
        assert!(check(&a, &rsa1_token).await.is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached");
        // A new kid: fetched again, and the rotated set has it.
        let rsa2_token = sign(Algorithm::RS256, Some("rsa2"), &claims(), &rsa2());
        assert!(check(&a, &rsa2_token).await.is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // A kid nobody has: one fetch per attempt when the interval allows it...
        let ghost = sign(Algorithm::RS256, Some("ghost"), &claims(), &rsa2());
        assert!(check(&a, &ghost).await.is_err());
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn jwks_refetches_are_rate_limited() {
        let (url, fetches) = jwks_server(vec![JWKS]).await;
        let a = JwtAuthenticator::new(RESOURCE).jwks(JwksSource::url(&url).unwrap());
        let ghost = sign(Algorithm::RS256, Some("ghost"), &claims(), &rsa2());
        for _ in 0..5 {
            assert_eq!(
                refused(check(&a, &ghost).await),
                "The access token was signed with an unknown key"
            );
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "rate-limited");
    }

    #[tokio::test]
    async fn an_unreachable_jwks_is_503() {
        let a = JwtAuthenticator::new(RESOURCE)
            .jwks(JwksSource::url("http://127.0.0.1:9/jwks.json").unwrap());
        let token = sign(Algorithm::RS256, Some("rsa1"), &claims(), &rsa1());
        let e = check(&a, &token).await.unwrap_err();
        assert_eq!(e.kind(), &AuthErrorKind::Unavailable);
        // HS256 still works when a secret is configured.
        let both = JwtAuthenticator::new(RESOURCE)
            .hs256_secret(SECRET)
            .jwks(JwksSource::url("http://127.0.0.1:9/jwks.json").unwrap());
        assert!(check(&both, &hs256(&claims())).await.is_ok());
    }

    #[tokio::test]
    async fn a_jwks_file_is_reread_for_unknown_kids() {
        let dir = std::env::temp_dir().join(format!("mcp-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, JWKS).unwrap();
        let a = JwtAuthenticator::new(RESOURCE)
            .jwks(JwksSource::file(&path).unwrap())
            .jwks_refresh_interval(Duration::ZERO);
        let rsa2_token = sign(Algorithm::RS256, Some("rsa2"), &claims(), &rsa2());
        assert!(check(&a, &rsa2_token).await.is_err());
        std::fs::write(&path, JWKS_ROTATED).unwrap();
        assert!(check(&a, &rsa2_token).await.is_ok());
        // A broken file keeps the keys already loaded.
        std::fs::write(&path, "garbage").unwrap();
        let ghost = sign(Algorithm::RS256, Some("ghost"), &claims(), &rsa2());
        assert!(check(&a, &ghost).await.is_err());
        assert!(check(&a, &rsa2_token).await.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
