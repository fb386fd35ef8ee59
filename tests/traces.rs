//! Traces and logs of the real binary: JSON log lines, spans exported to an OTLP/HTTP receiver
//! (operation → event → attempt, in the caller's trace), the `traceparent` every attempt
//! sends (retries included), and no secret in any log line even at `trace` level.

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
    POSTGRES_ENV,
    binary::Server,
    receiver::{Receiver, Recorded, Reply},
    ws,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
};
use prost::Message;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// The caller's trace and span, as its `traceparent` names them.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_TICKET: &str = "mutation CreateTicket($input: ItemInput!) { createItem(input: $input) { id } }";

/// A database for one run: SQLite (in the data dir), or a fresh PostgreSQL database.
struct Backend {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    /// The admin URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl Backend {
    async fn drop_database(&self) {
        if let Some((admin_url, name)) = &self.postgres {
            let admin = Database::connect(admin_url).await.expect("connect");
            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
        }
    }
}

/// SQLite always, PostgreSQL when `TEST_POSTGRES_URL` is set.
async fn backends() -> Vec<Backend> {
    let mut out = vec![Backend { name: "sqlite", env: Vec::new(), postgres: None }];
    if let Ok(admin_url) = std::env::var(POSTGRES_ENV) {
        let name = format!("hookline_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.expect("connect");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, common::rand_key());
        out.push(Backend {
            name: "postgres",
            env: vec![("HOOKLINE_DATABASE_URL", common::database_url(&admin_url, &name)), ("HOOKLINE_SECRET_KEY", key)],
            postgres: Some((admin_url, name)),
        });
    }
    out
}

/// Quick retries and polling, plus `extra`.
fn env(dir: &std::path::Path, backend: &Backend, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HOOKLINE_DATA_DIR", dir.join("data").display().to_string()),
        ("HOOKLINE_RETRY_SCHEDULE", "100ms".into()),
        ("HOOKLINE_RETRY_JITTER", "0".into()),
        ("HOOKLINE_POLL_INTERVAL", "50ms".into()),
        ("HOOKLINE_HTTP_TIMEOUT", "2s".into()),
    ];
    env.extend(backend.env.iter().cloned());
    env.extend(extra.iter().cloned());
    env
}

/// POSTs a GraphQL request with the server's token and these extra headers; its `data`.
async fn graphql(server: &Server, headers: &[(&str, &str)], query: &str, variables: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(&server.token)
        .json(&json!({"query": query, "variables": variables}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response: Value = request.send().await.expect("sent").json().await.expect("JSON");
    assert!(response.get("errors").is_none(), "{response}");
    response["data"].clone()
}

async fn create_webhook(server: &Server, input: Value) -> String {
    let mut base = json!({"name": "traced", "entityId": "0", "itemtype": "Ticket", "event": "NEW"});
    base.as_object_mut().expect("object").extend(input.as_object().expect("object").clone());
    let data = graphql(server, &[], CREATE_WEBHOOK, json!({"input": base})).await;
    data["createWebhook"]["id"].as_str().expect("id").to_owned()
}

/// Waits until `path` got `count` requests.
async fn requests_to(receiver: &Receiver, path: &str, count: usize) -> Vec<Recorded> {
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

/// `(version, trace id, span id, flags)` of a `traceparent`.
fn traceparent(request: &Recorded) -> (String, String, String, String) {
    let value = request.header("traceparent").unwrap_or_else(|| panic!("no traceparent: {request:?}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert!(parts[1].len() == 32 && parts[2].len() == 16, "{value}");
    assert!(parts[1..3].iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())), "{value}");
    assert!(parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16), "{value}");
    (parts[0].into(), parts[1].into(), parts[2].into(), parts[3].into())
}

/// A span as the OTLP receiver got it.
#[derive(Debug, Clone)]
struct SpanSeen {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
    error: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<AnyValue>) -> String {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span posted to the receiver's `/v1/traces`, decoded from OTLP protobuf.
fn exported(receiver: &Receiver) -> Vec<SpanSeen> {
    let mut spans = Vec::new();
    for request in receiver.requests_to("/v1/traces") {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).expect("an OTLP protobuf export");
        for resource in export.resource_spans {
            let service = resource.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == "service.name");
            assert_eq!(service.map(|a| text(a.value.clone())).as_deref(), Some("hookline"));
            for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                let error = span.status.as_ref().is_some_and(|s| s.code == 2);
                spans.push(SpanSeen {
                    trace: hex(&span.trace_id),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name,
                    attributes: span.attributes.into_iter().map(|a| (a.key, text(a.value))).collect(),
                    error,
                });
            }
        }
    }
    spans
}

