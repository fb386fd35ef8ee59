//! Faults of the database under a running server: a SQLite database that fills up
//! (`HOOKLINE_SQLITE_MAX_SIZE`), and PostgreSQL connections cut while events flow. Requests
//! meet a clear `UNAVAILABLE` error, the server stays up, queued deliveries go on, nothing
//! committed is lost, and the server recovers on its own.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap};
use common::{Backend, POSTGRES_ENV, TestApp, each_backend_with, receiver::Receiver, ws};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use tokio::sync::watch;

const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
const CLEAN: &str = "mutation { cleanQueuedWebhooks(sentDays: 0, failedDays: 0) }";
const ROWS_OF: &str = "query($w: ID) { queuedWebhooks(first: 500, webhookId: $w) { totalCount edges { node { id status deliveryId lastError } } } }";
const UPDATES: &str = "subscription { queueUpdates { queuedWebhook { id status } } }";

async fn webhook(app: &TestApp, input: Value) -> String {
    app.data(CREATE_WEBHOOK, json!({ "input": input })).await["createWebhook"]["id"].as_str().unwrap_or_default().into()
}

/// The queued rows of one webhook.
async fn rows_of(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    let data = app.data(ROWS_OF, json!({"w": webhook_id})).await;
    data["queuedWebhooks"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect()
}

/// Waits until the webhook has `count` rows, all in `status`.
async fn wait_rows(app: &TestApp, webhook_id: &str, count: usize, status: &str, within: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let rows = rows_of(app, webhook_id).await;
        if rows.len() >= count && rows.iter().all(|r| r["status"] == status) {
            return rows;
        }
        if std::time::Instant::now() > deadline {
            let mut statuses: HashMap<String, usize> = HashMap::new();
            for row in &rows {
                *statuses.entry(row["status"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            }
            panic!("expected {count} rows {status}, got {statuses:?}; the first: {:?}", rows.first());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A receiver that holds every request until its gate opens, then answers 200; it records the
/// delivery id of each request.
#[derive(Clone)]
struct Gated {
    base: String,
    open: watch::Sender<bool>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Gated {
    async fn start() -> Self {
        let (open, _) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = (open.subscribe(), seen.clone());
        let app = Router::new().fallback(gated).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { base, open, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn gated(State((mut open, seen)): State<(watch::Receiver<bool>, Arc<Mutex<Vec<String>>>)>, headers: HeaderMap) {
    let id = headers.get("x-hookline-delivery").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    open.wait_for(|open| *open).await.ok();
}

/// A loopback port nothing listens on: connections to it are refused at once.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

fn computer(blob: &str) -> Value {
    json!({"input": {"itemtype": "Computer", "entityId": "0", "fields": {"blob": blob}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_database_refuses_mutations_clearly_keeps_delivering_and_recovers_when_space_is_freed() {
    let configure = |config: &mut hookline::config::Config| {
        config.sqlite_max_size = 3 * 1024 * 1024;
        // The gated receiver holds its requests for as long as the test fills the database.
        config.delivery.http_timeout = Duration::from_secs(60);
    };
    each_backend_with(configure, async |app| {
        if app.backend != Backend::Sqlite {
            return;
        }
        // Three deliveries in flight, held by the receiver while the database fills up.
        let gate = Gated::start().await;
        let held = webhook(
            app,
            json!({"name": "held", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
                "url": format!("{}/held", gate.base), "logInItemHistory": true}),
        )
        .await;
        for n in 0..3 {
            app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": format!("t{n}")}}))
                .await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while gate.seen().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "the held deliveries never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Computers fill the database: each stores a 16 KB field twice (the item and the body
        // of its queued row, which fails at once and stays until cleaned).
        let port = closed_port().await;
        let filler = webhook(
            app,
            json!({"name": "filler", "entityId": "0", "itemtype": "Computer", "event": "NEW",
                "url": format!("http://127.0.0.1:{port}/nowhere"), "sentTry": 0}),
        )
        .await;
        let blob = "x".repeat(16 * 1024);
        let mut stored: i64 = 0;
        let refusal = loop {
            let response = app.query(CREATE_ITEM, computer(&blob)).await;
            if response.get("errors").is_some() {
                break response["errors"][0].clone();
            }
            stored += 1;
            assert!(stored < 1000, "a 3 MB database took {stored} items of 32 KB");
        };
        assert!(stored > 10, "only {stored} items fitted");
        assert_eq!(refusal["extensions"]["code"], "UNAVAILABLE", "{refusal}");
        let message = refusal["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("the database is full (HOOKLINE_SQLITE_MAX_SIZE"), "{message}");
        // Nothing of the refused create was kept, and every stored one is there.
        let count = app.data("{ items(itemtype: \"Computer\", first: 1) { totalCount } }", json!({})).await;
        assert_eq!(count["items"]["totalCount"], stored, "{count}");

        // The server stays up and keeps delivering: the held attempts finish and are recorded,
        // the filler's rows fail and are recorded, all in the room kept for the queue.
        assert!(app.get("/healthz").await.status().is_success());
        gate.open.send_replace(true);
        wait_rows(app, &held, 3, "SENT", Duration::from_secs(20)).await;
        wait_rows(app, &filler, stored as usize, "FAILED", Duration::from_secs(20)).await;
        let (code, message) = app.error(CREATE_ITEM, computer(&blob)).await;
        assert_eq!((code.as_str(), message.contains("is full")), ("UNAVAILABLE", true), "{message}");

        // Cleaning the queue frees room, and mutations work again.
        let cleaned = app.data(CLEAN, json!({})).await;
        assert!(cleaned["cleanQueuedWebhooks"].as_i64().unwrap_or_default() >= stored, "{cleaned}");
        app.data(CREATE_ITEM, computer(&blob)).await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "after"}})).await;
        wait_rows(app, &held, 1, "SENT", Duration::from_secs(20)).await;
        assert_eq!(gate.seen().len(), 4, "each held delivery was sent once, then the new one");
    })
    .await;
}
