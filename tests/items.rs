//! Items: create, update with history, trash, restore, purge; the itemtype catalog.

mod common;

use common::each_backend;
use serde_json::json;

const CREATE: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id itemtype entityId name fields isDeleted parentItemtype parentId document } }";
const UPDATE: &str = "mutation($t: String!, $id: ID!, $input: ItemPatch!) { updateItem(itemtype: $t, id: $id, input: $input) { name entityId fields dateMod } }";
const HISTORY: &str = "query($t: String!, $id: ID!) { item(itemtype: $t, id: $id) { history(first: 50) { totalCount edges { node { action message oldValue newValue } } } } }";

#[tokio::test]
async fn the_catalog_holds_glpis_common_types_and_custom_ones() {
    each_backend(async |app| {
        let data = app.data("{ itemtypes { name isCustom parentItemtypes } }", json!({})).await;
        let names: Vec<&str> = data["itemtypes"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
        for expected in [
            "Ticket", "Change", "Problem", "ITILFollowup", "TicketTask", "Computer", "Monitor", "NetworkEquipment",
            "Printer", "Phone", "Software", "User", "Supplier", "Contract",
        ] {
            assert!(names.contains(&expected), "{expected} missing from {names:?}");
        }
        let create = "mutation($input: ItemtypeInput!) { createItemtype(input: $input) { name isCustom parentItemtypes fields } }";
        let car = app.data(create, json!({"input": {"name": "Glpi\\CustomAsset\\Car", "fields": ["plate", "plate"]}})).await;
        assert_eq!(
            car["createItemtype"],
            json!({"name": "Glpi\\CustomAsset\\Car", "isCustom": true, "parentItemtypes": [], "fields": ["plate"]})
        );
        app.assert_error(create, json!({"input": {"name": "Ticket"}}), "CONFLICT", "already exists").await;
        app.assert_error(create, json!({"input": {"name": "Bad Name"}}), "VALIDATION", "name").await;
        app.assert_error(create, json!({"input": {"name": "Note", "parentItemtypes": ["Nope"]}}), "VALIDATION", "parentItemtypes").await;
        app.assert_error(create, json!({"input": {"name": "Note", "fields": ["entity"]}}), "VALIDATION", "fields").await;
        // An item of the new type is accepted, one of an unknown type is not.
        app.data(CREATE, json!({"input": {"itemtype": "Glpi\\CustomAsset\\Car", "entityId": "0", "fields": {"plate": "AB-123"}}})).await;
        app.assert_error(CREATE, json!({"input": {"itemtype": "Spaceship", "entityId": "0"}}), "VALIDATION", "unknown itemtype").await;
    })
    .await;
}

#[tokio::test]
async fn items_get_increasing_ids_or_keep_their_own() {
    each_backend(async |app| {
        let first = app.data(CREATE, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "a"}})).await;
        assert_eq!(first["createItem"]["id"], "1");
        let own = app.data(CREATE, json!({"input": {"itemtype": "Ticket", "id": "7", "entityId": "0"}})).await;
        assert_eq!(own["createItem"]["id"], "7");
        let next = app.data(CREATE, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
        assert_eq!(next["createItem"]["id"], "8", "assigned numbers stay above ids callers used");
        let foreign = app.data(CREATE, json!({"input": {"itemtype": "Ticket", "id": "INC-0042", "entityId": "0"}})).await;
        assert_eq!(foreign["createItem"]["document"]["id"], "INC-0042");
        assert_eq!(next["createItem"]["document"]["id"], 8);
        // Ids are per itemtype.
        let computer = app.data(CREATE, json!({"input": {"itemtype": "Computer", "entityId": "0"}})).await;
        assert_eq!(computer["createItem"]["id"], "1");
        app.assert_error(CREATE, json!({"input": {"itemtype": "Ticket", "id": "7", "entityId": "0"}}), "CONFLICT", "already exists").await;

        let page = app.data("{ items(itemtype: \"Ticket\", first: 2) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }", json!({})).await;
        assert_eq!(page["items"]["totalCount"], 4);
        assert_eq!(page["items"]["edges"], json!([{"node": {"id": "1"}}, {"node": {"id": "7"}}]));
        assert_eq!(page["items"]["pageInfo"]["hasNextPage"], true);
        let rest = app
            .data(
                "query($after: String) { items(itemtype: \"Ticket\", first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage } } }",
                json!({"after": page["items"]["pageInfo"]["endCursor"]}),
            )
            .await;
        assert_eq!(rest["items"]["edges"], json!([{"node": {"id": "8"}}, {"node": {"id": "INC-0042"}}]));
        assert_eq!(rest["items"]["pageInfo"]["hasNextPage"], false);
        app.assert_error("{ items(itemtype: \"Ticket\", after: \"garbage\") { totalCount } }", json!({}), "VALIDATION", "after").await;
    })
    .await;
}

