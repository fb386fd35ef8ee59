//! Headless Chromium driven through WebDriver (chromedriver, with fantoccini): open pages,
//! type, click, read, take screenshots, and see every request the pages made and every
//! problem they reported.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element, wd::WebDriverCompatibleCommand};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// How long anything the browser does may take before the test fails (generous: a debug
/// server on a loaded two-core machine).
pub const WAIT: Duration = Duration::from_secs(30);

/// Chromium and chromedriver, when both are installed (`$CHROMIUM` and `$CHROMEDRIVER`, else
/// on the `PATH`).
pub fn find_tools() -> Option<(PathBuf, PathBuf)> {
    let on_path = |names: &[&str]| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    };
    let chromium =
        std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| on_path(&["chromium", "chromium-browser"]))?;
    let driver = std::env::var_os("CHROMEDRIVER").map(PathBuf::from).or_else(|| on_path(&["chromedriver"]))?;
    Some((chromium, driver))
}

/// The tools, or None after saying why the test is skipped; in CI (`CI` set) a missing browser
/// fails the test instead.
pub fn tools_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    let found = find_tools();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: Chromium or chromedriver is missing (.ci/run installs chromium and chromium-driver)"
        );
        eprintln!(
            "SKIPPED {test}: Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// A command of chromedriver's own under `/session/{id}/…` (its logs, the DevTools protocol).
#[derive(Debug)]
struct SessionCommand {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.body.to_string()))
    }
}

/// A browser session, with chromedriver and Chromium ended when dropped.
pub struct Browser {
    client: Client,
    driver: Child,
    /// Chromium's process, killed if the session did not close it.
    chromium_pid: Option<u64>,
    /// Every network event and log entry read so far.
    requests: Vec<String>,
    /// Addresses by DevTools request id.
    urls: std::collections::HashMap<String, String>,
    problems: Vec<String>,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed never closed the session: end the browser it started.
        if let Some(pid) = self.chromium_pid {
            std::process::Command::new("kill").arg("-9").arg(pid.to_string()).stderr(Stdio::null()).status().ok();
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium through it, with a
    /// 1280×800 viewport, no name resolved but loopback, and network and console logging on.
    /// Screenshots go to `shots`.
    pub async fn launch(chromium: &Path, chromedriver: &Path, shots: PathBuf) -> Self {
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = BufReader::new(driver.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromedriver says which port it listens on");
        // Keep reading, so that chromedriver never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-default-apps",
                    "--disable-sync",
                    "--disable-features=Translate,OptimizationHints,MediaRouter",
                    "--password-store=basic",
                    // No name resolves: a page that wanted another site could not reach it.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--window-size=1280,1000",
                    // (No --user-data-dir: chromedriver's own profile, made for automation,
                    // opens no new-tab page, which would fetch from the internet.)
                ],
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}/"))
            .await
            .expect("a WebDriver session starts");
        let chromium_pid = client.capabilities().and_then(|c| c.get("goog:processID")).and_then(Value::as_u64);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        let mut browser = Self {
            client,
            driver,
            chromium_pid,
            requests: Vec::new(),
            urls: std::collections::HashMap::new(),
            problems: Vec::new(),
            shots,
        };
        browser.viewport(1280, 800, false).await;
        browser
    }

