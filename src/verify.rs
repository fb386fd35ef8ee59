//! Verifying hookline's signatures on the receiving side: the code behind `hookline verify`,
//! usable as a library by a Rust receiver.
//!
//! A request passes when its signature is the HMAC of what was sent (compared in constant
//! time, after checking the length: an empty or truncated signature never passes) and its
//! timestamp is neither older than `max_age` nor more than [`FUTURE_SKEW`] seconds ahead.

use crate::domain::{
    signing::{hex, hmac, same, standard_key},
    webhook::SignatureScheme,
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};

/// How far ahead of the receiver's clock a timestamp may be.
pub const FUTURE_SKEW: i64 = 60;
/// The default largest age of a request, in seconds (the Standard Webhooks libraries' tolerance).
pub const DEFAULT_MAX_AGE: i64 = 300;

/// Why a request does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the timestamp `{0}` is not a number of seconds")]
    BadTimestamp(String),
    #[error("the request is too old: signed {age} s ago, the limit is {max_age} s")]
    Expired { age: i64, max_age: i64 },
    #[error("the timestamp is {ahead} s in the future (more than {FUTURE_SKEW} s ahead)")]
    FromTheFuture { ahead: i64 },
    #[error("no signature was given")]
    Missing,
    #[error("the signature is not well formed: {0}")]
    Malformed(String),
    #[error("the signature does not match")]
    Mismatch,
    #[error("the standard scheme needs the `webhook-id` header (--id)")]
    MissingId,
    #[error("the secret is not a Standard Webhooks secret (`whsec_` followed by base64)")]
    BadSecret,
    #[error(
        "a challenge token is 64 lowercase hexadecimal digits; refusing to answer another (it could be a body to sign)"
    )]
    BadToken,
    #[error("--scheme cra needs --token (the `crc_token` query parameter)")]
    MissingToken,
    #[error("--scheme {0} needs --timestamp and --signature")]
    MissingSignature(&'static str),
}

/// Which scheme `hookline verify` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// `X-GLPI-signature` and `X-GLPI-timestamp`.
    Glpi,
    /// `webhook-id`, `webhook-timestamp` and `webhook-signature`.
    Standard,
    /// A challenge–response: prints the answer to `--token`.
    Cra,
}

/// The signature scheme of the webhook a challenge comes from (`--signature-scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CraKey {
    /// The secret's bytes, as GLPI.
    Glpi,
    /// `STANDARD_WEBHOOKS`: a key derived from the decoded `whsec_` secret.
    StandardWebhooks,
    /// `BOTH`: as `STANDARD_WEBHOOKS`.
    Both,
}

impl From<CraKey> for SignatureScheme {
    fn from(key: CraKey) -> Self {
        match key {
            CraKey::Glpi => Self::Glpi,
            CraKey::StandardWebhooks => Self::StandardWebhooks,
            CraKey::Both => Self::Both,
        }
    }
}

/// `hookline verify`: checks one received request, its body read from stdin, or answers a
/// challenge (`--scheme cra`).
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    #[arg(long, value_enum)]
    pub scheme: Scheme,
    /// The webhook secret (`whsec_…` for the standard scheme).
    #[arg(long, env = "HOOKLINE_VERIFY_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The `webhook-id` header (standard scheme).
    #[arg(long)]
    pub id: Option<String>,
    /// The `X-GLPI-timestamp` or `webhook-timestamp` header.
    #[arg(long)]
    pub timestamp: Option<String>,
    /// The `X-GLPI-signature` or `webhook-signature` header.
    #[arg(long, allow_hyphen_values = true)]
    pub signature: Option<String>,
    /// The largest accepted age in seconds (the webhook's expiration delay); 0 accepts any age.
    #[arg(long, default_value_t = DEFAULT_MAX_AGE)]
    pub max_age: i64,
    /// The `crc_token` of a challenge (`--scheme cra`).
    #[arg(long)]
    pub token: Option<String>,
    /// The webhook's signatureScheme, which decides the key of a challenge's answer
    /// (`--scheme cra`). Default: `standard-webhooks` for a `whsec_` secret, else `glpi`.
    #[arg(long, value_enum)]
    pub signature_scheme: Option<CraKey>,
}

