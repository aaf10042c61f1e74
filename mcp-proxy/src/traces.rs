//! Logs and traces: `--log-format text|json`, and `--otel` (cargo feature `otel`), which exports
//! the spans of `mcp_tower_http::trace` (one per HTTP request, one per JSON-RPC request) by
//! OTLP over HTTP with protobuf.
//!
//! The exporter is configured by the standard variables, read by the official crates:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`, `/v1/traces` appended) or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME` (default `mcp-proxy`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`. Spans go out in
//! batches from a thread of their own, sent by a one-thread runtime of their own (so export
//! never competes with requests, and the last batch still goes out after the main runtime has
//! stopped); the last batch is flushed at exit.

use crate::config::LogFilter;
use clap::builder::BoolishValueParser;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines, with the fields of the spans they happen in.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields`, `span` (the current
    /// span's fields) and `spans` (every open span, outermost first).
    Json,
}

/// The logging and tracing flags.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct TraceArgs {
    /// How log lines on stderr look: `text`, or `json` (one object a line, with the fields of
    /// the request's spans: method, tool, session id, principal, status, error code).
    #[arg(
        long,
        env = "MCP_PROXY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        help_heading = "Logging"
    )]
    pub(crate) log_format: LogFormat,

    /// Export a span per HTTP request and per JSON-RPC request by OpenTelemetry OTLP/HTTP
    /// (protobuf), set up by the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, default
    /// http://localhost:4318; OTEL_SERVICE_NAME, default mcp-proxy; ...). Needs mcp-proxy built
    /// with the `otel` feature.
    #[arg(
        long,
        env = "MCP_PROXY_OTEL",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        help_heading = "Traces"
    )]
    pub(crate) otel: Option<bool>,
}

/// Flushes the exported spans when dropped (at the end of `main`).
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: Option<otel::Exporting>,
}

/// Sets up logging to stderr (in colour only on a terminal) and, with `--otel`, the exporter.
pub(crate) fn init(filter: &LogFilter, args: &TraceArgs) -> Result<Telemetry, String> {
    let filter = match filter {
        LogFilter::Given(directives) => EnvFilter::builder()
            .parse(directives)
            .map_err(|e| format!("--log-level `{directives}`: {e}"))?,
        LogFilter::Environment => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        }
    };
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    let otel = args.otel.unwrap_or(false);
    #[cfg(not(feature = "otel"))]
    {
        if otel {
            return Err(
                "--otel: this mcp-proxy was built without the `otel` feature (cargo build -p mcp-proxy --features otel)"
                    .to_owned(),
            );
        }
        registry.try_init().map_err(|e| e.to_string())?;
        Ok(Telemetry {})
    }
    #[cfg(feature = "otel")]
    {
        let (layer, exporting) = match otel {
            true => {
                let (layer, exporting) = otel::layer()?;
                (Some(layer), Some(exporting))
            }
            false => (None, None),
        };
        registry.with(layer).try_init().map_err(|e| e.to_string())?;
        Ok(Telemetry { _otel: exporting })
    }
}

#[cfg(feature = "otel")]
mod otel {
    use bytes::Bytes;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_http::hyper::HyperClient;
    use opentelemetry_http::{HttpClient, HttpError};
    use opentelemetry_otlp::WithHttpConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;
    use tracing::Level;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::registry::LookupSpan;

    /// The exporter's state: the provider (flushed on drop) and the runtime its HTTP client
    /// runs on (dropped after the flush).
    pub(super) struct Exporting {
        provider: SdkTracerProvider,
        _runtime: tokio::runtime::Runtime,
    }

    impl Drop for Exporting {
        fn drop(&mut self) {
            if let Err(e) = self.provider.shutdown() {
                eprintln!("mcp-proxy: flushing the traces: {e}");
            }
        }
    }

    /// The `tracing-opentelemetry` layer and the exporter behind it.
    pub(super) fn layer<S>() -> Result<(impl Layer<S>, Exporting), String>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        // Only HTTP/protobuf is built in: say so rather than export something else silently.
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Ok(protocol) = std::env::var(var) {
                if protocol != "http/protobuf" {
                    return Err(format!(
                        "--otel: {var}={protocol}: mcp-proxy exports OTLP over HTTP with protobuf only (http/protobuf)"
                    ));
                }
                break;
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| format!("--otel: cannot start the exporter's runtime: {e}"))?;
        let client = OnRuntime {
            client: HyperClient::with_default_connector(timeout(), None),
            runtime: runtime.handle().clone(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .build()
            .map_err(|e| format!("--otel: {e}"))?;
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default name.
        let resource = Resource::builder().build();
        let unnamed = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .is_none_or(|name| name.as_str().starts_with("unknown_service"));
        let resource = match unnamed {
            true => Resource::builder().with_service_name("mcp-proxy").build(),
            false => resource,
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("mcp-proxy");
        // The request spans and what the proxy logs inside them; never the exporter's own
        // logs (they would feed back into the export).
        let filter = Targets::new()
            // The request spans are at debug, so logging at info does not pay for them.
            .with_target("mcp_tower_http::trace", Level::DEBUG)
            .with_target("mcp_tower_http", Level::INFO)
            .with_target("mcp_proxy", Level::INFO)
            .with_target("opentelemetry", tracing::level_filters::LevelFilter::OFF)
            .with_default(Level::WARN);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter);
        Ok((
            layer,
            Exporting {
                provider,
                _runtime: runtime,
            },
        ))
    }

    /// OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, else OTEL_EXPORTER_OTLP_TIMEOUT (ms), else 10 s: the
    /// bound on one export request (the exporter reads the same variables for its retries).
    fn timeout() -> Duration {
        [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .into_iter()
        .find_map(|var| std::env::var(var).ok()?.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
    }

    /// The hyper client of `opentelemetry-http`, run on a runtime of its own: the batch
    /// processor polls the export from a plain thread, where hyper (a tokio client) cannot run.
    #[derive(Debug)]
    struct OnRuntime {
        client: HyperClient,
        runtime: tokio::runtime::Handle,
    }

    type Sent<'a> =
        Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'a>>;

    impl HttpClient for OnRuntime {
        fn send_bytes<'a, 'b>(&'a self, request: http::Request<Bytes>) -> Sent<'b>
        where
            'a: 'b,
            Self: 'b,
        {
            let client = self.client.clone();
            let sent = self
                .runtime
                .spawn(async move { client.send_bytes(request).await });
            Box::pin(async move { sent.await.map_err(|e| Box::new(e) as HttpError)? })
        }
    }
}
