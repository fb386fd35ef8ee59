//! What goes out with a request: custom headers that may not frame or route it, credential
//! headers sealed at rest and bound to their webhook, and credentials that do not follow a
//! webhook to a new target unless given again.

mod common;

use std::time::Duration;

use common::{TestApp, each_backend, receiver::Receiver};
use hookline::secret_box::Purpose;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id customHeaders } }";
const UPDATE_WEBHOOK: &str =
    "mutation($id: ID!, $input: WebhookPatch!) { updateWebhook(id: $id, input: $input) { id url customHeaders } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";

fn webhook_input(url: &str, extra: Value) -> Value {
    let mut input = json!({"name": "outgoing", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url});
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    input
}

async fn create_webhook(app: &TestApp, url: &str, extra: Value) -> String {
    let data = app.data(CREATE_WEBHOOK, json!({"input": webhook_input(url, extra)})).await;
    data["createWebhook"]["id"].as_str().expect("an id").to_owned()
}

async fn ticket(app: &TestApp) {
    app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "T"}})).await;
}

/// `(extensions.code, extensions.field, message)` of a request that must fail.
async fn refusal(app: &TestApp, query: &str, variables: Value) -> (String, String, String) {
    let response = app.query(query, variables).await;
    let error = &response["errors"][0];
    assert!(error.is_object(), "expected an error ({:?}), got {response}", app.backend);
    let text = |v: &Value| v.as_str().unwrap_or("<none>").to_owned();
    (text(&error["extensions"]["code"]), text(&error["extensions"]["field"]), text(&error["message"]))
}

async fn raw_text(app: &TestApp, sql: &str) -> String {
    let backend = app.state.db.get_database_backend();
    let rows = app.state.db.query_all_raw(Statement::from_string(backend, sql)).await.expect("query");
    rows.iter().map(|row| row.try_get_by_index::<String>(0).expect("text")).collect::<Vec<_>>().join("\n")
}

async fn raw_execute(app: &TestApp, sql: &str) {
    let backend = app.state.db.get_database_backend();
    app.state.db.execute_raw(Statement::from_string(backend, sql)).await.expect("statement");
}

async fn stored_headers(app: &TestApp, id: &str) -> String {
    raw_text(app, &format!("SELECT CAST(custom_headers AS TEXT) FROM webhooks WHERE id = {id}")).await
}

