//! Encryption at rest of webhook secrets and OAuth client secrets (AES-256-GCM).
//!
//! A sealed value is `v1:` followed by base64 of a random 96-bit nonce and the ciphertext. The
//! purpose of the value (`webhook.secret`, `webhook.client_secret`) is bound as associated
//! data, so a sealed value cannot be moved from one column to another.

use std::path::Path;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use rand::RngCore;
use secrecy::SecretString;

use crate::{
    config::{ConfigError, SecretKeySource, parse_secret_key},
    error::AppError,
};

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// What a sealed value is for; bound into the ciphertext.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    WebhookSecret,
    OauthClientSecret,
    /// A credential header's value in a queued webhook.
    QueuedHeader,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::WebhookSecret => b"webhook.secret",
            Self::OauthClientSecret => b"webhook.client_secret",
            Self::QueuedHeader => b"queued_webhook.header",
        }
    }
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(key.into()) }
    }

    /// Opens the configured key, or reads the key file (creating it with a random key when
    /// it does not exist yet).
    pub fn from_source(source: &SecretKeySource) -> Result<Self, ConfigError> {
        match source {
            SecretKeySource::Configured(key) => Ok(Self::new(key)),
            SecretKeySource::File(path) => Ok(Self::new(&read_or_create_key_file(path)?)),
        }
    }

    pub fn seal(&self, purpose: Purpose, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload { msg: plaintext.as_bytes(), aad: purpose.label() };
        // Encryption with a valid key and nonce length cannot fail for inputs of this size.
        let ciphertext = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", BASE64.encode(out))
    }

    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<SecretString, AppError> {
        let undecryptable =
            || AppError::internal("a stored secret cannot be decrypted: was HOOKLINE_SECRET_KEY changed?");
        let bytes = sealed.strip_prefix(PREFIX).and_then(|b64| BASE64.decode(b64).ok()).ok_or_else(undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: purpose.label() })
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| undecryptable())
    }
}

fn read_or_create_key_file(path: &Path) -> Result<[u8; 32], ConfigError> {
    let describe = |what: &str, err: std::io::Error| {
        ConfigError(format!(
            "key `secret_key` (HOOKLINE_SECRET_KEY) is not set and the key file {} cannot be {what}: {err}",
            path.display()
        ))
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            parse_secret_key(&text).map_err(|err| ConfigError(format!("the key file {}: {}", path.display(), err.0)))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| describe("created", e))?;
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            write_private(path, &BASE64.encode(key)).map_err(|e| describe("written", e))?;
            tracing::info!(path = %path.display(), "created a new key for stored secrets");
            Ok(key)
        }
        Err(err) => Err(describe("read", err)),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_purpose_and_key() {
        let sbox = SecretBox::new(&[7u8; 32]);
        let sealed = sbox.seal(Purpose::WebhookSecret, "s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(sbox.open(Purpose::WebhookSecret, &sealed).expect("opens").expose_secret(), "s3cret");
        assert!(sbox.open(Purpose::OauthClientSecret, &sealed).is_err());
        assert!(SecretBox::new(&[8u8; 32]).open(Purpose::WebhookSecret, &sealed).is_err());
        assert_ne!(sealed, sbox.seal(Purpose::WebhookSecret, "s3cret"), "nonces are random");
    }

    #[test]
    fn a_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret.key");
        let first = read_or_create_key_file(&path).expect("created");
        let second = read_or_create_key_file(&path).expect("read");
        assert_eq!(first, second);
    }
}
