//! The HTTP server loop: accepts connections and serves the router on each, HTTP/1.1 with
//! WebSocket upgrades.
//!
//! `axum::serve` gives no way to bound the time a client takes to send its request headers, so
//! a client that opens connections and sends nothing, or trickles bytes (slowloris), could hold
//! them forever; this loop is axum's with a deadline for the first byte and hyper's header read
//! timeout (`HOOKLINE_HEADER_READ_TIMEOUT`).

use std::{pin::pin, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets the requests under
/// way finish (open connections are asked to close after them).
///
/// HTTP/1.1 only (with WebSocket upgrades): a client has `header_read_timeout` to send its
/// first byte, and as long again for its request headers.
pub async fn serve(listener: TcpListener, router: Router, header_read_timeout: Duration, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        stream.set_nodelay(true).ok();
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            if !speaks_within(&stream, header_read_timeout).await {
                return;
            }
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service).with_upgrades());
            tokio::select! {
                served = connection.as_mut() => return log_end(served),
                _ = shutdown.cancelled() => {}
            }
            connection.as_mut().graceful_shutdown();
            log_end(connection.await);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Whether the client sends its first byte in time (a connection that stays silent is
/// dropped before any parser waits on it).
async fn speaks_within(stream: &TcpStream, limit: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(tokio::time::timeout(limit, stream.peek(&mut first)).await, Ok(Ok(n)) if n > 0)
}

fn log_end<E: std::fmt::Display>(served: Result<(), E>) {
    if let Err(err) = served {
        tracing::debug!(%err, "connection ended with an error");
    }
}
