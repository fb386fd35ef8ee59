//! Logs of the real binary: `HOOKLINE_LOG_FORMAT=json` writes one JSON object per line, bad
//! logging settings stop the start, and no secret reaches any log line, `trace` included.

mod common;

use std::{collections::HashMap, time::Duration};

use axum::{
    Router,
    extract::Query,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use common::{
    binary::{Server, databases, drop_database, quick_env},
    receiver::Receiver,
    ws,
};
use serde_json::{Value, json};

const CREATE_TICKET: &str = "mutation CreateTicket($input: ItemInput!) { createItem(input: $input) { id } }";

/// Waits until the receiver got `count` requests to `path`.
async fn requests_to(receiver: &Receiver, path: &str, count: usize) -> Vec<common::receiver::Recorded> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let requests = receiver.requests_to(path);
        if requests.len() >= count {
            return requests;
        }
        assert!(std::time::Instant::now() < deadline, "{count} requests to {path} expected, got {requests:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A line of the JSON log: its keys, checked.
fn json_line(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let level = value["level"].as_str().unwrap_or_else(|| panic!("no level: {line}"));
    assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level), "{line}");
    assert!(value["timestamp"].is_string() && value["target"].is_string(), "{line}");
    assert!(value["fields"].is_object(), "{line}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_level_target_fields_and_spans() {
    for (name, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        let json_logs = [("HOOKLINE_LOG_FORMAT", "json".to_owned()), ("HOOKLINE_LOG", "debug".to_owned())];
        let (mut server, log) = Server::start_logged(dir.path(), &quick_env(dir.path(), &database, &json_logs));
        server.create_webhook("logged", json!({"url": receiver.url("/hook")})).await;
        let input = json!({"itemtype": "Ticket", "entityId": "0"});
        server.data(CREATE_TICKET, json!({"input": input})).await;
        let delivery = requests_to(&receiver, "/hook", 1).await;
        assert!(server.terminate(), "{}", name);
        let lines: Vec<Value> = log.all().iter().map(|line| json_line(line)).collect();

        let message =
            |line: &Value, start: &str| line["fields"]["message"].as_str().is_some_and(|m| m.starts_with(start));
        let listening = lines.iter().find(|l| message(l, "hookline listening")).expect("the listening line");
        assert_eq!(listening["fields"]["addr"], server.addr.to_string());
        assert_eq!(listening["level"], "INFO");
        // The attempt's line carries its span and the spans around it.
        let attempt = lines.iter().find(|l| message(l, "attempt made")).expect("an attempt's line");
        assert_eq!(attempt["span"]["name"], "attempt", "{attempt}");
        assert_eq!(attempt["span"]["delivery_id"], delivery[0].header("x-hookline-delivery").expect("id"));
        assert_eq!(attempt["fields"]["outcome"], "sent");
        assert!(attempt["spans"].is_array(), "{attempt}");
        // A line logged inside an event's span lists the operation around it.
        let event = lines.iter().find(|l| l["span"]["name"] == "event").expect("a line in an event's span");
        let around: Vec<&str> =
            event["spans"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(around, ["graphql", "event"], "{event}");
        assert_eq!(event["spans"][0]["graphql.operation.name"], "CreateTicket", "{event}");
        drop_database(&database).await;
    }
}

#[test]
fn an_unknown_log_format_or_a_bad_collector_url_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, value, expected) in [
        ("HOOKLINE_LOG_FORMAT", "xml", "`text` or `json`"),
        ("HOOKLINE_OTLP_ENDPOINT", "collector:4318", "http"),
        ("HOOKLINE_OTLP_ENDPOINT", "http://user:pw-in-url@127.0.0.1:4318", "user or password"),
    ] {
        let output = common::binary::command(dir.path())
            .arg("serve")
            .env("HOOKLINE_LISTEN", "127.0.0.1:0")
            .env(key, value)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key) && stderr.contains(expected), "{key}={value}: {stderr}");
        assert!(!stderr.contains("pw-in-url"), "{stderr}");
    }
}

// The secrets of the full scenario: each must stay out of every log line.
const WEBHOOK_SECRET: &str = "glpi-secret-Xq81vT";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CLIENT_SECRET: &str = "oauth-client-secret-Pz93kd";
const ACCESS_TOKEN: &str = "access-token-Mv72hQ";
const API_KEY: &str = "api-key-value-Lw55cN";
const BASIC_PASSWORD: &str = "basic-password-Tr66jB";
const OTLP_TOKEN: &str = "otlp-header-token-Kd24sW";
const METRICS_TOKEN: &str = "metrics-token-Hy38pZ";

