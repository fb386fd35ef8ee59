//! Delivery control through the real server and a real receiver: the circuit breaker (opens,
//! holds, probes once, closes, deactivates after continuous failure) and the rate limit per
//! webhook (within one process and across two PostgreSQL processes), on both databases.

mod common;

use std::time::{Duration, Instant};

use common::{
    POSTGRES_ENV,
    binary::{Server, databases, drop_database, quick_env},
    each_backend, each_backend_with,
    receiver::{Receiver, Recorded, Reply},
    ws,
};
use hookline::domain::breaker::BreakerConfig;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const HEALTH: &str =
    "query($id: ID!) { webhook(id: $id) { isActive health { state consecutiveFailures openedAt nextProbeAt } } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";

async fn webhook(app: &common::TestApp, receiver: &Receiver, path: &str, extra: Value) -> String {
    app.ticket_webhook(path, &receiver.url(path), extra).await
}

async fn ticket(app: &common::TestApp, name: &str) {
    app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name}})).await;
}

async fn health(app: &common::TestApp, id: &str) -> Value {
    app.data(HEALTH, json!({"id": id})).await["webhook"].clone()
}

/// Waits until the webhook's health satisfies `done`; returns the webhook.
async fn wait_health(app: &common::TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let webhook = health(app, id).await;
        if done(&webhook) {
            return webhook;
        }
        assert!(Instant::now() < deadline, "health did not settle ({:?}): {webhook}", app.backend);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that no one-second window holds more than `limit` of these requests' arrivals.
fn assert_within_rate(requests: &[Recorded], limit: usize) {
    let mut at: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    at.sort();
    for window in at.windows(limit + 1) {
        let span = window[limit] - window[0];
        assert!(span >= Duration::from_secs(1), "{} starts within {span:?} (limit {limit}/s)", limit + 1);
    }
}

/// Every delivery id of the webhook's rows reached the receiver with a 200 answer: none lost.
fn delivery_ids(rows: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|r| r["deliveryId"].as_str().unwrap_or_default().to_owned()).collect();
    ids.sort();
    ids
}

fn received_ids(requests: &[Recorded]) -> Vec<String> {
    let mut ids: Vec<String> =
        requests.iter().filter_map(|r| r.header("X-Hookline-Delivery").map(str::to_owned)).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A breaker that opens after three failures and probes two seconds later.
fn small_breaker(c: &mut hookline::config::Config) {
    c.delivery.breaker =
        BreakerConfig { failures: 3, cooldown: Duration::from_secs(2), disable_after: Duration::from_secs(3600) };
}

/// Failures short of the threshold are counted, and the success that follows clears the count
/// (in the same transaction as the row's outcome: it is cleared once the row reads SENT).
#[tokio::test]
async fn a_success_after_failures_short_of_the_threshold_clears_their_count() {
    each_backend_with(small_breaker, async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/twice", vec![Reply::Status(500); 2]);
        let id = webhook(app, &receiver, "/twice", json!({"sentTry": 20})).await;
        ticket(app, "retried").await;
        app.wait_queue(1, &["SENT"]).await;
        assert_eq!(receiver.requests_to("/twice").len(), 3, "two failures, then the success");
        let healed = health(app, &id).await;
        assert_eq!(
            healed["health"],
            json!({"state": "CLOSED", "consecutiveFailures": 0, "openedAt": null, "nextProbeAt": null}),
            "{:?}",
            app.backend
        );
    })
    .await;
}

