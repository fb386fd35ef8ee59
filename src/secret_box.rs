//! Encryption at rest of webhook secrets and OAuth client secrets (AES-256-GCM).
//!
//! A sealed value is `v2:` followed by base64 of a random 96-bit nonce and the ciphertext. The
//! purpose of the value (`webhook.secret`, `webhook.client_secret`, …) and the row it belongs
//! to (the webhook id, or the delivery id of a queued webhook, and a header's name) are bound
//! as associated data, so a sealed value cannot be moved to another column or another row.
//! Values sealed before rows were bound (`v1:`, the purpose alone as associated data) are
//! still read as they are.

use std::path::Path;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    config::{ConfigError, SecretKeySource, parse_secret_key},
    error::AppError,
};

/// Values sealed with the purpose and the row as associated data.
const PREFIX: &str = "v2:";
/// Values sealed with the purpose alone (before rows were bound); read, never written.
const PREFIX_V1: &str = "v1:";
const NONCE_LEN: usize = 12;

/// What a sealed value is for; bound into the ciphertext.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    WebhookSecret,
    /// The secret a rotation replaced, kept for its overlap.
    PreviousWebhookSecret,
    OauthClientSecret,
    /// A credential header's value in a webhook's settings.
    WebhookHeader,
    /// A credential header's value in a queued webhook.
    QueuedHeader,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::WebhookSecret => b"webhook.secret",
            Self::PreviousWebhookSecret => b"webhook.previous_secret",
            Self::OauthClientSecret => b"webhook.client_secret",
            Self::WebhookHeader => b"webhook.header",
            Self::QueuedHeader => b"queued_webhook.header",
        }
    }

    /// The associated data of a value of this purpose in `row`: the label, a NUL (which no
    /// label holds) and the row.
    fn bound_to(self, row: &str) -> Vec<u8> {
        let mut aad = self.label().to_vec();
        aad.push(0);
        aad.extend_from_slice(row.as_bytes());
        aad
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
        Ok(Self::new(&master_key(source)?))
    }

    /// Seals a value of `purpose` that belongs to `row` (a webhook id, a queued webhook's
    /// delivery id, followed by `/` and the header name for a header).
    pub fn seal(&self, purpose: Purpose, row: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = purpose.bound_to(row);
        let payload = Payload { msg: plaintext.as_bytes(), aad: &aad };
        // Encryption with a valid key and nonce length cannot fail for inputs of this size.
        let ciphertext = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", BASE64.encode(out))
    }

    /// Opens a value sealed by [`Self::seal`] for the same purpose and row, or one sealed
    /// before rows were bound (`v1:`) for the same purpose.
    pub fn open(&self, purpose: Purpose, row: &str, sealed: &str) -> Result<SecretString, AppError> {
        let undecryptable =
            || AppError::internal("a stored secret cannot be decrypted: was HOOKLINE_SECRET_KEY changed?");
        let (b64, aad) = match (sealed.strip_prefix(PREFIX), sealed.strip_prefix(PREFIX_V1)) {
            (Some(b64), _) => (b64, purpose.bound_to(row)),
            (None, Some(b64)) => (b64, purpose.label().to_vec()),
            (None, None) => return Err(undecryptable()),
        };
        let bytes = BASE64.decode(b64).map_err(|_| undecryptable())?;
        if bytes.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| undecryptable())
    }
}

/// How a sealed value starts among header values (which are otherwise stored as given).
pub const SEALED_HEADER: &str = "hookline-sealed:";

impl SecretBox {
    /// Seals the value of header `name` of `row` (a webhook id or a queued webhook's delivery
    /// id): [`SEALED_HEADER`] and the sealed value, bound to the row and the name.
    pub fn seal_header(&self, purpose: Purpose, row: &str, name: &str, value: &str) -> String {
        format!("{SEALED_HEADER}{}", self.seal(purpose, &format!("{row}/{name}"), value))
    }

    /// A stored header value, opened when it was sealed; a value stored in clear (before
    /// credential headers were sealed there) is returned as it is.
    pub fn open_header(&self, purpose: Purpose, row: &str, name: &str, value: &str) -> Result<String, AppError> {
        match value.strip_prefix(SEALED_HEADER) {
            Some(sealed) => self
                .open(purpose, &format!("{row}/{name}"), sealed)
                .map(|v| v.expose_secret().to_owned())
                .map_err(|_| {
                    AppError::internal(format!(
                        "the stored value of header `{name}` cannot be decrypted: was HOOKLINE_SECRET_KEY changed?"
                    ))
                }),
            None => Ok(value.to_owned()),
        }
    }
}

/// Whether a stored header value is sealed.
pub fn is_sealed_header(value: &str) -> bool {
    value.starts_with(SEALED_HEADER)
}

/// The server's key: the configured one, or the key file's (created with a random key when it
/// does not exist yet). Stored secrets are sealed with it; other keys are derived from it.
pub fn master_key(source: &SecretKeySource) -> Result<[u8; 32], ConfigError> {
    match source {
        SecretKeySource::Configured(key) => Ok(*key),
        SecretKeySource::File(path) => read_or_create_key_file(path),
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
            check_private(path)?;
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

/// Refuses a key file that its group or others may read or write.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|err| ConfigError(format!("the key file {} cannot be read: {err}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError(format!(
            "the key file {path} is open to its group or others (mode {mode:04o}); anyone who reads it can decrypt \
             every stored secret. Make it private to this user: chmod 600 {path}",
            path = path.display(),
            mode = mode & 0o7777,
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// Writes a new file only this user may read (it must not exist yet).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
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
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_purpose_row_and_key() {
        let sbox = SecretBox::new(&[7u8; 32]);
        let sealed = sbox.seal(Purpose::WebhookSecret, "12", "s3cret");
        assert!(!sealed.contains("s3cret") && sealed.starts_with("v2:"));
        assert_eq!(sbox.open(Purpose::WebhookSecret, "12", &sealed).expect("opens").expose_secret(), "s3cret");
        assert!(sbox.open(Purpose::OauthClientSecret, "12", &sealed).is_err());
        assert!(sbox.open(Purpose::WebhookSecret, "13", &sealed).is_err(), "bound to its row");
        assert!(sbox.open(Purpose::WebhookSecret, "1", &sealed).is_err());
        assert!(SecretBox::new(&[8u8; 32]).open(Purpose::WebhookSecret, "12", &sealed).is_err());
        assert_ne!(sealed, sbox.seal(Purpose::WebhookSecret, "12", "s3cret"), "nonces are random");
    }

    #[test]
    fn values_sealed_before_rows_were_bound_still_open() {
        let sbox = SecretBox::new(&[7u8; 32]);
        // Sealed as the previous version did: the purpose alone as associated data.
        let nonce = [3u8; NONCE_LEN];
        let payload = Payload { msg: b"legacy".as_slice(), aad: Purpose::WebhookSecret.label() };
        let mut bytes = nonce.to_vec();
        bytes.extend(sbox.cipher.encrypt(Nonce::from_slice(&nonce), payload).expect("encrypts"));
        let sealed = format!("{PREFIX_V1}{}", BASE64.encode(bytes));
        assert_eq!(sbox.open(Purpose::WebhookSecret, "any row", &sealed).expect("opens").expose_secret(), "legacy");
        assert!(sbox.open(Purpose::OauthClientSecret, "any row", &sealed).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        read_or_create_key_file(&path).expect("created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_or_create_key_file(&path).expect_err("refused");
        assert!(err.0.contains("chmod 600") && err.0.contains("0644"), "{}", err.0);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(read_or_create_key_file(&path).is_ok());
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
