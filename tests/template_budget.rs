//! Templates that would stall or kill the process (issue 12): each is refused when saved, or
//! fails only its own queued webhook, while the server keeps serving and the other webhooks
//! of the same event are sent. And the escaping holes: `cycle`, quotes inside tags.

mod common;

use std::time::Duration;

use common::{TestApp, each_backend, receiver::Receiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";

const DOUBLING: &str = "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{\"n\":{{ s | size }}}";
const TABLEROW: &str = "{% tablerow i in (1..2000000000) %}{% endtablerow %}";
const NESTED: &str =
    "{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}{% endfor %}{% endfor %}{% endfor %}";
/// Loops over item data: nothing to check when saved, bounded while rendering.
const DATA_LOOPS: &str =
    "{% for a in item.tags %}{% for b in item.tags %}{% for c in item.tags %}{% endfor %}{% endfor %}{% endfor %}{}";
const SPLIT_LOOPS: &str = "{% assign cs = item.name | split: '' %}{% for a in cs %}{% for b in cs %}{% for c in cs %}{% endfor %}{% endfor %}{% endfor %}{}";

fn hook(receiver: &Receiver, name: &str, payload: Option<&str>) -> Value {
    let mut input = json!({"name": name, "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url(&format!("/{name}"))});
    if let Some(payload) = payload {
        input["useDefaultPayload"] = json!(false);
        input["payload"] = json!(payload);
    }
    input
}

/// The first error of a request that must fail.
async fn refusal(app: &TestApp, input: Value) -> Value {
    let response = app.query(CREATE_WEBHOOK, json!({"input": input})).await;
    let error = response["errors"][0].clone();
    assert!(error.is_object(), "expected a refusal ({:?}): {response}", app.backend);
    error
}

/// One Ticket created; the bad webhook's row fails with `reason`, the healthy one is sent.
async fn only_the_bad_row_fails(app: &TestApp, receiver: &Receiver, reason: &str) {
    let tags: Vec<u32> = (0..100).collect();
    let name = "n".repeat(100);
    app.data(
        CREATE_ITEM,
        json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name, "fields": {"tags": tags}}}),
    )
    .await;
    let rows = app.wait_queue(2, &["SENT", "FAILED"]).await;
    let failed: Vec<&Value> = rows.iter().filter(|r| r["status"] == "FAILED").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    let last_error = failed[0]["lastError"].as_str().unwrap_or_default();
    assert!(last_error.starts_with("payload: rendering stopped") && last_error.contains(reason), "{last_error}");
    assert_eq!(failed[0]["sentTry"], 0, "never sent");
    let sent = receiver.wait_for(1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/healthy");
    // The server still serves.
    assert_eq!(app.data("{ webhooks { totalCount } }", json!({})).await["webhooks"]["totalCount"], 2);
}

#[tokio::test]
async fn a_doubling_string_fails_only_its_own_row() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "doubling", Some(DOUBLING))})).await;
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "healthy", None)})).await;
        only_the_bad_row_fails(app, &receiver, "more than 1048576 bytes").await;
        // Now that a Ticket is stored, saving it again is refused, naming the payload.
        let error = refusal(app, hook(&receiver, "again", Some(DOUBLING))).await;
        assert_eq!(error["extensions"]["code"], "VALIDATION", "{error}");
        assert_eq!(error["extensions"]["field"], "payload", "{error}");
        assert!(error["message"].as_str().unwrap_or_default().contains("more than 1048576 bytes"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn loops_over_item_data_fail_only_their_own_row() {
    for payload in [DATA_LOOPS, SPLIT_LOOPS] {
        each_backend(async |app| {
            let receiver = Receiver::start().await;
            app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "loops", Some(payload))})).await;
            app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "healthy", None)})).await;
            only_the_bad_row_fails(app, &receiver, "more than 10000 loop iterations").await;
        })
        .await;
    }
}

#[tokio::test]
async fn huge_literal_loops_are_refused_when_saved_with_their_place() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        for payload in [TABLEROW, NESTED] {
            let error = refusal(app, hook(&receiver, "huge", Some(payload))).await;
            let extensions = &error["extensions"];
            assert_eq!(extensions["code"], "VALIDATION", "{error}");
            assert_eq!(extensions["field"], "payload", "{error}");
            assert_eq!(extensions["line"], 1, "{error}");
            assert!(extensions["column"].as_u64().is_some_and(|c| c >= 1), "{error}");
        }
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "healthy", None)})).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
        assert_eq!(receiver.wait_for(1, WAIT).await[0].path, "/healthy");
    })
    .await;
}

