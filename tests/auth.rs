//! API authentication as a client meets it: 401 with the reason, the order of refusals, the
//! rights of every root field for every profile (read from the schema), tokens issued within
//! the issuer's rights and revoked at once, WebSocket refusals (4403) and live subscriptions
//! ended when their token expires or is revoked, mutations per token, `hookline token` and the
//! bootstrap token, and a revocation seen by another process within a second.

mod common;

use std::time::Duration;

use common::{POSTGRES_ENV, TestApp, binary::Server, client_with, each_backend, each_backend_with, ws};
use futures_util::{SinkExt, StreamExt};
use hookline::auth::{Claims, EntityScope, Profile, Tokens, token_signing_key};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const CREATE_TOKEN: &str = "mutation($input: ApiTokenInput!) { createApiToken(input: $input) { token apiToken { id user profile entities { id recursive } issuedBy expiresAt revokedAt } } }";
const REVOKE: &str = "mutation($id: ID!) { revokeApiToken(id: $id) { id revokedAt } }";
const UPDATES: &str = "subscription { queueUpdates { queuedWebhook { id } } }";

async fn token_of(app: &TestApp, profile: &str) -> String {
    app.issue_token(json!({"user": format!("u-{profile}"), "profile": profile})).await.0
}

/// Status, `WWW-Authenticate` and body of a POST with this `Authorization` (if any).
async fn post(app: &TestApp, authorization: Option<&str>, body: Value) -> (u16, String, Value) {
    let mut request = reqwest::Client::new().post(app.url("/graphql")).json(&body);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let challenge =
        response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, challenge, response.json().await.expect("a JSON body"))
}

