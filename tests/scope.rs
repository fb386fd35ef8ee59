//! Entity scope as a property: for random entity trees, webhooks, items and scoped tokens,
//! nothing outside a token's entities appears in any list, count, single read, preview, queue
//! row, stats or subscription message, and everything inside them does. The truth is what a
//! super-admin token sees, cut to the scope computed here from the tree.

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use common::{TestApp, client_with, each_backend, receiver::Receiver, ws};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

const ROWS: &str =
    "{ queuedWebhooks(first: 500) { totalCount edges { node { id entityId webhookId webhook { id entityId } } } } }";
const UPDATES: &str = "subscription { queueUpdates { queuedWebhook { id entityId } } }";

fn id(value: &Value) -> i64 {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("an id: {value}"))
}

fn nodes(data: &Value) -> Vec<Value> {
    data["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect()
}

/// The entities a token's `[(id, recursive)]` covers in the tree `parent_of`.
fn covered(tokens: &[(i64, bool)], parent_of: &HashMap<i64, Option<i64>>) -> BTreeSet<i64> {
    let below = |entity: i64, top: i64| {
        let mut at = Some(entity);
        while let Some(e) = at {
            if e == top {
                return true;
            }
            at = parent_of.get(&e).copied().flatten();
        }
        false
    };
    parent_of
        .keys()
        .copied()
        .filter(|&e| tokens.iter().any(|&(t, recursive)| e == t || (recursive && below(e, t))))
        .collect()
}

async fn create_items(app: &TestApp, rng: &mut StdRng, entities: &[i64], count: usize) {
    let inputs: Vec<Value> = (0..count)
        .map(|n| {
            let entity = entities[rng.random_range(0..entities.len())];
            json!({"itemtype": "Ticket", "entityId": entity.to_string(), "name": format!("t{n}")})
        })
        .collect();
    app.data("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": inputs})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_outside_a_tokens_entities_is_seen_and_everything_inside_is() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let admin = client_with(&app.token);
        for seed in 0..3u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            // A random tree below the root.
            let mut parent_of: HashMap<i64, Option<i64>> = HashMap::from([(0, None)]);
            let mut entities = vec![0i64];
            for n in 0..8 {
                let parent = entities[rng.random_range(0..entities.len())];
                let created = app
                    .data(
                        "mutation($i: EntityInput!) { createEntity(input: $i) { id } }",
                        json!({"i": {"name": format!("s{seed}-e{n}"), "parentId": parent.to_string()}}),
                    )
                    .await;
                let child = id(&created["createEntity"]["id"]);
                parent_of.insert(child, Some(parent));
                entities.push(child);
            }
            // Webhooks in random entities, some recursive.
            let mut hooks = Vec::new();
            for n in 0..5 {
                let entity = entities[rng.random_range(0..entities.len())];
                let input = json!({"name": format!("s{seed}-w{n}"), "entityId": entity.to_string(),
                    "isRecursive": rng.random_bool(0.5), "itemtype": "Ticket", "event": "NEW",
                    "url": receiver.url("/hook")});
                let created = app.data("mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": input})).await;
                hooks.push(id(&created["createWebhook"]["id"]));
            }
            create_items(app, &mut rng, &entities, 20).await;

            // A token on two or three random entities, each recursive or not.
            let picks: Vec<(i64, bool)> = (0..rng.random_range(2..=3))
                .map(|_| (entities[rng.random_range(1..entities.len())], rng.random_bool(0.5)))
                .collect();
            let scope = covered(&picks, &parent_of);
            let grant: Vec<Value> = picks.iter().map(|(e, r)| json!({"id": e.to_string(), "recursive": r})).collect();
            let (token, _) =
                app.issue_token(json!({"user": format!("viewer-{seed}"), "profile": "viewer", "entities": grant})).await;
            let viewer = client_with(&token);
            let case = format!("seed {seed}, token {picks:?}, scope {scope:?} ({:?})", app.backend);

            // A live subscriber and a stats subscriber with the token, then more items.
            let mut updates = ws::connect(app.addr, &token).await;
            ws::subscribe(&mut updates, "u", UPDATES, json!({})).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before: BTreeSet<i64> =
                nodes(&app.data_with(&admin, ROWS, json!({})).await["queuedWebhooks"]).iter().map(|r| id(&r["id"])).collect();
            create_items(app, &mut rng, &entities, 10).await;

            // Entities.
            let seen: BTreeSet<i64> = app.data_with(&viewer, "{ entities { id } }", json!({})).await["entities"]
                .as_array()
                .expect("list")
                .iter()
                .map(|e| id(&e["id"]))
                .collect();
            assert_eq!(seen, scope, "entities: {case}");
            for &entity in &entities {
                let one = app.data_with(&viewer, "query($id: ID!) { entity(id: $id) { id } }", json!({"id": entity.to_string()})).await;
                assert_eq!(one["entity"].is_null(), !scope.contains(&entity), "entity({entity}): {case}");
            }

            // Items: the list, its count, single reads.
            let all = nodes(&app.data_with(&admin, "{ items(itemtype: \"Ticket\", first: 500) { edges { node { id entityId } } } }", json!({})).await["items"]);
            let mine = app.data_with(&viewer, "{ items(itemtype: \"Ticket\", first: 500) { totalCount edges { node { id entityId } } } }", json!({})).await;
            let expected: Vec<&Value> = all.iter().filter(|i| scope.contains(&id(&i["entityId"]))).collect();
            assert_eq!(mine["items"]["totalCount"], expected.len(), "items count: {case}");
            let listed = nodes(&mine["items"]);
            assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "items: {case}");
            for item in all.iter().take(8) {
                let one = app.data_with(&viewer, "query($id: ID!) { item(itemtype: \"Ticket\", id: $id) { id } }", json!({"id": item["id"]})).await;
                assert_eq!(one["item"].is_null(), !scope.contains(&id(&item["entityId"])), "item: {case}");
            }
            let matching = app.data_with(&viewer, "{ filterPreview(itemtype: \"Ticket\", criteria: [{field: \"name\", searchtype: \"contains\", value: \"t\"}], first: 500) { totalCount } }", json!({})).await;
            assert_eq!(matching["filterPreview"]["totalCount"], expected.len(), "filterPreview: {case}");

            // Webhooks, and previews of them.
            let all_hooks = nodes(&app.data_with(&admin, "{ webhooks(first: 500) { edges { node { id entityId } } } }", json!({})).await["webhooks"]);
            let my_hooks = app.data_with(&viewer, "{ webhooks(first: 500) { totalCount edges { node { id entityId } } } }", json!({})).await;
            let expected_hooks: Vec<&Value> = all_hooks.iter().filter(|w| scope.contains(&id(&w["entityId"]))).collect();
            assert_eq!(nodes(&my_hooks["webhooks"]).iter().collect::<Vec<_>>(), expected_hooks, "webhooks: {case}");
            assert_eq!(my_hooks["webhooks"]["totalCount"], expected_hooks.len());
            let item = &all[0];
            for hook in &all_hooks {
                let body: Value = viewer
                    .post(app.url("/graphql"))
                    .json(&json!({"query": "query($w: ID!, $i: ID!) { webhookPreview(webhookId: $w, itemId: $i) { url } }",
                        "variables": {"w": hook["id"], "i": item["id"]}}))
                    .send()
                    .await
                    .expect("sent")
                    .json()
                    .await
                    .expect("json");
                let visible = scope.contains(&id(&hook["entityId"])) && scope.contains(&id(&item["entityId"]));
                let code = body["errors"][0]["extensions"]["code"].as_str().unwrap_or("none").to_owned();
                assert_eq!(code == "NOT_FOUND", !visible, "preview {hook} of {item}: {body} {case}");
            }

            // Queue rows, their webhook, and the counters.
            let rows = nodes(&app.data_with(&admin, ROWS, json!({})).await["queuedWebhooks"]);
            let mine = app.data_with(&viewer, ROWS, json!({})).await;
            let expected_rows: Vec<i64> =
                rows.iter().filter(|r| scope.contains(&id(&r["entityId"]))).map(|r| id(&r["id"])).collect();
            let listed: Vec<Value> = nodes(&mine["queuedWebhooks"]);
            assert_eq!(listed.iter().map(|r| id(&r["id"])).collect::<Vec<_>>(), expected_rows, "rows: {case}");
            assert_eq!(mine["queuedWebhooks"]["totalCount"], expected_rows.len());
            for row in &listed {
                let hook_seen = row["webhook"].is_object();
                let hook_entity = rows.iter().find(|r| r["id"] == row["id"]).map(|r| id(&r["webhook"]["entityId"]));
                assert_eq!(hook_seen, hook_entity.is_some_and(|e| scope.contains(&e)), "row.webhook: {row} {case}");
            }
            let stats = app.data_with(&viewer, "{ queueStats { pending sending sent retrying failed cancelled } }", json!({})).await;
            let counted: i64 = stats["queueStats"].as_object().expect("stats").values().filter_map(Value::as_i64).sum();
            assert_eq!(counted, expected_rows.len() as i64, "queueStats: {case}");
            let mut stats_ws = ws::connect(app.addr, &token).await;
            ws::subscribe(&mut stats_ws, "s", "subscription { queueStats { pending sending sent retrying failed cancelled } }", json!({})).await;
            let first = ws::next(&mut stats_ws).await;
            let live: i64 = first["payload"]["data"]["queueStats"].as_object().expect("stats").values().filter_map(Value::as_i64).sum();
            assert!(live <= expected_rows.len() as i64 && live > 0 || expected_rows.is_empty(), "live stats {first}: {case}");

            // The subscriber heard of every new row in scope, and of nothing else.
            let new_in_scope: BTreeSet<i64> =
                expected_rows.iter().copied().filter(|r| !before.contains(r)).collect();
            let mut heard = BTreeSet::new();
            while let Some(message) = ws::within(&mut updates, Duration::from_millis(1500)).await {
                let row = &message["payload"]["data"]["queueUpdates"]["queuedWebhook"];
                assert!(scope.contains(&id(&row["entityId"])), "a change outside the scope: {message} {case}");
                heard.insert(id(&row["id"]));
            }
            assert!(new_in_scope.is_subset(&heard), "heard {heard:?}, expected {new_in_scope:?}: {case}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_scoped_admins_challenge_never_renders_an_item_of_another_entity() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let entity = |name: &'static str| async move {
            let created =
                app.data("mutation($n: String!) { createEntity(input: {name: $n}) { id } }", json!({"n": name})).await;
            created["createEntity"]["id"].as_str().expect("id").to_owned()
        };
        let (mine, theirs) = (entity("Mine").await, entity("Theirs").await);
        let admin = app.client_as("eu-admin", "admin", json!([{"id": mine, "recursive": true}])).await;
        // The admin's webhook puts the item's name in its URL.
        let hook = json!({"name": "leak", "entityId": mine, "isRecursive": true, "itemtype": "Ticket", "event": "NEW",
            "url": format!("{}?n={{{{ item.name }}}}", receiver.url("/cra"))});
        let created = app
            .data_with(&admin, "mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": hook}))
            .await;
        let hook_id = created["createWebhook"]["id"].as_str().expect("id").to_owned();
        let secret = app
            .data(
                "mutation($i: ItemInput!) { createItem(input: $i) { id } }",
                json!({"i": {"itemtype": "Ticket", "entityId": theirs, "name": "secret-name"}}),
            )
            .await;
        let secret_id = secret["createItem"]["id"].as_str().expect("id").to_owned();
        let check = "mutation($w: ID!, $i: ID) { validateCraChallenge(webhookId: $w, itemId: $i) { valid } }";
        let refused = app.query_with(&admin, check, json!({"w": hook_id, "i": secret_id})).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "NOT_FOUND", "{refused}");
        // Without itemId, the newest item in the admin's entities is used, never another's.
        let refused = app.query_with(&admin, check, json!({"w": hook_id})).await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "VALIDATION", "none of mine is stored: {refused}");
        app.data(
            "mutation($i: ItemInput!) { createItem(input: $i) { id } }",
            json!({"i": {"itemtype": "Ticket", "entityId": mine, "name": "mine"}}),
        )
        .await;
        app.query_with(&admin, check, json!({"w": hook_id})).await;
        let asked: Vec<String> = receiver.requests_to("/cra").iter().map(|r| r.query.clone()).collect();
        assert!(asked.iter().all(|query| !query.contains("secret-name")), "{asked:?}");
        assert!(asked.iter().any(|query| query.starts_with("n=mine")), "the admin's own item was used: {asked:?}");
    })
    .await;
}
