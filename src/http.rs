//! HTTP routes: GraphQL (POST; GET for GraphiQL or the WebSocket upgrade), health and readiness.

use std::str::FromStr;

use async_graphql::http::WebSocketProtocols;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Router,
    extract::{FromRequestParts, Request, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    AppState,
    graphql::{AppSchema, Caller, build_schema},
};

#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: AppSchema,
}

pub fn router(app: AppState) -> Router {
    let schema = build_schema(Some(app.clone()));
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(crate::assets::routes())
        .with_state(HttpState { app, schema })
}

async fn graphql_post(State(state): State<HttpState>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    if let Err(refusal) = check_origin(&headers, &state.app.config().allowed_origins) {
        return (StatusCode::FORBIDDEN, refusal).into_response();
    }
    GraphQLResponse::from(state.schema.execute(request.into_inner().data(Caller::local())).await).into_response()
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
    let schema = state.schema.clone();
    let ping_every = state.app.config().ws_ping_interval;
    upgrade
        // Answer with the subprotocol that will be spoken (the client's first known one).
        .protocols([protocol.sec_websocket_protocol()])
        // Clients send small messages; each poll of the connection zeroes this much of its
        // read buffer first (tungstenite), and the 128 KiB default made every subscription
        // message cost a 128 KiB memset.
        .read_buffer_size(4096)
        .on_upgrade(move |socket| crate::websocket::serve(socket, schema, protocol, ping_every))
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
