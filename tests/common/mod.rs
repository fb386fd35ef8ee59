//! The test harness: the real application on port 0, on a fresh SQLite database and, when
//! `TEST_POSTGRES_URL` names a PostgreSQL server, on a fresh PostgreSQL database too.
#![allow(dead_code)]

pub mod binary;
pub mod receiver;
pub mod ws;

use std::{net::SocketAddr, time::Duration};

use hookline::{Application, config::Config};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The admin URL of the PostgreSQL server the suite also runs on, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_ENV: &str = "TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running hookline, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub backend: Backend,
    pub state: hookline::AppState,
    /// The super-admin token the server wrote to `admin.token` at its first start; every
    /// request of [`TestApp::query`] carries it.
    pub token: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    /// The server's data directory (on SQLite, its database file `hookline.db`).
    pub data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Runs `test` against a fresh application on every backend available.
pub async fn each_backend(test: impl AsyncFn(&TestApp)) {
    each_backend_with(|_| {}, test).await;
}

/// The configuration tests run with: retries after 100 ms, a 2 s timeout, quick polling.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::for_data_dir(dir.join("data"));
    config.delivery.retry.schedule = vec![Duration::from_millis(100)];
    config.delivery.retry.jitter = 0.0;
    config.delivery.http_timeout = Duration::from_secs(2);
    config.delivery.poll_interval = Duration::from_millis(50);
    // The receivers of the tests listen on loopback.
    config.delivery.targets.allow_private = true;
    // A debug build on a loaded two-core machine may take more than the 100 ms a rendering
    // gets in production; the time limit has its own tests.
    config.delivery.templates.timeout = Duration::from_secs(5);
    config
}

/// Like [`each_backend`], with the test configuration changed by `configure` first.
pub async fn each_backend_with(configure: impl Fn(&mut Config), test: impl AsyncFn(&TestApp)) {
    test(&TestApp::spawn_on(Backend::Sqlite, None, &configure).await).await;
    if let Ok(admin_url) = std::env::var(POSTGRES_ENV) {
        let name = format!("hookline_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.expect("connect to the PostgreSQL server");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        {
            let app = TestApp::spawn_on(Backend::Postgres, Some(&database_url(&admin_url, &name)), &configure).await;
            test(&app).await;
        }
        // The server task closes its pool once stopped; FORCE ends whatever is left.
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
    }
}

