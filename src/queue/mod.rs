//! The delivery queue's one owner. It enqueues (inside the caller's item transaction), claims,
//! records outcomes, forces, resends, cancels, releases and cleans; every operation returns
//! or stages the transitions it made, computed by [`transition::next`]; it alone publishes
//! them to subscribers and wakes the workers. The rows the API shows are the rows the workers
//! claim (DESIGN rule 2).

pub mod attempts;
mod forced;
pub mod health;
pub mod live;
mod outcome;
pub mod recent;
mod replay;
pub mod stats;
pub mod store;
pub mod transition;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use entity::queued_webhooks::{self, Column as Q, Model, QueueStatus};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use attempts::AttemptRecord;
pub use forced::ForcedSend;
pub use health::HealthChange;
pub use live::{QueueBus, QueueChange, Subscription, Watch};
pub use outcome::Outcome;
pub use replay::{MAX_REPLAY, ReplayWindow};
pub use stats::{QueueStats, StatsHub};
pub use transition::{Step, Transition};

use crate::{
    domain::breaker::BreakerConfig,
    error::{AppError, AppResult},
    metrics::Metrics,
    service::{
        paging::{Page, PageRequest},
        tree::EntityIndex,
    },
    writer::Writer,
};
use store::{Abandoned, Claim};

/// Rows one write of a bulk operation changes at most: of each kind for a cleanup
/// ([`Queue::clean`]), in all for a resend of failed rows ([`Queue::resend_failed`]).
pub const ROWS_PER_BULK_WRITE: u64 = 1000;

/// What a write job changed in the queue, published once its batch has committed.
#[derive(Debug, Default)]
pub struct Staged {
    /// The changes subscribers are told (none kept while nobody listens, see [`Staged::unheard`]).
    transitions: Vec<Transition>,
    /// Nobody listened when the batch began: changes are counted, not copied for subscribers.
    unheard: bool,
    /// Rows queued (counted whether or not their changes are kept).
    queued: usize,
    /// Rows became due: the workers should look.
    wake: bool,
    /// The writer's batch number.
    batch: u64,
    /// The counters of the events raised, incremented once the batch commits.
    events: Vec<::metrics::Counter>,
    /// Breaker state changes, published once the batch commits.
    health: Vec<HealthChange>,
    /// The page budget of a size-limited SQLite database: what is not essential (kept
    /// attempts) is written only within the clients' part, so that the queue's reserve stays
    /// for outcomes.
    budget: Option<crate::db::PageBudget>,
}

impl Staged {
    pub(crate) fn new(batch: u64) -> Self {
        Self { batch, ..Self::default() }
    }

    /// An empty set for a part of the same job (a savepoint), to be absorbed if it is kept.
    pub(crate) fn nested(&self) -> Self {
        Self { budget: self.budget, unheard: self.unheard, ..Self::new(self.batch) }
    }

    /// A job's set in a writer batch on a database with this page budget.
    pub(crate) fn with_budget(batch: u64, budget: Option<crate::db::PageBudget>) -> Self {
        Self { budget, ..Self::new(batch) }
    }

    /// The same set, its changes not kept for subscribers: nobody listened when its batch
    /// began (a subscriber that arrives during a batch hears from the next one). Saves copying
    /// every changed row (a few strings each, three changes per delivery) only to drop it.
    pub(crate) fn unheard(self, unheard: bool) -> Self {
        Self { unheard, ..self }
    }

    /// The writer's batch this job runs in: caches check their versions once per batch.
    pub fn batch(&self) -> Option<u64> {
        Some(self.batch)
    }

    pub(crate) fn absorb(&mut self, other: Staged) {
        self.transitions.extend(other.transitions);
        self.queued += other.queued;
        self.wake |= other.wake;
        self.events.extend(other.events);
        self.health.extend(other.health);
    }

    /// Stages breaker state changes; a breaker that closed or let a probe go may have rows due.
    fn push_health(&mut self, changes: Vec<HealthChange>) {
        self.wake |= changes.iter().any(|c| c.state != "half_open");
        self.health.extend(changes);
    }

