//! The console in a real browser: headless Chromium driven through WebDriver (chromedriver)
//! against the real server and a real receiver, on SQLite and PostgreSQL. Every request the
//! pages make is recorded, and one to another host fails the test. Each page is saved as a
//! screenshot under the target directory (`$CARGO_TARGET_TMPDIR/console/`).
//!
//! Without Chromium and chromedriver the tests are skipped with a message, except in CI
//! (`CI` set), where they fail.

mod common;

#[path = "console/browser.rs"]
mod browser;
#[path = "console/proxy.rs"]
mod proxy;

use std::path::PathBuf;

use browser::{Browser, tools_or_skip};
use common::{
    Backend, TestApp, each_backend,
    receiver::{Receiver, Reply},
};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// One browser at a time: the machine has two cores, and the server under test needs them.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")
}

fn backend(app: &TestApp) -> &'static str {
    match app.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

async fn launch(app: &TestApp, tools: &(PathBuf, PathBuf)) -> Browser {
    let browser = Browser::launch(&tools.0, &tools.1, shots()).await;
    browser.goto(&app.url("/")).await;
    browser
}

/// Signs in with the test server's super-admin token and waits for the queue page.
async fn sign_in(browser: &mut Browser, app: &TestApp) {
    browser.fill("input[name=token]", &app.token).await;
    browser.click("form.sign-in button[type=submit]").await;
    browser.wait_text("main h1", |t| t == "Queue").await;
}

/// Fails on any request to another host than the server's own (at `origin`), and on any
/// problem the pages reported but those listed in `expected` (substrings).
async fn assert_only_own_requests(browser: &mut Browser, origin: std::net::SocketAddr, expected: &[&str]) {
    let requests = browser.requests().await;
    assert!(requests.iter().any(|r| r.ends_with("/assets/console/js/main.js")), "{requests:?}");
    assert!(requests.iter().any(|r| r.starts_with("ws://")), "the live views use a WebSocket: {requests:?}");
    let own = [format!("http://{origin}/"), format!("ws://{origin}/")];
    for request in &requests {
        // (chromedriver's first blank tab)
        let blank = request == "data:," || request == "about:blank";
        assert!(own.iter().any(|o| request.starts_with(o.as_str())) || blank, "a request to another host: {request}");
    }
    let problems: Vec<String> =
        browser.problems().await.into_iter().filter(|p| !expected.iter().any(|e| p.contains(e))).collect();
    assert_eq!(problems, Vec::<String>::new(), "the pages reported problems");
}

async fn create_ticket(app: &TestApp, name: &str, priority: i64) -> String {
    let query = "mutation($i: ItemInput!) { createItem(input: $i) { id } }";
    let input = json!({"itemtype": "Ticket", "entityId": "0", "name": name, "fields": {"priority": priority}});
    app.data(query, json!({"i": input})).await["createItem"]["id"].as_str().unwrap_or_default().to_owned()
}

