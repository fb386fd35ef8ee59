//! The `hookline` binary as a user runs it: no configuration, bad configuration, `migrate`,
//! SIGTERM; and the HTTP routes around GraphQL.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{each_backend, ws};
use serde_json::json;

fn hookline(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command.current_dir(dir).env_clear().stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Starts `hookline` and waits for the line that says where it listens.
fn start(mut command: Command) -> (Child, SocketAddr) {
    let mut child = command.spawn().expect("hookline starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1) {
                tx.send(addr.split_whitespace().next().unwrap_or_default().to_owned()).ok();
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("hookline reports its address");
    (child, addr.parse().expect("an address"))
}

#[tokio::test]
async fn serve_runs_on_embedded_sqlite_without_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = hookline(dir.path());
    command.env("HOOKLINE_LISTEN", "127.0.0.1:0");
    let (mut child, addr) = start(command);
    // reqwest is built without a crypto provider of its own; run alone, this test installs it.
    hookline::crypto::install();
    let health = reqwest::get(format!("http://{addr}/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200);
    assert!(dir.path().join("data/hookline.db").exists(), "the database lives in ./data");
    assert!(dir.path().join("data/secret.key").exists(), "a key file is created for stored secrets");

    // SIGTERM stops it gracefully, and its connections close: SQLite copies the WAL into the
    // database and removes it, so that the file alone holds everything.
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("exits");
    assert!(exit.success(), "{exit:?}");
    let wal = std::fs::metadata(dir.path().join("data/hookline.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal, 0, "the WAL still held {wal} bytes after a graceful stop");
}

#[test]
fn invalid_configuration_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |configure: &dyn Fn(&mut Command)| {
        let mut command = hookline(dir.path());
        configure(&mut command);
        let output = command.output().expect("runs");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(&|c| {
        c.env("HOOKLINE_LISTEN", "nowhere");
    });
    assert!(stderr.contains("HOOKLINE_LISTEN"), "{stderr}");
    let stderr = run(&|c| {
        c.env("HOOKLINE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres");
    });
    assert!(stderr.contains("HOOKLINE_SECRET_KEY"), "{stderr}");
    let stderr = run(&|c| {
        c.env("HOOKLINE_SECRET_KEY", "dG9vIHNob3J0");
    });
    assert!(stderr.contains("HOOKLINE_SECRET_KEY"), "{stderr}");
    let stderr = run(&|c| {
        c.env("HOOKLINE_RETRY_SCHEDULE", "10s,later");
    });
    assert!(stderr.contains("HOOKLINE_RETRY_SCHEDULE"), "{stderr}");
    let stderr = run(&|c| {
        c.env("HOOKLINE_MAX_IN_FLIGHT", "0");
    });
    assert!(stderr.contains("HOOKLINE_MAX_IN_FLIGHT"), "{stderr}");
    let stderr = run(&|c| {
        c.env("HOOKLINE_HTTP_TIMEOUT", "soon");
    });
    assert!(stderr.contains("HOOKLINE_HTTP_TIMEOUT"), "{stderr}");
    for (key, value) in [
        ("HOOKLINE_ALLOWED_NETWORKS", "10.0.0.0/8, intranet"),
        ("HOOKLINE_SUBSCRIPTION_RATE", "0"),
        ("HOOKLINE_WS_PING_INTERVAL", "0s"),
        ("HOOKLINE_CRA_CACHE", "a while"),
    ] {
        let stderr = run(&|c| {
            c.env(key, value);
        });
        assert!(stderr.contains(key), "{key}: {stderr}");
    }

    let file = dir.path().join("hookline.toml");
    std::fs::write(&file, "database_max_connections = \"many\"\n").expect("write config");
    let stderr = run(&|c| {
        c.arg("--config").arg(&file);
    });
    assert!(stderr.contains("database_max_connections"), "{stderr}");
    std::fs::write(&file, "listen = \"127.0.0.1:99999\"\n").expect("write config");
    let stderr = run(&|c| {
        c.arg("--config").arg(&file);
    });
    assert!(stderr.contains("listen"), "{stderr}");
    let stderr = run(&|c| {
        c.arg("--config").arg(dir.path().join("missing.toml"));
    });
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn the_environment_overrides_the_configuration_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hookline.toml");
    std::fs::write(&file, "data_dir = \"from-file\"\nlisten = \"nowhere\"\n").expect("write config");
    let mut command = hookline(dir.path());
    command.arg("--config").arg(&file).arg("migrate").env("HOOKLINE_LISTEN", "127.0.0.1:0");
    let output = command.output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("from-file/hookline.db").exists(), "migrate used the file's data_dir");
}

#[test]
fn migrate_prepares_the_database_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = hookline(dir.path());
    command.arg("migrate").env("HOOKLINE_DATA_DIR", dir.path().join("state"));
    let output = command.output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("state/hookline.db").exists());
    // Running it again is harmless.
    let output =
        hookline(dir.path()).arg("migrate").env("HOOKLINE_DATA_DIR", dir.path().join("state")).output().expect("runs");
    assert!(output.status.success());
}

#[tokio::test]
async fn get_graphql_serves_graphiql_and_health_routes_answer() {
    each_backend(async |app| {
        let page = app.get("/graphql").await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap_or_default().to_lowercase().contains("graphiql"));
        assert_eq!(app.get("/healthz").await.status(), 200);
        assert_eq!(app.get("/readyz").await.status(), 200);
    })
    .await;
}

#[tokio::test]
async fn websocket_operations_run_and_bad_variables_are_validation_errors() {
    each_backend(async |app| {
        let mut ws = ws::connect(app.addr, &app.token).await;
        ws::subscribe(&mut ws, "1", "{ entities { name } }", json!({})).await;
        let next = ws::next(&mut ws).await;
        assert_eq!(next["type"], "next");
        assert_eq!(next["payload"]["data"]["entities"][0]["name"], "Root entity");
        assert_eq!(ws::next(&mut ws).await["type"], "complete");

        let query = "mutation($e: WebhookEvent!) { createWebhook(input: {name: \"w\", entityId: 0, itemtype: \"Ticket\", event: $e, url: \"https://example.org\"}) { id } }";
        ws::subscribe(&mut ws, "2", query, json!({"e": "EXPLODE"})).await;
        let reply = ws::next(&mut ws).await;
        let errors = if reply["type"] == "error" { reply["payload"].clone() } else { reply["payload"]["errors"].clone() };
        assert_eq!(errors[0]["extensions"]["code"], "VALIDATION", "{reply}");
        assert_eq!(ws::next(&mut ws).await, json!({"id": "2", "type": "complete"}));

        ws::subscribe(&mut ws, "3", "mutation { createEntity(input: {name: \"\"}) { id } }", json!({})).await;
        let reply = ws::next(&mut ws).await;
        assert_eq!(reply["payload"]["errors"][0]["extensions"]["code"], "VALIDATION", "{reply}");
    })
    .await;
}