    /// Notes an event raised by the job (`hookline_events_total`, counted if it commits).
    pub fn count_event(&mut self, counter: ::metrics::Counter) {
        self.events.push(counter);
    }

    /// Stages a change of `row` (kept as subscribers are told it: without its payload).
    /// Rows due now wake the workers, and so does an ordered row that is done: the next row of
    /// its item may be waiting for it.
    fn push(&mut self, row: &Model, from: Option<QueueStatus>) {
        self.wake |= match row.status {
            QueueStatus::Pending | QueueStatus::Retrying => true,
            QueueStatus::Sent | QueueStatus::Failed | QueueStatus::Cancelled => row.order_key.is_some(),
            QueueStatus::Sending => false,
        };
        self.queued += usize::from(from.is_none());
        if !self.unheard {
            self.transitions.push(Transition { row: live::published(row), from });
        }
    }
}

/// Publishes what committed batches changed: to subscribers (through NOTIFY on PostgreSQL, so
/// that every process sees one order) and to the workers.
pub struct Publisher {
    pub bus: Arc<QueueBus>,
    wake: Notify,
    /// Several processes share the database (PostgreSQL): changes travel through NOTIFY.
    shared: bool,
    /// Counts the rows queued and the events raised by committed batches.
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// Where the writer counts its transactions.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether anyone listens for the queue's changes now (see [`Staged::unheard`]).
    pub(crate) fn heard(&self, db: &impl ConnectionTrait) -> bool {
        self.bus.wanted(db)
    }

    /// Inside the batch's transaction, before it commits: on PostgreSQL the notifications go
    /// out with the commit itself, ahead of any process's claim.
    pub(crate) async fn before_commit(&self, txn: &DatabaseTransaction, staged: &Staged) -> AppResult<()> {
        if !self.shared {
            return Ok(());
        }
        let changes = !staged.transitions.is_empty() && self.bus.wanted(txn);
        if changes || !staged.health.is_empty() {
            // In a savepoint: a notification PostgreSQL refuses (its queue is full) aborts the
            // transaction it is sent in, whose COMMIT would then roll everything back while
            // answering as if it had committed. Subscribers miss these changes; the writes stand.
            let savepoint = sea_orm::TransactionTrait::begin(txn).await?;
            let published = async {
                if changes {
                    self.bus.publish(&savepoint, staged.transitions.iter().map(QueueChange::from).collect()).await?;
                }
                self.bus.publish_health(&savepoint, &staged.health).await
            };
            match published.await {
                Ok(()) => savepoint.commit().await?,
                Err(err) => {
                    tracing::error!(%err, "cannot publish queue changes; subscribers miss them");
                    savepoint.rollback().await?;
                }
            }
        }
        if staged.wake {
            store::notify_queued(txn).await?;
        }
        Ok(())
    }

    /// After the commit: the counters, SQLite's subscribers, then this process's workers.
    pub(crate) fn after_commit(&self, staged: Staged) {
        self.metrics.committed(staged.queued, &staged.events);
        if !staged.transitions.is_empty() && !self.shared && self.bus.has_subscribers() {
            self.bus.deliver_local(staged.transitions.iter().map(QueueChange::from));
        }
        if !self.shared {
            self.bus.deliver_health_local(staged.health);
        }
        if staged.wake {
            self.wake.notify_one();
        }
    }

    /// Another process queued rows.
    pub(crate) fn wake_workers(&self) {
        self.wake.notify_one();
    }
}

/// The ordering key of an ordered webhook's rows for an item: the rows of one key are sent one
/// at a time, in event order (see `store::claim_due`).
pub fn order_key(webhook_id: i64, itemtype: &str, item_id: &str) -> String {
    format!("{webhook_id}:{itemtype}:{item_id}")
}

