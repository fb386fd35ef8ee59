//! `GET /metrics`: the counters of a real run equal what the receiver got (the real binary,
//! scraped while its deliveries flow and once they settled), the text passes `promtool check
//! metrics`, the scrape token, the per-webhook label, and the series counted around GraphQL:
//! subscriptions, token requests, challenges, routes.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    TestApp,
    binary::{Server, databases, drop_database},
    each_backend, each_backend_with,
    receiver::{Receiver, Reply},
    ws,
};
use serde_json::{Value, json};

const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
const SCRAPE_TOKEN: &str = "scrape-token-5b1f0c";

/// One sample of a scrape: its name and labels.
type Series = (String, BTreeMap<String, String>);

/// Every sample of a Prometheus text.
fn samples(text: &str) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}")))),
            None => (series, BTreeMap::new()),
        };
        out.push(((name.to_owned(), labels), value));
    }
    out
}

/// `k="v",k2="v2"` (values with `\"` and `\\` escapes).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("labels: {text}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("labels: {text}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of the sample with exactly these labels.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    samples(text).into_iter().find(|((n, l), _)| n == name && *l == wanted).map(|(_, v)| v)
}

/// The value that must be there.
fn must(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
}

/// The sum of the samples of `name` whose labels include these.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
        .sum()
}

/// `promtool check metrics` (Debian's `prometheus` package) accepts the text.
fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        panic!(
            "promtool is not installed: this test checks the scraped text with `promtool check metrics`; install \
             Debian's `prometheus` package (`apt-get install prometheus`, as .ci/run does)"
        );
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("text written to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics refused the text:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn scrape_at(addr: std::net::SocketAddr, token: Option<&str>) -> reqwest::Response {
    hookline::crypto::install();
    let mut request = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("scrape sent")
}

/// The text of a scrape that must succeed.
async fn scrape(addr: std::net::SocketAddr, token: Option<&str>) -> String {
    let response = scrape_at(addr, token).await;
    assert_eq!(response.status(), 200);
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.text().await.expect("a text")
}

/// The test's webhooks: each name, its URL, its number of retries. Each item `n` has its own
/// path under `/flaky/` and `/gone/`, so that what each row gets does not hang on the order
/// of the requests.
fn webhooks(receiver: &Receiver) -> Vec<(&'static str, String, Option<u32>)> {
    vec![
        // Always 200.
        ("ok", receiver.url("/ok"), None),
        // The first FLAKY_500 items' first request answers 500, then 200 (3 retries allowed).
        ("flaky", receiver.url("/flaky/{{ item.n }}"), None),
        // The first GONE_404 items' request answers 404; no retry.
        ("gone", receiver.url("/gone/{{ item.n }}"), Some(0)),
        // Nothing listens there; no retry.
        ("closed", "http://127.0.0.1:1/closed".into(), Some(0)),
        // The item's name puts a user and password in the URL: refused before sending.
        ("creds", "http://{{ item.name | raw }}/creds".into(), Some(0)),
    ]
}

const EVENTS: usize = 5;
const FLAKY_500: usize = 4;
const GONE_404: usize = 2;

