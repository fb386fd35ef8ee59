//! Live monitoring over a real WebSocket: every queue transition, filters, live counters, a
//! subscriber that falls behind, and (on PostgreSQL) changes made by another process.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{POSTGRES_ENV, binary::Server, each_backend, each_backend_with, receiver::Receiver, ws};
use futures_util::StreamExt;
use serde_json::{Value, json};

const UPDATES: &str = "subscription($w: ID, $e: ID, $s: QueueStatus) { queueUpdates(webhookId: $w, entityId: $e, status: $s) { previousStatus missedUpdates queuedWebhook { id webhookId status sentTry lastStatusCode sentTime body } } }";
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";

fn hook(receiver: &Receiver, entity: &Value) -> Value {
    json!({"input": {"name": "live", "entityId": entity, "isRecursive": true, "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/hook")}})
}

/// Reads `count` updates of subscription `id`.
async fn updates(socket: &mut ws::Socket, id: &str, count: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < count {
        let message = ws::next(socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id);
        assert!(message["payload"]["errors"].is_null(), "{message}");
        out.push(message["payload"]["data"]["queueUpdates"].clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_to_sent_is_streamed() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
        let mut socket = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut socket, "u", UPDATES, json!({})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in 0..3 {
            app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": format!("t{n}")}}))
                .await;
        }
        let seen = updates(&mut socket, "u", 9).await;
        let mut by_row: HashMap<String, Vec<(Value, Value)>> = HashMap::new();
        for update in &seen {
            let row = &update["queuedWebhook"];
            by_row
                .entry(row["id"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push((update["previousStatus"].clone(), row["status"].clone()));
            assert_eq!(update["missedUpdates"], 0);
        }
        assert_eq!(by_row.len(), 3);
        for transitions in by_row.values() {
            assert_eq!(
                transitions,
                &vec![
                    (Value::Null, json!("PENDING")),
                    (json!("PENDING"), json!("SENDING")),
                    (json!("SENDING"), json!("SENT"))
                ]
            );
        }
        let sent = seen.iter().find(|u| u["queuedWebhook"]["status"] == "SENT").cloned().unwrap_or_default();
        assert_eq!(sent["queuedWebhook"]["sentTry"], 1);
        assert_eq!(sent["queuedWebhook"]["lastStatusCode"], 200);
        assert!(
            sent["queuedWebhook"]["body"].as_str().unwrap_or_default().contains("\"event\":\"new\""),
            "the body is read on demand"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_filters_combine() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await["createEntity"]["id"].clone();
        let paris = app.data("mutation($p: ID!) { createEntity(input: {name: \"Paris\", parentId: $p}) { id } }", json!({"p": europe})).await["createEntity"]["id"].clone();
        let first = app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await["createWebhook"]["id"].clone();
        let second = app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await["createWebhook"]["id"].clone();
        let mut socket = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut socket, "a", UPDATES, json!({"w": first, "s": "SENT"})).await;
        ws::subscribe(&mut socket, "b", UPDATES, json!({"e": europe, "s": "SENT"})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": paris}})).await;
        let mut got: HashMap<String, Vec<Value>> = HashMap::new();
        while got.values().map(Vec::len).sum::<usize>() < 4 {
            let message = ws::next(&mut socket).await;
            got.entry(message["id"].as_str().unwrap_or_default().to_owned()).or_default().push(message["payload"]["data"]["queueUpdates"]["queuedWebhook"].clone());
        }
        let a = &got["a"];
        assert_eq!(a.len(), 2, "SENT rows of the first webhook: {a:?}");
        assert!(a.iter().all(|r| r["webhookId"] == first && r["status"] == "SENT"));
        let b = &got["b"];
        assert_eq!(b.len(), 2, "SENT rows of items under Europe (both webhooks): {b:?}");
        assert!(b.iter().any(|r| r["webhookId"] == second));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counters_converge_to_the_query() {
    each_backend_with(
        |c| c.delivery.stats_interval = Duration::from_millis(100),
        async |app| {
            let receiver = Receiver::start().await;
            app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
            let mut socket = ws::connect(app.addr, &app.token).await;
            let stats = "subscription { queueStats { pending sending sent retrying failed cancelled oldestPendingAgeSeconds sentLastMinute } }";
            ws::subscribe(&mut socket, "s", stats, json!({})).await;
            let first = ws::next(&mut socket).await;
            assert_eq!(first["payload"]["data"]["queueStats"]["sent"], 0, "sent at once on subscribe");
            for _ in 0..20 {
                app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
            }
            app.wait_queue(20, &["SENT"]).await;
            let query = app.data("{ queueStats { pending sending sent retrying failed cancelled sentLastMinute } }", json!({})).await["queueStats"].clone();
            assert_eq!(query["sent"], 20);
            let mut messages = 1;
            loop {
                let message = ws::next(&mut socket).await["payload"]["data"]["queueStats"].clone();
                messages += 1;
                if message["sent"] == 20 && message["pending"] == 0 && message["sending"] == 0 {
                    assert_eq!(message["sentLastMinute"], 20);
                    assert_eq!(message["oldestPendingAgeSeconds"], Value::Null);
                    break;
                }
            }
            assert!(messages < 60, "throttled: {messages} messages for 60 changes");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_told_what_it_missed_and_slows_nothing() {
    each_backend_with(
        |c| c.delivery.subscription_buffer = 8,
        async |app| {
            let receiver = Receiver::start().await;
            app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
            let schema = hookline::graphql::build_schema(Some(app.state.clone()));
            let request = async_graphql::Request::new(
                "subscription { queueUpdates { missedUpdates queuedWebhook { id status } } }",
            )
            .data(hookline::graphql::Caller::super_admin("local"));
            let mut stream = schema.execute_stream(request);
            // Start the subscription, then stop reading while 30 items are delivered.
            let mut first = Box::pin(stream.next());
            assert!(futures_util::poll!(&mut first).is_pending());
            drop(first);
            for _ in 0..30 {
                app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
            }
            app.wait_queue(30, &["SENT"]).await;
            assert_eq!(receiver.requests().len(), 30, "the deliveries did not wait for the subscriber");
            let next =
                tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("an update").expect("open");
            let missed = next.data.into_json().expect("json")["queueUpdates"]["missedUpdates"].as_u64().unwrap_or(0);
            assert!(missed >= 60, "90 changes, 8 kept: {missed} missed");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_beyond_the_message_rate_are_counted_as_missed() {
    each_backend_with(
        // One message a second over all subscribers, after a first burst of 16.
        |c| c.delivery.subscription_rate = 1,
        async |app| {
            let receiver = Receiver::start().await;
            app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
            let mut socket = ws::connect(app.addr, &app.token).await;
            ws::subscribe(&mut socket, "u", UPDATES, json!({})).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            for _ in 0..30 {
                app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
            }
            app.wait_queue(30, &["SENT"]).await;
            let (mut received, mut missed) = (0, 0);
            while let Some(message) = ws::within(&mut socket, Duration::from_millis(500)).await {
                assert_eq!(message["type"], "next", "{message}");
                missed += message["payload"]["data"]["queueUpdates"]["missedUpdates"].as_i64().unwrap_or(-1000);
                received += 1;
            }
            assert!((16..40).contains(&received), "90 changes at 1/s after 16: {received} received");
            // Tokens come back with time; the next change tells how many were missed.
            tokio::time::sleep(Duration::from_secs(3)).await;
            app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
            let next = updates(&mut socket, "u", 1).await.remove(0);
            assert_eq!(next["queuedWebhook"]["status"], "PENDING");
            assert_eq!(next["missedUpdates"], 90 - received - missed, "every change is received or counted");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_of_one_process_sees_the_sends_of_another() {
    let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("{POSTGRES_ENV} is not set: this test needs PostgreSQL");
        return;
    };
    let name = format!("hookline_t_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&admin_url).await.expect("connect");
    sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("CREATE DATABASE {name}")).await.expect("create");
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, common::rand_key());
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        ("HOOKLINE_DATABASE_URL", common::database_url(&admin_url, &name)),
        ("HOOKLINE_SECRET_KEY", key),
        ("HOOKLINE_DATA_DIR", dir.path().display().to_string()),
    ];
    let watcher = Server::start(dir.path(), &env);
    let worker = Server::start(dir.path(), &env);
    let receiver = Receiver::start().await;
    worker.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
    let mut socket = ws::connect(watcher.addr, &watcher.token).await;
    ws::subscribe(&mut socket, "u", UPDATES, json!({"s": "SENT"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        worker.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
    }
    let seen = updates(&mut socket, "u", 5).await;
    assert!(seen.iter().all(|u| u["queuedWebhook"]["status"] == "SENT"));
    drop((watcher, worker));
    sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .ok();
}

fn pinging(config: &mut hookline::config::Config) {
    config.delivery.ws_ping_interval = Duration::from_millis(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_graphql_ws_protocol_streams_updates_and_keep_alives() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
    each_backend_with(pinging, async |app| {
        let receiver = Receiver::start().await;
        app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
        let mut request = format!("ws://{}/graphql", app.addr).into_client_request().expect("request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-ws"));
        let (mut socket, response) = tokio_tungstenite::connect_async(request).await.expect("connects");
        assert_eq!(response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some("graphql-ws"));
        let send = |value: Value| Message::text(value.to_string());
        let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", app.token)}});
        socket.send(send(init)).await.expect("init");
        let start = json!({"id": "1", "type": "start", "payload": {"query": UPDATES, "variables": {}}});
        socket.send(send(start)).await.expect("start");
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
        let (mut statuses, mut keep_alives, mut acked) = (Vec::new(), 0, false);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while statuses.len() < 3 || keep_alives == 0 {
            let frame = tokio::time::timeout_at(deadline, socket.next()).await.expect("in time").expect("open");
            let Message::Text(text) = frame.expect("frame") else { continue };
            let message: Value = serde_json::from_str(&text).expect("json");
            match message["type"].as_str() {
                Some("connection_ack") => acked = true,
                Some("ka") => keep_alives += 1,
                Some("data") => {
                    statuses.push(message["payload"]["data"]["queueUpdates"]["queuedWebhook"]["status"].clone())
                }
                _ => panic!("unexpected {message}"),
            }
        }
        assert!(acked);
        assert_eq!(statuses, vec![json!("PENDING"), json!("SENDING"), json!("SENT")]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscribers_are_pinged_and_kept() {
    use tokio_tungstenite::tungstenite::Message;
    each_backend_with(pinging, async |app| {
        let receiver = Receiver::start().await;
        app.data(CREATE_WEBHOOK, hook(&receiver, &json!("0"))).await;
        let mut socket = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut socket, "u", UPDATES, json!({})).await;
        // Idle for longer than four ping intervals: the client library answers the pings.
        let (mut pings, deadline) = (0, tokio::time::Instant::now() + Duration::from_millis(1500));
        while let Ok(frame) = tokio::time::timeout_at(deadline, socket.next()).await {
            match frame.expect("open").expect("frame") {
                Message::Ping(_) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 4, "{pings} pings in 1.5 s");
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
        let seen = updates(&mut socket, "u", 3).await;
        assert_eq!(seen[2]["queuedWebhook"]["status"], "SENT", "the connection is still open");
    })
    .await;
}

#[tokio::test]
async fn websocket_connections_from_other_sites_are_refused_unless_allowed() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
    let attempt = |addr: std::net::SocketAddr, origin: &'static str| async move {
        let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
        let headers = request.headers_mut();
        headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
        headers.insert("Origin", HeaderValue::from_static(origin));
        tokio_tungstenite::connect_async(request).await.map(|_| ()).map_err(|e| e.to_string())
    };
    each_backend_with(
        |c| c.delivery.allowed_origins = vec!["https://dash.example.com".into()],
        async |app| {
            let refused = attempt(app.addr, "https://evil.example").await;
            assert!(refused.is_err_and(|e| e.contains("403")), "another site is refused");
            assert!(attempt(app.addr, "https://dash.example.com").await.is_ok(), "a configured origin");
            let own: &'static str = Box::leak(format!("http://{}", app.addr).into_boxed_str());
            assert!(attempt(app.addr, own).await.is_ok(), "the server's own pages (GraphiQL)");
            ws::connect(app.addr, &app.token).await; // no Origin: not a browser
        },
    )
    .await;
}

#[tokio::test]
async fn requests_from_other_sites_pages_are_refused() {
    each_backend(async |app| {
        let post_as = |origin: &'static str, host: Option<String>| {
            let client = common::client_with(&app.token);
            let url = app.url("/graphql");
            async move {
                let mut request = client.post(url);
                if let Some(host) = host {
                    request = request.header("Host", host);
                }
                request
                    .header("Origin", origin)
                    .header("Content-Type", "application/json")
                    .body(r#"{"query": "mutation { createEntity(input: {name: \"csrf\"}) { id } }"}"#)
                    .send()
                    .await
                    .expect("sent")
                    .status()
                    .as_u16()
            }
        };
        let post = |origin: &'static str| post_as(origin, None);
        assert_eq!(post("https://evil.example").await, 403, "a cross-site form post");
        // DNS rebinding: the attacker's name resolves to the server, so Host and Origin agree.
        let rebound: &'static str = Box::leak(format!("http://rebind.example:{}", app.addr.port()).into_boxed_str());
        let host = format!("rebind.example:{}", app.addr.port());
        assert_eq!(post_as(rebound, Some(host)).await, 403, "a host name is not trusted as the server's own");
        let own: &'static str = Box::leak(format!("http://{}", app.addr).into_boxed_str());
        assert_eq!(post(own).await, 200, "the server's own page");
        let entities = app.data("{ entities { name } }", serde_json::json!({})).await;
        assert_eq!(entities.to_string().matches("csrf").count(), 1, "only the allowed mutation stored something");
    })
    .await;
}

/// A change too large for one PostgreSQL notification (a rendered URL of 8 KB) is left out of
/// the stream, and the write it belongs to stands: PostgreSQL refuses such a notification and
/// aborts the transaction it was sent in, whose COMMIT then rolled back the item while the
/// mutation was answered as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_too_large_to_stream_does_not_undo_its_write() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        let url = receiver.url("/hook?pad={{ item.pad }}");
        let input = json!({"name": "long", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url});
        app.data(CREATE_WEBHOOK, json!({ "input": input })).await;
        let mut socket = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut socket, "u", UPDATES, json!({})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (name, pad) in [("long", "a".repeat(8000)), ("short", "b".to_owned())] {
            let input = json!({"itemtype": "Ticket", "entityId": "0", "name": name, "fields": {"pad": pad}});
            app.data(CREATE_ITEM, json!({ "input": input })).await;
        }
        let count = app.data("{ items(itemtype: \"Ticket\") { totalCount } }", json!({})).await;
        assert_eq!(count["items"]["totalCount"], 2, "both items were stored");
        let sent = receiver.wait_for(2, Duration::from_secs(10)).await;
        assert!(sent.iter().any(|r| r.query.len() > 8000), "the long row was delivered");
        // The short row's changes are streamed (the long row's too on SQLite, where nothing
        // limits them).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let update = updates(&mut socket, "u", 1).await.remove(0);
            let row = &update["queuedWebhook"];
            if row["status"] == "SENT" && row["body"].as_str().unwrap_or_default().contains("short") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the short row's SENT was not streamed");
        }
    })
    .await;
}
