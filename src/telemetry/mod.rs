//! Logs and traces through `tracing`: human-readable text or JSON lines on stderr, and
//! OpenTelemetry spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, configured by the standard `OTEL_*`
//! variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_PROTOCOL`
//! `http/protobuf` (default) or `grpc`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`…).
//!
//! Trace context follows W3C Trace Context: `traceparent` is read from incoming REST and gRPC
//! requests, stored with the events a request causes, and sent on the webhooks those events
//! fan out to, so one trace runs from the caller through incidentd to the receiver. Spans and
//! ids exist even when nothing is exported, so logs carry trace ids either way.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written: human-readable text, or JSON objects carrying the trace and
/// span ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What the OpenTelemetry layer never records: the exporter's own HTTP/2 and HTTP clients
/// (which would trace their own exports), and the SDK itself.
const OTEL_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,\
    opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off";

/// The installed tracing pipeline; [`Telemetry::shutdown`] flushes what is not exported yet.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports the spans still buffered and stops the exporter. Call once, at exit.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider
            && self.exporting
            && let Err(e) = provider.shutdown()
        {
            eprintln!("incidentd: flushing traces at exit failed: {e}");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The OTLP exporter, when an endpoint is configured and the SDK is not disabled.
fn exporter() -> Option<opentelemetry_otlp::SpanExporter> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    if !env_set("OTEL_EXPORTER_OTLP_ENDPOINT") && !env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    // The exporter's HTTP client (https collectors) uses the process's rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match opentelemetry_otlp::SpanExporter::builder().build() {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("incidentd: OTLP trace export is off: {e}");
            None
        }
    }
}

/// The service's resource: `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, else
/// `service.name=incidentd`, with the version.
fn resource() -> opentelemetry_sdk::Resource {
    let mut builder = opentelemetry_sdk::Resource::builder();
    let named = env_set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        builder = builder.with_service_name("incidentd");
    }
    builder.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build()
}

/// Installs the global subscriber: logs to stderr filtered by `filter`, spans to
/// OpenTelemetry. Safe to call more than once (later calls install nothing).
pub fn init(format: LogFormat, filter: &str) -> Telemetry {
    let filter = with_quiet_pool(filter);
    let filter = filter.as_str();
    let log_filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("invalid log filter {filter:?} ({e}); using \"info\"");
        EnvFilter::new("info")
    });
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = exporter();
    let exporting = exporter.is_some();
    let mut builder = SdkTracerProvider::builder().with_resource(resource());
    if let Some(exporter) = exporter {
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("incidentd"))
        .with_filter(EnvFilter::new(OTEL_FILTER));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        // Each line carries the fields of the spans it happened in, the request span's
        // trace_id and span_id among them.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let installed = tracing_subscriber::registry().with(otel).with(logs.with_filter(log_filter)).try_init().is_ok();
    Telemetry { provider: installed.then_some(provider), exporting: installed && exporting }
}

/// The log filter with sqlx's pool held to errors, unless the filter names sqlx itself: the
/// pool warns once per pooled connection when the database goes away, which the readiness
/// watcher already reports in one line.
fn with_quiet_pool(filter: &str) -> String {
    if filter.contains("sqlx") { filter.to_string() } else { format!("{filter},sqlx_core::pool=error") }
}

/// Reads W3C trace context from request headers.
fn extract(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&opentelemetry_http::HeaderExtractor(headers)))
}

/// Records the span's trace and span ids in its `trace_id` and `span_id` fields (which the
/// span must declare), so log lines inside it carry them.
fn record_ids(span: &Span) {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// The span of one REST request, continuing the caller's trace when it sent `traceparent`.
/// It is named after the method until routing names the route ([`record_route`]): a path
/// would give a span name per incident.
pub fn http_request_span<B>(request: &axum::http::Request<B>) -> Span {
    let span = tracing::info_span!(
        "http.request",
        otel.name = %request.method(),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = tracing::field::Empty,
        url.path = %request.uri().path(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let _ = span.set_parent(extract(request.headers()));
    record_ids(&span);
    span
}

/// Names a request span after its route template (`GET /v1/incidents/{id}`).
pub fn record_route(span: &Span, method: &str, route: &str) {
    let name = format!("{method} {route}");
    span.record("http.route", route);
    span.record("otel.name", name.as_str());
    // The OpenTelemetry span already exists (its ids were read for the logs), so the layer
    // no longer applies `otel.name`: rename it directly.
    span.context().span().update_name(name);
}

/// The span of one gRPC call, continuing the caller's trace when it sent `traceparent`;
/// `method` is the call's method (`incidentd.v1.IncidentService/GetIncident`, or `unknown`).
pub fn grpc_request_span<B>(request: &axum::http::Request<B>, method: &str) -> Span {
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %method,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let _ = span.set_parent(extract(request.headers()));
    record_ids(&span);
    span
}

/// The span of one delivery attempt, in the trace of the request that caused the event.
pub fn delivery_span(traceparent: Option<&str>, delivery: uuid::Uuid, channel: &str, attempt: i32) -> Span {
    let span = tracing::info_span!(
        "delivery.attempt",
        otel.name = %format!("deliver {channel}"),
        otel.kind = "client",
        delivery.id = %delivery,
        delivery.channel = channel,
        delivery.attempt = attempt,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    record_ids(&span);
    span
}

/// The span of one database transaction, a child of the current span; it ends when dropped.
pub fn transaction_span(system: &'static str) -> Span {
    tracing::info_span!("db.transaction", otel.kind = "client", db.system = system)
}

/// The current span's context as a W3C `traceparent` value (`None` outside any trace).
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}
