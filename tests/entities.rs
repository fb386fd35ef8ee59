//! Entities and webhook categories: trees with completename and level.

mod common;

use common::each_backend;
use serde_json::json;

const CREATE: &str =
    "mutation($input: EntityInput!) { createEntity(input: $input) { id name parentId completename level } }";
const UPDATE: &str = "mutation($id: ID!, $input: EntityInput!) { updateEntity(id: $id, input: $input) { id parentId completename level } }";
const DELETE: &str = "mutation($id: ID!) { deleteEntity(id: $id) }";

#[tokio::test]
async fn the_root_entity_always_exists() {
    each_backend(async |app| {
        let data = app.data("{ entities { id name parentId completename level } }", json!({})).await;
        assert_eq!(
            data["entities"],
            json!([{"id": "0", "name": "Root entity", "parentId": null, "completename": "Root entity", "level": 1}])
        );
        app.assert_error(DELETE, json!({"id": "0"}), "CONFLICT", "root").await;
    })
    .await;
}

#[tokio::test]
async fn renaming_or_moving_an_entity_relabels_its_subtree() {
    each_backend(async |app| {
        let europe = app.data(CREATE, json!({"input": {"name": "Europe"}})).await["createEntity"].clone();
        assert_eq!(europe["parentId"], "0");
        assert_eq!(
            (europe["completename"].as_str(), europe["level"].as_i64()),
            (Some("Root entity > Europe"), Some(2))
        );
        let france = app.data(CREATE, json!({"input": {"name": "France", "parentId": europe["id"]}})).await;
        let france_id = france["createEntity"]["id"].clone();
        let paris = app.data(CREATE, json!({"input": {"name": "Paris", "parentId": france_id}})).await;
        let paris_id = paris["createEntity"]["id"].clone();
        assert_eq!(paris["createEntity"]["completename"], "Root entity > Europe > France > Paris");
        assert_eq!(paris["createEntity"]["level"], 4);

        app.data(UPDATE, json!({"id": europe["id"], "input": {"name": "EU", "parentId": "0"}})).await;
        let paris =
            app.data("query($id: ID!) { entity(id: $id) { completename level } }", json!({"id": paris_id})).await;
        assert_eq!(paris["entity"]["completename"], "Root entity > EU > France > Paris");

        // Move France to the top level: it and Paris lose one level.
        let moved = app.data(UPDATE, json!({"id": france_id, "input": {"name": "France"}})).await;
        assert_eq!(moved["updateEntity"]["completename"], "Root entity > France");
        let paris =
            app.data("query($id: ID!) { entity(id: $id) { completename level } }", json!({"id": paris_id})).await;
        assert_eq!(paris["entity"], json!({"completename": "Root entity > France > Paris", "level": 3}));
    })
    .await;
}

#[tokio::test]
async fn an_entity_cannot_move_under_itself_or_an_unknown_parent() {
    each_backend(async |app| {
        let a = app.data(CREATE, json!({"input": {"name": "A"}})).await["createEntity"]["id"].clone();
        let b = app.data(CREATE, json!({"input": {"name": "B", "parentId": a}})).await["createEntity"]["id"].clone();
        app.assert_error(UPDATE, json!({"id": a, "input": {"name": "A", "parentId": b}}), "VALIDATION", "parentId")
            .await;
        app.assert_error(UPDATE, json!({"id": a, "input": {"name": "A", "parentId": a}}), "VALIDATION", "parentId")
            .await;
        app.assert_error(CREATE, json!({"input": {"name": "C", "parentId": "999"}}), "VALIDATION", "parentId").await;
        app.assert_error(CREATE, json!({"input": {"name": "  "}}), "VALIDATION", "name").await;
        app.assert_error(UPDATE, json!({"id": "0", "input": {"name": "Root", "parentId": a}}), "VALIDATION", "root")
            .await;
        app.assert_error(UPDATE, json!({"id": "999", "input": {"name": "X"}}), "NOT_FOUND", "999").await;
        app.assert_error(UPDATE, json!({"id": "abc", "input": {"name": "X"}}), "VALIDATION", "id").await;
        // Nothing of the refused changes was stored.
        let a_now = app.data("query($id: ID!) { entity(id: $id) { name parentId } }", json!({"id": a})).await;
        assert_eq!(a_now["entity"], json!({"name": "A", "parentId": "0"}));
        assert_eq!(app.data("{ entities { id } }", json!({})).await["entities"].as_array().map(Vec::len), Some(3));
    })
    .await;
}

