//! Nothing lost, nothing doubled: the real binary killed with SIGKILL mid-delivery, stopped
//! with SIGTERM, and (on PostgreSQL) two processes sharing one database.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    POSTGRES_ENV,
    binary::{Server, databases, drop_database},
    receiver::{Receiver, Recorded},
};
use serde_json::json;

const WEBHOOKS: usize = 4;
const ITEMS: usize = 30;
const MAX_IN_FLIGHT: usize = 8;

fn env(dir: &std::path::Path, database: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HOOKLINE_DATA_DIR", dir.join("data").display().to_string()),
        ("HOOKLINE_MAX_IN_FLIGHT", MAX_IN_FLIGHT.to_string()),
        ("HOOKLINE_RETRY_SCHEDULE", "100ms".into()),
        ("HOOKLINE_POLL_INTERVAL", "50ms".into()),
        ("HOOKLINE_HTTP_TIMEOUT", "2s".into()),
    ];
    env.extend(database.iter().cloned());
    env
}

async fn queue_events(server: &Server, receiver: &Receiver) {
    for n in 0..WEBHOOKS {
        let input = json!({"name": format!("w{n}"), "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url(&format!("/w{n}"))});
        server
            .data("mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }", json!({"input": input}))
            .await;
    }
    for n in 0..ITEMS {
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": format!("t{n}")});
        server.data("mutation($input: ItemInput!) { createItem(input: $input) { id } }", json!({"input": input})).await;
    }
}

/// A server on a fresh data dir, a slow receiver, and every event queued.
async fn start_delivering(
    database: &[(&'static str, String)],
) -> (tempfile::TempDir, Receiver, Vec<(&'static str, String)>, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    receiver.delay_all(Duration::from_millis(150));
    let env = env(dir.path(), database);
    let server = Server::start(dir.path(), &env);
    queue_events(&server, &receiver).await;
    (dir, receiver, env, server)
}

/// Waits until every queued webhook is SENT and returns their delivery ids.
async fn wait_all_sent(server: &Server, expected: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let data = server
            .data("{ all: queuedWebhooks { totalCount } sent: queuedWebhooks(status: SENT) { totalCount } }", json!({}))
            .await;
        let (all, sent) =
            (data["all"]["totalCount"].as_u64().unwrap_or(0), data["sent"]["totalCount"].as_u64().unwrap_or(0));
        if all == expected as u64 && sent == all {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not all sent: {sent} of {all} (expected {expected})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let query = "query($after: String) { queuedWebhooks(first: 500, after: $after) { edges { node { deliveryId } } pageInfo { hasNextPage endCursor } } }";
        let page = server.data(query, json!({"after": after})).await;
        let edges = page["queuedWebhooks"]["edges"].as_array().cloned().unwrap_or_default();
        ids.extend(edges.iter().filter_map(|e| e["node"]["deliveryId"].as_str().map(str::to_owned)));
        if page["queuedWebhooks"]["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = page["queuedWebhooks"]["pageInfo"]["endCursor"].clone();
    }
}

fn counts(requests: &[Recorded]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        *counts.entry(request.header("x-hookline-delivery").unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    counts
}

// The receiver runs in this process: a multi-threaded runtime keeps it answering while a
// test thread waits for the server process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing_and_repeats_only_attempts_in_flight() {
    for (backend, database) in databases().await {
        let (dir, receiver, env, mut server) = start_delivering(&database).await;
        receiver.wait_for(MAX_IN_FLIGHT * 2, Duration::from_secs(30)).await;
        server.kill9();
        let before_restart = receiver.requests().len();
        assert!(before_restart < WEBHOOKS * ITEMS, "{backend}: the kill must come mid-delivery");

        let server = Server::start(dir.path(), &env);
        let ids = wait_all_sent(&server, WEBHOOKS * ITEMS).await;
        let received = counts(&receiver.requests());
        for id in &ids {
            assert!(received.contains_key(id), "{backend}: delivery {id} never arrived");
        }
        assert_eq!(received.len(), WEBHOOKS * ITEMS, "{backend}: only known delivery ids arrive");
        let duplicates: usize = received.values().map(|n| n - 1).sum();
        assert!(
            duplicates <= MAX_IN_FLIGHT,
            "{backend}: {duplicates} duplicates, more than the {MAX_IN_FLIGHT} in flight"
        );
        drop(server);
        drop_database(&database).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_attempts_and_a_restart_sends_the_rest_once() {
    for (backend, database) in databases().await {
        let (dir, receiver, env, mut server) = start_delivering(&database).await;
        receiver.wait_for(MAX_IN_FLIGHT, Duration::from_secs(30)).await;
        assert!(server.terminate(), "{backend}: a clean exit on SIGTERM");
        let after_stop = receiver.requests().len();
        assert!(after_stop < WEBHOOKS * ITEMS, "{backend}: the stop must come mid-delivery");

        let server = Server::start(dir.path(), &env);
        wait_all_sent(&server, WEBHOOKS * ITEMS).await;
        let received = counts(&receiver.requests());
        assert_eq!(received.len(), WEBHOOKS * ITEMS);
        assert!(received.values().all(|n| *n == 1), "{backend}: a graceful stop repeats nothing: {received:?}");
        drop(server);
        drop_database(&database).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_send_each_attempt_once() {
    let Some((_, database)) = databases().await.into_iter().find(|(b, _)| b == "postgres") else {
        eprintln!("{POSTGRES_ENV} is not set: the two-process test needs PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let env = env(dir.path(), &database);
    let first = Server::start(dir.path(), &env);
    let second = Server::start(dir.path(), &env);
    const HOOKS: usize = 10;
    const EVENTS: usize = 100;
    for n in 0..HOOKS {
        let input = json!({"name": format!("w{n}"), "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url(&format!("/w{n}"))});
        first
            .data("mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }", json!({"input": input}))
            .await;
    }
    let create = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
    let mut tasks = Vec::new();
    for (n, server) in [&first, &second].into_iter().enumerate() {
        let server_addr = server.addr;
        let client = common::client_with(&server.token);
        tasks.push(tokio::spawn(async move {
            for i in 0..EVENTS / 2 {
                let input = json!({"itemtype": "Ticket", "entityId": "0", "name": format!("p{n}-{i}")});
                common::binary::data_at(&client, server_addr, create, json!({"input": input})).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("clients");
    }
    let ids = wait_all_sent(&second, HOOKS * EVENTS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = counts(&receiver.requests());
    assert_eq!(ids.len(), HOOKS * EVENTS);
    assert_eq!(received.len(), HOOKS * EVENTS);
    let doubled: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "attempts sent twice: {doubled:?}");
    drop((first, second));
    drop_database(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postgres_process_rows_are_sent_by_another_within_15_seconds() {
    let Some((_, database)) = databases().await.into_iter().find(|(b, _)| b == "postgres") else {
        eprintln!("{POSTGRES_ENV} is not set: the heartbeat test needs PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    receiver.delay_all(Duration::from_millis(300));
    let mut env = env(dir.path(), &database);
    // A long timeout makes the lease (derived from it) far longer than 15 s: only the
    // heartbeat can give the rows back in time.
    env.push(("HOOKLINE_HTTP_TIMEOUT", "20s".into()));
    let mut doomed = Server::start(dir.path(), &env);
    queue_events(&doomed, &receiver).await;
    receiver.wait_for(MAX_IN_FLIGHT, Duration::from_secs(30)).await;
    let survivor = Server::start(dir.path(), &env);
    doomed.kill9();
    let killed_at = std::time::Instant::now();
    let ids = wait_all_sent(&survivor, WEBHOOKS * ITEMS).await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(15), "the dead process's rows were sent after {took:?}");
    let received = counts(&receiver.requests());
    for id in &ids {
        assert!(received.contains_key(id), "delivery {id} never arrived");
    }
    drop((doomed, survivor));
    drop_database(&database).await;
}
