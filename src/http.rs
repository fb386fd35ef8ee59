//! HTTP routes: the console (`GET /`), GraphQL (POST; GET for GraphiQL or the WebSocket
//! upgrade), health, readiness and metrics.

mod metrics;
mod refusal;

use std::str::FromStr;

use async_graphql::http::WebSocketProtocols;
use axum::{
    Router,
    extract::{FromRequestParts, Request, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    AppState,
    graphql::{AppSchema, build_schema},
};

#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: AppSchema,
}

pub fn router(app: AppState) -> Router {
    let schema = build_schema(Some(app.clone()));
    let counted = app.metrics.clone();
    Router::new()
        .route("/", get(|| async { crate::assets::console_page() }))
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .merge(crate::assets::routes())
        .layer(axum::middleware::from_fn_with_state(counted, metrics::count_requests))
        .with_state(HttpState { app, schema })
}

/// `POST /graphql`: checked in this order before anything runs: the body's size (413), its
/// content type (415), the page it comes from (403), the token (401); then the body is read
/// (never more than the limit) and the operation executed as the token's caller.
async fn graphql_post(State(state): State<HttpState>, request: Request) -> Response {
    let limit = state.app.config().api.max_request_body;
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return refusal::too_large(limit);
    }
    if let Some(refused) = refusal::content_type_refusal(&parts.headers) {
        return refused;
    }
    if let Err(refused) = check_origin(&parts.headers, &state.app.config().allowed_origins) {
        return refusal::graphql_error(StatusCode::FORBIDDEN, "FORBIDDEN", &refused);
    }
    let authorization = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let caller = match state.app.auth.authenticate(authorization) {
        Ok(caller) => caller,
        Err(reason) => return refusal::unauthenticated(&reason),
    };
    let bytes = match tokio::time::timeout(refusal::BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) if refusal::is_too_large(&err) => return refusal::too_large(limit),
        Ok(Err(_)) => {
            return refusal::graphql_error(StatusCode::BAD_REQUEST, "VALIDATION", "the request body could not be read");
        }
        Err(_) => return refusal::too_slow(),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(err) => {
            let message = format!(
                "the body is not a GraphQL request ({err}); send a JSON object such as {{\"query\": \"{{ entities {{ id }} }}\"}}"
            );
            return refusal::graphql_error(StatusCode::BAD_REQUEST, "VALIDATION", &message);
        }
    };
    let mut request = request.data(caller);
    // The caller's trace, continued by the operation's span (a malformed one is ignored).
    if let Some(parent) = parts
        .headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(crate::telemetry::RemoteParent::parse)
    {
        request = request.data(parent);
    }
    let response = state.schema.execute(request).await;
    if let Some(limited) = refusal::rate_limited(&response) {
        return limited;
    }
    refusal::graphql_response(&parts.headers, response)
}

/// A WebSocket upgrade starts a subscription connection (`graphql-transport-ws`, or the older
/// `graphql-ws`); any other GET gets GraphiQL.
async fn graphql_get(State(state): State<HttpState>, request: Request) -> Response {
    let wants_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_websocket {
        return crate::assets::graphiql_page();
    }
    let (mut parts, _body) = request.into_parts();
    if let Err(refusal) = check_origin(&parts.headers, &state.app.config().allowed_origins) {
        return (StatusCode::FORBIDDEN, refusal).into_response();
    }
    let protocol = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|protocols| protocols.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok()));
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "ask for the `graphql-transport-ws` (or the older `graphql-ws`) WebSocket subprotocol",
        )
            .into_response();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(err) => return err.into_response(),
    };
    let Some(slot) = state.app.ws_connections.try_take() else {
        let max = state.app.ws_connections.max();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this server already has {max} WebSocket connections open (HOOKLINE_MAX_WS_CONNECTIONS); try again later"),
        )
            .into_response();
    };
    let schema = state.schema.clone();
    let limits = &state.app.config().api;
    let options = crate::websocket::Options {
        ping_every: state.app.config().ws_ping_interval,
        max_subscriptions: limits.max_subscriptions_per_connection,
        auth: state.app.auth.clone(),
    };
    upgrade
        // A message (and a frame) larger than a request body may be is refused and the
        // connection closed (tungstenite's default is 64 MiB).
        .max_message_size(limits.max_request_body)
        .max_frame_size(limits.max_request_body)
        // Answer with the subprotocol that will be spoken (the client's first known one).
        .protocols([protocol.sec_websocket_protocol()])
        // Clients send small messages; each poll of the connection zeroes this much of its
        // read buffer first (tungstenite), and the 128 KiB default made every subscription
        // message cost a 128 KiB memset.
        .read_buffer_size(4096)
        .on_upgrade(move |socket| async move {
            crate::websocket::serve(socket, schema, protocol, options).await;
            drop(slot);
        })
        .into_response()
}

/// A browser names the page behind a request (`Origin`). Pages of other sites are refused,
/// so that a web page cannot use a visitor's access to hookline (cross-site request forgery,
/// WebSocket hijacking): only the server's own pages (when reached by an address or
/// `localhost`: a host name could be an attacker's, rebound to this address) and the
/// configured origins pass. Clients that are not browsers send no `Origin`.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or_default().trim().trim_end_matches('/').to_ascii_lowercase();
    let site = |text: &str| {
        url::Url::parse(text)
            .ok()
            .map(|u| (u.scheme().to_owned(), u.host_str().map(str::to_owned), u.port_or_known_default()))
    };
    let from = site(&origin);
    if from.is_some() && allowed.iter().any(|a| a == "*" || site(a) == from) {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if let Some((scheme, _, _)) = &from
        && let Ok(target) = url::Url::parse(&format!("{scheme}://{host}"))
        && site(target.as_str()) == from
        && (matches!(target.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
            || target.host_str() == Some("localhost"))
    {
        return Ok(());
    }
    Err(format!(
        "requests from pages of `{origin}` are refused; add that origin to HOOKLINE_ALLOWED_ORIGINS to allow them"
    ))
}

/// Ready when the database answers.
async fn readyz(State(state): State<HttpState>) -> Response {
    match state.app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(%err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