#[tokio::test]
async fn deleting_an_entity_is_refused_while_it_has_children_items_or_webhooks() {
    each_backend(async |app| {
        let parent = app.data(CREATE, json!({"input": {"name": "Parent"}})).await["createEntity"]["id"].clone();
        let child = app.data(CREATE, json!({"input": {"name": "Child", "parentId": parent}})).await["createEntity"]["id"].clone();
        app.assert_error(DELETE, json!({"id": parent}), "CONFLICT", "child entities").await;

        app.data(
            "mutation($e: ID!) { createItem(input: {itemtype: \"Computer\", entityId: $e, name: \"pc\"}) { id } }",
            json!({"e": child}),
        )
        .await;
        app.assert_error(DELETE, json!({"id": child}), "CONFLICT", "items").await;
        app.data("mutation { purgeItem(itemtype: \"Computer\", id: \"1\") }", json!({})).await;

        app.data(
            "mutation($e: ID!) { createWebhook(input: {name: \"w\", entityId: $e, itemtype: \"Computer\", event: NEW, url: \"https://example.org\"}) { id } }",
            json!({"e": child}),
        )
        .await;
        app.assert_error(DELETE, json!({"id": child}), "CONFLICT", "webhooks").await;
        app.data("mutation { deleteWebhook(id: \"1\") }", json!({})).await;

        assert_eq!(app.data(DELETE, json!({"id": child})).await["deleteEntity"], true);
        assert_eq!(app.data(DELETE, json!({"id": parent})).await["deleteEntity"], true);
        app.assert_error(DELETE, json!({"id": parent}), "NOT_FOUND", "entity").await;
    })
    .await;
}

#[tokio::test]
async fn webhook_categories_form_a_tree_of_their_own() {
    each_backend(async |app| {
        let create = "mutation($input: WebhookCategoryInput!) { createWebhookCategory(input: $input) { id parentId completename level } }";
        let ops = app.data(create, json!({"input": {"name": "Ops"}})).await["createWebhookCategory"].clone();
        assert_eq!(ops["parentId"], json!(null));
        assert_eq!(ops["completename"], "Ops");
        let chat = app.data(create, json!({"input": {"name": "Chat", "parentId": ops["id"]}})).await;
        assert_eq!(chat["createWebhookCategory"]["completename"], "Ops > Chat");
        assert_eq!(chat["createWebhookCategory"]["level"], 2);
        let chat_id = chat["createWebhookCategory"]["id"].clone();

        let rename = "mutation($id: ID!, $input: WebhookCategoryInput!) { updateWebhookCategory(id: $id, input: $input) { completename } }";
        app.data(rename, json!({"id": ops["id"], "input": {"name": "Operations"}})).await;
        let cats = app.data("{ webhookCategories { completename } }", json!({})).await;
        assert_eq!(cats["webhookCategories"], json!([{"completename": "Operations"}, {"completename": "Operations > Chat"}]));

        let webhook = app
            .data(
                "mutation($c: ID!) { createWebhook(input: {name: \"w\", entityId: 0, categoryId: $c, itemtype: \"Ticket\", event: NEW, url: \"https://example.org\"}) { id category { completename } } }",
                json!({"c": chat_id}),
            )
            .await;
        assert_eq!(webhook["createWebhook"]["category"]["completename"], "Operations > Chat");
        let delete = "mutation($id: ID!) { deleteWebhookCategory(id: $id) }";
        app.assert_error(delete, json!({"id": ops["id"]}), "CONFLICT", "child categories").await;
        app.assert_error(delete, json!({"id": chat_id}), "CONFLICT", "webhooks").await;
    })
    .await;
}
