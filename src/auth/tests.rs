//! Tokens signed and checked: hookline's own (HS256) and an identity provider's (JWKS).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use serde_json::json;

use super::{token::Provider, *};

const NOW: i64 = 1_800_000_000;

fn claims(profile: &str) -> Claims {
    Claims {
        sub: "ops".into(),
        profile: profile.into(),
        entities: vec![EntityScope { id: 0, recursive: true }],
        iat: NOW,
        exp: None,
        nbf: None,
        jti: "t1".into(),
    }
}

fn own() -> Tokens {
    Tokens::new(token_signing_key(&[7; 32]), None).expect("tokens")
}

#[test]
fn own_tokens_round_trip_and_a_token_without_exp_never_expires() {
    let tokens = own();
    let token = tokens.sign(&claims("admin")).expect("signed");
    assert_eq!(tokens.verify(&token, NOW + 10 * 365 * 86_400), Ok(claims("admin")));
}

#[test]
fn expiry_has_five_seconds_of_leeway_and_no_more() {
    let tokens = own();
    let token = tokens.sign(&Claims { exp: Some(NOW), ..claims("viewer") }).expect("signed");
    assert!(tokens.verify(&token, NOW + 5).is_ok());
    assert_eq!(tokens.verify(&token, NOW + 6), Err(TokenError::Expired));
    let later = tokens.sign(&Claims { nbf: Some(NOW + 60), ..claims("viewer") }).expect("signed");
    assert_eq!(tokens.verify(&later, NOW), Err(TokenError::NotYetValid));
}

#[test]
fn another_key_alg_none_and_garbage_are_refused_with_their_reason() {
    let token = own().sign(&claims("admin")).expect("signed");
    let other = Tokens::new(token_signing_key(&[8; 32]), None).expect("tokens");
    assert_eq!(other.verify(&token, NOW), Err(TokenError::BadSignature));

    let payload = B64URL.encode(serde_json::to_vec(&claims("super-admin")).expect("json"));
    let none = format!("{}.{payload}.", B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(own().verify(&none, NOW), Err(TokenError::AlgorithmNotAllowed("none".into())));
    let hs512 = format!("{}.{payload}.c2ln", B64URL.encode(br#"{"alg":"HS512"}"#));
    assert_eq!(own().verify(&hs512, NOW), Err(TokenError::AlgorithmNotAllowed("HS512".into())));

    for garbage in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x"] {
        assert!(matches!(own().verify(garbage, NOW), Err(TokenError::Malformed(_))), "{garbage}");
    }
    let unknown = own().sign(&claims("root")).expect("signed");
    assert_eq!(own().verify(&unknown, NOW), Err(TokenError::UnknownProfile("root".into())));
}

#[test]
fn the_signing_key_is_derived_for_tokens_alone() {
    assert_ne!(token_signing_key(&[7; 32]), [7; 32]);
    assert_ne!(token_signing_key(&[7; 32]), token_signing_key(&[8; 32]));
}

#[test]
fn bearer_headers_are_read_strictly() {
    use token::bearer;
    assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
    assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
    assert_eq!(bearer(None), Err(TokenError::Missing));
    assert!(matches!(bearer(Some("Basic dXNlcg==")), Err(TokenError::Malformed(_))));
    assert!(matches!(bearer(Some("Bearer")), Err(TokenError::Malformed(_))));
}

/// An RSA key made for these tests alone (ring cannot generate RSA keys), PKCS#1 DER.
const TEST_RSA_KEY: &[u8] = include_bytes!("test-rsa-2048.der");

/// An identity provider with an Ed25519, a P-256 and an RSA key, and its signing keys.
fn provider() -> (Tokens, EncodingKey, EncodingKey, EncodingKey) {
    let rng = SystemRandom::new();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");
    let ed_public = Ed25519KeyPair::from_pkcs8(ed.as_ref()).expect("parse").public_key().as_ref().to_vec();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("p256");
    let ec_public = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng)
        .expect("parse")
        .public_key()
        .as_ref()
        .to_vec();
    let rsa = RsaKeyPair::from_der(TEST_RSA_KEY).expect("the test RSA key");
    let rsa_public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": B64URL.encode(&ed_public)},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": B64URL.encode(&ec_public[1..33]), "y": B64URL.encode(&ec_public[33..])},
        {"kty": "RSA", "kid": "rsa", "n": B64URL.encode(&rsa_public.n), "e": B64URL.encode(&rsa_public.e)},
    ]});
    let provider = Provider {
        keys: serde_json::from_value(jwks).expect("JWKS"),
        issuer: Some("https://idp.example".into()),
        audience: Some("hookline".into()),
    };
    let tokens = Tokens::new(token_signing_key(&[7; 32]), Some(provider)).expect("tokens");
    let keys = (EncodingKey::from_ed_der(ed.as_ref()), EncodingKey::from_ec_der(ec.as_ref()));
    (tokens, keys.0, keys.1, EncodingKey::from_rsa_der(TEST_RSA_KEY))
}

