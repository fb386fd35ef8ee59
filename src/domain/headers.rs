//! Custom headers: which ones are credentials (shown `(hidden)`, stored sealed), which ones
//! may not be set (hookline's own, and those that frame or route the request), and how the
//! `customHeaders` input reads.

use serde_json::{Map, Value};

use super::webhook::RESERVED_HEADERS;
use crate::error::{AppError, AppResult};

/// What the API shows instead of the value of a sensitive header.
pub const HIDDEN: &str = "(hidden)";

/// What a header name holds when it names a credential.
const CREDENTIAL_WORDS: &[&str] =
    &["token", "secret", "password", "passwd", "auth", "session", "credential", "api-key", "apikey", "api_key"];

/// Headers whose values are credentials: `Authorization`, `Cookie`, and names (case aside)
/// that contain `token`, `secret`, `password`, `passwd`, `auth`, `session`, `credential`,
/// `api-key`, `apikey` or `api_key`, or end in `key` (`X-Functions-Key`,
/// `Ocp-Apim-Subscription-Key`). Their values are never shown by the API or written to
/// history, are stored encrypted (in the webhook and in its queued webhooks), and must be
/// given again when the webhook's target changes.
pub fn is_sensitive_header(name: &str) -> bool {
    is_sensitive_lowercase(&name.to_ascii_lowercase())
}

/// [`is_sensitive_header`] of a name already in lowercase. Every attempt asks it of every
/// header it sends: names are short, so the words are looked for byte window by byte window
/// (a substring searcher costs more to set up than to run here).
fn is_sensitive_lowercase(name: &str) -> bool {
    let bytes = name.as_bytes();
    let holds = |word: &str| bytes.windows(word.len()).any(|window| window == word.as_bytes());
    matches!(name, "authorization" | "cookie")
        || CREDENTIAL_WORDS.iter().any(|word| holds(word))
        || name.ends_with("key")
}

/// Headers whose values are signatures of a request: shown [`HIDDEN`] in its kept attempts.
const SIGNATURE_HEADERS: &[&str] = &["x-glpi-signature", "x-glpi-signature-previous", "webhook-signature"];

/// HTTP authentication schemes a credential value starts with.
const AUTH_SCHEMES: &[&str] = &["bearer ", "basic ", "digest ", "token ", "negotiate ", "hoba "];

/// Whether a header value looks like a credential whatever the header's name: it starts with an
/// HTTP authentication scheme (`Bearer …`, `Basic …`), is a Standard Webhooks secret
/// (`whsec_…`), or is shaped like a JSON Web Token (`eyJ…` in three dotted parts).
pub fn looks_like_secret(value: &str) -> bool {
    let value = value.trim();
    let starts_with = |scheme: &str| value.get(..scheme.len()).is_some_and(|head| head.eq_ignore_ascii_case(scheme));
    AUTH_SCHEMES.iter().any(|scheme| starts_with(scheme))
        || value.starts_with("whsec_")
        || (value.starts_with("eyJ") && value.split('.').count() == 3)
}

/// The headers of an attempt's request or answer as kept and shown: the text of a JSON object
/// (compact, its names in order, repeated names joined with `, `) where credentials (see
/// [`is_sensitive_header`]; `Set-Cookie` too), signatures and values that look like
/// credentials (see [`looks_like_secret`]) read [`HIDDEN`]. Written in one pass, as every
/// attempt's are: no map of JSON values built first.
pub fn shown_exchange_headers(headers: &[(String, String)]) -> String {
    let mut shown: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            let hidden = is_sensitive_lowercase(&lower)
                || lower.contains("cookie")
                || SIGNATURE_HEADERS.contains(&lower.as_str())
                || looks_like_secret(value);
            (name.as_str(), if hidden { HIDDEN } else { value.as_str() })
        })
        .collect();
    // Stable: repeats keep their order.
    shown.sort_by(|a, b| a.0.cmp(b.0));
    let mut json = Vec::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>() + 2);
    json.push(b'{');
    for (i, group) in shown.chunk_by(|a, b| a.0 == b.0).enumerate() {
        let joined = match group {
            [(_, value)] => std::borrow::Cow::Borrowed(*value),
            _ if group.iter().any(|(_, value)| *value == HIDDEN) => std::borrow::Cow::Borrowed(HIDDEN),
            _ => std::borrow::Cow::Owned(group.iter().map(|(_, value)| *value).collect::<Vec<_>>().join(", ")),
        };
        if i > 0 {
            json.push(b',');
        }
        // Writing a string into a vector cannot fail.
        let _ = serde_json::to_writer(&mut json, group[0].0);
        json.push(b':');
        let _ = serde_json::to_writer(&mut json, joined.as_ref());
    }
    json.push(b'}');
    String::from_utf8(json).unwrap_or_default()
}

