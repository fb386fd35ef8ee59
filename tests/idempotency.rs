//! Idempotent intake: a mutation repeated with the same `idempotencyKey` answers the first
//! call's result and raises nothing; the same key with other arguments is a CONFLICT; keys
//! belong to one user and one mutation, and are forgotten after the window.

mod common;

use std::time::Duration;

use common::{each_backend, each_backend_with, receiver::Receiver};
use serde_json::{Value, json};

const CREATE: &str =
    "mutation($input: ItemInput!, $key: String) { createItem(input: $input, idempotencyKey: $key) { id name } }";
const CREATE_MANY: &str =
    "mutation($inputs: [ItemInput!]!, $key: String) { createItems(inputs: $inputs, idempotencyKey: $key) { id name } }";
const UPDATE: &str = "mutation($id: ID!, $input: ItemPatch!, $key: String) { updateItem(itemtype: \"Ticket\", id: $id, input: $input, idempotencyKey: $key) { id name } }";
const PURGE: &str =
    "mutation($id: ID!, $key: String) { purgeItem(itemtype: \"Ticket\", id: $id, idempotencyKey: $key) }";
const TRIGGER: &str = "mutation($input: TriggerEventInput!, $key: String) { triggerEvent(input: $input, idempotencyKey: $key) { queued { id deliveryId } } }";
const TRIGGER_MANY: &str = "mutation($inputs: [TriggerEventInput!]!, $key: String) { triggerEvents(inputs: $inputs, idempotencyKey: $key) { queued { id } } }";
const COUNT: &str = "query { items(itemtype: \"Ticket\") { totalCount } }";
const QUEUED: &str = "query { queuedWebhooks { totalCount } }";

fn ticket(name: &str) -> Value {
    json!({"itemtype": "Ticket", "entityId": "0", "name": name})
}

/// A webhook on every event of tickets, delivering to `receiver` at `path`.
async fn hooks(app: &common::TestApp, receiver: &Receiver, path: &str) {
    for event in ["NEW", "UPDATE", "PURGE"] {
        let input = json!({"name": format!("w {event}"), "entityId": "0", "itemtype": "Ticket", "event": event,
                           "url": receiver.url(path)});
        app.data("mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }", json!({"input": input}))
            .await;
    }
}

async fn tickets(app: &common::TestApp) -> u64 {
    app.data(COUNT, json!({})).await["items"]["totalCount"].as_u64().expect("a count")
}

async fn queued(app: &common::TestApp) -> u64 {
    app.data(QUEUED, json!({})).await["queuedWebhooks"]["totalCount"].as_u64().expect("a count")
}

#[tokio::test]
async fn a_repeated_item_mutation_answers_the_first_result_and_raises_nothing() {
    let receiver = Receiver::start().await;
    each_backend(async |app| {
        let path = format!("/items-{:?}", app.backend);
        hooks(app, &receiver, &path).await;

        let first = app.data(CREATE, json!({"input": ticket("printer"), "key": "create-1"})).await;
        let again = app.data(CREATE, json!({"input": ticket("printer"), "key": "create-1"})).await;
        assert_eq!(first, again);
        // The same input in another key order is the same call.
        let reordered = json!({"name": "printer", "itemtype": "Ticket", "entityId": "0"});
        assert_eq!(app.data(CREATE, json!({"input": reordered, "key": "create-1"})).await, first);
        assert_eq!(tickets(app).await, 1);
        let id = first["createItem"]["id"].as_str().expect("an id").to_owned();

        // Without a key, the same input is a new call.
        app.data(CREATE, json!({"input": ticket("printer")})).await;
        assert_eq!(tickets(app).await, 2);

        let patch = json!({"id": id, "input": {"name": "printer 2"}, "key": "rename"});
        let renamed = app.data(UPDATE, patch.clone()).await;
        assert_eq!(renamed["updateItem"]["name"], "printer 2");
        // Renamed back by someone else: the repeat answers the item as it is now, and changes nothing.
        app.data(UPDATE, json!({"id": id, "input": {"name": "printer 3"}})).await;
        assert_eq!(app.data(UPDATE, patch).await["updateItem"]["name"], "printer 3");

        let batch = json!({"inputs": [ticket("a"), ticket("b")], "key": "batch"});
        let created = app.data(CREATE_MANY, batch.clone()).await;
        assert_eq!(app.data(CREATE_MANY, batch).await, created);
        assert_eq!(tickets(app).await, 4);

        assert_eq!(app.data(PURGE, json!({"id": id, "key": "purge"})).await["purgeItem"], true);
        assert_eq!(app.data(PURGE, json!({"id": id, "key": "purge"})).await["purgeItem"], true);
        assert_eq!(tickets(app).await, 3);

        // new ×4 (one unkeyed), update ×2 (one unkeyed), purge ×1: nothing more.
        let delivered = receiver.wait_for(7, Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.requests_to(&path).len(), 7, "{delivered:?}");
        assert_eq!(queued(app).await, 7);
    })
    .await;
}

