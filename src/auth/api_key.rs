//! [`ApiKeys`]: static API keys, compared in constant time.

use super::{AuthError, Authenticator, Credentials};
use crate::principal::Principal;
use std::fmt;
use std::sync::Arc;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Accepts any of several API keys, sent as `X-API-Key` or as `Authorization: Bearer`.
///
/// The principal's subject is `api-key:<n>` (`n` counts keys from 0 in the order they were
/// added) or the subject given to [`key_with_subject`](Self::key_with_subject); its scopes are
/// those set with [`scopes`](Self::scopes).
///
/// Keys are compared in constant time: the presented key is copied into a buffer as long as the
/// longest configured key and compared with every key padded to that length, lengths compared
/// separately, with no early exit; the time depends only on the configuration and the length of
/// the presented key, never on how much of it matches or which key it matches.
///
/// ```
/// use mcp_tower_http::auth::{ApiKeys, Authenticator, Credentials};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let keys = ApiKeys::new().key("first-key").key_with_subject("second-key", "ci-bot");
/// let p = keys.authenticate(&Credentials::new().with_api_key("first-key")).await.unwrap();
/// assert_eq!(&*p.subject, "api-key:0");
/// let p = keys.authenticate(&Credentials::new().with_bearer("second-key")).await.unwrap();
/// assert_eq!(&*p.subject, "ci-bot");
/// assert_eq!(
///     keys.authenticate(&Credentials::new().with_api_key("first")).await.unwrap_err().status(),
///     401
/// );
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Key>,
    /// The length every key is padded to: the longest key.
    width: usize,
    scopes: Vec<String>,
    accept_bearer: bool,
}

#[derive(Clone)]
struct Key {
    /// The key, zero-padded to `width`.
    padded: Vec<u8>,
    len: u64,
    subject: Arc<str>,
}

impl ApiKeys {
    /// No keys yet (every request is refused); keys are accepted from `X-API-Key` and
    /// `Authorization: Bearer`.
    pub fn new() -> Self {
        Self {
            accept_bearer: true,
            ..Self::default()
        }
    }

    /// Adds a key; its subject is `api-key:<n>`. Empty keys are ignored (they could never match).
    pub fn key(self, key: impl AsRef<[u8]>) -> Self {
        let subject = format!("api-key:{}", self.keys.len());
        self.key_with_subject(key, subject)
    }

    /// Adds a key whose principal has `subject`.
    pub fn key_with_subject(mut self, key: impl AsRef<[u8]>, subject: impl Into<Arc<str>>) -> Self {
        let key = key.as_ref();
        if key.is_empty() {
            tracing::warn!("ignoring an empty API key");
            return self;
        }
        self.width = self.width.max(key.len());
        let mut padded = key.to_vec();
        padded.resize(self.width, 0);
        self.keys.push(Key {
            padded,
            len: key.len() as u64,
            subject: subject.into(),
        });
        let width = self.width;
        for k in &mut self.keys {
            k.padded.resize(width, 0);
        }
        self
    }

    /// Sets the scopes granted to every key's principal (e.g. to satisfy a
    /// [`ScopePolicy`](super::ScopePolicy)).
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `Authorization: Bearer <key>` is accepted besides `X-API-Key` (default `true`).
    pub fn accept_bearer(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// `true` when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The index of the key equal to `presented`, in constant time over all keys.
    fn find(&self, presented: &[u8]) -> Option<usize> {
        let mut buffer = vec![0u8; self.width];
        let n = presented.len().min(self.width);
        buffer[..n].copy_from_slice(&presented[..n]);
        let presented_len = presented.len() as u64;
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, key) in self.keys.iter().enumerate() {
            // Equal-length slices: `ct_eq` looks at every byte.
            let equal = buffer.as_slice().ct_eq(&key.padded) & presented_len.ct_eq(&key.len);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        bool::from(found).then_some(index as usize)
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.keys.len())
            .field("scopes", &self.scopes)
            .field("accept_bearer", &self.accept_bearer)
            .finish()
    }
}

impl Authenticator for ApiKeys {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        let presented = match (credentials.api_key(), credentials.bearer()) {
            (Some(key), _) => key,
            (None, Some(token)) if self.accept_bearer => token,
            _ => return Err(AuthError::missing_credentials()),
        };
        match self.find(presented.as_bytes()) {
            Some(i) => {
                let mut principal = Principal::new(self.keys[i].subject.clone());
                principal.scopes = self.scopes.clone();
                Ok(principal)
            }
            None => Err(AuthError::invalid_token("Invalid API key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthErrorKind;

    #[test]
    fn constant_time_find_semantics() {
        let keys = ApiKeys::new().key("abc").key("abcdef").key("zzzzzzzzzz");
        assert_eq!(keys.find(b"abc"), Some(0));
        assert_eq!(keys.find(b"abcdef"), Some(1));
        assert_eq!(keys.find(b"zzzzzzzzzz"), Some(2));
        // Prefixes, extensions, padding bytes and other lengths never match.
        for presented in [
            &b""[..],
            b"ab",
            b"abcd",
            b"abc\0",
            b"abc\0\0\0",
            b"abcdefg",
            b"zzzzzzzzzzz",
            b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            b"ABC",
        ] {
            assert_eq!(keys.find(presented), None, "{presented:?}");
        }
        // No keys: nothing matches, not even empty input.
        assert_eq!(ApiKeys::new().find(b""), None);
        assert_eq!(ApiKeys::new().key("").find(b""), None);
        assert!(ApiKeys::new().key("").is_empty());
    }

    #[test]
    fn keys_added_later_repad_earlier_ones() {
        let keys = ApiKeys::new().key("a").key("a-much-longer-key");
        assert!(keys.keys.iter().all(|k| k.padded.len() == keys.width));
        assert_eq!(keys.find(b"a"), Some(0));
    }

    #[tokio::test]
    async fn sources_subjects_and_errors() {
        let keys = ApiKeys::new().key("k0").key("k1").scopes(["mcp"]);
        let p = keys
            .authenticate(&Credentials::new().with_bearer("k1"))
            .await
            .unwrap();
        assert_eq!(
            (&*p.subject, p.scopes.as_slice()),
            ("api-key:1", &["mcp".to_owned()][..])
        );
        // X-API-Key wins over the bearer token when both are sent.
        let both = Credentials::new().with_api_key("k0").with_bearer("nope");
        assert_eq!(
            &*keys.authenticate(&both).await.unwrap().subject,
            "api-key:0"
        );
        let e = keys.authenticate(&Credentials::new()).await.unwrap_err();
        assert_eq!(e.kind(), &AuthErrorKind::MissingCredentials);
        let e = keys
            .authenticate(&Credentials::new().with_api_key("k2"))
            .await
            .unwrap_err();
        assert!(matches!(e.kind(), AuthErrorKind::InvalidToken { .. }));
        // Bearer not accepted: a bearer-only request has no API key.
        let header_only = keys.clone().accept_bearer(false);
        let e = header_only
            .authenticate(&Credentials::new().with_bearer("k0"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), &AuthErrorKind::MissingCredentials);
        assert!(!format!("{keys:?}").contains("k0"));
    }
}
