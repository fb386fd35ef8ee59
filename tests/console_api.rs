//! What the console needs of the API: test deliveries (`sendTestDelivery`), each webhook's
//! newest queued webhook and recent counters, a resend of chosen rows, the webhooks of a
//! category.

mod common;

use std::time::Duration;

use common::{
    TestApp, each_backend, each_backend_with,
    receiver::{Receiver, Reply},
};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

const TEST: &str = "mutation($w: ID!, $i: ID!) { sendTestDelivery(webhookId: $w, itemId: $i) { id webhookId itemId status isTest sentTry maxAttempts lastStatusCode lastError deliveryId body } }";

async fn webhook(app: &TestApp, receiver: &Receiver, path: &str, extra: Value) -> String {
    let mut input =
        json!({"name": path, "entityId": "0", "itemtype": "Ticket", "event": "UPDATE", "url": receiver.url(path)});
    if let (Some(i), Some(e)) = (input.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    let query = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
    app.data(query, json!({"input": input})).await["createWebhook"]["id"].as_str().unwrap_or_default().to_owned()
}

async fn ticket(app: &TestApp, name: &str) -> String {
    let query = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
    let input = json!({"itemtype": "Ticket", "entityId": "0", "name": name, "fields": {"priority": 3}});
    app.data(query, json!({"input": input})).await["createItem"]["id"].as_str().unwrap_or_default().to_owned()
}

fn hex_hmac(key: &[u8], message: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    mac.update(message);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_test_delivery_sends_the_preview_once_signed_whatever_the_state_and_filter() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let secret = "a-glpi-secret-for-the-console-test";
        // Inactive, for UPDATE events, with a filter the item does not match: nothing would
        // ever queue it.
        let hook = webhook(
            app,
            &receiver,
            "/test",
            json!({"isActive": false, "secret": secret, "useDefaultPayload": false, "logInItemHistory": true,
                   "payload": "{\"ticket\": \"{{ item.name }}\", \"p\": {{ item.priority }}}",
                   "customHeaders": {"X-Team": "ops"}}),
        )
        .await;
        let item = ticket(app, "printer \"3\"").await;
        let filter = "mutation($w: ID!) { setWebhookFilter(webhookId: $w, criteria: [{field: \"name\", searchtype: \"equals\", value: \"other\"}]) { id } }";
        app.data(filter, json!({"w": hook})).await;
        let preview = "query($w: ID!, $i: ID!) { webhookPreview(webhookId: $w, itemId: $i) { payload matchesFilter } }";
        let preview = app.data(preview, json!({"w": hook, "i": item})).await["webhookPreview"].clone();
        assert_eq!(preview["matchesFilter"], false);

        let sent = app.data(TEST, json!({"w": hook, "i": item})).await["sendTestDelivery"].clone();
        assert_eq!(
            (&sent["status"], &sent["isTest"], &sent["sentTry"], &sent["maxAttempts"], &sent["lastStatusCode"]),
            (&json!("SENT"), &json!(true), &json!(1), &json!(1), &json!(200)),
            "{sent}"
        );
        let requests = receiver.wait_for(1, WAIT).await;
        assert_eq!(requests.len(), 1, "{requests:?}");
        let request = &requests[0];
        assert_eq!(request.text(), preview["payload"].as_str().unwrap_or_default(), "the preview is what is sent");
        assert_eq!(request.json(), json!({"ticket": "printer \"3\"", "p": 3}));
        assert_eq!(request.header("x-team"), Some("ops"));
        assert_eq!(request.header("x-hookline-delivery"), sent["deliveryId"].as_str());
        let timestamp = request.header("x-glpi-timestamp").unwrap_or_default();
        let signed = [request.body.as_slice(), timestamp.as_bytes()].concat();
        assert_eq!(request.header("x-glpi-signature"), Some(hex_hmac(secret.as_bytes(), &signed).as_str()));

        // It is in the webhook's queries log and the queue, marked as a test; the item's
        // history does not log it.
        let log = "query($w: ID!) { webhook(id: $w) { isActive queue(first: 10) { edges { node { id isTest status } } } } }";
        let log = app.data(log, json!({"w": hook})).await["webhook"].clone();
        assert_eq!(log["queue"]["edges"], json!([{"node": {"id": sent["id"], "isTest": true, "status": "SENT"}}]));
        assert_eq!(log["isActive"], false, "the test did not change the webhook");
        let history = "query($i: ID!) { item(itemtype: \"Ticket\", id: $i) { history(first: 50) { edges { node { action } } } } }";
        let history = app.data(history, json!({"i": item})).await;
        assert!(!history.to_string().contains("webhook"), "{history}");
        let rows = app.wait_queue(1, &["SENT"]).await;
        assert_eq!(rows.len(), 1, "nothing else was queued: {rows:?}");
    })
    .await;
}

