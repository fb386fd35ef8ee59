//! Logs and traces: the global `tracing` subscriber (text or JSON lines on stderr, filtered by
//! `HOOKLINE_LOG`), OpenTelemetry spans (exported over OTLP/HTTP when `HOOKLINE_OTLP_ENDPOINT`
//! is set), and the W3C trace context that ties a mutation to every attempt it causes.
//!
//! Three kinds of spans make up a delivery's trace, and each names what it is about, never a
//! secret: the GraphQL operation ([`crate::graphql`]), each raised event ([`event_span`]), and
//! each attempt ([`crate::delivery::DeliveryClient::attempt`]). An operation continues the
//! `traceparent` its caller sent (or starts a trace); an event is its child; the event's
//! `traceparent` is stored on every row it queues, and each attempt of a row, retries
//! included, is a child of it and sends its own `traceparent` to the target.
//!
//! The OpenTelemetry layer sees hookline's spans (and events) at `info` and above whatever
//! `HOOKLINE_LOG` says, so that trace ids exist, and are propagated, even when the log shows
//! only warnings or no collector is configured.

mod context;
mod otlp;

use std::{str::FromStr, time::Duration};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, LevelFilter, Targets, filter_fn},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

pub use context::{RemoteParent, continue_trace, event_span, traceparent};

/// The name of an attempt's span ([`crate::delivery::DeliveryClient::attempt`]).
pub const ATTEMPT_SPAN: &str = "attempt";

/// How log lines are written (`HOOKLINE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, and the spans it
    /// happened in (`span`, `spans`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("`{other}` is not a log format; use `text` or `json`")),
        }
    }
}

/// Where spans go, kept until the process stops: [`Telemetry::shutdown`] sends what is left.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// How long the exporter waits for the collector, per request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl Telemetry {
    /// Installs the process's subscriber: log lines at `log` (a `HOOKLINE_LOG` filter) in
    /// `format` on stderr, and spans to the collector at `otlp` (its base URL) if given, sent
    /// in batches from a background thread. Call it inside the Tokio runtime: the exporter
    /// sends on it.
    pub fn init(log: &str, format: LogFormat, otlp: Option<&url::Url>) -> Result<Self, String> {
        let mut provider = SdkTracerProvider::builder()
            .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("hookline").build());
        if let Some(base) = otlp {
            let client = otlp::Client::new(tokio::runtime::Handle::current(), EXPORT_TIMEOUT)
                .map_err(|e| format!("the OTLP HTTP client: {e}"))?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(traces_url(base))
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| format!("the OTLP exporter: {e}"))?;
            provider = provider.with_batch_exporter(exporter);
        }
        let provider = provider.build();
        subscriber(log, format, provider.tracer("hookline"), otlp.is_some())?
            .try_init()
            .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
        Ok(Self { provider })
    }

    /// Sends the spans not exported yet and stops the exporter (a graceful stop).
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The exporter's thread sends through the runtime: wait for it off the runtime.
        match tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(EXPORT_TIMEOUT)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("hookline: the last spans could not be exported: {err}"),
            Err(err) => eprintln!("hookline: the span exporter did not stop: {err}"),
        }
    }
}

/// The process's subscriber: log lines at `log` in `format`, and spans to `tracer`.
/// `collector`: whether the spans are exported (without, attempts' spans are not built).
fn subscriber(
    log: &str,
    format: LogFormat,
    tracer: opentelemetry_sdk::trace::Tracer,
    collector: bool,
) -> Result<impl tracing::Subscriber + Send + Sync + 'static, String> {
    let filter = EnvFilter::try_new(log).map_err(|e| format!("HOOKLINE_LOG: {e}"))?;
    // Every filter says how verbose it may be: the most verbose of them is the level below
    // which `debug!` and `trace!` (hyper's, sqlx's, hookline's) cost one comparison.
    let shown = filter_fn(|line| !may_show_secrets(line)).with_max_level_hint(LevelFilter::TRACE);
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    // Without a collector nobody sees an attempt's span: it is not built (its attributes, ids
    // and end were a few percent of the fan-out's CPU). Its `traceparent` still names the row's
    // trace, with a span id of its own ([`traceparent`]). Operations and events keep theirs:
    // the trace ids of the rows they queue come from them.
    let exported = filter_fn(move |meta| collector || !(meta.is_span() && meta.name() == ATTEMPT_SPAN))
        .with_max_level_hint(LevelFilter::TRACE);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        // No busy and idle times per span: two clock reads on every poll of an instrumented
        // future (each attempt is polled several times), for attributes nobody asked for.
        .with_tracked_inactivity(false)
        // Spans start when first needed (a child, a `traceparent`) or at their end, not on
        // entry: an operation's name is known only once its query is parsed.
        .with_context_activation(false)
        .with_filter(Targets::new().with_target("hookline", Level::INFO).and(exported));
    Ok(tracing_subscriber::registry().with(lines.with_filter(filter.and(shown))).with(spans))
}

/// Lines of other crates that show what clients send, and so may show their secrets, whatever
/// `HOOKLINE_LOG` asks for: tungstenite's `trace` lines print every WebSocket message (the
/// `connection_init` carries the caller's token).
fn may_show_secrets(line: &tracing::Metadata<'_>) -> bool {
    *line.level() == Level::TRACE && line.target().starts_with("tungstenite")
}

/// `<base>/v1/traces`, whether the base ends with a slash or not.
pub fn traces_url(base: &url::Url) -> String {
    format!("{}/v1/traces", base.as_str().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_and_others_are_refused_with_the_choices() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!(" JSON ".parse::<LogFormat>(), Ok(LogFormat::Json));
        let refused = "xml".parse::<LogFormat>().expect_err("refused");
        assert!(refused.contains("`xml`") && refused.contains("`text` or `json`"), "{refused}");
    }

    /// `debug!` and `trace!` lines cost one comparison when the log does not show them: the
    /// subscriber's level is the log's, or `info` (the spans kept for traces), not `trace`.
    #[test]
    fn the_subscriber_is_no_more_verbose_than_its_log_and_its_spans() {
        let level = |log: &str, collector: bool| {
            let tracer = SdkTracerProvider::builder().build().tracer("test");
            let subscriber = subscriber(log, LogFormat::Json, tracer, collector).expect("a subscriber");
            tracing::Subscriber::max_level_hint(&subscriber)
        };
        assert_eq!(level("warn,hookline=info", false), Some(LevelFilter::INFO));
        assert_eq!(level("warn", true), Some(LevelFilter::INFO));
        assert_eq!(level("hookline=debug,info", false), Some(LevelFilter::DEBUG));
        assert_eq!(level("trace", false), Some(LevelFilter::TRACE));
    }

    #[test]
    fn spans_are_posted_under_the_base_url() {
        let url = |text: &str| url::Url::parse(text).expect("a URL");
        assert_eq!(traces_url(&url("http://127.0.0.1:4318")), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url(&url("https://otel.example.com/otlp/")), "https://otel.example.com/otlp/v1/traces");
    }
}
