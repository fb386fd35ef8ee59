//! One attempt's request: the queued row's URL, method, headers and body, plus the delivery id
//! and the signature headers computed now.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::domain::{signing::signature_headers, webhook::SignatureScheme};

/// How a webhook signs its attempts.
#[derive(Clone)]
pub struct Signer {
    pub scheme: SignatureScheme,
    pub secret: SecretString,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

/// An attempt ready to be sent.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

pub const DELIVERY_HEADER: &str = "X-Hookline-Delivery";

/// Builds the request of one attempt of a queued webhook, signed at `timestamp` (Unix seconds).
/// GET sends no body (and signs an empty one).
pub fn prepare(
    row: &entity::queued_webhooks::Model,
    signer: &Signer,
    timestamp: i64,
) -> Result<PreparedRequest, String> {
    let url = url::Url::parse(row.url.trim()).map_err(|e| format!("the URL `{}` is not valid: {e}", row.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the URL `{}` is not http or https", row.url));
    }
    let method = reqwest::Method::from_bytes(row.http_method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", row.http_method))?;
    let body = (method != reqwest::Method::GET).then(|| row.body.clone().unwrap_or_default().into_bytes());
    let mut headers: Vec<(String, String)> = Vec::with_capacity(8);
    let custom = match &row.headers {
        Value::Object(map) => map.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect(),
        _ => Vec::new(),
    };
    let has = |name: &str| custom.iter().any(|(k, _): &(String, String)| k.eq_ignore_ascii_case(name));
    if body.is_some() && !has("content-type") {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    if !has("user-agent") {
        headers.push(("User-Agent".into(), concat!("hookline/", env!("CARGO_PKG_VERSION")).into()));
    }
    headers.extend(custom);
    headers.push((DELIVERY_HEADER.into(), row.delivery_id.clone()));
    let signed_body = body.as_deref().unwrap_or_default();
    for (name, value) in
        signature_headers(signer.scheme, signer.secret.expose_secret(), &row.delivery_id, timestamp, signed_body)
    {
        headers.push((name.into(), value));
    }
    Ok(PreparedRequest { method, url, headers, body })
}