#[tokio::test]
async fn the_breaker_opens_holds_probes_once_and_closes_with_no_row_lost() {
    each_backend_with(small_breaker, async |app| {
        let receiver = Receiver::start().await;
        // Three failures open it; the first probe fails too; the second succeeds.
        receiver.script("/flaky", vec![Reply::Status(500); 4]);
        let id = webhook(app, &receiver, "/flaky", json!({"sentTry": 20})).await;
        assert_eq!(health(app, &id).await["health"], json!({"state": "CLOSED", "consecutiveFailures": 0, "openedAt": null, "nextProbeAt": null}));
        let mut socket = ws::connect(app.addr, &app.token).await;
        let subscription = "subscription($id: ID) { webhookHealthUpdates(webhookId: $id) { state consecutiveFailures openedAt nextProbeAt } }";
        ws::subscribe(&mut socket, "health", subscription, json!({"id": id})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        ticket(app, "first").await;
        let open = wait_health(app, &id, |w| w["health"]["state"] == "OPEN").await;
        assert_eq!(open["health"]["consecutiveFailures"], 3, "{open}");
        assert!(open["health"]["openedAt"].is_string() && open["health"]["nextProbeAt"].is_string(), "{open}");
        assert_eq!(receiver.requests().len(), 3);
        // While open, new rows wait where they are: pending, not claimed, not failed.
        for n in 0..4 {
            ticket(app, &format!("while open {n}")).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = app.wait_queue(5, &["PENDING", "RETRYING"]).await;
        assert_eq!(rows.iter().filter(|r| r["status"] == "PENDING").count(), 4, "{rows:?}");

        let rows = app.wait_queue(5, &["SENT"]).await;
        let requests = receiver.requests_to("/flaky");
        // 3 failures, a failed probe, a successful probe, then the 4 others.
        assert_eq!(requests.len(), 9, "{requests:?}");
        let gap = |a: usize, b: usize| requests[b].at - requests[a].at;
        // Each probe went alone, a cooldown after the previous request: nothing in between.
        assert!(gap(2, 3) >= Duration::from_millis(1900), "the first probe waited the cooldown: {:?}", gap(2, 3));
        assert!(gap(3, 4) >= Duration::from_millis(3900), "the second waited twice as long: {:?}", gap(3, 4));
        assert_eq!(delivery_ids(&rows), received_ids(&requests), "every row was sent");
        let closed = health(app, &id).await;
        assert_eq!(closed["health"], json!({"state": "CLOSED", "consecutiveFailures": 0, "openedAt": null, "nextProbeAt": null}));

        let mut states = Vec::new();
        while states.last().map(String::as_str) != Some("CLOSED") {
            let message = ws::next(&mut socket).await;
            assert_eq!(message["type"], "next", "{message}");
            states.push(message["payload"]["data"]["webhookHealthUpdates"]["state"].as_str().unwrap_or_default().to_owned());
        }
        assert_eq!(states, ["OPEN", "HALF_OPEN", "OPEN", "HALF_OPEN", "CLOSED"], "{:?}", app.backend);
    })
    .await;
}

#[tokio::test]
async fn test_deliveries_do_not_count_and_forced_sends_pass_an_open_breaker() {
    let small = |c: &mut hookline::config::Config| {
        c.delivery.breaker = BreakerConfig {
            failures: 2,
            cooldown: Duration::from_secs(3600),
            disable_after: Duration::from_secs(86_400),
        };
    };
    each_backend_with(small, async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/down", vec![Reply::Status(503); 4]);
        let id = webhook(app, &receiver, "/down", json!({"event": "UPDATE", "sentTry": 5})).await;
        let item = app
            .data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "one"}}))
            .await["createItem"]["id"]
            .clone();
        let test = "mutation($w: ID!, $i: ID!) { sendTestDelivery(webhookId: $w, itemId: $i) { status } }";
        for _ in 0..2 {
            let failed = app.data(test, json!({"w": id, "i": item})).await;
            assert_eq!(failed["sendTestDelivery"]["status"], "FAILED");
        }
        assert_eq!(health(app, &id).await["health"]["consecutiveFailures"], 0, "test deliveries do not count");
        let update = "mutation($i: ID!) { updateItem(itemtype: \"Ticket\", id: $i, input: {name: \"two\"}) { id } }";
        app.data(update, json!({"i": item})).await;
        wait_health(app, &id, |w| w["health"]["state"] == "OPEN").await;
        let rows = app.wait_queue(3, &["RETRYING", "FAILED"]).await;
        // Open for an hour: a test delivery still goes, and its success does not close it.
        let passed = app.data(test, json!({"w": id, "i": item})).await;
        assert_eq!(passed["sendTestDelivery"]["status"], "SENT");
        assert_eq!(health(app, &id).await["health"]["state"], "OPEN");
        // A forced send goes too, and its success closes it.
        let waiting = rows.iter().find(|r| r["status"] == "RETRYING").expect("the row waits");
        let force = "mutation($id: ID!) { forceSendQueuedWebhook(id: $id) { status } }";
        let forced = app.data(force, json!({"id": waiting["id"]})).await;
        assert_eq!(forced["forceSendQueuedWebhook"]["status"], "SENT");
        assert_eq!(health(app, &id).await["health"]["state"], "CLOSED");
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_spaces_the_sends_and_a_forced_send_passes() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        for bad in [0, -3, 10_001] {
            let input = json!({"name": "bad", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/x"), "maxPerSecond": bad});
            app.assert_error(
                "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }",
                json!({"input": input}),
                "VALIDATION",
                "maxPerSecond",
            )
            .await;
        }
        let id = webhook(app, &receiver, "/paced", json!({"maxPerSecond": 5})).await;
        let read = app.data("query($id: ID!) { webhook(id: $id) { maxPerSecond } }", json!({"id": id})).await;
        assert_eq!(read["webhook"]["maxPerSecond"], 5);
        let items: Vec<Value> =
            (0..20).map(|n| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("t{n}")})).collect();
        app.data("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": items})).await;
        // Rows wait their turn: pending, never failed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let early = app.wait_queue(20, &["PENDING", "SENDING", "SENT"]).await;
        assert!(early.iter().any(|r| r["status"] == "PENDING"), "{early:?}");
        let rows = app.wait_queue(20, &["SENT"]).await;
        let requests = receiver.requests_to("/paced");
        assert_eq!(delivery_ids(&rows), received_ids(&requests));
        assert_within_rate(&requests, 5);

        // One a second: a forced send goes at once, past the rows waiting.
        let patch = "mutation($id: ID!, $p: WebhookPatch!) { updateWebhook(id: $id, input: $p) { maxPerSecond } }";
        let updated = app.data(patch, json!({"id": id, "p": {"maxPerSecond": 1}})).await;
        assert_eq!(updated["updateWebhook"]["maxPerSecond"], 1);
        let items: Vec<Value> =
            (0..5).map(|n| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("u{n}")})).collect();
        app.data("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": items})).await;
        // The newest of five waits about four seconds for its turn; forced, it goes now.
        let newest = app.wait_queue(25, &["PENDING", "SENDING", "SENT"]).await;
        assert_eq!(newest[0]["status"], "PENDING", "{newest:?}");
        let force = "mutation($id: ID!) { forceSendQueuedWebhook(id: $id) { status } }";
        let forced = app.data(force, json!({"id": newest[0]["id"]})).await;
        assert_eq!(forced["forceSendQueuedWebhook"]["status"], "SENT");
        let waiting = app.wait_queue(25, &["PENDING", "SENDING", "SENT"]).await;
        assert!(waiting.iter().any(|r| r["status"] == "PENDING"), "older rows still wait: {waiting:?}");
        app.wait_queue(25, &["SENT"]).await;
        let cleared = app.data(patch, json!({"id": id, "p": {"maxPerSecond": null}})).await;
        assert_eq!(cleared["updateWebhook"]["maxPerSecond"], Value::Null);
    })
    .await;
}

