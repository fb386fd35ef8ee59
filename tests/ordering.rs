//! Delivery control (issue 16): per-item order (`ordered`), the `changes` of update events,
//! and coalescing (`coalesceSeconds`), through the real server and a real receiver.

mod common;

use std::time::Duration;

use common::{
    POSTGRES_ENV, TestApp,
    binary::{Server, databases, drop_database, quick_env},
    each_backend, each_backend_with,
    receiver::{Receiver, Recorded, Reply},
    ws,
};
use rand::Rng;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const UPDATE: &str =
    "mutation($id: ID!, $f: JSON) { updateItem(itemtype: \"Ticket\", id: $id, input: {fields: $f}) { id } }";
const ROWS: &str = "query($w: ID) { queuedWebhooks(webhookId: $w, first: 300) { edges { node { id itemId status \
                    sentTry lastError } } } }";
/// Templates see the item and the write's changes.
const WITH_CHANGES: &str = r#"{"item": {{ item | json }}, "changes": {{ changes | json }}}"#;

async fn webhook(app: &TestApp, input: Value) -> String {
    let mut base = json!({"name": "w", "entityId": "0", "itemtype": "Ticket", "event": "UPDATE"});
    base.as_object_mut().expect("object").extend(input.as_object().expect("object").clone());
    app.data(CREATE_WEBHOOK, json!({"input": base})).await["createWebhook"]["id"].as_str().expect("id").to_owned()
}

async fn ticket(app: &TestApp, fields: Value) -> String {
    let query = "mutation($f: JSON) { createItem(input: {itemtype: \"Ticket\", entityId: \"0\", name: \"t\", fields: $f}) { id } }";
    app.data(query, json!({"f": fields})).await["createItem"]["id"].as_str().expect("id").to_owned()
}

/// The rows of a webhook, oldest first.
async fn rows(app: &TestApp, webhook: &str) -> Vec<Value> {
    let data = app.data(ROWS, json!({"w": webhook})).await;
    let mut rows: Vec<Value> =
        data["queuedWebhooks"]["edges"].as_array().expect("edges").iter().map(|e| e["node"].clone()).collect();
    rows.reverse();
    rows
}

