//! Faults of the database under a running server: a SQLite database that fills up
//! (`HOOKLINE_SQLITE_MAX_SIZE`), and PostgreSQL connections cut while events flow. Requests
//! meet a clear `UNAVAILABLE` error, the server stays up, queued deliveries go on, nothing
//! committed is lost, and the server recovers on its own.

mod common;
#[path = "faults/load.rs"]
mod load;
#[path = "faults/proxy.rs"]
mod proxy;

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

/// The gated receiver's state: whether the gate is open, and the delivery ids seen.
type GateState = (watch::Receiver<bool>, Arc<Mutex<Vec<String>>>);

async fn gated(State((mut open, seen)): State<GateState>, headers: HeaderMap) {
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
        // The filler's target refuses every row: its breaker must not hold them back here.
        config.delivery.breaker.failures = 1_000_000;
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

/// Creates and updates racing into a filling SQLite database share write batches. When a
/// create finds the database full, SQLite may end the whole transaction of its batch, the
/// updates committed before it in that batch included: each write answered as stored must be
/// there, and none refused may be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_into_a_full_sqlite_database_are_answered_as_stored_only_when_they_are() {
    let configure = |config: &mut hookline::config::Config| config.sqlite_max_size = 2 * 1024 * 1024;
    each_backend_with(configure, async |app| {
        if app.backend != Backend::Sqlite {
            return;
        }
        const UPDATE: &str =
            "mutation($f: JSON) { updateItem(itemtype: \"Ticket\", id: \"1\", input: {fields: $f}) { id } }";
        const HISTORY: &str = "{ item(itemtype: \"Ticket\", id: \"1\") { history(first: 1) { totalCount } } }";
        const NAMES: &str = "{ items(itemtype: \"Computer\", first: 500) { totalCount edges { node { name } } } }";
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "target"}})).await;
        let entries = |history: Value| history["item"]["history"]["totalCount"].as_i64().expect("a count");
        let before = entries(app.data(HISTORY, json!({})).await);
        let blob = "x".repeat(16 * 1024);
        let filled = std::sync::atomic::AtomicBool::new(false);
        // Each filler creates until the database has refused it three times in a row.
        let filler = async |task: usize| {
            let (mut stored, mut refusals) = (Vec::new(), 0);
            for n in 0..400 {
                let name = format!("c{task}-{n}");
                let input =
                    json!({"input": {"itemtype": "Computer", "entityId": "0", "name": name, "fields": {"blob": blob}}});
                let response = app.query(CREATE_ITEM, input).await;
                match response.get("errors") {
                    None => (stored.push(name), refusals = 0).1,
                    Some(errors) => {
                        assert_eq!(errors[0]["extensions"]["code"], "UNAVAILABLE", "{response}");
                        refusals += 1;
                        if refusals == 3 {
                            break;
                        }
                    }
                }
            }
            stored
        };
        // Each updater changes a 4 KB field of the ticket (one history entry each, holding the old
        // and the new value) until the fillers are done.
        let updater = async |task: usize| {
            let mut stored = 0;
            for n in 0.. {
                if filled.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let note = format!("u{task}-{n}-{}", "y".repeat(4 * 1024));
                let response = app.query(UPDATE, json!({"f": {"note": note}})).await;
                match response.get("errors") {
                    None => stored += 1,
                    Some(errors) => assert_eq!(errors[0]["extensions"]["code"], "UNAVAILABLE", "{response}"),
                }
            }
            stored
        };
        let fillers = async {
            let stored = futures_util::future::join_all((0..4).map(filler)).await;
            filled.store(true, std::sync::atomic::Ordering::Relaxed);
            stored
        };
        let (created, updated) = tokio::join!(fillers, futures_util::future::join_all((0..4).map(updater)));
        let mut created: Vec<String> = created.into_iter().flatten().collect();
        created.sort();
        let listed = app.data(NAMES, json!({})).await;
        let mut names: Vec<String> = listed["items"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|edge| edge["node"]["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        assert!(created.len() > 10, "only {} computers fitted", created.len());
        assert_eq!(names, created, "the computers stored are those answered as stored");
        let updated: i64 = updated.iter().sum();
        assert!(updated > 0, "no update was stored");
        let after = entries(app.data(HISTORY, json!({})).await);
        assert_eq!(after - before, updated, "each update answered as stored left its history entry, and no other did");
    })
    .await;
}

