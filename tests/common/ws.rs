//! A `graphql-transport-ws` client over a real WebSocket, as the `graphql-ws` library speaks it.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, sends `connection_init` with the token and waits for `connection_ack`.
pub async fn connect(addr: SocketAddr, token: &str) -> Socket {
    let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("graphql-transport-ws"));
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
        Some("graphql-transport-ws")
    );
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    ws.send(Message::text(init.to_string())).await.expect("init");
    let ack = next(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack");
    ws
}

/// Starts an operation.
pub async fn subscribe(ws: &mut Socket, id: &str, query: &str, variables: Value) {
    let message = json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}});
    ws.send(Message::text(message.to_string())).await.expect("send");
}

/// The next JSON message (pings answered, pongs skipped).
pub async fn next(ws: &mut Socket) -> Value {
    within(ws, Duration::from_secs(20)).await.expect("a message in time")
}

/// The next JSON message if one comes within `wait`.
pub async fn within(ws: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match message.expect("stream open").expect("message") {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("JSON message");
                if value["type"] == "ping" {
                    ws.send(Message::text(json!({"type": "pong"}).to_string())).await.ok();
                    continue;
                }
                if value["type"] == "pong" {
                    continue;
                }
                return Some(value);
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}
