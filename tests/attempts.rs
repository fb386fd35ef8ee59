//! Delivery control (issue 16): every attempt kept, replay, and secret rotation with overlap,
//! through the real server and a real receiver, on both databases.

mod common;

use std::time::Duration;

use common::{
    TestApp, each_backend,
    receiver::{Receiver, Recorded, Reply},
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn webhook(app: &TestApp, receiver: &Receiver, path: &str, extra: Value) -> String {
    app.ticket_webhook(path, &receiver.url(path), extra).await
}

async fn create_item(app: &TestApp, name: &str) {
    let query = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
    app.data(query, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name}})).await;
}

/// How many rows a table holds, read straight from the database.
async fn count(app: &TestApp, table: &str) -> i64 {
    let db = &app.state.db;
    let statement = Statement::from_string(db.get_database_backend(), format!("SELECT COUNT(*) AS n FROM {table}"));
    let row = db.query_one_raw(statement).await.expect("count").expect("a row");
    row.try_get_by_index::<i64>(0).expect("a number")
}

const ATTEMPTS: &str = "query($id: ID!, $first: Int, $after: String) { queuedWebhook(id: $id) { deliveryId attempts(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { startedAt durationMs method url requestHeaders statusCode responseHeaders responseBody error } } } } }";

/// The queued webhooks of one webhook, newest first.
async fn rows_of(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    let query = "query($w: ID!) { queuedWebhooks(webhookId: $w, first: 500) { edges { node { id status deliveryId body createTime isTest } } } }";
    let data = app.data(query, json!({"w": webhook_id})).await;
    data["queuedWebhooks"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect()
}

async fn attempts(app: &TestApp, id: &Value) -> Vec<Value> {
    let data = app.data(ATTEMPTS, json!({"id": id})).await;
    data["queuedWebhook"]["attempts"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect()
}

#[tokio::test]
async fn every_attempt_is_kept_with_credentials_hidden_and_goes_with_its_row() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let busy = |body: &str| {
            Reply::Full(500, vec![("x-reason", "busy".into()), ("set-cookie", "session=42".into())], body.into())
        };
        receiver.script("/kept", vec![busy("busy, come back")]);
        receiver.script("/unsaved", vec![busy("not saved")]);
        let headers = json!({"X-Api-Key": "k1", "X-Team": "ops", "X-Forward": "Bearer zzz"});
        let kept = webhook(
            app,
            &receiver,
            "/kept",
            json!({"saveResponseBody": true, "customHeaders": headers, "signatureScheme": "BOTH", "secret": SECRET}),
        )
        .await;
        let unsaved = webhook(app, &receiver, "/unsaved", json!({})).await;
        create_item(app, "attempted").await;
        app.wait_queue(2, &["SENT"]).await;
        assert_eq!(receiver.requests_to("/kept")[0].header("x-api-key"), Some("k1"), "the credential is sent");

        let row = rows_of(app, &kept).await.remove(0);
        let data = app.data(ATTEMPTS, json!({"id": row["id"]})).await;
        let list = &data["queuedWebhook"]["attempts"];
        assert_eq!(list["totalCount"], 2, "{data}");
        let nodes: Vec<&Value> = list["edges"].as_array().into_iter().flatten().map(|e| &e["node"]).collect();
        let (last, first) = (nodes[0], nodes[1]);
        assert_eq!((&last["statusCode"], &last["error"]), (&json!(200), &Value::Null), "newest first: {data}");
        assert_eq!(first["statusCode"], 500);
        assert!(first["error"].as_str().unwrap_or_default().contains("HTTP 500"), "{first}");
        assert_eq!(first["responseBody"], "busy, come back");
        assert_eq!(first["responseHeaders"]["x-reason"], "busy");
        assert_eq!(first["responseHeaders"]["set-cookie"], "(hidden)");
        assert_eq!((&first["method"], &first["url"]), (&json!("POST"), &json!(receiver.url("/kept"))));
        assert!(first["startedAt"].as_str().unwrap_or_default() <= last["startedAt"].as_str().unwrap_or_default());
        assert!(first["durationMs"].as_i64().is_some_and(|ms| ms >= 0));
        let sent = &first["requestHeaders"];
        for hidden in ["X-Api-Key", "X-Forward", "X-GLPI-signature", "webhook-signature"] {
            assert_eq!(sent[hidden], "(hidden)", "{hidden}: {sent}");
        }
        assert_eq!(sent["X-Team"], "ops");
        assert_eq!(sent["X-Hookline-Delivery"], data["queuedWebhook"]["deliveryId"]);
        assert!(sent["webhook-timestamp"].is_string(), "{sent}");
        let text = data.to_string();
        assert!(!text.contains("k1\"") && !text.contains("zzz"), "no credential shown: {text}");

        // Paging, newest first.
        let page = app.data(ATTEMPTS, json!({"id": row["id"], "first": 1})).await;
        let page = &page["queuedWebhook"]["attempts"];
        assert_eq!((&page["totalCount"], &page["pageInfo"]["hasNextPage"]), (&json!(2), &json!(true)));
        let after = page["pageInfo"]["endCursor"].clone();
        let rest = app.data(ATTEMPTS, json!({"id": row["id"], "first": 1, "after": after})).await;
        assert_eq!(rest["queuedWebhook"]["attempts"]["edges"][0]["node"]["statusCode"], 500);
        app.assert_error(ATTEMPTS, json!({"id": row["id"], "after": "nope"}), "VALIDATION", "after").await;

        // A viewer reads them; a token of another entity does not see the row at all.
        let viewer = app.client_as("watcher", "viewer", json!([])).await;
        let seen = app.data_with(&viewer, ATTEMPTS, json!({"id": row["id"]})).await;
        assert_eq!(seen["queuedWebhook"]["attempts"]["totalCount"], 2);
        let entity = app.data("mutation { createEntity(input: {name: \"elsewhere\"}) { id } }", json!({})).await;
        let elsewhere = json!([{"id": entity["createEntity"]["id"], "recursive": true}]);
        let outsider = app.client_as("outsider", "viewer", elsewhere).await;
        let unseen = app.data_with(&outsider, ATTEMPTS, json!({"id": row["id"]})).await;
        assert_eq!(unseen["queuedWebhook"], Value::Null, "out of scope: {unseen}");

        // Without saveResponseBody, no body is kept.
        let other = rows_of(app, &unsaved).await.remove(0);
        let other_attempts = attempts(app, &other["id"]).await;
        assert_eq!(other_attempts.len(), 2);
        assert!(other_attempts.iter().all(|a| a["responseBody"].is_null()), "{other_attempts:?}");
        assert_eq!(other_attempts[1]["responseHeaders"]["x-reason"], "busy");

        // A forced send is an attempt too.
        let force = "mutation($id: ID!) { forceSendQueuedWebhook(id: $id) { status } }";
        app.data(force, json!({"id": row["id"]})).await;
        assert_eq!(attempts(app, &row["id"]).await.len(), 3);

        // The cleanup removes the attempts with their rows.
        assert_eq!(count(app, "delivery_attempts").await, 5);
        let old = (chrono::Utc::now() - chrono::Duration::days(40)).format("%Y-%m-%d %H:%M:%S%:z").to_string();
        let sql = format!("UPDATE queued_webhooks SET sent_time = '{old}', create_time = '{old}'");
        app.state.db.execute_unprepared(&sql).await.expect("age rows");
        let clean = "mutation { cleanQueuedWebhooks }";
        assert_eq!(app.data(clean, json!({})).await["cleanQueuedWebhooks"], 2);
        assert_eq!(count(app, "delivery_attempts").await, 0, "attempts go with their rows");
    })
    .await;
}

