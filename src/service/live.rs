//! Live queue changes: every status change of a queued webhook is published on a bounded
//! broadcast that subscriptions read. On PostgreSQL the changes travel through NOTIFY, so a
//! subscriber of one process sees the sends of every process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::queued_webhooks::{self, status};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, Statement,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::error::AppResult;

/// The PostgreSQL channel queue changes travel on.
pub const CHANGES_CHANNEL: &str = "hookline_queue_changes";
/// Most bytes of one NOTIFY payload (PostgreSQL's limit is 8000).
const MAX_PAYLOAD: usize = 7000;

/// One status change. The row carries no body, headers or response body (they are read from
/// the database when a subscriber asks for them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueChange {
    pub row: queued_webhooks::Model,
    pub previous_status: Option<String>,
}

impl QueueChange {
    pub fn new(mut row: queued_webhooks::Model, previous_status: Option<&str>) -> Self {
        row.body = None;
        row.response_body = None;
        row.headers = serde_json::Value::Object(Default::default());
        Self { row, previous_status: previous_status.map(str::to_owned) }
    }
}

/// Where queue changes are published and read.
#[derive(Debug)]
pub struct QueueBus {
    tx: broadcast::Sender<Arc<QueueChange>>,
}

impl QueueBus {
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<QueueChange>> {
        self.tx.subscribe()
    }

    /// Hands changes to the local subscribers.
    pub fn deliver_local(&self, change: QueueChange) {
        // No subscriber is not an error.
        let _ = self.tx.send(Arc::new(change));
    }

    /// Publishes committed changes: locally on SQLite, through NOTIFY on PostgreSQL (every
    /// process, this one included, receives them from its listener).
    pub async fn publish(&self, db: &DatabaseConnection, changes: Vec<QueueChange>) {
        if changes.is_empty() || self.tx.receiver_count() == 0 && db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        if db.get_database_backend() != DbBackend::Postgres {
            for change in changes {
                self.deliver_local(change);
            }
            return;
        }
        let mut batch = Vec::new();
        let mut size = 2;
        for change in changes {
            let Ok(text) = serde_json::to_string(&change) else { continue };
            if size + text.len() + 1 > MAX_PAYLOAD && !batch.is_empty() {
                notify(db, &batch).await;
                batch.clear();
                size = 2;
            }
            size += text.len() + 1;
            batch.push(text);
        }
        notify(db, &batch).await;
    }
}

async fn notify(db: &DatabaseConnection, batch: &[String]) {
    if batch.is_empty() {
        return;
    }
    let payload = format!("[{}]", batch.join(","));
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANGES_CHANNEL.into(), payload.into()],
    );
    if let Err(err) = db.execute_raw(statement).await {
        tracing::warn!(%err, "cannot publish queue changes");
    }
}

/// Decodes a NOTIFY payload into changes.
pub fn decode(payload: &str) -> Vec<QueueChange> {
    serde_json::from_str(payload).unwrap_or_default()
}

/// The queue's counters, for one webhook or all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub retrying: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub sent_last_minute: i64,
}

#[derive(FromQueryResult)]
struct StatusCount {
    status: String,
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

pub async fn stats(conn: &impl ConnectionTrait, webhook_id: Option<i64>) -> AppResult<QueueStats> {
    let scoped = || {
        let query = queued_webhooks::Entity::find();
        match webhook_id {
            Some(id) => query.filter(queued_webhooks::Column::WebhookId.eq(id)),
            None => query,
        }
    };
    let counts = scoped()
        .select_only()
        .column(queued_webhooks::Column::Status)
        .column_as(Expr::col(queued_webhooks::Column::Id).count(), "count")
        .group_by(queued_webhooks::Column::Status)
        .into_model::<StatusCount>()
        .all(conn)
        .await?;
    let mut stats = QueueStats::default();
    for StatusCount { status: s, count } in counts {
        match s.as_str() {
            status::PENDING => stats.pending = count,
            status::SENDING => stats.sending = count,
            status::SENT => stats.sent = count,
            status::RETRYING => stats.retrying = count,
            status::FAILED => stats.failed = count,
            status::CANCELLED => stats.cancelled = count,
            _ => {}
        }
    }
    let now = Utc::now();
    let oldest = scoped()
        .filter(queued_webhooks::Column::Status.eq(status::PENDING))
        .select_only()
        .column_as(Expr::col(queued_webhooks::Column::CreateTime).min(), "oldest")
        .into_model::<Oldest>()
        .one(conn)
        .await?;
    stats.oldest_pending_age_seconds =
        oldest.and_then(|o| o.oldest).map(|t| std::cmp::max((now - t).num_milliseconds(), 0) as f64 / 1000.0);
    let sent = scoped()
        .filter(queued_webhooks::Column::Status.eq(status::SENT))
        .filter(queued_webhooks::Column::SentTime.gte(now - chrono::Duration::seconds(60)))
        .select_only()
        .column_as(Expr::col(queued_webhooks::Column::Id).count(), "count")
        .into_model::<Count>()
        .one(conn)
        .await?;
    stats.sent_last_minute = sent.map_or(0, |c| c.count);
    Ok(stats)
}

/// Live counters shared by every subscriber of the same webhook (or of all): computed at most
/// once per throttle interval after a change, whatever the number of subscribers.
pub struct StatsHub {
    db: DatabaseConnection,
    bus: Arc<QueueBus>,
    throttle: Duration,
    hubs: Mutex<HashMap<Option<i64>, watch::Receiver<Option<QueueStats>>>>,
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

    /// A receiver of the counters of `webhook_id` (all webhooks with None).
    pub fn watch(self: &Arc<Self>, webhook_id: Option<i64>) -> watch::Receiver<Option<QueueStats>> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = hubs.get(&webhook_id)
            && rx.has_changed().is_ok()
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        hubs.insert(webhook_id, rx.clone());
        tokio::spawn(self.clone().compute(webhook_id, tx));
        rx
    }

    /// Recomputes after changes (at most once per throttle interval) and every few seconds
    /// (ages and the last minute move on their own); stops when nobody watches.
    async fn compute(self: Arc<Self>, webhook_id: Option<i64>, tx: watch::Sender<Option<QueueStats>>) {
        let mut changes = self.bus.subscribe();
        let mut dirty = true;
        let mut refresh = tokio::time::interval(Duration::from_secs(5));
        loop {
            if dirty {
                match stats(&self.db, webhook_id).await {
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
                self.hubs.lock().unwrap_or_else(|p| p.into_inner()).remove(&webhook_id);
                return;
            }
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => dirty = webhook_id.is_none_or(|id| change.row.webhook_id == id),
                    Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = refresh.tick() => dirty = true,
            }
        }
    }
}