/// Waits until the webhook has `count` rows, none of them still to be sent.
async fn settled(app: &TestApp, webhook: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = rows(app, webhook).await;
        let done = rows.iter().all(|r| matches!(r["status"].as_str(), Some("SENT" | "FAILED" | "CANCELLED")));
        if rows.len() == count && done {
            return rows;
        }
        assert!(std::time::Instant::now() < deadline, "not settled ({:?}): {rows:?}", app.backend);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Answers for `count` requests: 500 or 200 at random (`failing` of them 500 on average).
fn random_replies(count: usize, failing: f64) -> Vec<Reply> {
    let mut rng = rand::rng();
    (0..count).map(|_| Reply::Status(if rng.random_bool(failing) { 500 } else { 200 })).collect()
}

/// The requests that were answered 200: the `k`th request to a path got the `k`th scripted
/// reply (the receiver records and answers under one lock), 200 past the script.
fn answered_ok(requests: &[Recorded], script: &[Reply]) -> Vec<bool> {
    (0..requests.len()).map(|k| !matches!(script.get(k), Some(Reply::Status(500)))).collect()
}

/// Checks, for each item, that its attempts carried `n` in order (never an attempt of a later
/// event before the earlier one's success) and that each of 1..=`events` succeeded once.
fn assert_in_event_order(requests: &[Recorded], ok: &[bool], items: &[String], events: i64) {
    for item in items {
        let attempts: Vec<(i64, bool)> = requests
            .iter()
            .zip(ok)
            .filter(|(r, _)| r.json()["item"]["id"].to_string().trim_matches('"') == item.as_str())
            .map(|(r, ok)| (r.json()["item"]["n"].as_i64().expect("n"), *ok))
            .collect();
        let successes: Vec<i64> = attempts.iter().filter(|(_, ok)| *ok).map(|(n, _)| *n).collect();
        assert_eq!(successes, (1..=events).collect::<Vec<_>>(), "item {item}: {attempts:?}");
        let mut expected = 1;
        for (n, ok) in &attempts {
            assert_eq!(*n, expected, "item {item}: an attempt out of turn in {attempts:?}");
            if *ok {
                expected += 1;
            }
        }
    }
}

#[tokio::test]
async fn order_and_coalescing_are_webhook_settings_an_admin_changes() {
    each_backend(async |app| {
        let hook = webhook(app, json!({"url": "https://h.example/u"})).await;
        let read = "query($id: ID!) { webhook(id: $id) { ordered coalesceSeconds history(first: 10) { edges { node { message oldValue newValue } } } } }";
        let before = app.data(read, json!({"id": hook})).await["webhook"].clone();
        assert_eq!((before["ordered"].clone(), before["coalesceSeconds"].clone()), (json!(false), json!(0)), "the defaults");
        let patch = "mutation($id: ID!, $p: WebhookPatch!) { updateWebhook(id: $id, input: $p) { ordered coalesceSeconds } }";
        let changed = app.data(patch, json!({"id": hook, "p": {"ordered": true, "coalesceSeconds": 30}})).await;
        assert_eq!(changed["updateWebhook"], json!({"ordered": true, "coalesceSeconds": 30}));
        let history = app.data(read, json!({"id": hook})).await["webhook"]["history"]["edges"].to_string();
        assert!(history.contains("ordered") && history.contains("coalesceSeconds"), "{history}");
        app.assert_error(patch, json!({"id": hook, "p": {"coalesceSeconds": -5}}), "VALIDATION", "coalesceSeconds").await;
        let operator = app.client_as("olga", "operator", json!([])).await;
        let refused = app.query_with(&operator, patch, json!({"id": hook, "p": {"ordered": false}})).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
        let after = app.data(read, json!({"id": hook})).await["webhook"].clone();
        assert_eq!((after["ordered"].clone(), after["coalesceSeconds"].clone()), (json!(true), json!(30)), "nothing lost");
    })
    .await;
}

#[tokio::test]
async fn ordered_deliveries_arrive_in_event_order_while_the_receiver_fails_at_random() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let script = random_replies(400, 0.4);
        receiver.script("/ordered", script.clone());
        let hook = webhook(app, json!({"url": receiver.url("/ordered"), "ordered": true, "sentTry": 255})).await;
        assert_eq!(app.data("query($id: ID!) { webhook(id: $id) { ordered } }", json!({"id": hook})).await["webhook"]["ordered"], true);
        let items = [ticket(app, json!({"n": 0})).await, ticket(app, json!({"n": 0})).await];
        const EVENTS: i64 = 12;
        for n in 1..=EVENTS {
            for item in &items {
                app.data(UPDATE, json!({"id": item, "f": {"n": n}})).await;
            }
        }
        let rows = settled(app, &hook, items.len() * EVENTS as usize).await;
        assert!(rows.iter().all(|r| r["status"] == "SENT"), "{rows:?}");
        let requests = receiver.requests_to("/ordered");
        assert_in_event_order(&requests, &answered_ok(&requests, &script), &items, EVENTS);
    })
    .await;
}