#[tokio::test]
async fn only_the_latest_attempts_of_a_row_are_kept() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        // The first attempt is answered 201, every later one 200: the oldest is told apart.
        receiver.script("/many", vec![Reply::Status(201)]);
        let id = webhook(app, &receiver, "/many", json!({})).await;
        create_item(app, "many").await;
        app.wait_queue(1, &["SENT"]).await;
        let row = rows_of(app, &id).await.remove(0);
        // 101 attempts in all: the row sent again and again.
        let force = "mutation($id: ID!) { forceSendQueuedWebhook(id: $id) { status } }";
        for _ in 0..100 {
            app.data(force, json!({"id": row["id"]})).await;
        }
        assert_eq!(receiver.requests_to("/many").len(), 101);
        let data = app.data(ATTEMPTS, json!({"id": row["id"], "first": 500})).await;
        let list = &data["queuedWebhook"]["attempts"];
        assert_eq!(list["totalCount"], 100, "the latest hundred are kept");
        let edges = list["edges"].as_array().cloned().unwrap_or_default();
        assert_eq!(edges.len(), 100);
        assert!(
            edges.iter().all(|edge| edge["node"]["statusCode"] == 200),
            "the oldest attempt (answered 201) went first"
        );
        // One more: still a hundred, the newest first.
        receiver.script("/many", vec![Reply::Status(202)]);
        app.data(force, json!({"id": row["id"]})).await;
        let data = app.data(ATTEMPTS, json!({"id": row["id"], "first": 500})).await;
        let list = &data["queuedWebhook"]["attempts"];
        assert_eq!(list["totalCount"], 100);
        assert_eq!(list["edges"][0]["node"]["statusCode"], 202, "the newest is the last forced send");
    })
    .await;
}

