//! Live monitoring: a stream of queue changes and live counters.

use std::{collections::VecDeque, sync::Arc};

use async_graphql::{Context, ID, Object, Result, Subscription};
use futures_util::{Stream, StreamExt, stream};

use super::{
    context::session,
    paging::numeric_id,
    queue::{QueueStatus, QueuedWebhook},
    webhook::WebhookHealth,
};
use crate::{
    auth::Scope,
    error::{AppError, AppResult},
    queue::{HealthChange, QueueChange, QueueStats, Watch},
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
    /// in any process; of one webhook, or of every webhook the caller sees. A subscriber that
    /// falls behind is sent every state it watches as it is now (those of webhooks whose breaker
    /// ever opened), then the changes that follow.
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
        let queue = s.state.queue.clone();
        let scope = Arc::new(scope);
        let watched = move |change: &HealthChange| {
            webhook_id.is_none_or(|id| id == change.webhook_id)
                && scope.as_ref().as_ref().is_none_or(|scope| scope.contains(&change.entity_id))
        };
        let current = move || {
            let queue = queue.clone();
            async move { queue.current_health(webhook_id).await }
        };
        // The slots are held for as long as the stream lives.
        Ok(health_changes(receiver, watched, current).map(move |change| {
            let _held = &slots;
            WebhookHealth(change.health())
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

/// The breaker changes one subscriber watches, from the broadcast every process's changes reach.
/// One that falls behind (the broadcast dropped changes it had not read) is told every state it
/// watches as it is now, read by `current`, then the changes that follow: it never keeps a
/// state that changed while it lagged. A subscriber whose states cannot be read then ends.
fn health_changes<W, C, F>(
    receiver: tokio::sync::broadcast::Receiver<Arc<HealthChange>>,
    watched: W,
    current: C,
) -> impl Stream<Item = HealthChange>
where
    W: Fn(&HealthChange) -> bool + Clone,
    C: Fn() -> F + Clone,
    F: std::future::Future<Output = AppResult<Vec<HealthChange>>>,
{
    let state = (receiver, VecDeque::<HealthChange>::new());
    stream::unfold(state, move |(mut receiver, mut pending)| {
        let (watched, current) = (watched.clone(), current.clone());
        async move {
            loop {
                if let Some(change) = pending.pop_front() {
                    return Some((change, (receiver, pending)));
                }
                let change = match receiver.recv().await {
                    Ok(change) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        // What is still buffered predates the read below, which covers it: sent
                        // after the states as they are now, it would bring back older ones.
                        drain(&mut receiver);
                        match current().await {
                            Ok(now) => {
                                pending.extend(now.into_iter().filter(|c| watched(c)));
                                continue;
                            }
                            Err(err) => {
                                tracing::warn!(
                                    ?err,
                                    missed,
                                    "a health subscriber fell behind and its states cannot be read"
                                );
                                return None;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                if watched(&change) {
                    return Some((HealthChange::clone(&change), (receiver, pending)));
                }
            }
        }
    })
}

/// Drops every change the receiver still holds.
fn drain<T: Clone>(receiver: &mut tokio::sync::broadcast::Receiver<T>) {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match receiver.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(webhook_id: i64, state: &str) -> HealthChange {
        HealthChange {
            webhook_id,
            entity_id: 0,
            state: state.into(),
            consecutive_failures: 0,
            opened_at: None,
            next_probe_at: None,
        }
    }

    #[tokio::test]
    async fn a_health_subscriber_that_falls_behind_is_told_every_state_as_it_is_now() {
        let (sender, receiver) = tokio::sync::broadcast::channel(2);
        // Webhook 1 opens and closes again, webhook 2 opens, webhook 3 opens and is not watched:
        // more changes than the broadcast keeps for a subscriber that has not read.
        for (id, state) in [(1, "open"), (2, "open"), (1, "closed"), (3, "open"), (2, "open")] {
            sender.send(Arc::new(change(id, state))).expect("a receiver");
        }
        let now = vec![change(1, "closed"), change(2, "open"), change(3, "open")];
        let current = move || {
            let now = now.clone();
            async move { Ok(now) }
        };
        let stream = health_changes(receiver, |c: &HealthChange| c.webhook_id != 3, current);
        futures_util::pin_mut!(stream);
        let told = stream.by_ref().take(2).map(|c| (c.webhook_id, c.state)).collect::<Vec<_>>();
        let told = tokio::time::timeout(std::time::Duration::from_secs(5), told).await.expect("two states told");
        assert_eq!(told, vec![(1, "closed".to_owned()), (2, "open".to_owned())], "the states as they are now");
        // Then the changes that follow, as they come.
        sender.send(Arc::new(change(2, "closed"))).expect("a receiver");
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await;
        let next = next.expect("a change in time").expect("a change");
        assert_eq!((next.webhook_id, next.state.as_str()), (2, "closed"));
    }

    #[tokio::test]
    async fn a_health_subscriber_that_keeps_up_gets_each_watched_change_once() {
        let (sender, receiver) = tokio::sync::broadcast::channel(8);
        for (id, state) in [(1, "open"), (3, "open"), (1, "half_open")] {
            sender.send(Arc::new(change(id, state))).expect("a receiver");
        }
        let current = || async { Err::<Vec<HealthChange>, _>(AppError::internal("not read when nothing was missed")) };
        let stream = health_changes(receiver, |c: &HealthChange| c.webhook_id == 1, current);
        futures_util::pin_mut!(stream);
        let told: Vec<String> = stream.by_ref().take(2).map(|c| c.state).collect().await;
        assert_eq!(told, vec!["open".to_owned(), "half_open".to_owned()]);
    }
}
