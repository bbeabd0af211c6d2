//! The ids of a span chosen before the span exists, so that its log fields carry them from
//! the start.
//!
//! A request span lists its `trace_id` and `span_id` in its fields (log lines made while
//! serving the request carry them). The OpenTelemetry SDK picks a span's ids when the span
//! starts, after the tracing span and its fields exist: recording them afterwards cost more
//! than anything else the request did. Instead the ids are drawn first, written into the
//! fields, and handed to the SDK through [`PresetIds`], the provider's id generator, for the
//! one span started on this thread while they are set ([`start_with`]).

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

thread_local! {
    /// The ids of the span being started on this thread, if chosen beforehand.
    static PRESET: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// The provider's id generator: the preset ids while [`start_with`] starts a span, random
/// ids otherwise.
#[derive(Debug, Default)]
pub struct PresetIds(RandomIdGenerator);

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        PRESET.get().map_or_else(|| self.0.new_trace_id(), |(trace, _)| trace)
    }

    fn new_span_id(&self) -> SpanId {
        PRESET.get().map_or_else(|| self.0.new_span_id(), |(_, span)| span)
    }
}

/// The ids a span with `parent` will have: the parent's trace (or a new one) and a new span id.
pub fn choose(parent: &opentelemetry::Context) -> (TraceId, SpanId) {
    let random = RandomIdGenerator::default();
    let parent = parent.span();
    let parent = parent.span_context();
    let trace = if parent.is_valid() { parent.trace_id() } else { random.new_trace_id() };
    (trace, random.new_span_id())
}

/// Starts `span` as a child of `parent` with the `ids` [`choose`] gave.
pub fn start_with(span: &Span, parent: opentelemetry::Context, ids: (TraceId, SpanId)) {
    let _ = span.set_parent(parent);
    PRESET.set(Some(ids));
    // Builds the OpenTelemetry span now, on this thread, drawing the preset ids.
    let _ = span.context();
    PRESET.set(None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_started_span_has_the_chosen_ids_and_the_next_one_does_not() {
        let provider =
            opentelemetry_sdk::trace::SdkTracerProvider::builder().with_id_generator(PresetIds::default()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let root = opentelemetry::Context::new();
            let ids = choose(&root);
            let span = tracing::info_span!("chosen");
            start_with(&span, root.clone(), ids);
            let context = span.context();
            let started = context.span().span_context().clone();
            assert_eq!((started.trace_id(), started.span_id()), ids);

            // A child continues the trace with an id of its own.
            let child_ids = choose(&context);
            assert_eq!(child_ids.0, ids.0);
            let child = tracing::info_span!("child");
            start_with(&child, context.clone(), child_ids);
            let child_context = child.context();
            assert_eq!(child_context.span().span_context().span_id(), child_ids.1);

            // A span started later, without preset ids, gets new ones.
            let other = tracing::info_span!("other");
            let other_context = other.context();
            let other_span = other_context.span();
            let other_ids = other_span.span_context();
            assert_ne!(other_ids.span_id(), ids.1);
            assert_ne!(other_ids.trace_id(), ids.0);
        });
    }
}