fn first_error(body: &Value) -> (String, String) {
    let error = &body["errors"][0];
    (
        error["extensions"]["code"].as_str().unwrap_or("<none>").to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn claims(profile: &str, exp: Option<i64>, nbf: Option<i64>) -> Claims {
    Claims {
        sub: "mallory".into(),
        profile: profile.into(),
        entities: vec![EntityScope { id: 0, recursive: true }],
        iat: chrono::Utc::now().timestamp(),
        exp,
        nbf,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_saying_why() {
    each_backend(async |app| {
        let now = chrono::Utc::now().timestamp();
        let own = &app.state.auth.tokens;
        let other_key = Tokens::new(token_signing_key(&[9; 32]), None).expect("tokens");
        let b64 = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let alg_none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&serde_json::to_value(claims("super-admin", None, None)).expect("json"))
        );
        let (_, revoked_id) = app.issue_token(json!({"user": "gone", "profile": "viewer"})).await;
        let revoked = {
            let (token, id) = app.issue_token(json!({"user": "gone2", "profile": "viewer"})).await;
            app.data(REVOKE, json!({"id": id})).await;
            token
        };
        let _ = revoked_id;
        let cases: Vec<(Option<String>, &str)> = vec![
            (None, "no token"),
            (Some("Basic dXNlcjpwYXNz".into()), "expected `Authorization: Bearer <token>`"),
            (Some("Bearer not-a-jwt".into()), "malformed token"),
            (Some(format!("Bearer {alg_none}")), "algorithm `none` is not allowed"),
            (Some(format!("Bearer {}", other_key.sign(&claims("viewer", None, None)).expect("signed"))), "signature"),
            (
                Some(format!("Bearer {}", own.sign(&claims("viewer", Some(now - 60), None)).expect("signed"))),
                "token expired",
            ),
            (
                Some(format!("Bearer {}", own.sign(&claims("viewer", None, Some(now + 600))).expect("signed"))),
                "not valid yet",
            ),
            (
                Some(format!("Bearer {}", own.sign(&claims("root", None, None)).expect("signed"))),
                "unknown profile `root`",
            ),
            (Some(format!("Bearer {revoked}")), "token revoked"),
        ];
        for (authorization, reason) in cases {
            let (status, challenge, body) =
                post(app, authorization.as_deref(), json!({"query": "{ entities { id } }"})).await;
            assert_eq!(status, 401, "{reason}: {body}");
            assert!(challenge.starts_with("Bearer"), "{reason}: WWW-Authenticate is `{challenge}`");
            let (code, message) = first_error(&body);
            assert_eq!(code, "UNAUTHENTICATED", "{reason}");
            assert!(message.contains(reason), "`{message}` should say `{reason}`");
            assert!(body.get("data").is_none(), "nothing ran: {body}");
        }
        // Size, content type and origin are checked before the token.
        let bare = reqwest::Client::new();
        let url = app.url("/graphql");
        let plain = bare.post(&url).header("Content-Type", "text/plain").body("{}").send().await.expect("sent");
        assert_eq!(plain.status(), 415);
        let foreign =
            bare.post(&url).header("Origin", "https://evil.example").json(&json!({"query": "{ __typename }"}));
        assert_eq!(foreign.send().await.expect("sent").status(), 403);
        // The pages and probes are open.
        for path in ["/healthz", "/readyz", "/graphql"] {
            let response = bare.get(app.url(path)).header("Accept", "text/html").send().await.expect("sent");
            assert_eq!(response.status(), 200, "{path} needs no token");
        }
        // Nothing of the refused requests was stored: only the tokens issued above.
        assert_eq!(app.data("{ apiTokens { totalCount } }", json!({})).await["apiTokens"]["totalCount"], 3);
    })
    .await;
}

#[tokio::test]
async fn every_root_field_is_refused_to_bad_tokens_and_to_the_profiles_without_its_right() {
    each_backend(async |app| {
        let fields = hookline::graphql::root_fields();
        assert!(fields.len() > 40, "{fields:?}");
        // Every field is refused, before anything runs, to every kind of bad token.
        let now = chrono::Utc::now().timestamp();
        let other_key = Tokens::new(token_signing_key(&[9; 32]), None).expect("tokens");
        let own = &app.state.auth.tokens;
        let alg_none = {
            use base64::Engine;
            let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!(
                "{}.{}.",
                b64(json!({"alg": "none"})),
                b64(serde_json::to_value(claims("super-admin", None, None)).expect("json"))
            )
        };
        let revoked = {
            let (token, id) = app.issue_token(json!({"user": "gone", "profile": "super-admin"})).await;
            app.data("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", json!({"id": id})).await;
            token
        };
        let bad: Vec<(Option<String>, &str)> = vec![
            (None, "no token"),
            (Some("Bearer x.y".into()), "malformed"),
            (Some(format!("Bearer {alg_none}")), "`none` is not allowed"),
            (
                Some(format!("Bearer {}", other_key.sign(&claims("super-admin", None, None)).expect("signed"))),
                "signature",
            ),
            (
                Some(format!("Bearer {}", own.sign(&claims("super-admin", Some(now - 60), None)).expect("signed"))),
                "token expired",
            ),
            (Some(format!("Bearer {revoked}")), "token revoked"),
        ];
        for (operation, field) in &fields {
            for (authorization, reason) in &bad {
                let query = json!({"query": format!("{operation} {{ {field} }}")});
                let (status, _, body) = post(app, authorization.as_deref(), query).await;
                assert_eq!(
                    (status, first_error(&body).0.as_str()),
                    (401, "UNAUTHENTICATED"),
                    "{field}, {reason}: {body}"
                );
                assert!(first_error(&body).1.contains(reason), "{field}: {body}");
            }
        }
        for profile in Profile::ALL {
            let token = token_of(app, profile.as_str()).await;
            let client = client_with(&token);
            for (operation, field) in &fields {
                // Arguments and selections are left out: a call the guard lets through is
                // then refused by validation instead (VALIDATION), one it stops is FORBIDDEN.
                let query = format!("{operation} {{ {field} }}");
                let body = app.query_with(&client, &query, json!({})).await;
                let (code, message) = first_error(&body);
                let allowed = match hookline::graphql::required_right(*operation, field) {
                    Some(right) => profile.has(right),
                    None => profile == Profile::SuperAdmin,
                };
                if allowed {
                    assert_ne!(code, "FORBIDDEN", "{profile} may call {operation}.{field}: {message}");
                } else {
                    assert_eq!(code, "FORBIDDEN", "{profile} may not call {operation}.{field}: {body}");
                    assert!(message.contains(field) && message.contains(profile.as_str()), "{message}");
                }
            }
        }
        // Aliases, fragments and several operations in one document are all checked.
        let viewer = client_with(&token_of(app, "viewer").await);
        for query in [
            "mutation { a: createEntity(input: {name: \"x\"}) { id } }",
            "mutation { ...M } fragment M on Mutation { createEntity(input: {name: \"x\"}) { id } }",
            "query Q { entities { id } } mutation M { createEntity(input: {name: \"x\"}) { id } }",
        ] {
            let body: Value = viewer
                .post(app.url("/graphql"))
                .json(&json!({"query": query, "operationName": "Q"}))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            assert_eq!(first_error(&body).0, "FORBIDDEN", "{query}: {body}");
        }
        let entities = app.data("{ entities { name } }", json!({})).await;
        assert!(!entities.to_string().contains("\"x\""), "nothing was created: {entities}");
        // Introspection answers any valid token.
        let writer = client_with(&token_of(app, "event-writer").await);
        let body = app.query_with(&writer, "{ __schema { queryType { name } } }", json!({})).await;
        assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query", "{body}");
    })
    .await;
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    each_backend_with(
        |config| config.auth.introspection = false,
        async |app| {
            app.assert_error("{ __schema { queryType { name } } }", json!({}), "FORBIDDEN", "HOOKLINE_INTROSPECTION")
                .await;
            app.assert_error("{ __type(name: \"Query\") { name } }", json!({}), "FORBIDDEN", "introspection").await;
            assert_eq!(app.data("{ __typename }", json!({})).await["__typename"], "Query");
        },
    )
    .await;
}

#[tokio::test]
async fn tokens_are_issued_within_the_issuers_rights_and_scope_listed_and_revoked() {
    each_backend(async |app| {
        let (admin, _) = app.issue_token(json!({"user": "alice", "profile": "admin", "ttlSeconds": 3600})).await;
        let alice = client_with(&admin);
        // An admin issues a viewer token; it is recorded with its issuer and expiry.
        let body = app.query_with(&alice, CREATE_TOKEN, json!({"input": {"user": "dash", "profile": "viewer", "ttlSeconds": 60}})).await;
        let created = &body["data"]["createApiToken"];
        assert_eq!(created["apiToken"]["issuedBy"], "alice", "{body}");
        assert_eq!(created["apiToken"]["entities"], json!([{"id": "0", "recursive": true}]));
        assert!(created["apiToken"]["expiresAt"].is_string());
        let viewer = created["token"].as_str().expect("token").to_owned();
        let viewer_id = created["apiToken"]["id"].as_str().expect("id").to_owned();
        // Not beyond its own rights.
        let body = app.query_with(&alice, CREATE_TOKEN, json!({"input": {"user": "root", "profile": "super-admin"}})).await;
        assert_eq!(first_error(&body).0, "FORBIDDEN", "{body}");
        let body = app.query_with(&client_with(&viewer), CREATE_TOKEN, json!({"input": {"user": "x", "profile": "viewer"}})).await;
        assert_eq!(first_error(&body).0, "FORBIDDEN", "{body}");
        // Bad input names its field.
        for (input, field) in [
            (json!({"user": "x", "profile": "root"}), "profile"),
            (json!({"user": "x", "profile": "viewer", "ttlSeconds": 0}), "ttlSeconds"),
            (json!({"user": "", "profile": "viewer"}), "user"),
            (json!({"user": "x", "profile": "viewer", "entities": [{"id": "999", "recursive": false}]}), "entities"),
        ] {
            let body = app.query_with(&alice, CREATE_TOKEN, json!({"input": input})).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION", "{body}");
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        }
        // A scoped admin issues tokens within its scope only.
        let europe = app.data("mutation { createEntity(input: {name: \"Europe\"}) { id } }", json!({})).await;
        let europe = europe["createEntity"]["id"].as_str().expect("id").to_owned();
        let asia = app.data("mutation { createEntity(input: {name: \"Asia\"}) { id } }", json!({})).await;
        let asia = asia["createEntity"]["id"].as_str().expect("id").to_owned();
        let entities = json!([{"id": europe, "recursive": true}]);
        let (scoped, _) = app.issue_token(json!({"user": "eu-admin", "profile": "admin", "entities": entities})).await;
        let eu = client_with(&scoped);
        for entities in [json!([{"id": asia, "recursive": false}]), json!([])] {
            let body = app.query_with(&eu, CREATE_TOKEN, json!({"input": {"user": "x", "profile": "viewer", "entities": entities}})).await;
            assert_eq!(first_error(&body).0, "FORBIDDEN", "{entities}: {body}");
        }
        let body = app.query_with(&eu, CREATE_TOKEN, json!({"input": {"user": "eu-dash", "profile": "viewer", "entities": [{"id": europe, "recursive": false}]}})).await;
        assert!(body.get("errors").is_none(), "{body}");
        // It lists only the tokens within its scope and cannot revoke others.
        let listed = app.query_with(&eu, "{ apiTokens(first: 50) { totalCount edges { node { user } } } }", json!({})).await;
        assert_eq!(listed["data"]["apiTokens"]["totalCount"], 2, "{listed}");
        let body = app.query_with(&eu, REVOKE, json!({"id": viewer_id})).await;
        assert_eq!(first_error(&body).0, "NOT_FOUND", "{body}");

        // The full list, newest first, pages with cursors.
        let page = app.data("{ apiTokens(first: 2) { totalCount edges { cursor node { user } } pageInfo { hasNextPage endCursor } } }", json!({})).await;
        assert_eq!(page["apiTokens"]["edges"][0]["node"]["user"], "eu-dash", "{page}");
        assert_eq!(page["apiTokens"]["pageInfo"]["hasNextPage"], true);
        let after = page["apiTokens"]["pageInfo"]["endCursor"].clone();
        let next = app.data("query($a: String) { apiTokens(first: 50, after: $a) { edges { node { user } } } }", json!({"a": after})).await;
        let users: Vec<&str> = next["apiTokens"]["edges"].as_array().expect("edges").iter().map(|e| e["node"]["user"].as_str().unwrap_or_default()).collect();
        assert_eq!(users, ["dash", "alice", "admin"], "{next}");

        // Revoked: refused at once, and listed with its time.
        assert!(app.query_with(&client_with(&viewer), "{ entities { id } }", json!({})).await.get("errors").is_none());
        let body = app.query_with(&alice, REVOKE, json!({"id": viewer_id})).await;
        assert!(body["data"]["revokeApiToken"]["revokedAt"].is_string(), "{body}");
        let (status, _, body) = post(app, Some(&format!("Bearer {viewer}")), json!({"query": "{ entities { id } }"})).await;
        assert_eq!((status, first_error(&body).1), (401, "token revoked".to_owned()));
        let body = app.query_with(&alice, REVOKE, json!({"id": "nope"})).await;
        assert_eq!(first_error(&body).0, "NOT_FOUND", "{body}");
    })
    .await;
}

/// Opens a WebSocket and sends `connection_init` with this payload.
async fn ws_init(app: &TestApp, payload: Value) -> ws::Socket {
    let mut request = format!("ws://{}/graphql", app.addr).into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("connects");
    socket.send(Message::text(json!({"type": "connection_init", "payload": payload}).to_string())).await.expect("init");
    socket
}

/// The close frame's code and reason, skipping anything before it.
async fn closed(socket: &mut ws::Socket) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_with_a_refused_token_is_closed_with_4403() {
    each_backend(async |app| {
        for (payload, reason) in [
            (json!({}), "no token"),
            (json!({"Authorization": "Bearer x.y.z"}), "malformed"),
            (json!({"authorization": "Token abc"}), "Bearer"),
        ] {
            let mut socket = ws_init(app, payload).await;
            let (code, said) = closed(&mut socket).await;
            assert_eq!(code, 4403, "{reason}");
            assert!(said.contains(reason), "`{said}` should say `{reason}`");
        }
        // Under `headers`, as some clients send it, the token is found too.
        let mut socket = ws_init(app, json!({"headers": {"Authorization": format!("Bearer {}", app.token)}})).await;
        assert_eq!(ws::next(&mut socket).await["type"], "connection_ack");
        // A profile without the right gets FORBIDDEN for its subscription.
        let writer = token_of(app, "event-writer").await;
        let mut socket = ws::connect(app.addr, &writer).await;
        ws::subscribe(&mut socket, "1", UPDATES, json!({})).await;
        let answer = ws::next(&mut socket).await;
        // async-graphql reports an operation refused before it runs as a `next` with errors.
        let error = match answer["type"].as_str() {
            Some("error") => &answer["payload"][0],
            _ => &answer["payload"]["errors"][0],
        };
        assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{answer}");
    })
    .await;
}

/// Subscribes with the token and waits until the subscription is live.
async fn live_subscription(app: &TestApp, token: &str) -> ws::Socket {
    let mut socket = ws::connect(app.addr, token).await;
    ws::subscribe(&mut socket, "live", UPDATES, json!({})).await;
    assert!(ws::within(&mut socket, Duration::from_millis(300)).await.is_none(), "nothing before a change");
    socket
}

/// The `error` a live subscription gets when its token stops being valid, then the 4403 close.
async fn ended(socket: &mut ws::Socket, reason: &str) {
    let error = ws::next(socket).await;
    assert_eq!((error["type"].as_str(), error["id"].as_str()), (Some("error"), Some("live")), "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "UNAUTHENTICATED", "{error}");
    assert_eq!(error["payload"][0]["message"], reason, "{error}");
    let (code, said) = closed(socket).await;
    assert_eq!((code, said.as_str()), (4403, reason));
}

#[tokio::test]
async fn live_subscriptions_end_when_their_token_is_revoked_or_expires() {
    each_backend(async |app| {
        let (token, id) = app.issue_token(json!({"user": "dash", "profile": "viewer"})).await;
        let mut socket = live_subscription(app, &token).await;
        app.data(REVOKE, json!({"id": id})).await;
        ended(&mut socket, "token revoked").await;

        // A token that lives one second; with the 5 s leeway it ends within about 7 s.
        let (token, _) = app.issue_token(json!({"user": "brief", "profile": "viewer", "ttlSeconds": 1})).await;
        let started = std::time::Instant::now();
        let mut socket = live_subscription(app, &token).await;
        ended(&mut socket, "token expired").await;
        assert!(started.elapsed() >= Duration::from_secs(5), "not before the leeway: {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn mutations_beyond_a_tokens_rate_are_refused_with_429_and_retry_after() {
    each_backend_with(
        |config| {
            config.auth.mutation_rate = 1;
            config.auth.mutation_burst = 3;
        },
        async |app| {
            let writer = token_of(app, "event-writer").await;
            let client = client_with(&writer);
            let create = "mutation { createItem(input: {itemtype: \"Ticket\", entityId: \"0\", name: \"t\"}) { id } }";
            for n in 0..2 {
                let body = app.query_with(&client, create, json!({})).await;
                assert!(body.get("errors").is_none(), "create {n}: {body}");
            }
            // A batch counts its inputs: two more are over the burst of three.
            let batch = json!({"query": "mutation($i: [ItemInput!]!) { createItems(inputs: $i) { id } }",
                "variables": {"i": [{"itemtype": "Ticket", "entityId": "0"}, {"itemtype": "Ticket", "entityId": "0"}]}});
            let response = client.post(app.url("/graphql")).json(&batch).send().await.expect("sent");
            assert_eq!(response.status(), 429);
            let retry_after: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
            assert!((1..=2).contains(&retry_after), "{retry_after}");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{body}");
            assert_eq!(body["errors"][0]["extensions"]["retryAfterSeconds"], retry_after);
            // Reads are not counted; another token has its own budget.
            let read = app.query_with(&client, "{ items(itemtype: \"Ticket\") { totalCount } }", json!({})).await;
            assert_eq!(read["data"]["items"]["totalCount"], 2, "the refused batch stored nothing: {read}");
            app.data("mutation { createItem(input: {itemtype: \"Ticket\", entityId: \"0\"}) { id } }", json!({})).await;
            tokio::time::sleep(Duration::from_secs(retry_after)).await;
            let body = app.query_with(&client, create, json!({})).await;
            assert!(body.get("errors").is_none(), "after Retry-After: {body}");
        },
    )
    .await;
}

#[tokio::test]
async fn the_first_start_writes_a_private_admin_token_and_hookline_token_issues_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let path = dir.path().join("data/admin.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("admin.token").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its user alone");
    }
    let who = server.data("{ apiTokens { edges { node { user profile expiresAt issuedBy } } } }", json!({})).await;
    assert_eq!(
        who["apiTokens"]["edges"][0]["node"],
        json!({"user": "admin", "profile": "super-admin", "expiresAt": null, "issuedBy": null})
    );

    let output = common::binary::command(dir.path())
        .args(["token", "--user", "ci", "--profile", "event-writer", "--ttl", "1h"])
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("hookline token runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let ci = client_with(&token);
    let url = format!("http://{}/graphql", server.addr);
    let create = json!({"query": "mutation { createItem(input: {itemtype: \"Ticket\", entityId: \"0\"}) { id } }"});
    let body: Value = ci.post(&url).json(&create).send().await.expect("sent").json().await.expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    let body: Value = ci
        .post(&url)
        .json(&json!({"query": "{ webhooks { totalCount } }"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");

    for (args, needle) in [
        (vec!["--profile", "root"], "--profile"),
        (vec!["--profile", "viewer", "--ttl", "soon"], "--ttl"),
        (vec!["--profile", "viewer", "--entity", "77"], "--entity"),
    ] {
        let output =
            common::binary::command(dir.path()).args(["token", "--user", "x"]).args(args).output().expect("runs");
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains(needle), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_on_one_process_is_refused_by_another_within_a_second() {
    let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
        return;
    };
    use sea_orm::{ConnectionTrait, Database};
    let admin = Database::connect(&admin_url).await.expect("connect");
    let name = format!("hookline_t_{}", uuid::Uuid::new_v4().simple());
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(common::rand_key())
    };
    let env = vec![("HOOKLINE_DATABASE_URL", common::database_url(&admin_url, &name)), ("HOOKLINE_SECRET_KEY", key)];
    let first = Server::start(dir.path(), &env);
    let second = Server::start(dir.path(), &env);
    let created = first.data(CREATE_TOKEN, json!({"input": {"user": "dash", "profile": "viewer"}})).await;
    let token = created["createApiToken"]["token"].as_str().expect("token").to_owned();
    let id = created["createApiToken"]["apiToken"]["id"].as_str().expect("id").to_owned();
    let dash = client_with(&token);
    let status = async |server: &Server| {
        dash.post(format!("http://{}/graphql", server.addr))
            .json(&json!({"query": "{ entities { id } }"}))
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    };
    assert_eq!((status(&first).await, status(&second).await), (200, 200), "accepted by both");
    first.data(REVOKE, json!({"id": id})).await;
    let revoked = std::time::Instant::now();
    assert_eq!(status(&first).await, 401, "refused at once where it was revoked");
    while status(&second).await != 401 {
        assert!(revoked.elapsed() < Duration::from_secs(1), "the other process still accepts it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("the other process refused the revoked token after {:?}", revoked.elapsed());
    drop((first, second));
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
}

#[tokio::test]
async fn an_identity_providers_tokens_are_accepted_with_its_issuer_and_audience() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use ring::{
        rand::SystemRandom,
        signature::{Ed25519KeyPair, KeyPair},
    };

    let pair = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key");
    let public = Ed25519KeyPair::from_pkcs8(pair.as_ref()).expect("parse").public_key().as_ref().to_vec();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "idp-1", "x": B64URL.encode(&public)}]});
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).expect("written");
    let signing = EncodingKey::from_ed_der(pair.as_ref());
    let sign = |body: Value| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("idp-1".into());
        jsonwebtoken::encode(&header, &body, &signing).expect("signed")
    };
    let now = chrono::Utc::now().timestamp();
    let claims = |issuer: &str, audience: &str| {
        json!({"sub": "sso-user", "profile": "viewer", "entities": [{"id": 0, "recursive": true}],
            "iat": now, "exp": now + 600, "jti": "idp-token-1", "iss": issuer, "aud": audience})
    };
    each_backend_with(
        |config| {
            config.auth.jwks_file = Some(jwks_file.clone());
            config.auth.issuer = Some("https://idp.example".into());
            config.auth.audience = Some("hookline".into());
        },
        async |app| {
            let good = sign(claims("https://idp.example", "hookline"));
            let (status, _, body) =
                post(app, Some(&format!("Bearer {good}")), json!({"query": "{ entities { id } }"})).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.get("errors").is_none(), "{body}");
            // A viewer from the provider may read, not configure.
            let (_, _, body) = post(
                app,
                Some(&format!("Bearer {good}")),
                json!({"query": "mutation { createEntity(input: {name: \"x\"}) { id } }"}),
            )
            .await;
            assert_eq!(first_error(&body).0, "FORBIDDEN", "{body}");
            for (token, reason) in [
                (sign(claims("https://evil.example", "hookline")), "issuer"),
                (sign(claims("https://idp.example", "another-app")), "audience"),
            ] {
                let (status, _, body) =
                    post(app, Some(&format!("Bearer {token}")), json!({"query": "{ __typename }"})).await;
                assert_eq!(status, 401, "{body}");
                assert!(first_error(&body).1.contains(reason), "{body}");
            }
            // hookline's own tokens still work beside the provider's.
            assert_eq!(app.data("{ __typename }", json!({})).await["__typename"], "Query");
        },
    )
    .await;
}
