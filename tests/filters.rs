//! Filters: saved searches and inline criteria decide which items fire a webhook; previews
//! agree with what fires.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{each_backend, receiver::Receiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
const SET_FILTER: &str = "mutation($w: ID!, $c: [CriterionInput!], $s: ID) { setWebhookFilter(webhookId: $w, criteria: $c, savedSearchId: $s) { id filter savedSearchId } }";

async fn webhook(app: &common::TestApp, receiver: &Receiver, itemtype: &str, event: &str) -> Value {
    let input = json!({"name": "f", "entityId": "0", "isRecursive": true, "itemtype": itemtype, "event": event, "url": receiver.url("/hook")});
    app.data(CREATE_WEBHOOK, json!({"input": input})).await["createWebhook"]["id"].clone()
}

async fn item(app: &common::TestApp, input: Value) -> String {
    app.data(CREATE_ITEM, json!({"input": input})).await["createItem"]["id"].as_str().unwrap_or_default().to_owned()
}

fn names(requests: &[common::receiver::Recorded]) -> BTreeSet<String> {
    requests.iter().filter_map(|r| r.json()["item"]["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn a_filtered_webhook_fires_only_for_matching_items() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id = webhook(app, &receiver, "Ticket", "NEW").await;
        let critical = json!([{"field": "priority", "searchtype": "morethan", "value": "3"}, {"link": "AND NOT", "field": "name", "searchtype": "contains", "value": "test"}]);
        let set = app.data(SET_FILTER, json!({"w": id, "c": critical})).await;
        assert_eq!(set["setWebhookFilter"]["filter"][0]["field"], "priority");
        for (name, priority) in [("low", 2), ("high", 5), ("high test", 5), ("urgent", 4)] {
            item(app, json!({"itemtype": "Ticket", "entityId": "0", "name": name, "fields": {"priority": priority}})).await;
        }
        receiver.wait_for(2, WAIT).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(names(&receiver.requests()), BTreeSet::from(["high".to_owned(), "urgent".to_owned()]));
        let queued = app.data("{ queuedWebhooks { totalCount } }", json!({})).await;
        assert_eq!(queued["queuedWebhooks"]["totalCount"], 2, "no row for items the filter refuses");

        let preview = "query($w: ID!, $i: ID!) { webhookPreview(webhookId: $w, itemId: $i) { matchesFilter } }";
        assert_eq!(app.data(preview, json!({"w": id, "i": "1"})).await["webhookPreview"]["matchesFilter"], false);
        assert_eq!(app.data(preview, json!({"w": id, "i": "2"})).await["webhookPreview"]["matchesFilter"], true);

        // Cleared: fires for everything again.
        let cleared = app.data(SET_FILTER, json!({"w": id})).await;
        assert_eq!(cleared["setWebhookFilter"]["filter"], Value::Null);
        item(app, json!({"itemtype": "Ticket", "entityId": "0", "name": "anything"})).await;
        receiver.wait_for(3, WAIT).await;
    })
    .await;
}

#[tokio::test]
async fn followups_of_critical_tickets_filter_on_the_parent() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id = webhook(app, &receiver, "ITILFollowup", "NEW").await;
        app.data(SET_FILTER, json!({"w": id, "c": [{"field": "parent_item.priority", "searchtype": "equals", "value": "5"}]})).await;
        item(app, json!({"itemtype": "Ticket", "id": "1", "entityId": "0", "fields": {"priority": 5}})).await;
        item(app, json!({"itemtype": "Ticket", "id": "2", "entityId": "0", "fields": {"priority": 1}})).await;
        item(app, json!({"itemtype": "ITILFollowup", "entityId": "0", "name": "on critical", "parentItemtype": "Ticket", "parentId": "1"})).await;
        item(app, json!({"itemtype": "ITILFollowup", "entityId": "0", "name": "on minor", "parentItemtype": "Ticket", "parentId": "2"})).await;
        receiver.wait_for(1, WAIT).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(names(&receiver.requests()), BTreeSet::from(["on critical".to_owned()]));
    })
    .await;
}

