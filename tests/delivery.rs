//! The delivery pipeline end to end: item mutations raise events, matching webhooks are queued
//! and sent to a real receiver, signed, retried, logged.

mod common;

use std::time::Duration;

use common::{
    each_backend, each_backend_with,
    receiver::{Receiver, Reply},
};
use hmac::{KeyInit, Mac};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn webhook(app: &common::TestApp, input: Value) -> String {
    let query = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
    app.data(query, json!({"input": input})).await["createWebhook"]["id"].as_str().unwrap_or_default().to_owned()
}

fn hook(receiver: &Receiver, path: &str, event: &str, extra: Value) -> Value {
    let mut input =
        json!({"name": path, "entityId": "0", "itemtype": "Ticket", "event": event, "url": receiver.url(path)});
    if let (Some(i), Some(e)) = (input.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    input
}

async fn create_item(app: &common::TestApp, input: Value) -> Value {
    let query = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
    app.data(query, json!({"input": input})).await["createItem"].clone()
}

#[tokio::test]
async fn each_item_mutation_raises_its_event_once() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        for event in ["NEW", "UPDATE", "DELETE", "RESTORE", "PURGE"] {
            webhook(app, hook(&receiver, &format!("/{}", event.to_lowercase()), event, json!({}))).await;
        }
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0", "name": "t", "fields": {"priority": 3}})).await;
        let update = "mutation($f: JSON) { updateItem(itemtype: \"Ticket\", id: \"1\", input: {fields: $f}) { id } }";
        app.data(update, json!({"f": {"priority": 4}})).await;
        app.data(update, json!({"f": {"priority": 4}})).await; // no change: no event
        app.data("mutation { deleteItem(itemtype: \"Ticket\", id: \"1\") { id } }", json!({})).await;
        app.data("mutation { restoreItem(itemtype: \"Ticket\", id: \"1\") { id } }", json!({})).await;
        app.data("mutation { purgeItem(itemtype: \"Ticket\", id: \"1\") }", json!({})).await;
        let rows = app.wait_queue(5, &["SENT"]).await;
        assert_eq!(rows.len(), 5, "{rows:?}");
        let requests = receiver.wait_for(5, WAIT).await;
        for (path, event) in [
            ("/new", "new"),
            ("/update", "update"),
            ("/delete", "delete"),
            ("/restore", "restore"),
            ("/purge", "purge"),
        ] {
            let hits = receiver.requests_to(path);
            assert_eq!(hits.len(), 1, "{path}: {requests:?}");
            let body = hits[0].json();
            assert_eq!(body["event"], event);
            assert_eq!(body["item"]["id"], 1);
        }
        assert_eq!(receiver.requests_to("/update")[0].json()["item"]["priority"], 4);
        assert_eq!(receiver.requests_to("/delete")[0].json()["item"]["is_deleted"], true);
        assert_eq!(receiver.requests_to("/purge")[0].json()["item"]["name"], "t", "purge carries the last snapshot");
    })
    .await;
}

#[tokio::test]
async fn webhooks_match_by_itemtype_event_activity_and_entity_scope() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        let paris = app.data("mutation($p: ID!) { createEntity(input: {name: \"Paris\", parentId: $p}) { id } }", json!({"p": europe})).await["createEntity"]["id"].clone();
        webhook(app, hook(&receiver, "/root-recursive", "NEW", json!({"isRecursive": true}))).await;
        webhook(app, hook(&receiver, "/root-only", "NEW", json!({}))).await;
        webhook(app, hook(&receiver, "/europe-recursive", "NEW", json!({"entityId": europe, "isRecursive": true}))).await;
        webhook(app, hook(&receiver, "/paris", "NEW", json!({"entityId": paris}))).await;
        webhook(app, hook(&receiver, "/inactive", "NEW", json!({"isActive": false, "isRecursive": true}))).await;
        webhook(app, hook(&receiver, "/computers", "NEW", json!({"itemtype": "Computer", "isRecursive": true}))).await;
        webhook(app, hook(&receiver, "/updates", "UPDATE", json!({"isRecursive": true}))).await;

        create_item(app, json!({"itemtype": "Ticket", "entityId": paris, "name": "in Paris"})).await;
        app.wait_queue(3, &["SENT"]).await;
        let mut paths: Vec<String> = receiver.wait_for(3, WAIT).await.into_iter().map(|r| r.path).collect();
        paths.sort();
        assert_eq!(paths, ["/europe-recursive", "/paris", "/root-recursive"]);
        let body = receiver.requests_to("/paris")[0].json();
        assert_eq!(body["item"]["entity"]["completename"], "Root entity > Europe > Paris");
    })
    .await;
}