/// A target that answers challenges (HMAC of the token with [`WEBHOOK_SECRET`]), issues OAuth
/// tokens and takes deliveries.
async fn start_target() -> String {
    async fn challenge(Query(query): Query<HashMap<String, String>>) -> Response {
        use hmac::{Hmac, KeyInit, Mac};
        let token = query.get("crc_token").cloned().unwrap_or_default();
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("a key");
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>().into_response()
    }
    async fn token(body: String) -> Response {
        assert!(body.contains(CLIENT_SECRET), "{body}");
        axum::Json(json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600})).into_response()
    }
    let app = Router::new()
        .route("/hook", get(challenge).post(|| async { StatusCode::OK }))
        .route("/basic", post(|| async { StatusCode::OK }))
        .route("/token", post(token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    base
}

/// The lines that contain `secret`.
fn leaks<'a>(log: &'a [String], secret: &str) -> Vec<&'a String> {
    log.iter().filter(|line| line.contains(secret)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_trace_level() {
    for (name, database) in databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = start_target().await;
        let collector = Receiver::start().await;
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, common::rand_key());
        let mut extra = vec![
            ("HOOKLINE_LOG", "trace".to_owned()),
            ("HOOKLINE_OTLP_ENDPOINT", collector.url("")),
            ("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{OTLP_TOKEN}")),
            ("HOOKLINE_METRICS_TOKEN", METRICS_TOKEN.to_owned()),
        ];
        if name == "sqlite" {
            extra.push(("HOOKLINE_SECRET_KEY", key.clone()));
        }
        let (mut server, log) = Server::start_logged(dir.path(), &quick_env(dir.path(), &database, &extra));
        let server_key = database.iter().chain(&extra).find(|(k, _)| *k == "HOOKLINE_SECRET_KEY").expect("key");
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("user:{BASIC_PASSWORD}"));

        // A webhook with a secret, CRA, OAuth and a credential header; one with Basic auth and
        // a Standard Webhooks secret.
        let secured = server
            .create_webhook(
                "logged",
                json!({"url": format!("{base}/hook"), "secret": WEBHOOK_SECRET, "useCraChallenge": true,
                   "useOauth": true, "oauthUrl": format!("{base}/token"), "clientId": "hookline",
                   "clientSecret": CLIENT_SECRET, "customHeaders": {"X-Api-Key": API_KEY}}),
            )
            .await;
        server
            .create_webhook(
                "logged",
                json!({"url": format!("{base}/basic"), "secret": WHSEC, "signatureScheme": "STANDARD_WEBHOOKS",
                   "customHeaders": {"Authorization": format!("Basic {basic}")}}),
            )
            .await;
        let validated = server
            .data("mutation($id: ID!) { validateCraChallenge(webhookId: $id) { valid } }", json!({"id": secured}))
            .await;
        assert_eq!(validated["validateCraChallenge"]["valid"], true);
        // API tokens: the admin's, one issued now, used over HTTP and WebSocket.
        let issued = server
            .data("mutation { createApiToken(input: {user: \"ops\", profile: \"super-admin\"}) { token } }", json!({}))
            .await;
        let issued = issued["createApiToken"]["token"].as_str().expect("token").to_owned();
        let mut socket = ws::connect(server.addr, &issued).await;
        ws::subscribe(&mut socket, "1", "subscription { queueUpdates { queuedWebhook { id status } } }", json!({}))
            .await;
        // The subscription is live once a `queueStats` asked after it answers.
        ws::subscribe(&mut socket, "2", "{ queueStats { sent } }", json!({})).await;
        while ws::next(&mut socket).await["id"] != "2" {}
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": "secret scenario"});
        server.data(CREATE_TICKET, json!({"input": input})).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let data = server.data("{ queueStats { sent } }", json!({})).await;
            if data["queueStats"]["sent"] == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "both deliveries sent ({}): {data}", name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let regenerated =
            server.data("mutation($id: ID!) { regenerateWebhookSecret(id: $id) }", json!({"id": secured})).await;
        let regenerated = regenerated["regenerateWebhookSecret"].as_str().expect("secret").to_owned();
        let scrape = reqwest::Client::new()
            .get(format!("http://{}/metrics", server.addr))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("scraped");
        assert_eq!(scrape.status(), 200, "{name}");
        drop(socket);
        assert!(server.terminate(), "{}", name);
        let lines = log.all();
        assert!(lines.len() > 100, "trace level logs a lot: {} lines", lines.len());
        assert!(lines.iter().any(|l| l.contains("TRACE")), "trace lines are there");
        let attempts = lines.iter().filter(|l| l.contains("attempt made") && l.contains("outcome=\"sent\"")).count();
        assert!(attempts >= 2, "both deliveries were logged with their spans ({})", name);
        assert!(!collector.requests_to("/v1/traces").is_empty(), "spans were exported");

        let signature = |token: &str| token.rsplit('.').next().unwrap_or_default().to_owned();
        let secrets = [
            ("webhook secret", WEBHOOK_SECRET.to_owned()),
            ("Standard Webhooks secret", WHSEC.to_owned()),
            ("regenerated secret", regenerated),
            ("OAuth client secret", CLIENT_SECRET.to_owned()),
            ("OAuth access token", ACCESS_TOKEN.to_owned()),
            ("credential header", API_KEY.to_owned()),
            ("Basic auth header", basic.clone()),
            ("Basic auth password", BASIC_PASSWORD.to_owned()),
            ("collector header", OTLP_TOKEN.to_owned()),
            ("metrics token", METRICS_TOKEN.to_owned()),
            ("server key", server_key.1.clone()),
            ("admin token", server.token.clone()),
            ("admin token's signature", signature(&server.token)),
            ("issued token", issued.clone()),
            ("issued token's signature", signature(&issued)),
        ];
        for (what, secret) in &secrets {
            let found = leaks(&lines, secret);
            assert!(found.is_empty(), "{what} in the log ({}): {:#?}", name, &found[..found.len().min(3)]);
        }
        drop_database(&database).await;
    }
}
