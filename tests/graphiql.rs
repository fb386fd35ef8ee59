//! GraphiQL is served from the binary: the page and every asset come from hookline itself,
//! with their security headers, and the page works in a real browser (headless Chromium,
//! driven over the DevTools protocol) without loading anything from another origin.

mod common;

use common::{TestApp, each_backend};
use serde_json::{Value, json};

#[path = "graphiql/chromium.rs"]
mod chromium;

const PAGE_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The values of `attribute="…"` in an HTML text.
fn attributes<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle).filter_map(|(at, _)| html[at + needle.len()..].split('"').next()).collect()
}

/// The targets of `url(…)` in a stylesheet.
fn css_urls(css: &str) -> Vec<&str> {
    css.match_indices("url(")
        .filter_map(|(at, _)| css[at + 4..].split(')').next())
        .map(|url| url.trim_matches(['"', '\'']))
        .collect()
}

#[tokio::test]
async fn graphiql_page_and_its_assets_come_from_hookline_with_their_headers() {
    each_backend(async |app: &TestApp| {
        let page = app.get("/graphql").await;
        assert_eq!(page.status(), 200);
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "content-security-policy"), PAGE_CSP);
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        let html = page.text().await.expect("page text");
        assert!(!html.contains("http://") && !html.contains("https://"), "the page names another origin: {html}");
        assert_eq!(html.matches("<script").count(), html.matches("<script src=").count(), "inline script: {html}");

        let scripts = attributes(&html, "src");
        let links = attributes(&html, "href");
        assert_eq!(scripts.len(), 4, "React, ReactDOM, GraphiQL and its start: {scripts:?}");
        assert_eq!(links.len(), 3, "an icon, GraphiQL's stylesheet and the page's: {links:?}");
        let mut stylesheets = Vec::new();
        for path in scripts.into_iter().chain(links) {
            assert!(path.starts_with("assets/"), "{path} is not one of hookline's assets");
            let content_type = match path.rsplit_once('.').map(|(_, extension)| extension) {
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                _ => panic!("{path}: an unexpected kind of file"),
            };
            let asset = app.get(&format!("/{path}")).await;
            assert_eq!(asset.status(), 200, "{path}");
            assert_eq!(header(&asset, "content-type"), content_type, "{path}");
            assert_eq!(header(&asset, "x-content-type-options"), "nosniff", "{path}");
            let cache = header(&asset, "cache-control");
            if path.starts_with("assets/vendor/") {
                assert_eq!(cache, "public, max-age=31536000, immutable", "{path}");
            } else {
                assert_eq!(cache, "no-cache", "{path}");
            }
            let body = asset.text().await.expect("asset text");
            if content_type.starts_with("text/css") {
                stylesheets.push((path.to_owned(), body));
            } else if content_type.starts_with("text/javascript") && !path.starts_with("assets/vendor/") {
                assert!(!body.contains("http://") && !body.contains("https://"), "{path} names another origin");
            }
        }

        // GraphiQL's fonts and icons, inline `data:` URLs in the published stylesheet (the
        // policy refuses those), are files of their own beside it.
        let (css_path, css) = stylesheets.iter().find(|(p, _)| p.contains("/graphiql-3.9.0/")).expect("GraphiQL css");
        let urls = css_urls(css);
        assert_eq!(urls.len(), 37, "GraphiQL's 34 fonts and 3 icons");
        let dir = css_path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or_default();
        for url in urls {
            assert!(url.starts_with("inline/"), "{url} is not beside the stylesheet");
            let file = app.get(&format!("/{dir}/{url}")).await;
            assert_eq!(file.status(), 200, "{url}");
            let expected = if url.ends_with(".png") { "image/png" } else { "font/" };
            assert!(header(&file, "content-type").starts_with(expected), "{url}: {}", header(&file, "content-type"));
            assert!(!file.bytes().await.expect("bytes").is_empty(), "{url}");
        }

        for licence in ["graphiql-3.9.0", "react-18.3.1", "react-dom-18.3.1"] {
            let text = app.get(&format!("/assets/vendor/{licence}/LICENSE")).await.text().await.expect("licence");
            assert!(text.contains("MIT License"), "{licence}: {text}");
        }
        for unknown in [
            "/assets/nope.js",
            "/assets/vendor/",
            "/assets/../Cargo.toml",
            "/assets/vendor/graphiql-3.9.0/inline/99.woff2",
        ] {
            let response = app.get(unknown).await;
            assert_eq!(response.status(), 404, "{unknown}");
        }
    })
    .await;
}

