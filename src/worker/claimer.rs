//! Claims due rows as send slots free up and hands them to the delivery worker. Woken at once
//! when rows are queued (in this process, or through PostgreSQL's NOTIFY from another one);
//! otherwise it polls for due retries. The heartbeat task keeps this process's heartbeat and
//! releases the rows of processes whose heartbeat stopped.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::backend::Delivery;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::{
    delivery::DeliveryClient,
    error::AppResult,
    queue::{Claimed, Queue},
};

/// At most this many rows per claim.
const CLAIM_BATCH: usize = 256;

pub async fn run(
    queue: Arc<Queue>,
    client: Arc<DeliveryClient>,
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(client.config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a breaker or a rate limit lets rows go again: the claimer looks then, not at its
    // next poll.
    let mut reopening: Option<tokio::time::Instant> = None;
    loop {
        let reopened = async {
            match reopening {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = queue.work_queued() => {}
            _ = poll.tick() => {}
            _ = reopened => {}
        }
        loop {
            // Wait for one free slot, then take every other free one, up to a batch.
            let mut permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            };
            let extra = slots.available_permits().min(CLAIM_BATCH - 1) as u32;
            if extra > 0
                && let Ok(more) = slots.clone().try_acquire_many_owned(extra)
            {
                permit.merge(more);
            }
            let wanted = permit.num_permits();
            let Claimed { rows, starts, given_back } = match queue.claim_due(wanted as u64).await {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(?err, "cannot claim deliveries");
                    break;
                }
            };
            let claimed = rows.len();
            if let Err(err) = hand_over(&queue, &client, rows, starts, &mut permit, &jobs).await {
                tracing::warn!(?err, "cannot hand claimed deliveries over");
            }
            // Rows given back belong to webhooks the next claim skips: it may find others.
            if claimed + given_back < wanted {
                break;
            }
        }
        reopening = match queue.next_reopening().await {
            Ok(at) => at.map(|at| {
                let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::Instant::now() + wait
            }),
            Err(err) => {
                tracing::warn!(?err, "cannot read when paused webhooks resume");
                None
            }
        };
    }
}

async fn hand_over(
    queue: &Queue,
    client: &DeliveryClient,
    rows: Vec<entity::queued_webhooks::Model>,
    mut starts: HashMap<i64, DateTime<Utc>>,
    permit: &mut tokio::sync::OwnedSemaphorePermit,
    jobs: &mpsc::Sender<Delivery>,
) -> AppResult<()> {
    let Some(token) = rows.first().and_then(|r| r.claim_token) else {
        return Ok(());
    };
    let mut ids: Vec<i64> = rows.iter().map(|r| r.webhook_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let signers = match client.signers.for_webhooks(client.db(), &client.secrets, &ids).await {
        Ok(signers) => signers,
        Err(err) => {
            queue.release(rows.iter().map(|r| r.id).collect(), token).await?;
            return Err(err);
        }
    };
    let mut unsent = Vec::new();
    for row in rows {
        // A row whose webhook is gone is deleted with it; nothing to send.
        let Some(signer) = signers.get(&row.webhook_id).cloned() else { continue };
        let Some(slot) = permit.split(1) else {
            unsent.push(row.id);
            continue;
        };
        let start_at = starts.remove(&row.id);
        if let Err(mpsc::error::SendError(delivery)) = jobs.send(Delivery { row, signer, slot, start_at }).await {
            unsent.push(delivery.row.id);
        }
    }
    queue.release(unsent, token).await?;
    Ok(())
}

/// Every heartbeat interval: this process's heartbeat (several processes on one database), and
/// the release of rows whose worker is gone (lease ended, or its process silent for the
/// heartbeat timeout), which wakes the claimer.
pub async fn heartbeat(queue: Arc<Queue>, client: Arc<DeliveryClient>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(client.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = queue.heartbeat().await {
            tracing::warn!(?err, "cannot record this process's heartbeat");
        }
        release_abandoned(&queue, &client, false).await;
    }
}

/// Gives back the rows whose worker is gone (see `Queue::release_abandoned`), and says so.
pub async fn release_abandoned(queue: &Queue, client: &DeliveryClient, at_start: bool) {
    match queue.release_abandoned(at_start, client.config.heartbeat_timeout).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(rows = n, at_start, "released deliveries whose worker is gone"),
        Err(err) => tracing::warn!(?err, "cannot release abandoned deliveries"),
    }
}
