//! Traces of the real binary: spans exported to an OTLP/HTTP receiver (operation → event →
//! attempt, in the caller's trace), and the `traceparent` every attempt sends, retries
//! included, with or without a collector.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    binary::{Server, databases, drop_database, quick_env},
    receiver::{Receiver, Recorded, Reply},
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
};
use prost::Message;
use serde_json::{Value, json};

/// The caller's trace and span, as its `traceparent` names them.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

const CREATE_TICKET: &str = "mutation CreateTicket($input: ItemInput!) { createItem(input: $input) { id } }";

/// Waits until `path` got `count` requests.
async fn requests_to(receiver: &Receiver, path: &str, count: usize) -> Vec<Recorded> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let requests = receiver.requests_to(path);
        if requests.len() >= count {
            return requests;
        }
        assert!(std::time::Instant::now() < deadline, "{count} requests to {path} expected, got {requests:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(version, trace id, span id, flags)` of a `traceparent`.
fn traceparent(request: &Recorded) -> (String, String, String, String) {
    let value = request.header("traceparent").unwrap_or_else(|| panic!("no traceparent: {request:?}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert!(parts[1].len() == 32 && parts[2].len() == 16, "{value}");
    assert!(parts[1..3].iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())), "{value}");
    assert!(parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16), "{value}");
    (parts[0].into(), parts[1].into(), parts[2].into(), parts[3].into())
}

/// A span as the OTLP receiver got it.
#[derive(Debug, Clone)]
struct SpanSeen {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
    error: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<AnyValue>) -> String {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span posted to the receiver's `/v1/traces`, decoded from OTLP protobuf.
fn exported(receiver: &Receiver) -> Vec<SpanSeen> {
    let mut spans = Vec::new();
    for request in receiver.requests_to("/v1/traces") {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf export");
        for resource in export.resource_spans {
            let service = resource.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == "service.name");
            assert_eq!(service.map(|a| text(a.value.clone())).as_deref(), Some("hookline"));
            for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                let error = span.status.as_ref().is_some_and(|s| s.code == 2);
                spans.push(SpanSeen {
                    trace: hex(&span.trace_id),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name,
                    attributes: span.attributes.into_iter().map(|a| (a.key, text(a.value))).collect(),
                    error,
                });
            }
        }
    }
    spans
}

fn named<'a>(spans: &'a [SpanSeen], name: &str) -> Vec<&'a SpanSeen> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_receiver_from_the_mutation_to_each_attempt_in_the_callers_trace() {
    for (name, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        // The first attempt fails: the retry must join the same trace.
        receiver.script("/hook", vec![Reply::Status(500)]);
        let otlp = [("HOOKLINE_OTLP_ENDPOINT", receiver.url("/"))];
        let mut server = Server::start(dir.path(), &quick_env(dir.path(), &database, &otlp));
        let webhook_id = server.create_webhook("traced", json!({"url": receiver.url("/hook"), "sentTry": 2})).await;
        let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": "traced"});
        let created =
            server.data_with_headers(&[("traceparent", &caller)], CREATE_TICKET, json!({"input": input})).await;
        let item_id = created["createItem"]["id"].as_str().expect("id").to_owned();
        let deliveries = requests_to(&receiver, "/hook", 2).await;
        // A graceful stop sends the spans still waiting for their batch.
        assert!(server.terminate(), "hookline stops cleanly ({})", name);
        let spans = exported(&receiver);
        let context = format!("{} ({}): {spans:#?}", name, spans.len());

        let operation = named(&spans, "mutation CreateTicket");
        assert_eq!(operation.len(), 1, "{context}");
        let operation = operation[0];
        assert_eq!((operation.trace.as_str(), operation.parent.as_str()), (CALLER_TRACE, CALLER_SPAN), "{context}");
        assert_eq!(operation.attributes["graphql.operation.type"], "mutation");
        assert_eq!(operation.attributes["graphql.operation.name"], "CreateTicket");

        let event = named(&spans, "event new Ticket");
        assert_eq!(event.len(), 1, "{context}");
        let event = event[0];
        assert_eq!((event.trace.as_str(), event.parent.as_str()), (CALLER_TRACE, operation.id.as_str()), "{context}");
        assert_eq!(
            (event.attributes["itemtype"].as_str(), event.attributes["event"].as_str()),
            ("Ticket", "new"),
            "{context}"
        );
        assert_eq!(event.attributes["item_id"], item_id);

        let attempts = named(&spans, "POST 127.0.0.1");
        assert_eq!(attempts.len(), 2, "{context}");
        let delivery_id = deliveries[0].header("x-hookline-delivery").expect("delivery id");
        for attempt in &attempts {
            assert_eq!(
                (attempt.trace.as_str(), attempt.parent.as_str()),
                (CALLER_TRACE, event.id.as_str()),
                "{context}"
            );
            assert_eq!(attempt.attributes["webhook_id"], webhook_id);
            assert_eq!(attempt.attributes["delivery_id"], delivery_id);
            assert_eq!(attempt.attributes["target_host"], "127.0.0.1");
            assert!(attempt.attributes["queued_webhook_id"].parse::<i64>().is_ok(), "{context}");
            assert!(attempt.attributes["duration_ms"].parse::<u64>().is_ok(), "{context}");
        }
        let by_status: HashMap<&str, &SpanSeen> =
            attempts.iter().map(|a| (a.attributes["status_code"].as_str(), *a)).collect();
        assert_eq!(by_status["500"].attributes["outcome"], "retry");
        assert!(by_status["500"].error, "a failed attempt is an error span: {context}");
        assert_eq!(by_status["200"].attributes["outcome"], "sent");
        assert!(!by_status["200"].error);

        // Each request names its attempt's span in the caller's trace, retry included.
        let mut sent: Vec<String> = deliveries
            .iter()
            .map(|request| {
                let (version, trace, span, flags) = traceparent(request);
                assert_eq!((version.as_str(), trace.as_str(), flags.as_str()), ("00", CALLER_TRACE, "01"));
                span
            })
            .collect();
        let mut spans_of_attempts: Vec<String> = attempts.iter().map(|a| a.id.clone()).collect();
        sent.sort();
        spans_of_attempts.sort();
        assert_eq!(sent, spans_of_attempts, "{context}");

        // Without a caller's traceparent, an operation starts a trace of its own.
        let anonymous = named(&spans, "mutation");
        assert_eq!(anonymous.len(), 1, "createWebhook: {context}");
        assert!(anonymous[0].trace != CALLER_TRACE && anonymous[0].parent.is_empty(), "{context}");
        drop_database(&database).await;
    }
}