/// Queues rows inside the caller's transaction (the item write and its rows commit together);
/// fills in their ids.
pub async fn enqueue(conn: &impl ConnectionTrait, staged: &mut Staged, mut rows: Vec<Model>) -> AppResult<Vec<Model>> {
    if rows.is_empty() {
        return Ok(rows);
    }
    for row in &mut rows {
        let renderable = row.body.is_some();
        row.status =
            transition::next(None, Step::Queued { renderable }).map_err(|e| AppError::internal(e.to_string()))?;
        row.body = row.body.take().map(store::storable);
        row.url = store::storable(std::mem::take(&mut row.url));
        row.last_error = row.last_error.take().map(store::storable);
    }
    store::insert(conn, &mut rows).await?;
    for row in &rows {
        staged.push(row, None);
    }
    Ok(rows)
}

/// What a claim took for this process's workers.
#[derive(Debug, Default)]
pub struct Claimed {
    pub rows: Vec<Model>,
    /// The reserved start of each row of a rate-limited webhook: its attempt waits until then.
    pub starts: std::collections::HashMap<i64, DateTime<Utc>>,
    /// Rows the claim took and gave back at once (their breaker is open or their rate window
    /// is spent): their webhooks are skipped now, so another claim may find other rows.
    pub given_back: usize,
}

/// Replaces the `update` rows of this webhook and item that still wait for their first
/// attempt: they are CANCELLED (inside the caller's transaction) and returned, oldest first,
/// for the newer row to merge; [`coalesced_into`] then says which row replaced them.
pub async fn take_waiting_updates(
    conn: &impl ConnectionTrait,
    webhook_id: i64,
    itemtype: &str,
    item_id: &str,
) -> AppResult<Vec<Model>> {
    store::take_waiting_updates(conn, webhook_id, itemtype, item_id).await
}

/// Rows taken by [`take_waiting_updates`] are not replaced after all (the newer row could not
/// carry their changes): they wait again as they were, inside the same transaction (nobody saw
/// them cancelled).
pub async fn keep_waiting(conn: &impl ConnectionTrait, taken: &[Model]) -> AppResult<()> {
    let ids: Vec<i64> = taken.iter().map(|row| row.id).collect();
    store::uncancel(conn, &ids).await
}

/// Rows taken by [`take_waiting_updates`] were replaced by the queued row `into`: their
/// `lastError` says so, and subscribers see them cancelled.
pub async fn coalesced_into(
    conn: &impl ConnectionTrait,
    staged: &mut Staged,
    mut replaced: Vec<Model>,
    into: i64,
) -> AppResult<()> {
    if replaced.is_empty() {
        return Ok(());
    }
    let reason = format!("coalesced into {into}");
    let ids: Vec<i64> = replaced.iter().map(|row| row.id).collect();
    store::set_last_error(conn, &ids, &reason).await?;
    for row in &mut replaced {
        row.status = transition::next(Some(QueueStatus::Pending), Step::Cancel)
            .map_err(|e| AppError::internal(e.to_string()))?;
        row.last_error = Some(reason.clone());
        staged.push(row, Some(QueueStatus::Pending));
    }
    Ok(())
}

/// The filters of `queuedWebhooks`; `entity_id` includes child entities.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub webhook_id: Option<i64>,
    pub status: Option<QueueStatus>,
    pub itemtype: Option<String>,
    pub item_id: Option<String>,
    pub entity_id: Option<i64>,
    pub delivery_id: Option<String>,
    /// Only rows of these entities (the caller's scope); None: every row.
    pub within: Option<Vec<i64>>,
}

/// The queue: reads on the shared pool, writes through the writer.
pub struct Queue {
    db: DatabaseConnection,
    writer: Writer,
    publisher: Arc<Publisher>,
    /// This process's id in claims and heartbeats.
    pub process_id: String,
    started_at: DateTime<Utc>,
    lease: Duration,
    forced: mpsc::Sender<ForcedSend>,
    breaker: BreakerConfig,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("process_id", &self.process_id).finish_non_exhaustive()
    }
}

/// The workers' end of the queue: forced sends to make.
pub struct WorkerInbox {
    pub forced: mpsc::Receiver<ForcedSend>,
}