#[tokio::test]
async fn a_repeated_trigger_answers_the_same_queued_webhooks() {
    let receiver = Receiver::start().await;
    each_backend(async |app| {
        let path = format!("/trigger-{:?}", app.backend);
        hooks(app, &receiver, &path).await;
        let event =
            json!({"itemtype": "Ticket", "itemId": "INC-7", "event": "NEW", "item": {"entityId": 0, "name": "n"}});
        let first = app.data(TRIGGER, json!({"input": event, "key": "t-1"})).await;
        assert_eq!(first["triggerEvent"]["queued"].as_array().map(Vec::len), Some(1));
        assert_eq!(app.data(TRIGGER, json!({"input": event, "key": "t-1"})).await, first);

        let update = json!({"itemtype": "Ticket", "itemId": "INC-7", "event": "UPDATE"});
        let inputs = json!({"inputs": [update, update], "key": "t-many"});
        let many = app.data(TRIGGER_MANY, inputs.clone()).await;
        assert_eq!(app.data(TRIGGER_MANY, inputs).await, many);
        assert_eq!(many["triggerEvents"].as_array().map(Vec::len), Some(2));

        receiver.wait_for(3, Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.requests_to(&path).len(), 3);
        assert_eq!(queued(app).await, 3);
    })
    .await;
}

#[tokio::test]
async fn a_key_with_other_arguments_is_a_conflict_and_keys_belong_to_a_user_and_a_mutation() {
    each_backend(async |app| {
        app.data(CREATE, json!({"input": ticket("one"), "key": "k"})).await;
        let other = json!({"input": ticket("two"), "key": "k"});
        app.assert_error(CREATE, other, "CONFLICT", "idempotencyKey: `k` was used").await;
        assert_eq!(tickets(app).await, 1);

        // Another user's key of the same name is another key.
        let sync = app.client_as("crm-sync", "event-writer", json!([])).await;
        let theirs = app.data_with(&sync, CREATE, json!({"input": ticket("two"), "key": "k"})).await;
        assert_eq!(theirs["createItem"]["name"], "two");
        // So is the same key on another mutation.
        app.data(CREATE_MANY, json!({"inputs": [ticket("three")], "key": "k"})).await;
        assert_eq!(tickets(app).await, 3);

        app.assert_error(CREATE, json!({"input": ticket("x"), "key": ""}), "VALIDATION", "idempotencyKey").await;
        let long = "k".repeat(256);
        app.assert_error(CREATE, json!({"input": ticket("x"), "key": long}), "VALIDATION", "255").await;
        // A refused call records nothing: the key is still free.
        let refused = json!({"input": {"itemtype": "Ticket", "entityId": "999"}, "key": "retry-me"});
        app.assert_error(CREATE, refused, "VALIDATION", "entityId").await;
        let fixed = app.data(CREATE, json!({"input": ticket("fixed"), "key": "retry-me"})).await;
        assert_eq!(fixed["createItem"]["name"], "fixed");
    })
    .await;
}

#[tokio::test]
async fn concurrent_calls_with_one_key_write_once_and_all_answer_it() {
    each_backend(async |app| {
        let calls = (0..12).map(|_| app.query(CREATE, json!({"input": ticket("racy"), "key": "race"})));
        let responses = futures_util::future::join_all(calls).await;
        let ids: std::collections::HashSet<String> = responses
            .iter()
            .map(|response| {
                assert!(response.get("errors").is_none(), "{response}");
                response["data"]["createItem"]["id"].as_str().expect("an id").to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1, "{responses:?}");
        assert_eq!(tickets(app).await, 1);
    })
    .await;
}

#[tokio::test]
async fn a_key_is_forgotten_after_the_window() {
    each_backend_with(
        |config| config.delivery.idempotency_window = Duration::from_secs(1),
        async |app| {
            let first = app.data(CREATE, json!({"input": ticket("w"), "key": "short"})).await;
            assert_eq!(app.data(CREATE, json!({"input": ticket("w"), "key": "short"})).await, first);
            tokio::time::sleep(Duration::from_millis(1300)).await;
            let later = app.data(CREATE, json!({"input": ticket("w"), "key": "short"})).await;
            assert_ne!(later, first);
            assert_eq!(tickets(app).await, 2);
        },
    )
    .await;
}