#[tokio::test]
async fn an_item_waiting_for_its_earlier_delivery_holds_back_no_other_item() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let url = receiver.url("/o/{{ item.id }}");
        let hook = webhook(app, json!({"url": url, "ordered": true, "sentTry": 255})).await;
        let (stuck, free) = (ticket(app, json!({})).await, ticket(app, json!({})).await);
        receiver.script(&format!("/o/{stuck}"), vec![Reply::Status(500); 10_000]);
        for n in 1..=3 {
            app.data(UPDATE, json!({"id": stuck, "f": {"n": n}})).await;
            app.data(UPDATE, json!({"id": free, "f": {"n": n}})).await;
        }
        let sent = receiver.wait_for_path(&format!("/o/{free}"), 3, WAIT).await;
        let ns: Vec<Value> = sent.iter().map(|r| r.json()["item"]["n"].clone()).collect();
        assert_eq!(ns, [json!(1), json!(2), json!(3)], "the other item goes, in order");
        // The stuck item's first row keeps failing; its later rows have not been tried.
        let stuck_rows: Vec<Value> =
            rows(app, &hook).await.into_iter().filter(|r| r["itemId"] == stuck.as_str()).collect();
        assert_eq!(stuck_rows.len(), 3);
        assert!(matches!(stuck_rows[0]["status"].as_str(), Some("RETRYING" | "SENDING")), "{stuck_rows:?}");
        for later in &stuck_rows[1..] {
            assert_eq!(
                (later["status"].as_str(), later["sentTry"].as_i64()),
                (Some("PENDING"), Some(0)),
                "{stuck_rows:?}"
            );
        }
        assert!(receiver.requests_to(&format!("/o/{stuck}")).iter().all(|r| r.json()["item"]["n"] == 1));
        // Once the first is cancelled, the others go, in order.
        let cancel = "mutation($id: ID!) { cancelQueuedWebhook(id: $id) { status } }";
        let first = stuck_rows[0]["id"].clone();
        let deadline = std::time::Instant::now() + WAIT;
        while app.query(cancel, json!({"id": first})).await.get("errors").is_some() {
            assert!(std::time::Instant::now() < deadline, "the first row could not be cancelled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        receiver.script(&format!("/o/{stuck}"), Vec::new());
        settled(app, &hook, 6).await;
        let mut after: Vec<Value> = receiver
            .requests_to(&format!("/o/{stuck}"))
            .iter()
            .map(|r| r.json()["item"]["n"].clone())
            .filter(|n| *n != 1)
            .collect();
        // The second row may be sent before the failing script is lifted, and then again: its
        // attempts come before any of the third.
        after.dedup();
        assert_eq!(after, [json!(2), json!(3)]);
    })
    .await;
}

#[tokio::test]
async fn an_ordered_row_that_ends_wakes_the_next_one_without_waiting_for_a_poll() {
    // The workers look for due rows only when woken, or after an hour.
    each_backend_with(
        |config| config.delivery.poll_interval = Duration::from_secs(3600),
        async |app| {
            let receiver = Receiver::start().await;
            receiver.delay_all(Duration::from_millis(200));
            let hook = webhook(app, json!({"url": receiver.url("/w"), "ordered": true})).await;
            let item = ticket(app, json!({})).await;
            for n in 1..=3 {
                app.data(UPDATE, json!({"id": item, "f": {"n": n}})).await;
            }
            let rows = settled(app, &hook, 3).await;
            assert!(rows.iter().all(|r| r["status"] == "SENT"), "{rows:?}");
            let ns: Vec<Value> = receiver.requests_to("/w").iter().map(|r| r.json()["item"]["n"].clone()).collect();
            assert_eq!(ns, [json!(1), json!(2), json!(3)]);
        },
    )
    .await;
}

