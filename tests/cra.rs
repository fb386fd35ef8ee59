//! Challenge–response (CRA) answers that cannot be used as signatures: tokens of 64 hex digits
//! only, and for the Standard Webhooks schemes a key of their own; `hookline verify --scheme
//! cra` and the README's receiver code compute the same answers hookline expects.

mod common;

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use axum::{Router, extract::Query, routing::get};
use common::{TestApp, each_backend};
use serde_json::json;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GLPI_SECRET: &str = "a-glpi-secret";
const CREATE_WEBHOOK: &str = "mutation($input: WebhookInput!) { createWebhook(input: $input) { id } }";
const VALIDATE: &str = "mutation($id: ID!) { validateCraChallenge(webhookId: $id) { valid message statusCode } }";

/// The README's Python receiver code for challenges.
const PYTHON_CRA: &str = r#"
import base64, hashlib, hmac, re

def cra_answer(secret: str, token: str, scheme: str = "GLPI") -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", token):
        raise ValueError("not a hookline challenge token")
    if scheme == "GLPI":
        key = secret.encode()
    else:  # STANDARD_WEBHOOKS, BOTH
        key = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), b"hookline-cra-v1", hashlib.sha256).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()
"#;

/// How the target computes its answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answerer {
    /// `hookline verify --scheme cra`.
    Cli,
    /// The README's Python code.
    Python,
    /// HMAC of the token keyed with the secret's bytes (GLPI's answer), whatever the scheme.
    SecretBytes,
}

fn hookline_cra(secret: &str, token: &str, scheme: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command.args(["verify", "--scheme", "cra", "--secret", secret, "--token", token]);
    if let Some(scheme) = scheme {
        command.args(["--signature-scheme", scheme]);
    }
    let output = command.stdin(Stdio::null()).output().expect("hookline verify runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn python_cra(secret: &str, token: &str, scheme: &str) -> (bool, String) {
    let script = format!("{PYTHON_CRA}\nimport sys\nprint(cra_answer(sys.argv[1], sys.argv[2], sys.argv[3]))");
    let output = Command::new("python3").args(["-c", &script, secret, token, scheme]).output().expect("python3 runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn secret_bytes_answer(secret: &str, token: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

type Tokens = Arc<Mutex<Vec<String>>>;

/// A target that answers challenges as `answerer` computes them for `secret` and `scheme`,
/// and records the tokens it was sent.
async fn start_target(answerer: Answerer, secret: &'static str, scheme: &'static str) -> (String, Tokens) {
    let tokens: Tokens = Arc::default();
    let seen = tokens.clone();
    let answer = move |Query(query): Query<HashMap<String, String>>| {
        let seen = seen.clone();
        async move {
            let token = query.get("crc_token").cloned().unwrap_or_default();
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(token.clone());
            let cli_scheme = if scheme == "GLPI" { "glpi" } else { "standard-webhooks" };
            match answerer {
                Answerer::Cli => hookline_cra(secret, &token, Some(cli_scheme)).1,
                Answerer::Python => python_cra(secret, &token, scheme).1,
                Answerer::SecretBytes => secret_bytes_answer(secret, &token),
            }
        }
    };
    let app = Router::new().route("/hook", get(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (base, tokens)
}

async fn challenged(app: &TestApp, answerer: Answerer, scheme: &'static str) -> (bool, Vec<String>) {
    let secret = if scheme == "GLPI" { GLPI_SECRET } else { WHSEC };
    let (base, tokens) = start_target(answerer, secret, scheme).await;
    let input = json!({"name": "cra", "entityId": "0", "itemtype": "Ticket", "event": "NEW", "url": format!("{base}/hook"),
                       "secret": secret, "signatureScheme": scheme, "useCraChallenge": true});
    let id = app.data(CREATE_WEBHOOK, json!({"input": input})).await["createWebhook"]["id"].clone();
    let result = app.data(VALIDATE, json!({"id": id})).await;
    let valid = result["validateCraChallenge"]["valid"].as_bool().expect("valid");
    (valid, tokens.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_cra_answers_use_a_key_of_their_own() {
    each_backend(async |app| {
        for scheme in ["STANDARD_WEBHOOKS", "BOTH"] {
            let (valid, tokens) = challenged(app, Answerer::Cli, scheme).await;
            assert!(valid, "hookline verify's answer is accepted for {scheme}");
            assert!(tokens.iter().all(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())), "{tokens:?}");
            assert!(challenged(app, Answerer::Python, scheme).await.0, "the README's answer for {scheme}");
            // The answer keyed like a GLPI signature (the secret's bytes) is not accepted.
            assert!(!challenged(app, Answerer::SecretBytes, scheme).await.0, "{scheme}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glpi_cra_answers_stay_as_glpi_computes_them() {
    each_backend(async |app| {
        assert!(challenged(app, Answerer::SecretBytes, "GLPI").await.0);
        assert!(challenged(app, Answerer::Cli, "GLPI").await.0);
        assert!(challenged(app, Answerer::Python, "GLPI").await.0);
    })
    .await;
}

#[test]
fn hookline_verify_and_the_readme_refuse_tokens_that_are_not_64_hex_digits() {
    let token = "0123456789abcdef".repeat(4);
    let (ok, answer) = hookline_cra(GLPI_SECRET, &token, None);
    assert!(ok && answer == secret_bytes_answer(GLPI_SECRET, &token), "{answer}");
    assert_eq!(python_cra(GLPI_SECRET, &token, "GLPI"), (true, answer));
    // A GLPI signature's signed bytes (a body and a timestamp) are not a token.
    for bad in ["{\"item\":1}1700000000", &token.to_uppercase(), &token[2..], &format!("{token}00"), ""] {
        let (ok, text) = hookline_cra(GLPI_SECRET, bad, None);
        assert!(!ok && text.contains("64 lowercase hexadecimal"), "{bad}: {text}");
        assert!(!python_cra(GLPI_SECRET, bad, "GLPI").0, "{bad}");
    }
    // A whsec_ secret defaults to the Standard Webhooks key; --signature-scheme glpi overrides it.
    let (_, standard) = hookline_cra(WHSEC, &token, None);
    assert_eq!(python_cra(WHSEC, &token, "STANDARD_WEBHOOKS").1, standard);
    assert_eq!(hookline_cra(WHSEC, &token, Some("glpi")).1, secret_bytes_answer(WHSEC, &token));
}