/// Headers that decide how a request is framed or where it goes, besides every `Proxy-*`
/// header: the HTTP client sets them, a custom header may not.
const FRAMING_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "trailer"];

/// Whether a custom header would change the framing or the routing of the request.
pub fn is_framing_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    FRAMING_HEADERS.contains(&name.as_str()) || name.starts_with("proxy-")
}

/// The headers with the values of sensitive ones replaced by [`HIDDEN`].
pub fn redact_headers(headers: &Map<String, Value>) -> Map<String, Value> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if is_sensitive_header(name) { Value::String(HIDDEN.into()) } else { value.clone() };
            (name.clone(), value)
        })
        .collect()
}

/// After an update that sent back [`HIDDEN`] for a credential header (as read from the API),
/// puts that header's stored value back. Returns the names of the credential headers whose
/// stored value is kept; [`HIDDEN`] for a credential header that has no stored value is
/// refused.
pub fn keep_hidden_headers(headers: &mut Map<String, Value>, stored: &Map<String, Value>) -> AppResult<Vec<String>> {
    let mut kept = Vec::new();
    for (name, value) in headers.iter_mut() {
        if value.as_str() != Some(HIDDEN) || !is_sensitive_header(name) {
            continue;
        }
        let Some(old) = stored.get(name) else {
            return Err(AppError::invalid(
                format!("customHeaders.{name}"),
                format!(
                    "customHeaders: `{name}` is `{HIDDEN}`, which stands for the stored value, and no `{name}` is \
                     stored; give its value"
                ),
            ));
        };
        *value = old.clone();
        kept.push(name.clone());
    }
    Ok(kept)
}

/// Custom headers: a JSON object whose keys are HTTP header names and whose values are
/// strings (templates) without CR or LF; the signature and delivery headers are hookline's,
/// and headers that frame or route the request (see [`is_framing_header`]) are refused.
pub fn check_custom_headers(headers: &Map<String, Value>) -> AppResult<()> {
    for (name, value) in headers {
        let field = format!("customHeaders.{name}");
        let valid_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(AppError::invalid(field, format!("customHeaders: `{name}` is not a valid HTTP header name")));
        }
        if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(AppError::invalid(
                field,
                format!("customHeaders: `{name}` is set by hookline on every attempt and cannot be overridden"),
            ));
        }
        if is_framing_header(name) {
            return Err(AppError::invalid(
                field,
                format!(
                    "customHeaders: `{name}` decides how the request is framed or where it goes; the HTTP client \
                     sets it, a custom header cannot"
                ),
            ));
        }
        let Value::String(text) = value else {
            return Err(AppError::invalid(field, format!("customHeaders: the value of `{name}` must be a string")));
        };
        if text.contains(['\r', '\n', '\0']) {
            return Err(AppError::invalid(
                field,
                format!("customHeaders: the value of `{name}` must not contain a line break"),
            ));
        }
    }
    Ok(())
}