impl Queue {
    /// `lease`: how long a claimed row belongs to its worker before it is given back;
    /// `breaker`: when failures pause a webhook's sends.
    pub fn new(
        db: DatabaseConnection,
        writer: Writer,
        publisher: Arc<Publisher>,
        lease: Duration,
        breaker: BreakerConfig,
    ) -> (Self, WorkerInbox) {
        let (forced, inbox) = mpsc::channel(64);
        let process_id = publisher.bus.process_id.clone();
        let queue = Self { db, writer, publisher, process_id, started_at: Utc::now(), lease, forced, breaker };
        (queue, WorkerInbox { forced: inbox })
    }

    /// The publisher the writer hands committed batches to.
    pub fn publisher(db: &DatabaseConnection, bus: Arc<QueueBus>, metrics: Arc<Metrics>) -> Arc<Publisher> {
        Arc::new(Publisher { bus, wake: Notify::new(), shared: store::shared(db), metrics })
    }

    pub fn bus(&self) -> &Arc<QueueBus> {
        &self.publisher.bus
    }

    /// Resolves when rows may have become due (queued here or in another process, released).
    pub async fn work_queued(&self) {
        self.publisher.wake.notified().await;
    }

    pub async fn get(&self, id: i64) -> AppResult<Option<Model>> {
        Ok(queued_webhooks::Entity::find_by_id(id).one(&self.db).await?)
    }

    pub async fn require(&self, id: i64) -> AppResult<Model> {
        self.get(id).await?.ok_or_else(|| AppError::not_found(format!("no queued webhook with id {id}")))
    }

    /// Queued webhooks, newest first.
    pub async fn list(&self, filter: &QueueFilter, page: PageRequest) -> AppResult<Page<Model>> {
        let mut base = queued_webhooks::Entity::find();
        if let Some(id) = filter.webhook_id {
            base = base.filter(Q::WebhookId.eq(id));
        }
        if let Some(status) = filter.status {
            base = base.filter(Q::Status.eq(status));
        }
        if let Some(itemtype) = &filter.itemtype {
            base = base.filter(Q::Itemtype.eq(itemtype));
        }
        if let Some(item_id) = &filter.item_id {
            base = base.filter(Q::ItemId.eq(item_id));
        }
        if let Some(delivery_id) = &filter.delivery_id {
            base = base.filter(Q::DeliveryId.eq(delivery_id));
        }
        if let Some(within) = &filter.within {
            base = base.filter(Q::EntityId.is_in(within.iter().copied()));
        }
        if let Some(entity_id) = filter.entity_id {
            base = base.filter(Q::EntityId.is_in(EntityIndex::load(&self.db).await?.subtree(entity_id)));
        }
        let total = base.clone().count(&self.db).await?;
        let mut query = base.order_by_desc(Q::Id).limit(page.first + 1);
        if let Some(after) = page.after {
            query = query.filter(Q::Id.lt(after));
        }
        let rows = query.all(&self.db).await?.into_iter().map(|m| (m.id, m)).collect();
        Ok(Page::from_fetched(rows, page, total))
    }

    /// The attempts kept of one queued webhook, newest first.
    pub async fn attempts(&self, id: i64, page: PageRequest) -> AppResult<Page<entity::delivery_attempts::Model>> {
        attempts::list(&self.db, id, page).await
    }

    pub async fn stats(&self, webhook_id: Option<i64>, within: Option<&[i64]>) -> AppResult<QueueStats> {
        stats::stats(&self.db, webhook_id, within).await
    }

    fn claim(&self) -> (String, i64, Duration) {
        (self.process_id.clone(), rand::random::<i64>(), self.lease)
    }

