//! The write path: batch mutations, concurrent writes committed together (one refused write
//! refuses only itself), finding a delivery by its id, fenced claims, and values a database
//! cannot store.

mod common;

use std::time::Duration;

use common::{
    each_backend, each_backend_with,
    receiver::{Receiver, Reply},
};
use serde_json::{Value, json};

const CREATE: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id name } }";
const CREATE_MANY: &str = "mutation($inputs: [ItemInput!]!) { createItems(inputs: $inputs) { id name } }";
const TRIGGER_MANY: &str =
    "mutation($inputs: [TriggerEventInput!]!) { triggerEvents(inputs: $inputs) { queued { id itemId event } } }";
const WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const COUNT: &str = "query($t: String!) { items(itemtype: $t) { totalCount } }";

fn ticket(name: &str) -> Value {
    json!({"itemtype": "Ticket", "entityId": "0", "name": name})
}

#[tokio::test]
async fn create_items_stores_a_batch_in_order_or_nothing_and_names_the_refused_input() {
    each_backend(async |app| {
        let inputs: Vec<Value> = (0..50).map(|n| ticket(&format!("t{n}"))).collect();
        let created = app.data(CREATE_MANY, json!({"inputs": inputs})).await;
        let names: Vec<&str> =
            created["createItems"].as_array().expect("a list").iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(names, (0..50).map(|n| format!("t{n}")).collect::<Vec<_>>());

        // One bad input in the middle: nothing of the call is stored.
        let mut inputs: Vec<Value> = (0..10).map(|n| ticket(&format!("u{n}"))).collect();
        inputs[6] = json!({"itemtype": "Ticket", "entityId": "999", "name": "bad"});
        let response = app.query(CREATE_MANY, json!({"inputs": inputs})).await;
        let error = &response["errors"][0];
        assert_eq!(error["extensions"]["code"], "VALIDATION", "{response}");
        assert_eq!(error["extensions"]["index"], 6, "{response}");
        assert!(error["message"].as_str().unwrap_or_default().starts_with("inputs[6]: entityId"), "{response}");
        assert_eq!(app.data(COUNT, json!({"t": "Ticket"})).await["items"]["totalCount"], 50);

        // A duplicate id found by the database is refused the same way.
        let inputs = json!([
            {"itemtype": "Ticket", "id": "INC-1", "entityId": "0"},
            {"itemtype": "Ticket", "id": "INC-1", "entityId": "0"}
        ]);
        let response = app.query(CREATE_MANY, json!({"inputs": inputs})).await;
        assert_eq!(response["errors"][0]["extensions"]["code"], "CONFLICT", "{response}");
        assert_eq!(response["errors"][0]["extensions"]["index"], 1, "{response}");
        assert_eq!(app.data(COUNT, json!({"t": "Ticket"})).await["items"]["totalCount"], 50);

        let too_many: Vec<Value> = (0..1001).map(|n| ticket(&format!("x{n}"))).collect();
        app.assert_error(CREATE_MANY, json!({"inputs": too_many}), "VALIDATION", "at most 1000").await;
        assert_eq!(app.data(CREATE_MANY, json!({"inputs": []})).await["createItems"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_commit_together_and_a_refused_one_stores_nothing() {
    each_backend(async |app| {
        app.data(CREATE, json!({"input": {"itemtype": "Ticket", "id": "taken", "entityId": "0"}})).await;
        let mut calls = Vec::new();
        for n in 0..40 {
            let input = if n == 20 {
                json!({"itemtype": "Ticket", "id": "taken", "entityId": "0", "name": "again"})
            } else {
                ticket(&format!("c{n}"))
            };
            calls.push(app.query(CREATE, json!({"input": input})));
        }
        let responses = futures_util::future::join_all(calls).await;
        for (n, response) in responses.iter().enumerate() {
            if n == 20 {
                assert_eq!(response["errors"][0]["extensions"]["code"], "CONFLICT", "{response}");
            } else {
                assert!(response.get("errors").is_none(), "call {n}: {response}");
                assert_eq!(response["data"]["createItem"]["name"], format!("c{n}"));
            }
        }
        assert_eq!(app.data(COUNT, json!({"t": "Ticket"})).await["items"]["totalCount"], 40);
        let taken = app.data("{ item(itemtype: \"Ticket\", id: \"taken\") { name } }", json!({})).await;
        assert_eq!(taken["item"]["name"], Value::Null, "the refused write changed nothing");
        // Every assigned id is distinct.
        let mut ids: Vec<String> =
            responses.iter().filter_map(|r| r["data"]["createItem"]["id"].as_str().map(str::to_owned)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 39);
    })
    .await;
}

/// Creates of one new id race past the check made before the write: the database refuses all
/// but one, and each refused call says why and stores nothing. (A create refused while alone
/// in its group, run again on its own, is what `tests/faults.rs` sees of a full database.)
#[tokio::test]
async fn creates_racing_for_one_new_id_store_one_item_and_refuse_the_others() {
    each_backend(async |app| {
        for round in 0..5 {
            let id = format!("race-{round}");
            let calls = (0..6).map(|n| {
                let input = json!({"itemtype": "Ticket", "id": id, "entityId": "0", "name": format!("{id}/{n}")});
                app.query(CREATE, json!({"input": input}))
            });
            let responses = futures_util::future::join_all(calls).await;
            let stored: Vec<&Value> = responses.iter().filter(|r| r.get("errors").is_none()).collect();
            assert_eq!(stored.len(), 1, "round {round}: {responses:?}");
            for response in responses.iter().filter(|r| r.get("errors").is_some()) {
                assert_eq!(response["errors"][0]["extensions"]["code"], "CONFLICT", "{response}");
                assert!(response["data"].is_null(), "{response}");
            }
            let query = "query($id: ID!) { item(itemtype: \"Ticket\", id: $id) { name } }";
            let item = app.data(query, json!({"id": id})).await;
            assert_eq!(item["item"]["name"], stored[0]["data"]["createItem"]["name"], "round {round}");
        }
        assert_eq!(app.data(COUNT, json!({"t": "Ticket"})).await["items"]["totalCount"], 5);
    })
    .await;
}

#[tokio::test]
async fn trigger_events_raises_a_batch_and_a_delivery_is_found_by_its_id() {
    let receiver = Receiver::start().await;
    each_backend(async |app| {
        let path = format!("/hook-{:?}", app.backend);
        let input = json!({"name": "w", "entityId": "0", "itemtype": "Computer", "event": "UPDATE", "url": receiver.url(&path)});
        app.data(WEBHOOK, json!({"input": input})).await;
        let inputs: Vec<Value> = (0..5)
            .map(|n| json!({"itemtype": "Computer", "itemId": format!("pc-{n}"), "event": "UPDATE", "item": {"entityId": 0, "name": format!("pc {n}")}}))
            .collect();
        let results = app.data(TRIGGER_MANY, json!({"inputs": inputs})).await;
        let results = results["triggerEvents"].as_array().expect("a list").clone();
        assert_eq!(results.len(), 5);
        for (n, result) in results.iter().enumerate() {
            assert_eq!(result["queued"][0]["itemId"], format!("pc-{n}"));
            assert_eq!(result["queued"][0]["event"], "UPDATE");
        }
        // All or nothing: the second input names an item that is not stored.
        let inputs = json!([
            {"itemtype": "Computer", "itemId": "pc-0", "event": "UPDATE"},
            {"itemtype": "Computer", "itemId": "nowhere", "event": "UPDATE"}
        ]);
        let response = app.query(TRIGGER_MANY, json!({"inputs": inputs})).await;
        assert_eq!(response["errors"][0]["extensions"]["code"], "NOT_FOUND", "{response}");
        assert_eq!(response["errors"][0]["extensions"]["index"], 1, "{response}");
        let total = app.data("{ queuedWebhooks { totalCount } }", json!({})).await;
        assert_eq!(total["queuedWebhooks"]["totalCount"], 5);

        let rows = app.wait_queue(5, &["SENT"]).await;
        receiver.wait_for(5, Duration::from_secs(10)).await;
        let arrived = receiver.requests_to(&path);
        let reported = arrived[0].header("x-hookline-delivery").expect("a delivery id").to_owned();
        let query = "query($d: String) { queuedWebhooks(deliveryId: $d) { totalCount edges { node { id deliveryId } } } }";
        let found = app.data(query, json!({"d": reported})).await;
        assert_eq!(found["queuedWebhooks"]["totalCount"], 1);
        assert_eq!(found["queuedWebhooks"]["edges"][0]["node"]["deliveryId"], reported.as_str());
        assert!(rows.iter().any(|r| r["deliveryId"] == reported.as_str()));
        let none = app.data(query, json!({"d": "msg_unknown"})).await;
        assert_eq!(none["queuedWebhooks"]["totalCount"], 0);
    })
    .await;
}

#[tokio::test]
async fn the_outcome_of_a_claim_that_was_lost_is_not_written() {
    let receiver = Receiver::start().await;
    each_backend_with(
        |config| config.delivery.http_timeout = Duration::from_secs(10),
        async |app| {
            let path = format!("/slow-{:?}", app.backend);
            // The first attempt answers 200 after 1.5 s, the second after 4 s.
            receiver.script(&path, vec![Reply::Hang(Duration::from_millis(1500)), Reply::Hang(Duration::from_secs(4))]);
            let input =
                json!({"name": "w", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url(&path)});
            app.data(WEBHOOK, json!({"input": input})).await;
            app.data(CREATE, json!({"input": ticket("fenced")})).await;
            let row = app.wait_queue(1, &["SENDING"]).await.remove(0);
            let id: i64 = row["id"].as_str().and_then(|id| id.parse().ok()).expect("an id");
            let claimed = app.state.queue.require(id).await.expect("the row");
            let first_token = claimed.claim_token.expect("a claim token");
            // As if the first worker's lease had ended: the row goes back and is claimed again.
            assert_eq!(app.state.queue.release(vec![id], first_token).await.expect("released"), 1);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let row = app.state.queue.require(id).await.expect("the row");
                if row.claim_token.is_some_and(|t| t != first_token) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the row was not claimed again: {row:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The first attempt has answered by now; its outcome must not have been written.
            tokio::time::sleep(Duration::from_millis(2000)).await;
            let row = app.state.queue.require(id).await.expect("the row");
            assert_eq!(row.status, entity::queued_webhooks::QueueStatus::Sending, "{row:?}");
            assert_eq!(row.sent_try, 0, "the stale attempt was not counted: {row:?}");
            let rows = app.wait_queue(1, &["SENT"]).await;
            assert_eq!(rows[0]["sentTry"], 1, "only the second claim's attempt is recorded: {rows:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn a_response_body_with_nul_bytes_is_stored_and_the_other_rows_are_sent_once() {
    let receiver = Receiver::start().await;
    each_backend(async |app| {
        let prefix = format!("{:?}", app.backend);
        for n in 0..5 {
            let path = format!("/{prefix}/{n}");
            if n == 2 {
                receiver.script(&path, vec![Reply::Full(200, vec![], "before\0after".into())]);
            }
            let input = json!({"name": format!("w{n}"), "entityId": "0", "itemtype": "Ticket", "event": "NEW",
                               "url": receiver.url(&path), "saveResponseBody": true});
            app.data(WEBHOOK, json!({"input": input})).await;
        }
        app.data(CREATE, json!({"input": ticket("nul")})).await;
        let rows = app.wait_queue(5, &["SENT"]).await;
        let nul = rows.iter().find(|r| r["url"].as_str().unwrap_or_default().ends_with("/2")).expect("row 2");
        assert_eq!(nul["responseBody"], "before\u{FFFD}after");
        assert!(rows.iter().all(|r| r["sentTry"] == 1), "{rows:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mine = receiver.requests().into_iter().filter(|r| r.path.starts_with(&format!("/{prefix}/"))).count();
        assert_eq!(mine, 5, "each row sent once");
    })
    .await;
}

#[tokio::test]
async fn the_root_types_and_the_history_connection_have_the_names_clients_expect() {
    each_backend(async |app| {
        assert_eq!(app.data("{ __typename }", json!({})).await["__typename"], "Query");
        assert_eq!(app.data("mutation { __typename }", json!({})).await["__typename"], "Mutation");
        let names = app
            .data("{ s: __schema { subscriptionType { name } } h: __type(name: \"HistoryConnection\") { name fields { name } } e: __type(name: \"HistoryEdge\") { name } }", json!({}))
            .await;
        assert_eq!(names["s"]["subscriptionType"]["name"], "Subscription");
        assert_eq!(names["h"]["name"], "HistoryConnection");
        assert_eq!(names["e"]["name"], "HistoryEdge");
    })
    .await;
}

/// SQLite: what the writer commits is copied from the WAL into the database file by a task of
/// its own within moments, not left in the WAL until the writer's own checkpoint (at 16,000
/// pages, 64 MiB).
#[tokio::test]
async fn sqlite_writes_reach_the_database_file_soon_after_they_commit() {
    each_backend(async |app| {
        let common::Backend::Sqlite = app.backend else { return };
        let file = app.data_dir.join("hookline.db");
        let size = || std::fs::metadata(&file).map(|m| m.len()).expect("the database file");
        let before = size();
        let blob = "x".repeat(16 * 1024);
        for n in 0..100 {
            let input =
                json!({"itemtype": "Computer", "entityId": "0", "name": format!("c{n}"), "fields": {"blob": blob}});
            app.data(CREATE, json!({"input": input})).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < before + 1_600_000 {
            assert!(std::time::Instant::now() < deadline, "the database file grew from {before} to {} bytes", size());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