#[tokio::test]
async fn the_item_document_has_the_entity_dates_and_fields_at_top_level() {
    each_backend(async |app| {
        let paris = app.data("mutation { createEntity(input: {name: \"Paris\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        let input = json!({"itemtype": "Ticket", "entityId": paris, "name": "Printer \"on fire\"", "fields": {"priority": 5, "status": {"id": 2, "name": "Processing"}}});
        let item = app.data(CREATE, json!({"input": input})).await["createItem"].clone();
        let doc = &item["document"];
        assert_eq!(doc["name"], "Printer \"on fire\"");
        assert_eq!(doc["priority"], 5);
        assert_eq!(doc["status"]["name"], "Processing");
        assert_eq!(doc["entity"], json!({"id": paris.as_str().and_then(|p| p.parse::<i64>().ok()), "name": "Paris", "completename": "Root entity > Paris"}));
        assert_eq!(doc["is_deleted"], false);
        let created = doc["date_creation"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'), "{created}");
        app.assert_error(CREATE, json!({"input": {"itemtype": "Ticket", "entityId": "0", "fields": {"date_mod": 1}}}), "VALIDATION", "reserved").await;
        app.assert_error(CREATE, json!({"input": {"itemtype": "Ticket", "entityId": "0", "fields": [1, 2]}}), "VALIDATION", "fields").await;
        app.assert_error(CREATE, json!({"input": {"itemtype": "Ticket", "entityId": "404"}}), "VALIDATION", "entityId").await;
    })
    .await;
}

#[tokio::test]
async fn a_followup_needs_a_stored_parent_of_an_allowed_type() {
    each_backend(async |app| {
        app.data(CREATE, json!({"input": {"itemtype": "Ticket", "id": "10", "entityId": "0"}})).await;
        let followup = app
            .data(CREATE, json!({"input": {"itemtype": "ITILFollowup", "entityId": "0", "parentItemtype": "Ticket", "parentId": "10", "fields": {"content": "hi"}}}))
            .await;
        assert_eq!(followup["createItem"]["parentItemtype"], "Ticket");
        assert_eq!(followup["createItem"]["parentId"], "10");
        let missing = json!({"input": {"itemtype": "ITILFollowup", "entityId": "0", "parentItemtype": "Ticket", "parentId": "11"}});
        app.assert_error(CREATE, missing, "VALIDATION", "parentId").await;
        let wrong_type = json!({"input": {"itemtype": "ITILFollowup", "entityId": "0", "parentItemtype": "Computer", "parentId": "1"}});
        app.assert_error(CREATE, wrong_type, "VALIDATION", "parentItemtype").await;
        let half = json!({"input": {"itemtype": "ITILFollowup", "entityId": "0", "parentItemtype": "Ticket"}});
        app.assert_error(CREATE, half, "VALIDATION", "both or neither").await;

        // Purging the ticket purges its followups.
        app.data("mutation { purgeItem(itemtype: \"Ticket\", id: \"10\") }", json!({})).await;
        let gone = app.data("{ item(itemtype: \"ITILFollowup\", id: \"1\") { id } }", json!({})).await;
        assert_eq!(gone["item"], json!(null));
    })
    .await;
}