fn hex_hmac(key: &[u8], message: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    mac.update(message);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn requests_carry_the_default_body_content_type_delivery_id_and_glpi_signature() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let secret = "glpi-secret-for-test";
        webhook(app, hook(&receiver, "/followups", "NEW", json!({"itemtype": "ITILFollowup", "secret": secret, "customHeaders": {"X-Team": "ops"}}))).await;
        create_item(app, json!({"itemtype": "Ticket", "id": "77", "entityId": "0", "name": "parent", "fields": {"external_id": "ext1234"}})).await;
        create_item(app, json!({"itemtype": "ITILFollowup", "entityId": "0", "parentItemtype": "Ticket", "parentId": "77", "fields": {"content": "hello \"world\""}})).await;
        let request = receiver.wait_for(1, WAIT).await.remove(0);
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-team"), Some("ops"));
        let body = request.json();
        assert_eq!(body["event"], "new");
        assert_eq!(body["item"]["content"], "hello \"world\"");
        assert_eq!(body["parent_item"]["external_id"], "ext1234");
        assert_eq!(body["parent_item"]["id"], 77);
        let timestamp = request.header("x-glpi-timestamp").expect("timestamp");
        let mut signed = request.body.clone();
        signed.extend_from_slice(timestamp.as_bytes());
        assert_eq!(request.header("x-glpi-signature"), Some(hex_hmac(secret.as_bytes(), &signed).as_str()));
        assert!(request.header("webhook-signature").is_none(), "GLPI scheme only");
        let rows = app.wait_queue(1, &["SENT"]).await;
        assert_eq!(request.header("x-hookline-delivery"), rows[0]["deliveryId"].as_str());
    })
    .await;
}

#[tokio::test]
async fn standard_webhooks_signatures_and_other_methods() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        webhook(
            app,
            hook(&receiver, "/std", "NEW", json!({"signatureScheme": "BOTH", "secret": secret, "httpMethod": "PUT"})),
        )
        .await;
        webhook(app, hook(&receiver, "/get", "NEW", json!({"httpMethod": "GET"}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0", "name": "t"})).await;
        receiver.wait_for(2, WAIT).await;
        let std = receiver.requests_to("/std").remove(0);
        assert_eq!(std.method, "PUT");
        let (id, ts) = (std.header("webhook-id").expect("id"), std.header("webhook-timestamp").expect("ts"));
        assert_eq!(Some(id), std.header("x-hookline-delivery"));
        let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &secret[6..]).expect("key");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&std.body);
        let expected = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mac.finalize().into_bytes());
        assert_eq!(std.header("webhook-signature"), Some(format!("v1,{expected}").as_str()));
        assert!(std.header("x-glpi-signature").is_some(), "BOTH sends the GLPI headers too");
        let get = receiver.requests_to("/get").remove(0);
        assert_eq!(get.method, "GET");
        assert!(get.body.is_empty(), "GET sends no body");
    })
    .await;
}

#[tokio::test]
async fn failures_are_retried_with_the_same_delivery_id_until_sent() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/flaky", vec![Reply::Status(500), Reply::Status(503)]);
        webhook(app, hook(&receiver, "/flaky", "NEW", json!({"logInItemHistory": true}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        let rows = app.wait_queue(1, &["SENT"]).await;
        assert_eq!(rows[0]["sentTry"], 3);
        assert_eq!(rows[0]["lastStatusCode"], 200);
        assert_eq!(rows[0]["lastError"], Value::Null);
        let requests = receiver.requests_to("/flaky");
        assert_eq!(requests.len(), 3);
        let ids: Vec<_> = requests.iter().map(|r| r.header("x-hookline-delivery").map(str::to_owned)).collect();
        assert!(ids.iter().all(|id| id == &ids[0] && id.is_some()), "{ids:?}");
        assert!(requests[1].at - requests[0].at >= Duration::from_millis(90), "backoff between attempts");
        // GLPI's item history entries for each attempt.
        let history = app
            .data("{ item(itemtype: \"Ticket\", id: \"1\") { history { edges { node { action message oldValue newValue queuedWebhookId } } } } }", json!({}))
            .await;
        let entries: Vec<Value> = history["item"]["history"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).filter(|n| n["action"] == "webhook").collect();
        let messages: Vec<&str> = entries.iter().filter_map(|e| e["message"].as_str()).collect();
        let id = rows[0]["id"].as_str().unwrap_or_default();
        assert_eq!(
            messages,
            [format!("Send a queued webhook: {id} (Status 503 -> 200)"), format!("Send a queued webhook: {id} (Status 500 -> 503)"), format!("Send a queued webhook: {id} (Status  -> 500)")]
        );
        assert_eq!(entries[0]["queuedWebhookId"], rows[0]["id"]);
    })
    .await;
}

