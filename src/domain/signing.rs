//! Signatures of outgoing requests.
//!
//! - GLPI: `X-GLPI-signature` is the lowercase hex HMAC-SHA256, keyed with the secret's UTF-8
//!   bytes, of the body bytes immediately followed by the decimal `X-GLPI-timestamp`.
//! - Standard Webhooks: `webhook-signature` is `v1,` and the base64 HMAC-SHA256, keyed with the
//!   base64-decoded part of the `whsec_` secret, of `{webhook-id}.{webhook-timestamp}.{body}`.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::webhook::SignatureScheme;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the parts, one after the other.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Whether two byte strings are equal, in a time that depends only on their length.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// GLPI's `X-GLPI-signature`.
pub fn glpi_signature(body: &[u8], timestamp: i64, secret: &str) -> String {
    hex(&hmac(secret.as_bytes(), &[body, timestamp.to_string().as_bytes()]))
}

/// The Standard Webhooks key of a `whsec_` secret (the decoded base64 part).
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    BASE64.decode(secret.strip_prefix("whsec_")?).ok()
}

/// The Standard Webhooks `webhook-signature` value (`v1,<base64>`).
pub fn standard_signature(msg_id: &str, timestamp: i64, body: &[u8], key: &[u8]) -> String {
    let mac = hmac(key, &[msg_id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(mac))
}

/// The signature headers of one attempt, in the order they are sent. With a `previous`
/// secret (during a rotation's overlap), the request is also signed with it: GLPI's signature
/// of it goes in `X-GLPI-signature-previous`, and `webhook-signature` holds both `v1,`
/// signatures, space-separated, the current secret's first.
pub fn signature_headers(
    scheme: SignatureScheme,
    secret: &str,
    previous: Option<&str>,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(6);
    if matches!(scheme, SignatureScheme::Glpi | SignatureScheme::Both) {
        headers.push(("X-GLPI-signature", glpi_signature(body, timestamp, secret)));
        if let Some(previous) = previous {
            headers.push((PREVIOUS_GLPI_SIGNATURE, glpi_signature(body, timestamp, previous)));
        }
        headers.push(("X-GLPI-timestamp", timestamp.to_string()));
    }
    if matches!(scheme, SignatureScheme::StandardWebhooks | SignatureScheme::Both) {
        // Secrets are checked against the scheme when saved, so the key is always there.
        let key = standard_key(secret).unwrap_or_default();
        let mut signature = standard_signature(delivery_id, timestamp, body, &key);
        // A previous secret is one the scheme had when it was replaced; one that does not fit
        // (it cannot happen: a change of scheme drops it) signs nothing.
        if let Some(previous) = previous.and_then(standard_key) {
            signature.push(' ');
            signature.push_str(&standard_signature(delivery_id, timestamp, body, &previous));
        }
        headers.push(("webhook-id", delivery_id.to_owned()));
        headers.push(("webhook-timestamp", timestamp.to_string()));
        headers.push(("webhook-signature", signature));
    }
    headers
}

/// GLPI's signature with the previous secret, during a rotation's overlap.
pub const PREVIOUS_GLPI_SIGNATURE: &str = "X-GLPI-signature-previous";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_style_known_vector() {
        let mac = hmac(b"key", &[b"The quick brown fox jumps over the lazy dog"]);
        assert_eq!(hex(&mac), "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }

    #[test]
    fn comparisons_take_whole_strings() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"", b"abc"));
    }

    #[test]
    fn glpi_signs_the_body_followed_by_the_timestamp() {
        let direct = hex(&hmac(b"secret", &[b"{\"a\":1}1700000000"]));
        assert_eq!(glpi_signature(b"{\"a\":1}", 1_700_000_000, "secret"), direct);
        assert_eq!(direct.len(), 64);
    }

    #[test]
    fn standard_webhooks_matches_the_specifications_example() {
        // The example of the Standard Webhooks reference libraries.
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let body = br#"{"test": 2432232314}"#;
        let signature = standard_signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &key);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn both_schemes_send_both_sets_of_headers() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let names: Vec<&str> = signature_headers(SignatureScheme::Both, secret, None, "d1", 1, b"{}")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            ["X-GLPI-signature", "X-GLPI-timestamp", "webhook-id", "webhook-timestamp", "webhook-signature"]
        );
        assert_eq!(signature_headers(SignatureScheme::Glpi, "s", None, "d1", 1, b"{}").len(), 2);
    }

    #[test]
    fn a_previous_secret_adds_its_signatures_after_the_current_ones() {
        let (new, old) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2VjcmV0LXByZXZpb3Vz");
        let headers = signature_headers(SignatureScheme::Both, new, Some(old), "d1", 7, b"{}");
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let both = get("webhook-signature");
        let expected_new = standard_signature("d1", 7, b"{}", &standard_key(new).unwrap_or_default());
        let expected_old = standard_signature("d1", 7, b"{}", &standard_key(old).unwrap_or_default());
        assert_eq!(both, format!("{expected_new} {expected_old}"));
        assert_eq!(get("X-GLPI-signature"), glpi_signature(b"{}", 7, new));
        assert_eq!(get(PREVIOUS_GLPI_SIGNATURE), glpi_signature(b"{}", 7, old));
    }
}
