//! Replay (`replayQueuedWebhooks`): a webhook's rows of a time window queued again as new rows,
//! with new delivery ids and a fresh budget, sending the same stored URL, headers and body.

use chrono::{DateTime, Utc};
use entity::{
    queued_webhooks::{self, Column as Q, Model, QueueStatus},
    webhooks,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde_json::Value;

use super::{Queue, enqueue};
use crate::{
    domain::webhook::is_sensitive_header,
    error::{AppError, AppResult},
    secret_box::{Purpose, SecretBox},
};

/// The most rows one call replays: a larger window is refused, to be narrowed.
pub const MAX_REPLAY: u64 = 1000;

/// Which rows a replay queues again.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    pub webhook_id: i64,
    /// None: every SENT or FAILED row. Rows still to be sent are replayed only when their
    /// status is asked for, and so are CANCELLED rows: an update coalesced into a later one
    /// carries an earlier state of its item, and sent again it would follow the final one.
    pub status: Option<QueueStatus>,
    /// Rows created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only rows of these entities (the caller's scope); None: every row.
    pub within: Option<Vec<i64>>,
}

impl ReplayWindow {
    /// The rows replayed: those of the window with a body (a row never rendered has nothing to
    /// send again) that are not test deliveries, oldest first.
    fn rows(&self) -> Select<queued_webhooks::Entity> {
        let mut select = queued_webhooks::Entity::find()
            .filter(Q::WebhookId.eq(self.webhook_id))
            .filter(Q::Body.is_not_null())
            .filter(Q::IsTest.eq(false));
        select = match self.status {
            Some(status) => select.filter(Q::Status.eq(status)),
            None => select.filter(Q::Status.is_in([QueueStatus::Sent, QueueStatus::Failed])),
        };
        if let Some(since) = self.since {
            select = select.filter(Q::CreateTime.gte(since));
        }
        if let Some(until) = self.until {
            select = select.filter(Q::CreateTime.lt(until));
        }
        if let Some(within) = &self.within {
            select = select.filter(Q::EntityId.is_in(within.iter().copied()));
        }
        select.order_by_asc(Q::Id)
    }

    /// How many rows the window replays; VALIDATION beyond [`MAX_REPLAY`].
    async fn count(&self, conn: &impl ConnectionTrait) -> AppResult<u64> {
        let count = self.rows().count(conn).await?;
        if count > MAX_REPLAY {
            return Err(AppError::validation(format!(
                "replayQueuedWebhooks: {count} queued webhooks match, more than the {MAX_REPLAY} one call may replay; \
                 narrow the window (since, until) or choose a status"
            )));
        }
        Ok(count)
    }
}

impl Queue {
    /// Queues the window's rows again (or, with `dry_run`, only counts them, in the same way);
    /// returns how many. `traceparent`: the trace the new rows' attempts continue.
    pub async fn replay(
        &self,
        window: ReplayWindow,
        dry_run: bool,
        secrets: SecretBox,
        traceparent: String,
    ) -> AppResult<usize> {
        if dry_run {
            return Ok(window.count(&self.db).await? as usize);
        }
        self.writer
            .write(move |txn, staged| {
                Box::pin(async move {
                    window.count(txn).await?;
                    let now = Utc::now();
                    let ordered = ordered(txn, window.webhook_id).await?;
                    let rows = window
                        .rows()
                        .all(txn)
                        .await?
                        .into_iter()
                        .map(|row| replayed(row, ordered, &secrets, now, &traceparent))
                        .collect::<AppResult<Vec<Model>>>()?;
                    Ok(enqueue(txn, staged, rows).await?.len())
                })
            })
            .await
    }
}

/// Whether the webhook is ordered now: `ordered` applies to the rows queued once it is on, and
/// a replayed row is queued now (whatever its webhook was when the original was queued).
async fn ordered(conn: &impl ConnectionTrait, webhook_id: i64) -> AppResult<bool> {
    let ordered: Option<bool> = webhooks::Entity::find_by_id(webhook_id)
        .select_only()
        .column(webhooks::Column::Ordered)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(ordered.unwrap_or(false))
}

/// The new row that sends `row` again: a new delivery id (its credential headers sealed anew
/// for it), a fresh budget, due now, in its item's order when its webhook is `ordered` now.
fn replayed(row: Model, ordered: bool, secrets: &SecretBox, now: DateTime<Utc>, traceparent: &str) -> AppResult<Model> {
    let delivery_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let mut headers = row.headers.clone();
    if let Value::Object(map) = &mut headers {
        for (name, value) in map.iter_mut() {
            if let Some(text) = value.as_str().filter(|_| is_sensitive_header(name)) {
                let opened = secrets.open_header(Purpose::QueuedHeader, &row.delivery_id, name, text)?;
                *value = Value::String(secrets.seal_header(Purpose::QueuedHeader, &delivery_id, name, &opened));
            }
        }
    }
    Ok(Model {
        id: 0,
        headers,
        status: QueueStatus::Pending,
        sent_try: 0,
        delivery_id,
        create_time: now,
        send_time: now,
        sent_time: None,
        last_status_code: None,
        response_body: None,
        last_error: None,
        lease_until: None,
        claim_token: None,
        claimed_by: None,
        traceparent: Some(traceparent.to_owned()),
        is_test: false,
        // A replayed row sends its stored body again: a newer update of its item neither
        // replaces it nor merges changes it no longer stands for (see `take_waiting_updates`).
        changes: None,
        order_key: ordered.then(|| super::order_key(row.webhook_id, &row.itemtype, &row.item_id)),
        ..row
    })
}
