//! Live queue changes: every status change of a queued webhook is published on a bounded
//! broadcast that subscriptions read. On PostgreSQL the changes travel through NOTIFY, so a
//! subscriber of one process sees the sends of every process.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use entity::queued_webhooks::{self, QueueStatus};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{health::HealthChange, transition::Transition};
use crate::metrics::SubscriptionMessages;

/// The PostgreSQL channel queue changes travel on.
pub const CHANGES_CHANNEL: &str = "hookline_queue_changes";
/// The PostgreSQL channel changes of webhooks' breaker states travel on.
pub const HEALTH_CHANNEL: &str = "hookline_webhook_health";
/// Breaker changes kept for a slow `webhookHealthUpdates` subscriber (they are rare).
const HEALTH_BUFFER: usize = 256;
/// The PostgreSQL channel on which a process with subscribers says so (at once and every
/// two seconds), so that processes publish changes only while someone listens.
pub const SUBSCRIBERS_CHANNEL: &str = "hookline_subscribers";
/// How long a process keeps publishing after it last heard of a remote subscriber.
const REMOTE_SUBSCRIBERS_TTL: std::time::Duration = std::time::Duration::from_secs(6);
/// Most bytes of one NOTIFY payload (PostgreSQL's limit is 8000).
const MAX_PAYLOAD: usize = 7000;
/// Batches of changes waiting for the dispatcher before new ones are dropped (and counted).
const HANDOFF_BATCHES: usize = 4096;
/// The messages a metered subscriber may always receive at once, whatever its share.
const MIN_BURST: f64 = 16.0;

/// One status change. The row carries no body, headers or response body (they are read from
/// the database when a subscriber asks for them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueChange {
    pub row: queued_webhooks::Model,
    pub previous_status: Option<QueueStatus>,
}

impl From<&Transition> for QueueChange {
    fn from(transition: &Transition) -> Self {
        Self { row: published(&transition.row), previous_status: transition.from }
    }
}

/// The row as a change carries it: without its body, headers, response body and changes (copied
/// field by field, so that the payload is never copied only to be dropped).
pub fn published(row: &queued_webhooks::Model) -> queued_webhooks::Model {
    let queued_webhooks::Model {
        id,
        webhook_id,
        itemtype,
        item_id,
        entity_id,
        event,
        url,
        http_method,
        headers: _,
        body: _,
        status,
        sent_try,
        max_attempts,
        delivery_id,
        create_time,
        send_time,
        sent_time,
        last_status_code,
        response_body: _,
        last_error,
        save_response_body,
        log_in_item_history,
        lease_until,
        claim_token,
        claimed_by,
        traceparent,
        is_test,
        order_key,
        changes: _,
    } = row;
    queued_webhooks::Model {
        id: *id,
        webhook_id: *webhook_id,
        itemtype: itemtype.clone(),
        item_id: item_id.clone(),
        entity_id: *entity_id,
        event: event.clone(),
        url: url.clone(),
        http_method: http_method.clone(),
        headers: serde_json::Value::Object(Default::default()),
        body: None,
        status: *status,
        sent_try: *sent_try,
        max_attempts: *max_attempts,
        delivery_id: delivery_id.clone(),
        create_time: *create_time,
        send_time: *send_time,
        sent_time: *sent_time,
        last_status_code: *last_status_code,
        response_body: None,
        last_error: last_error.clone(),
        save_response_body: *save_response_body,
        log_in_item_history: *log_in_item_history,
        lease_until: *lease_until,
        claim_token: *claim_token,
        claimed_by: claimed_by.clone(),
        traceparent: traceparent.clone(),
        is_test: *is_test,
        order_key: order_key.clone(),
        changes: None,
    }
}

/// One subscriber's end: its changes, and how many it missed because it fell behind.
pub struct Subscription {
    pub changes: mpsc::Receiver<Arc<QueueChange>>,
    missed: Arc<AtomicU64>,
}

impl Subscription {
    /// How many changes were dropped for this subscriber since the last call.
    pub fn take_missed(&self) -> u64 {
        self.missed.swap(0, Ordering::Relaxed)
    }
}

/// Which changes a subscriber wants; the parts combine.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub webhook_id: Option<i64>,
    /// The entities whose queued webhooks count (an entity and its children).
    pub entities: Option<std::collections::HashSet<i64>>,
    /// Only changes to this status.
    pub status: Option<QueueStatus>,
}

impl Watch {
    pub fn webhook(webhook_id: Option<i64>) -> Self {
        Self { webhook_id, ..Self::default() }
    }

