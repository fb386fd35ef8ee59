//! Every attempt of a queued webhook, kept with its row (`QueuedWebhook.attempts`): written by
//! the same write as the attempt's outcome, several rows per statement, and trimmed to the
//! latest [`KEPT_PER_ROW`] of each row in one statement per write. Deleted with their row (the
//! foreign key cascades).

use chrono::{DateTime, Utc};
use entity::delivery_attempts::{self, Column as A};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::Value;

use super::store::{self, storable};
use crate::{
    error::AppResult,
    service::paging::{Page, PageRequest},
};

/// The attempts kept per queued webhook: the latest ones (a row resent again and again keeps
/// its last hundred).
pub const KEPT_PER_ROW: u64 = 100;

/// What an attempt sent and how long it took; its status, body and error are those its outcome
/// leaves on the row.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub method: String,
    pub url: String,
    /// The headers sent, credentials and signatures `(hidden)`.
    pub request_headers: Value,
    /// The answer's headers (capped, credentials `(hidden)`); None without an answer.
    pub response_headers: Option<Value>,
}

/// One attempt to keep: its record and what its outcome wrote on row `queued_webhook_id`.
pub struct Kept<'a> {
    pub queued_webhook_id: i64,
    pub record: &'a AttemptRecord,
    pub status_code: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

impl Kept<'_> {
    fn active(&self) -> delivery_attempts::ActiveModel {
        let record = self.record;
        delivery_attempts::ActiveModel {
            id: NotSet,
            queued_webhook_id: Set(self.queued_webhook_id),
            started_at: Set(record.started_at),
            duration_ms: Set(record.duration_ms),
            method: Set(record.method.clone()),
            url: Set(storable(record.url.clone())),
            request_headers: Set(record.request_headers.clone()),
            status_code: Set(self.status_code),
            response_headers: Set(record.response_headers.clone()),
            response_body: Set(self.response_body.clone()),
            error: Set(self.error.clone()),
        }
    }
}

/// Keeps the attempts, in savepoints: a batch the database refuses (it is full, a value is
/// refused) is kept one by one, and what it still refuses is left out, logged once, never the
/// outcomes written with it.
pub(super) async fn keep(txn: &DatabaseTransaction, kept: &[Kept<'_>]) -> AppResult<()> {
    if kept.is_empty() {
        return Ok(());
    }
    if let Err(err) = insert_in_savepoint(txn, kept).await {
        tracing::warn!(?err, attempts = kept.len(), "a batch of attempts was refused; keeping them one by one");
        let mut refused = 0;
        for one in kept {
            if insert_in_savepoint(txn, std::slice::from_ref(one)).await.is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::error!(refused, "attempts were refused by the database; they are not kept");
        }
    }
    let ids: Vec<i64> = kept.iter().map(|k| k.queued_webhook_id).collect();
    let savepoint = txn.begin().await?;
    let trimmed = trim(&savepoint, &ids).await;
    if let Err(err) = settle(savepoint, trimmed).await {
        tracing::warn!(?err, "older attempts could not be deleted; the next write tries again");
    }
    Ok(())
}

async fn insert_in_savepoint(txn: &DatabaseTransaction, kept: &[Kept<'_>]) -> AppResult<()> {
    let savepoint = txn.begin().await?;
    let inserted = insert(&savepoint, kept).await;
    settle(savepoint, inserted).await
}

/// Keeps a savepoint's work when it succeeded, rolls it back otherwise (the transaction stays
/// usable either way).
async fn settle(savepoint: DatabaseTransaction, result: AppResult<()>) -> AppResult<()> {
    match result {
        Ok(()) => Ok(savepoint.commit().await?),
        Err(err) => {
            savepoint.rollback().await?;
            Err(err)
        }
    }
}

async fn insert(conn: &DatabaseTransaction, kept: &[Kept<'_>]) -> AppResult<()> {
    for part in kept.chunks(store::ROWS_PER_STATEMENT) {
        delivery_attempts::Entity::insert_many(part.iter().map(Kept::active)).exec(conn).await?;
    }
    Ok(())
}

/// Deletes the attempts of these rows beyond their latest [`KEPT_PER_ROW`]. The rows' attempts
/// are ranked once, through the (row, id) index: a batch of outcomes reads only the attempts of
/// its own rows. (A correlated "the 101st newest" subquery per attempt cost PostgreSQL half of
/// the fan-out run's time.) The ids are the batch's own row ids.
async fn trim(conn: &impl ConnectionTrait, queued_ids: &[i64]) -> AppResult<()> {
    if queued_ids.is_empty() {
        return Ok(());
    }
    let ids = queued_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    conn.execute_unprepared(&format!(
        "DELETE FROM delivery_attempts WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
         (PARTITION BY queued_webhook_id ORDER BY id DESC) AS newer FROM delivery_attempts \
         WHERE queued_webhook_id IN ({ids})) AS ranked WHERE newer > {KEPT_PER_ROW})"
    ))
    .await?;
    Ok(())
}

/// The attempts of one queued webhook, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    queued_webhook_id: i64,
    page: PageRequest,
) -> AppResult<Page<delivery_attempts::Model>> {
    let base = delivery_attempts::Entity::find().filter(A::QueuedWebhookId.eq(queued_webhook_id));
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_desc(A::Id).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(A::Id.lt(after));
    }
    let rows = query.all(conn).await?.into_iter().map(|m| (m.id, m)).collect();
    Ok(Page::from_fetched(rows, page, total))
}
