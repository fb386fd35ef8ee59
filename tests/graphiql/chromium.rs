//! Headless Chromium driven over the DevTools protocol (a WebSocket): open a page, evaluate
//! JavaScript in it, and see what it loaded and what it complained about.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tokio_tungstenite::tungstenite::Message;

/// How long anything the browser does may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// `$CHROMIUM`, else `chromium` or `chromium-browser` on the `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running headless Chromium with a profile of its own, killed when dropped.
pub struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    /// Events of every session, in the order they came.
    events: Vec<Value>,
    /// What Chromium printed, for the message of a failure.
    log: Arc<Mutex<String>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch(binary: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // No name resolves: a page that wanted another site could not reach it.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("Chromium starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let endpoint = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(endpoint) = line.strip_prefix("DevTools listening on ") {
                    return Some(endpoint.trim().to_owned());
                }
                log.lock().expect("log").push_str(&format!("{line}\n"));
            }
            None
        })
        .await;
        let Ok(Some(endpoint)) = endpoint else {
            panic!("Chromium gave no DevTools address; it printed:\n{}", log.lock().expect("log"));
        };
        // Keep reading, so that Chromium never blocks on a full pipe.
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log").push_str(&format!("{line}\n"));
            }
        });
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str()).await.expect("DevTools connects");
        Self { child, socket, next_id: 0, events: Vec::new(), log, _profile: profile }
    }

    /// Sends a command (to a page when `session` is given) and returns its result; events
    /// that come meanwhile are kept.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(command.to_string())).await.expect("DevTools command sent");
        loop {
            let message = self.receive(WAIT).await.unwrap_or_else(|| panic!("no answer to {method}: {}", self.log()));
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
        }
    }

    /// The next message within `wait`, events kept aside.
    async fn receive(&mut self, wait: Duration) -> Option<Value> {
        let message = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
        let Some(Ok(Message::Text(text))) = message else {
            panic!("the DevTools connection ended ({message:?}): {}", self.log());
        };
        let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
        if value.get("method").is_some() {
            self.events.push(value.clone());
        }
        Some(value)
    }

    fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Opens `url` in a new tab, watching its network, console and log.
    pub async fn open(&mut self, url: &str) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"})).await;
        let attached =
            self.call(None, "Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true})).await;
        let session = attached["sessionId"].as_str().expect("a session").to_owned();
        for domain in ["Runtime", "Log", "Network", "Page"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({})).await;
        }
        self.call(Some(&session), "Page.navigate", json!({"url": url})).await;
        Page { browser: self, session }
    }

    /// Closes Chromium and waits for it to end.
    pub async fn close(mut self) {
        self.next_id += 1;
        let command = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        self.socket.send(Message::text(command.to_string())).await.ok();
        let closed = tokio::time::timeout(WAIT, self.child.wait()).await;
        assert!(matches!(closed, Ok(Ok(status)) if status.success()), "Chromium did not close: {closed:?}");
    }
}

/// A tab of the browser.
pub struct Page<'a> {
    browser: &'a mut Browser,
    session: String,
}

impl Page<'_> {
    /// The value of a JavaScript expression (awaited when a promise); fails on an exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.browser.call(Some(&self.session), "Runtime.evaluate", params).await;
        assert!(result.get("exceptionDetails").is_none(), "`{expression}` threw: {result}");
        result["result"].get("value").cloned().unwrap_or(Value::Null)
    }

    /// Evaluates `expression` until `ready` accepts its value, which it returns.
    pub async fn wait_for(&mut self, expression: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.eval(expression).await;
            if ready(&value) {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                let events = self.events().await;
                let page =
                    self.eval("document.location.href + ' ' + document.documentElement.outerHTML.slice(0, 2000)").await;
                panic!(
                    "`{expression}` is still {value}; the page's problems: {:?}; the page: {page}",
                    events.problems()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the page has reported so far.
    pub async fn events(&mut self) -> Events {
        // Collect what is already on its way.
        while self.browser.receive(Duration::from_millis(200)).await.is_some() {}
        let session = Value::from(self.session.as_str());
        Events(self.browser.events.iter().filter(|event| event["sessionId"] == session).cloned().collect())
    }

    /// Waits until the page's events satisfy `ready`, and returns them.
    pub async fn wait_event(&mut self, ready: impl Fn(&Events) -> bool) -> Events {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = self.events().await;
            if ready(&events) {
                return events;
            }
            assert!(tokio::time::Instant::now() < deadline, "the awaited event did not come");
        }
    }
}

/// DevTools events of one page.
pub struct Events(Vec<Value>);

impl Events {
    fn of<'a>(&'a self, method: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0.iter().filter(move |event| event["method"] == method).map(|event| &event["params"])
    }

    /// The address of every HTTP request.
    pub fn requests(&self) -> Vec<String> {
        self.of("Network.requestWillBeSent")
            .map(|p| p["request"]["url"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The address of every WebSocket opened.
    pub fn websockets(&self) -> Vec<String> {
        self.of("Network.webSocketCreated").map(|p| p["url"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// `(address, status)` of every HTTP response.
    pub fn responses(&self) -> Vec<(String, u64)> {
        self.of("Network.responseReceived")
            .map(|p| {
                (
                    p["response"]["url"].as_str().unwrap_or_default().to_owned(),
                    p["response"]["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Errors and warnings: of the browser (a policy violation), of the console, exceptions
    /// nothing caught, and loads that failed.
    pub fn problems(&self) -> Vec<String> {
        let logged = self
            .of("Log.entryAdded")
            .filter(|p| matches!(p["entry"]["level"].as_str(), Some("error" | "warning")))
            .map(|p| format!("{}: {} ({})", p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]));
        let console = self
            .of("Runtime.consoleAPICalled")
            .filter(|p| matches!(p["type"].as_str(), Some("error" | "warning" | "assert")))
            .map(|p| format!("console.{}: {}", p["type"], p["args"]));
        let thrown = self.of("Runtime.exceptionThrown").map(|p| format!("uncaught: {}", p["exceptionDetails"]));
        let failed = self.of("Network.loadingFailed").map(|p| format!("load failed: {p}"));
        logged.chain(console).chain(thrown).chain(failed).collect()
    }
}
