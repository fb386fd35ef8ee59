//! What a list of webhooks shows of each one's queue: its newest row, and the counters of its
//! rows created lately. One statement for the whole list, whatever its length.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{
    queued_webhooks::{self, Column as Q, Model, QueueStatus},
    webhooks,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, Query, SubQueryStatement},
};

use super::stats::QueueStats;
use crate::error::AppResult;

/// The newest row of each of the webhooks (of the `within` entities when given); a webhook
/// without one is absent.
pub async fn newest(
    conn: &impl ConnectionTrait,
    webhook_ids: &[i64],
    within: Option<&[i64]>,
) -> AppResult<HashMap<i64, Model>> {
    if webhook_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // For each webhook, `(SELECT MAX(q.id) FROM queued_webhooks q WHERE q.webhook_id = w.id)`:
    // read from the end of the (webhook_id, id) index, one lookup per webhook.
    let q = Alias::new("q");
    let mut last = Query::select();
    last.expr(Expr::col((q.clone(), Q::Id)).max())
        .from_as(queued_webhooks::Entity, q.clone())
        .and_where(Expr::col((q.clone(), Q::WebhookId)).equals((webhooks::Entity, webhooks::Column::Id)));
    if let Some(within) = within {
        last.and_where(Expr::col((q, Q::EntityId)).is_in(within.iter().copied()));
    }
    let mut ids = Query::select();
    ids.expr(Expr::SubQuery(None, Box::new(SubQueryStatement::SelectStatement(last))))
        .from(webhooks::Entity)
        .and_where(Expr::col((webhooks::Entity, webhooks::Column::Id)).is_in(webhook_ids.iter().copied()));
    let rows = queued_webhooks::Entity::find().filter(Q::Id.in_subquery(ids)).all(conn).await?;
    Ok(rows.into_iter().map(|row| (row.webhook_id, row)).collect())
}

#[derive(FromQueryResult)]
struct Group {
    webhook_id: i64,
    status: QueueStatus,
    count: i64,
    oldest: Option<DateTime<Utc>>,
    sent_last_minute: Option<i64>,
}

/// The counters of each webhook's rows created since `since` (of the `within` entities when
/// given), as `queueStats` counts them; every webhook asked for has an entry.
pub async fn stats_since(
    conn: &impl ConnectionTrait,
    webhook_ids: &[i64],
    since: DateTime<Utc>,
    within: Option<&[i64]>,
) -> AppResult<HashMap<i64, QueueStats>> {
    let mut out: HashMap<i64, QueueStats> = webhook_ids.iter().map(|id| (*id, QueueStats::default())).collect();
    if webhook_ids.is_empty() {
        return Ok(out);
    }
    let now = Utc::now();
    let minute_ago = now - chrono::Duration::seconds(60);
    let mut query = queued_webhooks::Entity::find()
        .filter(Q::WebhookId.is_in(webhook_ids.iter().copied()))
        .filter(Q::CreateTime.gte(since));
    if let Some(within) = within {
        query = query.filter(Q::EntityId.is_in(within.iter().copied()));
    }
    let recently_sent: Expr = Expr::case(Expr::col(Q::SentTime).gte(minute_ago), 1).finally(0).into();
    let groups = query
        .select_only()
        .column(Q::WebhookId)
        .column(Q::Status)
        .column_as(Expr::col(Q::Id).count(), "count")
        .column_as(Expr::col(Q::CreateTime).min(), "oldest")
        .column_as(recently_sent.sum(), "sent_last_minute")
        .group_by(Q::WebhookId)
        .group_by(Q::Status)
        .into_model::<Group>()
        .all(conn)
        .await?;
    for group in groups {
        let Some(stats) = out.get_mut(&group.webhook_id) else { continue };
        stats.set_count(group.status, group.count);
        match group.status {
            QueueStatus::Pending => {
                stats.oldest_pending_age_seconds =
                    group.oldest.map(|t| std::cmp::max((now - t).num_milliseconds(), 0) as f64 / 1000.0);
            }
            QueueStatus::Sent => stats.sent_last_minute = group.sent_last_minute.unwrap_or(0),
            _ => {}
        }
    }
    Ok(out)
}