#[tokio::test]
async fn a_failed_test_delivery_is_not_retried_and_a_410_deactivates_nothing() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/down", vec![Reply::Status(500)]);
        receiver.script("/gone", vec![Reply::Status(410)]);
        let down = webhook(app, &receiver, "/down", json!({"sentTry": 5})).await;
        let gone = webhook(app, &receiver, "/gone", json!({})).await;
        let item = ticket(app, "t").await;

        let failed = app.data(TEST, json!({"w": down, "i": item})).await["sendTestDelivery"].clone();
        assert_eq!((&failed["status"], &failed["sentTry"], &failed["lastStatusCode"]), (&json!("FAILED"), &json!(1), &json!(500)));
        assert!(failed["lastError"].as_str().is_some_and(|e| e.contains("no retry left")), "{failed}");
        let gone_row = app.data(TEST, json!({"w": gone, "i": item})).await["sendTestDelivery"].clone();
        assert_eq!(gone_row["status"], "FAILED");
        let active = app.data("query($w: ID!) { webhook(id: $w) { isActive } }", json!({"w": gone})).await;
        assert_eq!(active["webhook"]["isActive"], true, "a test's 410 does not deactivate the webhook");

        // A FAILED row is never claimed again: the receiver got one request per test.
        let stats = app.data("{ queueStats { failed pending retrying } }", json!({})).await;
        assert_eq!(stats["queueStats"], json!({"failed": 2, "pending": 0, "retrying": 0}));
        assert_eq!(receiver.requests_to("/down").len(), 1);

        // Refusals: an item of another type, and a payload that cannot render; nothing queued.
        let computer = "mutation { createItem(input: {itemtype: \"Computer\", id: \"pc-77\", entityId: \"0\"}) { id } }";
        let computer = app.data(computer, json!({})).await["createItem"]["id"].clone();
        app.assert_error(TEST, json!({"w": down, "i": computer}), "NOT_FOUND", "fires for Ticket items only").await;
        let bare = "mutation { createItem(input: {itemtype: \"Ticket\", entityId: \"0\", name: \"bare\"}) { id } }";
        let bare = app.data(bare, json!({})).await["createItem"]["id"].clone();
        ticket(app, "newest").await;
        let update = "mutation($w: ID!, $p: String) { updateWebhook(id: $w, input: {useDefaultPayload: false, payload: $p}) { id } }";
        app.data(update, json!({"w": down, "p": "{\"p\": {{ item.priority }}}"})).await;
        let before = app.data("{ queuedWebhooks { totalCount } }", json!({})).await;
        let refused = app.query(TEST, json!({"w": down, "i": bare})).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "VALIDATION", "{refused}");
        assert_eq!(refused["errors"][0]["extensions"]["field"], "payload", "{refused}");
        let after = app.data("{ queuedWebhooks { totalCount } }", json!({})).await;
        assert_eq!(before, after);
    })
    .await;
}

#[tokio::test]
async fn a_test_delivery_goes_through_the_target_guard() {
    each_backend_with(
        |config| config.delivery.targets.allow_private = false,
        async |app| {
            let receiver = Receiver::start().await;
            let query = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
            let input = json!({"name": "local", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
                "url": format!("http://localhost:{}/hook", receiver.addr.port())});
            let hook = app.data(query, json!({"input": input})).await["createWebhook"]["id"].clone();
            let item = ticket(app, "t").await;
            app.wait_queue(1, &["RETRYING"]).await;
            let row = app.data(TEST, json!({"w": hook, "i": item})).await["sendTestDelivery"].clone();
            assert_eq!(row["status"], "FAILED", "{row}");
            let error = row["lastError"].as_str().unwrap_or_default();
            assert!(error.contains("does not resolve to a public address"), "{error}");
            assert!(receiver.requests().is_empty(), "nothing reached loopback");
        },
    )
    .await;
}