const REPLAY: &str = "mutation($w: ID!, $status: QueueStatus, $since: String, $until: String, $dry: Boolean) { replayQueuedWebhooks(webhookId: $w, status: $status, since: $since, until: $until, dryRun: $dry) }";

async fn replay(app: &TestApp, variables: Value) -> i64 {
    app.data(REPLAY, variables).await["replayQueuedWebhooks"].as_i64().expect("a count")
}

#[tokio::test]
async fn replay_counts_the_same_rows_dry_and_real_and_sends_them_again_as_new_deliveries() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/replayed", vec![Reply::Status(500)]);
        let headers = json!({"X-Api-Key": "k1"});
        let id = webhook(app, &receiver, "/replayed", json!({"sentTry": 0, "customHeaders": headers})).await;
        let other = webhook(app, &receiver, "/other", json!({})).await;
        for name in ["one", "two", "three"] {
            create_item(app, name).await;
        }
        app.wait_queue(6, &["SENT", "FAILED"]).await;
        let cutoff = chrono::Utc::now().to_rfc3339();
        let originals = rows_of(app, &id).await;
        assert_eq!(originals.iter().filter(|r| r["status"] == "FAILED").count(), 1, "{originals:?}");
        let failed = originals.iter().find(|r| r["status"] == "FAILED").cloned().expect("a failed row");

        // The failed row only: a dry run counts it, a real run queues it again.
        let only_failed = json!({"w": id, "status": "FAILED", "until": cutoff});
        let mut dry_failed = only_failed.clone();
        dry_failed["dry"] = json!(true);
        assert_eq!(replay(app, dry_failed).await, 1);
        assert_eq!(rows_of(app, &id).await.len(), 3, "a dry run queues nothing");
        assert_eq!(replay(app, only_failed.clone()).await, 1);
        receiver.wait_for(7, WAIT).await;
        app.wait_queue(7, &["SENT", "FAILED"]).await;
        let replayed = rows_of(app, &id).await.remove(0);
        assert_eq!(replayed["status"], "SENT");
        assert_ne!(replayed["deliveryId"], failed["deliveryId"], "a new delivery id");
        assert_eq!(replayed["body"], failed["body"], "the same body");
        let last = receiver.requests_to("/replayed").pop().expect("the replayed request");
        assert_eq!(last.header("x-hookline-delivery"), replayed["deliveryId"].as_str());
        assert_eq!(last.header("x-api-key"), Some("k1"), "its credential header sent again");

        // Every finished row of the window (the default): the same count dry and real.
        let window = json!({"w": id, "until": cutoff});
        let dry = replay(app, json!({"dry": true, "w": id, "until": cutoff})).await;
        assert_eq!(dry, 3);
        assert_eq!(replay(app, window).await, dry);
        receiver.wait_for(10, WAIT).await;
        app.wait_queue(10, &["SENT", "FAILED"]).await;
        let sent: Vec<Recorded> = receiver.requests_to("/replayed");
        let again = &sent[4..];
        let mut bodies: Vec<String> = again.iter().map(|r| r.text()).collect();
        let mut original_bodies: Vec<String> =
            originals.iter().map(|r| r["body"].as_str().unwrap_or_default().to_owned()).collect();
        bodies.sort();
        original_bodies.sort();
        assert_eq!(bodies, original_bodies, "the same bodies");
        let first_ids: Vec<&str> = sent[..3].iter().filter_map(|r| r.header("x-hookline-delivery")).collect();
        assert!(again.iter().all(|r| !first_ids.contains(&r.header("x-hookline-delivery").unwrap_or_default())));
        assert_eq!(receiver.requests_to("/other").len(), 3, "another webhook's rows are not replayed");
        // The rows replayed since the cutoff, counted dry; nothing pending is replayed by default.
        assert_eq!(replay(app, json!({"dry": true, "w": id, "since": cutoff})).await, 4);
        assert_eq!(replay(app, json!({"dry": true, "w": id, "status": "PENDING"})).await, 0);
        assert_eq!(replay(app, json!({"dry": true, "w": other})).await, 3);
    })
    .await;
}