fn hex_hmac(key: &[u8], message: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    mac.update(message);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

const CONSOLE_CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The modules a module imports (`from './x.js'`), as paths beside it.
fn imports(source: &str) -> Vec<String> {
    source
        .match_indices("from './")
        .filter_map(|(at, _)| source[at + "from './".len()..].split('\'').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_console_and_every_module_it_loads_come_from_hookline_under_a_strict_policy() {
    each_backend(async |app: &TestApp| {
        let page = app.get("/").await;
        assert_eq!(page.status(), 200);
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "content-security-policy"), CONSOLE_CSP);
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        assert_eq!(header(&page, "referrer-policy"), "no-referrer");
        let html = page.text().await.expect("page");
        assert_eq!(html.matches("<script").count(), 1, "one script: {html}");
        assert!(html.contains("<script type=\"module\" src=\"assets/console/js/main.js\"></script>"), "{html}");
        assert!(!html.contains("style=") && !html.contains("<style"), "no inline style: {html}");
        assert!(!html.contains("http://") && !html.contains("https://"), "the page names another origin: {html}");

        // Every module main.js imports, and theirs, is served, with no other origin in it.
        let mut seen = std::collections::BTreeSet::new();
        let mut queue = vec!["main.js".to_owned()];
        while let Some(module) = queue.pop() {
            if !seen.insert(module.clone()) {
                continue;
            }
            let response = app.get(&format!("/assets/console/js/{module}")).await;
            assert_eq!(response.status(), 200, "{module}");
            assert_eq!(header(&response, "content-type"), "text/javascript; charset=utf-8", "{module}");
            assert_eq!(header(&response, "cache-control"), "no-cache", "{module}");
            let source = response.text().await.expect("module");
            let foreign = source.replace("http://www.w3.org/2000/svg", "");
            assert!(!foreign.contains("http://") && !foreign.contains("https://"), "{module} names another origin");
            for risky in ["innerHTML", "eval(", "new Function", "'style'", "insertAdjacentHTML", "document.write"] {
                assert!(!source.contains(risky), "{module} uses {risky}");
            }
            queue.extend(imports(&source));
        }
        // … and every module of the repository is one of them (none forgotten in assets.rs).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/console/js");
        let files: std::collections::BTreeSet<String> = std::fs::read_dir(dir)
            .expect("assets/console/js")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".js"))
            .collect();
        assert_eq!(seen, files);
        let css = app.get("/assets/console/console.css").await;
        assert_eq!((css.status().as_u16(), header(&css, "content-type")), (200, "text/css; charset=utf-8".to_owned()));
        assert!(!css.text().await.expect("css").contains("url("), "the stylesheet loads nothing");
    })
    .await;
}

/// The selector of the payload editor's completion options.
const OPTIONS: &str =
    "[...document.querySelectorAll('[data-field=payload] .completions:not([hidden]) li')].map(li => li.textContent)";

