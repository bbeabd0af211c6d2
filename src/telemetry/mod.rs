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
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod fields;
mod ids;

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
    let mut builder =
        SdkTracerProvider::builder().with_resource(resource()).with_id_generator(ids::PresetIds::default());
    builder = match exporter {
        Some(exporter) => builder.with_batch_exporter(exporter),
        // Nothing is exported, so nothing is recorded: spans still have their ids (log lines
        // and the `traceparent` of webhooks carry them), but not their attributes, events and
        // timings, which nobody could read. A call in a trace its caller samples is still
        // recorded, so the sampled flag passed on downstream is the caller's.
        None => builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
    };
    let provider = builder.build();
    // Entering a span does not make its OpenTelemetry context the current one (nothing here
    // reads `opentelemetry::Context::current()`; parents are found through the tracing spans):
    // that is a thread-local push and pop on every poll of every request.
    // Without an exporter the source location, thread and busy and idle times of a span
    // would be computed for every request and read by nobody.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("incidentd"))
        .with_context_activation(false)
        .with_location(exporting)
        .with_threads(exporting)
        .with_tracked_inactivity(exporting)
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
            .fmt_fields(fields::JsonSpanFields)
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

/// Starts `span` (which declares the `trace_id` and `span_id` `ids` were chosen for) in the
/// trace of `parent`.
fn started(
    span: Span,
    parent: opentelemetry::Context,
    chosen: (opentelemetry::trace::TraceId, opentelemetry::trace::SpanId),
) -> Span {
    ids::start_with(&span, parent, chosen);
    span
}

/// The span of one REST request, continuing the caller's trace when it sent `traceparent`.
/// Made once the request is routed: it is named after the route template
/// (`GET /v1/incidents/{id}`), never the path (which would give a span name per incident),
/// or after the method alone when no route matched. Every field is set when the span is
/// made (recording one later costs more than making the span).
pub fn http_request_span<B>(request: &axum::http::Request<B>) -> Span {
    let parent = extract(request.headers());
    let chosen = ids::choose(&parent);
    let (trace_id, span_id) = chosen;
    let method = request.method().as_str();
    let path = request.uri().path();
    let span = match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => {
            let route = route.as_str();
            tracing::info_span!(
                "http.request",
                otel.name = %format!("{method} {route}"),
                otel.kind = "server",
                http.request.method = method,
                http.route = route,
                url.path = path,
                trace_id = %trace_id,
                span_id = %span_id,
            )
        }
        None => tracing::info_span!(
            "http.request",
            otel.name = method,
            otel.kind = "server",
            http.request.method = method,
            url.path = path,
            trace_id = %trace_id,
            span_id = %span_id,
        ),
    };
    started(span, parent, chosen)
}

/// The span of one gRPC call, continuing the caller's trace when it sent `traceparent`;
/// `method` is the call's method (`incidentd.v1.IncidentService/GetIncident`, or `unknown`).
pub fn grpc_request_span<B>(request: &axum::http::Request<B>, method: &str) -> Span {
    let parent = extract(request.headers());
    let chosen = ids::choose(&parent);
    let (trace_id, span_id) = chosen;
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method,
        trace_id = %trace_id,
        span_id = %span_id,
    );
    started(span, parent, chosen)
}

/// The span of one delivery attempt, in the trace of the request that caused the event.
pub fn delivery_span(traceparent: Option<&str>, delivery: uuid::Uuid, channel: &str, attempt: i32) -> Span {
    let parent = match traceparent {
        Some(traceparent) => {
            let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
            TraceContextPropagator::new().extract(&carrier)
        }
        // Where the event has no trace, the attempt is in the trace of the span it is made in.
        None => Span::current().context(),
    };
    let chosen = ids::choose(&parent);
    let (trace_id, span_id) = chosen;
    let span = tracing::info_span!(
        "delivery.attempt",
        otel.name = %format!("deliver {channel}"),
        otel.kind = "client",
        delivery.id = %delivery,
        delivery.channel = channel,
        delivery.attempt = attempt,
        http.response.status_code = tracing::field::Empty,
        trace_id = %trace_id,
        span_id = %span_id,
    );
    started(span, parent, chosen)
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