#[tokio::test]
async fn template_errors_name_the_setting_line_and_column() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let mut header = hook(&receiver, "h", None);
        header["customHeaders"] = json!({"X-Team": "{{ item.name | nope }}"});
        let mut url = hook(&receiver, "u", None);
        url["url"] = json!("https://h.example/{% if %}");
        let cases = [
            (hook(&receiver, "p", Some("{\n  \"a\": \"{{ item.name | nosuchfilter }}\"\n}")), "payload", Some(2)),
            (header, "customHeaders.X-Team", Some(1)),
            (url, "url", Some(1)),
        ];
        for (input, field, line) in cases {
            let error = refusal(app, input).await;
            assert_eq!(error["extensions"]["code"], "VALIDATION", "{error}");
            assert_eq!(error["extensions"]["field"], field, "{error}");
            assert_eq!(error["extensions"]["line"].as_u64(), line, "{error}");
            assert!(error["message"].as_str().unwrap_or_default().starts_with(field), "{error}");
        }
    })
    .await;
}

#[tokio::test]
async fn cycle_and_quotes_inside_tags_cannot_break_out_of_a_json_string() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let payload = r#"{"a":"{% cycle item.name %}","b":"{% assign q = '{{' %}{{ item.name }}","c":"{% assign r = "}}" %}{{ item.name }}"}"#;
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "escaped", Some(payload))})).await;
        let name = r#"x","admin":true,"y":"\"#;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name}})).await;
        let request = receiver.wait_for(1, WAIT).await.remove(0);
        assert_eq!(request.json(), json!({"a": name, "b": name, "c": name}));
    })
    .await;
}

#[tokio::test]
async fn an_update_event_fails_only_the_bad_row_too() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        for (name, payload) in [("loops", Some(DATA_LOOPS)), ("healthy", None)] {
            let mut input = hook(&receiver, name, payload);
            input["event"] = json!("UPDATE");
            app.data(CREATE_WEBHOOK, json!({"input": input})).await;
        }
        let tags: Vec<u32> = (0..100).collect();
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "id": "7", "entityId": "0"}})).await;
        let update = "mutation($f: JSON) { updateItem(itemtype: \"Ticket\", id: \"7\", input: {fields: $f}) { id } }";
        app.data(update, json!({"f": {"tags": tags}})).await;
        let rows = app.wait_queue(2, &["SENT", "FAILED"]).await;
        let failed: Vec<&Value> = rows.iter().filter(|r| r["status"] == "FAILED").collect();
        assert_eq!(failed.len(), 1, "{rows:?}");
        assert!(failed[0]["lastError"].as_str().unwrap_or_default().contains("loop iterations"), "{}", failed[0]);
        assert_eq!(receiver.wait_for(1, WAIT).await[0].path, "/healthy");
    })
    .await;
}

/// Each of these fails only its own row, with its reason: a filter's work is counted before it
/// runs (liquid's `uniq` compares every pair and would hold a thread for hours on 100,000
/// values), `split` is sized before it builds, and the arithmetic refuses to overflow (liquid's
/// `divided_by: -1` of the smallest whole number panics).
const FILTER_CASES: [(&str, &str, &str); 6] = [
    ("uniq", r#"{"n":{{ item.tags | uniq | size }}}"#, "rendering stopped: more than 10000 loop iterations"),
    ("sort", r#"{"n":{{ item.tags | sort | first }}}"#, "rendering stopped: more than 10000 loop iterations"),
    (
        "split",
        r#"{% assign cs = item.s | split: '' %}{"n":{{ cs | size }}}"#,
        "rendering stopped: a value of more than 1048576 bytes",
    ),
    ("divided", r#"{"n":{{ item.n | divided_by: -1 }}}"#, "rendering failed: "),
    ("abs", r#"{"n":{{ item.n | abs }}}"#, "rendering failed: "),
    ("plus", r#"{"n":{{ item.m | plus: 1 }}}"#, "rendering failed: "),
];

#[tokio::test]
async fn filters_over_item_data_fail_only_their_own_rows() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let mut reasons = std::collections::HashMap::new();
        for (name, payload, reason) in FILTER_CASES {
            let id = app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, name, Some(payload))})).await;
            reasons.insert(id["createWebhook"]["id"].to_string().replace('"', ""), reason);
        }
        let healthy =
            hook(&receiver, "healthy", Some(r#"{"tags":{{ item.tags | size }},"n":{{ item.n | modulo: -1 }}}"#));
        app.data(CREATE_WEBHOOK, json!({"input": healthy})).await;
        let tags: Vec<u32> = (0..100_000).collect();
        let fields = json!({"tags": tags, "s": "x".repeat(300_000), "n": i64::MIN, "m": i64::MAX});
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "fields": fields}})).await;
        let rows = app.wait_queue(FILTER_CASES.len() + 1, &["SENT", "FAILED"]).await;
        let mut failed = 0;
        for row in &rows {
            let Some(reason) = reasons.get(&row["webhookId"].to_string().replace('"', "")) else { continue };
            failed += 1;
            assert_eq!(row["status"], "FAILED", "{row}");
            let last_error = row["lastError"].as_str().unwrap_or_default();
            assert!(last_error.starts_with(&format!("payload: {reason}")), "{last_error}");
            if reason.ends_with("failed: ") {
                assert!(last_error.contains("out of range (overflow)"), "{last_error}");
            }
        }
        assert_eq!(failed, FILTER_CASES.len(), "{rows:?}");
        let sent = receiver.wait_for(1, WAIT).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].path, "/healthy");
        assert_eq!(sent[0].json(), json!({"tags": 100_000, "n": 0}));
        assert_eq!(app.data("{ webhooks { totalCount } }", json!({})).await["webhooks"]["totalCount"], 7);
    })
    .await;
}

