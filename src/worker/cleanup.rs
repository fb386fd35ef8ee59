//! The periodic cleanup of old queue rows (GLPI's `queuedwebhookclean`, but never a row that
//! is still to be sent).

use std::str::FromStr;

use crate::queue::Queue;
use apalis::prelude::*;
use apalis_cron::Tick;

#[derive(Clone)]
pub struct Cleanup {
    pub queue: std::sync::Arc<Queue>,
    pub sent_days: u32,
    pub failed_days: u32,
}

/// The cron schedule (validated with the configuration).
pub fn schedule(expression: &str) -> Option<cron::Schedule> {
    cron::Schedule::from_str(expression).ok()
}

pub async fn run(_tick: Tick, cleanup: Data<Cleanup>) -> Result<(), BoxDynError> {
    match cleanup.queue.clean(cleanup.sent_days, cleanup.failed_days, None).await {
        Ok(deleted) => {
            tracing::info!(deleted, "cleaned the delivery queue");
            Ok(())
        }
        Err(err) => Err(format!("cleanup failed: {err:?}").into()),
    }
}
