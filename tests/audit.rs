//! The audit log: every configuration change with who made it and what it changed, secrets
//! hidden, newest first, filtered, within the reader's entities, outliving its object.

mod common;

use common::each_backend;
use serde_json::{Value, json};

const LOG: &str = "query($t: String, $o: ID, $u: String) { auditLog(objectType: $t, objectId: $o, user: $u, first: 50) { totalCount edges { node { id at user profile objectType objectId action changes } } } }";

fn entries(data: &Value) -> Vec<Value> {
    data["auditLog"]["edges"].as_array().expect("edges").iter().map(|e| e["node"].clone()).collect()
}

fn change<'a>(entry: &'a Value, field: &str) -> &'a Value {
    entry["changes"].as_array().expect("changes").iter().find(|c| c["field"] == field).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn configuration_changes_are_kept_with_who_and_what_secrets_hidden() {
    each_backend(async |app| {
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await;
        let europe = europe["createEntity"]["id"].as_str().expect("id").to_owned();
        let alice = app.client_as("alice", "admin", json!([{"id": europe, "recursive": true}])).await;

        // alice creates, changes and deletes a webhook in her entity.
        let input = json!({"name": "crm", "entityId": europe, "itemtype": "Ticket", "event": "NEW",
            "url": "https://crm.example/hook", "secret": "s3cr3t-value-that-must-not-show",
            "customHeaders": {"Authorization": "Bearer abc", "X-Team": "ops"}});
        let created = app.data_with(&alice, "mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": input})).await;
        let hook = created["createWebhook"]["id"].as_str().expect("id").to_owned();
        app.data_with(&alice, "mutation($id: ID!) { updateWebhook(id: $id, input: {url: \"https://crm.example/v2\", isActive: false}) { id } }", json!({"id": hook})).await;
        app.data_with(&alice, "mutation($id: ID!) { regenerateWebhookSecret(id: $id) }", json!({"id": hook})).await;
        app.data_with(&alice, "mutation($id: ID!) { setWebhookFilter(webhookId: $id, criteria: [{field: \"priority\", searchtype: \"equals\", value: \"5\"}]) { id } }", json!({"id": hook})).await;
        app.data_with(&alice, "mutation($id: ID!) { deleteWebhook(id: $id) }", json!({"id": hook})).await;

        let log = entries(&app.data(LOG, json!({"t": "Webhook", "o": hook})).await);
        let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap_or_default()).collect();
        assert_eq!(actions, ["delete", "setFilter", "regenerateSecret", "update", "create"], "newest first: {log:?}");
        assert!(log.iter().all(|e| e["user"] == "alice" && e["profile"] == "admin"), "{log:?}");
        let text = serde_json::to_string(&log).expect("json");
        assert!(!text.contains("s3cr3t") && !text.contains("Bearer abc"), "secrets never written: {text}");
        let create = &log[4];
        assert_eq!(change(create, "url"), &json!({"field": "url", "old": null, "new": "https://crm.example/hook"}));
        assert_eq!(change(create, "secret"), &json!({"field": "secret", "old": "(hidden)", "new": "(hidden)"}));
        assert_eq!(change(create, "customHeaders")["new"]["Authorization"], "(hidden)");
        assert_eq!(change(create, "customHeaders")["new"]["X-Team"], "ops");
        let update = &log[3];
        let fields: Vec<&str> = update["changes"].as_array().expect("changes").iter().map(|c| c["field"].as_str().unwrap_or_default()).collect();
        assert_eq!(fields, ["isActive", "url"], "only what changed: {update}");
        assert_eq!(change(update, "isActive"), &json!({"field": "isActive", "old": true, "new": false}));
        assert_eq!(change(&log[1], "filter")["new"]["criteria"][0]["field"], "priority");
        assert_eq!(change(&log[0], "name")["old"], "crm", "the deleted webhook's last state is kept");

        // Other objects, and the filters by type and user.
        app.data("mutation { createWebhookCategory(input: {name: \"CRM\"}) { id } }", json!({})).await;
        let categories = entries(&app.data(LOG, json!({"t": "WebhookCategory"})).await);
        assert_eq!((categories.len(), categories[0]["user"].as_str()), (1, Some("admin")));
        let by_alice = app.data(LOG, json!({"u": "alice"})).await;
        assert_eq!(by_alice["auditLog"]["totalCount"], 5);

        // A reader of another entity sees nothing of alice's; global catalogs need every entity.
        let asia = app.data("mutation { createEntity(input: {name: \"Asia\"}) { id } }", json!({})).await;
        let asia = asia["createEntity"]["id"].as_str().expect("id").to_owned();
        let bob = app.client_as("bob", "viewer", json!([{"id": asia, "recursive": true}])).await;
        let seen = app.data_with(&bob, LOG, json!({})).await;
        let seen = entries(&seen);
        assert!(seen.iter().all(|e| e["user"] != "alice" && e["objectType"] != "WebhookCategory"), "{seen:?}");
        assert!(seen.iter().any(|e| e["objectType"] == "Entity" && e["objectId"] == asia.as_str()), "{seen:?}");
        let alice_sees = app.data_with(&alice, LOG, json!({"t": "Webhook"})).await;
        assert_eq!(alice_sees["auditLog"]["totalCount"], 5, "her own changes in her entity");
    })
    .await;
}