#[tokio::test]
async fn the_last_failed_attempt_fails_the_row_with_the_reason() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/down", vec![Reply::Status(500); 10]);
        webhook(app, hook(&receiver, "/down", "NEW", json!({"sentTry": 1}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        let rows = app.wait_queue(1, &["FAILED"]).await;
        assert_eq!(rows[0]["sentTry"], 2, "sentTry 1 means two attempts");
        assert_eq!(rows[0]["lastStatusCode"], 500);
        assert!(rows[0]["lastError"].as_str().unwrap_or_default().contains("HTTP 500"), "{}", rows[0]);
        assert_eq!(receiver.requests_to("/down").len(), 2);

        // Back to PENDING with a fresh budget: both attempts are made again.
        let resent = app.data("mutation { resendFailedWebhooks }", json!({})).await;
        assert_eq!(resent["resendFailedWebhooks"], 1);
        app.wait_queue(1, &["FAILED"]).await;
        receiver.wait_for(4, WAIT).await;
    })
    .await;
}

#[tokio::test]
async fn gone_fails_at_once_and_deactivates_the_webhook() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/gone", vec![Reply::Status(410)]);
        let id = webhook(app, hook(&receiver, "/gone", "NEW", json!({}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        let rows = app.wait_queue(1, &["FAILED"]).await;
        assert_eq!(rows[0]["sentTry"], 1);
        let webhook = app
            .data(
                "query($id: ID!) { webhook(id: $id) { isActive history { edges { node { action message } } } } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(webhook["webhook"]["isActive"], false);
        assert_eq!(webhook["webhook"]["history"]["edges"][0]["node"]["action"], "deactivate");
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(receiver.requests().len(), 1, "a deactivated webhook fires no more");
    })
    .await;
}

#[tokio::test]
async fn redirects_timeouts_and_retry_after_are_reported() {
    each_backend_with(
        |c| c.delivery.http_timeout = Duration::from_millis(300),
        async |app| {
            let receiver = Receiver::start().await;
            receiver.script(
                "/moved",
                vec![Reply::Full(302, vec![("location", "http://127.0.0.1:1/".into())], String::new())],
            );
            receiver.script("/slow", vec![Reply::Hang(Duration::from_secs(3))]);
            receiver.script("/busy", vec![Reply::Full(429, vec![("retry-after", "2".into())], String::new())]);
            for path in ["/moved", "/slow", "/busy"] {
                webhook(app, hook(&receiver, path, "NEW", json!({"sentTry": 0, "name": path}))).await;
            }
            webhook(app, hook(&receiver, "/busy2", "NEW", json!({"sentTry": 1}))).await;
            receiver.script("/busy2", vec![Reply::Full(429, vec![("retry-after", "2".into())], String::new())]);
            create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
            let rows = app.wait_queue(4, &["FAILED", "RETRYING", "SENT"]).await;
            let by_url = |path: &str| {
                rows.iter().find(|r| r["url"].as_str().is_some_and(|u| u.ends_with(path))).cloned().unwrap_or_default()
            };
            let moved = by_url("/moved");
            assert!(
                moved["lastError"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("redirect to http://127.0.0.1:1/ not followed"),
                "{moved}"
            );
            assert_eq!(moved["lastStatusCode"], 302);
            let slow = by_url("/slow");
            assert!(slow["lastError"].as_str().unwrap_or_default().contains("timeout"), "{slow}");
            assert_eq!(slow["lastStatusCode"], Value::Null);
            let busy = by_url("/busy2");
            assert_eq!(busy["status"], "RETRYING", "{busy}");
            let sent =
                chrono::DateTime::parse_from_rfc3339(busy["sentTime"].as_str().unwrap_or_default()).expect("sentTime");
            let next =
                chrono::DateTime::parse_from_rfc3339(busy["sendTime"].as_str().unwrap_or_default()).expect("sendTime");
            assert!((next - sent).num_milliseconds() >= 1500, "Retry-After: 2 honoured: {sent} -> {next}");
        },
    )
    .await;
}

#[tokio::test]
async fn response_bodies_are_saved_when_asked_and_capped() {
    each_backend_with(
        |c| c.delivery.max_response_body = 16,
        async |app| {
            let receiver = Receiver::start().await;
            receiver.script("/save", vec![Reply::Full(200, vec![], "x".repeat(100))]);
            receiver.script("/nosave", vec![Reply::Full(200, vec![], "y".repeat(100))]);
            webhook(app, hook(&receiver, "/save", "NEW", json!({"saveResponseBody": true}))).await;
            webhook(app, hook(&receiver, "/nosave", "NEW", json!({}))).await;
            create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
            let rows = app.wait_queue(2, &["SENT"]).await;
            let saved: Vec<&Value> = rows.iter().map(|r| &r["responseBody"]).collect();
            assert!(saved.contains(&&json!("x".repeat(16))), "{saved:?}");
            assert!(saved.contains(&&Value::Null), "{saved:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn force_send_cancel_and_their_conflicts() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/r", vec![Reply::Status(500); 50]);
        webhook(app, hook(&receiver, "/ok", "NEW", json!({}))).await;
        webhook(app, hook(&receiver, "/r", "NEW", json!({"sentTry": 200}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        let rows = app.wait_queue(2, &["SENT", "RETRYING"]).await;
        let sent = rows.iter().find(|r| r["status"] == "SENT").cloned().unwrap_or_default();
        let force = "mutation($id: ID!) { forceSendQueuedWebhook(id: $id) { status sentTry lastStatusCode } }";
        let again = app.data(force, json!({"id": sent["id"]})).await;
        assert_eq!(again["forceSendQueuedWebhook"], json!({"status": "SENT", "sentTry": 2, "lastStatusCode": 200}));
        assert_eq!(receiver.requests_to("/ok").len(), 2, "a SENT row is sent again when forced");

        let cancel = "mutation($id: ID!) { cancelQueuedWebhook(id: $id) { status } }";
        app.assert_error(cancel, json!({"id": sent["id"]}), "CONFLICT", "sent").await;
        let retrying =
            rows.iter().find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/r"))).cloned().unwrap_or_default();
        // The row is retried every 100 ms: a cancel that meets it being sent is refused as such
        // and is tried again, as a client would.
        let mut cancelled = app.query(cancel, json!({"id": retrying["id"]})).await;
        for _ in 0..20 {
            let message = cancelled["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
            if !message.contains("sending") {
                break;
            }
            assert_eq!(cancelled["errors"][0]["extensions"]["code"], "CONFLICT", "{cancelled}");
            cancelled = app.query(cancel, json!({"id": retrying["id"]})).await;
        }
        assert_eq!(cancelled["data"]["cancelQueuedWebhook"]["status"], "CANCELLED", "{cancelled}");
        let before = receiver.requests_to("/r").len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.requests_to("/r").len(), before, "a cancelled row is not retried");
        app.assert_error(cancel, json!({"id": retrying["id"]}), "CONFLICT", "cancelled").await;
        app.assert_error(force, json!({"id": "999999"}), "NOT_FOUND", "999999").await;
    })
    .await;
}

#[tokio::test]
async fn force_send_is_refused_while_an_attempt_is_in_flight() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/hang", vec![Reply::Hang(Duration::from_millis(1500))]);
        webhook(app, hook(&receiver, "/hang", "NEW", json!({}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        receiver.wait_for(1, WAIT).await;
        let rows = app.wait_queue(1, &["SENDING"]).await;
        let force = "mutation($id: ID!) { forceSendQueuedWebhook(id: $id) { status } }";
        app.assert_error(force, json!({"id": rows[0]["id"]}), "CONFLICT", "being sent").await;
        app.wait_queue(1, &["SENT"]).await;
    })
    .await;
}

#[tokio::test]
async fn queued_webhooks_filter_by_webhook_status_item_and_entity_subtree() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/fail", vec![Reply::Status(500); 10]);
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        let ok = webhook(app, hook(&receiver, "/ok", "NEW", json!({"isRecursive": true}))).await;
        webhook(app, hook(&receiver, "/fail", "NEW", json!({"isRecursive": true, "sentTry": 0}))).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        create_item(app, json!({"itemtype": "Ticket", "entityId": europe})).await;
        app.wait_queue(4, &["SENT", "FAILED"]).await;
        let query = "query($w: ID, $s: QueueStatus, $t: String, $i: ID, $e: ID) { queuedWebhooks(webhookId: $w, status: $s, itemtype: $t, itemId: $i, entityId: $e) { totalCount edges { node { id itemId status } } } }";
        let count = async |vars: Value| app.data(query, vars).await["queuedWebhooks"]["totalCount"].as_i64().unwrap_or(-1);
        assert_eq!(count(json!({})).await, 4);
        assert_eq!(count(json!({"w": ok})).await, 2);
        assert_eq!(count(json!({"s": "FAILED"})).await, 2);
        assert_eq!(count(json!({"t": "Ticket", "i": "2"})).await, 2);
        assert_eq!(count(json!({"e": europe})).await, 2);
        assert_eq!(count(json!({"e": "0"})).await, 4, "the root entity includes its children");
        let all = app.data(query, json!({})).await;
        let ids: Vec<i64> = all["queuedWebhooks"]["edges"].as_array().into_iter().flatten().filter_map(|e| e["node"]["id"].as_str()?.parse().ok()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        let via_webhook = app.data("query($id: ID!) { webhook(id: $id) { queue(status: SENT) { totalCount } } }", json!({"id": ok})).await;
        assert_eq!(via_webhook["webhook"]["queue"]["totalCount"], 2);
        app.assert_error(query, json!({"s": "DONE"}), "VALIDATION", "DONE").await;
    })
    .await;
}

#[tokio::test]
async fn cleanup_deletes_old_finished_rows_only() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/fail", vec![Reply::Status(500); 10]);
        webhook(app, hook(&receiver, "/ok", "NEW", json!({}))).await;
        webhook(app, hook(&receiver, "/fail", "NEW", json!({"sentTry": 0}))).await;
        webhook(app, hook(&receiver, "/later", "NEW", json!({"sentTry": 5}))).await;
        receiver.script("/later", vec![Reply::Status(500); 10]);
        create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
        app.wait_queue(3, &["SENT", "FAILED", "RETRYING"]).await;
        // Age every row by 40 days.
        use sea_orm::ConnectionTrait;
        let old = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
        let backend = app.state.db.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => {
                format!("UPDATE queued_webhooks SET sent_time = '{old}', create_time = '{old}'")
            }
            _ => format!(
                "UPDATE queued_webhooks SET sent_time = '{}', create_time = '{}'",
                old.replace('T', " "),
                old.replace('T', " ")
            ),
        };
        app.state.db.execute_unprepared(&sql).await.expect("age rows");
        let clean = "mutation($s: Int, $f: Int) { cleanQueuedWebhooks(sentDays: $s, failedDays: $f) }";
        assert_eq!(app.data(clean, json!({"s": 50, "f": 50})).await["cleanQueuedWebhooks"], 0);
        assert_eq!(app.data(clean, json!({})).await["cleanQueuedWebhooks"], 2, "SENT and FAILED older than 30 days");
        let left = app.data("{ queuedWebhooks { edges { node { status } } } }", json!({})).await;
        let status = left["queuedWebhooks"]["edges"][0]["node"]["status"].as_str().unwrap_or_default().to_owned();
        assert!(status == "RETRYING" || status == "SENDING", "{left}");
        app.assert_error(clean, json!({"s": -1}), "VALIDATION", "sentDays").await;
    })
    .await;
}

