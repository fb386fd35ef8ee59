//! API authentication: tokens, profiles and their rights.
//!
//! This module holds the parts that do not depend on a request: the profiles and the rights
//! each holds ([`profile`]), the claims of a token and how any token is signed and checked
//! ([`token`]), the record of issued tokens ([`store`]) and the set of revoked tokens kept in
//! memory ([`Revoked`]). Requests do not go through it yet: that is the authentication issue's
//! next step (every caller still acts as `super-admin`).

pub mod profile;
pub mod store;
pub mod token;

use std::{collections::HashSet, sync::RwLock};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use profile::{Profile, Right};
pub use token::{Claims, EntityScope, TokenError, Tokens};

/// The purpose the key of hookline's own tokens is derived for: no other use of
/// `HOOKLINE_SECRET_KEY` can produce or check a token.
const TOKEN_KEY_PURPOSE: &[u8] = b"hookline-api-tokens-v1";

/// The signing key of hookline's own tokens, derived from the server's secret key, so that
/// every process on one database accepts the tokens of the others.
pub fn token_signing_key(secret_key: &[u8; 32]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret_key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(TOKEN_KEY_PURPOSE);
    mac.finalize().into_bytes().into()
}

/// The ids (`jti`) of revoked tokens, kept in memory so that no request reads the database to
/// check its token.
#[derive(Debug, Default)]
pub struct Revoked(RwLock<HashSet<String>>);

impl Revoked {
    pub fn contains(&self, jti: &str) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).contains(jti)
    }

    pub fn insert(&self, jti: String) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(jti);
    }

    /// Replaces the whole set (after reading it from the database).
    pub fn replace(&self, jtis: impl IntoIterator<Item = String>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = jtis.into_iter().collect();
    }
}

#[cfg(test)]
mod tests;
