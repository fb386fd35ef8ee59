//! The delivery queue: the rows the API shows are the rows the workers claim.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    queued_webhooks::{
        self, Column as Q,
        status::{CANCELLED, FAILED, PENDING, RETRYING, SENDING, SENT},
    },
    webhooks,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value as DbValue,
    sea_query::{Expr, ExprTrait},
};

use super::{
    history::{self, NewEntry, Subject},
    paging::{Page, PageRequest},
    tree::EntityIndex,
};
use crate::{
    domain::outcome::{AttemptResult, Decision},
    error::{AppError, AppResult},
};

/// The filters of `queuedWebhooks`; `entity_id` includes child entities.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub webhook_id: Option<i64>,
    pub status: Option<&'static str>,
    pub itemtype: Option<String>,
    pub item_id: Option<String>,
    pub entity_id: Option<i64>,
}

pub async fn get(conn: &impl ConnectionTrait, id: i64) -> AppResult<Option<queued_webhooks::Model>> {
    Ok(queued_webhooks::Entity::find_by_id(id).one(conn).await?)
}

pub async fn require(conn: &impl ConnectionTrait, id: i64) -> AppResult<queued_webhooks::Model> {
    get(conn, id).await?.ok_or_else(|| AppError::not_found(format!("no queued webhook with id {id}")))
}

/// Queued webhooks, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &QueueFilter,
    page: PageRequest,
) -> AppResult<Page<queued_webhooks::Model>> {
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
    if let Some(entity_id) = filter.entity_id {
        base = base.filter(Q::EntityId.is_in(EntityIndex::load(conn).await?.subtree(entity_id)));
    }
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_desc(Q::Id).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(Q::Id.lt(after));
    }
    let rows = query.all(conn).await?.into_iter().map(|m| (m.id, m)).collect();
    Ok(Page::from_fetched(rows, page, total))
}

fn placeholder(backend: DbBackend, n: usize) -> String {
    if backend == DbBackend::Postgres { format!("${n}") } else { "?".into() }
}

/// Claims up to `limit` due rows for this process: they become `sending`, owned until the
/// lease ends. On PostgreSQL rows locked by another process are skipped, so no two
/// processes claim the same attempt.
pub async fn claim_due(db: &DatabaseConnection, limit: u64, lease: Duration) -> AppResult<Vec<queued_webhooks::Model>> {
    let backend = db.get_database_backend();
    let now = Utc::now();
    let lease_until = now + lease;
    let skip_locked = if backend == DbBackend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE queued_webhooks SET status = '{SENDING}', lease_until = {p1} WHERE id IN (\
         SELECT id FROM queued_webhooks WHERE status IN ('{PENDING}', '{RETRYING}') AND send_time <= {p2} \
         ORDER BY send_time, id LIMIT {p3}{skip_locked}) RETURNING *",
        p1 = placeholder(backend, 1),
        p2 = placeholder(backend, 2),
        p3 = placeholder(backend, 3),
    );
    let values: [DbValue; 3] = [lease_until.into(), now.into(), (limit as i64).into()];
    let txn = crate::db::begin_write(db).await?;
    let mut rows = queued_webhooks::Model::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
        .all(&txn)
        .await?;
    txn.commit().await?;
    rows.sort_by_key(|r| (r.send_time, r.id));
    Ok(rows)
}

/// Claims one row whatever its status (for a forced send) and returns it as it was before;
/// CONFLICT while it is being sent.
pub async fn claim_one(db: &DatabaseConnection, id: i64, lease: Duration) -> AppResult<queued_webhooks::Model> {
    let txn = crate::db::begin_write(db).await?;
    let row = require(&txn, id).await?;
    if row.status == SENDING {
        return Err(AppError::conflict(format!("queued webhook {id} is being sent right now")));
    }
    queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(SENDING))
        .col_expr(Q::LeaseUntil, Expr::value(Utc::now() + lease))
        .filter(Q::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(row)
}

/// Gives claimed rows back to the queue untouched (they were never attempted).
pub async fn release(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let released = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, requeue_status())
        .col_expr(Q::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(Q::Id.is_in(ids.iter().copied()))
        .filter(Q::Status.eq(SENDING))
        .exec(conn)
        .await?;
    Ok(released.rows_affected)
}

/// Gives back rows whose lease ended: their worker died mid-attempt. With `all`, every
/// `sending` row (at the start of the only process of a SQLite database).
pub async fn release_abandoned(conn: &impl ConnectionTrait, all: bool) -> AppResult<u64> {
    let mut update = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, requeue_status())
        .col_expr(Q::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(Q::Status.eq(SENDING));
    if !all {
        update = update.filter(Q::LeaseUntil.lt(Utc::now()));
    }
    Ok(update.exec(conn).await?.rows_affected)
}

