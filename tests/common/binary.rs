//! The real `hookline` binary, started as a user would, for crash and multi-process tests.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

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

/// A `hookline` command in `dir` with a clean environment.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command.current_dir(dir).env_clear().stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

impl Server {
    /// Starts `hookline serve` on a free port with these variables and waits until it listens.
    pub fn start(dir: &Path, env: &[(&str, String)]) -> Self {
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
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("hookline: {line}");
                }
                if let Some(addr) = line.split("addr=").nth(1) {
                    tx.send(addr.split_whitespace().next().unwrap_or_default().to_owned()).ok();
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("hookline reports its address");
        let data_dir = env
            .iter()
            .find(|(key, _)| *key == "HOOKLINE_DATA_DIR")
            .map_or_else(|| dir.join("data"), |(_, value)| value.into());
        let token = super::admin_token(&data_dir);
        Self { child, addr: addr.parse().expect("an address"), client: super::client_with(&token), token }
    }

    /// The `data` of a GraphQL request that must succeed.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let response: Value = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON");
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