#[tokio::test]
async fn saved_searches_are_reusable_and_guarded() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let create = "mutation($input: SavedSearchInput!) { createSavedSearch(input: $input) { id name itemtype criteria } }";
        let brand = json!({"name": "Acme computers", "itemtype": "Computer", "criteria": [{"field": "brand", "searchtype": "equals", "value": "Acme"}]});
        let saved = app.data(create, json!({"input": brand})).await["createSavedSearch"].clone();
        assert_eq!(saved["criteria"][0]["value"], "Acme");
        app.assert_error(create, json!({"input": brand}), "CONFLICT", "already exists").await;
        let listed = app.data("{ savedSearches(itemtype: \"Computer\") { name } }", json!({})).await;
        assert_eq!(listed["savedSearches"], json!([{"name": "Acme computers"}]));

        let hook = webhook(app, &receiver, "Computer", "NEW").await;
        let set = app.data(SET_FILTER, json!({"w": hook, "s": saved["id"]})).await;
        assert_eq!(set["setWebhookFilter"]["savedSearchId"], saved["id"]);
        item(app, json!({"itemtype": "Computer", "entityId": "0", "name": "acme-1", "fields": {"brand": "Acme"}})).await;
        item(app, json!({"itemtype": "Computer", "entityId": "0", "name": "other-1", "fields": {"brand": "Other"}})).await;
        receiver.wait_for(1, WAIT).await;

        // Editing the saved search changes what fires at once.
        let update = "mutation($id: ID!, $input: SavedSearchInput!) { updateSavedSearch(id: $id, input: $input) { id } }";
        let other = json!({"name": "Acme computers", "itemtype": "Computer", "criteria": [{"field": "brand", "searchtype": "equals", "value": "Other"}]});
        app.data(update, json!({"id": saved["id"], "input": other})).await;
        item(app, json!({"itemtype": "Computer", "entityId": "0", "name": "other-2", "fields": {"brand": "Other"}})).await;
        item(app, json!({"itemtype": "Computer", "entityId": "0", "name": "acme-2", "fields": {"brand": "Acme"}})).await;
        receiver.wait_for(2, WAIT).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(names(&receiver.requests()), BTreeSet::from(["acme-1".to_owned(), "other-2".to_owned()]));

        let delete = "mutation($id: ID!) { deleteSavedSearch(id: $id) }";
        app.assert_error(delete, json!({"id": saved["id"]}), "CONFLICT", "filter of 1 webhooks").await;
        let moved = json!({"name": "Acme computers", "itemtype": "Printer", "criteria": [{"field": "brand", "searchtype": "equals", "value": "x"}]});
        app.assert_error(update, json!({"id": saved["id"], "input": moved}), "CONFLICT", "itemtype").await;
        let ticket_hook = webhook(app, &receiver, "Ticket", "NEW").await;
        app.assert_error(SET_FILTER, json!({"w": ticket_hook, "s": saved["id"]}), "VALIDATION", "savedSearchId").await;
        app.assert_error(SET_FILTER, json!({"w": hook, "s": saved["id"], "c": [{"field": "a", "searchtype": "empty"}]}), "VALIDATION", "give one").await;

        // Changing the webhook's itemtype drops its filter (as GLPI); then the search can go.
        let retype = "mutation($id: ID!) { updateWebhook(id: $id, input: {itemtype: \"Printer\"}) { filter savedSearchId history { edges { node { message } } } } }";
        let retyped = app.data(retype, json!({"id": hook})).await["updateWebhook"].clone();
        assert_eq!((retyped["filter"].clone(), retyped["savedSearchId"].clone()), (Value::Null, Value::Null));
        assert!(retyped.to_string().contains("filter dropped"), "{retyped}");
        assert_eq!(app.data(delete, json!({"id": saved["id"]})).await["deleteSavedSearch"], true);
    })
    .await;
}

#[tokio::test]
async fn criteria_are_validated_naming_their_position() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let id = webhook(app, &receiver, "Ticket", "NEW").await;
        let cases = [
            (json!([{"field": "name", "searchtype": "like", "value": "x"}]), "criteria[0].searchtype"),
            (json!([{"field": "name", "searchtype": "equals", "value": "x"}, {"field": "date_mod", "searchtype": "lessthan", "value": "yesterday"}]), "criteria[1].value"),
            (json!([{"criteria": []}]), "criteria[0].criteria"),
            (json!([{"link": "XOR", "field": "name", "searchtype": "empty"}]), "criteria[0].link"),
            (json!([{"criteria": [{"field": "name", "searchtype": "under", "value": "1"}]}]), "criteria[0].criteria[0].field"),
        ];
        for (criteria, position) in cases {
            let (code, message) = app.error(SET_FILTER, json!({"w": id, "c": criteria})).await;
            assert_eq!(code, "VALIDATION", "{message}");
            assert!(message.starts_with(position), "`{message}` should start with {position}");
        }
        let unchanged = app.data("query($id: ID!) { webhook(id: $id) { filter } }", json!({"id": id})).await;
        assert_eq!(unchanged["webhook"]["filter"], Value::Null);
    })
    .await;
}

