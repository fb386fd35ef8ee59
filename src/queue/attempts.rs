//! Every attempt of a queued webhook, kept with its row (`QueuedWebhook.attempts`): written in
//! the same savepoint as the attempt's outcome, several rows per statement, and trimmed to the
//! latest [`KEPT_PER_ROW`] of a row once it keeps more. Deleted with their row (the foreign key
//! cascades).

use chrono::{DateTime, Utc};
use entity::delivery_attempts::{self, Column as A};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

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
    /// The headers sent, credentials and signatures `(hidden)`: the text of a JSON object
    /// (`domain::headers::shown_exchange_headers`).
    pub request_headers: String,
    /// The answer's headers (capped, credentials `(hidden)`), as JSON text; None without an
    /// answer.
    pub response_headers: Option<String>,
}

/// One attempt to keep: its record and what its outcome wrote on row `queued_webhook_id`.
pub struct Kept<'a> {
    pub queued_webhook_id: i64,
    pub record: &'a AttemptRecord,
    pub status_code: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// Inserts attempts inside the savepoint of their outcomes (a refused value fails that
/// savepoint, and the outcomes are then written row by row).
pub(super) async fn insert(conn: &impl ConnectionTrait, kept: &[Kept<'_>]) -> AppResult<()> {
    let rows = kept
        .iter()
        .map(|one| store::AttemptRow {
            queued_webhook_id: one.queued_webhook_id,
            started_at: one.record.started_at,
            duration_ms: one.record.duration_ms,
            method: &one.record.method,
            url: storable(one.record.url.clone()),
            request_headers: storable(one.record.request_headers.clone()),
            status_code: one.status_code,
            response_headers: one.record.response_headers.clone().map(storable),
            response_body: one.response_body.clone(),
            error: one.error.clone(),
        })
        .collect();
    store::insert_attempts(conn, rows).await
}

/// Deletes the attempts of these rows beyond their latest [`KEPT_PER_ROW`] and counts again
/// what they keep. Called only for the rows that keep more (`attempts_kept`, counted by the
/// outcome writes): a write of fresh rows trims nothing. The rows' attempts are ranked once,
/// through the (row, id) index. (A correlated "the 101st newest" subquery per attempt cost
/// PostgreSQL half of the fan-out run's time.) The ids are the batch's own row ids.
pub(super) async fn trim(conn: &impl ConnectionTrait, queued_ids: &[i64]) -> AppResult<()> {
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
    conn.execute_unprepared(&format!(
        "UPDATE queued_webhooks SET attempts_kept = (SELECT COUNT(*) FROM delivery_attempts AS a \
         WHERE a.queued_webhook_id = queued_webhooks.id) WHERE id IN ({ids})"
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