/// The trace of the `n`th traced call.
fn trace(n: u32) -> String {
    format!("{:032x}", 0xfeed_0000 + n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_event_joins_the_trace_of_the_mutation_that_raised_it() {
    for (name, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        let otlp = [("HOOKLINE_OTLP_ENDPOINT", receiver.url(""))];
        let mut server = Server::start(dir.path(), &quick_env(dir.path(), &database, &otlp));
        let hooks = [
            ("Ticket", "NEW"),
            ("Ticket", "UPDATE"),
            ("Ticket", "DELETE"),
            ("Ticket", "RESTORE"),
            ("Ticket", "PURGE"),
            ("ITILFollowup", "PURGE"),
        ];
        for (itemtype, event) in hooks {
            let url = receiver.url(&format!("/{itemtype}/{event}"));
            server.create_webhook("traced", json!({"itemtype": itemtype, "event": event, "url": url})).await;
        }
        let calls: [(u32, &str, Value); 8] = [
            (
                1,
                "mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }",
                json!({"i": [{"itemtype": "Ticket", "id": "t1", "entityId": "0"}, {"itemtype": "Ticket", "id": "t2", "entityId": "0"}]}),
            ),
            (
                2,
                "mutation($i: ItemInput!) { createItem(input: $i) { id } }",
                json!({"i": {"itemtype": "ITILFollowup", "id": "f1", "entityId": "0", "parentItemtype": "Ticket", "parentId": "t1"}}),
            ),
            (
                3,
                "mutation { updateItem(itemtype: \"Ticket\", id: \"t1\", input: {name: \"changed\"}) { id } }",
                json!({}),
            ),
            (4, "mutation { deleteItem(itemtype: \"Ticket\", id: \"t2\") { id } }", json!({})),
            (5, "mutation { restoreItem(itemtype: \"Ticket\", id: \"t2\") { id } }", json!({})),
            (
                6,
                "mutation($i: [TriggerEventInput!]!) { triggerEvents(inputs: $i) { queued { id } } }",
                json!({"i": [{"itemtype": "Ticket", "itemId": "t1", "event": "UPDATE"}, {"itemtype": "Ticket", "itemId": "t2", "event": "UPDATE"}]}),
            ),
            (7, "mutation { purgeItem(itemtype: \"Ticket\", id: \"t1\") }", json!({})),
            (
                8,
                "mutation { triggerEvent(input: {itemtype: \"Ticket\", itemId: \"t2\", event: PURGE}) { queued { id } } }",
                json!({}),
            ),
        ];
        for (n, query, variables) in calls {
            let caller = format!("00-{}-{CALLER_SPAN}-01", trace(n));
            server.data_with_headers(&[("traceparent", &caller)], query, variables).await;
        }
        let expected: HashMap<(&str, &str), Vec<String>> = HashMap::from([
            (("/Ticket/NEW", "t1"), vec![trace(1)]),
            (("/Ticket/NEW", "t2"), vec![trace(1)]),
            (("/Ticket/UPDATE", "t1"), vec![trace(3), trace(6)]),
            (("/Ticket/UPDATE", "t2"), vec![trace(6)]),
            (("/Ticket/DELETE", "t2"), vec![trace(4)]),
            (("/Ticket/RESTORE", "t2"), vec![trace(5)]),
            (("/Ticket/PURGE", "t1"), vec![trace(7)]),
            (("/ITILFollowup/PURGE", "f1"), vec![trace(7)]),
            (("/Ticket/PURGE", "t2"), vec![trace(8)]),
        ]);
        let total = expected.values().map(Vec::len).sum();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let deliveries = loop {
            let deliveries: Vec<Recorded> =
                receiver.requests().into_iter().filter(|r| r.path != "/v1/traces").collect();
            if deliveries.len() >= total {
                break deliveries;
            }
            assert!(std::time::Instant::now() < deadline, "{total} deliveries expected: {deliveries:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut got: HashMap<(&str, &str), Vec<String>> = HashMap::new();
        for delivery in &deliveries {
            let item = delivery.json()["item"]["id"].as_str().expect("item id").to_owned();
            let key = *expected.keys().find(|(path, id)| *path == delivery.path && *id == item).expect("expected");
            got.entry(key).or_default().push(traceparent(delivery).1);
        }
        for traces in got.values_mut() {
            traces.sort();
        }
        assert_eq!(got, expected, "{}", name);
        assert!(server.terminate(), "{}", name);

        // Each attempt's span hangs under an event's, which hangs under its operation's (a
        // purged child's event under its parent's), in the trace the caller named.
        let spans = exported(&receiver);
        let by_id: HashMap<&str, &SpanSeen> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
        let attempts = named(&spans, "POST 127.0.0.1");
        assert_eq!(attempts.len(), total, "{}", name);
        for attempt in attempts {
            let mut chain = vec![attempt.name.clone()];
            let mut span = attempt;
            while let Some(parent) = by_id.get(span.parent.as_str()) {
                assert_eq!(parent.trace, attempt.trace, "one trace: {chain:?}");
                chain.push(parent.name.clone());
                span = parent;
            }
            assert_eq!(span.parent, CALLER_SPAN, "the chain ends at the caller's span: {chain:?}");
            assert!(chain[1].starts_with("event ") && span.name.starts_with("mutation"), "{chain:?}");
            if chain[1] == "event purge ITILFollowup" {
                assert_eq!(chain[2], "event purge Ticket", "a purged child's event is its parent's child");
            }
        }
        let events_of = |n: u32| {
            let mut names: Vec<&str> = spans
                .iter()
                .filter(|s| s.trace == trace(n) && s.name.starts_with("event"))
                .map(|s| s.name.as_str())
                .collect();
            names.sort();
            names
        };
        assert_eq!(events_of(1), ["event new Ticket", "event new Ticket"]);
        assert_eq!(events_of(6), ["event update Ticket", "event update Ticket"]);
        assert_eq!(events_of(7), ["event purge ITILFollowup", "event purge Ticket"]);
        drop_database(&database).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_every_attempt_still_sends_a_traceparent_in_the_mutations_trace() {
    for (name, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        receiver.script("/continued", vec![Reply::Status(503)]);
        receiver.script("/started", vec![Reply::Status(503)]);
        let server = Server::start(dir.path(), &quick_env(dir.path(), &database, &[]));
        for (path, event) in [("/continued", "NEW"), ("/started", "UPDATE")] {
            server.create_webhook("traced", json!({"url": receiver.url(path), "event": event, "sentTry": 2})).await;
        }
        let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": "first"});
        let created =
            server.data_with_headers(&[("traceparent", &caller)], CREATE_TICKET, json!({"input": input})).await;
        let continued = requests_to(&receiver, "/continued", 2).await;
        // The same item updated without a traceparent: a new trace, the same on both attempts.
        let update =
            "mutation($id: ID!) { updateItem(itemtype: \"Ticket\", id: $id, input: {name: \"second\"}) { id } }";
        server.data(update, json!({"id": created["createItem"]["id"]})).await;
        let started = requests_to(&receiver, "/started", 2).await;

        let (first, second) = (traceparent(&continued[0]), traceparent(&continued[1]));
        assert_eq!((first.1.as_str(), second.1.as_str()), (CALLER_TRACE, CALLER_TRACE), "{}", name);
        assert!(first.2 != second.2 && first.2 != CALLER_SPAN, "each attempt has a span of its own");
        let (first, second) = (traceparent(&started[0]), traceparent(&started[1]));
        assert_eq!(first.1, second.1, "a retry stays in its mutation's trace ({})", name);
        assert_ne!(first.1, CALLER_TRACE);
        assert_ne!(first.2, second.2);
        drop_database(&database).await;
    }
}