#[tokio::test]
async fn replay_refuses_bad_windows_too_many_rows_and_callers_without_the_right() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id = webhook(app, &receiver, "/r", json!({})).await;
        create_item(app, "one").await;
        app.wait_queue(1, &["SENT"]).await;
        app.assert_error(
            REPLAY,
            json!({"w": id, "since": "yesterday"}),
            "VALIDATION",
            "since: `yesterday` is not an RFC 3339",
        )
        .await;
        app.assert_error(REPLAY, json!({"w": id, "until": "2026-13-01T00:00:00Z"}), "VALIDATION", "until").await;
        let window = json!({"w": id, "since": "2026-12-06T10:00:00Z", "until": "2026-12-06T09:00:00+00:00"});
        app.assert_error(REPLAY, window, "VALIDATION", "until: must be later than since").await;
        app.assert_error(REPLAY, json!({"w": "999999"}), "NOT_FOUND", "no webhook").await;

        let viewer = app.client_as("watcher", "viewer", json!([])).await;
        let refused = app.query_with(&viewer, REPLAY, json!({"w": id})).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
        let operator = app.client_as("ops", "operator", json!([])).await;
        assert_eq!(app.data_with(&operator, REPLAY, json!({"w": id, "dry": true})).await["replayQueuedWebhooks"], 1);
        // An operator of another entity does not see the webhook.
        let entity = app.data("mutation { createEntity(input: {name: \"elsewhere\"}) { id } }", json!({})).await;
        let elsewhere = entity["createEntity"]["id"].clone();
        let outsider = app.client_as("outsider", "operator", json!([{"id": elsewhere, "recursive": true}])).await;
        let hidden = app.query_with(&outsider, REPLAY, json!({"w": id, "dry": true})).await;
        assert_eq!(hidden["errors"][0]["extensions"]["code"], "NOT_FOUND", "{hidden}");

        // More rows than one call may replay: refused in both modes, nothing queued.
        let row = app
            .state
            .queue
            .list(&Default::default(), hookline::service::paging::PageRequest { first: 1, after: None })
            .await
            .expect("rows")
            .rows
            .remove(0)
            .1;
        use sea_orm::{ActiveValue::NotSet, EntityTrait, IntoActiveModel};
        let copies: Vec<_> = (0..1000)
            .map(|n| {
                let mut copy = entity::queued_webhooks::Model { delivery_id: format!("copy-{n}"), ..row.clone() }
                    .into_active_model();
                copy.id = NotSet;
                copy
            })
            .collect();
        for part in copies.chunks(10) {
            entity::queued_webhooks::Entity::insert_many(part.to_vec()).exec(&app.state.db).await.expect("insert");
        }
        for dry in [true, false] {
            app.assert_error(
                REPLAY,
                json!({"w": id, "dry": dry}),
                "VALIDATION",
                "1001 queued webhooks match, more than the 1000",
            )
            .await;
        }
        assert_eq!(count(app, "queued_webhooks").await, 1001, "nothing queued");
    })
    .await;
}

const REGENERATE: &str =
    "mutation($id: ID!, $keep: Int) { regenerateWebhookSecret(id: $id, keepPreviousSeconds: $keep) }";

/// GLPI's signature: HMAC-SHA256 of the body then the timestamp, keyed with the secret.
fn glpi_signature(secret: &str, body: &[u8], timestamp: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the Standard Webhooks reference library accepts the request's signature header
/// (`signature`, or the one sent) with `secret`.
fn standard_verifies(secret: &str, request: &Recorded, signature: Option<&str>) -> bool {
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp"] {
        headers.insert(name, request.header(name).expect("sent").parse().expect("a header value"));
    }
    let signature = signature.or(request.header("webhook-signature")).expect("webhook-signature sent");
    headers.insert("webhook-signature", signature.parse().expect("a header value"));
    standardwebhooks::Webhook::new(secret).expect("a secret").verify(&request.body, &headers).is_ok()
}