// The receiver runs in this process: a multi-threaded runtime keeps it answering while the
// test waits on the server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_equal_what_the_receiver_got() {
    for (backend, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        for n in 0..FLAKY_500 {
            receiver.script(&format!("/flaky/{n}"), vec![Reply::Status(500)]);
        }
        for n in 0..GONE_404 {
            receiver.script(&format!("/gone/{n}"), vec![Reply::Status(404)]);
        }
        let mut env = vec![
            ("HOOKLINE_DATA_DIR", dir.path().join("data").display().to_string()),
            ("HOOKLINE_RETRY_SCHEDULE", "100ms".into()),
            ("HOOKLINE_RETRY_JITTER", "0".into()),
            ("HOOKLINE_POLL_INTERVAL", "50ms".into()),
            ("HOOKLINE_HTTP_TIMEOUT", "2s".into()),
            ("HOOKLINE_METRICS_TOKEN", SCRAPE_TOKEN.into()),
        ];
        env.extend(database.iter().cloned());
        let server = Server::start(dir.path(), &env);
        // Every GraphQL request of the test: (queries, failed queries, mutations).
        let (mut queries, mut failed_queries, mut mutations) = (0, 0, 0);

        let hooks = webhooks(&receiver);
        for (name, url, retries) in &hooks {
            let mut input = json!({"name": name, "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url});
            if let Some(retries) = retries {
                input["sentTry"] = json!(retries);
            }
            server.data(CREATE_WEBHOOK, json!({"input": input})).await;
            mutations += 1;
        }
        for n in 0..EVENTS {
            let name = format!("intruder:hunter2@{}", receiver.addr);
            let input = json!({"itemtype": "Ticket", "entityId": "0", "name": name, "fields": {"n": n}});
            server.data(CREATE_ITEM, json!({"input": input})).await;
            mutations += 1;
        }
        let refused = server.query("{ nope }", json!({})).await;
        assert!(refused["errors"].is_array(), "{refused}");
        failed_queries += 1;

        // While the deliveries flow: the scrape needs the token, and its text is valid.
        assert_eq!(scrape_at(server.addr, None).await.status(), 401, "{backend}: no token");
        assert_eq!(scrape_at(server.addr, Some("not-the-token")).await.status(), 401, "{backend}: a wrong token");
        let flowing = scrape(server.addr, Some(SCRAPE_TOKEN)).await;
        promtool_check(&flowing);

        // Until every row is SENT or FAILED.
        let (sent_rows, failed_rows) = (3 * EVENTS - GONE_404, GONE_404 + 2 * EVENTS);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = server.data("{ queueStats { pending sending retrying sent failed } }", json!({})).await;
            queries += 1;
            let stats = &stats["queueStats"];
            if stats["sent"] == sent_rows && stats["failed"] == failed_rows {
                assert_eq!([&stats["pending"], &stats["sending"], &stats["retrying"]], [0, 0, 0], "{backend}");
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: the deliveries did not settle: {stats}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = scrape(server.addr, Some(SCRAPE_TOKEN)).await;
        promtool_check(&text);

        // What the receiver got.
        let got = |prefix: &str| receiver.requests().iter().filter(|r| r.path.starts_with(prefix)).count();
        assert_eq!(got("/ok"), EVENTS, "{backend}");
        assert_eq!(got("/flaky/"), EVENTS + FLAKY_500, "{backend}: each 500 retried once");
        assert_eq!(got("/gone/"), EVENTS, "{backend}");
        assert_eq!(receiver.requests().len(), got("/ok") + got("/flaky/") + got("/gone/"), "{backend}");
        let answered_2xx = got("/ok") + (got("/flaky/") - FLAKY_500) + (got("/gone/") - GONE_404);

        let attempts = |outcome: &str, class: &str| {
            must(&text, "hookline_attempts_total", &[("outcome", outcome), ("class", class)])
        };
        assert_eq!(attempts("sent", "2xx"), answered_2xx as f64, "{backend}");
        assert_eq!(attempts("retry", "5xx"), FLAKY_500 as f64, "{backend}");
        assert_eq!(attempts("failed", "4xx"), GONE_404 as f64, "{backend}");
        assert_eq!(attempts("failed", "connect"), EVENTS as f64, "{backend}");
        assert_eq!(attempts("failed", "refused"), EVENTS as f64, "{backend}");
        let all_attempts = receiver.requests().len() + 2 * EVENTS;
        assert_eq!(sum(&text, "hookline_attempts_total", &[]), all_attempts as f64, "{backend}: no other attempt");

        let durations = |class: &str| must(&text, "hookline_attempt_duration_seconds_count", &[("class", class)]);
        assert_eq!(durations("2xx"), answered_2xx as f64, "{backend}");
        assert_eq!(durations("5xx"), FLAKY_500 as f64, "{backend}");
        assert_eq!(durations("4xx"), GONE_404 as f64, "{backend}");
        assert_eq!(durations("connect") + durations("refused"), (2 * EVENTS) as f64, "{backend}");
        assert_eq!(sum(&text, "hookline_attempt_duration_seconds_count", &[]), all_attempts as f64);
        assert_eq!(
            must(&text, "hookline_attempt_duration_seconds_bucket", &[("class", "2xx"), ("le", "+Inf")]),
            answered_2xx as f64,
            "{backend}: the histogram's last bucket holds every attempt"
        );
        assert_eq!(must(&text, "hookline_delivery_latency_seconds_count", &[]), answered_2xx as f64, "{backend}");
        assert!(must(&text, "hookline_delivery_latency_seconds_sum", &[]) > 0.0);

        let events = must(&text, "hookline_events_total", &[("itemtype", "Ticket"), ("event", "new")]);
        assert_eq!(events, EVENTS as f64, "{backend}");
        assert_eq!(must(&text, "hookline_queued_total", &[]), (EVENTS * hooks.len()) as f64, "{backend}");
        let rows = |status: &str| must(&text, "hookline_queue_rows", &[("status", status)]);
        assert_eq!((rows("sent"), rows("failed")), (sent_rows as f64, failed_rows as f64), "{backend}");
        for status in ["pending", "sending", "retrying", "cancelled"] {
            assert_eq!(rows(status), 0.0, "{backend}: {status}");
        }
        assert_eq!(must(&text, "hookline_queue_oldest_due_age_seconds", &[]), 0.0, "{backend}");
        // The writer's transactions: each item write, claim and batch of outcomes ran in one, and
        // each one is counted with its jobs and its duration.
        let transactions = must(&text, "hookline_write_jobs_count", &[]);
        let jobs = must(&text, "hookline_write_jobs_sum", &[]);
        assert!(
            jobs >= (EVENTS + 2) as f64 && jobs >= transactions,
            "{backend}: {jobs} jobs, {transactions} transactions"
        );
        assert_eq!(must(&text, "hookline_write_duration_seconds_count", &[]), transactions, "{backend}");
        assert!(must(&text, "hookline_write_duration_seconds_sum", &[]) > 0.0, "{backend}");
        for idle in ["hookline_sends_in_flight", "hookline_sends_waiting_for_host", "hookline_subscribers"] {
            assert_eq!(must(&text, idle, &[]), 0.0, "{backend}: {idle}");
        }

        let operations = |ty: &str, outcome: &str| {
            must(&text, "hookline_graphql_operations_total", &[("type", ty), ("outcome", outcome)])
        };
        assert_eq!(operations("mutation", "ok"), f64::from(mutations), "{backend}");
        assert_eq!(operations("query", "ok"), f64::from(queries), "{backend}");
        assert_eq!(operations("query", "error"), f64::from(failed_queries), "{backend}");
        assert_eq!(operations("mutation", "error") + operations("subscription", "ok"), 0.0, "{backend}");
        let graphql_requests = sum(&text, "hookline_http_requests_total", &[("route", "/graphql")]);
        assert_eq!(graphql_requests, f64::from(queries + failed_queries + mutations), "{backend}");
        assert_eq!(must(&text, "hookline_http_requests_total", &[("route", "/metrics"), ("status", "401")]), 2.0);
        // The scrape in flight is counted once answered: the one before it.
        assert_eq!(must(&text, "hookline_http_requests_total", &[("route", "/metrics"), ("status", "200")]), 1.0);

        assert!(must(&text, "process_resident_memory_bytes", &[]) > 0.0, "{backend}");
        assert!(must(&text, "process_open_fds", &[]) > 0.0, "{backend}");
        assert!(value(&text, "process_cpu_seconds_total", &[]).is_some(), "{backend}");
        assert!(!text.contains("webhook_id"), "{backend}: no per-webhook label unless asked");
        drop(server);
        drop_database(&database).await;
    }
}

/// A webhook to `/hook` of the receiver, and one event for it; waits until it is SENT.
async fn one_delivery(app: &TestApp, receiver: &Receiver) -> String {
    let input = json!({"input": {"name": "w", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/hook")}});
    let id = app.data(CREATE_WEBHOOK, input).await["createWebhook"]["id"].as_str().unwrap_or_default().to_owned();
    app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "t"}})).await;
    app.wait_queue(1, &["SENT"]).await;
    id
}

#[tokio::test]
async fn the_attempt_and_latency_series_carry_webhook_id_only_when_asked() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        one_delivery(app, &receiver).await;
        let text = scrape(app.addr, None).await;
        assert_eq!(must(&text, "hookline_attempts_total", &[("outcome", "sent"), ("class", "2xx")]), 1.0);
        assert_eq!(must(&text, "hookline_delivery_latency_seconds_count", &[]), 1.0);
        assert!(!text.contains("webhook_id"), "{text}");
    })
    .await;
    each_backend_with(
        |config| config.metrics.per_webhook = true,
        async |app| {
            let receiver = Receiver::start().await;
            let id = one_delivery(app, &receiver).await;
            let text = scrape(app.addr, None).await;
            promtool_check(&text);
            let webhook = ("webhook_id", id.as_str());
            let sent = [webhook, ("outcome", "sent"), ("class", "2xx")];
            assert_eq!(must(&text, "hookline_attempts_total", &sent), 1.0);
            assert_eq!(must(&text, "hookline_attempt_duration_seconds_count", &[webhook, ("class", "2xx")]), 1.0);
            assert_eq!(must(&text, "hookline_delivery_latency_seconds_count", &[webhook]), 1.0);
            assert_eq!(value(&text, "hookline_attempts_total", &[("outcome", "sent"), ("class", "2xx")]), None);
            // Only those series carry it.
            for ((name, labels), _) in samples(&text) {
                let labelled = name.starts_with("hookline_attempt") || name.starts_with("hookline_delivery_latency");
                assert_eq!(labels.contains_key("webhook_id"), labelled, "{name} {labels:?}");
            }
            assert_eq!(must(&text, "hookline_events_total", &[("itemtype", "Ticket"), ("event", "new")]), 1.0);
            assert_eq!(must(&text, "hookline_queued_total", &[]), 1.0);
        },
    )
    .await;
}