#[tokio::test]
async fn updates_merge_fields_and_log_each_change_in_the_history() {
    each_backend(async |app| {
        let input = json!({"itemtype": "Computer", "entityId": "0", "name": "pc-1", "fields": {"brand": "Acme", "ram": 8, "os": {"name": "Linux", "version": "6"}}});
        app.data(CREATE, json!({"input": input})).await;
        let patch = json!({"name": "pc-01", "fields": {"ram": 16, "brand": null, "os": {"version": "7"}, "serial": "S1"}});
        let updated = app.data(UPDATE, json!({"t": "Computer", "id": "1", "input": patch})).await["updateItem"].clone();
        assert_eq!(updated["name"], "pc-01");
        assert_eq!(updated["fields"], json!({"ram": 16, "os": {"name": "Linux", "version": "7"}, "serial": "S1"}));

        let history = app.data(HISTORY, json!({"t": "Computer", "id": "1"})).await;
        let entries = history["item"]["history"]["edges"].as_array().cloned().unwrap_or_default();
        let messages: Vec<&str> = entries.iter().filter_map(|e| e["node"]["message"].as_str()).collect();
        for expected in ["name changed", "brand changed", "ram changed", "os changed", "serial changed", "Item created"] {
            assert!(messages.contains(&expected), "{expected} missing from {messages:?}");
        }
        assert_eq!(messages.last(), Some(&"Item created"), "newest first");
        let ram = entries.iter().find(|e| e["node"]["message"] == "ram changed").map(|e| e["node"].clone());
        assert_eq!(ram, Some(json!({"action": "update", "message": "ram changed", "oldValue": "8", "newValue": "16"})));

        // A patch that changes nothing writes nothing.
        let before = history["item"]["history"]["totalCount"].clone();
        let same = app.data(UPDATE, json!({"t": "Computer", "id": "1", "input": {"name": "pc-01", "fields": {"ram": 16}}})).await;
        assert_eq!(same["updateItem"]["dateMod"], updated["dateMod"]);
        let after = app.data(HISTORY, json!({"t": "Computer", "id": "1"})).await;
        assert_eq!(after["item"]["history"]["totalCount"], before);

        app.assert_error(UPDATE, json!({"t": "Computer", "id": "1", "input": {"fields": {"id": 3}}}), "VALIDATION", "reserved").await;
        app.assert_error(UPDATE, json!({"t": "Computer", "id": "1", "input": {"entityId": "77"}}), "VALIDATION", "entityId").await;
        app.assert_error(UPDATE, json!({"t": "Computer", "id": "2", "input": {"name": "x"}}), "NOT_FOUND", "Computer").await;
        let unchanged = app.data("{ item(itemtype: \"Computer\", id: \"1\") { entityId fields } }", json!({})).await;
        assert_eq!(unchanged["item"]["entityId"], "0");
        assert_eq!(unchanged["item"]["fields"]["ram"], 16);
    })
    .await;
}

#[tokio::test]
async fn delete_restore_and_purge_follow_the_trash() {
    each_backend(async |app| {
        app.data(CREATE, json!({"input": {"itemtype": "Printer", "entityId": "0", "name": "p"}})).await;
        let delete = "mutation { deleteItem(itemtype: \"Printer\", id: \"1\") { isDeleted document } }";
        let restore = "mutation { restoreItem(itemtype: \"Printer\", id: \"1\") { isDeleted } }";
        let deleted = app.data(delete, json!({})).await;
        assert_eq!(deleted["deleteItem"]["isDeleted"], true);
        assert_eq!(deleted["deleteItem"]["document"]["is_deleted"], true);
        app.assert_error(delete, json!({}), "CONFLICT", "already in the trash").await;
        assert_eq!(app.data(restore, json!({})).await["restoreItem"]["isDeleted"], false);
        app.assert_error(restore, json!({}), "CONFLICT", "not in the trash").await;
        let history = app.data(HISTORY, json!({"t": "Printer", "id": "1"})).await;
        let actions: Vec<&str> = history["item"]["history"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["node"]["action"].as_str())
            .collect();
        assert_eq!(actions, vec!["restore", "delete", "create"]);

        assert_eq!(
            app.data("mutation { purgeItem(itemtype: \"Printer\", id: \"1\") }", json!({})).await["purgeItem"],
            true
        );
        assert_eq!(app.data("{ item(itemtype: \"Printer\", id: \"1\") { id } }", json!({})).await["item"], json!(null));
        app.assert_error("mutation { purgeItem(itemtype: \"Printer\", id: \"1\") }", json!({}), "NOT_FOUND", "Printer")
            .await;
    })
    .await;
}
