//! One attempt's request: the queued row's URL, method, headers and body, plus the delivery id
//! and the signature headers computed now.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::{
    domain::{
        signing::signature_headers,
        webhook::{SignatureScheme, is_sensitive_header},
    },
    secret_box::{Purpose, SecretBox},
};

/// Encrypts the values of credential headers (see [`is_sensitive_header`]) before a queued
/// webhook is stored, bound to its delivery id.
pub fn seal_credentials(headers: &mut serde_json::Map<String, Value>, secrets: &SecretBox, delivery_id: &str) {
    for (name, value) in headers.iter_mut() {
        if is_sensitive_header(name)
            && let Some(text) = value.as_str()
        {
            *value = Value::String(secrets.seal_header(Purpose::QueuedHeader, delivery_id, name, text));
        }
    }
}

/// A stored header value, decrypted when it was sealed.
fn open_header(
    row: &entity::queued_webhooks::Model,
    name: &str,
    value: &str,
    secrets: &SecretBox,
) -> Result<String, String> {
    secrets.open_header(Purpose::QueuedHeader, &row.delivery_id, name, value).map_err(|_| {
        format!("the stored value of header `{name}` cannot be decrypted: was HOOKLINE_SECRET_KEY changed?")
    })
}

/// How a webhook signs and authenticates its attempts, as of its `version` (`updated_at`).
#[derive(Clone)]
pub struct Signer {
    pub webhook_id: i64,
    pub version: chrono::DateTime<chrono::Utc>,
    pub scheme: SignatureScheme,
    pub secret: SecretString,
    /// The secret a rotation replaced and until when attempts are also signed with it.
    pub previous: Option<(SecretString, chrono::DateTime<chrono::Utc>)>,
    /// Challenge the target (CRA) before sending.
    pub cra: bool,
    /// Send an OAuth 2 access token of this client.
    pub oauth: Option<std::sync::Arc<super::OAuthClient>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("webhook_id", &self.webhook_id)
            .field("scheme", &self.scheme)
            .field("cra", &self.cra)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

/// An attempt ready to be sent (its Debug output leaves the header values out).
#[derive(Clone)]
pub struct PreparedRequest {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("PreparedRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

pub const DELIVERY_HEADER: &str = "X-Hookline-Delivery";

/// The W3C trace context of an attempt: the attempt's span in the trace of the event that
/// queued the row. It replaces a custom header of that name.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Builds the request of one attempt of a queued webhook, signed at `timestamp` (Unix seconds),
/// in the trace `traceparent` names. GET sends no body (and signs an empty one).
pub fn prepare(
    row: &entity::queued_webhooks::Model,
    signer: &Signer,
    secrets: &SecretBox,
    timestamp: i64,
    traceparent: &str,
) -> Result<PreparedRequest, String> {
    let url = url::Url::parse(row.url.trim()).map_err(|e| format!("the URL `{}` is not valid: {e}", row.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the URL `{}` is not http or https", row.url));
    }
    let method = reqwest::Method::from_bytes(row.http_method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", row.http_method))?;
    let body = (method != reqwest::Method::GET).then(|| row.body.clone().unwrap_or_default().into_bytes());
    let mut headers: Vec<(String, String)> = Vec::with_capacity(8);
    let mut custom = Vec::new();
    if let Value::Object(map) = &row.headers {
        for (name, value) in map {
            if let Some(value) = value.as_str() {
                let value =
                    if is_sensitive_header(name) { open_header(row, name, value, secrets)? } else { value.to_owned() };
                custom.push((name.clone(), value));
            }
        }
    }
    let has = |name: &str| custom.iter().any(|(k, _): &(String, String)| k.eq_ignore_ascii_case(name));
    if body.is_some() && !has("content-type") {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    if !has("user-agent") {
        headers.push(("User-Agent".into(), concat!("hookline/", env!("CARGO_PKG_VERSION")).into()));
    }
    headers.extend(custom.into_iter().filter(|(name, _)| !name.eq_ignore_ascii_case(TRACEPARENT_HEADER)));
    headers.push((TRACEPARENT_HEADER.into(), traceparent.to_owned()));
    headers.push((DELIVERY_HEADER.into(), row.delivery_id.clone()));
    let signed_body = body.as_deref().unwrap_or_default();
    // The previous secret signs until its expiry (compared with the attempt's own time).
    let previous = signer
        .previous
        .as_ref()
        .filter(|(_, until)| until.timestamp() > timestamp)
        .map(|(secret, _)| secret.expose_secret());
    let secret = signer.secret.expose_secret();
    for (name, value) in signature_headers(signer.scheme, secret, previous, &row.delivery_id, timestamp, signed_body) {
        headers.push((name.into(), value));
    }
    Ok(PreparedRequest { method, url, headers, body })
}
