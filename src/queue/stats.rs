//! The queue's counters, as the `queueStats` query and subscription give them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::queued_webhooks::{self, QueueStatus};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter, QuerySelect, Select,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use tokio::sync::watch;

use super::live::{QueueBus, Watch};
use crate::error::AppResult;

/// The queue's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, async_graphql::SimpleObject)]
pub struct QueueStats {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub retrying: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Age of the oldest PENDING queued webhook; null when none is pending.
    pub oldest_pending_age_seconds: Option<f64>,
    /// SENT queued webhooks whose last attempt was in the last minute.
    pub sent_last_minute: i64,
}

impl QueueStats {
    /// The rows of one status.
    pub fn count(&self, status: QueueStatus) -> i64 {
        match status {
            QueueStatus::Pending => self.pending,
            QueueStatus::Sending => self.sending,
            QueueStatus::Sent => self.sent,
            QueueStatus::Retrying => self.retrying,
            QueueStatus::Failed => self.failed,
            QueueStatus::Cancelled => self.cancelled,
        }
    }

    pub(super) fn set_count(&mut self, status: QueueStatus, count: i64) {
        match status {
            QueueStatus::Pending => self.pending = count,
            QueueStatus::Sending => self.sending = count,
            QueueStatus::Sent => self.sent = count,
            QueueStatus::Retrying => self.retrying = count,
            QueueStatus::Failed => self.failed = count,
            QueueStatus::Cancelled => self.cancelled = count,
        }
    }
}

#[derive(FromQueryResult)]
struct StatusCount {
    status: QueueStatus,
    count: i64,
}

#[derive(FromQueryResult)]
struct Oldest {
    oldest: Option<DateTime<Utc>>,
}

#[derive(FromQueryResult)]
struct Count {
    count: i64,
}

/// The counters of one webhook's rows (all with None), of the `within` entities when given.
pub async fn stats(
    conn: &impl ConnectionTrait,
    webhook_id: Option<i64>,
    within: Option<&[i64]>,
) -> AppResult<QueueStats> {
    let scoped = || {
        let mut query = queued_webhooks::Entity::find();
        if let Some(id) = webhook_id {
            query = query.filter(queued_webhooks::Column::WebhookId.eq(id));
        }
        if let Some(within) = within {
            query = query.filter(queued_webhooks::Column::EntityId.is_in(within.iter().copied()));
        }
        query
    };
    let mut stats = counts(conn, scoped()).await?;
    let now = Utc::now();
    let oldest = scoped()
        .filter(due_at().is_not_null())
        .filter(queued_webhooks::Column::Status.eq(QueueStatus::Pending))
        .select_only()
        .column_as(Expr::col(queued_webhooks::Column::CreateTime).min(), "oldest")
        .into_model::<Oldest>()
        .one(conn)
        .await?;
    stats.oldest_pending_age_seconds =
        oldest.and_then(|o| o.oldest).map(|t| std::cmp::max((now - t).num_milliseconds(), 0) as f64 / 1000.0);
    let sent = scoped()
        .filter(queued_webhooks::Column::Status.eq(QueueStatus::Sent))
        .filter(queued_webhooks::Column::SentTime.gte(now - chrono::Duration::seconds(60)))
        .select_only()
        .column_as(Expr::col(queued_webhooks::Column::Id).count(), "count")
        .into_model::<Count>()
        .one(conn)
        .await?;
    stats.sent_last_minute = sent.map_or(0, |c| c.count);
    Ok(stats)
}

/// The rows of each status among those `query` selects (the other counters left at 0).
async fn counts(conn: &impl ConnectionTrait, query: Select<queued_webhooks::Entity>) -> AppResult<QueueStats> {
    let counts = query
        .select_only()
        .column(queued_webhooks::Column::Status)
        .column_as(Expr::col(queued_webhooks::Column::Id).count(), "count")
        .group_by(queued_webhooks::Column::Status)
        .into_model::<StatusCount>()
        .all(conn)
        .await?;
    let mut stats = QueueStats::default();
    for StatusCount { status, count } in counts {
        stats.set_count(status, count);
    }
    Ok(stats)
}

/// What `GET /metrics` reads at each scrape: the rows of each status (of every webhook), and
/// how long the oldest due row (pending or retrying, its send time past) has been due.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub rows: QueueStats,
    pub oldest_due_age: Option<Duration>,
}