/// A server's `data`, polled until the webhook's rows are all SENT.
async fn wait_all_sent(server: &Server, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let data = server.data(common::QUEUE_QUERY, json!({})).await;
        let rows: Vec<Value> =
            data["queuedWebhooks"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect();
        if rows.len() >= count && rows.iter().all(|r| r["status"] == "SENT") {
            return rows;
        }
        assert!(Instant::now() < deadline, "not all sent: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_processes_share_one_rate_limit_and_one_probe() {
    let Some((_, database)) = databases().await.into_iter().find(|(b, _)| b == "postgres") else {
        eprintln!("{POSTGRES_ENV} is not set: the two-process test needs PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let env = quick_env(
        dir.path(),
        &database,
        &[("HOOKLINE_BREAKER_FAILURES", "2".into()), ("HOOKLINE_BREAKER_COOLDOWN", "1s".into())],
    );
    let first = Server::start(dir.path(), &env);
    let second = Server::start(dir.path(), &env);
    first.create_webhook("paced", json!({"url": receiver.url("/paced"), "maxPerSecond": 4})).await;
    let create = "mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }";
    for (n, server) in [&first, &second].into_iter().enumerate() {
        let items: Vec<Value> =
            (0..12).map(|i| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("p{n}-{i}")})).collect();
        server.data(create, json!({"i": items})).await;
    }
    let rows = wait_all_sent(&second, 24).await;
    let requests = receiver.requests_to("/paced");
    assert_eq!(delivery_ids(&rows), received_ids(&requests));
    assert_eq!(requests.len(), 24, "each sent once");
    assert_within_rate(&requests, 4);

    // A breaker opened by one process holds in both, and one probe goes at a time.
    let flaky = first.create_webhook("flaky", json!({"url": receiver.url("/flaky"), "sentTry": 30})).await;
    receiver.script("/flaky", vec![Reply::Status(500); 3]);
    first.data(create, json!({"i": [{"itemtype": "Ticket", "entityId": "0", "name": "f"}]})).await;
    let deadline = Instant::now() + WAIT;
    while first.data(HEALTH, json!({"id": flaky})).await["webhook"]["health"]["state"] != "OPEN" {
        assert!(Instant::now() < deadline, "the breaker did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (n, server) in [&first, &second].into_iter().enumerate() {
        let items: Vec<Value> =
            (0..6).map(|i| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("f{n}-{i}")})).collect();
        server.data(create, json!({"i": items})).await;
    }
    let rows = wait_all_sent(&first, 37).await;
    let flaky_rows: Vec<Value> = rows.into_iter().filter(|r| r["webhookId"] == flaky.as_str()).collect();
    assert_eq!(flaky_rows.len(), 13);
    let requests = receiver.requests_to("/flaky");
    assert_eq!(delivery_ids(&flaky_rows), received_ids(&requests), "every row was sent");
    assert_eq!(requests.len(), 16, "2 failures and a failed probe, then each of the 13 rows once");
    let gap = |a: usize, b: usize| requests[b].at - requests[a].at;
    assert!(gap(1, 2) >= Duration::from_millis(900), "the first probe waited: {:?}", gap(1, 2));
    assert!(gap(2, 3) >= Duration::from_millis(1900), "the second probe waited twice as long: {:?}", gap(2, 3));
    let state = first.data(HEALTH, json!({"id": flaky})).await;
    assert_eq!(state["webhook"]["health"]["state"], "CLOSED");
    drop((first, second));
    drop_database(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_failure_deactivates_the_webhook_and_its_rows_wait() {
    for (backend, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        receiver.script("/gone-quiet", vec![Reply::Status(500); 10_000]);
        let env = quick_env(
            dir.path(),
            &database,
            &[
                ("HOOKLINE_BREAKER_FAILURES", "2".into()),
                ("HOOKLINE_BREAKER_COOLDOWN", "300ms".into()),
                ("HOOKLINE_BREAKER_DISABLE_AFTER", "2s".into()),
            ],
        );
        let server = Server::start(dir.path(), &env);
        let id = server.create_webhook("quiet", json!({"url": receiver.url("/gone-quiet"), "sentTry": 255})).await;
        server.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "x"}})).await;
        let deadline = Instant::now() + WAIT;
        let off = loop {
            let webhook = server.data(HEALTH, json!({"id": id})).await["webhook"].clone();
            if webhook["isActive"] == false {
                break webhook;
            }
            assert!(Instant::now() < deadline, "{backend}: not deactivated: {webhook}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(off["health"]["state"], "OPEN", "{backend}: {off}");
        assert_eq!(off["health"]["nextProbeAt"], Value::Null, "{backend}: no probe while off");
        let history = server
            .data("query($id: ID!) { webhook(id: $id) { history { edges { node { action message oldValue newValue } } } } }", json!({"id": id}))
            .await;
        let entries = history["webhook"]["history"]["edges"].as_array().cloned().unwrap_or_default();
        let entry = entries
            .iter()
            .map(|e| &e["node"])
            .find(|n| n["action"] == "deactivate")
            .unwrap_or_else(|| panic!("{backend}: no deactivation entry: {entries:?}"));
        assert!(entry["message"].as_str().unwrap_or_default().contains("HOOKLINE_BREAKER_DISABLE_AFTER"), "{entry}");
        assert_eq!((entry["oldValue"].as_str(), entry["newValue"].as_str()), (Some("true"), Some("false")));
        // The row waits: not failed, not sent, not attempted while the webhook is off.
        let attempts = receiver.requests().len();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(receiver.requests().len(), attempts, "{backend}: no attempt while off");
        let rows = server.data(common::QUEUE_QUERY, json!({})).await;
        assert_eq!(rows["queuedWebhooks"]["edges"][0]["node"]["status"], "RETRYING", "{backend}: {rows}");
        // Turned on again with a working target: the probe goes at once, and closes it.
        receiver.script("/gone-quiet", Vec::new());
        let on = "mutation($id: ID!) { updateWebhook(id: $id, input: {isActive: true}) { isActive } }";
        server.data(on, json!({"id": id})).await;
        let rows = wait_all_sent(&server, 1).await;
        assert_eq!(rows.len(), 1);
        let state = server.data(HEALTH, json!({"id": id})).await;
        assert_eq!(state["webhook"]["health"]["state"], "CLOSED", "{backend}: {state}");
        drop(server);
        drop_database(&database).await;
    }
}