/// The admin URL with its database replaced.
pub fn database_url(admin_url: &str, database: &str) -> String {
    let mut url = url::Url::parse(admin_url).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

impl TestApp {
    async fn spawn_on(backend: Backend, database_url: Option<&str>, configure: &dyn Fn(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        configure(&mut config);
        if let Some(url) = database_url {
            config = config.with_database_url(url).expect("database url").with_secret_key(rand_key());
        }
        let data_dir = config.data_dir.clone();
        let app = Application::build(config).await.expect("application builds");
        let token = admin_token(&data_dir);
        let addr = app.local_addr();
        let state = app.state().clone();
        let shutdown = app.shutdown_token();
        tokio::spawn(app.run_until_stopped());
        Self { addr, backend, state, client: client_with(&token), token, shutdown, data_dir, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts a GraphQL request and returns the whole response.
    pub async fn query(&self, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("request sent");
        response.json().await.expect("a JSON response")
    }

    /// The `data` of a request that must succeed.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let response = self.query(query, variables).await;
        assert!(response.get("errors").is_none(), "unexpected errors ({:?}): {response}", self.backend);
        response["data"].clone()
    }

    /// `(extensions.code, message)` of the first error of a request that must fail.
    pub async fn error(&self, query: &str, variables: Value) -> (String, String) {
        let response = self.query(query, variables).await;
        let error = &response["errors"][0];
        assert!(error.is_object(), "expected an error ({:?}), got {response}", self.backend);
        let code = error["extensions"]["code"].as_str().unwrap_or("<none>").to_owned();
        (code, error["message"].as_str().unwrap_or_default().to_owned())
    }

    /// Asserts that the request fails with `code` and a message containing `needle`.
    pub async fn assert_error(&self, query: &str, variables: Value, code: &str, needle: &str) {
        let (got_code, message) = self.error(query, variables).await;
        assert_eq!(got_code, code, "message: {message} ({:?})", self.backend);
        assert!(message.contains(needle), "`{message}` should contain `{needle}` ({:?})", self.backend);
    }

    /// Polls `queuedWebhooks` until every row is in one of `statuses` and there are at least
    /// `count` rows; returns the rows (newest first).
    pub async fn wait_queue(&self, count: usize, statuses: &[&str]) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let data = self.data(QUEUE_QUERY, json!({})).await;
            let rows: Vec<Value> =
                data["queuedWebhooks"]["edges"].as_array().into_iter().flatten().map(|e| e["node"].clone()).collect();
            let settled = rows.iter().all(|r| statuses.contains(&r["status"].as_str().unwrap_or_default()));
            if rows.len() >= count && settled {
                return rows;
            }
            assert!(std::time::Instant::now() < deadline, "queue did not settle ({:?}): {rows:?}", self.backend);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The whole response of a GraphQL request made with `client` (another token's).
    pub async fn query_with(&self, client: &reqwest::Client, query: &str, variables: Value) -> Value {
        let body = json!({"query": query, "variables": variables});
        let response = client.post(self.url("/graphql")).json(&body).send().await.expect("request sent");
        response.json().await.expect("a JSON response")
    }

    /// The `data` of a request made with `client` that must succeed.
    pub async fn data_with(&self, client: &reqwest::Client, query: &str, variables: Value) -> Value {
        let response = self.query_with(client, query, variables).await;
        assert!(response.get("errors").is_none(), "{query} ({:?}): {response}", self.backend);
        response["data"].clone()
    }

    /// Creates a webhook on new tickets named `name`, delivering to `url`, with the `extra`
    /// settings laid over; returns its id.
    pub async fn ticket_webhook(&self, name: &str, url: &str, extra: Value) -> String {
        let mut input = json!({"name": name, "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": url});
        input.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        let query = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
        self.data(query, json!({"input": input})).await["createWebhook"]["id"].as_str().expect("id").to_owned()
    }

    /// Issues a token through the API (as the super-admin); returns the token and its id.
    pub async fn issue_token(&self, input: Value) -> (String, String) {
        let query = "mutation($i: ApiTokenInput!) { createApiToken(input: $i) { token apiToken { id } } }";
        let created = &self.data(query, json!({"i": input})).await["createApiToken"];
        (
            created["token"].as_str().expect("token").to_owned(),
            created["apiToken"]["id"].as_str().expect("id").to_owned(),
        )
    }

    /// A client with a new token of `profile` for `user` on `entities` (every entity when
    /// empty).
    pub async fn client_as(&self, user: &str, profile: &str, entities: Value) -> reqwest::Client {
        let mut input = json!({"user": user, "profile": profile});
        if entities.as_array().is_some_and(|list| !list.is_empty()) {
            input["entities"] = entities;
        }
        client_with(&self.issue_token(input).await.0)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }
}

/// Every field of every queued webhook, newest first.
pub const QUEUE_QUERY: &str = "{ queuedWebhooks(first: 300) { totalCount edges { node { id webhookId itemtype itemId entityId event url httpMethod headers body status sentTry maxAttempts deliveryId createTime sendTime sentTime lastStatusCode responseBody lastError } } } }";

/// The super-admin token a server wrote to its data directory at its first start.
pub fn admin_token(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("admin.token");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{} is readable: {e}", path.display())).trim().to_owned()
}

/// An HTTP client whose every request carries `Authorization: Bearer <token>`.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    hookline::crypto::install();
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

pub fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).enumerate() {
        key[i] = *b;
    }
    key
}

/// Writes a queued row as a process would have left it, with `fields` laid over a pending
/// `new` row of webhook 1 to a closed port on loopback; returns its id.
pub async fn insert_queued(db: &impl ConnectionTrait, fields: Value) -> i64 {
    use sea_orm::ActiveModelTrait;
    let now = chrono::Utc::now();
    let mut row = json!({
        "id": 0, "webhook_id": 1, "itemtype": "Ticket", "item_id": "1", "entity_id": 0, "event": "new",
        "url": "http://127.0.0.1:1/", "http_method": "POST", "headers": {}, "body": "{}", "status": "pending",
        "sent_try": 0, "max_attempts": 3, "delivery_id": uuid::Uuid::new_v4().to_string(),
        "create_time": now, "send_time": now, "sent_time": null, "last_status_code": null,
        "response_body": null, "last_error": null, "save_response_body": false, "log_in_item_history": false,
        "lease_until": null, "claim_token": null, "claimed_by": null, "traceparent": null,
    });
    for (key, value) in fields.as_object().expect("an object") {
        row[key] = value.clone();
    }
    let model: entity::queued_webhooks::Model = serde_json::from_value(row).expect("a queued row");
    let mut row: entity::queued_webhooks::ActiveModel = model.into();
    row.id = sea_orm::NotSet;
    row.insert(db).await.expect("the queued row").id
}
