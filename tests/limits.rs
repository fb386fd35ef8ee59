//! What one client may ask is bounded before it runs: body size, content type, query cost,
//! WebSocket messages, connections and subscriptions, the time to send headers.

mod common;

use std::time::Duration;

use common::{each_backend, each_backend_with, ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

/// Status, content type and JSON body of a POST to /graphql with the token.
async fn post(
    url: &str,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, String, Value) {
    let mut request = common::client_with(token).post(url).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let media = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("body");
    (status, media, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The first error of a subscription's answer: an `error` message, or a `next` whose payload
/// carries errors (how async-graphql reports a resolver that refuses to start).
fn subscription_error(message: &Value) -> Value {
    match message["type"].as_str() {
        Some("error") => message["payload"][0].clone(),
        Some("next") => message["payload"]["errors"][0].clone(),
        _ => Value::Null,
    }
}

/// Whether the server closes the connection (after an answer or not) within 10 s.
async fn closed_by_the_server(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buffer = [0u8; 512];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn first_error(body: &Value) -> (String, String) {
    let error = &body["errors"][0];
    (
        error["extensions"]["code"].as_str().unwrap_or("<none>").to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_before_it_is_read() {
    each_backend_with(
        |c| c.delivery.api.max_request_body = 2048,
        async |app| {
            let url = app.url("/graphql");
            let name = "x".repeat(4000);
            let big = json!({"query": "mutation($n: String!) { createEntity(input: {name: $n}) { id } }", "variables": {"n": name}});
            let (status, _, body) = post(&url, &app.token, Some("application/json"), big.to_string()).await;
            assert_eq!(status, 413, "{body}");
            let (code, message) = first_error(&body);
            assert_eq!(code, "VALIDATION");
            assert!(message.contains("HOOKLINE_MAX_REQUEST_BODY") && message.contains("2048"), "{message}");

            // Without a Content-Length (chunked), the read stops at the limit.
            let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connects");
            let head = format!(
                "POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n",
                app.token
            );
            stream.write_all(head.as_bytes()).await.expect("head");
            for _ in 0..8 {
                let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
            stream.write_all(b"0\r\n\r\n").await.ok();
            let mut answer = vec![0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.expect("answered");
            let answer = String::from_utf8_lossy(&answer[..read.unwrap_or(0)]).into_owned();
            assert!(answer.starts_with("HTTP/1.1 413"), "a streamed body is cut at the limit: {answer}");

            // A body within the limit goes through, and nothing of the refused one was stored.
            let entities = app.data("{ entities { name } }", json!({})).await;
            assert!(!entities.to_string().contains("xxxx"), "{entities}");
        },
    )
    .await;
}

#[tokio::test]
async fn only_json_bodies_are_taken_and_the_graphql_media_type_is_answered_when_accepted() {
    each_backend(async |app| {
        let url = app.url("/graphql");
        let query = r#"{"query": "mutation { createEntity(input: {name: \"csrf\"}) { id } }"}"#;
        for (content_type, needle) in [
            (Some("text/plain"), "text/plain"),
            (Some("application/x-www-form-urlencoded"), "application/x-www-form-urlencoded"),
            (Some("multipart/form-data; boundary=abc"), "multipart"),
            (None, "no Content-Type"),
        ] {
            let (status, _, body) = post(&url, &app.token, content_type, query).await;
            assert_eq!(status, 415, "{content_type:?}: {body}");
            let (code, message) = first_error(&body);
            assert_eq!(code, "VALIDATION");
            assert!(message.contains(needle) && message.contains("application/json"), "{message}");
        }
        let entities = app.data("{ entities { name } }", json!({})).await;
        assert!(!entities.to_string().contains("csrf"), "nothing refused was run: {entities}");

        let (status, media, _) =
            post(&url, &app.token, Some("application/json; charset=utf-8"), r#"{"query": "{ __typename }"}"#).await;
        assert_eq!((status, media.as_str()), (200, "application/json"));
        let response = common::client_with(&app.token)
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/graphql-response+json, application/json;q=0.9")
            .body(r#"{"query": "{ __typename }"}"#)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.headers()["content-type"], "application/graphql-response+json");
        assert_eq!(response.json::<Value>().await.expect("json")["data"]["__typename"], "Query");

        let (status, _, body) = post(&url, &app.token, Some("application/json"), "{not json").await;
        assert_eq!(status, 400);
        assert_eq!(first_error(&body).0, "VALIDATION");
    })
    .await;
}

/// A standard introspection query (the shape GraphiQL sends), nesting `ofType` seven deep.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

#[tokio::test]
async fn costly_deep_or_aliased_queries_are_refused_before_they_run() {
    each_backend(async |app| {
        // The webhook ↔ queue cycle with full pages: about 10⁸ resolver calls if it ran.
        let cycle = "{ webhooks(first: 500) { edges { node { queue(first: 500) { edges { node { webhook { queue(first: 500) { edges { node { id } } } } } } } } } } }";
        let (code, message) = app.error(cycle, json!({})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("HOOKLINE_MAX_QUERY_COMPLEXITY"), "{message}");

        // Small pages of the same shape are cheap enough.
        let small = "{ webhooks(first: 5) { edges { node { queue(first: 5) { edges { node { webhook { name } } } } } } } }";
        app.data(small, json!({})).await;

        let deep = format!("{{ {}{} }}", "webhooks(first: 1) { edges { node { queue(first: 1) { edges { node { webhook { ".repeat(3), "id".to_owned() + &" } } } } } } }".repeat(3));
        let (code, message) = app.error(&deep, json!({})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("HOOKLINE_MAX_QUERY_DEPTH") && message.contains("16"), "{message}");

        let aliases: String = (0..101).map(|i| format!("a{i}: __typename ")).collect();
        let (code, message) = app.error(&format!("{{ {aliases} }}"), json!({})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("HOOKLINE_MAX_QUERY_ALIASES") && message.contains("101"), "{message}");
        let fine: String = (0..100).map(|i| format!("a{i}: __typename ")).collect();
        app.data(&format!("{{ {fine} }}"), json!({})).await;

        let schema = app.data(INTROSPECTION, json!({})).await;
        assert_eq!(schema["__schema"]["queryType"]["name"], "Query", "GraphiQL's introspection fits the limits");
    })
    .await;
}

#[tokio::test]
async fn nested_lookups_of_a_page_answer_for_every_row() {
    each_backend(async |app| {
        let receiver = common::receiver::Receiver::start().await;
        for name in ["a", "b", "c"] {
            let input = json!({"name": name, "entityId": "0", "itemtype": "Computer", "event": "NEW", "url": receiver.url("/h")});
            app.data("mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": input})).await;
        }
        let inputs: Vec<Value> = (0..10).map(|i| json!({"itemtype": "Computer", "entityId": "0", "name": format!("pc{i}")})).collect();
        app.data("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": inputs})).await;
        app.wait_queue(30, &["SENT"]).await;
        let page = app
            .data("{ queuedWebhooks(first: 100) { edges { node { webhookId webhook { id name entity { id name } } } } } }", json!({}))
            .await;
        let edges = page["queuedWebhooks"]["edges"].as_array().expect("edges").clone();
        assert_eq!(edges.len(), 30);
        for edge in edges {
            let node = &edge["node"];
            assert_eq!(node["webhook"]["id"], node["webhookId"], "each row gets its own webhook");
            assert_eq!(node["webhook"]["entity"]["name"], "Root entity");
        }
        let items = app.data("{ items(itemtype: \"Computer\", first: 20) { edges { node { entity { id } } } } }", json!({})).await;
        assert_eq!(items["items"]["edges"].as_array().map(Vec::len), Some(10));

        // Saved-search filters of a page of webhooks, each resolved for its own webhook.
        let criteria = json!([{"field": "name", "searchtype": "contains", "value": "pc"}]);
        let saved = app
            .data(
                "mutation($c: [CriterionInput!]!) { createSavedSearch(input: {name: \"pcs\", itemtype: \"Computer\", criteria: $c}) { id } }",
                json!({"c": criteria}),
            )
            .await;
        let saved_id = saved["createSavedSearch"]["id"].clone();
        let hooks = app.data("{ webhooks { edges { node { id name } } } }", json!({})).await;
        let ids: Vec<Value> = hooks["webhooks"]["edges"].as_array().expect("edges").iter().map(|e| e["node"]["id"].clone()).collect();
        for id in &ids[..2] {
            app.data(
                "mutation($w: ID!, $s: ID!) { setWebhookFilter(webhookId: $w, savedSearchId: $s) { id } }",
                json!({"w": id, "s": saved_id}),
            )
            .await;
        }
        let page = app.data("{ webhooks { edges { node { name savedSearchId filter filterError } } } }", json!({})).await;
        let nodes: Vec<Value> = page["webhooks"]["edges"].as_array().expect("edges").iter().map(|e| e["node"].clone()).collect();
        for node in &nodes[..2] {
            assert_eq!(node["savedSearchId"], saved_id, "{node}");
            assert_eq!(node["filter"][0]["value"], "pc", "{node}");
            assert!(node["filterError"].is_null(), "{node}");
        }
        assert!(nodes[2]["filter"].is_null() && nodes[2]["filterError"].is_null(), "{}", nodes[2]);
    })
    .await;
}

#[tokio::test]
async fn criteria_over_many_items_count_and_page_every_match() {
    each_backend(async |app| {
        // More items than one scan chunk (500), every third one matching.
        let inputs: Vec<Value> = (0..1200)
            .map(|i| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("t{i}"), "fields": {"odd": i % 3 == 0}}))
            .collect();
        for half in inputs.chunks(600) {
            app.data("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": half})).await;
        }
        let query = "query($after: String) { items(itemtype: \"Ticket\", criteria: [{field: \"odd\", searchtype: \"equals\", value: \"true\"}], first: 300, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { name } } } }";
        let mut names = Vec::new();
        let mut after = Value::Null;
        loop {
            let page = app.data(query, json!({"after": after})).await;
            let page = &page["items"];
            assert_eq!(page["totalCount"], 400);
            names.extend(page["edges"].as_array().expect("edges").iter().map(|e| e["node"]["name"].as_str().unwrap_or_default().to_owned()));
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
        let expected: Vec<String> = (0..1200).filter(|i| i % 3 == 0).map(|i| format!("t{i}")).collect();
        assert_eq!(names, expected);
    })
    .await;
}

#[tokio::test]
async fn queue_stats_of_a_webhook_that_does_not_exist_is_not_found() {
    each_backend(async |app| {
        app.assert_error("{ queueStats(webhookId: \"987654\") { pending } }", json!({}), "NOT_FOUND", "987654").await;
        let mut socket = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut socket, "s", "subscription { queueStats(webhookId: \"987654\") { pending } }", json!({}))
            .await;
        let message = ws::next(&mut socket).await;
        assert_eq!(subscription_error(&message)["extensions"]["code"], "NOT_FOUND", "{message}");
    })
    .await;
}

#[tokio::test]
async fn subscriptions_are_capped_per_connection_and_per_process() {
    each_backend_with(
        |c| {
            c.delivery.api.max_subscriptions_per_connection = 2;
            c.delivery.api.max_subscriptions = 3;
        },
        async |app| {
            let stats = "subscription { queueStats { pending } }";
            let mut first = ws::connect(app.addr, &app.token).await;
            for id in ["1", "2"] {
                ws::subscribe(&mut first, id, stats, json!({})).await;
                let answer = ws::next(&mut first).await;
                assert!(subscription_error(&answer).is_null() && answer["type"] == "next", "{answer}");
            }
            ws::subscribe(&mut first, "3", stats, json!({})).await;
            let refused = subscription_error(&ws::next(&mut first).await);
            assert_eq!(refused["extensions"]["code"], "VALIDATION", "{refused}");
            assert!(
                refused["message"].as_str().is_some_and(|m| m.contains("HOOKLINE_MAX_SUBSCRIPTIONS_PER_CONNECTION"))
            );

            let mut second = ws::connect(app.addr, &app.token).await;
            ws::subscribe(&mut second, "a", stats, json!({})).await;
            let third = ws::next(&mut second).await;
            assert!(third["type"] == "next" && subscription_error(&third).is_null(), "the process's third: {third}");
            ws::subscribe(&mut second, "b", stats, json!({})).await;
            let refused = subscription_error(&ws::next(&mut second).await);
            assert!(
                refused["message"].as_str().is_some_and(|m| m.contains("HOOKLINE_MAX_SUBSCRIPTIONS)")),
                "{refused}"
            );

            // Completing one frees its slot.
            second.send(Message::text(json!({"id": "a", "type": "complete"}).to_string())).await.expect("complete");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                ws::subscribe(&mut second, "c", stats, json!({})).await;
                let answer = ws::next(&mut second).await;
                if subscription_error(&answer).is_null() {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "the slot was never freed: {answer}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
}

async fn upgrade(addr: std::net::SocketAddr) -> Result<ws::Socket, String> {
    let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket).map_err(|e| e.to_string())
}

#[tokio::test]
async fn websocket_connections_are_capped_and_large_messages_close_the_connection() {
    each_backend_with(
        |c| {
            c.delivery.api.max_ws_connections = 2;
            c.delivery.api.max_request_body = 4096;
        },
        async |app| {
            let one = ws::connect(app.addr, &app.token).await;
            let mut two = ws::connect(app.addr, &app.token).await;
            let third = upgrade(app.addr).await;
            assert!(third.as_ref().is_err_and(|e| e.contains("503")), "{:?}", third.err());
            drop(one);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let _again = loop {
                match upgrade(app.addr).await {
                    Ok(socket) => break socket,
                    Err(err) => assert!(tokio::time::Instant::now() < deadline, "never freed: {err}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };

            let huge = json!({"id": "x", "type": "subscribe", "payload": {"query": " ".repeat(10_000)}});
            two.send(Message::text(huge.to_string())).await.ok();
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match two.next().await {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                        Some(Ok(_)) => continue,
                    }
                }
            })
            .await;
            assert_eq!(closed, Ok(true), "a message over the limit closes the connection");
            app.data("{ __typename }", json!({})).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    each_backend_with(
        |c| c.delivery.api.header_read_timeout = Duration::from_millis(500),
        async |app| {
            let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connects");
            stream.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n").await.expect("partial headers");
            assert!(closed_by_the_server(&mut stream).await, "the connection was still open after 10 s");
            app.data("{ __typename }", json!({})).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_refused_input_names_its_field() {
    each_backend(async |app| {
        let input =
            json!({"name": "", "entityId": "0", "itemtype": "Computer", "event": "NEW", "url": "http://127.0.0.1:9/x"});
        let response =
            app.query("mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }", json!({"i": input})).await;
        let error = &response["errors"][0];
        assert_eq!(error["extensions"]["code"], "VALIDATION", "{response}");
        assert_eq!(error["extensions"]["field"], "name", "{response}");
    })
    .await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    each_backend_with(
        |c| c.delivery.api.header_read_timeout = Duration::from_millis(300),
        async |app| {
            let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connects");
            assert!(closed_by_the_server(&mut stream).await, "a silent connection is closed, not kept");
        },
    )
    .await;
}

#[tokio::test]
async fn fragments_that_multiply_are_refused_before_they_are_walked() {
    each_backend(async |app| {
        // 3^30 spreads of one field: a walk of every path would never end.
        let mut query = String::from("query { ...F0 }");
        for i in 0..30 {
            query.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} ...F{n} }}", n = i + 1));
        }
        query.push_str(" fragment F30 on Query { entities { id } }");
        let started = std::time::Instant::now();
        let (code, message) = app.error(&query, json!({})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("HOOKLINE_MAX_QUERY_COMPLEXITY"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(30), "refused without walking every path");

        // Aliases in a fragment count every time it is spread.
        let aliases: String = (0..30).map(|i| format!("a{i}: __typename ")).collect();
        let spread = format!("{{ ...F ...F ...F ...F }} fragment F on Query {{ {aliases} }}");
        let (code, message) = app.error(&spread, json!({})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("HOOKLINE_MAX_QUERY_ALIASES") && message.contains("120"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn batch_results_cost_one_child_per_input_and_errors_name_the_field_of_the_input() {
    each_backend(async |app| {
        let inputs: Vec<Value> = (0..200).map(|i| json!({"itemtype": "Computer", "entityId": "0", "name": format!("c{i}")})).collect();
        let costly = "mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id history(first: 100) { totalCount } } }";
        let (code, message) = app.error(costly, json!({"i": inputs})).await;
        assert_eq!(code, "VALIDATION");
        assert!(message.contains("HOOKLINE_MAX_QUERY_COMPLEXITY"), "{message}");
        let items = app.data("{ items(itemtype: \"Computer\") { totalCount } }", json!({})).await;
        assert_eq!(items["items"]["totalCount"], 0, "nothing ran");

        let scans: String = (0..20)
            .map(|i| format!("p{i}: filterPreview(itemtype: \"Computer\", criteria: [{{field: \"name\", searchtype: \"contains\", value: \"x\"}}], first: 1) {{ totalCount }} "))
            .collect();
        let (code, _) = app.error(&format!("{{ {scans} }}"), json!({})).await;
        assert_eq!(code, "VALIDATION", "each scan of an itemtype costs");

        let inputs = json!([
            {"itemtype": "Computer", "entityId": "0", "name": "fine"},
            {"itemtype": "Computer", "entityId": "x", "name": "bad"},
        ]);
        let response = app.query("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": inputs})).await;
        let error = &response["errors"][0];
        assert_eq!(error["extensions"]["index"], 1, "{response}");
        assert_eq!(error["extensions"]["field"], "inputs[1].entityId", "{response}");
    })
    .await;
}

/// The SHA-256 of a query, as Apollo's persisted queries name it.
fn sha256_hex(query: &str) -> String {
    use sha2::Digest;
    hookline::domain::signing::hex(&sha2::Sha256::digest(query.as_bytes()))
}

/// The next message of operation `id` (the others' are skipped).
async fn next_of(socket: &mut ws::Socket, id: &str) -> Value {
    loop {
        let message = ws::next(socket).await;
        if message["id"] == id {
            return message;
        }
    }
}

fn persisted(query: Option<&str>, hash: &str) -> Value {
    let mut request = json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}}});
    if let Some(query) = query {
        request["query"] = json!(query);
    }
    request
}

#[tokio::test]
async fn a_persisted_query_is_unknown_then_registered_then_served_by_its_hash() {
    each_backend(async |app| {
        app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await;
        let query = "query Names { entities { name } }";
        let hash = sha256_hex(query);
        let url = app.url("/graphql");
        let send = async |body: Value| post(&url, &app.token, Some("application/json"), body.to_string()).await;

        let (status, _, unknown) = send(persisted(None, &hash)).await;
        assert_eq!(status, 200, "{unknown}");
        assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound", "{unknown}");
        assert_eq!(unknown["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");

        let (_, _, mismatch) = send(persisted(Some(query), &sha256_hex("{ other }"))).await;
        assert_eq!(mismatch["errors"][0]["extensions"]["code"], "VALIDATION", "{mismatch}");
        let (_, _, still_unknown) = send(persisted(None, &hash)).await;
        assert_eq!(still_unknown["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");

        let (_, _, registered) = send(persisted(Some(query), &hash)).await;
        assert!(registered.get("errors").is_none(), "{registered}");
        let (_, _, served) = send(persisted(None, &hash)).await;
        assert!(served.get("errors").is_none(), "{served}");
        assert_eq!(served["data"], registered["data"]);
        let names: Vec<&str> = served["data"]["entities"]
            .as_array()
            .expect("entities")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert!(names.contains(&"Europe"), "{served}");

        // A persisted query still needs a token, and still runs as its caller.
        let (status, _, anonymous) = post(&url, "", Some("application/json"), persisted(None, &hash).to_string()).await;
        assert_eq!(status, 401, "{anonymous}");

        // The same hash serves a subscription over WebSocket.
        let subscription = "subscription { queueStats { pending } }";
        let sub_hash = sha256_hex(subscription);
        let mut socket = ws::connect(app.addr, &app.token).await;
        let subscribe = |id: &str, query: Option<&str>| {
            let mut payload = persisted(query, &sub_hash);
            payload["variables"] = json!({});
            Message::text(json!({"id": id, "type": "subscribe", "payload": payload}).to_string())
        };
        socket.send(subscribe("1", None)).await.expect("send");
        let refused = ws::next(&mut socket).await;
        assert_eq!(subscription_error(&refused)["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{refused}");
        socket.send(subscribe("2", Some(subscription))).await.expect("send");
        let first = next_of(&mut socket, "2").await;
        assert_eq!(first["type"], "next", "{first}");
        assert!(first["payload"]["data"]["queueStats"]["pending"].is_number(), "{first}");
        socket.send(subscribe("3", None)).await.expect("send");
        let by_hash = next_of(&mut socket, "3").await;
        assert_eq!(by_hash["type"], "next", "{by_hash}");
        assert!(by_hash["payload"]["data"]["queueStats"]["pending"].is_number(), "{by_hash}");
    })
    .await;
}
