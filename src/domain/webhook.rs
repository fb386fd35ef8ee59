//! Webhook settings: the enums, the defaults of omitted fields, validation, and secrets.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use rand::{Rng, RngCore, distr::Alphanumeric};
use serde_json::{Map, Value};

pub use super::headers::{
    HIDDEN, check_custom_headers, is_framing_header, is_sensitive_header, keep_hidden_headers, parse_custom_headers,
    redact_headers,
};
use crate::error::{AppError, AppResult};

/// The event that fires a webhook.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// An item was created.
    New,
    /// An item's stored snapshot changed.
    Update,
    /// An item was put in the trash.
    Delete,
    /// An item was taken out of the trash.
    Restore,
    /// An item was removed for good.
    Purge,
}

impl WebhookEvent {
    /// The name used in payloads (`{{ event }}`) and in storage, as in GLPI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::Purge => "purge",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::New, Self::Update, Self::Delete, Self::Restore, Self::Purge].into_iter().find(|e| e.as_str() == text)
    }
}

/// The HTTP method of the outgoing request (GLPI's list, plus DELETE).
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Post,
    Get,
    Put,
    Patch,
    Delete,
    /// GLPI's non-standard `UPDATE` verb, sent as is.
    Update,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Update => "UPDATE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Post, Self::Get, Self::Put, Self::Patch, Self::Delete, Self::Update]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(text))
    }
}

/// Which signature headers each attempt carries.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// `X-GLPI-signature` and `X-GLPI-timestamp`, as GLPI sends them.
    Glpi,
    /// `webhook-id`, `webhook-timestamp` and `webhook-signature` (Standard Webhooks).
    StandardWebhooks,
    /// Both sets of headers.
    Both,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Glpi => "GLPI",
            Self::StandardWebhooks => "STANDARD_WEBHOOKS",
            Self::Both => "BOTH",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Glpi, Self::StandardWebhooks, Self::Both].into_iter().find(|s| s.as_str() == text)
    }

    fn needs_standard_secret(self) -> bool {
        self != Self::Glpi
    }
}

/// Headers that hookline sets on every attempt; custom headers may not override them.
pub const RESERVED_HEADERS: &[&str] = &[
    "X-GLPI-signature",
    "X-GLPI-signature-previous",
    "X-GLPI-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Hookline-Delivery",
];

/// Every setting of a webhook except its id, timestamps and secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub name: String,
    pub comment: Option<String>,
    pub is_active: bool,
    pub category_id: Option<i64>,
    pub entity_id: i64,
    pub is_recursive: bool,
    pub itemtype: String,
    pub event: WebhookEvent,
    pub sent_try: i32,
    pub url: String,
    pub http_method: HttpMethod,
    pub save_response_body: bool,
    pub log_in_item_history: bool,
    pub signature_scheme: SignatureScheme,
    pub expiration: i32,
    pub use_cra_challenge: bool,
    pub use_oauth: bool,
    pub oauth_url: Option<String>,
    pub client_id: Option<String>,
    pub use_default_payload: bool,
    pub payload: Option<String>,
    pub custom_headers: Map<String, Value>,
    /// Most sends started in any one second, over every process (None: no limit).
    pub max_per_second: Option<i32>,
    /// The deliveries of one item are sent one at a time, in event order.
    pub ordered: bool,
    /// How long `update` rows wait before their first send (a newer update of the same item
    /// replaces a waiting one); 0: they go at once.
    pub coalesce_seconds: i32,
}

/// The highest rate limit a webhook may have (`maxPerSecond`).
pub const MAX_PER_SECOND: i32 = 10_000;

/// The longest `coalesceSeconds`: an hour (a row waits no longer than this for newer updates).
pub const MAX_COALESCE_SECONDS: i32 = 3600;

impl WebhookSettings {
    /// The settings of a new webhook before its input is applied: hookline's defaults
    /// (active, not recursive, 3 retries, POST, default payload, GLPI signatures).
    pub fn defaults(name: String, entity_id: i64, itemtype: String, event: WebhookEvent, url: String) -> Self {
        Self {
            name,
            comment: None,
            is_active: true,
            category_id: None,
            entity_id,
            is_recursive: false,
            itemtype,
            event,
            sent_try: 3,
            url,
            http_method: HttpMethod::Post,
            save_response_body: false,
            log_in_item_history: false,
            signature_scheme: SignatureScheme::Glpi,
            expiration: 0,
            use_cra_challenge: false,
            use_oauth: false,
            oauth_url: None,
            client_id: None,
            use_default_payload: true,
            payload: None,
            custom_headers: Map::new(),
            max_per_second: None,
            ordered: false,
            coalesce_seconds: 0,
        }
    }

