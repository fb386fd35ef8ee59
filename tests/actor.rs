//! Who made each item change: the item's last writer, each history entry's writer, `actor` in
//! templates and filters, so that a webhook can ignore the changes its own integration makes
//! (GLPI issue #20902), while GLPI's default payload stays as it is.

mod common;

use std::time::Duration;

use common::{each_backend, receiver::Receiver};
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: ItemInput!) { createItem(input: $i) { id actor { user profile } } }";

#[tokio::test]
async fn changes_carry_their_writer_to_history_templates_and_filters() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let sync = app.client_as("crm-sync", "event-writer", json!([])).await;
        let alice = app.client_as("alice", "admin", json!([])).await;
        // Fires for tickets not written by the CRM's own sync, and says who wrote them.
        let hook = json!({"name": "to-crm", "entityId": "0", "itemtype": "Ticket", "event": "UPDATE",
            "url": receiver.url("/hook"), "useDefaultPayload": false,
            "payload": "{\"by\": \"{{ actor.user }}\", \"as\": \"{{ actor.profile }}\", \"name\": \"{{ item.name }}\"}"});
        let created = app.data("mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": hook})).await;
        let hook_id = created["createWebhook"]["id"].as_str().expect("id").to_owned();
        app.data(
            "mutation($id: ID!) { setWebhookFilter(webhookId: $id, criteria: [{field: \"actor.user\", searchtype: \"notequals\", value: \"crm-sync\"}]) { id } }",
            json!({"id": hook_id}),
        )
        .await;
        // A plain webhook with GLPI's default payload, on new tickets.
        let plain = json!({"name": "plain", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/plain")});
        app.data("mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": plain})).await;

        let created = app.data_with(&sync, CREATE, json!({"i": {"itemtype": "Ticket", "entityId": "0", "name": "from crm"}})).await;
        assert_eq!(created["createItem"]["actor"], json!({"user": "crm-sync", "profile": "event-writer"}));
        let id = created["createItem"]["id"].as_str().expect("id").to_owned();
        let update = "mutation($id: ID!, $name: String) { updateItem(itemtype: \"Ticket\", id: $id, input: {name: $name}) { actor { user } } }";
        // The sync's own update does not fire; alice's does, and says it was hers.
        app.data_with(&sync, update, json!({"id": id, "name": "synced"})).await;
        let changed = app.data_with(&alice, update, json!({"id": id, "name": "by alice"})).await;
        assert_eq!(changed["updateItem"]["actor"]["user"], "alice", "the last writer");
        let hooks = receiver.wait_for(2, Duration::from_secs(20)).await;
        let sent: Vec<Value> = hooks.iter().filter(|r| r.path == "/hook").map(|r| r.json()).collect();
        assert_eq!(sent, vec![json!({"by": "alice", "as": "admin", "name": "by alice"})], "{hooks:?}");
        let plain: Vec<Value> = hooks.iter().filter(|r| r.path == "/plain").map(|r| r.json()).collect();
        assert_eq!(plain.len(), 1);
        assert!(plain[0].get("actor").is_none(), "GLPI's default payload has no actor: {}", plain[0]);
        assert_eq!(plain[0]["item"]["name"], "from crm");

        // Each history entry names its writer.
        let history = app
            .data(
                "query($id: ID!) { item(itemtype: \"Ticket\", id: $id) { history(first: 10) { edges { node { action message actor { user profile } } } } } }",
                json!({"id": id}),
            )
            .await;
        let writers: Vec<(String, String)> = history["item"]["history"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter(|e| e["node"]["actor"].is_object())
            .map(|e| (e["node"]["action"].as_str().unwrap_or_default().to_owned(), e["node"]["actor"]["user"].as_str().unwrap_or_default().to_owned()))
            .collect();
        assert_eq!(
            writers,
            [("update".to_owned(), "alice".to_owned()), ("update".into(), "crm-sync".into()), ("create".into(), "crm-sync".into())],
            "{history}"
        );

        // Previews and payloadVariables show it; `actor` cannot be an item field.
        let preview = app
            .data(
                "query($w: ID!, $i: ID!) { webhookPreview(webhookId: $w, itemId: $i) { apiData payload } }",
                json!({"w": hook_id, "i": id}),
            )
            .await;
        assert_eq!(preview["webhookPreview"]["apiData"]["actor"], json!({"user": "alice", "profile": "admin"}));
        let variables = app.data("{ payloadVariables(itemtype: \"Ticket\") }", json!({})).await;
        let variables: Vec<&str> = variables["payloadVariables"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
        assert!(variables.contains(&"actor.user") && variables.contains(&"actor.profile"), "{variables:?}");
        app.assert_error(
            CREATE,
            json!({"i": {"itemtype": "Ticket", "entityId": "0", "fields": {"actor": "me"}}}),
            "VALIDATION",
            "`actor` is reserved",
        )
        .await;

        // A trigger's event carries its writer too, and a purge its purger.
        let trigger = json!({"i": {"itemtype": "Ticket", "itemId": id, "event": "UPDATE"}});
        app.data_with(&alice, "mutation($i: TriggerEventInput!) { triggerEvent(input: $i) { queued { id } } }", trigger).await;
        let hooks = receiver.wait_for(3, Duration::from_secs(20)).await;
        assert_eq!(hooks.iter().filter(|r| r.path == "/hook").count(), 2, "the trigger by alice fired");
        let triggered = app.data_with(&sync, "mutation($i: TriggerEventInput!) { triggerEvent(input: $i) { queued { id } } }", json!({"i": {"itemtype": "Ticket", "itemId": id, "event": "UPDATE"}})).await;
        assert_eq!(triggered["triggerEvent"]["queued"], json!([]), "the sync's own trigger is filtered out");
    })
    .await;
}
