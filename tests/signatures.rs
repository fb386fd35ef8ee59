//! Signatures checked by implementations no one here wrote (the `standardwebhooks` crate,
//! Python's `hmac`), and `hookline verify` run as a receiver would run it.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::{each_backend, receiver::Receiver};
use serde_json::json;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const CREATE_ITEM: &str = "mutation($input: ItemInput!) { createItem(input: $input) { id } }";

/// GLPI's signature as Python's standard library computes it.
fn python_glpi_signature(secret: &str, body: &[u8], timestamp: &str) -> String {
    let script = "import hmac, hashlib, sys\n\
                  secret, ts = sys.argv[1], sys.argv[2]\n\
                  body = sys.stdin.buffer.read()\n\
                  print(hmac.new(secret.encode(), body + ts.encode(), hashlib.sha256).hexdigest())";
    let mut child = Command::new("python3")
        .args(["-c", script, secret, timestamp])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(body).expect("body written");
    let output = child.wait_with_output().expect("python3 ends");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// Runs `hookline verify` with the body on stdin: (exit status 0?, printed reason).
fn hookline_verify(args: &[&str], body: &[u8]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .arg("verify")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookline verify runs");
    child.stdin.take().expect("stdin").write_all(body).expect("body written");
    let output = child.wait_with_output().expect("hookline verify ends");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn both_schemes_verify_with_independent_implementations_and_with_hookline_verify() {
    each_backend(async |app| {
        let receiver = Receiver::start().await;
        app.data(
            CREATE_WEBHOOK,
            json!({"input": {"name": "signed", "entityId": "0", "itemtype": "Ticket", "event": "NEW",
                   "url": receiver.url("/hook"), "signatureScheme": "BOTH", "secret": SECRET}}),
        )
        .await;
        app.data(CREATE_ITEM, json!({"input": {"itemtype": "Ticket", "entityId": "0", "name": "ünïcode ✓"}})).await;
        let request = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);

        // Standard Webhooks: the reference Rust library.
        let mut headers = standardwebhooks_headers();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let value = request.header(name).unwrap_or_else(|| panic!("{name} sent"));
            headers.insert(name, value.parse().expect("header value"));
        }
        let verifier = standardwebhooks::Webhook::new(SECRET).expect("secret accepted");
        verifier.verify(&request.body, &headers).expect("the standardwebhooks crate verifies hookline's signature");
        let mut tampered = request.body.clone();
        tampered.push(b' ');
        assert!(verifier.verify(&tampered, &headers).is_err(), "a changed body must not verify");
        assert_eq!(
            request.header("webhook-id"),
            request.header("X-Hookline-Delivery"),
            "webhook-id is the delivery id"
        );

        // GLPI: Python's hmac over the body followed by the timestamp.
        let timestamp = request.header("X-GLPI-timestamp").expect("timestamp");
        assert_eq!(request.header("webhook-timestamp"), Some(timestamp));
        assert_eq!(
            request.header("X-GLPI-signature"),
            Some(python_glpi_signature(SECRET, &request.body, timestamp).as_str())
        );

        // hookline verify, as a receiver's script would call it.
        let glpi = ["--scheme", "glpi", "--secret", SECRET, "--timestamp", timestamp, "--signature"];
        let signature = request.header("X-GLPI-signature").expect("signature");
        let (ok, text) = hookline_verify(&[&glpi[..], &[signature]].concat(), &request.body);
        assert!(ok, "{text}");
        let standard = [
            "--scheme",
            "standard",
            "--secret",
            SECRET,
            "--id",
            request.header("webhook-id").expect("id"),
            "--timestamp",
            timestamp,
            "--signature",
            request.header("webhook-signature").expect("signature"),
        ];
        let (ok, text) = hookline_verify(&standard, &request.body);
        assert!(ok, "{text}");
        let (ok, text) = hookline_verify(&standard, &tampered);
        assert!(!ok && text.contains("does not match"), "{text}");
    })
    .await;
}

fn standardwebhooks_headers() -> axum::http::HeaderMap {
    axum::http::HeaderMap::new()
}

#[test]
fn hookline_verify_rejects_stale_future_truncated_and_empty_signatures() {
    let body = br#"{"event":"new"}"#;
    let now = chrono::Utc::now().timestamp();
    let sign = |ts: i64| python_glpi_signature("s3cret", body, &ts.to_string());
    let run = |ts: i64, signature: &str, max_age: &str| {
        let ts = ts.to_string();
        hookline_verify(
            &[
                "--scheme",
                "glpi",
                "--secret",
                "s3cret",
                "--timestamp",
                &ts,
                "--signature",
                signature,
                "--max-age",
                max_age,
            ],
            body,
        )
    };
    let good = sign(now);
    assert!(run(now, &good, "300").0);
    let (ok, text) = run(now - 400, &sign(now - 400), "300");
    assert!(!ok && text.contains("too old"), "stale: {text}");
    assert!(run(now - 400, &sign(now - 400), "600").0, "within a longer expiration delay");
    let (ok, text) = run(now + 3600, &sign(now + 3600), "300");
    assert!(!ok && text.contains("future"), "future: {text}");
    let (ok, text) = run(now, &good[..good.len() - 2], "300");
    assert!(!ok && text.contains("not well formed"), "truncated: {text}");
    let (ok, text) = run(now, "", "300");
    assert!(!ok && text.contains("no signature"), "empty: {text}");
    let (ok, _) = run(now, &sign(now - 1), "300");
    assert!(!ok, "a signature over another timestamp");

    // Standard Webhooks: the signature of the reference library, then damaged copies.
    let signer = standardwebhooks::Webhook::new(SECRET).expect("secret");
    let signature = signer.sign("msg_1", now, body).expect("signed");
    let ts = now.to_string();
    let standard = |signature: &str| {
        hookline_verify(
            &[
                "--scheme",
                "standard",
                "--secret",
                SECRET,
                "--id",
                "msg_1",
                "--timestamp",
                &ts,
                "--signature",
                signature,
            ],
            body,
        )
    };
    assert!(standard(&signature).0, "the reference library's signature verifies");
    let (ok, text) = standard("v1,");
    assert!(!ok && text.contains("not well formed"), "{text}");
    let (ok, text) = standard(&signature[..signature.len() - 4]);
    assert!(!ok, "truncated: {text}");
    let (ok, text) = standard("");
    assert!(!ok && text.contains("no signature"), "{text}");
}
