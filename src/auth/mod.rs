//! API authentication: tokens, profiles and their rights.
//!
//! This module holds the parts that do not depend on a request: the profiles and the rights
//! each holds ([`profile`]), the claims of a token and how any token is signed and checked
//! ([`token`]), the right each API root field needs ([`rights`]), the entities a caller
//! reaches ([`scope`]), the record of issued tokens ([`store`]), the set of revoked tokens kept
//! in memory ([`Revoked`]) and the mutations per token; and [`Auth`], which turns a request's
//! `Authorization` into a [`Caller`], or says why it cannot.

pub mod cli;
pub(crate) mod jwt_crypto;
pub mod profile;
mod rate;
pub mod rights;
pub mod scope;
pub mod store;
pub mod token;

use std::{collections::HashSet, sync::RwLock};

use chrono::Utc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use profile::{Profile, Right};
pub use rate::RateLimited;
pub use scope::Scope;
pub use token::{Claims, EntityScope, TokenError, Tokens};

use crate::config::{AuthConfig, ConfigError};

/// Who is calling: what its token says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub profile: Profile,
    /// The entities the token covers (never empty).
    pub entities: Vec<EntityScope>,
    /// The token's id (`jti`).
    pub token_id: String,
    /// When the token expires (seconds since the epoch); None: never.
    pub expires_at: Option<i64>,
}

impl Caller {
    /// A super-admin on every entity, for work the server does itself (and embedding tests).
    pub fn super_admin(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            profile: Profile::SuperAdmin,
            entities: vec![EntityScope { id: crate::service::tree::ROOT_ENTITY_ID, recursive: true }],
            token_id: String::new(),
            expires_at: None,
        }
    }

    pub fn may(&self, right: Right) -> bool {
        self.profile.has(right)
    }

    /// The caller as the writer of an item change.
    pub fn actor(&self) -> crate::domain::item::Actor {
        crate::domain::item::Actor { user: self.user.clone(), profile: self.profile.as_str().to_owned() }
    }
}

/// Checks tokens for requests: signature and times ([`Tokens`]), revocation ([`Revoked`]), and
/// how many mutations a token makes.
#[derive(Debug)]
pub struct Auth {
    pub tokens: Tokens,
    pub revoked: Revoked,
    /// Whether introspection answers (`HOOKLINE_INTROSPECTION`).
    pub introspection: bool,
    rate: Option<rate::Limiter>,
}

impl Auth {
    /// From the server's key and the provider settings (the JWKS file is read here).
    pub fn new(secret_key: &[u8; 32], config: &AuthConfig) -> Result<Self, ConfigError> {
        let provider = match &config.jwks_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    ConfigError(format!(
                        "key `jwt_jwks_file` (HOOKLINE_JWT_JWKS_FILE): cannot read {}: {err}",
                        path.display()
                    ))
                })?;
                let keys = serde_json::from_str(&text).map_err(|err| {
                    ConfigError(format!(
                        "key `jwt_jwks_file` (HOOKLINE_JWT_JWKS_FILE): {} is not a JWKS: {err}",
                        path.display()
                    ))
                })?;
                Some(token::Provider { keys, issuer: config.issuer.clone(), audience: config.audience.clone() })
            }
        };
        let tokens = Tokens::new(token_signing_key(secret_key), provider)
            .map_err(|err| ConfigError(format!("key `jwt_jwks_file` (HOOKLINE_JWT_JWKS_FILE): {err}")))?;
        Ok(Self {
            tokens,
            revoked: Revoked::default(),
            introspection: config.introspection,
            rate: (config.mutation_rate > 0).then(|| rate::Limiter::new(config.mutation_rate, config.mutation_burst)),
        })
    }

    /// The caller an `Authorization` header value names, or why it names none.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, TokenError> {
        let token = token::bearer(authorization)?;
        let claims = self.tokens.verify(token, Utc::now().timestamp())?;
        if self.revoked.contains(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        let profile =
            Profile::parse(&claims.profile).ok_or_else(|| TokenError::UnknownProfile(claims.profile.clone()))?;
        if claims.entities.is_empty() {
            return Err(TokenError::Malformed("the token covers no entity (`entities` is empty)".into()));
        }
        Ok(Caller {
            user: claims.sub,
            profile,
            entities: claims.entities,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// Whether a caller authenticated earlier still may act: its token has not expired (with
    /// the same leeway as at the start) nor been revoked since. Live subscriptions ask.
    pub fn still_valid(&self, caller: &Caller) -> Result<(), TokenError> {
        if caller.expires_at.is_some_and(|exp| (exp + token::LEEWAY_SECONDS as i64) < Utc::now().timestamp()) {
            return Err(TokenError::Expired);
        }
        if !caller.token_id.is_empty() && self.revoked.contains(&caller.token_id) {
            return Err(TokenError::Revoked);
        }
        Ok(())
    }

    /// Counts `count` mutations against the caller's token; refused beyond its rate.
    pub fn count_mutations(&self, caller: &Caller, count: u32) -> Result<(), RateLimited> {
        match &self.rate {
            Some(limiter) if !caller.token_id.is_empty() => limiter.take(&caller.token_id, count),
            _ => Ok(()),
        }
    }
}

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

    /// Takes the set read from the database, keeping what this process revoked meanwhile (a
    /// revocation is never forgotten by a read that started before it).
    pub fn merge(&self, jtis: Vec<String>) {
        let new: Vec<String> = {
            let known = self.0.read().unwrap_or_else(|p| p.into_inner());
            jtis.into_iter().filter(|jti| !known.contains(jti)).collect()
        };
        if !new.is_empty() {
            self.0.write().unwrap_or_else(|p| p.into_inner()).extend(new);
        }
    }
}

#[cfg(test)]
mod tests;
