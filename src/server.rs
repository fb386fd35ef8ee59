//! The HTTP server loop: accepts connections and serves the router on each, HTTP/1.1 (with
//! WebSocket upgrades) and HTTP/2.
//!
//! `axum::serve` gives no way to bound the time a client takes to send its request headers, so
//! a client that opens connections and trickles bytes (slowloris) could hold them forever; this
//! loop is axum's with hyper's header read timeout (`HOOKLINE_HEADER_READ_TIMEOUT`).

use std::{pin::pin, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets the requests under
/// way finish (open connections are asked to close after them).
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
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
            let mut connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
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

fn log_end<E: std::fmt::Display>(served: Result<(), E>) {
    if let Err(err) = served {
        tracing::debug!(%err, "connection ended with an error");
    }
}