    /// Sets the page's size (CSS pixels); `mobile` as a phone (touch, device scale 2).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        let scale = if mobile { 2 } else { 1 };
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}),
        )
        .await;
    }

    /// Runs a DevTools protocol command.
    async fn cdp(&self, command: &str, params: Value) -> Value {
        let body = json!({"cmd": command, "params": params});
        self.client.issue_cmd(SessionCommand { path: "goog/cdp/execute", body }).await.expect(command)
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The value of a JavaScript expression.
    pub async fn eval(&self, expression: &str) -> Value {
        let script = format!("return ({expression});");
        self.client.execute(&script, vec![]).await.unwrap_or_else(|e| panic!("`{expression}` failed: {e}"))
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
                let page = self.eval("location.href + '\\n' + document.body.innerText.slice(0, 3000)").await;
                let problems = self.problems().await;
                panic!("`{expression}` is still {value}; problems: {problems:?}; the page: {page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element `selector` matches, once there is one with text that
    /// `ready` accepts.
    pub async fn wait_text(&mut self, selector: &str, ready: impl Fn(&str) -> bool) -> String {
        let expression = format!("document.querySelector({})?.textContent ?? null", js_string(selector));
        let value = self.wait_for(&expression, |v| v.as_str().is_some_and(&ready)).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The element `selector` matches, once it is there and shown.
    pub async fn element(&mut self, selector: &str) -> Element {
        let expression = format!(
            "(e => !!e && !e.closest('[hidden]') && e.getClientRects().length > 0)(document.querySelector({}))",
            js_string(selector)
        );
        self.wait_for(&expression, |v| v == &Value::Bool(true)).await;
        self.client.find(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("{selector}: {e}"))
    }

    pub async fn click(&mut self, selector: &str) {
        let element = self.element(selector).await;
        element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// Types into a field (key by key, as a person would).
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        let element = self.element(selector).await;
        element.send_keys(text).await.unwrap_or_else(|e| panic!("type into {selector}: {e}"));
    }

    /// Empties a field, then types into it.
    pub async fn fill(&mut self, selector: &str, text: &str) {
        let element = self.element(selector).await;
        element.clear().await.unwrap_or_else(|e| panic!("clear {selector}: {e}"));
        element.send_keys(text).await.unwrap_or_else(|e| panic!("type into {selector}: {e}"));
    }

    /// Chooses an option of a `<select>` by its value.
    pub async fn choose(&mut self, selector: &str, value: &str) {
        let element = self.element(selector).await;
        element.select_by_value(value).await.unwrap_or_else(|e| panic!("choose {value} in {selector}: {e}"));
    }

    /// Saves a PNG of the viewport as `<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Reads the logs chromedriver kept since the last call.
    async fn read_logs(&mut self) {
        let performance = self
            .client
            .issue_cmd(SessionCommand { path: "se/log", body: json!({"type": "performance"}) })
            .await
            .expect("performance log");
        for entry in performance.as_array().into_iter().flatten() {
            let message: Value =
                serde_json::from_str(entry["message"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
            let event = &message["message"];
            match event["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    let url = event["params"]["request"]["url"].as_str().unwrap_or_default().to_owned();
                    if let Some(id) = event["params"]["requestId"].as_str() {
                        self.urls.insert(id.to_owned(), url.clone());
                    }
                    self.requests.push(url);
                }
                Some("Network.webSocketCreated") => {
                    self.requests.push(event["params"]["url"].as_str().unwrap_or_default().to_owned());
                }
                Some("Network.loadingFailed") => {
                    let params = &event["params"];
                    // A fetch the page itself abandons (a route change) is not a problem.
                    if params["canceled"] != Value::Bool(true) {
                        let url = params["requestId"].as_str().and_then(|id| self.urls.get(id));
                        self.problems.push(format!("load of {url:?} failed: {params}"));
                    }
                }
                _ => {}
            }
        }
        let console = self.client.issue_cmd(SessionCommand { path: "se/log", body: json!({"type": "browser"}) }).await;
        for entry in console.expect("browser log").as_array().into_iter().flatten() {
            if matches!(entry["level"].as_str(), Some("SEVERE" | "WARNING")) {
                self.problems.push(entry["message"].as_str().unwrap_or_default().to_owned());
            }
        }
    }

    /// Every request the pages made so far (HTTP and WebSocket addresses), in order.
    pub async fn requests(&mut self) -> Vec<String> {
        self.read_logs().await;
        self.requests.clone()
    }

    /// Every error and warning the pages reported so far (console, policy violations,
    /// uncaught exceptions, failed loads).
    pub async fn problems(&mut self) -> Vec<String> {
        self.read_logs().await;
        self.problems.clone()
    }

    /// Ends the session (and Chromium with it), then chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        client.close().await.expect("the WebDriver session closes");
        self.chromium_pid = None;
        self.driver.kill().await.ok();
    }
}

/// A JavaScript string literal.
pub fn js_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}