/// More rows than one write of a bulk operation changes (`ROWS_PER_BULK_WRITE`), each sent once to
/// `receiver` and recorded as sent.
async fn many_sent_rows(app: &common::TestApp, receiver: &Receiver) -> usize {
    webhook(app, hook(receiver, "/ok", "NEW", json!({}))).await;
    let rows = hookline::queue::ROWS_PER_BULK_WRITE as usize * 2 + 100;
    let create = "mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }";
    let inputs: Vec<Value> =
        (0..rows).map(|n| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("t{n}")})).collect();
    for chunk in inputs.chunks(1000) {
        app.data(create, json!({"i": chunk})).await;
    }
    receiver.wait_for(rows, Duration::from_secs(60)).await;
    wait_until_sent(app, rows).await;
    rows
}

/// Waits until `rows` rows are recorded as sent.
async fn wait_until_sent(app: &common::TestApp, rows: usize) {
    let sent = "{ queuedWebhooks(status: SENT, first: 1) { totalCount } }";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.data(sent, json!({})).await["queuedWebhooks"]["totalCount"] != rows {
        assert!(std::time::Instant::now() < deadline, "not every row was recorded as sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cleanup of more rows than one write deletes goes on, write after write, until every old
/// row is gone, and counts them all.
#[tokio::test]
async fn a_cleanup_larger_than_one_write_deletes_every_old_row() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let rows = many_sent_rows(app, &receiver).await;
        let clean = "mutation { cleanQueuedWebhooks(sentDays: 0) }";
        assert_eq!(app.data(clean, json!({})).await["cleanQueuedWebhooks"], rows);
        let left = app.data("{ queuedWebhooks(first: 1) { totalCount } }", json!({})).await;
        assert_eq!(left["queuedWebhooks"]["totalCount"], 0);
    })
    .await;
}

