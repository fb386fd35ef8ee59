//! Serving one GraphQL WebSocket connection (`graphql-transport-ws`, or the older `graphql-ws`).
//!
//! async-graphql speaks the protocol; this loop carries its messages. It writes every message
//! that is ready before flushing once (a burst of subscription messages costs one write, not
//! one per message), pings the client every `ping_every` (a WebSocket ping, which browsers and
//! client libraries answer by themselves, plus `ka` for the older protocol's clients) and
//! closes a connection from which nothing, not even a pong, came for four of those intervals.
//!
//! The caller is named by the token in `connection_init` (`{"Authorization": "Bearer …"}`); a
//! refused one closes the socket with 4403 and the reason. While the connection lives, its
//! token is checked every second: once it expires or is revoked, each live subscription gets
//! an `error` (`UNAUTHENTICATED`) and the socket is closed with 4403.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_graphql::{
    Data, Executor,
    http::{WebSocketProtocols, WsMessage},
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{FutureExt, Sink, SinkExt, StreamExt, future};

use serde_json::{Value, json};

use crate::{
    auth::{Auth, Caller, TokenError},
    slots::Slots,
};

/// The close code of a connection whose token is refused (the `graphql-ws` library's
/// `Forbidden`).
const CLOSE_FORBIDDEN: u16 = 4403;
/// How often a live connection's token is checked again.
const TOKEN_CHECK: Duration = Duration::from_secs(1);

/// Most messages written before one flush.
const MAX_BATCH: usize = 256;
/// The shortest time between two flushes of one connection: a message after a quiet spell
/// goes out at once; in a stream of messages, those that come within this time share one
/// write (and the client one read).
const LINGER: Duration = Duration::from_millis(25);

/// How one connection is served.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the client is pinged.
    pub ping_every: Duration,
    /// Most live subscriptions on the connection (`HOOKLINE_MAX_SUBSCRIPTIONS_PER_CONNECTION`).
    pub max_subscriptions: usize,
    /// Checks the token of `connection_init`.
    pub auth: Arc<Auth>,
}

/// What the connection knows of its caller and its operations.
#[derive(Debug, Default)]
struct Connection {
    /// The caller, once `connection_init` was accepted.
    caller: Option<Caller>,
    /// Why `connection_init` was refused.
    refused: Option<String>,
    /// The ids of the operations started and not yet completed.
    live: BTreeSet<String>,
}

/// The `Authorization` value of a `connection_init` payload: at its top level (as API.md
/// says, any case) or under `headers`, as some clients send it.
fn authorization(payload: &Value) -> Option<&str> {
    fn find(object: &Value) -> Option<&str> {
        object.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?.1.as_str()
    }
    find(payload).or_else(|| find(payload.get("headers")?))
}

/// Notes the operations a client message starts or stops.
fn track_client(connection: &Mutex<Connection>, text: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
    }
    let Ok(Message { kind, id: Some(id) }) = serde_json::from_slice::<Message>(text) else { return };
    let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
    match kind.as_str() {
        "subscribe" | "start" => {
            connection.live.insert(id);
        }
        "complete" | "stop" => {
            connection.live.remove(&id);
        }
        _ => {}
    }
}

/// Notes the operations a server message ends.
fn track_server(connection: &Mutex<Connection>, text: &str) {
    if !(text.starts_with(r#"{"type":"complete""#) || text.starts_with(r#"{"type":"error""#)) {
        return;
    }
    if let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text)
        && let Some(id) = message.get("id").and_then(Value::as_str)
    {
        connection.lock().unwrap_or_else(|p| p.into_inner()).live.remove(id);
    }
}

/// The messages that end a connection whose token stopped being valid: an `error` for each
/// live operation, then the close.
fn ended_by(connection: &Mutex<Connection>, reason: &TokenError) -> Vec<Message> {
    let live = std::mem::take(&mut connection.lock().unwrap_or_else(|p| p.into_inner()).live);
    let error = json!([{"message": reason.to_string(), "extensions": {"code": "UNAUTHENTICATED"}}]);
    let mut messages: Vec<Message> = live
        .into_iter()
        .map(|id| Message::Text(json!({"id": id, "type": "error", "payload": error}).to_string().into()))
        .collect();
    messages.push(Message::Close(Some(CloseFrame { code: CLOSE_FORBIDDEN, reason: reason.to_string().into() })));
    messages
}

/// The subscriptions of one connection, bounded; subscription resolvers take a slot here
/// besides the process's.
#[derive(Debug, Clone)]
pub struct ConnectionSubscriptions(pub Arc<Slots>);