#[tokio::test]
async fn health_updates_reach_only_the_webhooks_a_viewer_sees() {
    let quick = |c: &mut hookline::config::Config| {
        c.delivery.breaker = BreakerConfig {
            failures: 1,
            cooldown: Duration::from_secs(3600),
            disable_after: Duration::from_secs(86_400),
        };
    };
    each_backend_with(quick, async |app| {
        let receiver = Receiver::start().await;
        receiver.script("/root", vec![Reply::Status(500)]);
        receiver.script("/europe", vec![Reply::Status(500)]);
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await
            ["createEntity"]["id"]
            .clone();
        let root = webhook(app, &receiver, "/root", json!({})).await;
        let mine = webhook(app, &receiver, "/europe", json!({"entityId": europe, "isRecursive": true})).await;
        let (token, _) = app
            .issue_token(
                json!({"user": "eu-viewer", "profile": "viewer", "entities": [{"id": europe, "recursive": true}]}),
            )
            .await;
        let mut socket = ws::connect(app.addr, &token).await;
        let subscription =
            "subscription($id: ID) { webhookHealthUpdates(webhookId: $id) { webhookId state consecutiveFailures } }";
        // A webhook outside the token's entities does not exist for it.
        ws::subscribe(&mut socket, "other", subscription, json!({"id": root})).await;
        let refused = ws::next(&mut socket).await;
        assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND", "{refused}");
        assert_eq!(ws::next(&mut socket).await["type"], "complete");
        ws::subscribe(&mut socket, "all", subscription, json!({})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "root"}})).await;
        wait_health(app, &root, |w| w["health"]["state"] == "OPEN").await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": europe, "name": "eu"}})).await;
        wait_health(app, &mine, |w| w["health"]["state"] == "OPEN").await;
        let message = ws::next(&mut socket).await;
        assert_eq!(message["id"], "all");
        assert_eq!(
            message["payload"]["data"]["webhookHealthUpdates"],
            json!({"webhookId": mine, "state": "OPEN", "consecutiveFailures": 1})
        );
        // The root webhook's change, which came first, was never sent to this viewer.
        assert!(ws::within(&mut socket, Duration::from_millis(500)).await.is_none(), "{:?}", app.backend);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_cut_off_by_a_killed_process_is_sent_again_by_its_successor() {
    for (backend, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        // One failure opens the breaker; the probe then hangs until its process is killed.
        receiver.script("/cut", vec![Reply::Status(500), Reply::Hang(Duration::from_secs(120))]);
        let env = quick_env(
            dir.path(),
            &database,
            &[
                ("HOOKLINE_BREAKER_FAILURES", "1".into()),
                ("HOOKLINE_BREAKER_COOLDOWN", "500ms".into()),
                // A lease of minutes: only the release of the dead process's rows ends the probe.
                ("HOOKLINE_HTTP_TIMEOUT", "60s".into()),
                ("HOOKLINE_HEARTBEAT_INTERVAL", "500ms".into()),
                ("HOOKLINE_HEARTBEAT_TIMEOUT", "2s".into()),
            ],
        );
        let mut doomed = Server::start(dir.path(), &env);
        let id = doomed.create_webhook("cut", json!({"url": receiver.url("/cut"), "sentTry": 10})).await;
        doomed.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "x"}})).await;
        receiver.wait_for(2, WAIT).await;
        let probing = doomed.data(HEALTH, json!({"id": id})).await;
        assert_eq!(probing["webhook"]["health"]["state"], "HALF_OPEN", "{backend}: {probing}");
        doomed.kill9();

        let successor = Server::start(dir.path(), &env);
        let rows = wait_all_sent(&successor, 1).await;
        assert_eq!(rows.len(), 1);
        let requests = receiver.requests_to("/cut");
        assert_eq!(requests.len(), 3, "{backend}: a failure, the cut probe, the probe again");
        let state = successor.data(HEALTH, json!({"id": id})).await;
        assert_eq!(state["webhook"]["health"]["state"], "CLOSED", "{backend}: {state}");
        drop(successor);
        drop_database(&database).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_webhooks_resume_when_their_window_frees_not_at_the_next_poll() {
    for (backend, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        receiver.script("/flaky", vec![Reply::Status(500)]);
        // A poll a minute: only the workers' own timers can send these within the test's wait.
        let env = quick_env(
            dir.path(),
            &database,
            &[
                ("HOOKLINE_POLL_INTERVAL", "60s".into()),
                ("HOOKLINE_BREAKER_FAILURES", "1".into()),
                ("HOOKLINE_BREAKER_COOLDOWN", "1s".into()),
                ("HOOKLINE_RETRY_SCHEDULE", "100ms".into()),
            ],
        );
        let server = Server::start(dir.path(), &env);
        server.create_webhook("paced", json!({"url": receiver.url("/paced"), "maxPerSecond": 2})).await;
        let items: Vec<Value> =
            (0..6).map(|i| json!({"itemtype": "Ticket", "entityId": "0", "name": format!("t{i}")})).collect();
        server.data("mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }", json!({"i": items})).await;
        let rows = wait_all_sent(&server, 6).await;
        assert_eq!(receiver.requests_to("/paced").len(), 6, "{backend}: {rows:?}");
        assert_within_rate(&receiver.requests_to("/paced"), 2);

        // The breaker's cooldown ends on the same timer: the probe goes without a poll.
        server.create_webhook("flaky", json!({"url": receiver.url("/flaky"), "event": "UPDATE", "sentTry": 5})).await;
        let update = "mutation { updateItem(itemtype: \"Ticket\", id: \"1\", input: {name: \"u\"}) { id } }";
        server.data(update, json!({})).await;
        wait_all_sent(&server, 7).await;
        assert_eq!(receiver.requests_to("/flaky").len(), 2, "{backend}: a failure, then the probe");
        drop(server);
        drop_database(&database).await;
    }
}

