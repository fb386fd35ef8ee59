//! What a browser loads, served from the binary: the console (`GET /`, plain HTML, CSS and
//! JavaScript modules under `assets/console/`), the GraphiQL page (`GET /graphql`) and
//! `/assets/…`, GraphiQL 3 with React 18 vendored from npm under `assets/vendor/` (see its
//! README). Nothing is fetched from another origin, so the pages work without internet, and
//! their Content-Security-Policy lets them run only the scripts this server sends.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::Path,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine;

/// The policy of every HTML page: scripts, styles, fonts, images and connections (HTTP and
/// WebSocket) from this origin only; inline styles, which GraphiQL's components set; never
/// framed.
pub const PAGE_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// The console's policy: nothing but this origin's files and connections (its HTTP API and
/// WebSocket), no inline script or style at all, no `<base>`, forms never submitted to a URL
/// (the console handles them), never framed.
pub const CONSOLE_CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// Files under a versioned path (`vendor/<package>-<version>/`) never change.
const CACHE_VERSIONED: &str = "public, max-age=31536000, immutable";
/// The page and hookline's own files change with hookline: revalidated on each load.
const CACHE_UNVERSIONED: &str = "no-cache";

const GRAPHIQL_DIR: &str = "vendor/graphiql-3.9.0";
const GRAPHIQL_CSS: &str = include_str!("../assets/vendor/graphiql-3.9.0/graphiql.min.css");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The files served as they are, by path under `/assets/`.
const FILES: &[(&str, &str, &[u8])] = &[
    ("graphiql.js", JS, include_bytes!("../assets/graphiql.js")),
    ("graphiql.css", CSS, include_bytes!("../assets/graphiql.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../assets/favicon.svg")),
    ("console/console.css", CSS, include_bytes!("../assets/console/console.css")),
    ("console/js/main.js", JS, include_bytes!("../assets/console/js/main.js")),
    ("console/js/api.js", JS, include_bytes!("../assets/console/js/api.js")),
    ("console/js/session.js", JS, include_bytes!("../assets/console/js/session.js")),
    ("console/js/live.js", JS, include_bytes!("../assets/console/js/live.js")),
    ("console/js/dom.js", JS, include_bytes!("../assets/console/js/dom.js")),
    ("console/js/queue.js", JS, include_bytes!("../assets/console/js/queue.js")),
    ("console/js/chart.js", JS, include_bytes!("../assets/console/js/chart.js")),
    ("console/js/queued.js", JS, include_bytes!("../assets/console/js/queued.js")),
    ("console/js/webhooks.js", JS, include_bytes!("../assets/console/js/webhooks.js")),
    ("console/js/webhook.js", JS, include_bytes!("../assets/console/js/webhook.js")),
    ("console/js/editor.js", JS, include_bytes!("../assets/console/js/editor.js")),
    ("console/js/filter.js", JS, include_bytes!("../assets/console/js/filter.js")),
    ("console/js/preview.js", JS, include_bytes!("../assets/console/js/preview.js")),
    ("console/js/log.js", JS, include_bytes!("../assets/console/js/log.js")),
    ("console/js/items.js", JS, include_bytes!("../assets/console/js/items.js")),
    ("console/js/secret.js", JS, include_bytes!("../assets/console/js/secret.js")),
    ("vendor/graphiql-3.9.0/graphiql.min.js", JS, include_bytes!("../assets/vendor/graphiql-3.9.0/graphiql.min.js")),
    ("vendor/graphiql-3.9.0/LICENSE", TEXT, include_bytes!("../assets/vendor/graphiql-3.9.0/LICENSE")),
    (
        "vendor/react-18.3.1/react.production.min.js",
        JS,
        include_bytes!("../assets/vendor/react-18.3.1/react.production.min.js"),
    ),
    ("vendor/react-18.3.1/LICENSE", TEXT, include_bytes!("../assets/vendor/react-18.3.1/LICENSE")),
    (
        "vendor/react-dom-18.3.1/react-dom.production.min.js",
        JS,
        include_bytes!("../assets/vendor/react-dom-18.3.1/react-dom.production.min.js"),
    ),
    ("vendor/react-dom-18.3.1/LICENSE", TEXT, include_bytes!("../assets/vendor/react-dom-18.3.1/LICENSE")),
];

#[derive(Debug, PartialEq)]
struct Asset {
    content_type: &'static str,
    body: axum::body::Bytes,
}

/// Every asset by its path under `/assets/`.
struct Assets(HashMap<String, Asset>);

impl Assets {
    fn load() -> Self {
        let mut assets: HashMap<String, Asset> = FILES
            .iter()
            .map(|(path, content_type, body)| {
                ((*path).to_owned(), Asset { content_type, body: axum::body::Bytes::from_static(body) })
            })
            .collect();
        // GraphiQL's stylesheet carries its fonts and icons as `data:` URLs, which the page's
        // policy refuses (`font-src`/`img-src` fall back to 'self'): each becomes a file
        // beside the stylesheet.
        let (css, inline) = extract_data_urls(GRAPHIQL_CSS, "inline");
        for (name, asset) in inline {
            assets.insert(format!("{GRAPHIQL_DIR}/{name}"), asset);
        }
        assets.insert(format!("{GRAPHIQL_DIR}/graphiql.min.css"), Asset { content_type: CSS, body: css.into() });
        Self(assets)
    }
}