/// A resend of more failed rows than one write changes goes on, write after write: every
/// failed row is sent again, once.
#[tokio::test]
async fn a_resend_larger_than_one_write_sends_every_failed_row_again_once() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let rows = many_sent_rows(app, &receiver).await;
        use sea_orm::ConnectionTrait;
        let failed = "UPDATE queued_webhooks SET status = 'failed'";
        app.state.db.execute_unprepared(failed).await.expect("every row failed");
        let resent = app.data("mutation { resendFailedWebhooks }", json!({})).await;
        assert_eq!(resent["resendFailedWebhooks"], rows);
        receiver.wait_for(rows * 2, Duration::from_secs(60)).await;
        wait_until_sent(app, rows).await;
        assert_eq!(receiver.requests_to("/ok").len(), rows * 2, "each row sent again once");
    })
    .await;
}

/// A claim is recorded while its rows are in flight (lease expiry and a dead process's
/// recovery find the rows through it) and forgotten with its last outcome: after thousands of
/// deliveries in many claims, none is left, and every row keeps the token of the claim that
/// sent it.
#[tokio::test]
async fn claims_are_forgotten_with_the_last_outcome_of_their_rows() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        many_sent_rows(app, &receiver).await;
        let count = |sql: &'static str| async move {
            let row = app.state.db.query_one_raw(Statement::from_string(app.state.db.get_database_backend(), sql));
            row.await.expect("the count").expect("a row").try_get_by_index::<i64>(0).expect("a number")
        };
        assert_eq!(count("SELECT COUNT(*) FROM queue_claims").await, 0, "claims left after every outcome");
        let claims = count("SELECT COUNT(DISTINCT claim_token) FROM queued_webhooks").await;
        assert!(claims > 1, "the rows were sent in one claim: {claims}");
        assert_eq!(count("SELECT COUNT(*) FROM queued_webhooks WHERE claim_token IS NULL").await, 0);
    })
    .await;
}

