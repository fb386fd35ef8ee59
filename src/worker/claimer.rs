//! Claims due rows as send slots free up and hands them to the delivery worker. Woken at once
//! when rows are queued (in this process, or through PostgreSQL's NOTIFY from another one);
//! otherwise it polls for due retries and for rows abandoned by a dead worker.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use entity::{queued_webhooks::status, webhooks};
use sea_orm::{ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Pipeline, backend::Delivery};
use crate::{
    delivery::{OAuthClient, Signer},
    domain::webhook::SignatureScheme,
    error::{AppError, AppResult},
    secret_box::{Purpose, SecretBox},
    service::{
        events::QUEUE_CHANNEL,
        live::{CHANGES_CHANNEL, QueueChange, SUBSCRIBERS_CHANNEL, decode},
        queue,
    },
};

/// At most this many rows per claim.
const CLAIM_BATCH: usize = 256;

pub async fn run(
    db: DatabaseConnection,
    pipeline: Arc<Pipeline>,
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
) {
    if db.get_database_backend() == DbBackend::Postgres {
        tokio::spawn(listen(db.clone(), pipeline.clone(), shutdown.clone()));
        let (bus, db, shutdown) = (pipeline.bus.clone(), db.clone(), shutdown.clone());
        tokio::spawn(async move { bus.announce_subscribers(db, shutdown).await });
    }
    let mut poll = tokio::time::interval(pipeline.config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pipeline.wake.notified() => {}
            _ = poll.tick() => {
                if let Err(err) = queue::release_abandoned(&db, false).await {
                    tracing::warn!(?err, "cannot release abandoned deliveries");
                }
            }
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
            let rows = match queue::claim_due(&db, wanted as u64, pipeline.lease()).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(?err, "cannot claim deliveries");
                    break;
                }
            };
            let claimed = rows.len();
            if pipeline.bus.wanted(&db) {
                let changes = rows
                    .iter()
                    .map(|row| {
                        let previous = if row.sent_try > 0 { status::RETRYING } else { status::PENDING };
                        QueueChange::new(row.clone(), Some(previous))
                    })
                    .collect();
                pipeline.bus.publish(&db, changes).await;
            }
            if let Err(err) = hand_over(&db, &pipeline, rows, &mut permit, &jobs).await {
                tracing::warn!(?err, "cannot hand claimed deliveries over");
            }
            if claimed < wanted {
                break;
            }
        }
    }
}

async fn hand_over(
    db: &DatabaseConnection,
    pipeline: &Pipeline,
    rows: Vec<entity::queued_webhooks::Model>,
    permit: &mut tokio::sync::OwnedSemaphorePermit,
    jobs: &mpsc::Sender<Delivery>,
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i64> = rows.iter().map(|r| r.webhook_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let signers = match pipeline.signers.for_webhooks(db, &pipeline.secrets, &ids).await {
        Ok(signers) => signers,
        Err(err) => {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            queue::release(db, &ids).await?;
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
        if let Err(mpsc::error::SendError(delivery)) = jobs.send(Delivery { row, signer, slot }).await {
            unsent.push(delivery.row.id);
        }
    }
    queue::release(db, &unsent).await?;
    Ok(())
}

/// Wakes the claimer whenever another process (or this one) queues rows on PostgreSQL.
async fn listen(db: DatabaseConnection, pipeline: Arc<Pipeline>, shutdown: CancellationToken) {
    use sea_orm::sqlx::postgres::PgListener;
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(%err, "cannot LISTEN for queued deliveries; polling only");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => continue,
                }
            }
        };
        if let Err(err) = listener.listen_all([QUEUE_CHANNEL, CHANGES_CHANNEL, SUBSCRIBERS_CHANNEL]).await {
            tracing::warn!(%err, "cannot LISTEN for queued deliveries");
            continue;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = listener.recv() => match next {
                    Ok(notification) if notification.channel() == SUBSCRIBERS_CHANNEL => {
                        if notification.payload() != pipeline.bus.process_id {
                            pipeline.bus.remote_subscribers_seen();
                        }
                    }
                    Ok(notification) if notification.channel() == CHANGES_CHANNEL => {
                        pipeline.bus.deliver_local(decode(notification.payload()));
                    }
                    Ok(_) => pipeline.wake(),
                    Err(err) => {
                        tracing::warn!(%err, "lost the LISTEN connection; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// Decrypted signing secrets by webhook, reused while the webhook is unchanged.
#[derive(Default)]
pub struct SignerCache {
    entries: Mutex<HashMap<i64, (DateTime<Utc>, Signer)>>,
}

impl SignerCache {
    /// The signers of the given webhooks; a webhook that no longer exists is absent.
    pub async fn for_webhooks(
        &self,
        db: &DatabaseConnection,
        secrets: &SecretBox,
        ids: &[i64],
    ) -> AppResult<HashMap<i64, Signer>> {
        let rows = webhooks::Entity::find().filter(webhooks::Column::Id.is_in(ids.iter().copied())).all(db).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let cached = entries.get(&row.id).filter(|(at, _)| *at == row.updated_at).map(|(_, s)| s.clone());
            let signer = match cached {
                Some(signer) => signer,
                None => {
                    let scheme = SignatureScheme::parse(&row.signature_scheme)
                        .ok_or_else(|| AppError::internal(format!("webhook {}: unknown signature scheme", row.id)))?;
                    let secret = secrets.open(Purpose::WebhookSecret, &row.secret_encrypted)?;
                    let oauth = match (row.use_oauth, &row.oauth_url, &row.client_secret_encrypted) {
                        (true, Some(token_url), Some(sealed)) => Some(Arc::new(OAuthClient {
                            token_url: token_url.clone(),
                            client_id: row.client_id.clone().unwrap_or_default(),
                            client_secret: secrets.open(Purpose::OauthClientSecret, sealed)?,
                        })),
                        _ => None,
                    };
                    let signer = Signer {
                        webhook_id: row.id,
                        version: row.updated_at,
                        scheme,
                        secret,
                        cra: row.use_cra_challenge,
                        oauth,
                    };
                    entries.insert(row.id, (row.updated_at, signer.clone()));
                    signer
                }
            };
            out.insert(row.id, signer);
        }
        Ok(out)
    }
}
