//! [`Credentials`]: what a request presents, read from its headers only.

use super::AuthError;
use http::{HeaderMap, HeaderName, Uri, header};
use std::fmt;

/// The `X-API-Key` header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Query parameters that look like credentials; a request carrying one is refused (MCP requires
/// tokens in the `Authorization` header only) and the value is never read.
const QUERY_CREDENTIAL_PARAMS: [&str; 8] = [
    "access_token",
    "id_token",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "authorization",
];

/// The credentials a request presents: a bearer token from `Authorization: Bearer` and an API key
/// from `X-API-Key`. `Debug` never shows their values.
///
/// ```
/// use mcp_tower_http::auth::Credentials;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
/// let credentials = Credentials::from_headers(&headers).unwrap();
/// assert_eq!(credentials.bearer(), Some("abc.def.ghi"));
/// assert_eq!(credentials.api_key(), None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    bearer: Option<Box<str>>,
    api_key: Option<Box<str>>,
}

impl Credentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the bearer token (an empty one counts as none).
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = non_empty(token.into());
        self
    }

    /// Sets the API key (an empty one counts as none).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = non_empty(key.into());
        self
    }

    /// Reads `Authorization: Bearer <token>` (scheme case-insensitive) and `X-API-Key`.
    ///
    /// Another `Authorization` scheme (`Basic`, ...) is not a bearer token and is ignored. Two
    /// `Authorization` or two `X-API-Key` headers, or a value that is not visible ASCII, are an
    /// [`invalid_request`](AuthError::invalid_request).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, AuthError> {
        let bearer = single(
            headers,
            &header::AUTHORIZATION,
            [
                "More than one Authorization header",
                "The Authorization header is not visible ASCII",
            ],
        )?
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| non_empty(rest.trim().to_owned()))
                .flatten()
        });
        let api_key = single(
            headers,
            &X_API_KEY,
            [
                "More than one X-API-Key header",
                "The X-API-Key header is not visible ASCII",
            ],
        )?
        .and_then(|v| non_empty(v.to_owned()));
        Ok(Self { bearer, api_key })
    }

    /// The bearer token, if one was sent.
    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    /// The `X-API-Key` value, if one was sent.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// `true` when neither a bearer token nor an API key was sent.
    pub fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.api_key.is_none()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<Box<str>>| if v.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("Credentials")
            .field("bearer", &shown(&self.bearer))
            .field("api_key", &shown(&self.api_key))
            .finish()
    }
}

fn non_empty(s: String) -> Option<Box<str>> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.into())
}

/// The one value of header `name`; `messages` are the descriptions for "repeated" and "not
/// visible ASCII".
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    messages: [&'static str; 2],
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::invalid_request(messages[0]));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| AuthError::invalid_request(messages[1]))
}

/// The name of a credential-like query parameter in `uri`, if any (names are compared
/// case-insensitively after percent-decoding; values are never looked at).
pub(crate) fn query_credential_param(uri: &Uri) -> Option<&'static str> {
    let query = uri.query()?;
    query.split('&').find_map(|pair| {
        let raw = pair.split_once('=').map_or(pair, |(name, _)| name);
        let name = percent_decode_lower(raw);
        QUERY_CREDENTIAL_PARAMS
            .iter()
            .copied()
            .find(|candidate| *candidate == name)
    })
}

/// Percent-decodes a query parameter name (`+` is a space), lower-cased; bytes that do not
/// decode to UTF-8 become U+FFFD.
fn percent_decode_lower(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthErrorKind;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_bearer_and_api_key() {
        let c = Credentials::from_headers(&headers(&[
            ("authorization", "Bearer  tok "),
            ("x-api-key", "k1"),
        ]))
        .unwrap();
        assert_eq!((c.bearer(), c.api_key()), (Some("tok"), Some("k1")));
        let c = Credentials::from_headers(&headers(&[("authorization", "BEARER tok")])).unwrap();
        assert_eq!(c.bearer(), Some("tok"));
    }

    #[test]
    fn other_schemes_and_empty_values_are_no_credentials() {
        for h in [
            headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer   ")]),
            headers(&[("authorization", "Bearertok")]),
            headers(&[("x-api-key", "  ")]),
            HeaderMap::new(),
        ] {
            assert!(Credentials::from_headers(&h).unwrap().is_empty(), "{h:?}");
        }
    }

    #[test]
    fn duplicates_and_non_ascii_are_invalid_requests() {
        for h in [
            headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
            headers(&[("x-api-key", "a"), ("x-api-key", "b")]),
        ] {
            let e = Credentials::from_headers(&h).unwrap_err();
            assert!(matches!(e.kind(), AuthErrorKind::InvalidRequest { .. }));
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert!(Credentials::from_headers(&h).is_err());
    }

    #[test]
    fn debug_redacts() {
        let c = Credentials::new()
            .with_bearer("secret-token")
            .with_api_key("secret-key");
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn finds_credential_query_params() {
        let found = |uri: &str| query_credential_param(&uri.parse().unwrap());
        assert_eq!(found("/mcp?access_token=x"), Some("access_token"));
        assert_eq!(found("/mcp?a=1&ACCESS_TOKEN=x"), Some("access_token"));
        assert_eq!(found("/mcp?access%5Ftoken=x"), Some("access_token"));
        assert_eq!(found("/mcp?api_key"), Some("api_key"));
        assert_eq!(found("/mcp?x=access_token"), None);
        assert_eq!(found("/mcp?sessionId=abc"), None);
        assert_eq!(found("/mcp?%zz=1&%"), None);
        assert_eq!(found("/mcp"), None);
    }
}