#[tokio::test]
async fn sign_in_create_a_webhook_preview_it_and_send_a_test_delivery() {
    let Some(tools) = tools_or_skip("sign_in_create_a_webhook_preview_it_and_send_a_test_delivery") else { return };
    let _one = ONE_BROWSER.lock().await;
    each_backend(async |app: &TestApp| {
        let name = backend(app);
        let receiver = Receiver::start().await;
        let item = create_ticket(app, "Printer \"7\" on fire", 4).await;
        let mut browser = launch(app, &tools).await;

        // 1. A wrong token is refused, at its field; the right one signs in.
        browser.wait_text("#sign-in-title", |t| t.contains("Sign in")).await;
        browser.screenshot(&format!("{name}-sign-in")).await;
        browser.fill("input[name=token]", "not-a-token").await;
        browser.click("form.sign-in button[type=submit]").await;
        let refusal = browser.wait_text("[data-field=token] .field-error", |t| !t.is_empty()).await;
        assert!(refusal.contains("refused the token"), "{refusal}");
        assert_eq!(browser.eval("sessionStorage.length").await, 0, "a refused token is not kept");
        sign_in(&mut browser, app).await;
        assert_eq!(browser.eval("sessionStorage.length").await, 1, "the token is kept for the session");

        // 2. A webhook through the form, with a custom payload typed with completion.
        browser.click("a[data-nav=webhooks]").await;
        browser.click("a[href='#/webhooks/new']").await;
        browser.wait_text("main h1", |t| t == "New webhook").await;
        browser.fill("input[name=name]", "CRM sync").await;
        browser.fill("input[name=url]", &receiver.url("/crm")).await;
        browser.click("input[name=useDefaultPayload]").await;
        browser.type_into("textarea[name=payload]", "{\"ticket\": \"{{ item.").await;
        let offered = browser.wait_for(OPTIONS, |v| v.as_array().is_some_and(|o| !o.is_empty())).await;
        assert!(offered.as_array().into_iter().flatten().any(|o| o == "item.name"), "{offered}");
        browser.screenshot(&format!("{name}-webhook-completion")).await;
        // Narrowed as it is typed, and taken with the keyboard.
        browser.type_into("textarea[name=payload]", "na").await;
        browser.wait_for(OPTIONS, |v| v == &json!(["item.name"])).await;
        browser.type_into("textarea[name=payload]", "\u{e007}").await; // Enter
        // A payload that does not parse: its line and column at the field, nothing saved.
        browser.type_into("textarea[name=payload]", "\",\n \"broken\": \"{{ item.name | }}\"}").await;
        browser.click(".form-actions button[type=submit]").await;
        let error = browser.wait_text("[data-field=payload] > .field-error", |t| !t.is_empty()).await;
        assert!(error.contains("line 2, column 28"), "{error}");
        browser.screenshot(&format!("{name}-webhook-error")).await;
        let count = app.data("{ webhooks { totalCount } }", json!({})).await;
        assert_eq!(count["webhooks"]["totalCount"], 0, "nothing was saved");
        // Corrected, it saves, and the secret generated in the browser is shown once.
        browser.fill("textarea[name=payload]", "{\"ticket\": \"{{ item.name }}\", \"priority\": {{ item.priority }}, \"event\": \"{{ event }}\"}").await;
        // Delivery control: ordered, and at most 50 sends a second.
        browser.click("input[name=ordered]").await;
        browser.fill("input[name=maxPerSecond]", "50").await;
        browser.click(".form-actions button[type=submit]").await;
        let secret = browser.wait_text("[data-part=secret]", |t| !t.is_empty()).await;
        assert!(secret.len() == 40 && secret.chars().all(|c| c.is_ascii_alphanumeric()), "{secret}");
        let hash = browser.wait_for("location.hash", |v| v.as_str().is_some_and(|h| h.len() > "#/webhooks/".len() && !h.ends_with("new"))).await;
        let webhook_id = hash.as_str().unwrap_or_default().trim_start_matches("#/webhooks/").to_owned();
        let stored = app.data("query($id: ID!) { webhook(id: $id) { name url payload useDefaultPayload ordered maxPerSecond coalesceSeconds } }", json!({"id": webhook_id})).await;
        assert_eq!(
            stored["webhook"],
            json!({"name": "CRM sync", "url": receiver.url("/crm"), "useDefaultPayload": false,
                   "ordered": true, "maxPerSecond": 50, "coalesceSeconds": 0,
                   "payload": "{\"ticket\": \"{{ item.name }}\", \"priority\": {{ item.priority }}, \"event\": \"{{ event }}\"}"})
        );
        let health = browser.wait_text("#webhook-health", |t| !t.is_empty()).await;
        assert!(health.starts_with("Breaker closed"), "{health}");
        browser.screenshot(&format!("{name}-webhook-form")).await;

        // 3. The preview for a chosen item is exactly what "Send test delivery" sends.
        browser.click("#tab-preview").await;
        // (Once the stored items are offered, so that the default choice does not land later.)
        browser.wait_for("document.querySelectorAll('#panel-preview datalist option').length", |v| v == 1).await;
        browser.fill("input[name=itemId]", &item).await;
        browser.click(".preview-form .btn.primary").await;
        let payload = browser.wait_text("[data-part=payload]", |t| !t.is_empty()).await;
        assert_eq!(serde_json::from_str::<Value>(&payload).ok(), Some(json!({"ticket": "Printer \"7\" on fire", "priority": 4, "event": "new"})));
        browser.screenshot(&format!("{name}-webhook-preview")).await;
        browser.click(".preview-form .row-buttons button:nth-child(2)").await;
        let outcome = browser.wait_text("[data-part=test-status]", |t| t.contains("HTTP")).await;
        assert!(outcome.contains("sent") && outcome.contains("test") && outcome.contains("HTTP 200"), "{outcome}");
        let requests = receiver.wait_for(1, browser::WAIT).await;
        assert_eq!(requests.len(), 1, "one test delivery: {requests:?}");
        assert_eq!(requests[0].text(), payload, "the receiver got what the preview showed");
        let timestamp = requests[0].header("x-glpi-timestamp").unwrap_or_default();
        let signed = [requests[0].body.as_slice(), timestamp.as_bytes()].concat();
        assert_eq!(
            requests[0].header("x-glpi-signature"),
            Some(hex_hmac(secret.as_bytes(), &signed).as_str()),
            "signed with the secret the browser generated"
        );
        // The queries log lists it as a test.
        browser.click("#tab-log").await;
        let row = browser.wait_text("#panel-log tbody tr", |t| t.contains("test")).await;
        assert!(row.contains(&format!("Ticket {item}")) && row.contains("200"), "{row}");
        browser.screenshot(&format!("{name}-webhook-log")).await;

        // 6. Nothing but this server was asked for anything. (The refused sign-in's 401 is
        // reported by the browser as a failed resource.)
        assert_only_own_requests(&mut browser, app.addr, &["401 (Unauthorized)"]).await;
        browser.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_queue_is_live_and_a_failed_delivery_is_resent_from_the_console() {
    let Some(tools) = tools_or_skip("the_queue_is_live_and_a_failed_delivery_is_resent_from_the_console") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    each_backend(async |app: &TestApp| {
        let name = backend(app);
        let receiver = Receiver::start().await;
        // The target answers 500 twice, then recovers.
        receiver.script("/flaky", vec![Reply::Status(500), Reply::Status(500)]);
        let create = "mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }";
        let ok = json!({"name": "Helpdesk mirror", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/ok")});
        let flaky = json!({"name": "Flaky CRM", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/flaky"), "sentTry": 0});
        app.data(create, json!({"i": ok})).await;
        let flaky_id = app.data(create, json!({"i": flaky})).await["createWebhook"]["id"].clone();
        let mut browser = launch(app, &tools).await;
        sign_in(&mut browser, app).await;
        browser.wait_text("[data-counter=sent]", |t| t == "0").await;
        // Wait for the live view to be connected before anything happens.
        browser.wait_text("#connection", |t| t == "Live").await;
        browser.eval("(window.__notReloaded = true)").await;

        // 4. Items created through the API move the counters and the live table, without a
        // reload.
        let first = create_ticket(app, "Screen flickers", 2).await;
        browser.wait_text("[data-counter=sent]", |t| t == "1").await;
        browser.wait_text("[data-counter=failed]", |t| t == "1").await;
        let rows = "[...document.querySelectorAll('.live-table tbody tr')].map(tr => [tr.dataset.status, tr.children[1]?.textContent, tr.children[2]?.textContent])";
        let table = browser
            .wait_for(rows, |v| {
                let rows = v.as_array().cloned().unwrap_or_default();
                rows.contains(&json!(["SENT", "Helpdesk mirror", format!("Ticket {first}")]))
                    && rows.contains(&json!(["FAILED", "Flaky CRM", format!("Ticket {first}")]))
            })
            .await;
        assert_eq!(table.as_array().map(Vec::len), Some(2), "{table}");
        let second = create_ticket(app, "Mouse missing", 3).await;
        browser.wait_text("[data-counter=sent]", |t| t == "2").await;
        browser.wait_text("[data-counter=failed]", |t| t == "2").await;
        browser
            .wait_for(rows, |v| v.as_array().is_some_and(|r| r.contains(&json!(["SENT", "Helpdesk mirror", format!("Ticket {second}")]))))
            .await;
        browser.wait_for("document.querySelector('.chart').dataset.sent", |v| v == "2").await;
        assert_eq!(browser.eval("window.__notReloaded === true").await, true, "the page was not reloaded");
        browser.screenshot(&format!("{name}-queue")).await;

        // The detail of a row, as GLPI's queries log shows it.
        let failed_row = app.data("query($w: ID) { queuedWebhooks(webhookId: $w, status: FAILED) { edges { node { id } } } }", json!({"w": flaky_id})).await;
        let failed_id = failed_row["queuedWebhooks"]["edges"][0]["node"]["id"].as_str().unwrap_or_default().to_owned();
        browser.click(&format!("button[aria-label='Details of queued webhook {failed_id}']")).await;
        let error = browser.wait_text("dialog [data-part=error]", |t| !t.is_empty()).await;
        assert!(error.contains("HTTP 500"), "{error}");
        let body = browser.wait_text("dialog [data-part=body]", |t| t.contains("Screen flickers") || t.contains("Mouse missing")).await;
        assert!(body.contains("\"event\":\"new\""), "{body}");
        browser.screenshot(&format!("{name}-queue-detail")).await;
        browser.click("dialog .dialog-head button").await;

        // 5. The failed row is resent from the console and, the receiver recovered, delivered.
        let only_failed = format!("tr[data-id='{failed_id}'][data-status=FAILED] button[data-action=resend]");
        browser.click(&only_failed).await;
        browser.wait_for(&format!("document.querySelector(\"tr[data-id='{failed_id}']\")?.dataset.status ?? null"), |v| v == "SENT").await;
        let row = app.data("query($id: ID!) { queuedWebhook(id: $id) { status lastStatusCode } }", json!({"id": failed_id})).await;
        assert_eq!(row["queuedWebhook"], json!({"status": "SENT", "lastStatusCode": 200}));
        assert_eq!(receiver.requests_to("/flaky").len(), 3, "two failed attempts, then the resend");
        browser.wait_text("[data-counter=failed]", |t| t == "1").await;

        // The table filters by status.
        browser.choose("select[name=status]", "FAILED").await;
        browser.wait_for(rows, |v| v.as_array().is_some_and(|r| r.iter().all(|row| row[0] == "FAILED") && r.len() == 1)).await;

        // The webhooks, with their last status and last hour; the items, with their history.
        browser.click("a[data-nav=webhooks]").await;
        let hour = browser.wait_text("tbody tr td[data-part=hour]", |t| t.contains("sent")).await;
        assert!(hour.contains("2 sent"), "{hour}");
        browser.screenshot(&format!("{name}-webhooks")).await;
        browser.click("a[data-nav=items]").await;
        browser.wait_text("main h1", |t| t == "Items: Ticket").await;
        browser.click(&format!("tr[data-id='{first}'] button")).await;
        let history = browser.wait_text("tr.history-row:not([hidden]) table", |t| t.contains("create")).await;
        assert!(history.contains("Item created"), "{history}");
        browser.screenshot(&format!("{name}-items")).await;

        // A phone-sized screen: nothing wider than it.
        browser.viewport(390, 844, true).await;
        browser.click("a[data-nav=queue]").await;
        browser.wait_text("[data-counter=sent]", |t| t == "3").await;
        let width = browser.eval("[document.documentElement.scrollWidth, window.innerWidth]").await;
        assert_eq!(width[0], width[1], "the page fits a 390-pixel screen: {width}");
        browser.screenshot(&format!("{name}-queue-390")).await;
        browser.goto(&format!("{}/#/webhooks/{}", app.url(""), flaky_id.as_str().unwrap_or_default())).await;
        browser.wait_text("main h1", |t| t == "Flaky CRM").await;
        let width = browser.eval("[document.documentElement.scrollWidth, window.innerWidth]").await;
        assert_eq!(width[0], width[1], "the form fits a 390-pixel screen: {width}");
        browser.screenshot(&format!("{name}-webhook-390")).await;

        // 6. Nothing but this server was asked for anything.
        assert_only_own_requests(&mut browser, app.addr, &[]).await;
        browser.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_token_revoked_while_signed_in_is_shown_as_refused() {
    let Some(tools) = tools_or_skip("a_token_revoked_while_signed_in_is_shown_as_refused") else { return };
    let _one = ONE_BROWSER.lock().await;
    each_backend(async |app: &TestApp| {
        let (token, id) = app.issue_token(json!({"user": "night-operator", "profile": "operator"})).await;
        let mut browser = launch(app, &tools).await;
        browser.fill("input[name=token]", &token).await;
        browser.click("form.sign-in button[type=submit]").await;
        browser.wait_text("#connection", |t| t == "Live").await;
        app.data("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", json!({"id": id})).await;
        // The live connection is closed (4403): the page says so, at the sign-in form.
        let refusal = browser.wait_text("[data-field=token] .field-error", |t| !t.is_empty()).await;
        assert!(refusal.contains("refused the token") && refusal.contains("revoked"), "{refusal}");
        assert_eq!(browser.eval("sessionStorage.length").await, 0, "the refused token is forgotten");
        browser.screenshot(&format!("{}-token-revoked", backend(app))).await;
        assert_only_own_requests(&mut browser, app.addr, &["401 (Unauthorized)"]).await;
        browser.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_live_views_say_when_the_connection_drops_and_reconnect_by_themselves() {
    let test = "the_live_views_say_when_the_connection_drops_and_reconnect_by_themselves";
    let Some(tools) = tools_or_skip(test) else { return };
    let _one = ONE_BROWSER.lock().await;
    each_backend(async |app: &TestApp| {
        let receiver = Receiver::start().await;
        let create = "mutation($i: WebhookInput!) { createWebhook(input: $i) { id } }";
        let hook = json!({"name": "Mirror", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": receiver.url("/m")});
        app.data(create, json!({"i": hook})).await;
        // The browser reaches the server through a relay that the test cuts.
        let relay = proxy::Relay::start(app.addr).await;
        let mut browser = Browser::launch(&tools.0, &tools.1, shots()).await;
        browser.goto(&relay.url("/")).await;
        sign_in(&mut browser, app).await;
        browser.wait_text("#connection", |t| t == "Live").await;
        // (Once the page has read everything it reads when it opens.)
        browser.wait_text(".live-table tbody tr.empty", |t| t.contains("No queued webhooks")).await;
        browser.wait_for("document.querySelectorAll('select[name=webhookId] option').length", |v| v == 2).await;

        relay.cut();
        let banner = browser.wait_text("#banner", |t| t.contains("reconnecting")).await;
        assert!(banner.contains("connection dropped"), "{banner}");
        assert_eq!(browser.eval("document.getElementById('banner').hidden").await, false, "the banner is shown");
        browser.screenshot(&format!("{}-connection-dropped", backend(app))).await;
        // What happens meanwhile is shown once the connection is back.
        let missed = create_ticket(app, "While offline", 1).await;
        receiver.wait_for(1, browser::WAIT).await;
        relay.restore();
        browser.wait_text("#connection", |t| t == "Live").await;
        browser.wait_for("document.getElementById('banner').hidden", |v| v == true).await;
        browser.wait_text("[data-counter=sent]", |t| t == "1").await;
        let rows = "[...document.querySelectorAll('.live-table tbody tr')].map(tr => [tr.dataset.status, tr.children[2]?.textContent])";
        browser.wait_for(rows, |v| v.as_array().is_some_and(|r| r.contains(&json!(["SENT", format!("Ticket {missed}")])))).await;
        // And live again.
        let after = create_ticket(app, "Back online", 1).await;
        browser.wait_for(rows, |v| v.as_array().is_some_and(|r| r.contains(&json!(["SENT", format!("Ticket {after}")])))).await;
        browser.wait_text("[data-counter=sent]", |t| t == "2").await;
        // While cut, the browser's attempts to reconnect failed, as they had to.
        assert_only_own_requests(&mut browser, relay.addr, &["WebSocket connection to", "ERR_"]).await;
        browser.close().await;
    })
    .await;
}
