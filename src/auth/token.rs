//! API tokens: the claims they carry, how hookline signs its own (HS256 with a key derived from
//! `HOOKLINE_SECRET_KEY` for this purpose alone) and how any token is checked: hookline's own,
//! or an identity provider's (RS256, ES256, EdDSA with keys from a JWKS file).

use std::collections::{HashMap, HashSet};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind, jwk::JwkSet};
use serde::{Deserialize, Serialize};

use super::profile::Profile;

/// At most this much clock difference is forgiven on `exp` and `nbf` (the library's default
/// of 60 s is too loose for short-lived tokens).
pub const LEEWAY_SECONDS: u64 = 5;

/// The algorithm of the tokens hookline signs itself.
const OWN_ALGORITHM: Algorithm = Algorithm::HS256;

/// An entity a token covers, and whether its descendants are covered too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityScope {
    pub id: i64,
    pub recursive: bool,
}

/// What a token says of its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    pub profile: String,
    pub entities: Vec<EntityScope>,
    pub iat: i64,
    /// Absent: the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's id, by which it is recorded and revoked.
    pub jti: String,
}

/// Why a token is refused; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token's algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the token's issuer is not the one this server accepts")]
    WrongIssuer,
    #[error("the token's audience is not this server")]
    WrongAudience,
    #[error("token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("token revoked")]
    Revoked,
    #[error("the token names an unknown profile `{0}`")]
    UnknownProfile(String),
}

/// The identity provider's keys and what its tokens must say.
#[derive(Debug, Clone)]
pub struct Provider {
    pub keys: JwkSet,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// The provider's keys by `kid`, each with the one algorithm it verifies.
type ProviderKeys = HashMap<String, (DecodingKey, Algorithm)>;

/// Signs hookline's tokens and checks every token.
pub struct Tokens {
    own_encoding: EncodingKey,
    own_decoding: DecodingKey,
    provider: Option<(Provider, ProviderKeys)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("provider", &self.provider.as_ref().map(|(p, _)| &p.issuer)).finish()
    }
}

impl Tokens {
    /// `key`: the signing key of hookline's own tokens (derived for this purpose alone).
    pub fn new(key: [u8; 32], provider: Option<Provider>) -> Result<Self, String> {
        crate::crypto::install();
        let provider = match provider {
            None => None,
            Some(provider) => {
                let mut keys = HashMap::new();
                for (index, jwk) in provider.keys.keys.iter().enumerate() {
                    let algorithm = match &jwk.algorithm {
                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                        _ => {
                            return Err(format!(
                                "JWKS key {index}: only RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) keys are accepted"
                            ));
                        }
                    };
                    let decoding =
                        DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key {index}: cannot be used ({e})"))?;
                    let kid = jwk.common.key_id.clone().unwrap_or_default();
                    keys.insert(kid, (decoding, algorithm));
                }
                Some((provider, keys))
            }
        };
        Ok(Self {
            own_encoding: EncodingKey::from_secret(&key),
            own_decoding: DecodingKey::from_secret(&key),
            provider,
        })
    }

    /// Signs claims as one of hookline's own tokens.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(OWN_ALGORITHM), claims, &self.own_encoding).map_err(|e| e.to_string())
    }

    /// Checks a token's form, algorithm, signature, issuer, audience and times, and returns its
    /// claims (revocation is the caller's to check, by `jti`).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (algorithm, kid) = header_of(token)?;
        let (key, validation) = match algorithm.as_str() {
            "HS256" => (&self.own_decoding, validation(OWN_ALGORITHM, None, None)),
            "RS256" | "ES256" | "EdDSA" => {
                let Some((provider, keys)) = &self.provider else {
                    return Err(TokenError::AlgorithmNotAllowed(algorithm));
                };
                let Some((key, key_algorithm)) = keys.get(kid.as_deref().unwrap_or_default()) else {
                    return Err(TokenError::BadSignature);
                };
                if key_algorithm_name(*key_algorithm) != algorithm {
                    return Err(TokenError::AlgorithmNotAllowed(algorithm));
                }
                (key, validation(*key_algorithm, provider.issuer.as_deref(), provider.audience.as_deref()))
            }
            _ => return Err(TokenError::AlgorithmNotAllowed(algorithm)),
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|err| match err.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::WrongAudience,
            ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed(algorithm.clone()),
            _ => TokenError::Malformed(err.to_string()),
        })?;
        let claims = claims.claims;
        // Checked here as well, against the caller's clock, so that expiry is exact in tests
        // and in long-lived connections that check again later.
        if claims.exp.is_some_and(|exp| now > exp.saturating_add(LEEWAY_SECONDS as i64)) {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now.saturating_add(LEEWAY_SECONDS as i64) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if Profile::parse(&claims.profile).is_none() {
            return Err(TokenError::UnknownProfile(claims.profile));
        }
        Ok(claims)
    }
}

fn key_algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "HS256",
    }
}

fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    // `exp` may be absent (a token that never expires); when present it is checked.
    let mut required: HashSet<String> = HashSet::new();
    validation.validate_aud = false;
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.insert("iss".into());
    }
    if let Some(audience) = audience {
        validation.set_audience(&[audience]);
        validation.validate_aud = true;
        required.insert("aud".into());
    }
    validation.required_spec_claims = required;
    validation
}

/// The `alg` and `kid` of a token's header, read before anything else so that `alg: none` and
/// other refused algorithms are named.
fn header_of(token: &str) -> Result<(String, Option<String>), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("a JWT has three parts separated by dots".into()));
    };
    let bytes = B64URL
        .decode(header.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
    #[derive(Deserialize)]
    struct RawHeader {
        alg: Option<String>,
        kid: Option<String>,
    }
    let raw: RawHeader =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("the header is not a JSON object".into()))?;
    let algorithm = raw.alg.ok_or_else(|| TokenError::Malformed("the header has no `alg`".into()))?;
    Ok((algorithm, raw.kid))
}

/// The token in an `Authorization` header value (`Bearer <token>`).
pub fn bearer(value: Option<&str>) -> Result<&str, TokenError> {
    let value = value.map(str::trim).filter(|v| !v.is_empty()).ok_or(TokenError::Missing)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| TokenError::Malformed("expected `Authorization: Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Malformed("expected `Authorization: Bearer <token>`".into()));
    }
    Ok(token.trim())
}