#[tokio::test]
async fn filter_preview_pages_the_matching_items_with_their_total() {
    each_backend(async |app| {
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        for n in 0..7 {
            let entity = if n % 2 == 0 { europe.clone() } else { json!("0") };
            item(app, json!({"itemtype": "Printer", "entityId": entity, "name": format!("p{n}")})).await;
        }
        let query = "query($c: [CriterionInput!]!, $after: String) { filterPreview(itemtype: \"Printer\", criteria: $c, first: 2, after: $after) { totalCount edges { node { name } } pageInfo { hasNextPage endCursor } } }";
        let under = json!([{"field": "entity", "searchtype": "under", "value": europe}]);
        let first = app.data(query, json!({"c": under})).await["filterPreview"].clone();
        assert_eq!(first["totalCount"], 4);
        assert_eq!(first["edges"], json!([{"node": {"name": "p0"}}, {"node": {"name": "p2"}}]));
        let next = app.data(query, json!({"c": under, "after": first["pageInfo"]["endCursor"]})).await["filterPreview"].clone();
        assert_eq!(next["edges"], json!([{"node": {"name": "p4"}}, {"node": {"name": "p6"}}]));
        assert_eq!(next["pageInfo"]["hasNextPage"], false);
        let via_items = app.data("query($c: [CriterionInput!]) { items(itemtype: \"Printer\", criteria: $c) { totalCount } }", json!({"c": [{"field": "entity", "searchtype": "notunder", "value": europe}]})).await;
        assert_eq!(via_items["items"]["totalCount"], 3);
    })
    .await;
}

/// Random items and random criteria: the items `filterPreview` lists are exactly those the
/// webhook fired for.
#[tokio::test]
async fn preview_and_firing_agree_on_random_items_and_criteria() {
    each_backend(async |app| {
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let words = ["alpha", "Beta", "gamma", "", "ALPHA beta"];
        let ops = ["contains", "notcontains", "equals", "notequals", "lessthan", "morethan", "empty"];
        let links = ["AND", "OR", "AND NOT", "OR NOT"];
        for round in 0..4 {
            let receiver = Receiver::start().await;
            let itemtype = format!("Fuzz{round}");
            app.data("mutation($n: String!) { createItemtype(input: {name: $n}) { name } }", json!({"n": itemtype})).await;
            let input = json!({"name": "fz", "entityId": "0", "isRecursive": true, "itemtype": itemtype, "event": "NEW", "url": receiver.url("/hook")});
            let id = app.data(CREATE_WEBHOOK, json!({"input": input})).await["createWebhook"]["id"].clone();
            let mut criteria = Vec::new();
            for i in 0..(1 + next(3)) {
                let op = ops[next(ops.len() as u64) as usize];
                let field = ["word", "n", "missing"][next(3) as usize];
                let value = if matches!(op, "lessthan" | "morethan") || field == "n" { next(10).to_string() } else { words[next(words.len() as u64) as usize].to_owned() };
                let leaf = json!({"link": links[next(4) as usize], "field": field, "searchtype": op, "value": value});
                criteria.push(if i == 1 && next(2) == 0 { json!({"link": links[next(4) as usize], "criteria": [leaf]}) } else { leaf });
            }
            app.data(SET_FILTER, json!({"w": id, "c": criteria})).await;
            for n in 0..15 {
                let fields = json!({"word": words[next(words.len() as u64) as usize], "n": next(10)});
                item(app, json!({"itemtype": itemtype, "entityId": "0", "name": format!("i{n}"), "fields": fields})).await;
            }
            let preview = app
                .data("query($t: String!, $c: [CriterionInput!]!) { filterPreview(itemtype: $t, criteria: $c, first: 100) { totalCount edges { node { name } } } }", json!({"t": itemtype, "c": criteria}))
                .await["filterPreview"]
                .clone();
            let expected: BTreeSet<String> = preview["edges"].as_array().into_iter().flatten().filter_map(|e| e["node"]["name"].as_str().map(str::to_owned)).collect();
            assert_eq!(preview["totalCount"].as_u64(), Some(expected.len() as u64));
            if !expected.is_empty() {
                receiver.wait_for(expected.len(), WAIT).await;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(names(&receiver.requests()), expected, "criteria {criteria:?}");
        }
    })
    .await;
}