/// Raises one event and returns the request the receiver got for it.
async fn delivered(app: &TestApp, receiver: &Receiver, name: &str) -> Recorded {
    let before = receiver.requests().len();
    create_item(app, name).await;
    receiver.wait_for(before + 1, WAIT).await.pop().expect("a request")
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_both_verify() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id = webhook(app, &receiver, "/rotated", json!({"signatureScheme": "BOTH", "secret": SECRET})).await;

        let new = app.data(REGENERATE, json!({"id": id, "keep": 3600})).await["regenerateWebhookSecret"]
            .as_str()
            .expect("the new secret")
            .to_owned();
        assert!(new.starts_with("whsec_") && new != SECRET);
        let request = delivered(app, &receiver, "during").await;
        let signatures = request.header("webhook-signature").expect("signed").to_owned();
        let entries: Vec<&str> = signatures.split(' ').collect();
        assert_eq!(entries.len(), 2, "{signatures}");
        assert!(standard_verifies(&new, &request, None), "the new secret verifies");
        assert!(standard_verifies(SECRET, &request, None), "the previous secret verifies");
        assert!(standard_verifies(&new, &request, Some(entries[0])), "the new secret's signature comes first");
        assert!(!standard_verifies(SECRET, &request, Some(entries[0])));
        let timestamp = request.header("x-glpi-timestamp").expect("a timestamp");
        assert_eq!(request.header("x-glpi-signature"), Some(glpi_signature(&new, &request.body, timestamp).as_str()));
        assert_eq!(
            request.header("x-glpi-signature-previous"),
            Some(glpi_signature(SECRET, &request.body, timestamp).as_str())
        );

        // The previous secret is never shown: not by the webhook, its attempts or the audit log.
        app.wait_queue(1, &["SENT"]).await;
        let shown = app
            .data(
                "query($id: ID!) { webhook(id: $id) { history { edges { node { message } } } queue { edges { node { attempts { edges { node { requestHeaders } } } } } } } auditLog(first: 50) { edges { node { changes } } } }",
                json!({"id": id}),
            )
            .await;
        let text = shown.to_string();
        assert!(!text.contains(SECRET) && !text.contains(&new), "{text}");
        assert!(text.contains("the previous one also signs for 3600 s"), "{text}");
        let sent = &shown["webhook"]["queue"]["edges"][0]["node"]["attempts"]["edges"][0]["node"]["requestHeaders"];
        assert_eq!(sent["X-GLPI-signature-previous"], "(hidden)", "{sent}");

        // A secret given anew ends the overlap.
        let update = "mutation($id: ID!, $s: String) { updateWebhook(id: $id, input: {secret: $s}) { id } }";
        app.data(REGENERATE, json!({"id": id, "keep": 3600})).await;
        app.data(update, json!({"id": id, "s": SECRET})).await;
        let request = delivered(app, &receiver, "given").await;
        assert_eq!(request.header("webhook-signature").map(|s| s.split(' ').count()), Some(1));
        assert!(request.header("x-glpi-signature-previous").is_none());
        assert!(standard_verifies(SECRET, &request, None));

        // Without keepPreviousSeconds, only the new secret signs.
        let newest =
            app.data(REGENERATE, json!({"id": id})).await["regenerateWebhookSecret"].as_str().expect("a secret").to_owned();
        let request = delivered(app, &receiver, "after").await;
        assert!(standard_verifies(&newest, &request, None));
        assert!(!standard_verifies(SECRET, &request, None), "the replaced secret no longer verifies");
        assert!(request.header("x-glpi-signature-previous").is_none());

        // After its expiry, the previous secret signs no more.
        app.data(REGENERATE, json!({"id": id, "keep": 1})).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let request = delivered(app, &receiver, "expired").await;
        assert_eq!(request.header("webhook-signature").map(|s| s.split(' ').count()), Some(1));
        assert!(!standard_verifies(&newest, &request, None));
        assert!(request.header("x-glpi-signature-previous").is_none());
        // The cleanup then forgets it.
        let cleared = hookline::service::webhooks::clear_expired_previous_secrets(&app.state.db).await.expect("cleared");
        assert_eq!(cleared, 1);
        let kept = "webhooks WHERE previous_secret_encrypted IS NOT NULL OR previous_secret_expires_at IS NOT NULL";
        assert_eq!(count(app, kept).await, 0);

        // A change of scheme ends the overlap too.
        let rescheme = "mutation($id: ID!) { updateWebhook(id: $id, input: {signatureScheme: STANDARD_WEBHOOKS}) { id } }";
        let current =
            app.data(REGENERATE, json!({"id": id, "keep": 3600})).await["regenerateWebhookSecret"].as_str().expect("a secret").to_owned();
        assert_eq!(count(app, kept).await, 1);
        app.data(rescheme, json!({"id": id})).await;
        assert_eq!(count(app, kept).await, 0);
        let request = delivered(app, &receiver, "rescheme").await;
        assert_eq!(request.header("webhook-signature").map(|s| s.split(' ').count()), Some(1));
        assert!(standard_verifies(&current, &request, None));

        for keep in [604_801, -1] {
            app.assert_error(REGENERATE, json!({"id": id, "keep": keep}), "VALIDATION", "keepPreviousSeconds: from 0 to 604800")
                .await;
        }
        let viewer = app.client_as("watcher", "viewer", json!([])).await;
        let refused = app.query_with(&viewer, REGENERATE, json!({"id": id, "keep": 60})).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN", "{refused}");
    })
    .await;
}
