//! MCP protocol revisions served by this crate.

use std::fmt;

/// A protocol revision this crate serves.
///
/// The three 2025 revisions negotiate a session with `initialize` ([`Self::SUPPORTED`]); 2026-07-28
/// is sessionless: every request carries its revision and client capabilities in `_meta`
/// (see [`crate::modern`]). Both kinds are served on one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2025-03-26: Streamable HTTP, batches allowed.
    V2025_03_26,
    /// 2025-06-18: no batches, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: SSE priming events and polling.
    V2025_11_25,
    /// 2026-07-28: sessionless; `server/discover`, per-request `_meta`, routing headers,
    /// `input_required` results, `subscriptions/listen`.
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every revision served with sessions (negotiated by `initialize`), newest first.
    pub const SUPPORTED: [ProtocolVersion; 3] = [
        ProtocolVersion::V2025_11_25,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_03_26,
    ];

    /// The newest revision served with sessions: what an `initialize` asking for anything else
    /// (2026-07-28 included, which has no `initialize`) is answered with.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

    /// The sessionless revisions, newest first (what `server/discover` lists).
    pub const SESSIONLESS: [ProtocolVersion; 1] = [ProtocolVersion::V2026_07_28];

    /// The revision assumed when a request carries no `MCP-Protocol-Version` and nothing else
    /// tells it (spec: 2025-03-26).
    pub const FALLBACK: ProtocolVersion = ProtocolVersion::V2025_03_26;

    /// The wire form, e.g. `"2025-11-25"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
            ProtocolVersion::V2026_07_28 => "2026-07-28",
        }
    }

    /// Parses a revision served with sessions.
    pub fn parse(s: &str) -> Option<Self> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// Parses a sessionless revision.
    pub fn parse_sessionless(s: &str) -> Option<Self> {
        Self::SESSIONLESS.into_iter().find(|v| v.as_str() == s)
    }

    /// `true` for revisions without sessions or `initialize` (2026-07-28 on).
    pub fn is_sessionless(self) -> bool {
        self >= ProtocolVersion::V2026_07_28
    }

    /// The revision to answer an `initialize` that asked for `requested`: the same one when
    /// supported, otherwise the latest (the client then decides whether it can go on).
    pub fn negotiate(requested: Option<&str>) -> Self {
        requested.and_then(Self::parse).unwrap_or(Self::LATEST)
    }

    /// Batches were only part of 2025-03-26.
    pub fn allows_batches(self) -> bool {
        self == ProtocolVersion::V2025_03_26
    }

    /// SSE streams start with a priming event (id, empty data) from 2025-11-25 on; older clients
    /// choke on the empty data.
    pub fn sends_priming_event(self) -> bool {
        self == ProtocolVersion::V2025_11_25
    }

    /// The comma-separated list used in "unsupported version" errors.
    pub fn supported_list() -> String {
        Self::SUPPORTED.map(Self::as_str).join(", ")
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            3 => ProtocolVersion::V2026_07_28,
            2 => ProtocolVersion::V2025_11_25,
            1 => ProtocolVersion::V2025_06_18,
            _ => ProtocolVersion::V2025_03_26,
        }
    }
}

/// MCP log levels (RFC 5424 severities), least severe first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum LogLevel {
    /// Detailed debugging information.
    Debug,
    /// Normal operational messages.
    Info,
    /// Normal but significant events.
    Notice,
    /// Warning conditions.
    Warning,
    /// Error conditions.
    Error,
    /// Critical conditions.
    Critical,
    /// Action must be taken immediately.
    Alert,
    /// The system is unusable.
    Emergency,
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    /// The wire form, e.g. `"warning"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The level of a discriminant (as stored in an atomic); unknown values are `Debug`.
    pub fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(LogLevel::Debug)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_keeps_supported_and_falls_back_to_latest() {
        assert_eq!(
            ProtocolVersion::negotiate(Some("2025-06-18")),
            ProtocolVersion::V2025_06_18
        );
        assert_eq!(
            ProtocolVersion::negotiate(Some("2024-11-05")),
            ProtocolVersion::LATEST
        );
        assert_eq!(ProtocolVersion::negotiate(None), ProtocolVersion::LATEST);
    }

    #[test]
    fn u8_round_trip_and_rules() {
        for v in ProtocolVersion::SUPPORTED
            .into_iter()
            .chain(ProtocolVersion::SESSIONLESS)
        {
            assert_eq!(ProtocolVersion::from_u8(v.to_u8()), v);
        }
        assert!(ProtocolVersion::V2026_07_28.is_sessionless());
        assert!(!ProtocolVersion::LATEST.is_sessionless());
        assert_eq!(ProtocolVersion::parse("2026-07-28"), None);
        assert_eq!(
            ProtocolVersion::parse_sessionless("2026-07-28"),
            Some(ProtocolVersion::V2026_07_28)
        );
        assert!(ProtocolVersion::V2025_03_26.allows_batches());
        assert!(!ProtocolVersion::V2025_06_18.allows_batches());
        assert!(ProtocolVersion::V2025_11_25.sends_priming_event());
        assert!(!ProtocolVersion::V2025_06_18.sends_priming_event());
        // Sessionless streams have no event ids, so nothing to prime.
        assert!(!ProtocolVersion::V2026_07_28.sends_priming_event());
        assert_eq!(
            ProtocolVersion::supported_list(),
            "2025-11-25, 2025-06-18, 2025-03-26"
        );
    }
}
