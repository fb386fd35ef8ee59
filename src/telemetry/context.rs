//! The W3C trace context (`traceparent`): read from callers and queued rows, written on rows
//! and attempts. Spans get their ids from the OpenTelemetry layer; where spans carry none (no
//! subscriber installed, as when the library is embedded), ids are made up, so that every
//! attempt still sends a valid `traceparent`, in the stored trace when there is one.

use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId},
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span a trace continues from, elsewhere: a caller's, or the event that queued a row.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteParent(SpanContext);

impl RemoteParent {
    /// Reads a `traceparent` value as W3C Trace Context says (`00-<32 hex>-<16 hex>-<2 hex>`,
    /// lowercase, ids not all zeros; a later version may add fields); `None` when it is not a
    /// valid one.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let [version, trace, span, flags, rest @ ..] = parts.as_slice() else { return None };
        if !hex(version, 2) || *version == "ff" || (*version == "00" && !rest.is_empty()) {
            return None;
        }
        if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace = TraceId::from_hex(trace).ok()?;
        let span = SpanId::from_hex(span).ok()?;
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
        let context = SpanContext::new(trace, span, flags, true, Default::default());
        context.is_valid().then_some(Self(context))
    }

    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }
}

/// Makes `span` a child of `parent` in its trace. Call it before the span is entered.
pub fn continue_trace(span: &Span, parent: &RemoteParent) {
    // Without the OpenTelemetry layer there is no trace to continue; `traceparent` then keeps
    // the parent's trace id itself.
    let _ = span.set_parent(Context::new().with_remote_span_context(parent.0.clone()));
}

/// The `traceparent` that names `span`: its trace and its own id. When the span carries no
/// trace (no OpenTelemetry layer), a new span id in `parent`'s trace, or a new trace.
pub fn traceparent(span: &Span, parent: Option<&RemoteParent>) -> String {
    let context = span.context();
    let own = context.span();
    let own = own.span_context();
    if own.is_valid() {
        return format(own.trace_id(), own.span_id(), own.trace_flags());
    }
    let ids = RandomIdGenerator::default();
    match parent {
        Some(RemoteParent(parent)) => format(parent.trace_id(), ids.new_span_id(), parent.trace_flags()),
        None => format(ids.new_trace_id(), ids.new_span_id(), TraceFlags::SAMPLED),
    }
}

fn format(trace: TraceId, span: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace}-{span}-{:02x}", flags.to_u8())
}

/// The span of one raised event, a child of the current span (the operation that raises it).
/// Create it where the caller is, and raise the event in it: render its rows inside it and
/// submit the write from inside it ([`crate::writer::Writer::write`] carries the caller's span
/// into the job; jobs that run many events, grouped creates and batches, enter each event's
/// span themselves). The writer runs many callers' jobs in one task: the span current there
/// is nobody's event.
pub fn event_span(itemtype: &str, event: &str, item_id: &str) -> Span {
    tracing::info_span!(
        "event",
        otel.name = %format_args!("event {event} {itemtype}"),
        otel.kind = "internal",
        itemtype,
        event,
        item_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_read_and_a_malformed_one_is_ignored() {
        let parent = RemoteParent::parse(SAMPLE).expect("valid");
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let unsampled = RemoteParent::parse(&SAMPLE.replace("-01", "-00")).expect("valid");
        assert_eq!(traceparent(&Span::none(), Some(&unsampled)).rsplit('-').next(), Some("00"));
        let later = RemoteParent::parse(&format!("{}-more", SAMPLE.replacen("00", "01", 1))).expect("a later version");
        assert_eq!(later.trace_id(), parent.trace_id());
        for bad in [
            "",
            "garbage",
            "00-4bf9-00f0-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(RemoteParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_a_layer_the_parents_trace_is_kept_with_a_new_span_id() {
        let parent = RemoteParent::parse(SAMPLE).expect("valid");
        let child = traceparent(&Span::none(), Some(&parent));
        let parts: Vec<&str> = child.split('-').collect();
        assert_eq!(parts.len(), 4, "{child}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"), "{child}");
        assert!(parts[2].len() == 16 && parts[2] != "00f067aa0ba902b7", "{child}");
        let fresh = RemoteParent::parse(&traceparent(&Span::none(), None)).expect("a valid new trace");
        assert_ne!(fresh.trace_id(), parent.trace_id());
    }
}
