//! Receivers that misbehave (silent, trickling, answering without end, unresolvable) cost one
//! attempt each, within the HTTP timeout and the response body cap, and leave a clear
//! `lastError`; and the address guard's residual holes (a password in a rendered URL, the
//! IPv4-translated and 6to4 relay ranges) are closed.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{TestApp, each_backend_with, receiver::Receiver};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";
/// The response body cap of these tests.
const BODY_CAP: usize = 1024;

/// A one-second timeout, a small body cap, and webhooks without retries (one attempt each).
fn strict(config: &mut hookline::config::Config) {
    config.delivery.http_timeout = Duration::from_secs(1);
    config.delivery.max_response_body = BODY_CAP;
}

/// What a raw receiver saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Connections the client (hookline) closed.
    closed_by_client: AtomicUsize,
    /// Bytes written to the client.
    written: AtomicU64,
    done: AtomicBool,
}

/// A TCP server on loopback that reads the request head and then behaves as `serve` says.
async fn raw_receiver<F, Fut>(serve: F) -> (SocketAddr, Arc<Seen>)
where
    F: Fn(TcpStream, Arc<Seen>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let (seen, serve) = (shared.clone(), serve.clone());
            tokio::spawn(async move {
                if read_head(&mut stream).await {
                    serve(stream, seen).await;
                }
            });
        }
    });
    (addr, seen)
}

/// Reads up to the end of the request head; false when the client went away first.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Waits until the client closes the connection (reads and discards whatever it sends).
async fn until_closed(mut stream: TcpStream, seen: &Seen) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
}