impl Figures {
    pub fn rows(&self, status: QueueStatus) -> i64 {
        self.rows.count(status)
    }
}

/// The send time of a `pending` or `retrying` row, null for the others: a column the database
/// computes (not in the entity, which writes every column it has), and indexed.
fn due_at() -> Expr {
    Expr::col(sea_orm::sea_query::Alias::new("due_at"))
}

#[derive(FromQueryResult)]
struct Due {
    due: Option<DateTime<Utc>>,
}

/// The queue's figures now: one count by status, and the smallest send time of a due row
/// (read from the start of the index of `due_at`, the send time of a `pending` or `retrying`
/// row).
pub async fn figures(conn: &impl ConnectionTrait) -> AppResult<Figures> {
    let rows = counts(conn, queued_webhooks::Entity::find()).await?;
    let now = Utc::now();
    let oldest = queued_webhooks::Entity::find()
        .filter(due_at().lte(now))
        .select_only()
        .column_as(due_at().min(), "due")
        .into_model::<Due>()
        .one(conn)
        .await?
        .and_then(|d| d.due);
    let oldest_due_age = oldest.map(|t| (now - t).to_std().unwrap_or_default());
    Ok(Figures { rows, oldest_due_age })
}

/// What one set of live counters counts: one webhook's rows (all with None), of some entities
/// (all with None: a caller whose scope is every entity).
pub type StatsKey = (Option<i64>, Option<Arc<[i64]>>);

/// Live counters shared by every subscriber of the same webhook and scope: computed at most
/// once per throttle interval after a change, whatever the number of subscribers.
pub struct StatsHub {
    db: DatabaseConnection,
    bus: Arc<QueueBus>,
    throttle: Duration,
    hubs: Mutex<HashMap<StatsKey, watch::Receiver<Option<QueueStats>>>>,
}

impl std::fmt::Debug for StatsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsHub").field("throttle", &self.throttle).finish_non_exhaustive()
    }
}

impl StatsHub {
    pub fn new(db: DatabaseConnection, bus: Arc<QueueBus>, throttle: Duration) -> Self {
        Self { db, bus, throttle, hubs: Mutex::new(HashMap::new()) }
    }

    /// A receiver of the counters of `webhook_id` (all webhooks with None), of the `within`
    /// entities (all with None).
    pub fn watch(self: &Arc<Self>, key: StatsKey) -> watch::Receiver<Option<QueueStats>> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = hubs.get(&key)
            && rx.has_changed().is_ok()
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        hubs.insert(key.clone(), rx.clone());
        tokio::spawn(self.clone().compute(key, tx));
        rx
    }

    /// Recomputes after changes (at most once per throttle interval) and every few seconds
    /// (ages and the last minute move on their own); stops when nobody watches.
    async fn compute(self: Arc<Self>, key: StatsKey, tx: watch::Sender<Option<QueueStats>>) {
        let (webhook_id, within) = key.clone();
        let watch =
            Watch { entities: within.as_ref().map(|ids| ids.iter().copied().collect()), ..Watch::webhook(webhook_id) };
        let mut subscription = self.bus.subscribe_unmetered(watch);
        let mut dirty = true;
        let mut refresh = tokio::time::interval(Duration::from_secs(5));
        loop {
            if dirty {
                match stats(&self.db, webhook_id, within.as_deref()).await {
                    Ok(stats) => {
                        tx.send_if_modified(|current| {
                            let changed = current.as_ref() != Some(&stats);
                            *current = Some(stats);
                            changed
                        });
                    }
                    Err(err) => tracing::warn!(?err, "cannot compute queue stats"),
                }
                tokio::time::sleep(self.throttle).await;
            }
            if tx.receiver_count() <= 1 {
                // Only the hub's own receiver is left.
                self.hubs.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                return;
            }
            tokio::select! {
                change = subscription.changes.recv() => match change {
                    Some(_) => dirty = true,
                    None => return,
                },
                _ = refresh.tick() => dirty = true,
            }
            // A burst is one recomputation: drop what else is waiting.
            while subscription.changes.try_recv().is_ok() {}
            subscription.take_missed();
        }
    }
}
