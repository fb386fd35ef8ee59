//! A webhook's credentials at rest, and when its target changes.
//!
//! Credential headers (see [`is_sensitive_header`]) are stored sealed in the webhook's
//! `custom_headers`, bound to the webhook id and the header name, like its secret and its
//! OAuth client secret; values stored in clear before are read as they are and sealed when
//! the webhook is next saved. A loaded [`Webhook`] keeps them sealed (the API only ever shows
//! `(hidden)`); rendering opens them.

use serde_json::{Map, Value};

use super::webhooks::Webhook;
use crate::{
    domain::{
        target::target_changes,
        webhook::{WebhookSettings, is_sensitive_header},
    },
    error::{AppError, AppResult},
    secret_box::{Purpose, SecretBox, is_sealed_header},
};

/// The headers as stored for webhook `webhook_id`: each credential header sealed, except those
/// in `kept` that are stored sealed already.
pub fn stored_headers(
    headers: &Map<String, Value>,
    kept: &[String],
    webhook_id: i64,
    secrets: &SecretBox,
) -> Map<String, Value> {
    let row = webhook_id.to_string();
    headers
        .iter()
        .map(|(name, value)| {
            let value = match value.as_str() {
                Some(text) if is_sensitive_header(name) && !(kept.contains(name) && is_sealed_header(text)) => {
                    Value::String(secrets.seal_header(Purpose::WebhookHeader, &row, name, text))
                }
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The webhook's settings with its credential headers opened, for rendering.
pub fn opened_settings(webhook: &Webhook, secrets: &SecretBox) -> AppResult<WebhookSettings> {
    let mut settings = webhook.settings.clone();
    let row = webhook.id.to_string();
    for (name, value) in settings.custom_headers.iter_mut() {
        if is_sensitive_header(name)
            && let Some(text) = value.as_str()
        {
            *value = Value::String(secrets.open_header(Purpose::WebhookHeader, &row, name, text)?);
        }
    }
    Ok(settings)
}

/// The credential headers of settings, which an update that does not give `customHeaders`
/// keeps.
pub fn credential_headers(settings: &WebhookSettings) -> Vec<String> {
    settings.custom_headers.keys().filter(|name| is_sensitive_header(name)).cloned().collect()
}

/// Refuses an update that would send credentials stored for one target to another: when the
/// URL's scheme, host or port change (or are known only when rendered), every credential
/// header must be given again (`kept_headers` are those that keep their stored value); when
/// `oauthUrl`'s do, a stored client secret must be given again (`keeps_client_secret`).
pub fn check_new_target(
    old: &WebhookSettings,
    new: &WebhookSettings,
    kept_headers: &[String],
    keeps_client_secret: bool,
) -> AppResult<()> {
    if target_changes(Some(&old.url), Some(&new.url))
        && let Some(name) = kept_headers.first()
    {
        return Err(AppError::invalid(
            format!("customHeaders.{name}"),
            format!(
                "customHeaders: the new url sends to another scheme, host or port (or one known only when rendered), \
                 and `{name}` holds a credential stored for the previous target; give its value again in \
                 customHeaders (`(hidden)` does not do), or remove it, in the same update"
            ),
        ));
    }
    if keeps_client_secret && target_changes(old.oauth_url.as_deref(), new.oauth_url.as_deref()) {
        return Err(AppError::invalid(
            "clientSecret",
            "clientSecret: the new oauthUrl sends to another scheme, host or port, and the stored client secret was \
             given for the previous one; give clientSecret again in the same update",
        ));
    }
    Ok(())
}