fn named<'a>(spans: &'a [SpanSeen], name: &str) -> Vec<&'a SpanSeen> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_receiver_from_the_mutation_to_each_attempt_in_the_callers_trace() {
    for backend in backends().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        // The first attempt fails: the retry must join the same trace.
        receiver.script("/hook", vec![Reply::Status(500)]);
        let otlp = [("HOOKLINE_OTLP_ENDPOINT", receiver.url("/"))];
        let mut server = Server::start(dir.path(), &env(dir.path(), &backend, &otlp));
        let webhook_id = create_webhook(&server, json!({"url": receiver.url("/hook"), "sentTry": 2})).await;
        let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": "traced"});
        let created = graphql(&server, &[("traceparent", &caller)], CREATE_TICKET, json!({"input": input})).await;
        let item_id = created["createItem"]["id"].as_str().expect("id").to_owned();
        let deliveries = requests_to(&receiver, "/hook", 2).await;
        // A graceful stop sends the spans still waiting for their batch.
        assert!(server.terminate(), "hookline stops cleanly ({})", backend.name);
        let spans = exported(&receiver);
        let context = format!("{} ({}): {spans:#?}", backend.name, spans.len());

        let operation = named(&spans, "mutation CreateTicket");
        assert_eq!(operation.len(), 1, "{context}");
        let operation = operation[0];
        assert_eq!((operation.trace.as_str(), operation.parent.as_str()), (CALLER_TRACE, CALLER_SPAN), "{context}");
        assert_eq!(operation.attributes["graphql.operation.type"], "mutation");
        assert_eq!(operation.attributes["graphql.operation.name"], "CreateTicket");

        let event = named(&spans, "event new Ticket");
        assert_eq!(event.len(), 1, "{context}");
        let event = event[0];
        assert_eq!((event.trace.as_str(), event.parent.as_str()), (CALLER_TRACE, operation.id.as_str()), "{context}");
        assert_eq!(
            (event.attributes["itemtype"].as_str(), event.attributes["event"].as_str()),
            ("Ticket", "new"),
            "{context}"
        );
        assert_eq!(event.attributes["item_id"], item_id);

        let attempts = named(&spans, "POST 127.0.0.1");
        assert_eq!(attempts.len(), 2, "{context}");
        let delivery_id = deliveries[0].header("x-hookline-delivery").expect("delivery id");
        for attempt in &attempts {
            assert_eq!(
                (attempt.trace.as_str(), attempt.parent.as_str()),
                (CALLER_TRACE, event.id.as_str()),
                "{context}"
            );
            assert_eq!(attempt.attributes["webhook_id"], webhook_id);
            assert_eq!(attempt.attributes["delivery_id"], delivery_id);
            assert_eq!(attempt.attributes["target_host"], "127.0.0.1");
            assert!(attempt.attributes["queued_webhook_id"].parse::<i64>().is_ok(), "{context}");
            assert!(attempt.attributes["duration_ms"].parse::<u64>().is_ok(), "{context}");
        }
        let by_status: HashMap<&str, &SpanSeen> =
            attempts.iter().map(|a| (a.attributes["status_code"].as_str(), *a)).collect();
        assert_eq!(by_status["500"].attributes["outcome"], "retry");
        assert!(by_status["500"].error, "a failed attempt is an error span: {context}");
        assert_eq!(by_status["200"].attributes["outcome"], "sent");
        assert!(!by_status["200"].error);

        // Each request names its attempt's span in the caller's trace, retry included.
        let mut sent: Vec<String> = deliveries
            .iter()
            .map(|request| {
                let (version, trace, span, flags) = traceparent(request);
                assert_eq!((version.as_str(), trace.as_str(), flags.as_str()), ("00", CALLER_TRACE, "01"));
                span
            })
            .collect();
        let mut spans_of_attempts: Vec<String> = attempts.iter().map(|a| a.id.clone()).collect();
        sent.sort();
        spans_of_attempts.sort();
        assert_eq!(sent, spans_of_attempts, "{context}");

        // Without a caller's traceparent, an operation starts a trace of its own.
        let anonymous = named(&spans, "mutation");
        assert_eq!(anonymous.len(), 1, "createWebhook: {context}");
        assert!(anonymous[0].trace != CALLER_TRACE && anonymous[0].parent.is_empty(), "{context}");
        backend.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_every_attempt_still_sends_a_traceparent_in_the_mutations_trace() {
    for backend in backends().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        receiver.script("/continued", vec![Reply::Status(503)]);
        receiver.script("/started", vec![Reply::Status(503)]);
        let server = Server::start(dir.path(), &env(dir.path(), &backend, &[]));
        for (path, event) in [("/continued", "NEW"), ("/started", "UPDATE")] {
            create_webhook(&server, json!({"url": receiver.url(path), "event": event, "sentTry": 2})).await;
        }
        let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": "first"});
        let created = graphql(&server, &[("traceparent", &caller)], CREATE_TICKET, json!({"input": input})).await;
        let continued = requests_to(&receiver, "/continued", 2).await;
        // The same item updated without a traceparent: a new trace, the same on both attempts.
        let update =
            "mutation($id: ID!) { updateItem(itemtype: \"Ticket\", id: $id, input: {name: \"second\"}) { id } }";
        graphql(&server, &[], update, json!({"id": created["createItem"]["id"]})).await;
        let started = requests_to(&receiver, "/started", 2).await;

        let (first, second) = (traceparent(&continued[0]), traceparent(&continued[1]));
        assert_eq!((first.1.as_str(), second.1.as_str()), (CALLER_TRACE, CALLER_TRACE), "{}", backend.name);
        assert!(first.2 != second.2 && first.2 != CALLER_SPAN, "each attempt has a span of its own");
        let (first, second) = (traceparent(&started[0]), traceparent(&started[1]));
        assert_eq!(first.1, second.1, "a retry stays in its mutation's trace ({})", backend.name);
        assert_ne!(first.1, CALLER_TRACE);
        assert_ne!(first.2, second.2);
        backend.drop_database().await;
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
    for backend in backends().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = Receiver::start().await;
        let json_logs = [("HOOKLINE_LOG_FORMAT", "json".to_owned()), ("HOOKLINE_LOG", "debug".to_owned())];
        let (mut server, log) = Server::start_logged(dir.path(), &env(dir.path(), &backend, &json_logs));
        create_webhook(&server, json!({"url": receiver.url("/hook")})).await;
        let input = json!({"itemtype": "Ticket", "entityId": "0"});
        graphql(&server, &[], CREATE_TICKET, json!({"input": input})).await;
        let delivery = requests_to(&receiver, "/hook", 1).await;
        assert!(server.terminate(), "{}", backend.name);
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
        backend.drop_database().await;
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
    for backend in backends().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = start_target().await;
        let collector = Receiver::start().await;
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, common::rand_key());
        let mut extra = vec![
            ("HOOKLINE_LOG", "trace".to_owned()),
            ("HOOKLINE_OTLP_ENDPOINT", collector.url("")),
            ("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{OTLP_TOKEN}")),
        ];
        if backend.postgres.is_none() {
            extra.push(("HOOKLINE_SECRET_KEY", key.clone()));
        }
        let (mut server, log) = Server::start_logged(dir.path(), &env(dir.path(), &backend, &extra));
        let server_key = backend.env.iter().chain(&extra).find(|(k, _)| *k == "HOOKLINE_SECRET_KEY").expect("key");
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("user:{BASIC_PASSWORD}"));

        // A webhook with a secret, CRA, OAuth and a credential header; one with Basic auth and
        // a Standard Webhooks secret.
        let secured = create_webhook(
            &server,
            json!({"url": format!("{base}/hook"), "secret": WEBHOOK_SECRET, "useCraChallenge": true,
                   "useOauth": true, "oauthUrl": format!("{base}/token"), "clientId": "hookline",
                   "clientSecret": CLIENT_SECRET, "customHeaders": {"X-Api-Key": API_KEY}}),
        )
        .await;
        create_webhook(
            &server,
            json!({"url": format!("{base}/basic"), "secret": WHSEC, "signatureScheme": "STANDARD_WEBHOOKS",
                   "customHeaders": {"Authorization": format!("Basic {basic}")}}),
        )
        .await;
        let validated = graphql(
            &server,
            &[],
            "mutation($id: ID!) { validateCraChallenge(webhookId: $id) { valid } }",
            json!({"id": secured}),
        )
        .await;
        assert_eq!(validated["validateCraChallenge"]["valid"], true);
        // API tokens: the admin's, one issued now, used over HTTP and WebSocket.
        let issued = graphql(
            &server,
            &[],
            "mutation { createApiToken(input: {user: \"ops\", profile: \"super-admin\"}) { token } }",
            json!({}),
        )
        .await;
        let issued = issued["createApiToken"]["token"].as_str().expect("token").to_owned();
        let mut socket = ws::connect(server.addr, &issued).await;
        ws::subscribe(&mut socket, "1", "subscription { queueUpdates { queuedWebhook { id status } } }", json!({}))
            .await;
        // The subscription is live once a `queueStats` asked after it answers.
        ws::subscribe(&mut socket, "2", "{ queueStats { sent } }", json!({})).await;
        while ws::next(&mut socket).await["id"] != "2" {}
        let input = json!({"itemtype": "Ticket", "entityId": "0", "name": "secret scenario"});
        graphql(&server, &[], CREATE_TICKET, json!({"input": input})).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let data = server.data("{ queueStats { sent } }", json!({})).await;
            if data["queueStats"]["sent"] == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "both deliveries sent ({}): {data}", backend.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let regenerated =
            graphql(&server, &[], "mutation($id: ID!) { regenerateWebhookSecret(id: $id) }", json!({"id": secured}))
                .await;
        let regenerated = regenerated["regenerateWebhookSecret"].as_str().expect("secret").to_owned();
        drop(socket);
        assert!(server.terminate(), "{}", backend.name);
        let lines = log.all();
        assert!(lines.len() > 100, "trace level logs a lot: {} lines", lines.len());
        assert!(lines.iter().any(|l| l.contains("TRACE")), "trace lines are there");
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
            ("server key", server_key.1.clone()),
            ("admin token", server.token.clone()),
            ("admin token's signature", signature(&server.token)),
            ("issued token", issued.clone()),
            ("issued token's signature", signature(&issued)),
        ];
        for (what, secret) in &secrets {
            let found = leaks(&lines, secret);
            assert!(found.is_empty(), "{what} in the log ({}): {:#?}", backend.name, &found[..found.len().min(3)]);
        }
        backend.drop_database().await;
    }
}