#[tokio::test]
async fn resent_rows_of_an_ordered_webhook_go_before_the_later_rows_of_their_item() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let hook = webhook(app, json!({"url": receiver.url("/r"), "ordered": true, "sentTry": 0})).await;
        let item = ticket(app, json!({})).await;
        // The first two updates fail (one attempt each), then the target comes back.
        receiver.script("/r", vec![Reply::Status(500), Reply::Status(500)]);
        for n in 1..=2 {
            app.data(UPDATE, json!({"id": item, "f": {"n": n}})).await;
        }
        let failed = settled(app, &hook, 2).await;
        assert!(failed.iter().all(|r| r["status"] == "FAILED"), "{failed:?}");
        // The receiver holds the next delivery while both are resent: they wait for it, then
        // go in event order.
        receiver.script("/r", vec![Reply::Hang(Duration::from_millis(500))]);
        app.data(UPDATE, json!({"id": item, "f": {"n": 3}})).await;
        receiver.wait_for_path("/r", 3, WAIT).await;
        let resent = app.data("mutation($w: ID) { resendFailedWebhooks(webhookId: $w) }", json!({"w": hook})).await;
        assert_eq!(resent["resendFailedWebhooks"], 2);
        app.data(UPDATE, json!({"id": item, "f": {"n": 4}})).await;
        settled(app, &hook, 4).await;
        let ns: Vec<Value> = receiver.requests_to("/r").iter().map(|r| r.json()["item"]["n"].clone()).collect();
        assert_eq!(ns, [json!(1), json!(2), json!(3), json!(1), json!(2), json!(4)]);
        assert_eq!(receiver.max_in_flight(), 1, "the resent rows waited for the one in flight, and for each other");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_holds_with_two_postgres_processes_claiming() {
    let Some((_, database)) = databases().await.into_iter().find(|(b, _)| b == "postgres") else {
        eprintln!("{POSTGRES_ENV} is not set: the two-process test needs PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let script = random_replies(1000, 0.3);
    receiver.script("/ordered", script.clone());
    let env = quick_env(dir.path(), &database, &[]);
    let first = Server::start(dir.path(), &env);
    let second = Server::start(dir.path(), &env);
    let input = json!({"event": "UPDATE", "url": receiver.url("/ordered"), "ordered": true, "sentTry": 255});
    first.create_webhook("ordered", input).await;
    const ITEMS: usize = 4;
    const EVENTS: i64 = 10;
    let create = "mutation { createItem(input: {itemtype: \"Ticket\", entityId: \"0\", name: \"t\"}) { id } }";
    let mut items = Vec::new();
    for _ in 0..ITEMS {
        items.push(first.data(create, json!({})).await["createItem"]["id"].as_str().expect("id").to_owned());
    }
    // Each item is updated in turn through both processes; the items at once.
    let servers = [(first.addr, first.token.clone()), (second.addr, second.token.clone())];
    let mut tasks = Vec::new();
    for item in items.clone() {
        let servers = servers.clone();
        tasks.push(tokio::spawn(async move {
            for n in 1..=EVENTS {
                let (addr, token) = &servers[n as usize % 2];
                let client = common::client_with(token);
                common::binary::data_at(&client, *addr, UPDATE, json!({"id": item, "f": {"n": n}})).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("clients");
    }
    let expected = ITEMS * EVENTS as usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let data = second
            .data("{ all: queuedWebhooks { totalCount } sent: queuedWebhooks(status: SENT) { totalCount } }", json!({}))
            .await;
        if data["all"]["totalCount"] == expected && data["sent"]["totalCount"] == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not all sent: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = receiver.requests_to("/ordered");
    assert_in_event_order(&requests, &answered_ok(&requests, &script), &items, EVENTS);
    drop((first, second));
    drop_database(&database).await;
}

#[tokio::test]
async fn update_templates_get_the_changes_and_the_item_after_the_write() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let custom = webhook(app, json!({"url": receiver.url("/custom"), "useDefaultPayload": false, "payload": WITH_CHANGES})).await;
        webhook(app, json!({"name": "glpi", "url": receiver.url("/default")})).await;
        let item = ticket(app, json!({"status": 1, "priority": 3})).await;
        let query = "mutation($id: ID!) { updateItem(itemtype: \"Ticket\", id: $id, input: {name: \"t2\", fields: {status: 2}}) { id } }";
        app.data(query, json!({"id": item})).await;
        receiver.wait_for(2, WAIT).await;
        let body = receiver.requests_to("/custom")[0].json();
        assert_eq!(body["item"]["status"], 2, "the item after the write: {body}");
        assert_eq!(body["item"]["name"], "t2");
        assert_eq!(
            body["changes"],
            json!([{"field": "name", "old": "t", "new": "t2"}, {"field": "status", "old": "1", "new": "2"}])
        );
        let default = receiver.requests_to("/default")[0].json();
        assert_eq!(default["item"]["status"], 2);
        assert!(default.get("changes").is_none(), "GLPI's payload is unchanged: {default}");
        let variables = app.data("{ payloadVariables(itemtype: \"Ticket\") }", json!({})).await;
        let variables: Vec<&str> = variables["payloadVariables"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
        for path in ["changes", "changes[0].field", "changes[0].old", "changes[0].new"] {
            assert!(variables.contains(&path), "{path} in {variables:?}");
        }
        let preview = "query($w: ID!, $i: ID!) { webhookPreview(webhookId: $w, itemId: $i) { apiData payload } }";
        let preview = app.data(preview, json!({"w": custom, "i": item})).await["webhookPreview"].clone();
        assert_eq!(preview["apiData"]["changes"], body["changes"], "the preview shows the last update's changes");
        assert_eq!(serde_json::from_str::<Value>(preview["payload"].as_str().expect("payload")).expect("json"), body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_sends_one_update_with_the_final_state_and_the_merged_changes() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        for (value, needle) in [(-1, "coalesceSeconds"), (3601, "3600")] {
            let input = json!({"name": "w", "entityId": "0", "itemtype": "Ticket", "event": "UPDATE", "url": receiver.url("/x"), "coalesceSeconds": value});
            app.assert_error(CREATE_WEBHOOK, json!({"input": input}), "VALIDATION", needle).await;
        }
        let input = json!({"url": receiver.url("/c"), "useDefaultPayload": false, "payload": WITH_CHANGES, "coalesceSeconds": 2});
        let hook = webhook(app, input).await;
        let item = ticket(app, json!({"status": 1, "priority": 3, "urgency": 2})).await;
        let mut socket = ws::connect(app.addr, &app.token).await;
        let cancelled = "subscription { queueUpdates(status: CANCELLED) { previousStatus queuedWebhook { id status lastError } } }";
        ws::subscribe(&mut socket, "c", cancelled, json!({})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for fields in [json!({"status": 2, "urgency": 5}), json!({"priority": 4}), json!({"status": 5, "urgency": 2})] {
            app.data(UPDATE, json!({"id": item, "f": fields})).await;
        }
        let rows = settled(app, &hook, 3).await;
        let statuses: Vec<&str> = rows.iter().filter_map(|r| r["status"].as_str()).collect();
        assert_eq!(statuses, ["CANCELLED", "CANCELLED", "SENT"], "{rows:?}");
        assert_eq!(rows[0]["lastError"], format!("coalesced into {}", rows[1]["id"].as_str().expect("id")));
        assert_eq!(rows[1]["lastError"], format!("coalesced into {}", rows[2]["id"].as_str().expect("id")));
        // Subscribers see the replaced rows cancelled.
        for row in &rows[..2] {
            let message = ws::next(&mut socket).await;
            let update = &message["payload"]["data"]["queueUpdates"];
            assert_eq!(update["previousStatus"], "PENDING", "{message}");
            assert_eq!(update["queuedWebhook"], json!({"id": row["id"], "status": "CANCELLED", "lastError": row["lastError"]}));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = receiver.requests_to("/c");
        assert_eq!(sent.len(), 1, "one update is sent");
        let body = sent[0].json();
        assert_eq!((body["item"]["status"].clone(), body["item"]["priority"].clone()), (json!(5), json!(4)));
        // urgency came back to where it was: it is not a change.
        assert_eq!(
            body["changes"],
            json!([{"field": "status", "old": "1", "new": "5"}, {"field": "priority", "old": "3", "new": "4"}])
        );
        // Nothing waits any more: a later update waits on its own and carries only its changes.
        app.data(UPDATE, json!({"id": item, "f": {"priority": 1}})).await;
        receiver.wait_for_path("/c", 2, WAIT).await;
        assert_eq!(receiver.requests_to("/c")[1].json()["changes"], json!([{"field": "priority", "old": "4", "new": "1"}]));
    })
    .await;
}

#[tokio::test]
async fn coalescing_never_loses_the_final_state_when_updates_share_a_batch() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let input = json!({"url": receiver.url("/c"), "useDefaultPayload": false, "payload": WITH_CHANGES, "coalesceSeconds": 3});
        let hook = webhook(app, input).await;
        let item = ticket(app, json!({"n": 0})).await;
        // Updates at once: the writer runs them in few batches, one after the other.
        let updates = (1..=20).map(|n| app.query(UPDATE, json!({"id": item, "f": {"n": n, "k": format!("v{n}")}})));
        for response in futures_util::future::join_all(updates).await {
            assert!(response.get("errors").is_none(), "{response}");
        }
        // And several updates of the item in one transaction.
        let triggers: Vec<Value> = (21..=25)
            .map(|n| json!({"itemtype": "Ticket", "itemId": item, "event": "UPDATE", "item": {"name": "t", "entityId": "0", "fields": {"n": n, "k": "v0"}}}))
            .collect();
        app.data("mutation($i: [TriggerEventInput!]!) { triggerEvents(inputs: $i) { queued { id } } }", json!({"i": triggers})).await;
        let rows = settled(app, &hook, 25).await;
        let sent: Vec<&Value> = rows.iter().filter(|r| r["status"] == "SENT").collect();
        assert_eq!(sent.len(), 1, "{rows:?}");
        for row in rows.iter().filter(|r| r["status"] != "SENT") {
            assert_eq!(row["status"], "CANCELLED");
            assert!(row["lastError"].as_str().is_some_and(|e| e.starts_with("coalesced into ")), "{row}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let requests = receiver.requests_to("/c");
        assert_eq!(requests.len(), 1);
        let body = requests[0].json();
        let stored = app.data("query($id: ID!) { item(itemtype: \"Ticket\", id: $id) { document } }", json!({"id": item})).await;
        assert_eq!(body["item"], stored["item"]["document"], "the final state is sent");
        assert_eq!(body["item"]["n"], 25);
        // n went from 0 to 25 and k from nothing to v0, whatever came between (fields in the
        // order they first changed: the first write's, sorted).
        assert_eq!(body["changes"], json!([{"field": "k", "old": null, "new": "v0"}, {"field": "n", "old": "0", "new": "25"}]));
    })
    .await;
}

const REPLAY: &str = "mutation($w: ID!, $status: QueueStatus, $dry: Boolean) { replayQueuedWebhooks(webhookId: $w, status: $status, dryRun: $dry) }";

/// A replayed update row sends a stored body again: a newer update of its item does not
/// replace it (nor merge the changes it was queued with), even while it waits. The updates
/// coalesced into a later one are replayed only when CANCELLED rows are asked for.
#[tokio::test]
async fn replay_leaves_coalesced_rows_out_and_its_rows_are_never_coalesced() {
    // One failure opens the breaker for an hour: a replayed row then waits, pending.
    let configure = |config: &mut hookline::config::Config| {
        config.delivery.breaker.failures = 1;
        config.delivery.breaker.cooldown = Duration::from_secs(3600);
    };
    each_backend_with(configure, async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/r", vec![Reply::Status(500)]);
        let input = json!({"url": receiver.url("/r"), "useDefaultPayload": false, "payload": WITH_CHANGES, "coalesceSeconds": 1, "sentTry": 0});
        let hook = webhook(app, input).await;
        let item = ticket(app, json!({"status": 1, "priority": 3})).await;
        app.data(UPDATE, json!({"id": item, "f": {"status": 2}})).await;
        app.data(UPDATE, json!({"id": item, "f": {"priority": 4}})).await;
        let first = settled(app, &hook, 2).await;
        assert_eq!(first[0]["status"], "CANCELLED", "{first:?}");
        assert_eq!(first[1]["status"], "FAILED", "{first:?}");
        // The update coalesced into the later one is not replayed by default: it would follow
        // the final state. Asked for, it is.
        let count = |status: Value| {
            let variables = json!({"w": hook, "status": status, "dry": true});
            async move { app.data(REPLAY, variables).await["replayQueuedWebhooks"].as_i64() }
        };
        assert_eq!(count(Value::Null).await, Some(1));
        assert_eq!(count(json!("CANCELLED")).await, Some(1));
        assert_eq!(app.data(REPLAY, json!({"w": hook})).await["replayQueuedWebhooks"], 1);
        app.data(UPDATE, json!({"id": item, "f": {"urgency": 5}})).await;
        let rows = rows(app, &hook).await;
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(rows[2]["status"], "PENDING", "the replayed row is not replaced: {rows:?}");
        assert_eq!(rows[2]["lastError"], Value::Null, "{rows:?}");
        assert_eq!(rows[3]["status"], "PENDING", "{rows:?}");
    })
    .await;
}

/// `ordered` applies to the rows queued once it is on: rows replayed after it was turned on
/// go in their item's order, though their originals were queued without it.
#[tokio::test]
async fn rows_replayed_once_the_webhook_is_ordered_go_in_their_items_order() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        // The originals are answered; the first two attempts of the replayed rows fail.
        let script = vec![Reply::Status(200), Reply::Status(200), Reply::Status(500), Reply::Status(500)];
        receiver.script("/o", script.clone());
        let hook = webhook(
            app,
            json!({"url": receiver.url("/o"), "useDefaultPayload": false, "payload": WITH_CHANGES, "sentTry": 5}),
        )
        .await;
        let item = ticket(app, json!({"n": 0})).await;
        for n in 1..=2 {
            app.data(UPDATE, json!({"id": item, "f": {"n": n}})).await;
        }
        settled(app, &hook, 2).await;
        let patch = "mutation($id: ID!) { updateWebhook(id: $id, input: {ordered: true}) { ordered } }";
        app.data(patch, json!({"id": hook})).await;
        assert_eq!(app.data(REPLAY, json!({"w": hook})).await["replayQueuedWebhooks"], 2);
        settled(app, &hook, 4).await;
        let requests = receiver.requests_to("/o");
        let ok = answered_ok(&requests, &script);
        assert_in_event_order(&requests[2..], &ok[2..], std::slice::from_ref(&item), 2);
    })
    .await;
}

/// When the merged changes cannot be rendered (this template divides by zero for two
/// changes), nothing is coalesced: the waiting row and the newer one are both sent, the newer
/// with the final state.
#[tokio::test]
async fn coalescing_never_loses_the_final_state_when_the_merged_changes_cannot_be_rendered() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let payload =
            r#"{% assign d = changes.size | minus: 2 %}{"item": {{ item | json }}, "x": {{ 1 | divided_by: d }}}"#;
        let input =
            json!({"url": receiver.url("/m"), "useDefaultPayload": false, "payload": payload, "coalesceSeconds": 1});
        let hook = webhook(app, input).await;
        let item = ticket(app, json!({"status": 1, "priority": 3})).await;
        app.data(UPDATE, json!({"id": item, "f": {"status": 2}})).await;
        app.data(UPDATE, json!({"id": item, "f": {"priority": 4}})).await;
        let rows = settled(app, &hook, 2).await;
        let statuses: Vec<&str> = rows.iter().filter_map(|r| r["status"].as_str()).collect();
        assert_eq!(statuses, ["SENT", "SENT"], "{rows:?}");
        let requests = receiver.requests_to("/m");
        assert_eq!(requests.len(), 2);
        let last =
            requests.iter().map(|r| r.json()).find(|b| b["item"]["priority"] == 4).expect("the final state is sent");
        assert_eq!(last["item"]["status"], 2, "{last}");
    })
    .await;
}
