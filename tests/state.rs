//! State that must not fail open or overflow: unusable filters fire for nothing, item numbers
//! and cleanup ages stay in range, trees stay shallow, and the key file stays private.

mod common;

use common::{TestApp, each_backend, receiver::Receiver};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
const FILTER_ERROR: &str = "query($id: ID!) { webhook(id: $id) { filterError } }";

async fn raw_execute(app: &TestApp, sql: &str) {
    let backend = app.state.db.get_database_backend();
    app.state.db.execute_raw(Statement::from_string(backend, sql)).await.expect("statement");
}

async fn webhook(app: &TestApp, url: String) -> String {
    let input = json!({"name": "w", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url});
    app.data(CREATE_WEBHOOK, json!({"input": input})).await["createWebhook"]["id"].as_str().expect("id").to_owned()
}

/// `(extensions.code, extensions.field)` of a request that must fail.
async fn refusal(app: &TestApp, query: &str, variables: Value) -> (String, String) {
    let response = app.query(query, variables).await;
    let error = &response["errors"][0];
    assert!(error.is_object(), "expected an error ({:?}), got {response}", app.backend);
    let text = |v: &Value| v.as_str().unwrap_or("<none>").to_owned();
    (text(&error["extensions"]["code"]), text(&error["extensions"]["field"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_filter_that_cannot_be_used_fires_for_nothing_and_says_why() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let control = webhook(app, receiver.url("/control")).await;
        let inline = webhook(app, receiver.url("/inline")).await;
        let saved = webhook(app, receiver.url("/saved")).await;
        let search = app
            .data(
                "mutation { createSavedSearch(input: {name: \"s\", itemtype: \"Ticket\", criteria: [{field: \"name\", searchtype: \"contains\", value: \"T\"}]}) { id } }",
                json!({}),
            )
            .await["createSavedSearch"]["id"]
            .clone();
        app.data(
            "mutation($w: ID!, $s: ID!) { setWebhookFilter(webhookId: $w, savedSearchId: $s) { id } }",
            json!({"w": saved, "s": search}),
        )
        .await;
        // Criteria stored by an older version, or edited by hand, that cannot be read.
        raw_execute(app, &format!("UPDATE webhooks SET filter_criteria = '{{\"field\": 1}}' WHERE id = {inline}")).await;
        raw_execute(app, &format!("UPDATE saved_searches SET criteria = '\"garbled\"' WHERE id = {}", search.as_str().unwrap_or_default())).await;

        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "T"}})).await;
        // The item and all its queued webhooks commit together: these are all the rows.
        let rows = app.wait_queue(1, &["SENT"]).await;
        let fired: Vec<&Value> = rows.iter().map(|r| &r["webhookId"]).collect();
        assert_eq!(fired, vec![&json!(control)], "only the webhook without a filter fires");
        let paths: Vec<String> = receiver.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, vec!["/control".to_owned()]);

        let error_of = async |id: &str| app.data(FILTER_ERROR, json!({"id": id})).await["webhook"]["filterError"].clone();
        assert_eq!(error_of(&control).await, Value::Null);
        let inline_error = error_of(&inline).await;
        assert!(inline_error.as_str().is_some_and(|e| e.contains("cannot be read")), "{inline_error}");
        let saved_error = error_of(&saved).await;
        assert!(saved_error.as_str().is_some_and(|e| e.contains("saved search")), "{saved_error}");
    })
    .await;
}

#[tokio::test]
async fn caller_ids_from_2_pow_53_do_not_move_the_counter_and_an_exhausted_one_is_conflict() {
    each_backend(async |app| {
        let create = async |id: Option<&str>| {
            let mut input = json!({"itemtype": "Ticket", "entityId": "0"});
            if let Some(id) = id {
                input["id"] = json!(id);
            }
            app.query(CREATE_ITEM, json!({"input": input})).await
        };
        let given = create(Some("9223372036854775806")).await;
        assert_eq!(given["data"]["createItem"]["id"], "9223372036854775806", "{given}");
        let next = create(None).await;
        assert_eq!(next["data"]["createItem"]["id"], "1", "{next}");
        assert_eq!(create(None).await["data"]["createItem"]["id"], "2");

        // An id just below 2^53 moves the counter to its end: no number is left.
        create(Some("9007199254740991")).await;
        for _ in 0..2 {
            let refused = create(None).await;
            assert_eq!(refused["errors"][0]["extensions"]["code"], "CONFLICT", "{refused}");
        }
        // Items with their own ids still go in.
        assert_eq!(create(Some("TKT-1")).await["data"]["createItem"]["id"], "TKT-1");
    })
    .await;
}