    /// Checks every rule that needs nothing but the settings themselves. `has_client_secret`
    /// tells whether an OAuth client secret is (or will be) stored.
    pub fn validate(&mut self, has_client_secret: bool) -> AppResult<()> {
        let texts = [
            ("name", Some(&self.name)),
            ("comment", self.comment.as_ref()),
            ("url", Some(&self.url)),
            ("payload", self.payload.as_ref()),
            ("oauthUrl", self.oauth_url.as_ref()),
            ("clientId", self.client_id.as_ref()),
        ];
        for (field, text) in texts {
            if text.is_some_and(|t| t.contains('\0')) {
                return Err(AppError::validation(format!("{field}: text cannot contain the NUL character (U+0000)")));
            }
        }
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() {
            return Err(AppError::validation("name: must not be empty"));
        }
        self.itemtype = self.itemtype.trim().to_owned();
        if self.itemtype.is_empty() {
            return Err(AppError::validation("itemtype: an item type is required"));
        }
        check_url_template(&self.url, "url")?;
        if !(0..=255).contains(&self.sent_try) {
            return Err(AppError::validation(format!(
                "sentTry: the number of retries must be between 0 and 255, not {}",
                self.sent_try
            )));
        }
        if let Some(limit) = self.max_per_second
            && !(1..=MAX_PER_SECOND).contains(&limit)
        {
            return Err(AppError::invalid(
                "maxPerSecond",
                format!("maxPerSecond: from 1 to {MAX_PER_SECOND} sends a second, or null for no limit, not {limit}"),
            ));
        }
        if self.expiration < 0 {
            return Err(AppError::validation("expiration: must be 0 (disabled) or a positive number of seconds"));
        }
        if !(0..=MAX_COALESCE_SECONDS).contains(&self.coalesce_seconds) {
            return Err(AppError::invalid(
                "coalesceSeconds",
                format!(
                    "coalesceSeconds: must be between 0 (no coalescing) and {MAX_COALESCE_SECONDS} seconds, not {}",
                    self.coalesce_seconds
                ),
            ));
        }
        check_custom_headers(&self.custom_headers)?;
        self.oauth_url = self.oauth_url.take().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        self.client_id = self.client_id.take().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if let Some(url) = &self.oauth_url {
            check_plain_url(url, "oauthUrl")?;
        }
        if self.use_oauth {
            if self.oauth_url.is_none() {
                return Err(AppError::validation("oauthUrl: required when useOauth is true"));
            }
            if self.client_id.is_none() {
                return Err(AppError::validation("clientId: required when useOauth is true"));
            }
            if !has_client_secret {
                return Err(AppError::validation("clientSecret: required when useOauth is true"));
            }
        }
        Ok(())
    }
}

/// A URL template must start with `http://` or `https://` and name a host.
pub fn check_url_template(url: &str, field: &str) -> AppResult<()> {
    let lower = url.trim_start().to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
        _ => {
            return Err(AppError::invalid(
                field,
                format!("{field}: must be an http:// or https:// URL with a host, not `{url}`"),
            ));
        }
    }
    if url.chars().any(|c| c.is_control()) {
        return Err(AppError::invalid(field, format!("{field}: must not contain control characters")));
    }
    Ok(())
}

fn check_plain_url(url: &str, field: &str) -> AppResult<()> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => Ok(()),
        _ => Err(AppError::validation(format!("{field}: must be an http:// or https:// URL, not `{url}`"))),
    }
}

/// A new secret for the scheme: 40 random alphanumerics for `GLPI` (as GLPI), otherwise
/// `whsec_` and base64 of 32 random bytes.
pub fn generate_secret(scheme: SignatureScheme) -> String {
    if scheme.needs_standard_secret() {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        format!("whsec_{}", BASE64.encode(key))
    } else {
        rand::rng().sample_iter(Alphanumeric).take(40).map(char::from).collect()
    }
}