#[tokio::test]
async fn headers_that_frame_or_route_the_request_are_refused_naming_the_field() {
    each_backend(async |app| {
        for name in
            ["Host", "Content-Length", "Transfer-Encoding", "Connection", "TE", "Upgrade", "Trailer", "Proxy-Foo"]
        {
            let input = webhook_input("https://hooks.example.org/x", json!({"customHeaders": {name: "x"}}));
            let (code, field, message) = refusal(app, CREATE_WEBHOOK, json!({"input": input})).await;
            assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", format!("customHeaders.{name}").as_str()));
            assert!(message.contains(name), "{message}");
        }
        let id = create_webhook(app, "https://hooks.example.org/x", json!({"customHeaders": {"X-Team": "ops"}})).await;
        let patch = json!({"customHeaders": {"X-Team": "ops", "proxy-authorization": "Basic eA=="}});
        let (code, field, _) = refusal(app, UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
        assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "customHeaders.proxy-authorization"));
        let shown = app.data("query($id: ID!) { webhook(id: $id) { customHeaders } }", json!({"id": id})).await;
        assert_eq!(shown["webhook"]["customHeaders"], json!({"X-Team": "ops"}), "nothing stored");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_sealed_in_the_webhooks_table_and_sent_in_clear() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let headers = json!({"Authorization": "Bearer plain-auth", "X-Functions-Key": "fk-123",
                             "Ocp-Apim-Subscription-Key": "sub-456", "X-Tenant": "7"});
        let data = app
            .data(
                CREATE_WEBHOOK,
                json!({"input": webhook_input(&receiver.url("/hook"), json!({"customHeaders": headers}))}),
            )
            .await;
        let id = data["createWebhook"]["id"].as_str().expect("id").to_owned();
        let hidden = json!({"Authorization": "(hidden)", "X-Functions-Key": "(hidden)",
                            "Ocp-Apim-Subscription-Key": "(hidden)", "X-Tenant": "7"});
        assert_eq!(data["createWebhook"]["customHeaders"], hidden);
        let stored = stored_headers(app, &id).await;
        for secret in ["plain-auth", "fk-123", "sub-456"] {
            assert!(!stored.contains(secret), "{secret} stored in clear: {stored}");
        }
        assert!(stored.contains("hookline-sealed:v2:") && stored.contains("\"7\""), "{stored}");

        ticket(app).await;
        let rows = app.wait_queue(1, &["SENT"]).await;
        let sent = receiver.wait_for(1, Duration::from_secs(5)).await.remove(0);
        assert_eq!(sent.header("authorization"), Some("Bearer plain-auth"));
        assert_eq!(sent.header("x-functions-key"), Some("fk-123"));
        assert_eq!(sent.header("ocp-apim-subscription-key"), Some("sub-456"));
        assert_eq!(rows[0]["headers"], hidden, "the queued row shows them hidden too");
        let queued = raw_text(app, "SELECT CAST(headers AS TEXT) FROM queued_webhooks").await;
        assert!(!queued.contains("fk-123") && !queued.contains("sub-456"), "{queued}");

        // Each sealed value opens for its own row only: the webhook id, the delivery id.
        let secrets = &app.state.secrets;
        let sealed_in = |text: &str, name: &str| -> String {
            let map: Value = serde_json::from_str(text).expect("JSON");
            map[name].as_str().expect("a string").to_owned()
        };
        let in_webhook = sealed_in(&stored, "X-Functions-Key");
        assert_eq!(
            secrets.open_header(Purpose::WebhookHeader, &id, "X-Functions-Key", &in_webhook).ok(),
            Some("fk-123".into())
        );
        assert!(secrets.open_header(Purpose::WebhookHeader, "999", "X-Functions-Key", &in_webhook).is_err());
        assert!(secrets.open_header(Purpose::WebhookHeader, &id, "Authorization", &in_webhook).is_err());
        let delivery = rows[0]["deliveryId"].as_str().expect("delivery id");
        let in_queue = sealed_in(&queued, "X-Functions-Key");
        assert_eq!(
            secrets.open_header(Purpose::QueuedHeader, delivery, "X-Functions-Key", &in_queue).ok(),
            Some("fk-123".into())
        );
        assert!(secrets.open_header(Purpose::QueuedHeader, "msg_other", "X-Functions-Key", &in_queue).is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_stored_in_clear_before_are_read_and_sealed_at_the_next_save() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id = create_webhook(app, &receiver.url("/hook"), json!({})).await;
        // As a webhook saved before credential headers were sealed in the webhooks table.
        raw_execute(
            app,
            &format!(
                "UPDATE webhooks SET custom_headers = '{{\"Authorization\": \"Bearer legacy\", \"X-Tenant\": \"1\"}}' \
                 WHERE id = {id}"
            ),
        )
        .await;
        ticket(app).await;
        app.wait_queue(1, &["SENT"]).await;
        assert_eq!(
            receiver.wait_for(1, Duration::from_secs(5)).await[0].header("authorization"),
            Some("Bearer legacy")
        );

        app.data(UPDATE_WEBHOOK, json!({"id": id, "input": {"name": "renamed"}})).await;
        let stored = stored_headers(app, &id).await;
        assert!(!stored.contains("legacy") && stored.contains("hookline-sealed:"), "{stored}");
        ticket(app).await;
        app.wait_queue(2, &["SENT"]).await;
        assert_eq!(
            receiver.wait_for(2, Duration::from_secs(5)).await[1].header("authorization"),
            Some("Bearer legacy")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_values_copied_to_another_webhook_do_not_open() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let first =
            create_webhook(app, &receiver.url("/a"), json!({"customHeaders": {"Authorization": "Bearer of-a"}})).await;
        let second =
            create_webhook(app, &receiver.url("/b"), json!({"customHeaders": {"Authorization": "Bearer of-b"}})).await;
        // Someone with write access to the table moves A's sealed header into B.
        raw_execute(
            app,
            &format!(
                "UPDATE webhooks SET custom_headers = (SELECT custom_headers FROM webhooks WHERE id = {first}) \
                      WHERE id = {second}"
            ),
        )
        .await;
        ticket(app).await;
        let rows = app.wait_queue(2, &["SENT", "FAILED"]).await;
        let of = |id: &str| rows.iter().find(|r| r["webhookId"] == json!(id)).cloned().expect("a row");
        assert_eq!(of(&first)["status"], "SENT");
        assert_eq!(of(&second)["status"], "FAILED");
        assert!(of(&second)["lastError"].as_str().unwrap_or_default().contains("cannot be decrypted"), "{rows:?}");
        let requests = receiver.wait_for(1, Duration::from_secs(5)).await;
        assert!(requests.iter().all(|r| r.path == "/a"), "B never sent A's credential: {requests:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_header_changed_alone_is_saved_and_logged_without_its_value() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id =
            create_webhook(app, &receiver.url("/hook"), json!({"customHeaders": {"Authorization": "Bearer old"}})).await;
        let patch = json!({"customHeaders": {"Authorization": "Bearer new"}});
        app.data(UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
        ticket(app).await;
        app.wait_queue(1, &["SENT"]).await;
        assert_eq!(receiver.wait_for(1, Duration::from_secs(5)).await[0].header("authorization"), Some("Bearer new"));
        let history = app
            .data(
                "query($id: ID!) { webhook(id: $id) { history(first: 20) { edges { node { message oldValue newValue } } } } }",
                json!({"id": id}),
            )
            .await;
        let text = history.to_string();
        assert!(text.contains("customHeaders.Authorization set"), "{text}");
        assert!(!text.contains("Bearer"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_target_needs_the_credential_headers_again() {
    each_backend(async |app| {
        let (old, new) = (Receiver::start().await, Receiver::start().await);
        let headers = json!({"Authorization": "Bearer for-old", "X-Tenant": "7"});
        let id = create_webhook(app, &old.url("/hook"), json!({"customHeaders": headers})).await;

        // Another path on the same scheme, host and port keeps them.
        app.data(UPDATE_WEBHOOK, json!({"id": id, "input": {"url": old.url("/other/{{ item.id }}")}})).await;

        // Another port: left out, or sent back as (hidden), the credential is refused.
        for patch in [
            json!({"url": new.url("/hook")}),
            json!({"url": new.url("/hook"), "customHeaders": {"Authorization": "(hidden)", "X-Tenant": "7"}}),
            json!({"url": "http://{{ item.name }}/hook"}),
        ] {
            let (code, field, message) = refusal(app, UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
            assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "customHeaders.Authorization"), "{message}");
        }
        // `(hidden)` for a credential that is not stored is refused, on update and on create.
        let input = webhook_input(&new.url("/x"), json!({"customHeaders": {"X-Functions-Key": "(hidden)"}}));
        let (code, field, _) = refusal(app, CREATE_WEBHOOK, json!({"input": input})).await;
        assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "customHeaders.X-Functions-Key"));
        let patch = json!({"customHeaders": {"Authorization": "(hidden)", "X-Api-Token": "(hidden)"}});
        let (code, field, _) = refusal(app, UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
        assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "customHeaders.X-Api-Token"));

        // Given again, or removed, the move is accepted.
        let patch =
            json!({"url": new.url("/hook"), "customHeaders": {"Authorization": "Bearer for-new", "X-Tenant": "7"}});
        let moved = app.data(UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
        assert_eq!(moved["updateWebhook"]["customHeaders"], json!({"Authorization": "(hidden)", "X-Tenant": "7"}));
        ticket(app).await;
        app.wait_queue(1, &["SENT"]).await;
        let sent = new.wait_for(1, Duration::from_secs(5)).await.remove(0);
        assert_eq!(sent.header("authorization"), Some("Bearer for-new"));
        assert!(old.requests().is_empty());
        let patch = json!({"url": old.url("/hook"), "customHeaders": {"X-Tenant": "8"}});
        let back = app.data(UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
        assert_eq!(back["updateWebhook"]["customHeaders"], json!({"X-Tenant": "8"}));
    })
    .await;
}

#[tokio::test]
async fn a_new_oauth_url_needs_the_client_secret_again() {
    each_backend(async |app| {
        let oauth = json!({"useOauth": true, "oauthUrl": "https://auth.example.org/token", "clientId": "id",
                           "clientSecret": "the-client-secret"});
        let id = create_webhook(app, "https://hooks.example.org/x", oauth).await;
        app.data(UPDATE_WEBHOOK, json!({"id": id, "input": {"oauthUrl": "https://auth.example.org/v2/token"}})).await;
        let patch = json!({"oauthUrl": "https://auth.elsewhere.example/token"});
        let (code, field, _) = refusal(app, UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
        assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "clientSecret"));
        let patch = json!({"oauthUrl": "https://auth.elsewhere.example/token", "clientSecret": "another"});
        app.data(UPDATE_WEBHOOK, json!({"id": id, "input": patch})).await;
    })
    .await;
}