impl VerifyArgs {
    /// Checks a received request (`glpi`, `standard`).
    pub fn check(&self, body: &[u8], now: i64) -> Result<(), Rejection> {
        let signed = |name| match (&self.timestamp, &self.signature) {
            (Some(ts), Some(sig)) => Ok((ts.as_str(), sig.as_str())),
            _ => Err(Rejection::MissingSignature(name)),
        };
        match self.scheme {
            Scheme::Glpi => {
                let (ts, sig) = signed("glpi")?;
                verify_glpi(&self.secret, body, ts, sig, now, self.max_age)
            }
            Scheme::Standard => {
                let (ts, sig) = signed("standard")?;
                let id = self.id.as_deref().ok_or(Rejection::MissingId)?;
                verify_standard(&self.secret, id, body, ts, sig, now, self.max_age)
            }
            Scheme::Cra => self.cra().map(drop),
        }
    }

    /// The answer to the challenge `--token` (`--scheme cra`).
    pub fn cra(&self) -> Result<String, Rejection> {
        let token = self.token.as_deref().ok_or(Rejection::MissingToken)?;
        let scheme = match self.signature_scheme {
            Some(key) => key.into(),
            None if standard_key(&self.secret).is_some() => SignatureScheme::StandardWebhooks,
            None => SignatureScheme::Glpi,
        };
        cra_answer(scheme, &self.secret, token)
    }
}