#[tokio::test]
async fn a_value_captured_is_escaped_once_where_it_is_printed() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let payload = r#"{"a":"{% capture c %}{% cycle item.name %}{% endcapture %}{{ c }}","b":"{% capture d %}<{{ item.name }}>{% endcapture %}{{ d }}"}"#;
        app.data(CREATE_WEBHOOK, json!({"input": hook(&receiver, "captured", Some(payload))})).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": r#"x"y\z"#}})).await;
        let request = receiver.wait_for(1, WAIT).await.remove(0);
        assert_eq!(String::from_utf8_lossy(&request.body), r#"{"a":"x\"y\\z","b":"<x\"y\\z>"}"#);
    })
    .await;
}

/// `triggerEvent` renders before the writer for the item as its snapshot will leave it; the
/// rows are used only when that forecast equals the item the write stores (else the writer
/// renders again), so the forecast must be exactly what the database gives back.
#[tokio::test]
async fn a_trigger_snapshot_is_forecast_as_the_write_stores_it() {
    use hookline::service::{
        forecast,
        items::{self, Replacement},
    };
    each_backend(async |app| {
        let fields = json!({"b": 1, "a": {"z": 1, "y": [1, 2]}, "s": "x"});
        let input = json!({"itemtype": "Ticket", "id": "5", "entityId": "0", "name": "a", "fields": fields});
        app.data(CREATE_ITEM, json!({"input": input})).await;
        let stored = items::get(&app.state.db, "Ticket", "5").await.expect("read").expect("stored");
        let snapshot = json!({"z": 2, "a": {"y": [3], "x": null}, "b": 1});
        let new = Replacement {
            name: Some(Some("renamed".into())),
            entity_id: Some(0),
            fields: snapshot.as_object().cloned(),
            parent: Some((None, None)),
            actor: Some(hookline::domain::item::Actor { user: "sync".into(), profile: "event-writer".into() }),
        };
        let now = forecast::write_time();
        let expected = forecast::replaced(&stored, &new, now).expect("a forecast");
        let (written, changes) =
            items::replace(&app.state.db, &app.state.cache, None, stored.clone(), new, now).await.expect("replaced");
        assert!(!changes.is_empty());
        assert_eq!(changes, items::write_changes(&stored, &expected), "the forecast's changes are the write's");
        let reread = items::get(&app.state.db, "Ticket", "5").await.expect("read").expect("stored");
        assert_eq!(expected, written, "{:?}", app.backend);
        assert_eq!(expected, reread, "{:?}", app.backend);
    })
    .await;
}

#[tokio::test]
async fn trigger_events_render_each_snapshot_and_trash_state() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        for event in ["UPDATE", "DELETE", "RESTORE"] {
            let mut input = hook(
                &receiver,
                &event.to_lowercase(),
                Some(r#"{"name":"{{ item.name }}","deleted":{{ item.is_deleted | json }},"n":{{ item.n | json }}}"#),
            );
            input["event"] = json!(event);
            app.data(CREATE_WEBHOOK, json!({"input": input})).await;
        }
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "id": "9", "entityId": "0", "name": "a"}})).await;
        let trigger = "mutation($input: TriggerEventInput!) { triggerEvent(input: $input) { queued { id } } }";
        let input = |event: &str, snapshot: Value| {
            json!({"input": {"itemtype": "Ticket", "itemId": "9", "event": event, "item": snapshot}})
        };
        let snapshot = |name: &str, n: i64| json!({"name": name, "entityId": 0, "fields": {"n": n}});
        app.data(trigger, input("UPDATE", snapshot("b", 1))).await;
        app.data(trigger, input("DELETE", snapshot("c", 2))).await;
        app.data(trigger, input("RESTORE", Value::Null)).await;
        let mut sent = receiver.wait_for(3, WAIT).await;
        sent.sort_by(|a, b| a.path.cmp(&b.path));
        let got: Vec<(String, Value)> = sent.iter().map(|r| (r.path.clone(), r.json())).collect();
        assert_eq!(
            got,
            vec![
                ("/delete".to_owned(), json!({"name": "c", "deleted": true, "n": 2})),
                ("/restore".to_owned(), json!({"name": "c", "deleted": false, "n": 2})),
                ("/update".to_owned(), json!({"name": "b", "deleted": false, "n": 1})),
            ]
        );
    })
    .await;
}