#[tokio::test]
async fn with_a_token_a_scrape_without_it_is_refused() {
    each_backend_with(
        |config| config.metrics.token = Some(SCRAPE_TOKEN.to_owned().into()),
        async |app| {
            assert_eq!(scrape_at(app.addr, None).await.status(), 401);
            assert_eq!(scrape_at(app.addr, Some("scrape-token-5b1f0")).await.status(), 401, "a prefix");
            assert_eq!(scrape_at(app.addr, Some(&app.token)).await.status(), 401, "an API token is not it");
            let text = scrape(app.addr, Some(SCRAPE_TOKEN)).await;
            assert!(text.contains("hookline_queue_rows"), "{text}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_token_requests_challenges_and_routes_are_counted() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        // A live subscription: the gauge, its messages, the operation.
        let webhook = one_delivery(app, &receiver).await;
        let mut socket = ws::connect(app.addr, &app.token).await;
        let updates = "subscription($w: ID) { queueUpdates(webhookId: $w) { queuedWebhook { status } } }";
        ws::subscribe(&mut socket, "u", updates, json!({"w": webhook})).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while value(&scrape(app.addr, None).await, "hookline_subscribers", &[]) != Some(1.0) {
            assert!(Instant::now() < deadline, "the subscription did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "t2"}})).await;
        let mut received = 0;
        loop {
            let message = ws::next(&mut socket).await;
            assert_eq!(message["type"], "next", "{message}");
            received += 1;
            if message["payload"]["data"]["queueUpdates"]["queuedWebhook"]["status"] == "SENT" {
                break;
            }
        }
        let text = scrape(app.addr, None).await;
        assert_eq!(must(&text, "hookline_subscribers", &[]), 1.0);
        assert_eq!(must(&text, "hookline_subscription_messages_total", &[("result", "sent")]), f64::from(received));
        assert_eq!(must(&text, "hookline_subscription_messages_total", &[("result", "missed")]), 0.0);
        let subscriptions = &[("type", "subscription"), ("outcome", "ok")];
        assert_eq!(must(&text, "hookline_graphql_operations_total", subscriptions), 1.0);

        // OAuth: a token endpoint that answers, one that fails; a challenge that fails.
        let token = r#"{"access_token": "t-1", "expires_in": 3600}"#.to_owned();
        receiver.script("/token", vec![Reply::Full(200, vec![("content-type", "application/json".into())], token)]);
        receiver.script("/bad-token", vec![Reply::Status(500)]);
        for (name, token_url) in [("oauth", "/token"), ("oauth-failing", "/bad-token")] {
            let input = json!({"name": name, "entityId": "0", "itemtype": "Computer", "event": "NEW", "sentTry": 0,
                "url": receiver.url("/hook"), "useOauth": true, "oauthUrl": receiver.url(token_url),
                "clientId": "c", "clientSecret": "s"});
            app.data(CREATE_WEBHOOK, json!({"input": input})).await;
        }
        let input = json!({"name": "cra", "entityId": "0", "itemtype": "Printer", "event": "NEW",
            "url": receiver.url("/cra"), "useCraChallenge": true, "secret": "a-secret"});
        let cra = app.data(CREATE_WEBHOOK, json!({"input": input})).await["createWebhook"]["id"].clone();
        let validate = "mutation($id: ID!) { validateCraChallenge(webhookId: $id) { valid } }";
        assert_eq!(app.data(validate, json!({"id": cra})).await["validateCraChallenge"]["valid"], false);
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Computer", "entityId": "0", "name": "c"}})).await;
        app.wait_queue(4, &["SENT", "FAILED"]).await;
        let text = scrape(app.addr, None).await;
        assert_eq!(must(&text, "hookline_oauth_token_requests_total", &[("result", "ok")]), 1.0);
        assert_eq!(must(&text, "hookline_oauth_token_requests_total", &[("result", "error")]), 1.0);
        assert_eq!(must(&text, "hookline_cra_challenges_total", &[("result", "ok")]), 0.0);
        assert_eq!(must(&text, "hookline_cra_challenges_total", &[("result", "error")]), 1.0);
        let attempts = |outcome: &str, class: &str| {
            must(&text, "hookline_attempts_total", &[("outcome", outcome), ("class", class)])
        };
        assert_eq!(attempts("sent", "2xx"), 3.0, "two tickets' deliveries and the token's");
        assert_eq!(attempts("failed", "connect"), 1.0, "no token, no request");

        // Routes by template; a path no route matches has one label value.
        assert_eq!(app.get("/assets/no-such-file.js").await.status(), 404);
        for path in ["/nowhere", "/also/nowhere"] {
            assert_eq!(app.get(path).await.status(), 404);
        }
        let text = scrape(app.addr, None).await;
        let assets = [("route", "/assets/{*path}"), ("status", "404")];
        assert_eq!(must(&text, "hookline_http_requests_total", &assets), 1.0, "{text}");
        let unmatched = [("route", "unmatched"), ("status", "404")];
        assert_eq!(must(&text, "hookline_http_requests_total", &unmatched), 2.0);
        assert!(!text.contains("nowhere"), "paths are not labels");
        promtool_check(&text);
    })
    .await;
}

/// The series names (`hookline_…`, `process_…`) an expression or a text mentions.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["hookline_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let preceded = text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            if !preceded {
                names.insert(name);
            }
        }
    }
    names
}

