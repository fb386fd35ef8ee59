//! Challenge–response (CRA), OAuth client credentials and SSRF protection, against real
//! servers on loopback.

mod common;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use common::{TestApp, each_backend_with, receiver::Receiver};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

const SECRET: &str = "a-shared-secret";
const CLIENT_SECRET: &str = "the-client-secret-42";
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
const VALIDATE: &str = "mutation($id: ID!) { validateCraChallenge(webhookId: $id) { valid message statusCode } }";

#[derive(Clone, Copy, PartialEq)]
enum Cra {
    Answer,
    Wrong,
    Hang,
}

/// A target that answers challenges, issues tokens and takes deliveries, and records them.
#[derive(Default)]
struct Target {
    cra: Option<Cra>,
    challenges: usize,
    /// Token requests (their form bodies).
    token_requests: Vec<String>,
    /// `expires_in` of issued tokens (None: left out); `token_error` answers 400 instead.
    expires_in: Option<u64>,
    token_error: bool,
    /// The token endpoint never answers in time.
    token_hang: bool,
    /// Deliveries: their Authorization header.
    deliveries: Vec<Option<String>>,
    /// The next delivery answers.
    replies: VecDeque<u16>,
}

type Shared = Arc<Mutex<Target>>;

fn hex_hmac(key: &str, message: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn challenge(State(target): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let mode = {
        let mut target = target.lock().unwrap_or_else(|p| p.into_inner());
        target.challenges += 1;
        target.cra
    };
    let token = query.get("crc_token").cloned().unwrap_or_default();
    match mode {
        Some(Cra::Answer) => hex_hmac(SECRET, &token).into_response(),
        Some(Cra::Wrong) => hex_hmac("another secret", &token).into_response(),
        Some(Cra::Hang) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn deliver(State(target): State<Shared>, headers: HeaderMap) -> Response {
    let mut target = target.lock().unwrap_or_else(|p| p.into_inner());
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    target.deliveries.push(auth);
    let status = target.replies.pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK).into_response()
}

async fn token(State(shared): State<Shared>, body: String) -> Response {
    let hang = {
        let mut target = shared.lock().unwrap_or_else(|p| p.into_inner());
        target.token_requests.push(body);
        target.token_hang
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let target = shared.lock().unwrap_or_else(|p| p.into_inner());
    if target.token_error {
        let error = json!({"error": "invalid_client", "error_description": "unknown client"});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let n = target.token_requests.len();
    let mut answer = json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"});
    if let Some(expires_in) = target.expires_in {
        answer["expires_in"] = json!(expires_in);
    }
    axum::Json(answer).into_response()
}

async fn start_target(state: Target) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(state));
    let app = Router::new()
        .route("/hook", get(challenge).post(deliver))
        .route("/token", post(token))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (base, shared)
}

fn lock(target: &Shared) -> std::sync::MutexGuard<'_, Target> {
    target.lock().unwrap_or_else(|p| p.into_inner())
}

async fn webhook(app: &TestApp, input: Value) -> String {
    let mut base = json!({"name": "secured", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "secret": SECRET});
    base.as_object_mut().expect("object").extend(input.as_object().expect("object").clone());
    let data = app.data(CREATE_WEBHOOK, json!({ "input": base })).await;
    data["createWebhook"]["id"].as_str().expect("id").to_owned()
}

async fn ticket(app: &TestApp) {
    app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0"}})).await;
}

fn quick(config: &mut hookline::config::Config) {
    config.delivery.http_timeout = Duration::from_millis(800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validated_challenge_is_cached_and_each_delivery_follows() {
    each_backend_with(quick, async |app| {
        let (base, target) = start_target(Target { cra: Some(Cra::Answer), ..Default::default() }).await;
        let id = webhook(app, json!({"url": format!("{base}/hook?tenant=7"), "useCraChallenge": true})).await;
        for _ in 0..3 {
            ticket(app).await;
        }
        let rows = app.wait_queue(3, &["SENT"]).await;
        assert!(rows.iter().all(|r| r["sentTry"] == 1));
        assert_eq!(lock(&target).deliveries.len(), 3);
        assert_eq!(lock(&target).challenges, 1, "one challenge, cached for the next deliveries");

        let result = app.data(VALIDATE, json!({"id": id})).await;
        assert_eq!(result["validateCraChallenge"]["valid"], true, "{result}");
        app.assert_error(VALIDATE, json!({"id": "999"}), "NOT_FOUND", "999").await;
        app.assert_error(VALIDATE, json!({"id": "abc"}), "VALIDATION", "webhookId").await;
        assert_eq!(result["validateCraChallenge"]["statusCode"], 200);
        assert_eq!(lock(&target).challenges, 2, "validateCraChallenge always challenges");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_answer_is_not_an_attempt_and_fails_when_the_retry_window_is_spent() {
    each_backend_with(quick, async |app| {
        let (base, target) = start_target(Target { cra: Some(Cra::Wrong), ..Default::default() }).await;
        let id = webhook(app, json!({"url": format!("{base}/hook"), "useCraChallenge": true, "sentTry": 3})).await;
        ticket(app).await;
        // Test schedule: 100 ms between retries, 3 retries: the window is 300 ms.
        let rows = app.wait_queue(1, &["FAILED"]).await;
        let row = &rows[0];
        assert_eq!(row["sentTry"], 0, "failed challenges are not attempts: {row}");
        let error = row["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("not the HMAC of the token") && error.contains("window"), "{error}");
        assert!(lock(&target).deliveries.is_empty(), "nothing is sent without a valid challenge");
        assert!(lock(&target).challenges >= 2, "challenged again at each retry time");

        let result = app.data(VALIDATE, json!({"id": id})).await;
        assert_eq!(result["validateCraChallenge"]["valid"], false);
        assert!(result["validateCraChallenge"]["message"].as_str().unwrap_or_default().contains("HMAC"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_that_times_out_leaves_the_row_retrying_with_the_reason() {
    each_backend_with(
        |c| {
            quick(c);
            c.delivery.retry.schedule = vec![Duration::from_secs(60)];
        },
        async |app| {
            let (base, target) = start_target(Target { cra: Some(Cra::Hang), ..Default::default() }).await;
            let id = webhook(app, json!({"url": format!("{base}/hook"), "useCraChallenge": true})).await;
            ticket(app).await;
            let rows = app.wait_queue(1, &["RETRYING"]).await;
            let error = rows[0]["lastError"].as_str().unwrap_or_default();
            assert!(error.contains("timeout") && error.contains("not counted"), "{error}");
            assert_eq!(rows[0]["sentTry"], 0);
            assert!(lock(&target).deliveries.is_empty());
            let result = app.data(VALIDATE, json!({"id": id})).await;
            assert_eq!(result["validateCraChallenge"]["valid"], false);
            assert_eq!(result["validateCraChallenge"]["statusCode"], Value::Null, "no answer, no status");
        },
    )
    .await;
}

fn oauth(base: &str) -> Value {
    json!({"url": format!("{base}/hook"), "useOauth": true, "oauthUrl": format!("{base}/token"),
           "clientId": "hookline-client", "clientSecret": CLIENT_SECRET})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_serves_many_deliveries_and_is_never_stored() {
    each_backend_with(quick, async |app| {
        let (base, target) = start_target(Target { expires_in: Some(3600), ..Default::default() }).await;
        let id = webhook(app, oauth(&base)).await;
        for _ in 0..5 {
            ticket(app).await;
        }
        let rows = app.wait_queue(5, &["SENT"]).await;
        {
            let target = lock(&target);
            assert_eq!(target.token_requests.len(), 1, "one token request for 5 deliveries");
            let form = &target.token_requests[0];
            assert!(
                form.contains("grant_type=client_credentials") && form.contains("client_id=hookline-client"),
                "{form}"
            );
            assert!(form.contains(&format!("client_secret={CLIENT_SECRET}")), "{form}");
            assert!(target.deliveries.iter().all(|a| a.as_deref() == Some("Bearer tok-1")), "{:?}", target.deliveries);
        }
        let stored = serde_json::to_string(&rows).expect("json");
        assert!(!stored.contains("tok-1") && !stored.contains(CLIENT_SECRET), "the token is not stored: {stored}");
        let shown = app
            .data("query($id: ID!) { webhook(id: $id) { clientId hasClientSecret history(first: 20) { edges { node { action message oldValue newValue } } } } }", json!({"id": id}))
            .await;
        assert!(!shown.to_string().contains(CLIENT_SECRET), "{shown}");
        assert_eq!(shown["webhook"]["hasClientSecret"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced() {
    each_backend_with(quick, async |app| {
        let (base, target) = start_target(Target { expires_in: Some(1), ..Default::default() }).await;
        webhook(app, oauth(&base)).await;
        ticket(app).await;
        app.wait_queue(1, &["SENT"]).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        ticket(app).await;
        app.wait_queue(2, &["SENT"]).await;
        let target = lock(&target);
        assert_eq!(target.token_requests.len(), 2, "the first token expired after 1 s");
        assert_eq!(target.deliveries, vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_the_token_once_within_the_attempt() {
    each_backend_with(quick, async |app| {
        let (base, target) =
            start_target(Target { expires_in: Some(3600), replies: [401].into(), ..Default::default() }).await;
        webhook(app, oauth(&base)).await;
        ticket(app).await;
        let rows = app.wait_queue(1, &["SENT"]).await;
        assert_eq!(rows[0]["sentTry"], 1, "the refresh is part of one attempt");
        let target = lock(&target);
        assert_eq!(target.token_requests.len(), 2);
        assert_eq!(target.deliveries, vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_show_in_last_error_without_the_secret() {
    each_backend_with(
        |c| {
            quick(c);
            c.delivery.retry.schedule = vec![Duration::from_secs(60)];
        },
        async |app| {
            let (base, target) = start_target(Target { token_error: true, ..Default::default() }).await;
            webhook(app, oauth(&base)).await;
            ticket(app).await;
            let rows = app.wait_queue(1, &["RETRYING"]).await;
            let error = rows[0]["lastError"].as_str().unwrap_or_default();
            assert!(error.contains("HTTP 400") && error.contains("invalid_client"), "{error}");
            assert!(!error.contains(CLIENT_SECRET), "{error}");
            assert!(lock(&target).deliveries.is_empty(), "nothing is sent without a token");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_for_a_failing_token_request_share_its_failure() {
    each_backend_with(
        |c| {
            quick(c);
            c.delivery.retry.schedule = vec![Duration::from_secs(60)];
        },
        async |app| {
            let (base, target) = start_target(Target { token_hang: true, ..Default::default() }).await;
            webhook(app, oauth(&base)).await;
            for _ in 0..5 {
                ticket(app).await;
            }
            let rows = app.wait_queue(5, &["RETRYING"]).await;
            for row in &rows {
                let error = row["lastError"].as_str().unwrap_or_default();
                assert!(error.contains("OAuth") && error.contains("timeout"), "{error}");
            }
            let requests = lock(&target).token_requests.len();
            assert!(requests <= 2, "{requests} token requests for 5 deliveries waiting on the same endpoint");
        },
    )
    .await;
}

fn closed(config: &mut hookline::config::Config) {
    quick(config);
    config.delivery.targets.allow_private = false;
    config.delivery.retry.schedule = vec![Duration::from_secs(60)];
}

#[tokio::test]
async fn literal_private_addresses_are_refused_when_saved() {
    each_backend_with(closed, async |app| {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://10.0.0.5/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.1.1/",
            "http://[fd00:ec2::254]/",
            "http://127.0.0.1/{{ item.id }}",
        ] {
            let input =
                json!({"input": {"name": "ssrf", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url}});
            app.assert_error(CREATE_WEBHOOK, input, "VALIDATION", "is not a public address").await;
        }
        let input = json!({"input": {"name": "ssrf", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
            "url": "https://example.com/hook", "useOauth": true, "oauthUrl": "http://192.168.0.1/token",
            "clientId": "c", "clientSecret": "s"}});
        app.assert_error(CREATE_WEBHOOK, input, "VALIDATION", "oauthUrl").await;
        for (field, url) in
            [("url", "https://user:pw@example.com/hook"), ("oauthUrl", "https://id:secret@auth.example.com/token")]
        {
            let mut input = json!({"name": "creds", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
                "url": "https://example.com/hook", "useOauth": true, "oauthUrl": "https://auth.example.com/token",
                "clientId": "c", "clientSecret": "s"});
            input[field] = json!(url);
            app.assert_error(CREATE_WEBHOOK, json!({ "input": input }), "VALIDATION", "user or password").await;
        }
        let listed = app.data("{ webhooks(first: 10) { totalCount } }", json!({})).await;
        assert_eq!(listed["webhooks"]["totalCount"], 0, "nothing stored");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_refused_at_send_time_unless_allowed() {
    each_backend_with(closed, async |app| {
        let receiver = Receiver::start().await;
        let url = format!("http://localhost:{}/hook", receiver.addr.port());
        webhook(app, json!({"url": url})).await;
        ticket(app).await;
        let rows = app.wait_queue(1, &["RETRYING"]).await;
        let error = rows[0]["lastError"].as_str().unwrap_or_default();
        assert!(
            error.contains("does not resolve to a public address") && error.contains("HOOKLINE_ALLOWED_NETWORKS"),
            "{error}"
        );
        assert!(!error.contains("127.0.0.1"), "the resolved address is not shown: {error}");
        assert!(!error.contains("loopback"), "nor what kind of address it is: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(receiver.requests().is_empty(), "nothing reached loopback");
    })
    .await;
    each_backend_with(
        |c| {
            closed(c);
            c.delivery.targets.allowed_networks = vec!["127.0.0.0/8".parse().expect("network")];
        },
        async |app| {
            let receiver = Receiver::start().await;
            webhook(app, json!({"url": format!("http://localhost:{}/hook", receiver.addr.port())})).await;
            ticket(app).await;
            app.wait_queue(1, &["SENT"]).await;
            assert_eq!(receiver.requests().len(), 1, "an allowed network is reached");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_challenge_urls_are_guarded_too() {
    each_backend_with(closed, async |app| {
        let (base, target) = start_target(Target { cra: Some(Cra::Answer), ..Default::default() }).await;
        let local = base.replace("127.0.0.1", "localhost");
        let id = webhook(app, json!({"url": format!("{local}/hook"), "useCraChallenge": true})).await;
        let result = app.data(VALIDATE, json!({"id": id})).await;
        assert_eq!(result["validateCraChallenge"]["valid"], false);
        let message = result["validateCraChallenge"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not resolve to a public address"), "{message}");
        webhook(
            app,
            json!({"url": "https://example.invalid/hook", "useOauth": true, "oauthUrl": format!("{local}/token"),
            "clientId": "c", "clientSecret": "s", "itemtype": "Computer"}),
        )
        .await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Computer", "entityId": "0"}})).await;
        let rows = app.wait_queue(1, &["RETRYING"]).await;
        let error = rows[0]["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("OAuth") && error.contains("does not resolve to a public address"), "{error}");
        let target = lock(&target);
        assert_eq!((target.challenges, target.token_requests.len()), (0, 0), "nothing reached loopback");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_loopback_is_not_followed() {
    each_backend_with(
        |c| {
            closed(c);
            c.delivery.targets.allowed_networks = vec!["127.0.0.1/32".parse().expect("network")];
        },
        async |app| {
            let inside = Receiver::start().await;
            let outside = Receiver::start().await;
            let location = format!("http://localhost:{}/internal", inside.addr.port());
            outside.script(
                "/hook",
                vec![common::receiver::Reply::Full(302, vec![("location", location.clone())], String::new())],
            );
            webhook(app, json!({"url": outside.url("/hook")})).await;
            ticket(app).await;
            let rows = app.wait_queue(1, &["RETRYING"]).await;
            let error = rows[0]["lastError"].as_str().unwrap_or_default();
            assert!(error.contains("not followed") && error.contains(&location), "{error}");
            assert_eq!(rows[0]["lastStatusCode"], 302);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(inside.requests().is_empty(), "the redirect target got nothing");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_sent_but_stored_encrypted_and_shown_hidden() {
    each_backend_with(quick, async |app| {
        use sea_orm::{ConnectionTrait, Statement};
        let receiver = Receiver::start().await;
        let headers = json!({"Authorization": "Bearer static-credential", "X-Tenant": "7"});
        let id = webhook(app, json!({"url": receiver.url("/hook"), "customHeaders": headers})).await;
        ticket(app).await;
        let rows = app.wait_queue(1, &["SENT"]).await;
        let sent = receiver.wait_for(1, Duration::from_secs(5)).await.remove(0);
        assert_eq!(sent.header("authorization"), Some("Bearer static-credential"));
        assert_eq!(rows[0]["headers"], json!({"Authorization": "(hidden)", "X-Tenant": "7"}));

        let backend = app.state.db.get_database_backend();
        let stored = app
            .state
            .db
            .query_all_raw(Statement::from_string(backend, "SELECT CAST(headers AS TEXT) AS h FROM queued_webhooks"))
            .await
            .expect("query");
        let raw: Vec<String> = stored.iter().map(|row| row.try_get::<String>("", "h").expect("text")).collect();
        let raw = raw.join("\n");
        assert!(!raw.contains("static-credential") && raw.contains("hookline-sealed:"), "{raw}");

        // Sending `(hidden)` back keeps the stored value; history never shows it.
        let update = "mutation($id: ID!, $input: WebhookPatch!) { updateWebhook(id: $id, input: $input) { customHeaders } }";
        let patch = json!({"customHeaders": {"Authorization": "(hidden)", "X-Tenant": "8"}});
        let updated = app.data(update, json!({"id": id, "input": patch})).await;
        assert_eq!(updated["updateWebhook"]["customHeaders"], json!({"Authorization": "(hidden)", "X-Tenant": "8"}));
        ticket(app).await;
        app.wait_queue(2, &["SENT"]).await;
        let second = receiver.wait_for(2, Duration::from_secs(5)).await.remove(1);
        assert_eq!(second.header("authorization"), Some("Bearer static-credential"));
        assert_eq!(second.header("x-tenant"), Some("8"));
        let shown = app
            .data(
                "query($id: ID!) { webhook(id: $id) { customHeaders history(first: 20) { edges { node { message oldValue newValue } } } } }",
                json!({"id": id}),
            )
            .await;
        assert!(!shown.to_string().contains("static-credential"), "{shown}");
    })
    .await;
}