fn provider_token(algorithm: Algorithm, kid: &str, key: &EncodingKey, extra: serde_json::Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    let mut body = serde_json::to_value(claims("operator")).expect("claims");
    for (name, value) in extra.as_object().into_iter().flatten() {
        body[name] = value.clone();
    }
    jsonwebtoken::encode(&header, &body, key).expect("signed")
}

#[test]
fn provider_tokens_are_checked_against_the_jwks_issuer_and_audience() {
    let (tokens, ed, ec, rsa) = provider();
    let good = json!({"iss": "https://idp.example", "aud": "hookline"});
    for (algorithm, kid, key) in
        [(Algorithm::EdDSA, "ed", &ed), (Algorithm::ES256, "ec", &ec), (Algorithm::RS256, "rsa", &rsa)]
    {
        let token = provider_token(algorithm, kid, key, good.clone());
        assert_eq!(tokens.verify(&token, NOW).map(|c| c.profile), Ok("operator".into()), "{algorithm:?}");
        // The same signature over other claims.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(serde_json::to_vec(&claims("super-admin")).expect("json"));
        parts[1] = &forged;
        assert_eq!(tokens.verify(&parts.join("."), NOW), Err(TokenError::BadSignature), "{algorithm:?}");
    }
    let wrong_issuer = provider_token(Algorithm::EdDSA, "ed", &ed, json!({"iss": "https://evil", "aud": "hookline"}));
    assert_eq!(tokens.verify(&wrong_issuer, NOW), Err(TokenError::WrongIssuer));
    let no_issuer = provider_token(Algorithm::EdDSA, "ed", &ed, json!({"aud": "hookline"}));
    assert_eq!(tokens.verify(&no_issuer, NOW), Err(TokenError::WrongIssuer));
    let wrong_audience = provider_token(Algorithm::EdDSA, "ed", &ed, json!({"iss": "https://idp.example", "aud": "x"}));
    assert_eq!(tokens.verify(&wrong_audience, NOW), Err(TokenError::WrongAudience));
    // The Ed25519 key's id on a token signed by the P-256 key: the header's alg does not fit.
    let swapped = provider_token(Algorithm::ES256, "ed", &ec, good.clone());
    assert_eq!(tokens.verify(&swapped, NOW), Err(TokenError::AlgorithmNotAllowed("ES256".into())));
    let unknown_kid = provider_token(Algorithm::EdDSA, "nope", &ed, good);
    assert_eq!(tokens.verify(&unknown_kid, NOW), Err(TokenError::BadSignature));
    // Without a provider, its algorithms are refused.
    let token = provider_token(Algorithm::EdDSA, "ed", &ed, json!({}));
    assert_eq!(own().verify(&token, NOW), Err(TokenError::AlgorithmNotAllowed("EdDSA".into())));
}

#[test]
fn revoked_ids_are_kept_in_memory() {
    let revoked = Revoked::default();
    assert!(!revoked.contains("a"));
    revoked.insert("a".into());
    assert!(revoked.contains("a"));
    revoked.replace(["b".to_owned()]);
    assert!(!revoked.contains("a") && revoked.contains("b"));
}