/// Whether a secret can be used with the scheme: any non-empty text for `GLPI`; for the
/// Standard Webhooks schemes `whsec_` and base64 of 24 to 64 bytes.
pub fn check_secret(scheme: SignatureScheme, secret: &str) -> AppResult<()> {
    if secret.is_empty() || secret.trim() != secret {
        return Err(AppError::validation("secret: must not be empty or start or end with spaces"));
    }
    if secret.len() > 1024 {
        return Err(AppError::validation("secret: must be at most 1024 bytes"));
    }
    if scheme.needs_standard_secret() {
        let key = secret.strip_prefix("whsec_").and_then(|b64| BASE64.decode(b64).ok());
        match key {
            Some(key) if (24..=64).contains(&key.len()) => {}
            _ => {
                return Err(AppError::validation(format!(
                    "secret: signatureScheme {} needs a secret of the form whsec_<base64 of 24 to 64 bytes>; \
                     give one, or omit it to have one generated",
                    scheme.as_str()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings::defaults("Ops".into(), 0, "Ticket".into(), WebhookEvent::New, "https://example.org/h".into())
    }

    fn error_of(mut s: WebhookSettings) -> String {
        match s.validate(false) {
            Err(AppError::Validation(m)) => m,
            Err(AppError::Invalid(invalid)) => invalid.message,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings();
        assert!(s.is_active && !s.is_recursive && s.use_default_payload);
        assert_eq!(
            (s.sent_try, s.http_method, s.signature_scheme, s.expiration),
            (3, HttpMethod::Post, SignatureScheme::Glpi, 0)
        );
        assert!(settings().validate(false).is_ok());
    }

    #[test]
    fn each_rule_names_its_field() {
        assert!(error_of(WebhookSettings { name: " ".into(), ..settings() }).starts_with("name:"));
        assert!(error_of(WebhookSettings { url: "ftp://x".into(), ..settings() }).starts_with("url:"));
        assert!(error_of(WebhookSettings { url: "https://".into(), ..settings() }).starts_with("url:"));
        assert!(error_of(WebhookSettings { sent_try: 256, ..settings() }).starts_with("sentTry:"));
        assert!(error_of(WebhookSettings { sent_try: -1, ..settings() }).starts_with("sentTry:"));
        assert!(error_of(WebhookSettings { expiration: -5, ..settings() }).starts_with("expiration:"));
        for limit in [0, -1, 10_001] {
            let limited = WebhookSettings { max_per_second: Some(limit), ..settings() };
            assert!(error_of(limited).starts_with("maxPerSecond:"));
        }
        assert!(WebhookSettings { max_per_second: Some(10_000), ..settings() }.validate(false).is_ok());
        assert!(error_of(WebhookSettings { coalesce_seconds: -1, ..settings() }).starts_with("coalesceSeconds:"));
        assert!(error_of(WebhookSettings { coalesce_seconds: 3601, ..settings() }).starts_with("coalesceSeconds:"));
        assert!(error_of(WebhookSettings { use_oauth: true, ..settings() }).starts_with("oauthUrl:"));
        let oauth = WebhookSettings {
            use_oauth: true,
            oauth_url: Some("https://auth.example.org/token".into()),
            client_id: Some("id".into()),
            ..settings()
        };
        assert!(error_of(oauth.clone()).starts_with("clientSecret:"));
        assert!(oauth.clone().validate(true).is_ok());
    }

    #[test]
    fn url_templates_may_hold_placeholders() {
        assert!(check_url_template("https://host/{{ item.entity.name }}/{{ event }}", "url").is_ok());
        assert!(check_url_template("HTTP://host", "url").is_ok());
        assert!(check_url_template("{{ base }}/x", "url").is_err());
    }

    #[test]
    fn generated_secrets_fit_their_scheme() {
        let glpi = generate_secret(SignatureScheme::Glpi);
        assert_eq!(glpi.len(), 40);
        assert!(glpi.chars().all(|c| c.is_ascii_alphanumeric()));
        for scheme in [SignatureScheme::StandardWebhooks, SignatureScheme::Both] {
            let secret = generate_secret(scheme);
            assert!(secret.starts_with("whsec_"));
            assert!(check_secret(scheme, &secret).is_ok());
            assert!(check_secret(scheme, &glpi).is_err());
        }
        assert!(check_secret(SignatureScheme::Glpi, &generate_secret(SignatureScheme::Both)).is_ok());
        assert!(check_secret(SignatureScheme::StandardWebhooks, "whsec_c2hvcnQ=").is_err());
    }
}

/// A change of settings, as `createWebhook` and `updateWebhook` give it: `None` keeps the
/// current value; for nullable settings `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub name: Option<String>,
    pub comment: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub category_id: Option<Option<i64>>,
    pub entity_id: Option<i64>,
    pub is_recursive: Option<bool>,
    pub itemtype: Option<String>,
    pub event: Option<WebhookEvent>,
    pub sent_try: Option<i32>,
    pub url: Option<String>,
    pub http_method: Option<HttpMethod>,
    pub save_response_body: Option<bool>,
    pub log_in_item_history: Option<bool>,
    pub signature_scheme: Option<SignatureScheme>,
    pub expiration: Option<i32>,
    pub use_cra_challenge: Option<bool>,
    pub use_oauth: Option<bool>,
    pub oauth_url: Option<Option<String>>,
    pub client_id: Option<Option<String>>,
    pub use_default_payload: Option<bool>,
    pub payload: Option<Option<String>>,
    pub custom_headers: Option<Value>,
    pub max_per_second: Option<Option<i32>>,
    pub ordered: Option<bool>,
    pub coalesce_seconds: Option<i32>,
}

impl WebhookSettings {
    /// The settings with the changes applied (not yet validated).
    pub fn with_changes(mut self, c: WebhookChanges) -> AppResult<Self> {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        set(&mut self.name, c.name);
        set(&mut self.comment, c.comment.map(|v| v.filter(|s| !s.trim().is_empty())));
        set(&mut self.is_active, c.is_active);
        set(&mut self.category_id, c.category_id);
        set(&mut self.entity_id, c.entity_id);
        set(&mut self.is_recursive, c.is_recursive);
        set(&mut self.itemtype, c.itemtype);
        set(&mut self.event, c.event);
        set(&mut self.sent_try, c.sent_try);
        set(&mut self.url, c.url);
        set(&mut self.http_method, c.http_method);
        set(&mut self.save_response_body, c.save_response_body);
        set(&mut self.log_in_item_history, c.log_in_item_history);
        set(&mut self.signature_scheme, c.signature_scheme);
        set(&mut self.expiration, c.expiration);
        set(&mut self.use_cra_challenge, c.use_cra_challenge);
        set(&mut self.use_oauth, c.use_oauth);
        set(&mut self.oauth_url, c.oauth_url);
        set(&mut self.client_id, c.client_id);
        set(&mut self.use_default_payload, c.use_default_payload);
        set(&mut self.payload, c.payload);
        set(&mut self.max_per_second, c.max_per_second);
        set(&mut self.ordered, c.ordered);
        set(&mut self.coalesce_seconds, c.coalesce_seconds);
        if let Some(headers) = c.custom_headers {
            self.custom_headers = parse_custom_headers(headers)?;
        }
        Ok(self)
    }

    /// `(setting, old, new)` for each setting that differs, for the webhook's history.
    pub fn differences(&self, new: &Self) -> Vec<(&'static str, String, String)> {
        let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
        let pairs: [(&'static str, String, String); 25] = [
            ("name", self.name.clone(), new.name.clone()),
            ("comment", show(&self.comment), show(&new.comment)),
            ("isActive", show(&self.is_active), show(&new.is_active)),
            ("categoryId", show(&self.category_id), show(&new.category_id)),
            ("entityId", show(&self.entity_id), show(&new.entity_id)),
            ("isRecursive", show(&self.is_recursive), show(&new.is_recursive)),
            ("itemtype", self.itemtype.clone(), new.itemtype.clone()),
            ("event", self.event.as_str().into(), new.event.as_str().into()),
            ("sentTry", show(&self.sent_try), show(&new.sent_try)),
            ("url", self.url.clone(), new.url.clone()),
            ("httpMethod", self.http_method.as_str().into(), new.http_method.as_str().into()),
            ("saveResponseBody", show(&self.save_response_body), show(&new.save_response_body)),
            ("logInItemHistory", show(&self.log_in_item_history), show(&new.log_in_item_history)),
            ("signatureScheme", self.signature_scheme.as_str().into(), new.signature_scheme.as_str().into()),
            ("expiration", show(&self.expiration), show(&new.expiration)),
            ("useCraChallenge", show(&self.use_cra_challenge), show(&new.use_cra_challenge)),
            ("useOauth", show(&self.use_oauth), show(&new.use_oauth)),
            ("oauthUrl", show(&self.oauth_url), show(&new.oauth_url)),
            ("clientId", show(&self.client_id), show(&new.client_id)),
            ("useDefaultPayload", show(&self.use_default_payload), show(&new.use_default_payload)),
            ("payload", show(&self.payload), show(&new.payload)),
            ("maxPerSecond", show(&self.max_per_second), show(&new.max_per_second)),
            ("ordered", show(&self.ordered), show(&new.ordered)),
            ("coalesceSeconds", show(&self.coalesce_seconds), show(&new.coalesce_seconds)),
            (
                "customHeaders",
                Value::Object(redact_headers(&self.custom_headers)).to_string(),
                Value::Object(redact_headers(&new.custom_headers)).to_string(),
            ),
        ];
        pairs.into_iter().filter(|(_, old, new)| old != new).collect()
    }
}
