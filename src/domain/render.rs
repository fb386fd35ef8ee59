//! What a queued webhook will send, computed when the event is queued: URL, custom headers
//! and body.

use serde_json::{Map, Value};

use super::{payload::ApiData, webhook::WebhookSettings};

/// The rendered request of one queued webhook (signature headers are added per attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub url: String,
    pub headers: Map<String, Value>,
    pub body: String,
}

/// Renders a webhook's request for an event. The body is the default payload (computed once
/// per event by the caller) unless the webhook has its own payload; URL and header values are
/// used as written.
pub fn render(settings: &WebhookSettings, _data: &ApiData, default_body: &str) -> Result<Rendered, String> {
    let body = match settings.payload.as_deref() {
        Some(payload) if !settings.use_default_payload && !payload.trim().is_empty() => payload.to_owned(),
        _ => default_body.to_owned(),
    };
    Ok(Rendered { url: settings.url.clone(), headers: settings.custom_headers.clone(), body })
}
