//! Serving one GraphQL WebSocket connection (`graphql-transport-ws`, or the older `graphql-ws`).
//!
//! async-graphql speaks the protocol; this loop carries its messages. It writes every message
//! that is ready before flushing once (a burst of subscription messages costs one write, not
//! one per message), pings the client every `ping_every` (a WebSocket ping, which browsers and
//! client libraries answer by themselves, plus `ka` for the older protocol's clients) and
//! closes a connection from which nothing, not even a pong, came for four of those intervals.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_graphql::{
    Data, Executor,
    http::{WebSocketProtocols, WsMessage},
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{FutureExt, Sink, SinkExt, StreamExt, future};

use crate::{graphql::Caller, slots::Slots};

/// Most messages written before one flush.
const MAX_BATCH: usize = 256;
/// The shortest time between two flushes of one connection: a message after a quiet spell
/// goes out at once; in a stream of messages, those that come within this time share one
/// write (and the client one read).
const LINGER: Duration = Duration::from_millis(25);

/// How one connection is served.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How often the client is pinged.
    pub ping_every: Duration,
    /// Most live subscriptions on the connection (`HOOKLINE_MAX_SUBSCRIPTIONS_PER_CONNECTION`).
    pub max_subscriptions: usize,
}

/// The subscriptions of one connection, bounded; subscription resolvers take a slot here
/// besides the process's.
#[derive(Debug, Clone)]
pub struct ConnectionSubscriptions(pub Arc<Slots>);

pub async fn serve<E: Executor>(socket: WebSocket, executor: E, protocol: WebSocketProtocols, options: Options) {
    let Options { ping_every, max_subscriptions } = options;
    let (mut sink, incoming) = socket.split();
    let heard = Arc::new(Mutex::new(Instant::now()));
    let input = {
        let heard = heard.clone();
        incoming.take_while(|frame| future::ready(frame.is_ok())).filter_map(move |frame| {
            *heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            future::ready(match frame {
                Ok(frame @ (Message::Text(_) | Message::Binary(_))) => Some(frame.into_data()),
                _ => None,
            })
        })
    };
    let legacy = protocol == WebSocketProtocols::SubscriptionsTransportWS;
    let outgoing = async_graphql::http::WebSocket::new(executor, input, protocol)
        .on_connection_init(move |_payload| async move {
            // Where the token of the auth issue will be read; every connection acts as the
            // local super-admin until then.
            let mut data = Data::default();
            data.insert(Caller::local());
            data.insert(ConnectionSubscriptions(Slots::new(max_subscriptions)));
            Ok(data)
        })
        .map(|message| match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
        })
        .ready_chunks(MAX_BATCH);
    futures_util::pin_mut!(outgoing);
    // A client that neither reads nor answers for this long is dropped (a write blocked on a
    // client that stopped reading counts too).
    let silence = ping_every * 4;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut flushed = Instant::now().checked_sub(LINGER).unwrap_or_else(Instant::now);
    'serve: loop {
        tokio::select! {
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