#[tokio::test]
async fn the_dashboard_and_the_readme_name_the_series_hookline_exports() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        one_delivery(app, &receiver).await;
        let text = scrape(app.addr, None).await;
        let exported: BTreeSet<String> = samples(&text).into_iter().map(|((name, _), _)| name).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dashboard = std::fs::read_to_string(root.join("ops/grafana/hookline.json")).expect("the dashboard");
        let dashboard: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
        let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
        let exprs: Vec<&str> = panels
            .iter()
            .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
            .filter_map(|target| target["expr"].as_str())
            .collect();
        assert!(exprs.len() >= 20, "{exprs:?}");
        for expr in &exprs {
            for name in series_names(expr) {
                assert!(exported.contains(&name), "the dashboard asks for `{name}`, which is not exported: {expr}");
            }
        }
        let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
        for name in exported.iter().filter(|name| name.starts_with("hookline_")) {
            let base = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(readme.contains(&format!("`{base}`")), "the README's table lacks `{base}`");
        }
    })
    .await;
}

#[test]
fn the_sample_parser_reads_labels_with_escapes() {
    let text = "# HELP x y\nx{a=\"1\",b=\"q\\\"uote\"} 2\ny 3.5\n";
    assert_eq!(value(text, "x", &[("a", "1"), ("b", "q\"uote")]), Some(2.0));
    assert_eq!(value(text, "y", &[]), Some(3.5));
    assert_eq!(value(text, "x", &[("a", "1")]), None);
}
