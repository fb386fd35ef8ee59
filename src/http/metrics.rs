//! `GET /metrics` (the Prometheus text format 0.0.4), and the count of every HTTP request by
//! route and status.

use std::time::Duration;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::HttpState;
use crate::{
    domain::signing::same,
    metrics::{Metrics, UNMATCHED_ROUTE},
    queue::stats,
};

/// The media type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The longest a scrape waits for the queue's figures.
const FIGURES_TIMEOUT: Duration = Duration::from_secs(5);

/// Every series, the queue's figures read now. With `HOOKLINE_METRICS_TOKEN` set, only for a
/// request that carries it (`Authorization: Bearer <token>`), else 401. When the database does
/// not answer, the queue's figures keep their last values and the rest is served.
pub async fn scrape(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let metrics = &state.app.metrics;
    if !authorized(metrics, &headers) {
        let mut refused =
            (StatusCode::UNAUTHORIZED, "GET /metrics needs `Authorization: Bearer <HOOKLINE_METRICS_TOKEN>`\n")
                .into_response();
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="metrics""#));
        return refused;
    }
    let figures = match tokio::time::timeout(FIGURES_TIMEOUT, stats::figures(&state.app.db)).await {
        Ok(Ok(figures)) => Some(figures),
        Ok(Err(err)) => {
            tracing::warn!(?err, "cannot read the queue's figures for /metrics");
            None
        }
        Err(_) => {
            tracing::warn!("the queue's figures for /metrics took too long");
            None
        }
    };
    let text = metrics.render(figures.as_ref(), state.app.subscriptions.in_use());
    ([(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT))], text).into_response()
}

/// Whether the request may scrape: no token configured, or the request carries it. Compared
/// as digests, so that the time taken tells nothing of the token, not even its length.
fn authorized(metrics: &Metrics, headers: &HeaderMap) -> bool {
    let Some(token) = &metrics.token else { return true };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(given) = given else { return false };
    same(&Sha256::digest(given.as_bytes()), &Sha256::digest(token.expose_secret().as_bytes()))
}

/// Counts each answered request under its route's template (`/assets/{*path}`, not the path
/// asked for, so that the label's values are the routes), or [`UNMATCHED_ROUTE`].
pub async fn count_requests(State(metrics): State<std::sync::Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    metrics.http_request(route, response.status().as_u16());
    response
}
