//! Live monitoring: a stream of queue changes and live counters.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, Subscription};
use futures_util::{Stream, stream};

use super::{
    context::session,
    paging::numeric_id,
    queue::{QueueStatus, QueuedWebhook},
    webhook::WebhookHealth,
};
use crate::{
    auth::Scope,
    error::{AppError, AppResult},
    queue::{QueueChange, QueueStats, Watch},
    service::{tree::EntityIndex, webhooks},
    slots::Slot,
    websocket::ConnectionSubscriptions,
};

/// The webhook a stats request names, which must exist (a request for an unknown one must
/// not start watching it).
async fn existing_webhook(ctx: &Context<'_>, webhook_id: Option<ID>) -> AppResult<Option<i64>> {
    let Some(id) = webhook_id else { return Ok(None) };
    let id = numeric_id(&id, "webhookId")?;
    let s = session(ctx)?;
    match webhooks::get(&s.state.db, id).await? {
        Some(webhook) if s.sees(webhook.settings.entity_id).await? => Ok(Some(id)),
        _ => Err(AppError::not_found(format!("webhookId: no webhook has the id {id}"))),
    }
}

/// The slots one more subscription takes: one of the process's and, on a WebSocket, one of
/// its connection's. Held by the subscription's stream, freed when it ends.
fn subscription_slots(ctx: &Context<'_>) -> AppResult<(Slot, Option<Slot>)> {
    let s = session(ctx)?;
    let connection = match ctx.data_opt::<ConnectionSubscriptions>() {
        Some(ConnectionSubscriptions(slots)) => Some(slots.try_take().ok_or_else(|| {
            AppError::validation(format!(
                "this connection already has {} live subscriptions (HOOKLINE_MAX_SUBSCRIPTIONS_PER_CONNECTION); \
                 complete one before starting another",
                slots.max()
            ))
        })?),
        None => None,
    };
    let process = s.state.subscriptions.try_take().ok_or_else(|| {
        AppError::validation(format!(
            "this server already has {} live subscriptions (HOOKLINE_MAX_SUBSCRIPTIONS); try again later",
            s.state.subscriptions.max()
        ))
    })?;
    Ok((process, connection))
}

/// One status change of a queued webhook.
pub struct QueueUpdate {
    change: Arc<QueueChange>,
    missed: u64,
}

#[Object]
impl QueueUpdate {
    /// The queued webhook after the change.
    async fn queued_webhook(&self) -> QueuedWebhook {
        QueuedWebhook::partial(self.change.row.clone())
    }

    /// Its status before the change; null when it was just queued.
    async fn previous_status(&self) -> Option<QueueStatus> {
        self.change.previous_status.map(QueueStatus::from)
    }

    /// How many updates this subscriber missed since its previous message because it fell
    /// behind (0 normally).
    async fn missed_updates(&self) -> u64 {
        self.missed
    }
}

#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// The queue's counters now, for one webhook or all.
    async fn queue_stats(&self, ctx: &Context<'_>, webhook_id: Option<ID>) -> Result<QueueStats> {
        let s = session(ctx)?;
        let webhook_id = existing_webhook(ctx, webhook_id).await?;
        let within = s.scope_ids().await?;
        Ok(s.state.queue.stats(webhook_id, within.as_deref()).await?)
    }
}

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// One message per status change of a queued webhook: queued, claimed, sent, retry
    /// scheduled, failed, cancelled, forced. Filters combine; `entityId` includes the entity's
    /// children. A subscriber that falls behind is told with `missedUpdates`.
    async fn queue_updates(
        &self,
        ctx: &Context<'_>,
        webhook_id: Option<ID>,
        entity_id: Option<ID>,
        status: Option<QueueStatus>,
    ) -> Result<impl Stream<Item = QueueUpdate>> {
        let s = session(ctx)?;
        let webhook_id = webhook_id.map(|id| numeric_id(&id, "webhookId")).transpose()?;
        let slots = subscription_slots(ctx)?;
        let asked: Option<std::collections::HashSet<i64>> = match entity_id {
            Some(id) => {
                let id = numeric_id(&id, "entityId")?;
                Some(EntityIndex::load(&s.state.db).await?.subtree(id).into_iter().collect())
            }
            None => None,
        };
        // Only changes of rows in the caller's scope reach it.
        let entities = match (asked, s.scope().await?) {
            (asked, Scope::All) => asked,
            (None, Scope::Entities(scope)) => Some((*scope).clone()),
            (Some(asked), Scope::Entities(scope)) => Some(asked.intersection(&scope).copied().collect()),
        };
        let watch = Watch { webhook_id, entities, status: status.map(Into::into) };
        let subscription = s.state.queue.bus().subscribe(watch);
        Ok(stream::unfold((subscription, slots), |(mut subscription, slots)| async move {
            let change = subscription.changes.recv().await?;
            let missed = subscription.take_missed();
            Some((QueueUpdate { change, missed }, (subscription, slots)))
        }))
    }

    /// One message per change of a webhook's circuit breaker state (CLOSED, OPEN, HALF_OPEN),
    /// in any process; of one webhook, or of every webhook the caller sees.
    async fn webhook_health_updates(
        &self,
        ctx: &Context<'_>,
        webhook_id: Option<ID>,
    ) -> Result<impl Stream<Item = WebhookHealth>> {
        let s = session(ctx)?;
        let webhook_id = existing_webhook(ctx, webhook_id).await?;
        let slots = subscription_slots(ctx)?;
        let scope = match s.scope().await? {
            Scope::All => None,
            Scope::Entities(scope) => Some(scope),
        };
        let receiver = s.state.queue.bus().subscribe_health();
        Ok(stream::unfold((receiver, slots), move |(mut receiver, slots)| {
            let scope = scope.clone();
            async move {
                loop {
                    let change = match receiver.recv().await {
                        Ok(change) => change,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    };
                    let wanted = webhook_id.is_none_or(|id| id == change.webhook_id)
                        && scope.as_ref().is_none_or(|scope| scope.contains(&change.entity_id));
                    if wanted {
                        return Some((WebhookHealth(change.health()), (receiver, slots)));
                    }
                }
            }
        }))
    }

    /// The queue's counters (as the `queueStats` query gives them), at once and then after
    /// changes, at most once per `HOOKLINE_STATS_INTERVAL` (default 250 ms).
    async fn queue_stats(&self, ctx: &Context<'_>, webhook_id: Option<ID>) -> Result<impl Stream<Item = QueueStats>> {
        let s = session(ctx)?;
        let webhook_id = existing_webhook(ctx, webhook_id).await?;
        let slots = subscription_slots(ctx)?;
        let within = s.scope_ids().await?.map(Arc::from);
        let receiver = s.state.live.watch((webhook_id, within));
        Ok(stream::unfold((receiver, true, slots), |(mut receiver, first, slots)| async move {
            if !first {
                receiver.changed().await.ok()?;
            }
            loop {
                let current = receiver.borrow_and_update().clone();
                if let Some(stats) = current {
                    return Some((stats, (receiver, false, slots)));
                }
                receiver.changed().await.ok()?;
            }
        }))
    }
}
