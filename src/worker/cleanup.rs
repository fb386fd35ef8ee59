//! The periodic cleanup of old queue rows (GLPI's `queuedwebhookclean`, but never a row that
//! is still to be sent).

use std::str::FromStr;

use crate::queue::Queue;
use apalis::prelude::*;
use apalis_cron::Tick;

#[derive(Clone)]
pub struct Cleanup {
    pub queue: std::sync::Arc<Queue>,
    /// Where the audit log and the token records are.
    pub db: sea_orm::DatabaseConnection,
    pub sent_days: u32,
    pub failed_days: u32,
    pub audit_days: u32,
    /// How long idempotency keys are remembered.
    pub idempotency_window: std::time::Duration,
}

/// Records of tokens expired this long ago are deleted.
const EXPIRED_TOKENS_KEPT_DAYS: i64 = 30;

/// The cron schedule (validated with the configuration).
pub fn schedule(expression: &str) -> Option<cron::Schedule> {
    cron::Schedule::from_str(expression).ok()
}

pub async fn run(_tick: Tick, cleanup: Data<Cleanup>) -> Result<(), BoxDynError> {
    let deleted = cleanup
        .queue
        .clean(cleanup.sent_days, cleanup.failed_days, None)
        .await
        .map_err(|err| format!("cleanup failed: {err:?}"))?;
    tracing::info!(deleted, "cleaned the delivery queue");
    let cleared = crate::service::webhooks::clear_expired_previous_secrets(&cleanup.db)
        .await
        .map_err(|err| format!("cleanup of expired previous secrets failed: {err:?}"))?;
    tracing::info!(cleared, "forgot the previous secrets whose overlap ended");
    let now = chrono::Utc::now();
    let before = chrono::TimeDelta::try_days(i64::from(cleanup.audit_days))
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let expired = now - chrono::TimeDelta::days(EXPIRED_TOKENS_KEPT_DAYS);
    let (entries, tokens) = crate::service::audit::clean(&cleanup.db, before, expired)
        .await
        .map_err(|err| format!("cleanup of the audit log failed: {err:?}"))?;
    tracing::info!(entries, tokens, "cleaned the audit log and expired tokens");
    let keys = crate::service::idempotency::clean(&cleanup.db, cleanup.idempotency_window)
        .await
        .map_err(|err| format!("cleanup of idempotency keys failed: {err:?}"))?;
    tracing::info!(keys, "cleaned expired idempotency keys");
    Ok(())
}