/// Ends every session of `database` but the caller's; returns how many.
async fn cut_connections(admin: &sea_orm::DatabaseConnection, database: &str) -> i64 {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        [database.into()],
    );
    let row = admin.query_one_raw(statement).await.expect("terminate").expect("a count");
    row.try_get::<i64>("", "n").expect("n")
}

/// A short lease (a row whose claim was cut off goes back to the queue soon) and 16 attempts
/// in flight at most.
fn short_lease(config: &mut hookline::config::Config) {
    config.delivery.http_timeout = Duration::from_secs(1);
    config.delivery.max_in_flight = 16;
    config.delivery.max_per_host = 16;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sessions_cut_while_events_flow_are_opened_again_and_nothing_committed_is_lost() {
    let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
        return;
    };
    each_backend_with(short_lease, async |app| {
        if app.backend != Backend::Postgres {
            return;
        }
        let admin = Database::connect(&admin_url).await.expect("connect as admin");
        let current = Statement::from_string(DbBackend::Postgres, "SELECT current_database() AS d");
        let row = app.state.db.query_one_raw(current).await.expect("query").expect("a row");
        let database = row.try_get::<String>("", "d").expect("name");
        let receiver = Receiver::start().await;
        let hook = webhook(
            app,
            json!({"name": "cut", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/hook")}),
        )
        .await;
        // A subscriber: on PostgreSQL its changes come through the LISTEN connection.
        let mut socket = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut socket, "u", UPDATES, json!({})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Every session of the database (pools, writer, listener) is ended five times while
        // four clients create tickets.
        let url = app.url("/graphql");
        let token = app.token.clone();
        let running = load::start(&url, &token);
        let mut cut = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            cut += cut_connections(&admin, &database).await;
        }
        assert!(cut >= 5, "only {cut} sessions were cut");
        // Each cut may catch up to 16 attempts in flight.
        load::check(&url, &token, running, &receiver, &hook, 5 * 16).await;

        // The subscriber still hears of changes: the LISTEN connection was opened again.
        while ws::within(&mut socket, Duration::from_millis(500)).await.is_some() {}
        load::create_ticket(&load::client(&token), &url, "heard").await.expect("stored");
        let heard = ws::next(&mut socket).await;
        assert_eq!(heard["type"], "next", "{heard}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_out_of_reach_for_two_seconds_is_waited_for_or_refused_clearly_and_then_served_again() {
    let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
        return;
    };
    // The server reaches PostgreSQL through a proxy the test cuts.
    let admin = Database::connect(&admin_url).await.expect("connect as admin");
    let name = format!("hookline_t_{}", uuid::Uuid::new_v4().simple());
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    let server = url::Url::parse(&admin_url).expect("a URL");
    let target = tokio::net::lookup_host((server.host_str().unwrap_or("127.0.0.1"), server.port().unwrap_or(5432)))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = proxy::Proxy::start(target).await;
    let mut through = url::Url::parse(&common::database_url(&admin_url, &name)).expect("a URL");
    through.set_host(Some("127.0.0.1")).expect("host");
    through.set_port(Some(proxy.addr.port())).expect("port");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::test_config(dir.path());
    short_lease(&mut config);
    let config = config.with_database_url(through.as_str()).expect("database url").with_secret_key(common::rand_key());
    let data_dir = config.data_dir.clone();
    let app = hookline::Application::build(config).await.expect("application builds");
    let token = common::admin_token(&data_dir);
    let addr = app.local_addr();
    let url = format!("http://{addr}/graphql");
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let receiver = Receiver::start().await;
    let input = json!({"input": {"name": "gap", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
        "url": receiver.url("/hook")}});
    let created = load::graphql(&load::client(&token), &url, CREATE_WEBHOOK, input).await.expect("webhook");
    let hook = created["createWebhook"]["id"].as_str().unwrap_or_default().to_owned();

    let mut socket = ws::connect(addr, &token).await;
    ws::subscribe(&mut socket, "u", UPDATES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let running = load::start(&url, &token);
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    load::check(&url, &token, running, &receiver, &hook, 16).await;
    // The LISTEN connection, lost with the others, was opened again.
    while ws::within(&mut socket, Duration::from_millis(500)).await.is_some() {}
    load::create_ticket(&load::client(&token), &url, "heard").await.expect("stored");
    let heard = ws::next(&mut socket).await;
    assert_eq!(heard["type"], "next", "{heard}");

    shutdown.cancel();
    server.await.ok();
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
}