    fn wants(&self, row: &queued_webhooks::Model) -> bool {
        self.webhook_id.is_none_or(|id| id == row.webhook_id)
            && self.entities.as_ref().is_none_or(|set| set.contains(&row.entity_id))
            && self.status.is_none_or(|s| s == row.status)
    }
}

struct Subscriber {
    watch: Watch,
    tx: mpsc::Sender<Arc<QueueChange>>,
    missed: Arc<AtomicU64>,
    /// Messages this subscriber may still be sent now (None: not metered).
    tokens: Option<f64>,
}

/// The local subscribers, and when their tokens were last refilled.
struct Subscribers {
    list: Vec<Subscriber>,
    refilled: std::time::Instant,
    /// What happened to the messages meant for metered (`queueUpdates`) subscribers.
    messages: SubscriptionMessages,
}

impl Subscribers {
    /// Refills every metered subscriber's tokens for the time since the last refill.
    fn refill(&mut self, rate: f64) {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let metered = self.list.iter().filter(|s| s.tokens.is_some()).count().max(1) as f64;
        let share = rate / metered;
        let burst = share.max(MIN_BURST);
        for tokens in self.list.iter_mut().filter_map(|s| s.tokens.as_mut()) {
            *tokens = (*tokens + share * elapsed).min(burst);
        }
    }