/// `/assets/{*path}`: the files above with their type; 404 for any other path.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let assets = Arc::new(Assets::load());
    Router::new().route(
        "/assets/{*path}",
        get(move |Path(path): Path<String>| {
            let assets = Arc::clone(&assets);
            async move { serve(&assets, &path) }
        }),
    )
}

fn serve(assets: &Assets, path: &str) -> Response {
    let nosniff = (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let Some(asset) = assets.0.get(path) else {
        return (StatusCode::NOT_FOUND, [nosniff, (header::CONTENT_TYPE, HeaderValue::from_static(TEXT))], "not found")
            .into_response();
    };
    let cache = if path.starts_with("vendor/") { CACHE_VERSIONED } else { CACHE_UNVERSIONED };
    let headers: [(HeaderName, HeaderValue); 3] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        nosniff,
    ];
    (headers, asset.body.clone()).into_response()
}

/// The GraphiQL page, which loads its scripts and styles from `/assets/`.
pub fn graphiql_page() -> Response {
    page(PAGE_CSP, include_str!("../assets/graphiql.html"))
}

/// The console's page, which loads its modules and stylesheet from `/assets/console/`.
pub fn console_page() -> Response {
    page(CONSOLE_CSP, include_str!("../assets/console/index.html"))
}

fn page(policy: &'static str, html: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy)),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_UNVERSIONED)),
        // The page never sends its address to another site (it links to none).
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, html).into_response()
}

/// Replaces every `url(data:<type>;base64,<data>)` of a stylesheet by `url(<dir>/<n>.<ext>)`;
/// returns the new stylesheet and the files by their path `<dir>/<n>.<ext>`. A quoted `data:`
/// URL, or one that is not base64 of a known type, stays as it is.
fn extract_data_urls(css: &str, dir: &str) -> (String, Vec<(String, Asset)>) {
    const OPEN: &str = "url(data:";
    let mut out = String::with_capacity(css.len());
    let mut files = Vec::new();
    let mut rest = css;
    while let Some(start) = rest.find(OPEN) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let url = &from[OPEN.len()..];
        let Some(end) = url.find(')') else { break };
        match decode_data_url(&url[..end]) {
            Some((extension, asset)) => {
                let name = format!("{dir}/{}.{extension}", files.len());
                out.push_str(&format!("url({name})"));
                files.push((name, asset));
            }
            None => out.push_str(&from[..OPEN.len() + end + 1]),
        }
        rest = &url[end + 1..];
    }
    out.push_str(rest);
    (out, files)
}

/// `<type>;base64,<data>` (what follows `data:`) as a file and its extension.
fn decode_data_url(url: &str) -> Option<(&'static str, Asset)> {
    let (media, data) = url.split_once(";base64,")?;
    let (content_type, extension) = match media {
        "font/woff2" => ("font/woff2", "woff2"),
        "font/woff" => ("font/woff", "woff"),
        "image/png" => ("image/png", "png"),
        "image/svg+xml" => ("image/svg+xml", "svg"),
        "image/gif" => ("image/gif", "gif"),
        _ => return None,
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    Some((extension, Asset { content_type, body: bytes.into() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_files_beside_the_stylesheet() {
        let css = "a{background:url(data:image/png;base64,AAEC)}@font-face{src:url(data:font/woff2;base64,AwQ=)format(\"woff2\")}b{x:url(data:text/plain,hi)}";
        let (out, files) = extract_data_urls(css, "inline");
        assert_eq!(
            out,
            "a{background:url(inline/0.png)}@font-face{src:url(inline/1.woff2)format(\"woff2\")}b{x:url(data:text/plain,hi)}"
        );
        assert_eq!(
            files,
            vec![
                ("inline/0.png".to_owned(), Asset { content_type: "image/png", body: vec![0, 1, 2].into() }),
                ("inline/1.woff2".to_owned(), Asset { content_type: "font/woff2", body: vec![3, 4].into() }),
            ]
        );
    }

    #[test]
    fn graphiql_stylesheet_keeps_no_data_url() {
        let assets = Assets::load();
        let css = &assets.0[&format!("{GRAPHIQL_DIR}/graphiql.min.css")];
        let css = std::str::from_utf8(&css.body).unwrap_or_default();
        assert!(css.contains("url(inline/0.woff2)"), "the fonts are extracted");
        assert!(!css.contains("data:"), "a data: URL is left in GraphiQL's stylesheet");
        let files = assets.0.keys().filter(|path| path.starts_with(&format!("{GRAPHIQL_DIR}/inline/"))).count();
        assert_eq!(files, 37, "34 fonts and 3 icons");
    }
}