pub async fn serve<E: Executor>(socket: WebSocket, executor: E, protocol: WebSocketProtocols, options: Options) {
    let Options { ping_every, max_subscriptions, auth } = options;
    let (mut sink, incoming) = socket.split();
    let heard = Arc::new(Mutex::new(Instant::now()));
    let connection = Arc::new(Mutex::new(Connection::default()));
    let input = {
        let heard = heard.clone();
        let connection = connection.clone();
        incoming.take_while(|frame| future::ready(frame.is_ok())).filter_map(move |frame| {
            *heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            future::ready(match frame {
                Ok(frame @ (Message::Text(_) | Message::Binary(_))) => {
                    let data = frame.into_data();
                    track_client(&connection, &data);
                    Some(data)
                }
                _ => None,
            })
        })
    };
    let legacy = protocol == WebSocketProtocols::SubscriptionsTransportWS;
    let on_init = {
        let (auth, connection) = (auth.clone(), connection.clone());
        move |payload: Value| async move {
            let mut state = connection.lock().unwrap_or_else(|p| p.into_inner());
            match auth.authenticate(authorization(&payload)) {
                Ok(caller) => {
                    let mut data = Data::default();
                    data.insert(caller.clone());
                    data.insert(ConnectionSubscriptions(Slots::new(max_subscriptions)));
                    state.caller = Some(caller);
                    Ok(data)
                }
                Err(reason) => {
                    state.refused = Some(reason.to_string());
                    Err(async_graphql::Error::new(reason.to_string()))
                }
            }
        }
    };
    let outgoing = {
        let connection = connection.clone();
        async_graphql::http::WebSocket::new(executor, input, protocol)
            .on_connection_init(on_init)
            .map(move |message| match message {
                WsMessage::Text(text) => {
                    track_server(&connection, &text);
                    Message::Text(text.into())
                }
                WsMessage::Close(code, reason) => {
                    let refused = connection.lock().unwrap_or_else(|p| p.into_inner()).refused.take();
                    let (code, reason) = match refused {
                        Some(why) => (CLOSE_FORBIDDEN, why),
                        None => (code, reason),
                    };
                    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
                }
            })
            .ready_chunks(MAX_BATCH)
    };
    futures_util::pin_mut!(outgoing);
    // A client that neither reads nor answers for this long is dropped (a write blocked on a
    // client that stopped reading counts too).
    let silence = ping_every * 4;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut flushed = Instant::now().checked_sub(LINGER).unwrap_or_else(Instant::now);
    let mut token_check = tokio::time::interval(TOKEN_CHECK);
    'serve: loop {
        tokio::select! {
            _ = token_check.tick() => {
                let caller = connection.lock().unwrap_or_else(|p| p.into_inner()).caller.clone();
                if let Some(Err(reason)) = caller.map(|caller| auth.still_valid(&caller)) {
                    feed(&mut sink, ended_by(&connection, &reason), silence).await;
                    within(silence, sink.flush()).await;
                    break;
                }
            }
            batch = outgoing.next() => {
                let Some(mut batch) = batch else { break };
                loop {
                    if !feed(&mut sink, batch, silence).await {
                        break 'serve;
                    }
                    let since = flushed.elapsed();
                    if since >= LINGER {
                        break;
                    }
                    // Messages are coming fast: let more gather before writing.
                    tokio::time::sleep(LINGER - since).await;
                    match outgoing.next().now_or_never() {
                        Some(Some(more)) => batch = more,
                        Some(None) | None => break,
                    }
                }
                if !within(silence, sink.flush()).await {
                    break;
                }
                flushed = Instant::now();
            }
            _ = ping.tick() => {
                if heard.lock().unwrap_or_else(|p| p.into_inner()).elapsed() > silence {
                    tracing::debug!("closing a silent WebSocket connection");
                    break;
                }
                let mut pings = vec![Message::Ping(Default::default())];
                if legacy {
                    pings.push(Message::Text(r#"{"type":"ka"}"#.into()));
                }
                if !feed(&mut sink, pings, silence).await || !within(silence, sink.flush()).await {
                    break;
                }
            }
        }
    }
    // A client that stopped reading may never take the close frame: do not wait for it.
    within(Duration::from_secs(1), sink.close()).await;
}

/// Buffers the messages, each within `limit`; false at the first that is not taken.
async fn feed(sink: &mut (impl Sink<Message> + Unpin), messages: Vec<Message>, limit: Duration) -> bool {
    for message in messages {
        if !within(limit, sink.feed(message)).await {
            return false;
        }
    }
    true
}

/// Whether a write finished well within `limit`.
async fn within<E>(limit: Duration, write: impl Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
}