#[tokio::test]
async fn each_webhook_shows_its_newest_row_and_the_counts_of_its_recent_rows() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/failing", vec![Reply::Status(500); 3]);
        let ok = webhook(app, &receiver, "/ok", json!({"event": "NEW"})).await;
        let failing = webhook(app, &receiver, "/failing", json!({"event": "NEW", "sentTry": 0})).await;
        let idle = webhook(app, &receiver, "/idle", json!({"event": "PURGE"})).await;
        for n in 0..3 {
            ticket(app, &format!("t{n}")).await;
        }
        app.wait_queue(6, &["SENT", "FAILED"]).await;
        let query = "{ webhooks(first: 10) { edges { node { id lastQueuedWebhook { id status itemId webhookId } stats { pending sent failed sentLastMinute } day: stats(sinceSeconds: 86400) { sent failed } } } } }";
        let list = app.data(query, json!({})).await;
        let node = |id: &str| {
            list["webhooks"]["edges"].as_array().into_iter().flatten().find(|e| e["node"]["id"] == id).cloned()
                .unwrap_or_default()["node"]
                .clone()
        };
        let newest = |id: String| async move {
            let q = "query($w: ID!) { queuedWebhooks(webhookId: $w, first: 1) { edges { node { id } } } }";
            app.data(q, json!({"w": id})).await["queuedWebhooks"]["edges"][0]["node"]["id"].clone()
        };
        assert_eq!(node(&ok)["lastQueuedWebhook"]["id"], newest(ok.clone()).await);
        assert_eq!(node(&ok)["lastQueuedWebhook"]["status"], "SENT");
        assert_eq!(node(&ok)["lastQueuedWebhook"]["itemId"], "3");
        assert_eq!(node(&ok)["stats"], json!({"pending": 0, "sent": 3, "failed": 0, "sentLastMinute": 3}));
        assert_eq!(node(&failing)["lastQueuedWebhook"]["status"], "FAILED");
        assert_eq!(node(&failing)["stats"], json!({"pending": 0, "sent": 0, "failed": 3, "sentLastMinute": 0}));
        assert_eq!(node(&idle)["lastQueuedWebhook"], Value::Null);
        assert_eq!(node(&idle)["stats"], json!({"pending": 0, "sent": 0, "failed": 0, "sentLastMinute": 0}));

        // A row created two hours ago counts in the last day, not in the last hour.
        use sea_orm::{ConnectionTrait, Statement};
        let old = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
        let db = &app.state.db;
        let backend = db.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => "UPDATE queued_webhooks SET create_time = $1::timestamptz WHERE id = $2",
            _ => "UPDATE queued_webhooks SET create_time = ?1 WHERE id = ?2",
        };
        let id: i64 = newest(ok.clone()).await.as_str().unwrap_or_default().parse().unwrap_or_default();
        db.execute_raw(Statement::from_sql_and_values(backend, sql, [old.into(), id.into()])).await.expect("aged");
        let list = app.data(query, json!({})).await;
        let node = list["webhooks"]["edges"].as_array().into_iter().flatten().find(|e| e["node"]["id"] == ok.as_str())
            .cloned()
            .unwrap_or_default()["node"]
            .clone();
        assert_eq!(node["stats"]["sent"], 2);
        assert_eq!(node["day"], json!({"sent": 3, "failed": 0}));
        for bad in [0, -5, 31_622_401] {
            let q = format!("{{ webhooks {{ edges {{ node {{ stats(sinceSeconds: {bad}) {{ sent }} }} }} }} }}");
            app.assert_error(&q, json!({}), "VALIDATION", "sinceSeconds").await;
        }
    })
    .await;
}

#[tokio::test]
async fn resend_with_ids_puts_back_only_those_failed_rows() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/r", vec![Reply::Status(500); 3]);
        webhook(app, &receiver, "/r", json!({"event": "NEW", "sentTry": 0})).await;
        for n in 0..3 {
            ticket(app, &format!("t{n}")).await;
        }
        let rows = app.wait_queue(3, &["FAILED"]).await;
        let chosen = rows[1]["id"].clone();
        let resend = "mutation($ids: [ID!]) { resendFailedWebhooks(ids: $ids) }";
        let count = app.data(resend, json!({"ids": [chosen]})).await;
        assert_eq!(count["resendFailedWebhooks"], 1);
        let rows = app.wait_queue(3, &["SENT", "FAILED"]).await;
        let statuses: Vec<(&Value, &Value)> = rows.iter().map(|r| (&r["id"], &r["status"])).collect();
        for (id, status) in statuses {
            assert_eq!(status, if *id == chosen { "SENT" } else { "FAILED" }, "{rows:?}");
        }
        // A row that is not FAILED is left alone; too many ids are refused.
        assert_eq!(app.data(resend, json!({"ids": [chosen]})).await["resendFailedWebhooks"], 0);
        let many: Vec<String> = (1..=501).map(|n| n.to_string()).collect();
        app.assert_error(resend, json!({"ids": many}), "VALIDATION", "at most 500").await;
        assert_eq!(receiver.requests_to("/r").len(), 4);
    })
    .await;
}

#[tokio::test]
async fn webhooks_are_listed_by_category_with_its_subcategories() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let category =
            "mutation($n: String!, $p: ID) { createWebhookCategory(input: {name: $n, parentId: $p}) { id } }";
        let ops = app.data(category, json!({"n": "Ops"})).await["createWebhookCategory"]["id"].clone();
        let night = app.data(category, json!({"n": "Night", "p": ops})).await["createWebhookCategory"]["id"].clone();
        let crm = app.data(category, json!({"n": "CRM"})).await["createWebhookCategory"]["id"].clone();
        let a = webhook(app, &receiver, "/a", json!({"categoryId": ops})).await;
        let b = webhook(app, &receiver, "/b", json!({"categoryId": night})).await;
        webhook(app, &receiver, "/c", json!({"categoryId": crm})).await;
        webhook(app, &receiver, "/d", json!({})).await;
        let list = "query($c: ID) { webhooks(categoryId: $c) { totalCount edges { node { id } } } }";
        let ids = |data: Value| -> Vec<String> {
            data["webhooks"]["edges"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(ids(app.data(list, json!({"c": ops})).await), vec![a, b.clone()]);
        assert_eq!(ids(app.data(list, json!({"c": night})).await), vec![b]);
        assert_eq!(app.data(list, json!({})).await["webhooks"]["totalCount"], 4);
    })
    .await;
}