/// A row left `sending` with no claim recorded (claimed by a process of a version before
/// `queue_claims`, which then died) is given back when a process starts, and sent: on SQLite
/// with every row being sent, on PostgreSQL once its lease has ended. One whose lease has not
/// ended is left to its process on PostgreSQL.
#[tokio::test]
async fn a_row_left_sending_without_a_recorded_claim_is_sent_after_a_start() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let webhook = app.ticket_webhook("old", &receiver.url("/old"), json!({})).await;
        let now = chrono::Utc::now();
        let insert = |lease: chrono::DateTime<chrono::Utc>| {
            let fields = json!({
                "webhook_id": webhook.parse::<i64>().expect("an id"), "url": receiver.url("/old"),
                "status": "sending", "max_attempts": 1, "lease_until": lease, "claim_token": 42,
                "claimed_by": "a process of an earlier version",
            });
            common::insert_queued(&app.state.db, fields)
        };
        let ended = insert(now - chrono::Duration::seconds(1)).await;
        let running = insert(now + chrono::Duration::minutes(5)).await;
        // The process's own start may have given them back already (its workers start beside
        // the test): what counts is that they are sent.
        app.state.queue.release_abandoned(true, Duration::from_secs(10)).await.expect("the release");
        let postgres = app.backend == common::Backend::Postgres;
        receiver.wait_for(if postgres { 1 } else { 2 }, WAIT).await;
        let status = |id: i64| async move {
            let query = "query($id: ID!) { queuedWebhook(id: $id) { status } }";
            app.data(query, json!({"id": id.to_string()})).await["queuedWebhook"]["status"].clone()
        };
        let deadline = std::time::Instant::now() + WAIT;
        while status(ended).await != "SENT" {
            assert!(std::time::Instant::now() < deadline, "the released row was not recorded as sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if postgres {
            assert_eq!(status(running).await, "SENDING", "a row whose lease runs is its process's");
            assert_eq!(receiver.requests_to("/old").len(), 1, "only the row whose lease ended is sent");
        }
    })
    .await;
}

