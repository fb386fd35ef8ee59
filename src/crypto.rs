//! One crypto provider for the whole process: `ring`, for TLS (outgoing HTTPS through reqwest,
//! PostgreSQL through sqlx) and for API tokens (`jsonwebtoken`). Every entry point calls
//! [`install`] before it builds an HTTP client or checks a token; it is cheap and idempotent.

/// Installs `ring` as the process's rustls and `jsonwebtoken` provider (once).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already (by whoever embeds this library); it is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        crate::auth::jwt_crypto::install();
    });
}