    /// Claims up to `limit` due rows for this process's workers, as their webhooks' breakers
    /// and rate limits allow.
    pub async fn claim_due(&self, limit: u64) -> AppResult<Claimed> {
        let (process, token, lease) = self.claim();
        self.writer
            .write_claim(move |txn, staged| {
                Box::pin(async move {
                    let claim = Claim { process: &process, token, lease };
                    let rows = store::claim_due(txn, limit, &claim).await?;
                    let admitted = health::admit(txn, rows, &claim, Utc::now()).await?;
                    for row in &admitted.rows {
                        let from = if row.sent_try > 0 { QueueStatus::Retrying } else { QueueStatus::Pending };
                        staged.push(row, Some(from));
                    }
                    staged.push_health(admitted.changes);
                    Ok(Claimed { rows: admitted.rows, starts: admitted.starts, given_back: admitted.given_back })
                })
            })
            .await
    }

    /// A webhook turned on again (see [`Queue::reactivated`]) has a probe due now, committed:
    /// the workers of every process (through the NOTIFY of queued rows on PostgreSQL) look at
    /// once, not at their next poll.
    pub async fn probe_due(&self) -> AppResult<()> {
        self.writer
            .write_queue(|_, staged| {
                Box::pin(async move {
                    staged.wake = true;
                    Ok(())
                })
            })
            .await
    }

    /// A webhook is turned on again, inside the caller's transaction and before the webhook's
    /// row is written (health rows are locked before webhook rows): if its breaker had turned
    /// it off, one probe is due at once. Returns whether it was; once the transaction has
    /// committed, [`Queue::probe_due`] wakes the workers for it.
    pub async fn reactivated(conn: &impl ConnectionTrait, webhook_id: i64) -> AppResult<bool> {
        health::reactivated(conn, webhook_id, Utc::now()).await
    }

    /// The breaker state of one webhook, or of every webhook with one recorded (for a health
    /// subscriber that fell behind; see [`health::current`]).
    pub async fn current_health(&self, webhook_id: Option<i64>) -> AppResult<Vec<HealthChange>> {
        health::current(&self.db, webhook_id).await
    }

    /// When claims may next find rows that breakers or rate limits hold now (None: none held).
    pub async fn next_reopening(&self) -> AppResult<Option<DateTime<Utc>>> {
        health::next_reopening(&self.db, Utc::now()).await
    }

