//! Webhooks: defaults, validation, write-only secrets sealed at rest, history, listing.

mod common;

use common::{TestApp, each_backend};
use hookline::secret_box::Purpose;
use sea_orm::{ConnectionTrait, Statement};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const FIELDS: &str = "id name comment isActive categoryId entityId isRecursive itemtype event sentTry url httpMethod \
    saveResponseBody logInItemHistory hasSecret signatureScheme expiration useCraChallenge useOauth oauthUrl clientId \
    hasClientSecret useDefaultPayload payload customHeaders createdAt updatedAt";

fn create_mutation() -> String {
    format!("mutation($input: WebhookInput!) {{ createWebhook(input: $input) {{ {FIELDS} }} }}")
}

fn update_mutation() -> String {
    format!("mutation($id: ID!, $input: WebhookPatch!) {{ updateWebhook(id: $id, input: $input) {{ {FIELDS} }} }}")
}

fn minimal() -> Value {
    json!({"name": "Ticket to chat", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": "https://chat.example.org/hook"})
}

fn with(base: Value, extra: Value) -> Value {
    let mut base = base;
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    base
}

async fn create(app: &TestApp, input: Value) -> Value {
    app.data(&create_mutation(), json!({"input": input})).await["createWebhook"].clone()
}

/// The sealed secret columns of a webhook, read straight from the database.
async fn stored_secrets(app: &TestApp, id: &str) -> (String, Option<String>) {
    let backend = app.state.db.get_database_backend();
    let sql = format!("SELECT secret_encrypted, client_secret_encrypted FROM webhooks WHERE id = {id}");
    let row = app.state.db.query_one_raw(Statement::from_string(backend, sql)).await.expect("query").expect("row");
    (row.try_get("", "secret_encrypted").expect("secret"), row.try_get("", "client_secret_encrypted").expect("client"))
}

#[tokio::test]
async fn omitted_fields_take_the_documented_defaults() {
    each_backend(async |app| {
        let webhook = create(app, minimal()).await;
        for (field, expected) in [
            ("isActive", json!(true)),
            ("isRecursive", json!(false)),
            ("sentTry", json!(3)),
            ("httpMethod", json!("POST")),
            ("useDefaultPayload", json!(true)),
            ("signatureScheme", json!("GLPI")),
            ("expiration", json!(0)),
            ("saveResponseBody", json!(false)),
            ("logInItemHistory", json!(false)),
            ("useCraChallenge", json!(false)),
            ("useOauth", json!(false)),
            ("hasSecret", json!(true)),
            ("hasClientSecret", json!(false)),
            ("customHeaders", json!({})),
            ("categoryId", json!(null)),
        ] {
            assert_eq!(webhook[field], expected, "{field}");
        }
        let id = webhook["id"].as_str().unwrap_or_default();
        let (sealed, _) = stored_secrets(app, id).await;
        let secret = app.state.secrets.open(Purpose::WebhookSecret, id, &sealed).expect("opens");
        let secret = secret.expose_secret();
        assert_eq!(secret.len(), 40, "a GLPI secret is 40 alphanumerics");
        assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    })
    .await;
}

#[tokio::test]
async fn every_field_round_trips() {
    each_backend(async |app| {
        let category = app.data("mutation { createWebhookCategory(input: {name: \"Chat\"}) { id } }", json!({})).await;
        let input = json!({
            "name": "All fields", "comment": "c", "isActive": false, "categoryId": category["createWebhookCategory"]["id"],
            "entityId": "0", "isRecursive": true, "itemtype": "ITILFollowup", "event": "UPDATE", "sentTry": 0,
            "url": "https://h.example.org/{{ item.entity.name }}/{{ event }}", "httpMethod": "UPDATE",
            "saveResponseBody": true, "logInItemHistory": true, "signatureScheme": "BOTH", "expiration": 300,
            "useCraChallenge": true, "useOauth": true, "oauthUrl": "https://auth.example.org/token", "clientId": "cid",
            "clientSecret": "csecret", "useDefaultPayload": false, "payload": "{\"t\": \"{{ item.name }}\"}",
            "customHeaders": {"Authorization": "Bearer {{ item.token }}", "X-Team": "ops"}
        });
        let webhook = create(app, input.clone()).await;
        for (key, value) in input.as_object().into_iter().flatten() {
            if key != "clientSecret" && key != "customHeaders" {
                assert_eq!(&webhook[key], value, "{key}");
            }
        }
        // Credential headers are write-only, like secrets.
        assert_eq!(webhook["customHeaders"], json!({"Authorization": "(hidden)", "X-Team": "ops"}));
        assert_eq!(webhook["hasClientSecret"], true);
        let id = webhook["id"].as_str().unwrap_or_default();
        let (sealed, sealed_client) = stored_secrets(app, id).await;
        let secret = app.state.secrets.open(Purpose::WebhookSecret, id, &sealed).expect("opens");
        assert!(secret.expose_secret().starts_with("whsec_"), "BOTH gets a Standard Webhooks secret");
        let sealed_client = sealed_client.expect("client secret stored");
        assert!(!sealed_client.contains("csecret"));
        let client = app.state.secrets.open(Purpose::OauthClientSecret, id, &sealed_client).expect("opens");
        assert_eq!(client.expose_secret(), "csecret");
    })
    .await;
}

#[tokio::test]
async fn invalid_input_is_refused_naming_the_field_and_stores_nothing() {
    each_backend(async |app| {
        let cases = [
            (json!({"name": "  "}), "name"),
            (json!({"itemtype": "Spaceship"}), "itemtype"),
            (json!({"url": "ftp://example.org"}), "url"),
            (json!({"url": "example.org/hook"}), "url"),
            (json!({"sentTry": 256}), "sentTry"),
            (json!({"sentTry": -1}), "sentTry"),
            (json!({"customHeaders": ["X-A"]}), "customHeaders"),
            (json!({"customHeaders": {"X-A": 1}}), "customHeaders"),
            (json!({"customHeaders": {"X-GLPI-signature": "forged"}}), "customHeaders"),
            (json!({"customHeaders": {"X-A": "a\r\nX-Injected: 1"}}), "customHeaders"),
            (json!({"expiration": -1}), "expiration"),
            (json!({"useOauth": true}), "oauthUrl"),
            (json!({"useOauth": true, "oauthUrl": "https://a.example.org/t"}), "clientId"),
            (json!({"useOauth": true, "oauthUrl": "https://a.example.org/t", "clientId": "x"}), "clientSecret"),
            (json!({"oauthUrl": "not a url"}), "oauthUrl"),
            (json!({"entityId": "404"}), "entityId"),
            (json!({"categoryId": "404"}), "categoryId"),
            (json!({"signatureScheme": "STANDARD_WEBHOOKS", "secret": "plain-text"}), "secret"),
            (json!({"secret": ""}), "secret"),
        ];
        for (extra, field) in cases {
            let (code, message) = app.error(&create_mutation(), json!({"input": with(minimal(), extra.clone())})).await;
            assert_eq!(code, "VALIDATION", "{extra}: {message}");
            assert!(message.starts_with(&format!("{field}:")), "{extra}: `{message}` should name {field}");
        }
        let count = app.data("{ webhooks { totalCount } }", json!({})).await;
        assert_eq!(count["webhooks"]["totalCount"], 0);

        // A refused update leaves the stored webhook as it was.
        let webhook = create(app, minimal()).await;
        let id = webhook["id"].clone();
        for (patch, field) in [
            (json!({"name": "renamed", "sentTry": 300}), "sentTry"),
            (json!({"name": "renamed", "url": "mailto:x"}), "url"),
            (json!({"name": "renamed", "useOauth": true}), "oauthUrl"),
            (json!({"name": "renamed", "itemtype": "Nope"}), "itemtype"),
        ] {
            let (code, message) = app.error(&update_mutation(), json!({"id": id, "input": patch})).await;
            assert_eq!(code, "VALIDATION");
            assert!(message.starts_with(&format!("{field}:")), "{message}");
        }
        let stored =
            app.data(&format!("query($id: ID!) {{ webhook(id: $id) {{ {FIELDS} }} }}"), json!({"id": id})).await;
        assert_eq!(stored["webhook"], webhook);
    })
    .await;
}

#[tokio::test]
async fn variables_that_do_not_fit_the_schema_are_validation_errors() {
    each_backend(async |app| {
        let (code, message) =
            app.error(&create_mutation(), json!({"input": with(minimal(), json!({"event": "EXPLODE"}))})).await;
        assert_eq!(code, "VALIDATION", "{message}");
        assert!(message.contains("EXPLODE"), "{message}");
        let (code, _) =
            app.error(&create_mutation(), json!({"input": with(minimal(), json!({"sentTry": "three"}))})).await;
        assert_eq!(code, "VALIDATION");
        let (code, _) = app.error(&create_mutation(), json!({"input": {"name": "no url"}})).await;
        assert_eq!(code, "VALIDATION");
        let (code, _) = app.error("{ webhook(id: \"1\") { secret } }", json!({})).await;
        assert_eq!(code, "VALIDATION", "there is no secret field to query");
        let (code, _) = app.error("{ webhook(id: \"1\") { clientSecret } }", json!({})).await;
        assert_eq!(code, "VALIDATION");
        let (code, _) = app.error("{ webhooks { ", json!({})).await;
        assert_eq!(code, "VALIDATION", "a query that does not parse");
    })
    .await;
}

#[tokio::test]
async fn secrets_are_write_only_and_regenerated_once_shown() {
    each_backend(async |app| {
        let given = "my-very-own-glpi-secret";
        let webhook = create(app, with(minimal(), json!({"secret": given}))).await;
        let id = webhook["id"].clone();
        let everything = app
            .query(&format!("query($id: ID!) {{ webhook(id: $id) {{ {FIELDS} history {{ edges {{ node {{ message oldValue newValue }} }} }} }} webhooks {{ edges {{ node {{ {FIELDS} }} }} }} }}"), json!({"id": id}))
            .await;
        assert!(!everything.to_string().contains(given), "a query showed the secret: {everything}");
        let (sealed, _) = stored_secrets(app, id.as_str().unwrap_or_default()).await;
        assert!(!sealed.contains(given), "the secret is stored sealed");

        let regenerate = "mutation($id: ID!) { regenerateWebhookSecret(id: $id) }";
        let fresh = app.data(regenerate, json!({"id": id})).await["regenerateWebhookSecret"].as_str().unwrap_or_default().to_owned();
        assert_eq!(fresh.len(), 40);
        assert_ne!(fresh, given);
        let (sealed, _) = stored_secrets(app, id.as_str().unwrap_or_default()).await;
        let row = id.as_str().unwrap_or_default();
        assert_eq!(app.state.secrets.open(Purpose::WebhookSecret, row, &sealed).expect("opens").expose_secret(), fresh);

        // Switching to Standard Webhooks needs a secret that fits it.
        app.assert_error(&update_mutation(), json!({"id": id, "input": {"signatureScheme": "STANDARD_WEBHOOKS"}}), "VALIDATION", "secret:").await;
        let scheme = app.data("query($id: ID!) { webhook(id: $id) { signatureScheme } }", json!({"id": id})).await;
        assert_eq!(scheme["webhook"]["signatureScheme"], "GLPI");
        let standard = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let switched = app.data(&update_mutation(), json!({"id": id, "input": {"signatureScheme": "STANDARD_WEBHOOKS", "secret": standard}})).await;
        assert_eq!(switched["updateWebhook"]["signatureScheme"], "STANDARD_WEBHOOKS");
        let fresh = app.data(regenerate, json!({"id": id})).await["regenerateWebhookSecret"].as_str().unwrap_or_default().to_owned();
        assert!(fresh.starts_with("whsec_") && fresh.len() == "whsec_".len() + 44, "{fresh}");
        app.assert_error(regenerate, json!({"id": "999"}), "NOT_FOUND", "999").await;
    })
    .await;
}

#[tokio::test]
async fn updates_are_logged_in_the_webhook_history_without_secret_values() {
    each_backend(async |app| {
        let webhook = create(app, minimal()).await;
        let id = webhook["id"].clone();
        let patch = json!({"name": "Renamed", "sentTry": 5, "secret": "new-secret-value", "clientSecret": "cs", "comment": "note"});
        let updated = app.data(&update_mutation(), json!({"id": id, "input": patch})).await["updateWebhook"].clone();
        assert_eq!((updated["name"].as_str(), updated["sentTry"].as_i64()), (Some("Renamed"), Some(5)));
        assert_eq!(updated["hasClientSecret"], true);
        let cleared = app.data(&update_mutation(), json!({"id": id, "input": {"comment": null, "clientSecret": null}})).await;
        assert_eq!(cleared["updateWebhook"]["comment"], json!(null));
        assert_eq!(cleared["updateWebhook"]["hasClientSecret"], false);

        let history = app
            .data("query($id: ID!) { webhook(id: $id) { history { totalCount edges { node { action message oldValue newValue } } } } }", json!({"id": id}))
            .await;
        let text = history.to_string();
        assert!(!text.contains("new-secret-value") && !text.contains("\"cs\""), "{text}");
        let messages: Vec<&str> = history["webhook"]["history"]["edges"].as_array().into_iter().flatten().filter_map(|e| e["node"]["message"].as_str()).collect();
        for expected in ["name changed", "sentTry changed", "secret changed", "clientSecret changed", "comment changed", "Webhook created"] {
            assert!(messages.contains(&expected), "{expected} missing from {messages:?}");
        }
        let sent_try = history["webhook"]["history"]["edges"].as_array().into_iter().flatten().find(|e| e["node"]["message"] == "sentTry changed").map(|e| (e["node"]["oldValue"].clone(), e["node"]["newValue"].clone()));
        assert_eq!(sent_try, Some((json!("3"), json!("5"))));
    })
    .await;
}

#[tokio::test]
async fn webhooks_are_listed_by_itemtype_and_entity_subtree_in_pages() {
    each_backend(async |app| {
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        let paris = app.data("mutation($p: ID!) { createEntity(input: {name: \"Paris\", parentId: $p}) { id } }", json!({"p": europe})).await["createEntity"]["id"].clone();
        create(app, minimal()).await;
        create(app, with(minimal(), json!({"entityId": europe}))).await;
        create(app, with(minimal(), json!({"entityId": paris, "itemtype": "Computer"}))).await;
        let list = "query($t: String, $e: ID, $after: String) { webhooks(itemtype: $t, entityId: $e, first: 2, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }";
        let europe_hooks = app.data(list, json!({"e": europe})).await;
        assert_eq!(europe_hooks["webhooks"]["totalCount"], 2);
        let tickets = app.data(list, json!({"t": "Ticket"})).await;
        assert_eq!(tickets["webhooks"]["totalCount"], 2);
        let all = app.data(list, json!({})).await;
        assert_eq!(all["webhooks"]["edges"], json!([{"node": {"id": "1"}}, {"node": {"id": "2"}}]));
        let rest = app.data(list, json!({"after": all["webhooks"]["pageInfo"]["endCursor"]})).await;
        assert_eq!(rest["webhooks"]["edges"], json!([{"node": {"id": "3"}}]));
        assert_eq!(rest["webhooks"]["pageInfo"]["hasNextPage"], false);
        app.assert_error("{ webhooks(first: 100000) { totalCount } }", json!({}), "VALIDATION", "first").await;
        assert_eq!(app.data("mutation { deleteWebhook(id: \"3\") }", json!({})).await["deleteWebhook"], true);
        app.assert_error("mutation { deleteWebhook(id: \"3\") }", json!({}), "NOT_FOUND", "3").await;
    })
    .await;
}