/// `pending` for rows never attempted, `retrying` for the others.
fn requeue_status() -> sea_orm::sea_query::SimpleExpr {
    Expr::case(Expr::col(Q::SentTry).gt(0), Expr::value(RETRYING)).finally(Expr::value(PENDING)).into()
}

/// The result of one attempt of a claimed row, ready to be written.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: queued_webhooks::Model,
    pub attempted_at: DateTime<Utc>,
    pub result: AttemptResult,
    pub decision: Decision,
    /// Whether a request was sent to the target (a failed CRA challenge is not an attempt).
    pub counted: bool,
}

impl Outcome {
    pub fn new_status(&self) -> &'static str {
        match self.decision {
            Decision::Sent => SENT,
            Decision::Retry { .. } => RETRYING,
            Decision::Failed { .. } => FAILED,
        }
    }

    fn status_code(&self) -> Option<i32> {
        match &self.result {
            AttemptResult::Response { status, .. } => Some(i32::from(*status)),
            AttemptResult::NoResponse { .. } => None,
        }
    }

    fn response_body(&self) -> Option<String> {
        match &self.result {
            AttemptResult::Response { body, .. } if self.row.save_response_body => body.clone(),
            _ => None,
        }
    }

    /// The row as `record` leaves it.
    pub fn updated_row(&self, now: DateTime<Utc>) -> queued_webhooks::Model {
        let mut row = self.row.clone();
        row.status = self.new_status().to_owned();
        if self.counted {
            row.sent_try += 1;
            row.sent_time = Some(self.attempted_at);
        }
        row.last_status_code = self.status_code();
        row.response_body = self.response_body();
        row.lease_until = None;
        match &self.decision {
            Decision::Sent => row.last_error = None,
            Decision::Retry { delay, error } => {
                row.send_time = now + chrono::Duration::from_std(*delay).unwrap_or(chrono::Duration::MAX);
                row.last_error = Some(error.clone());
            }
            Decision::Failed { error, .. } => row.last_error = Some(error.clone()),
        }
        row
    }

    /// A plain success: written together with others of the same status code.
    fn is_plain_success(&self) -> bool {
        matches!(self.decision, Decision::Sent)
            && self.counted
            && !self.row.save_response_body
            && !self.row.log_in_item_history
    }
}