    /// Writes the outcomes of attempts. An outcome whose claim is no longer the row's (its
    /// lease ended and another worker took it) is not written. A value the database refuses
    /// fails only its own row, which is then written without it.
    /// The outcomes are shared, so that a batch the database refused can be tried again without
    /// copying it.
    pub async fn record(&self, outcomes: Arc<[Outcome]>) -> AppResult<usize> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let breaker = self.breaker;
        self.writer.write_queue(move |txn, staged| Box::pin(outcome::record(txn, staged, outcomes, breaker))).await
    }

    /// Gives claimed rows that were never attempted back to the queue.
    pub async fn release(&self, ids: Vec<i64>, token: i64) -> AppResult<usize> {
        self.release_where(move |conn| {
            Box::pin(async move { store::release(conn, Abandoned::Claimed { ids: &ids, token }).await })
        })
        .await
    }

    /// Gives back rows whose worker is gone: their lease ended, or (with several processes)
    /// their process's heartbeat stopped more than `silent_for` ago. At the start of a SQLite
    /// database's only process, every claimed row; at the start of a process sharing its
    /// database, also the rows whose lease ended with no claim recorded (claimed by a process
    /// of an earlier version, see `store::Abandoned::Unrecorded`).
    pub async fn release_abandoned(&self, at_start: bool, silent_for: Duration) -> AppResult<usize> {
        let shared = store::shared(&self.db);
        self.release_where(move |conn| {
            Box::pin(async move {
                if at_start && !shared {
                    return store::release(conn, Abandoned::All).await;
                }
                let mut rows = store::release(conn, Abandoned::LeaseEnded).await?;
                if at_start {
                    rows.extend(store::release(conn, Abandoned::Unrecorded).await?);
                }
                if shared {
                    let since = chrono::Duration::from_std(silent_for)
                        .ok()
                        .and_then(|age| Utc::now().checked_sub_signed(age))
                        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
                    rows.extend(store::release(conn, Abandoned::SilentSince(since)).await?);
                }
                Ok(rows)
            })
        })
        .await
    }

    async fn release_where<F>(&self, release: F) -> AppResult<usize>
    where
        F: for<'a> FnOnce(&'a DatabaseTransaction) -> futures_util::future::BoxFuture<'a, AppResult<Vec<Model>>>
            + Send
            + 'static,
    {
        self.writer
            .write_queue(move |txn, staged| {
                Box::pin(async move {
                    let rows = release(txn).await?;
                    let count = rows.len();
                    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                    staged.push_health(health::released(txn, &ids, Utc::now()).await?);
                    for row in rows {
                        staged.push(&row, Some(QueueStatus::Sending));
                    }
                    Ok(count)
                })
            })
            .await
    }

    /// Keeps this process's heartbeat (with several processes on one database).
    pub async fn heartbeat(&self) -> AppResult<()> {
        if store::shared(&self.db) {
            store::heartbeat(&self.db, &self.process_id, self.started_at).await?;
        }
        Ok(())
    }

    /// This process stops: its heartbeat row goes.
    pub async fn leave(&self) {
        if store::shared(&self.db)
            && let Err(err) = store::leave(&self.db, &self.process_id).await
        {
            tracing::warn!(?err, "cannot remove this process's heartbeat");
        }
    }

    /// FAILED rows (of one webhook, or all; only those of `ids` when given) back to PENDING
    /// with a fresh budget; returns how many. On an ordered webhook they keep their place in
    /// event order (their ids): a resent row goes before the later rows of its item that are
    /// still to be sent, which wait for it, after one already being sent; rows already sent
    /// are not sent again.
    pub async fn resend_failed(
        &self,
        webhook_id: Option<i64>,
        ids: Option<Vec<i64>>,
        within: Option<Vec<i64>>,
    ) -> AppResult<usize> {
        // In writes of at most ROWS_PER_BULK_WRITE rows, in id order, each after the last row of the
        // one before: a row that fails again meanwhile is not resent twice.
        let ids: Option<Arc<[i64]>> = ids.map(Into::into);
        let within: Option<Arc<[i64]>> = within.map(Into::into);
        let (mut resent, mut after) = (0, 0);
        loop {
            let (ids, within) = (ids.clone(), within.clone());
            let (count, last) = self
                .writer
                .write(move |txn, staged| {
                    Box::pin(async move {
                        let rows = store::resend_failed(
                            txn,
                            webhook_id,
                            ids.as_deref(),
                            within.as_deref(),
                            after,
                            ROWS_PER_BULK_WRITE,
                        )
                        .await?;
                        let last = rows.last().map(|row| row.id);
                        let count = rows.len();
                        for row in rows {
                            staged.push(&row, Some(QueueStatus::Failed));
                        }
                        Ok((count, last))
                    })
                })
                .await?;
            resent += count;
            match last {
                Some(last) if count as u64 >= ROWS_PER_BULK_WRITE => after = last,
                _ => return Ok(resent),
            }
        }
    }

    /// Cancels a PENDING or RETRYING row; CONFLICT otherwise (also when a worker claims it
    /// first: the conflict then says it is being sent).
    pub async fn cancel(&self, id: i64) -> AppResult<Model> {
        self.writer
            .write(move |txn, staged| {
                Box::pin(async move {
                    // A claim may commit between the read and the update: read again then.
                    for _ in 0..3 {
                        let row = queued_webhooks::Entity::find_by_id(id)
                            .one(txn)
                            .await?
                            .ok_or_else(|| AppError::not_found(format!("no queued webhook with id {id}")))?;
                        let to = transition::next(Some(row.status), Step::Cancel)
                            .map_err(|refused| AppError::conflict(format!("queued webhook {id}: {refused}")))?;
                        if store::set_status(txn, id, row.status, to).await? {
                            let from = row.status;
                            let row = Model { status: to, ..row };
                            staged.push(&row, Some(from));
                            return Ok(row);
                        }
                    }
                    Err(AppError::conflict(format!("queued webhook {id} keeps changing; try again")))
                })
            })
            .await
    }

    /// Deletes SENT rows older than `sent_days` and FAILED or CANCELLED rows older than
    /// `failed_days`; never a row still to be sent. Returns how many.
    ///
    /// A write deletes at most [`ROWS_PER_BULK_WRITE`] rows of each kind, and the next write goes
    /// on until none are left: the others' writes go on in between, and no write holds the
    /// writer (on SQLite, a runtime thread) for the seconds a long history takes.
    pub async fn clean(&self, sent_days: u32, failed_days: u32, within: Option<Vec<i64>>) -> AppResult<u64> {
        let now = Utc::now();
        // Days beyond the calendar's range reach back before any row.
        let before = |days: u32| {
            chrono::TimeDelta::try_days(i64::from(days))
                .and_then(|age| now.checked_sub_signed(age))
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
        };
        let (sent_before, failed_before) = (before(sent_days), before(failed_days));
        let within: Option<Arc<[i64]>> = within.map(Into::into);
        let mut deleted = 0;
        loop {
            let within = within.clone();
            let (sent, failed) = self
                .writer
                .write_queue(move |txn, _| {
                    Box::pin(async move {
                        store::clean(txn, sent_before, failed_before, within.as_deref(), ROWS_PER_BULK_WRITE).await
                    })
                })
                .await?;
            deleted += sent + failed;
            if sent < ROWS_PER_BULK_WRITE && failed < ROWS_PER_BULK_WRITE {
                return Ok(deleted);
            }
        }
    }

    /// The background work of the queue until `shutdown`: on PostgreSQL, listening for other
    /// processes' rows and changes, and announcing this one's subscribers.
    pub fn run_background(self: &Arc<Self>, shutdown: CancellationToken) {
        if store::shared(&self.db) {
            tokio::spawn(live::listen(self.db.clone(), self.publisher.clone(), shutdown.clone()));
            let (bus, db) = (self.publisher.bus.clone(), self.db.clone());
            tokio::spawn(async move { bus.announce_subscribers(db, shutdown).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: QueueStatus) -> Model {
        serde_json::from_value(serde_json::json!({
            "id": 7, "webhook_id": 1, "itemtype": "Ticket", "item_id": "3", "entity_id": 0, "event": "new",
            "url": "http://127.0.0.1:9/", "http_method": "POST", "headers": {}, "body": "{}", "status": status,
            "sent_try": 0, "max_attempts": 3, "delivery_id": "d", "create_time": "2026-12-07T00:00:00Z",
            "send_time": "2026-12-07T00:00:00Z", "sent_time": null, "last_status_code": null,
            "response_body": null, "last_error": null, "save_response_body": false, "log_in_item_history": false,
            "lease_until": null, "claim_token": null, "claimed_by": null, "traceparent": null, "is_test": false,
            "order_key": null, "changes": null, "attempts_kept": 0
        }))
        .expect("a row")
    }

    #[test]
    fn a_batch_nobody_listens_to_counts_its_rows_and_keeps_no_changes() {
        for unheard in [false, true] {
            let mut staged = Staged::new(1).unheard(unheard);
            let mut part = staged.nested();
            part.push(&row(QueueStatus::Pending), None);
            part.push(&row(QueueStatus::Sending), Some(QueueStatus::Pending));
            staged.absorb(part);
            staged.push(&row(QueueStatus::Pending), None);
            assert_eq!(staged.queued, 2, "unheard: {unheard}");
            assert!(staged.wake, "a pending row wakes the workers, heard or not");
            let kept = staged.transitions.iter().map(|t| (t.from, t.to())).collect::<Vec<_>>();
            let all = vec![
                (None, QueueStatus::Pending),
                (Some(QueueStatus::Pending), QueueStatus::Sending),
                (None, QueueStatus::Pending),
            ];
            assert_eq!(kept, if unheard { vec![] } else { all });
        }
    }
}