#[tokio::test]
async fn graphiql_runs_a_query_and_a_subscription_in_chromium_without_another_origin() {
    let Some(binary) = chromium::find() else {
        eprintln!(
            "SKIPPED graphiql_runs_a_query_and_a_subscription_in_chromium_without_another_origin: Chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    each_backend(async |app: &TestApp| {
        let origin = format!("http://{}", app.addr);
        let mut browser = chromium::Browser::launch(&binary).await;
        let query = "{ entity(id: 0) { completename } }";
        let mut url = url::Url::parse(&app.url("/graphql")).expect("url");
        url.query_pairs_mut().append_pair("query", query);
        let mut page = browser.open(url.as_str()).await;

        // GraphiQL rendered, with the query of the address in its editor.
        let editor = page
            .wait_for(
                "document.querySelector('.graphiql-container .graphiql-query-editor .CodeMirror')?.CodeMirror.getValue()",
                |v| v.as_str().is_some(),
            )
            .await;
        assert_eq!(editor, query);
        let body = page.eval("document.body.innerText").await;
        assert!(!body.as_str().unwrap_or_default().contains("Loading…"), "{body}");

        // The Headers tab is open with the header to complete; the user pastes the token.
        let headers = "[...document.querySelectorAll('.graphiql-editor-tool .graphiql-editor')].find(e => !e.classList.contains('hidden'))?.querySelector('.CodeMirror')?.CodeMirror";
        let shown = page.wait_for(&format!("{headers}?.getValue() || null"), |v| v.as_str().is_some()).await;
        assert!(shown.as_str().unwrap_or_default().contains("\"Authorization\": \"Bearer "), "{shown}");
        let filled = json!({"Authorization": format!("Bearer {}", app.token)}).to_string();
        page.eval(&format!("{headers}.setValue({})", serde_json::to_string(&filled).expect("json"))).await;

        // It runs the query: a POST from the page, answered by hookline.
        page.eval("document.querySelector('.graphiql-execute-button').click()").await;
        let result = page.wait_for(RESULT, |v| v.as_str().is_some_and(|r| r.contains("completename"))).await;
        let result: Value = serde_json::from_str(result.as_str().unwrap_or_default()).expect("JSON result");
        assert_eq!(result, json!({"data": {"entity": {"completename": "Root entity"}}}), "{:?}", app.backend);

        // And a subscription, over a WebSocket to the same address.
        page.eval(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue('subscription { queueStats { pending failed } }')",
        )
        .await;
        // (GraphiQL reads the operation once the edit settles, as it puts it in the address.)
        page.wait_for("window.location.search", |v| v.as_str().is_some_and(|s| s.contains("subscription"))).await;
        page.eval("document.querySelector('.graphiql-execute-button').click()").await;
        let result = page.wait_for(RESULT, |v| v.as_str().is_some_and(|r| r.contains("queueStats"))).await;
        let result: Value = serde_json::from_str(result.as_str().unwrap_or_default()).expect("JSON result");
        assert_eq!(result, json!({"data": {"queueStats": {"pending": 0, "failed": 0}}}));

        // The documentation explorer shows the schema that GraphiQL fetches (introspection)
        // again once asked, now with the token.
        page.eval("document.querySelector('[aria-label=\"Re-fetch GraphQL schema\"]').click()").await;
        page.eval("document.querySelector('[aria-label=\"Show Documentation Explorer\"]').click()").await;
        let docs = "document.querySelector('.graphiql-doc-explorer')?.innerText || null";
        page.wait_for(docs, |v| v.as_str().is_some_and(|text| text.contains("mutation: Mutation"))).await;
        page.eval("[...document.querySelectorAll('.graphiql-doc-explorer a')].find(a => a.innerText === 'Mutation').click()")
            .await;
        page.wait_for(docs, |v| v.as_str().is_some_and(|text| text.contains("createItem"))).await;

        let events = page.events().await;
        // Everything the page loaded came from hookline, with success: scripts, styles,
        // fonts, the POSTs and the WebSocket.
        let requests = events.requests();
        assert!(requests.iter().any(|r| r.contains("/inline/")), "no font loaded: {requests:?}");
        for url in &requests {
            assert!(url.starts_with(&format!("{origin}/")), "a request to another origin: {url}");
        }
        let sockets = events.websockets();
        assert_eq!(sockets, vec![format!("ws://{}/graphql", app.addr)]);
        for (url, status) in events.responses() {
            assert_eq!(status, 200, "{url}");
        }
        // No policy violation, console error or uncaught exception.
        assert_eq!(events.problems(), Vec::<String>::new());

        // The watch above does see a violation when there is one.
        page.eval("document.body.appendChild(new Image()).src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw='").await;
        let violation = page.wait_event(|events| !events.problems().is_empty()).await;
        assert!(violation.problems()[0].contains("Content Security Policy"), "{:?}", violation.problems());
        browser.close().await;
    })
    .await;
}

/// The text of GraphiQL's result pane.
const RESULT: &str = "document.querySelector('.result-window .CodeMirror')?.CodeMirror.getValue() || null";