#[tokio::test]
async fn trigger_event_upserts_the_snapshot_and_always_raises() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        webhook(app, hook(&receiver, "/upd", "UPDATE", json!({"itemtype": "Computer"}))).await;
        webhook(app, hook(&receiver, "/purge", "PURGE", json!({"itemtype": "Computer"}))).await;
        let trigger = "mutation($input: TriggerEventInput!) { triggerEvent(input: $input) { queued { id status event itemId } } }";
        let snapshot = json!({"name": "pc-9", "entityId": 0, "fields": {"brand": "Acme"}});
        let first = app.data(trigger, json!({"input": {"itemtype": "Computer", "itemId": "AST-9", "event": "UPDATE", "item": snapshot}})).await;
        assert_eq!(first["triggerEvent"]["queued"][0]["itemId"], "AST-9");
        // Unchanged snapshot: raised anyway.
        app.data(trigger, json!({"input": {"itemtype": "Computer", "itemId": "AST-9", "event": "UPDATE", "item": snapshot}})).await;
        app.data(trigger, json!({"input": {"itemtype": "Computer", "itemId": "AST-9", "event": "UPDATE"}})).await;
        receiver.wait_for(3, WAIT).await;
        assert_eq!(receiver.requests_to("/upd")[0].json()["item"]["brand"], "Acme");
        let stored = app.data("{ item(itemtype: \"Computer\", id: \"AST-9\") { name fields } }", json!({})).await;
        assert_eq!(stored["item"], json!({"name": "pc-9", "fields": {"brand": "Acme"}}));

        app.data(trigger, json!({"input": {"itemtype": "Computer", "itemId": "AST-9", "event": "PURGE"}})).await;
        receiver.wait_for(4, WAIT).await;
        assert_eq!(receiver.requests_to("/purge")[0].json()["item"]["name"], "pc-9");
        let gone = app.data("{ item(itemtype: \"Computer\", id: \"AST-9\") { name } }", json!({})).await;
        assert_eq!(gone["item"], Value::Null);
        app.assert_error(trigger, json!({"input": {"itemtype": "Computer", "itemId": "nope", "event": "UPDATE"}}), "NOT_FOUND", "nope").await;
        app.assert_error(trigger, json!({"input": {"itemtype": "Computer", "itemId": "x", "event": "NEW", "item": {"colour": "red"}}}), "VALIDATION", "item").await;
        app.assert_error(trigger, json!({"input": {"itemtype": "Computer", "itemId": "x", "event": "NEW", "item": {"name": "x"}}}), "VALIDATION", "entityId").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_to_one_host_keeps_to_the_per_host_limit() {
    each_backend_with(
        |c| {
            c.delivery.max_per_host = 4;
            c.delivery.max_in_flight = 16;
        },
        async |app| {
            let receiver = Receiver::start().await;
            receiver.delay_all(Duration::from_millis(30));
            for n in 0..60 {
                webhook(app, hook(&receiver, &format!("/fan{n}"), "NEW", json!({}))).await;
            }
            create_item(app, json!({"itemtype": "Ticket", "entityId": "0"})).await;
            receiver.wait_for(60, WAIT).await;
            app.wait_queue(60, &["SENT"]).await;
            let peak = receiver.max_in_flight();
            assert!((1..=4).contains(&peak), "at most 4 requests at once to one host, saw {peak}");
        },
    )
    .await;
}