/// Parses the `customHeaders` input: a JSON object, or a string holding one (as GLPI stores).
pub fn parse_custom_headers(value: Value) -> AppResult<Map<String, Value>> {
    let value = match value {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| AppError::invalid("customHeaders", format!("customHeaders: the string is not JSON: {e}")))?,
        other => other,
    };
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        _ => Err(AppError::invalid(
            "customHeaders",
            "customHeaders: must be a JSON object of strings, like {\"X-Team\": \"ops\"}",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_in_headers_are_hidden_and_kept_on_update() {
        let headers = json!({"Authorization": "Bearer x", "X-Api-Key": "k", "X-Tenant": "7"});
        let headers = headers.as_object().cloned().unwrap_or_default();
        let shown = redact_headers(&headers);
        assert_eq!(
            Value::Object(shown.clone()),
            json!({"Authorization": HIDDEN, "X-Api-Key": HIDDEN, "X-Tenant": "7"})
        );
        let mut sent_back = shown;
        sent_back.insert("X-Tenant".into(), "8".into());
        let kept = keep_hidden_headers(&mut sent_back, &headers).expect("kept");
        assert_eq!(kept, vec!["Authorization".to_owned(), "X-Api-Key".to_owned()]);
        assert_eq!(Value::Object(sent_back), json!({"Authorization": "Bearer x", "X-Api-Key": "k", "X-Tenant": "8"}));
        let mut unknown = json!({"X-Other-Token": HIDDEN}).as_object().cloned().unwrap_or_default();
        assert!(keep_hidden_headers(&mut unknown, &headers).is_err(), "(hidden) without a stored value");
    }

    #[test]
    fn one_rule_names_credential_headers() {
        for name in [
            "Authorization",
            "cookie",
            "X-Auth-Token",
            "X-Session-Id",
            "X-Credential",
            "X-Api-Key",
            "apikey",
            "x-api_key",
            "X-Passwd",
            "X-Client-Secret",
            "X-Functions-Key",
            "Ocp-Apim-Subscription-Key",
            "Proxy-Authorization",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in ["X-Tenant", "Content-Type", "Accept", "X-Keyboard", "Set-Cookie-Policy"] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }

    #[test]
    fn attempt_headers_hide_credentials_signatures_and_secret_looking_values() {
        let sent: Vec<(String, String)> = [
            ("Content-Type", "application/json"),
            ("X-Api-Key", "k"),
            ("X-Custom", "Bearer abc"),
            ("X-Jwt", "eyJhbGciOi.eyJzdWIiOi.c2ln"),
            ("X-Plain", "whsec_abc"),
            ("webhook-signature", "v1,abc v1,def"),
            ("X-GLPI-signature-previous", "00ff"),
            ("Set-Cookie", "session=1"),
            ("Vary", "a"),
            ("Vary", "b"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
        let text = shown_exchange_headers(&sent);
        let shown: Value = serde_json::from_str(&text).expect("a JSON object");
        assert_eq!(
            shown,
            json!({"Content-Type": "application/json", "X-Api-Key": HIDDEN, "X-Custom": HIDDEN, "X-Jwt": HIDDEN,
                   "X-Plain": HIDDEN, "webhook-signature": HIDDEN, "X-GLPI-signature-previous": HIDDEN,
                   "Set-Cookie": HIDDEN, "Vary": "a, b"})
        );
        // The same text as the object's own serialization: compact, names in order.
        assert_eq!(text, shown.to_string());
        assert!(!looks_like_secret("application/json"));
    }

    #[test]
    fn headers_that_frame_or_route_the_request_are_refused() {
        for name in
            ["Host", "content-length", "Transfer-Encoding", "Connection", "TE", "Upgrade", "Trailer", "Proxy-Foo"]
        {
            let headers = json!({name: "x"}).as_object().cloned().unwrap_or_default();
            match check_custom_headers(&headers) {
                Err(AppError::Invalid(invalid)) => assert_eq!(invalid.field, format!("customHeaders.{name}")),
                other => panic!("{name}: expected a refusal, got {other:?}"),
            }
        }
        assert!(check_custom_headers(&json!({"X-Hosting": "x"}).as_object().cloned().unwrap_or_default()).is_ok());
    }

    #[test]
    fn custom_headers_must_be_an_object_of_strings() {
        let check = |v: Value| parse_custom_headers(v).and_then(|m| check_custom_headers(&m));
        assert!(check(json!({"Authorization": "Bearer {{ item.token }}"})).is_ok());
        assert!(check(json!("{\"X-A\": \"b\"}")).is_ok());
        assert!(check(json!({"X-A": 1})).is_err());
        assert!(check(json!(["X-A"])).is_err());
        assert!(check(json!({"Bad Name": "x"})).is_err());
        assert!(check(json!({"x-glpi-signature": "x"})).is_err());
        assert!(check(json!({"X-A": "a\r\nInjected: yes"})).is_err());
    }
}