#[tokio::test]
async fn cleanup_ages_outside_0_to_36500_days_are_validation() {
    each_backend(async |app| {
        let clean = "mutation($s: Int, $f: Int) { cleanQueuedWebhooks(sentDays: $s, failedDays: $f) }";
        for (sent, failed, field) in [(2147483647, 1, "sentDays"), (1, 36501, "failedDays"), (-1, 1, "sentDays")] {
            let (code, got) = refusal(app, clean, json!({"s": sent, "f": failed})).await;
            assert_eq!((code.as_str(), got.as_str()), ("VALIDATION", field));
        }
        assert_eq!(app.data(clean, json!({"s": 36500, "f": 0})).await["cleanQueuedWebhooks"], 0);
    })
    .await;
}

#[tokio::test]
async fn trees_stop_at_32_levels_and_4096_characters() {
    each_backend(async |app| {
        let create = "mutation($input: EntityInput!) { createEntity(input: $input) { id level } }";
        let mut parent = json!("0");
        for level in 2..=32 {
            let made = app.data(create, json!({"input": {"name": format!("L{level}"), "parentId": parent}})).await;
            assert_eq!(made["createEntity"]["level"], level);
            parent = made["createEntity"]["id"].clone();
        }
        let (code, field) = refusal(app, create, json!({"input": {"name": "L33", "parentId": parent}})).await;
        assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "parentId"));
        // Moving a branch under the deepest entity is refused the same way, and changes nothing.
        let branch = app.data(create, json!({"input": {"name": "Branch"}})).await["createEntity"]["id"].clone();
        app.data(create, json!({"input": {"name": "Leaf", "parentId": branch}})).await;
        let update = "mutation($id: ID!, $input: EntityInput!) { updateEntity(id: $id, input: $input) { id } }";
        let (code, field) =
            refusal(app, update, json!({"id": branch, "input": {"name": "Branch", "parentId": parent}})).await;
        assert_eq!((code.as_str(), field.as_str()), ("VALIDATION", "parentId"));
        let shown = app.data("query($id: ID!) { entity(id: $id) { level } }", json!({"id": branch})).await;
        assert_eq!(shown["entity"]["level"], 2);

        let category =
            "mutation($input: WebhookCategoryInput!) { createWebhookCategory(input: $input) { id completename } }";
        let mut parent = Value::Null;
        let long = "n".repeat(255);
        let mut refused = None;
        for depth in 1..=20 {
            let name: String = format!("{depth}{long}").chars().take(255).collect();
            let response = app.query(category, json!({"input": {"name": name, "parentId": parent}})).await;
            if response["errors"].is_array() {
                refused = Some((depth, response["errors"][0].clone()));
                break;
            }
            parent = response["data"]["createWebhookCategory"]["id"].clone();
        }
        let (depth, error) = refused.expect("a category path past 4096 characters is refused");
        assert_eq!(depth, 16, "15 names of 255 characters and their separators fit, 16 do not");
        assert_eq!(
            (error["extensions"]["code"].as_str(), error["extensions"]["field"].as_str()),
            (Some("VALIDATION"), Some("name"))
        );
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_key_file_others_can_read_stops_the_start_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::test_config(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let key = data.join("secret.key");
    std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").expect("key written");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = match hookline::Application::build(config.clone()).await {
        Ok(_) => panic!("a key file its group can read must stop the start"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains(&format!("chmod 600 {}", key.display())), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(hookline::Application::build(config).await.is_ok(), "starts once the file is private");
}