async fn webhook(app: &TestApp, url: &str, extra: Value) -> String {
    let mut input = json!({"name": "misbehaving", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
        "url": url, "sentTry": 0});
    if let (Some(i), Some(e)) = (input.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    app.data(CREATE_WEBHOOK, json!({ "input": input })).await["createWebhook"]["id"].as_str().unwrap_or_default().into()
}

async fn ticket(app: &TestApp, name: &str) {
    app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": name}})).await;
}

/// The only queued row once it has settled in `status`.
async fn settled(app: &TestApp, status: &str) -> Value {
    let rows = app.wait_queue(1, &[status]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["sentTry"], 1, "one attempt: {rows:?}");
    rows[0].clone()
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_accepts_and_never_answers_costs_one_attempt_within_the_timeout() {
    each_backend_with(strict, async |app| {
        let (addr, seen) = raw_receiver(async |stream, seen| until_closed(stream, &seen).await).await;
        webhook(app, &format!("http://{addr}/silent"), json!({})).await;
        ticket(app, "silent").await;
        let row = settled(app, "FAILED").await;
        let error = row["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("no answer within 1s (timeout)"), "{error}");
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
        eventually("hookline closes the silent connection", || seen.closed_by_client.load(Ordering::SeqCst) == 1).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_trickles_a_byte_a_second_costs_one_attempt_within_the_timeout() {
    each_backend_with(strict, async |app| {
        let (addr, seen) = raw_receiver(async |mut stream, seen| {
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if stream.write_all(&[*byte]).await.is_err() {
                    seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                seen.written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            seen.done.store(true, Ordering::SeqCst);
        })
        .await;
        webhook(app, &format!("http://{addr}/trickle"), json!({})).await;
        ticket(app, "trickle").await;
        let row = settled(app, "FAILED").await;
        let error = row["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("no answer within 1s (timeout)"), "{error}");
        assert_eq!(row["lastStatusCode"], Value::Null, "{row}");
        eventually("hookline hangs up on the trickle", || seen.closed_by_client.load(Ordering::SeqCst) == 1).await;
        assert!(!seen.done.load(Ordering::SeqCst), "the whole answer was never waited for");
        assert!(seen.written.load(Ordering::SeqCst) < 10, "{} bytes trickled", seen.written.load(Ordering::SeqCst));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_after_a_quick_status_is_cut_at_the_timeout() {
    each_backend_with(strict, async |app| {
        let (addr, seen) = raw_receiver(async |mut stream, seen| {
            if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await.is_err() {
                return;
            }
            for _ in 0..100 {
                if stream.write_all(b"y").await.is_err() {
                    seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                seen.written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            seen.done.store(true, Ordering::SeqCst);
        })
        .await;
        webhook(app, &format!("http://{addr}/slow-body"), json!({"saveResponseBody": true})).await;
        ticket(app, "slow body").await;
        // The receiver took the request (200): it counts as sent, with the part of the body
        // that came within the timeout.
        let row = settled(app, "SENT").await;
        let body = row["responseBody"].as_str().unwrap_or_default();
        assert!(!body.is_empty() && body.len() < 100 && body.bytes().all(|b| b == b'y'), "{body:?}");
        eventually("hookline hangs up on the slow body", || seen.closed_by_client.load(Ordering::SeqCst) == 1).await;
        assert!(!seen.done.load(Ordering::SeqCst));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_answers_a_gigabyte_is_read_up_to_the_cap_and_no_further() {
    const GIGABYTE: u64 = 1 << 30;
    each_backend_with(strict, async |app| {
        let (addr, seen) = raw_receiver(async |mut stream, seen| {
            let head = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {GIGABYTE}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while seen.written.load(Ordering::SeqCst) < GIGABYTE {
                if stream.write_all(&chunk).await.is_err() {
                    seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                seen.written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            seen.done.store(true, Ordering::SeqCst);
        })
        .await;
        webhook(app, &format!("http://{addr}/huge"), json!({"saveResponseBody": true})).await;
        ticket(app, "huge").await;
        let row = settled(app, "FAILED").await;
        let error = row["lastError"].as_str().unwrap_or_default();
        assert!(error.starts_with("HTTP 500"), "{error}");
        assert_eq!(row["lastStatusCode"], 500);
        let body = row["responseBody"].as_str().unwrap_or_default();
        assert_eq!(body.len(), BODY_CAP, "the body is cut at the cap");
        assert!(body.bytes().all(|b| b == b'x'));
        eventually("hookline hangs up once it has the cap", || seen.closed_by_client.load(Ordering::SeqCst) == 1).await;
        // What the socket buffers took before the hang-up, not the gigabyte.
        let written = seen.written.load(Ordering::SeqCst);
        assert!(written < 64 << 20, "{written} bytes were sent before hookline hung up");
        assert!(!seen.done.load(Ordering::SeqCst));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_name_does_not_resolve_fails_with_a_dns_error() {
    // Private targets are allowed here: the failure is the name's, not the address guard's.
    each_backend_with(strict, async |app| {
        webhook(app, "http://hookline-receiver.invalid/hook", json!({})).await;
        ticket(app, "nowhere").await;
        let row = settled(app, "FAILED").await;
        let error = row["lastError"].as_str().unwrap_or_default();
        assert!(error.starts_with("connection failed") && error.contains("dns error"), "{error}");
        assert!(error.contains("`hookline-receiver.invalid` does not resolve"), "{error}");
        assert!(!error.contains("refused"), "not the address guard: {error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_that_only_the_rendered_url_carries_is_refused_at_send_time() {
    each_backend_with(strict, async |app| {
        let receiver = Receiver::start().await;
        // The saved template shows no user or password; the item's name brings one.
        webhook(app, "http://{{ item.name | raw }}/hook", json!({})).await;
        ticket(app, &format!("intruder:hunter2@{}", receiver.addr)).await;
        let row = settled(app, "FAILED").await;
        let error = row["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("refused: the URL carries a user or password"), "{error}");
        assert!(!error.contains("hunter2"), "the password is not repeated: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(receiver.requests().is_empty(), "nothing was sent");
    })
    .await;
}

#[tokio::test]
async fn ipv4_translated_and_6to4_relay_addresses_are_refused() {
    each_backend_with(
        |config| config.delivery.targets.allow_private = false,
        async |app| {
            for url in ["http://[::ffff:0:7f00:1]/hook", "http://[::ffff:0:808:808]/hook", "http://192.88.99.1/hook"] {
                let input = json!({"input": {"name": "ssrf", "entityId": "0", "itemtype": "Ticket",
                    "event": "NEW", "url": url}});
                app.assert_error(CREATE_WEBHOOK, input, "VALIDATION", "is not a public address").await;
            }
        },
    )
    .await;
}
