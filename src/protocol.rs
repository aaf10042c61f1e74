//! MCP protocol revisions served by this crate.

use std::fmt;

/// A protocol revision this crate serves with sessions.
///
/// The 2026-07-28 revision (sessionless, no `initialize`) is not served yet; requests claiming it
/// get a 400 with code `-32000` (never `-32022`, which dual-era clients read as evidence of a
/// modern server), so they fall back to `initialize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2025-03-26: Streamable HTTP, batches allowed.
    V2025_03_26,
    /// 2025-06-18: no batches, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: SSE priming events and polling.
    V2025_11_25,
}

impl ProtocolVersion {
    /// Every supported revision, newest first.
    pub const SUPPORTED: [ProtocolVersion; 3] = [
        ProtocolVersion::V2025_11_25,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_03_26,
    ];

    /// The newest supported revision.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

    /// The revision assumed when a request carries no `MCP-Protocol-Version` and nothing else
    /// tells it (spec: 2025-03-26).
    pub const FALLBACK: ProtocolVersion = ProtocolVersion::V2025_03_26;

    /// The wire form, e.g. `"2025-11-25"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
        }
    }

    /// Parses a supported revision.
    pub fn parse(s: &str) -> Option<Self> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == s)
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
        self >= ProtocolVersion::V2025_11_25
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
            2 => ProtocolVersion::V2025_11_25,
            1 => ProtocolVersion::V2025_06_18,
            _ => ProtocolVersion::V2025_03_26,
        }
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
        for v in ProtocolVersion::SUPPORTED {
            assert_eq!(ProtocolVersion::from_u8(v.to_u8()), v);
        }
        assert!(ProtocolVersion::V2025_03_26.allows_batches());
        assert!(!ProtocolVersion::V2025_06_18.allows_batches());
        assert!(ProtocolVersion::V2025_11_25.sends_priming_event());
        assert!(!ProtocolVersion::V2025_06_18.sends_priming_event());
        assert_eq!(
            ProtocolVersion::supported_list(),
            "2025-11-25, 2025-06-18, 2025-03-26"
        );
    }
}
