//! Every attempt of a queued webhook, kept with its row (`QueuedWebhook.attempts`): written in
//! the same savepoint as the attempt's outcome, several rows per statement, and trimmed to the
//! latest [`KEPT_PER_ROW`] of a row once it keeps more. Deleted with their row (the foreign key
//! cascades).

use chrono::{DateTime, Utc};
use entity::delivery_attempts::{self, Column as A};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, Value as DbValue,
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

const ATTEMPT_COLUMNS: usize = 10;

/// Inserts attempts, several per statement, inside the savepoint of their outcomes (a refused
/// value fails that savepoint, and the outcomes are then written row by row). The headers are
/// written as JSON text, serialized once.
pub(super) async fn insert(conn: &impl ConnectionTrait, kept: &[Kept<'_>]) -> AppResult<()> {
    let backend = conn.get_database_backend();
    for part in kept.chunks(store::ROWS_PER_STATEMENT) {
        let mut values: Vec<DbValue> = Vec::with_capacity(part.len() * ATTEMPT_COLUMNS);
        let mut tuples = Vec::with_capacity(part.len());
        for (n, one) in part.iter().enumerate() {
            let record = one.record;
            let json = |value: &Value| storable(value.to_string());
            values.extend([
                one.queued_webhook_id.into(),
                record.started_at.into(),
                record.duration_ms.into(),
                record.method.clone().into(),
                storable(record.url.clone()).into(),
                json(&record.request_headers).into(),
                one.status_code.into(),
                record.response_headers.as_ref().map(json).into(),
                one.response_body.clone().into(),
                one.error.clone().into(),
            ]);
            let base = n * ATTEMPT_COLUMNS;
            let cells: Vec<String> = (1..=ATTEMPT_COLUMNS)
                .map(|i| match backend {
                    // The headers are JSON text: PostgreSQL reads them into its json columns.
                    DbBackend::Postgres if i == 6 || i == 8 => format!("CAST(${} AS json)", base + i),
                    DbBackend::Postgres => format!("${}", base + i),
                    _ => "?".to_owned(),
                })
                .collect();
            tuples.push(format!("({})", cells.join(", ")));
        }
        let sql = format!(
            "INSERT INTO delivery_attempts (queued_webhook_id, started_at, duration_ms, method, url, \
             request_headers, status_code, response_headers, response_body, error) VALUES {}",
            tuples.join(", ")
        );
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
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
