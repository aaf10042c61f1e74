//! Per-caller limits (`--rate-limit`, `--rate-limit-burst`, `--concurrency-limit`) and tool
//! visibility under `--tool-scope`: both from the library, wired into the stack by `serve`.

use mcp_tower_http::auth::{ScopePolicy, ToolVisibilityLayer};
use mcp_tower_http::rate_limit::PrincipalLimitLayer;

/// The per-caller limit flags. A caller is the authenticated principal (API key, token
/// subject), or the client's IP address without authentication.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct LimitArgs {
    /// Requests a second allowed per caller (the authenticated principal, else the client IP),
    /// on average; beyond, 429 with Retry-After. Fractions allowed (0.5: one every 2 s).
    /// [default: no limit]
    #[arg(
        long,
        env = "MCP_PROXY_RATE_LIMIT",
        value_name = "REQ_PER_SEC",
        value_parser = parse_rate,
        help_heading = "Limits (per caller)"
    )]
    pub(crate) rate_limit: Option<f64>,

    /// Requests a caller may send at once under --rate-limit. [default: one second's worth,
    /// at least 1]
    #[arg(
        long,
        env = "MCP_PROXY_RATE_LIMIT_BURST",
        value_name = "N",
        requires = "rate_limit",
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = "Limits (per caller)"
    )]
    pub(crate) rate_limit_burst: Option<u32>,

    /// Requests in flight per caller (an SSE answer counts until its last event; standalone
    /// GET streams do not count); beyond, 429. [default: no limit]
    #[arg(
        long,
        env = "MCP_PROXY_CONCURRENCY_LIMIT",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = "Limits (per caller)"
    )]
    pub(crate) concurrency_limit: Option<u32>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{s}` is not a positive number of requests a second"
        )),
    }
}

impl LimitArgs {
    /// The library layer for these flags (it passes everything when none is set).
    pub(crate) fn layer(&self) -> PrincipalLimitLayer {
        let mut layer = PrincipalLimitLayer::new();
        if let Some(rate) = self.rate_limit {
            let burst = self
                .rate_limit_burst
                .unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
            layer = layer.rate(rate, burst);
        }
        if let Some(max) = self.concurrency_limit {
            layer = layer.max_concurrent_requests(max as usize);
        }
        layer
    }
}

/// Shows each principal only the tools `--tool-scope` lets it call, in every `tools/list`.
pub(crate) fn tool_visibility(scopes: &ScopePolicy) -> ToolVisibilityLayer {
    ToolVisibilityLayer::new(scopes.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_bursts() {
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("inf").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(LimitArgs::default().layer().is_disabled());
        let args = LimitArgs {
            rate_limit: Some(2.5),
            ..LimitArgs::default()
        };
        assert!(!args.layer().is_disabled());
    }
}