/// Checks a timestamp (decimal Unix seconds) against `now` and `max_age` (0: no age limit).
pub fn check_timestamp(timestamp: &str, now: i64, max_age: i64) -> Result<i64, Rejection> {
    let at: i64 = timestamp.trim().parse().map_err(|_| Rejection::BadTimestamp(timestamp.to_owned()))?;
    // Far-off values (a header is the sender's to choose) must not overflow.
    let bad = || Rejection::BadTimestamp(timestamp.to_owned());
    let ahead = at.checked_sub(now).ok_or_else(bad)?;
    let age = now.checked_sub(at).ok_or_else(bad)?;
    if ahead > FUTURE_SKEW {
        return Err(Rejection::FromTheFuture { ahead });
    }
    if max_age > 0 && age > max_age {
        return Err(Rejection::Expired { age, max_age });
    }
    Ok(at)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Verifies GLPI's scheme: `X-GLPI-signature` (hex) over the body followed by
/// `X-GLPI-timestamp`, keyed with the secret's bytes.
pub fn verify_glpi(
    secret: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
    now: i64,
    max_age: i64,
) -> Result<(), Rejection> {
    let at = check_timestamp(timestamp, now, max_age)?;
    let signature = signature.trim();
    if signature.is_empty() {
        return Err(Rejection::Missing);
    }
    let given = decode_hex(signature).ok_or_else(|| Rejection::Malformed("expected hexadecimal".into()))?;
    if given.len() != 32 {
        return Err(Rejection::Malformed(format!("{} bytes instead of 32", given.len())));
    }
    let expected = hmac(secret.as_bytes(), &[body, at.to_string().as_bytes()]);
    if same(&given, &expected) { Ok(()) } else { Err(Rejection::Mismatch) }
}

/// Verifies the Standard Webhooks scheme: one of the space-separated `v1,<base64>` values of
/// `webhook-signature` is the HMAC of `{webhook-id}.{webhook-timestamp}.{body}`, keyed with
/// the decoded `whsec_` secret.
pub fn verify_standard(
    secret: &str,
    id: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
    now: i64,
    max_age: i64,
) -> Result<(), Rejection> {
    let key = standard_key(secret).ok_or(Rejection::BadSecret)?;
    let at = check_timestamp(timestamp, now, max_age)?;
    let expected = hmac(&key, &[id.as_bytes(), b".", at.to_string().as_bytes(), b".", body]);
    let mut seen = false;
    let mut malformed = None;
    for candidate in signature.split_whitespace() {
        let Some(encoded) = candidate.strip_prefix("v1,") else { continue };
        seen = true;
        let given = match BASE64.decode(encoded) {
            Ok(given) if given.len() == 32 => given,
            Ok(given) => {
                malformed = Some(format!("{} bytes instead of 32", given.len()));
                continue;
            }
            Err(_) => {
                malformed = Some("expected base64".into());
                continue;
            }
        };
        if same(&given, &expected) {
            return Ok(());
        }
    }
    match (seen, malformed) {
        (false, _) => Err(Rejection::Missing),
        (true, Some(reason)) => Err(Rejection::Malformed(reason)),
        (true, None) => Err(Rejection::Mismatch),
    }
}

/// Whether a challenge token is one hookline sends: 64 lowercase hexadecimal digits. A
/// receiver must not answer anything else: the answer is an HMAC keyed like a signature.
pub fn is_cra_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What keys the CRA answer of a `STANDARD_WEBHOOKS` or `BOTH` webhook: an HMAC of this label,
/// so that the answer never equals a signature.
pub const CRA_KEY_LABEL: &[u8] = b"hookline-cra-v1";

/// The answer to a CRA challenge: the lowercase hex HMAC-SHA256 of the token, keyed with the
/// secret's bytes for `GLPI` (as GLPI computes it), and with
/// `HMAC-SHA256(decoded whsec_ key, "hookline-cra-v1")` for `STANDARD_WEBHOOKS` and `BOTH`.
/// A token that is not 64 lowercase hex digits is refused.
pub fn cra_answer(scheme: SignatureScheme, secret: &str, token: &str) -> Result<String, Rejection> {
    if !is_cra_token(token) {
        return Err(Rejection::BadToken);
    }
    let key = match scheme {
        SignatureScheme::Glpi => secret.as_bytes().to_vec(),
        SignatureScheme::StandardWebhooks | SignatureScheme::Both => {
            hmac(&standard_key(secret).ok_or(Rejection::BadSecret)?, &[CRA_KEY_LABEL]).to_vec()
        }
    };
    Ok(hex(&hmac(&key, &[token.as_bytes()])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signing::{glpi_signature, standard_signature};

    const NOW: i64 = 1_700_000_000;
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn glpi_signatures_verify_and_tampering_does_not() {
        let signature = glpi_signature(b"{}", NOW, "s3cret");
        assert_eq!(verify_glpi("s3cret", b"{}", &NOW.to_string(), &signature, NOW, 300), Ok(()));
        assert_eq!(verify_glpi("s3cret", b"{ }", &NOW.to_string(), &signature, NOW, 300), Err(Rejection::Mismatch));
        assert_eq!(verify_glpi("other", b"{}", &NOW.to_string(), &signature, NOW, 300), Err(Rejection::Mismatch));
    }

    #[test]
    fn empty_truncated_and_garbled_signatures_never_verify() {
        let signature = glpi_signature(b"{}", NOW, "s");
        let ts = NOW.to_string();
        assert_eq!(verify_glpi("s", b"{}", &ts, "", NOW, 300), Err(Rejection::Missing));
        assert!(matches!(verify_glpi("s", b"{}", &ts, &signature[..62], NOW, 300), Err(Rejection::Malformed(_))));
        assert!(matches!(verify_glpi("s", b"{}", &ts, &signature[..2], NOW, 300), Err(Rejection::Malformed(_))));
        assert!(matches!(verify_glpi("s", b"{}", &ts, "zz", NOW, 300), Err(Rejection::Malformed(_))));
        let key = standard_key(WHSEC).expect("key");
        let good = standard_signature("msg", NOW, b"{}", &key);
        assert_eq!(verify_standard(WHSEC, "msg", b"{}", &ts, &good, NOW, 300), Ok(()));
        assert_eq!(verify_standard(WHSEC, "msg", b"{}", &ts, "", NOW, 300), Err(Rejection::Missing));
        assert_eq!(
            verify_standard(WHSEC, "msg", b"{}", &ts, "v1,", NOW, 300),
            Err(Rejection::Malformed("0 bytes instead of 32".into()))
        );
        assert!(verify_standard(WHSEC, "msg", b"{}", &ts, &good[..20], NOW, 300).is_err());
    }

    #[test]
    fn stale_and_future_timestamps_are_rejected() {
        let old = NOW - 301;
        let signature = glpi_signature(b"{}", old, "s");
        assert_eq!(
            verify_glpi("s", b"{}", &old.to_string(), &signature, NOW, 300),
            Err(Rejection::Expired { age: 301, max_age: 300 })
        );
        let ahead = NOW + 61;
        let signature = glpi_signature(b"{}", ahead, "s");
        assert_eq!(
            verify_glpi("s", b"{}", &ahead.to_string(), &signature, NOW, 300),
            Err(Rejection::FromTheFuture { ahead: 61 })
        );
        let signature = glpi_signature(b"{}", old, "s");
        assert_eq!(verify_glpi("s", b"{}", &old.to_string(), &signature, NOW, 0), Ok(()), "0 disables the age check");
    }

    #[test]
    fn extreme_timestamps_are_rejected_without_overflow() {
        let edge = (i64::MIN + NOW).to_string();
        for ts in [i64::MIN.to_string(), i64::MAX.to_string(), edge, "1e3".into(), "".into()] {
            assert!(check_timestamp(&ts, NOW, 300).is_err(), "{ts}");
        }
    }

    #[test]
    fn one_of_several_standard_signatures_is_enough() {
        let key = standard_key(WHSEC).expect("key");
        let good = standard_signature("msg", NOW, b"{}", &key);
        let header = format!("v1,AAAA v1a,xyz {good}");
        assert_eq!(verify_standard(WHSEC, "msg", b"{}", &NOW.to_string(), &header, NOW, 300), Ok(()));
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_glpi_cra_answer_is_the_hex_hmac_of_the_token() {
        let expected = hex(&hmac(b"key", &[TOKEN.as_bytes()]));
        assert_eq!(cra_answer(SignatureScheme::Glpi, "key", TOKEN), Ok(expected));
    }

    #[test]
    fn only_64_hex_tokens_are_answered() {
        for token in
            ["", "The quick brown fox", &TOKEN.to_uppercase(), &TOKEN[1..], &format!("{TOKEN}0"), "{}1700000000"]
        {
            assert_eq!(cra_answer(SignatureScheme::Glpi, "key", token), Err(Rejection::BadToken), "{token}");
        }
    }

    #[test]
    fn a_standard_cra_answer_is_keyed_apart_from_signatures() {
        let key = standard_key(WHSEC).expect("key");
        let derived = hmac(&key, &[b"hookline-cra-v1"]);
        let answer = cra_answer(SignatureScheme::StandardWebhooks, WHSEC, TOKEN).expect("answer");
        assert_eq!(answer, hex(&hmac(&derived, &[TOKEN.as_bytes()])));
        assert_eq!(cra_answer(SignatureScheme::Both, WHSEC, TOKEN).expect("answer"), answer);
        assert_ne!(answer, hex(&hmac(&key, &[TOKEN.as_bytes()])));
        assert_ne!(answer, cra_answer(SignatureScheme::Glpi, WHSEC, TOKEN).expect("answer"));
        assert_eq!(cra_answer(SignatureScheme::Both, "not-whsec", TOKEN), Err(Rejection::BadSecret));
    }
}