    fn hand_over(&mut self, change: Arc<QueueChange>) {
        let (mut sent, mut missed) = (0, 0);
        self.list.retain_mut(|subscriber| {
            if !subscriber.watch.wants(&change.row) {
                return !subscriber.tx.is_closed();
            }
            let metered = u64::from(subscriber.tokens.is_some());
            if let Some(tokens) = subscriber.tokens.as_mut() {
                if *tokens < 1.0 {
                    subscriber.missed.fetch_add(1, Ordering::Relaxed);
                    missed += metered;
                    return !subscriber.tx.is_closed();
                }
                *tokens -= 1.0;
            }
            match subscriber.tx.try_send(change.clone()) {
                Ok(()) => {
                    sent += metered;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.missed.fetch_add(1, Ordering::Relaxed);
                    missed += metered;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.count(sent, missed);
    }

    fn count(&self, sent: u64, missed: u64) {
        if sent > 0 {
            self.messages.sent.increment(sent);
        }
        if missed > 0 {
            self.messages.missed.increment(missed);
        }
    }
}

/// Where queue changes are published and read. Each subscriber has its own bounded buffer and
/// only receives the changes of the webhook it watches, so a slow subscriber never slows the
/// workers or the others: when its buffer is full, its changes are dropped and counted.
///
/// Subscribers together never get more than `rate` messages a second, shared evenly (each has
/// a token bucket refilled at `rate / subscribers`, holding at most a second of its share, and
/// at least [`MIN_BURST`]): every message costs a GraphQL execution and a WebSocket frame, and
/// deliveries must not starve however many dashboards watch. A change beyond its share is
/// missed, and counted like the changes a full buffer drops.
pub struct QueueBus {
    subscribers: Arc<Mutex<Subscribers>>,
    /// Changes on their way to the dispatcher, which alone walks the subscribers: whoever
    /// publishes (a worker recording outcomes, the writer) only hands a batch over.
    handoff: mpsc::Sender<Vec<QueueChange>>,
    /// Changes dropped because the dispatcher fell behind by [`HANDOFF_BATCHES`] batches;
    /// every subscriber is told at its next change.
    overflow: Arc<AtomicU64>,
    capacity: usize,
    /// When another process last said it has subscribers.
    remote_seen: Mutex<Option<std::time::Instant>>,
    /// This process's name in those announcements (its own are not another's).
    pub process_id: String,
    /// Wakes the announcer when the first subscriber arrives.
    pub announce: tokio::sync::Notify,
    /// Breaker state changes, to `webhookHealthUpdates` subscribers.
    health: tokio::sync::broadcast::Sender<Arc<HealthChange>>,
}

impl std::fmt::Debug for QueueBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueBus").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl QueueBus {
    /// `capacity` changes kept per subscriber; `rate` messages a second over all subscribers;
    /// `messages` counts what became of the messages of `queueUpdates` subscribers. Starts the
    /// dispatcher task (call it inside the runtime); it ends with the bus.
    pub fn new(capacity: usize, rate: u32, messages: SubscriptionMessages) -> Self {
        let subscribers =
            Arc::new(Mutex::new(Subscribers { list: Vec::new(), refilled: std::time::Instant::now(), messages }));
        let (handoff, batches) = mpsc::channel(HANDOFF_BATCHES);
        let overflow = Arc::new(AtomicU64::new(0));
        let rate = f64::from(Ord::max(rate, 1));
        tokio::spawn(dispatch(batches, subscribers.clone(), overflow.clone(), rate));
        Self {
            subscribers,
            handoff,
            overflow,
            capacity: capacity.max(1),
            remote_seen: Mutex::new(None),
            process_id: uuid::Uuid::new_v4().simple().to_string(),
            announce: tokio::sync::Notify::new(),
            health: tokio::sync::broadcast::channel(HEALTH_BUFFER).0,
        }
    }

    /// Subscribes to the breaker state changes of every webhook (of every process).
    pub fn subscribe_health(&self) -> tokio::sync::broadcast::Receiver<Arc<HealthChange>> {
        self.health.subscribe()
    }

    /// Hands breaker changes to this process's subscribers.
    pub(super) fn deliver_health_local(&self, changes: impl IntoIterator<Item = HealthChange>) {
        for change in changes {
            // No receiver: nobody is watching.
            let _ = self.health.send(Arc::new(change));
        }
    }

    /// Publishes breaker changes through NOTIFY, sent when `db`'s transaction commits (every
    /// process, this one included, hands them to its subscribers). PostgreSQL only.
    /// Fails when PostgreSQL refused a notification: that aborts the transaction it was sent
    /// in (see `Publisher::before_commit`).
    pub(super) async fn publish_health(
        &self,
        db: &impl ConnectionTrait,
        changes: &[HealthChange],
    ) -> Result<(), sea_orm::DbErr> {
        for change in changes {
            let Ok(payload) = serde_json::to_string(change) else { continue };
            if payload.len() > MAX_PAYLOAD {
                tracing::warn!(bytes = payload.len(), "a webhook health change is too large to publish; skipped");
                continue;
            }
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [HEALTH_CHANNEL.into(), payload.into()],
            );
            db.execute_raw(statement).await?;
        }
        Ok(())
    }

    /// Subscribes to the changes of one webhook, or of all, within the shared message rate.
    pub fn subscribe(&self, watch: Watch) -> Subscription {
        self.add(watch, Some(MIN_BURST))
    }

    /// Subscribes without a share of the message rate: for the process's own watchers, such
    /// as the stats hub, that send no message per change.
    pub fn subscribe_unmetered(&self, watch: Watch) -> Subscription {
        self.add(watch, None)
    }

    fn add(&self, watch: Watch, tokens: Option<f64>) -> Subscription {
        let (tx, changes) = mpsc::channel(self.capacity);
        let missed = Arc::new(AtomicU64::new(0));
        self.lock().list.push(Subscriber { watch, tx, missed: missed.clone(), tokens });
        self.announce.notify_one();
        Subscription { changes, missed }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_subscribers(&self) -> bool {
        let list = &mut self.lock().list;
        list.retain(|s| !s.tx.is_closed());
        !list.is_empty()
    }

    /// Another process has subscribers.
    pub fn remote_subscribers_seen(&self) {
        *self.remote_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// Whether changes need to be published at all: a subscriber here, or (on PostgreSQL) one
    /// in another process lately.
    pub fn wanted(&self, db: &impl ConnectionTrait) -> bool {
        if self.has_subscribers() {
            return true;
        }
        db.get_database_backend() == DbBackend::Postgres
            && self
                .remote_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() < REMOTE_SUBSCRIBERS_TTL)
    }

    /// On PostgreSQL, tells the other processes while this one has subscribers.
    pub async fn announce_subscribers(&self, db: DatabaseConnection, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if self.has_subscribers() {
                let statement = Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_notify($1, $2)",
                    [SUBSCRIBERS_CHANNEL.into(), self.process_id.clone().into()],
                );
                if let Err(err) = db.execute_raw(statement).await {
                    tracing::warn!(%err, "cannot announce subscribers");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.announce.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Hands changes to the local subscribers that watch their webhooks, through the
    /// dispatcher: this never waits and never walks the subscribers.
    pub(super) fn deliver_local(&self, changes: impl IntoIterator<Item = QueueChange>) {
        let batch: Vec<QueueChange> = changes.into_iter().collect();
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        if self.handoff.try_send(batch).is_err() {
            self.overflow.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Publishes changes: to this process's subscribers on SQLite (call it after the commit),
    /// through NOTIFY on PostgreSQL, sent when `db`'s transaction commits: every process, this
    /// one included, receives them from its listener, all in one order.
    /// Fails when PostgreSQL refused a notification: that aborts the transaction it was sent
    /// in (see `Publisher::before_commit`). A change too large for one notification (a long
    /// rendered URL or error) is left out, said in the log.
    pub(super) async fn publish(
        &self,
        db: &impl ConnectionTrait,
        changes: Vec<QueueChange>,
    ) -> Result<(), sea_orm::DbErr> {
        if changes.is_empty() || !self.wanted(db) {
            return Ok(());
        }
        if db.get_database_backend() != DbBackend::Postgres {
            self.deliver_local(changes);
            return Ok(());
        }
        let mut batch = Vec::new();
        let mut size = 2;
        for change in changes {
            let Ok(text) = serde_json::to_string(&change) else { continue };
            if text.len() + 2 > MAX_PAYLOAD {
                tracing::warn!(
                    id = change.row.id,
                    bytes = text.len(),
                    "a queue change is too large to publish; skipped"
                );
                continue;
            }
            if size + text.len() + 1 > MAX_PAYLOAD && !batch.is_empty() {
                notify(db, &batch).await?;
                batch.clear();
                size = 2;
            }
            size += text.len() + 1;
            batch.push(text);
        }
        notify(db, &batch).await
    }
}

async fn notify(db: &impl ConnectionTrait, batch: &[String]) -> Result<(), sea_orm::DbErr> {
    if batch.is_empty() {
        return Ok(());
    }
    let payload = format!("[{}]", batch.join(","));
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANGES_CHANNEL.into(), payload.into()],
    );
    db.execute_raw(statement).await.map(|_| ())
}

/// The dispatcher: walks the subscribers for each batch of changes, off the path of whoever
/// published them.
async fn dispatch(
    mut batches: mpsc::Receiver<Vec<QueueChange>>,
    subscribers: Arc<Mutex<Subscribers>>,
    overflow: Arc<AtomicU64>,
    rate: f64,
) {
    while let Some(batch) = batches.recv().await {
        let mut subscribers = subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = overflow.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            for subscriber in &subscribers.list {
                subscriber.missed.fetch_add(dropped, Ordering::Relaxed);
            }
            let metered = subscribers.list.iter().filter(|s| s.tokens.is_some()).count() as u64;
            subscribers.count(0, dropped * metered);
        }
        subscribers.refill(rate);
        for change in batch {
            subscribers.hand_over(Arc::new(change));
        }
    }
}

/// Decodes a NOTIFY payload into changes.
fn decode(payload: &str) -> Vec<QueueChange> {
    serde_json::from_str(payload).unwrap_or_default()
}

/// On PostgreSQL: wakes this process's workers when any process queues rows, hands the
/// changes every process publishes to this process's subscribers, and notes other processes'
/// subscribers. A lost connection is opened again (every few seconds while the server cannot
/// be reached); what was notified in between is gone, so the workers look for due rows at once
/// after each reconnection instead of waiting for their next poll.
pub(super) async fn listen(
    db: DatabaseConnection,
    publisher: Arc<super::Publisher>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use sea_orm::sqlx::postgres::PgListener;
    let pool = db.get_postgres_connection_pool().clone();
    let bus = publisher.bus.clone();
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(%err, "cannot LISTEN for queued deliveries; polling only");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let channels = [super::store::QUEUE_CHANNEL, CHANGES_CHANNEL, SUBSCRIBERS_CHANNEL, HEALTH_CHANNEL];
        if let Err(err) = listener.listen_all(channels).await {
            tracing::warn!(%err, "cannot LISTEN for queued deliveries");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        // Rows queued while the listener was away.
        publisher.wake_workers();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = listener.try_recv() => match next {
                    Ok(Some(notification)) if notification.channel() == SUBSCRIBERS_CHANNEL => {
                        if notification.payload() != bus.process_id {
                            bus.remote_subscribers_seen();
                        }
                    }
                    Ok(Some(notification)) if notification.channel() == CHANGES_CHANNEL => {
                        bus.deliver_local(decode(notification.payload()));
                    }
                    Ok(Some(notification)) if notification.channel() == HEALTH_CHANNEL => {
                        bus.deliver_health_local(serde_json::from_str::<HealthChange>(notification.payload()).ok());
                        // A breaker closed or a probe went back: its rows may be due.
                        publisher.wake_workers();
                    }
                    Ok(Some(_)) => publisher.wake_workers(),
                    // The connection dropped and the listener opened and subscribed a new one.
                    Ok(None) => {
                        tracing::warn!("lost the LISTEN connection; listening again");
                        publisher.wake_workers();
                    }
                    Err(err) => {
                        tracing::warn!(%err, "lost the LISTEN connection; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
