//! Traces: the W3C `traceparent` a job is enqueued with (checked here, stored
//! on the job) becomes the parent of each of its runs' `run` spans; and, for
//! the `elihu` binary, the subscriber that prints logs and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set, exports
//! spans over OTLP (HTTP/protobuf) in batches from its own thread. The
//! library itself only emits `tracing` spans; an embedding application
//! installs its own subscriber.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The trace context a `traceparent` names, if it is a valid W3C one.
pub fn context_from(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Checks a `traceparent` at enqueue; the error says what a good one looks like.
pub fn check_traceparent(traceparent: &str) -> Result<(), String> {
    match context_from(traceparent) {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{traceparent}` is not a W3C traceparent (00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, ids not all zero)"
        )),
    }
}

/// Makes `span` (not yet entered) a child of the trace `traceparent` names.
/// Does nothing without an OpenTelemetry layer or with a bad value.
pub(crate) fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if let Some(cx) = traceparent.and_then(context_from) {
        let _ = span.set_parent(cx);
    }
}

/// The `elihu` binary's tracing: logs on stderr filtered by `ELIHU_LOG`
/// (default `warn`) and, when an OTLP endpoint is configured, span export.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Fails only when the OTLP exporter
    /// cannot be built from its environment variables.
    pub fn init() -> Result<Telemetry, opentelemetry_otlp::ExporterBuildError> {
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::try_from_env("ELIHU_LOG").unwrap_or_else(|_| "warn".into()));
        let wanted = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        if !wanted {
            let _ = Registry::default().with(logs).try_init();
            return Ok(Telemetry { provider: None });
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
            resource = resource.with_service_name("elihu");
        }
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        // Its own filter: `ELIHU_LOG=warn` must not hide the INFO run spans.
        let spans = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("elihu"))
            .with_filter(Targets::new().with_target("elihu", LevelFilter::INFO));
        let _ = Registry::default().with(logs).with(spans).try_init();
        Ok(Telemetry { provider: Some(provider) })
    }

    /// Exports the spans still queued (blocking, so off the async workers).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "could not export the last spans");
            }
        }
    }
}
