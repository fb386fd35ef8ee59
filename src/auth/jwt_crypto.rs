//! The cryptography of `jsonwebtoken`, on `ring`: the crypto library rustls (outgoing HTTPS,
//! PostgreSQL over TLS) already uses, so the build carries one crypto provider instead of two.
//!
//! It signs and checks the algorithms hookline accepts: HS256 (its own tokens), RS256, ES256
//! and EdDSA (an identity provider's, by JWKS). Any other algorithm is refused, never checked
//! by something weaker. [`install`] must run before the first token is signed or checked;
//! [`super::Tokens::new`] calls it.

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::{Error, ErrorKind},
    signature::{self, Signer, Verifier},
};
use ring::{
    hmac,
    rand::SystemRandom,
    signature::{self as ring_sig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair},
};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    // Only needed to make a JWK out of a key, which hookline never does.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes this the process's provider for `jsonwebtoken` (once; later calls do nothing).
pub fn install() {
    // Err: already installed (by an earlier call).
    let _ = PROVIDER.install_default();
}

/// A key to sign with, for one algorithm.
enum SigningKey {
    Hmac(hmac::Key),
    Rsa(Box<RsaKeyPair>),
    Ecdsa(Box<EcdsaKeyPair>),
    Ed25519(Box<Ed25519KeyPair>),
}

struct RingSigner {
    algorithm: Algorithm,
    key: SigningKey,
}

/// A key to check signatures with, for one algorithm.
enum CheckingKey {
    Hmac(hmac::Key),
    /// A public key in the form `ring` parses itself: RSA (DER), an uncompressed P-256 point,
    /// an Ed25519 key.
    Public(&'static dyn ring_sig::VerificationAlgorithm, Vec<u8>),
    RsaComponents(&'static ring_sig::RsaParameters, Vec<u8>, Vec<u8>),
}

struct RingVerifier {
    algorithm: Algorithm,
    key: CheckingKey,
}

fn refused(kind: ErrorKind) -> Error {
    kind.into()
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let family = key.family();
    let bytes = key.as_bytes();
    let key = match (algorithm, family) {
        (Algorithm::HS256, AlgorithmFamily::Hmac) => SigningKey::Hmac(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
        (Algorithm::RS256, AlgorithmFamily::Rsa) => SigningKey::Rsa(Box::new(
            RsaKeyPair::from_der(bytes)
                .or_else(|_| RsaKeyPair::from_pkcs8(bytes))
                .map_err(|e| refused(ErrorKind::InvalidRsaKey(e.to_string())))?,
        )),
        (Algorithm::ES256, AlgorithmFamily::Ec) => SigningKey::Ecdsa(Box::new(
            EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, bytes, &SystemRandom::new())
                .map_err(|_| refused(ErrorKind::InvalidEcdsaKey))?,
        )),
        (Algorithm::EdDSA, AlgorithmFamily::Ed) => SigningKey::Ed25519(Box::new(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes).map_err(|_| refused(ErrorKind::InvalidEddsaKey))?,
        )),
        (Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA, _) => {
            return Err(refused(ErrorKind::InvalidKeyFormat));
        }
        _ => return Err(refused(ErrorKind::InvalidAlgorithm)),
    };
    Ok(Box::new(RingSigner { algorithm: *algorithm, key }))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let key = match (algorithm, key.family(), key.kind()) {
        (Algorithm::HS256, AlgorithmFamily::Hmac, DecodingKeyKind::SecretOrDer(secret)) => {
            CheckingKey::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret))
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            CheckingKey::Public(&ring_sig::RSA_PKCS1_2048_8192_SHA256, der.clone())
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            CheckingKey::RsaComponents(&ring_sig::RSA_PKCS1_2048_8192_SHA256, n.clone(), e.clone())
        }
        (Algorithm::ES256, AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            CheckingKey::Public(&ring_sig::ECDSA_P256_SHA256_FIXED, point.clone())
        }
        (Algorithm::EdDSA, AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(public)) => {
            CheckingKey::Public(&ring_sig::ED25519, public.clone())
        }
        (Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA, ..) => {
            return Err(refused(ErrorKind::InvalidKeyFormat));
        }
        _ => return Err(refused(ErrorKind::InvalidAlgorithm)),
    };
    Ok(Box::new(RingVerifier { algorithm: *algorithm, key }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            SigningKey::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&ring_sig::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| signature::Error::new())?;
                Ok(signature)
            }
            SigningKey::Ecdsa(pair) => {
                Ok(pair.sign(&rng, message).map_err(|_| signature::Error::new())?.as_ref().to_vec())
            }
            SigningKey::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let checked = match &self.key {
            // Constant time.
            CheckingKey::Hmac(key) => hmac::verify(key, message, signature),
            CheckingKey::Public(algorithm, key) => {
                ring_sig::UnparsedPublicKey::new(*algorithm, key).verify(message, signature)
            }
            CheckingKey::RsaComponents(parameters, n, e) => {
                ring_sig::RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