/// A webhook the breaker turned off and that is turned on again probes at once: the workers
/// are woken, they do not wait for their next poll (here ten minutes away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactivated_webhook_probes_at_once_not_at_the_next_poll() {
    for (backend, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        receiver.script("/off", vec![Reply::Status(500); 10_000]);
        let env = quick_env(
            dir.path(),
            &database,
            &[
                ("HOOKLINE_POLL_INTERVAL", "600s".into()),
                ("HOOKLINE_BREAKER_FAILURES", "2".into()),
                ("HOOKLINE_BREAKER_COOLDOWN", "300ms".into()),
                ("HOOKLINE_BREAKER_DISABLE_AFTER", "2s".into()),
            ],
        );
        let server = Server::start(dir.path(), &env);
        let id = server.create_webhook("off", json!({"url": receiver.url("/off"), "sentTry": 255})).await;
        // Two rows: two failures open the breaker, and its probes fail until it turns the
        // webhook off (each wakes the workers when it is due, not at a poll).
        for name in ["x", "y"] {
            server.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name}})).await;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let webhook = server.data(HEALTH, json!({"id": id})).await["webhook"].clone();
            if webhook["isActive"] == false {
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: not deactivated: {webhook}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        receiver.script("/off", Vec::new());
        let on = "mutation($id: ID!) { updateWebhook(id: $id, input: {isActive: true}) { isActive } }";
        server.data(on, json!({"id": id})).await;
        // The probe succeeds and closes the breaker: within WAIT (30 s), far shorter than the
        // poll interval. (The other row's retry is due later; only a poll would take it here.)
        let deadline = Instant::now() + WAIT;
        loop {
            let webhook = server.data(HEALTH, json!({"id": id})).await["webhook"].clone();
            if webhook["health"]["state"] == "CLOSED" {
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: the probe did not go: {webhook}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rows = server.data(common::QUEUE_QUERY, json!({})).await;
        assert!(rows.to_string().contains("\"SENT\""), "{backend}: the probe is sent: {rows}");
        drop(server);
        drop_database(&database).await;
    }
}

/// A claim never waits for a health row another transaction holds (PostgreSQL: SQLite has one
/// writer): the rows of that webhook go back untouched, the others are sent.
#[tokio::test]
async fn a_claim_passes_over_webhooks_whose_health_another_transaction_holds() {
    each_backend(async |app| {
        if app.backend != common::Backend::Postgres {
            return;
        }
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let receiver = Receiver::start().await;
        let held = webhook(app, &receiver, "/held", json!({"maxPerSecond": 100})).await;
        webhook(app, &receiver, "/free", json!({"maxPerSecond": 100})).await;
        ticket(app, "a").await;
        receiver.wait_for_path("/held", 1, WAIT).await;
        receiver.wait_for_path("/free", 1, WAIT).await;
        let txn = app.state.db.begin().await.expect("begin");
        let lock = format!("SELECT webhook_id FROM webhook_health WHERE webhook_id = {held} FOR UPDATE");
        assert_eq!(
            txn.query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, lock))
                .await
                .expect("lock")
                .len(),
            1
        );
        ticket(app, "b").await;
        receiver.wait_for_path("/free", 2, WAIT).await;
        assert_eq!(receiver.requests_to("/held").len(), 1, "the held webhook's row waits");
        txn.rollback().await.expect("rollback");
        receiver.wait_for_path("/held", 2, WAIT).await;
    })
    .await;
}
