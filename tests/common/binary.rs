//! The real `hookline` binary, started as a user would, for crash and multi-process tests.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// The lines a server wrote to stderr, and whether it has closed it (exited).
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>, std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Log {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every line, once the server has exited and they have all been read.
    pub fn all(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.1.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the server's stderr did not close");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.lines()
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The super-admin token of the data directory (written by the first server to start).
    pub token: String,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The settings of a binary test's server: its data directory under `dir`, quick retries and
/// polling, the database's variables, then `extra`.
pub fn quick_env(
    dir: &Path,
    database: &[(&'static str, String)],
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HOOKLINE_DATA_DIR", dir.join("data").display().to_string()),
        ("HOOKLINE_RETRY_SCHEDULE", "100ms".into()),
        ("HOOKLINE_RETRY_JITTER", "0".into()),
        ("HOOKLINE_POLL_INTERVAL", "50ms".into()),
        ("HOOKLINE_HTTP_TIMEOUT", "2s".into()),
    ];
    env.extend(database.iter().cloned());
    env.extend(extra.iter().cloned());
    env
}

/// The backends a binary test runs on: SQLite always, PostgreSQL when `TEST_POSTGRES_URL` is
/// set (a fresh database, and the secret key its processes share); each as a name and the
/// variables that select it.
pub async fn databases() -> Vec<(String, Vec<(&'static str, String)>)> {
    let mut out = vec![("sqlite".to_owned(), Vec::new())];
    if let Ok(admin_url) = std::env::var(super::POSTGRES_ENV) {
        let name = format!("hookline_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.expect("connect");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, super::rand_key());
        out.push((
            "postgres".to_owned(),
            vec![("HOOKLINE_DATABASE_URL", super::database_url(&admin_url, &name)), ("HOOKLINE_SECRET_KEY", key)],
        ));
    }
    out
}

/// Drops the PostgreSQL database of one of [`databases`] (nothing for SQLite), once its
/// servers are stopped.
pub async fn drop_database(database: &[(&'static str, String)]) {
    let (Ok(admin_url), Some((_, url))) =
        (std::env::var(super::POSTGRES_ENV), database.iter().find(|(key, _)| *key == "HOOKLINE_DATABASE_URL"))
    else {
        return;
    };
    let name = url::Url::parse(url).map(|u| u.path().trim_start_matches('/').to_owned()).unwrap_or_default();
    if let Ok(admin) = Database::connect(&admin_url).await {
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
    }
}

/// A `hookline` command in `dir` with a clean environment.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command.current_dir(dir).env_clear().stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

impl Server {
    /// Starts `hookline serve` on a free port with these variables and waits until it listens.
    pub fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        Self::start_logged(dir, env).0
    }

    /// Like [`Server::start`], keeping every line the server writes to stderr (text or JSON
    /// logs) until it exits.
    pub fn start_logged(dir: &Path, env: &[(&str, String)]) -> (Self, Log) {
        let mut command = command(dir);
        command
            .arg("serve")
            .env("HOOKLINE_LISTEN", "127.0.0.1:0")
            .env("HOOKLINE_LOG", "info")
            // The receivers of the tests listen on loopback.
            .env("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("hookline starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = Log::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("hookline: {line}");
                }
                if line.contains("hookline listening") {
                    // `addr=…` in text, `"addr":"…"` in JSON.
                    let text = line.split("addr=").nth(1).and_then(|a| a.split_whitespace().next());
                    let json = || line.split("\"addr\":\"").nth(1).and_then(|a| a.split('"').next());
                    tx.send(text.or_else(json).unwrap_or_default().to_owned()).ok();
                }
                kept.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
            kept.1.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("hookline reports its address");
        let data_dir = env
            .iter()
            .find(|(key, _)| *key == "HOOKLINE_DATA_DIR")
            .map_or_else(|| dir.join("data"), |(_, value)| value.into());
        let token = super::admin_token(&data_dir);
        (Self { child, addr: addr.parse().expect("an address"), client: super::client_with(&token), token }, log)
    }

    /// The whole answer of a GraphQL request.
    pub async fn query(&self, query: &str, variables: Value) -> Value {
        query_at(&self.client, self.addr, query, variables).await
    }

    /// The `data` of a GraphQL request that must succeed.
    /// Creates a webhook on new Tickets named `name`, with `input` over those defaults; its id.
    pub async fn create_webhook(&self, name: &str, input: Value) -> String {
        let mut base = json!({"name": name, "entityId": "0", "itemtype": "Ticket", "event": "NEW"});
        base.as_object_mut().expect("object").extend(input.as_object().expect("object").clone());
        let query = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
        let data = self.data(query, json!({"input": base})).await;
        data["createWebhook"]["id"].as_str().expect("id").to_owned()
    }

    pub async fn data(&self, query: &str, variables: Value) -> Value {
        data_at(&self.client, self.addr, query, variables).await
    }

    /// The `data` of a GraphQL request that must succeed, sent with these extra headers.
    pub async fn data_with_headers(&self, headers: &[(&str, &str)], query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({"query": query, "variables": variables}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response: Value = request.send().await.expect("request sent").json().await.expect("JSON");
        assert!(response.get("errors").is_none(), "{response}");
        response["data"].clone()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().ok();
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success());
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

/// The whole answer of a GraphQL request to the server at `addr`, sent by `client` (from a task
/// that cannot hold the [`Server`]).
pub async fn query_at(client: &reqwest::Client, addr: SocketAddr, query: &str, variables: Value) -> Value {
    client
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON")
}

/// The `data` of a GraphQL request to the server at `addr` that must succeed.
pub async fn data_at(client: &reqwest::Client, addr: SocketAddr, query: &str, variables: Value) -> Value {
    let response = query_at(client, addr, query, variables).await;
    assert!(response.get("errors").is_none(), "{response}");
    response["data"].clone()
}