/// Writes the outcomes of attempts in one transaction. Only rows still `sending` are
/// updated (a row deleted with its webhook meanwhile stays deleted).
pub async fn record(db: &DatabaseConnection, outcomes: &[Outcome]) -> AppResult<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let txn = crate::db::begin_write(db).await?;
    let now = Utc::now();
    let mut plain: std::collections::BTreeMap<Option<i32>, Vec<i64>> = Default::default();
    for outcome in outcomes {
        if outcome.is_plain_success() {
            plain.entry(outcome.status_code()).or_default().push(outcome.row.id);
            continue;
        }
        write_one(&txn, outcome, now).await?;
    }
    for (code, ids) in plain {
        queued_webhooks::Entity::update_many()
            .col_expr(Q::Status, Expr::value(SENT))
            .col_expr(Q::SentTry, Expr::col(Q::SentTry).add(1))
            .col_expr(Q::SentTime, Expr::value(now))
            .col_expr(Q::LastStatusCode, Expr::value(code))
            .col_expr(Q::LastError, Expr::value(Option::<String>::None))
            .col_expr(Q::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(Q::Id.is_in(ids))
            .filter(Q::Status.eq(SENDING))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn write_one(conn: &impl ConnectionTrait, outcome: &Outcome, now: DateTime<Utc>) -> AppResult<()> {
    let row = &outcome.row;
    let (send_time, last_error) = match &outcome.decision {
        Decision::Sent => (row.send_time, None),
        Decision::Retry { delay, error } => {
            (now + chrono::Duration::from_std(*delay).unwrap_or(chrono::Duration::MAX), Some(error.clone()))
        }
        Decision::Failed { error, .. } => (row.send_time, Some(error.clone())),
    };
    let updated = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(outcome.new_status()))
        .col_expr(Q::SentTry, Expr::col(Q::SentTry).add(i32::from(outcome.counted)))
        .col_expr(Q::SentTime, Expr::value(if outcome.counted { Some(outcome.attempted_at) } else { row.sent_time }))
        .col_expr(Q::SendTime, Expr::value(send_time))
        .col_expr(Q::LastStatusCode, Expr::value(outcome.status_code()))
        .col_expr(Q::ResponseBody, Expr::value(outcome.response_body()))
        .col_expr(Q::LastError, Expr::value(last_error))
        .col_expr(Q::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(Q::Id.eq(row.id))
        .filter(Q::Status.eq(SENDING))
        .exec(conn)
        .await?;
    if updated.rows_affected == 0 {
        return Ok(());
    }
    if row.log_in_item_history && row.event != "purge" && outcome.counted {
        let old = row.last_status_code.map(|c| c.to_string()).unwrap_or_default();
        let new = outcome.status_code().map(|c| c.to_string()).unwrap_or_default();
        let entry = NewEntry {
            queued_webhook_id: Some(row.id),
            ..NewEntry::change(
                "webhook",
                format!("Send a queued webhook: {} (Status {old} -> {new})", row.id),
                Some(old),
                Some(new),
            )
        };
        history::add(conn, Subject::Item { itemtype: &row.itemtype, id: &row.item_id }, vec![entry]).await?;
    }
    if let Decision::Failed { deactivate_webhook: true, .. } = outcome.decision {
        let deactivated = webhooks::Entity::update_many()
            .col_expr(webhooks::Column::IsActive, Expr::value(false))
            .col_expr(webhooks::Column::UpdatedAt, Expr::value(now))
            .filter(webhooks::Column::Id.eq(row.webhook_id))
            .filter(webhooks::Column::IsActive.eq(true))
            .exec(conn)
            .await?;
        if deactivated.rows_affected > 0 {
            let entry = NewEntry {
                queued_webhook_id: Some(row.id),
                ..NewEntry::change(
                    "deactivate",
                    format!("Deactivated: the target answered 410 Gone to queued webhook {}", row.id),
                    Some("true".into()),
                    Some("false".into()),
                )
            };
            history::add(conn, Subject::Webhook(row.webhook_id), vec![entry]).await?;
        }
    }
    Ok(())
}

/// FAILED rows back to PENDING with a fresh budget; returns them.
pub async fn resend_failed(db: &DatabaseConnection, webhook_id: Option<i64>) -> AppResult<Vec<queued_webhooks::Model>> {
    let mut update = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(PENDING))
        .col_expr(Q::SentTry, Expr::value(0))
        .col_expr(Q::SendTime, Expr::value(Utc::now()))
        .filter(Q::Status.eq(FAILED))
        .filter(Q::Body.is_not_null());
    if let Some(id) = webhook_id {
        update = update.filter(Q::WebhookId.eq(id));
    }
    let rows = update.exec_with_returning(db).await?;
    notify(db).await?;
    Ok(rows)
}

/// Cancels a PENDING or RETRYING row; CONFLICT otherwise. Returns the row and its status
/// before.
pub async fn cancel(db: &DatabaseConnection, id: i64) -> AppResult<(queued_webhooks::Model, String)> {
    let txn = crate::db::begin_write(db).await?;
    let row = require(&txn, id).await?;
    if row.status != PENDING && row.status != RETRYING {
        return Err(AppError::conflict(format!(
            "queued webhook {id} is {}; only pending or retrying ones can be cancelled",
            row.status
        )));
    }
    queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(CANCELLED))
        .filter(Q::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    let previous = row.status.clone();
    Ok((queued_webhooks::Model { status: CANCELLED.into(), ..row }, previous))
}

/// Deletes SENT rows whose last attempt is older than `sent_days` and FAILED or CANCELLED
/// rows older than `failed_days`; never a row still to be sent. Returns how many.
pub async fn clean(db: &DatabaseConnection, sent_days: u32, failed_days: u32) -> AppResult<u64> {
    let now = Utc::now();
    let sent_before = now - chrono::Duration::days(i64::from(sent_days));
    let failed_before = now - chrono::Duration::days(i64::from(failed_days));
    let sent = queued_webhooks::Entity::delete_many()
        .filter(Q::Status.eq(SENT))
        .filter(Q::SentTime.lt(sent_before))
        .exec(db)
        .await?;
    let failed = queued_webhooks::Entity::delete_many()
        .filter(Q::Status.is_in([FAILED, CANCELLED]))
        .filter(Expr::expr(Expr::col(Q::SentTime).if_null(Expr::col(Q::CreateTime))).lt(failed_before))
        .exec(db)
        .await?;
    Ok(sent.rows_affected + failed.rows_affected)
}

/// Tells every process that rows are due (PostgreSQL); the local process is woken by its
/// caller.
pub async fn notify(conn: &impl ConnectionTrait) -> AppResult<()> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared(&format!("NOTIFY {}", super::events::QUEUE_CHANNEL)).await?;
    }
    Ok(())
}
