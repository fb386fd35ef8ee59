//! Rendering an event's requests before its write, outside the writer: for the item as the
//! write is expected to leave it, against the webhooks and entity tree as last loaded. The
//! writer uses the rows when the stored item and both caches are the ones they were rendered
//! for, and renders again (within each webhook's budget) when not; either way the rows commit
//! in the item's transaction.

use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use entity::{items, queued_webhooks};
use sea_orm::ConnectionTrait;
use serde_json::Value;

use super::{
    cache::CachedWebhook,
    coalesce,
    events::{self, Intake},
    items::{ItemPatch, Replacement, as_map},
    tree::EntityIndex,
};
use crate::{
    AppState,
    domain::{
        item::{self as rules, Change},
        webhook::WebhookEvent,
    },
    error::AppResult,
    queue::Staged,
};

/// The rows an event will queue, rendered before the write (outside the writer) for the item
/// as the write is expected to leave it, and the webhooks and entity tree they came from.
pub struct Forecast {
    item: items::Model,
    /// The write's expected changes (`update` only), which the rows were rendered with.
    changes: Vec<Change>,
    queued: Vec<queued_webhooks::Model>,
    webhooks: Arc<Vec<CachedWebhook>>,
    entities: Arc<EntityIndex>,
    /// The span of the event it was rendered in (its rows carry that span's trace).
    span: tracing::Span,
}

/// Renders an event's rows for `item` as it is expected to be stored, outside the writer, in
/// the event's span (the current one). The caches are taken as last loaded: [`raise`] checks
/// them.
pub async fn forecast(
    conn: &impl ConnectionTrait,
    intake: &Intake,
    event: WebhookEvent,
    item: items::Model,
    changes: Vec<Change>,
) -> AppResult<Option<Forecast>> {
    let cache = &intake.cache;
    let webhooks = match cache.webhooks_hint(&item.itemtype, event.as_str()) {
        Some(list) => list,
        None => cache.webhooks(conn, &intake.secrets, &item.itemtype, event.as_str(), intake.limits, None).await?,
    };
    let entities = match cache.entities_hint() {
        Some(entities) => entities,
        None => cache.entities(conn).await?,
    };
    if !entities.contains(item.entity_id) {
        return Ok(None);
    }
    let queued = events::plan(conn, intake, event, &item, &changes, &webhooks, &entities).await?;
    Ok(Some(Forecast { item, changes, queued, webhooks, entities, span: tracing::Span::current() }))
}

impl Forecast {
    /// The span of the event it was rendered for.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Whether it was rendered for the stored item of this `seq`.
    pub fn is_for(&self, seq: i64) -> bool {
        self.item.seq == seq
    }
}

/// Like [`events::raise`], with the rows of a forecast when it holds: the stored item and the
/// write's changes are the ones it was rendered for, and the webhooks and entity tree have not
/// changed since. Otherwise the rows are rendered here, within each webhook's budget.
pub async fn raise(
    conn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    event: WebhookEvent,
    item: &items::Model,
    changes: &[Change],
    forecast: Option<Forecast>,
) -> AppResult<Vec<queued_webhooks::Model>> {
    if let Some(forecast) = forecast.filter(|f| f.item == *item && f.changes == changes) {
        let webhooks = intake
            .cache
            .webhooks(conn, &intake.secrets, &item.itemtype, event.as_str(), intake.limits, staged.batch())
            .await?;
        let entities = intake.cache.entities_in(conn, staged.batch()).await?;
        if Arc::ptr_eq(&webhooks, &forecast.webhooks) && Arc::ptr_eq(&entities, &forecast.entities) {
            intake.count_event(staged, item, event);
            return coalesce::enqueue(
                conn,
                staged,
                intake,
                event,
                item,
                changes,
                forecast.queued,
                &webhooks,
                &entities,
            )
            .await;
        }
        tracing::debug!(item = %item.id, "the webhooks or entities changed since the forecast; rendering again");
    }
    events::raise(conn, staged, intake, event, item, changes).await
}

/// The time of a write, to the microsecond (what both databases keep), so that an item
/// forecast before the write equals the one stored.
pub fn write_time() -> DateTime<Utc> {
    let now = Utc::now();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now)
}

/// The item as `patch` is expected to leave it, if it changes anything.
pub fn patched(item: &items::Model, patch: &ItemPatch, now: DateTime<Utc>) -> Option<items::Model> {
    let mut next = item.clone();
    if let Some(name) = &patch.name {
        next.name = rules::checked_text(name.clone(), "name").ok()?;
    }
    if let Some(entity_id) = patch.entity_id {
        next.entity_id = entity_id;
    }
    if let Some(Value::Object(patch)) = &patch.fields {
        let old = as_map(&item.fields);
        let fields = rules::checked_fields(Some(Value::Object(rules::merge_fields(&old, patch)))).ok()?;
        if !rules::changes(&old, &fields).is_empty() {
            next.date_mod = now;
        }
        next.fields = Value::Object(fields);
    }
    if next.name != item.name || next.entity_id != item.entity_id {
        next.date_mod = now;
    }
    (next.date_mod == now).then(|| super::items::written_by(next, patch.actor.as_ref()))
}

/// The item as `replace` with `new` is expected to leave it (`date_mod` moved when anything
/// changes); `None` when a value would be refused.
pub fn replaced(item: &items::Model, new: &Replacement, now: DateTime<Utc>) -> Option<items::Model> {
    let mut next = item.clone();
    if let Some(name) = &new.name {
        next.name = rules::checked_text(name.clone(), "name").ok()?;
    }
    if let Some(entity_id) = new.entity_id {
        next.entity_id = entity_id;
    }
    if let Some(fields) = &new.fields {
        next.fields = Value::Object(rules::checked_fields(Some(Value::Object(fields.clone()))).ok()?);
    }
    if let Some((parent_itemtype, parent_id)) = &new.parent {
        next.parent_itemtype.clone_from(parent_itemtype);
        next.parent_id.clone_from(parent_id);
    }
    if next != *item {
        next.date_mod = now;
        next = super::items::written_by(next, new.actor.as_ref());
    }
    Some(next)
}

/// The rows an event will queue for the item as a write is expected to leave it, rendered
/// before the write, outside the writer; `None` when there is nothing to forecast or the
/// forecast cannot be made (the writer then renders).
/// `changes`: what the write is expected to change (`update`; empty otherwise).
pub async fn before_write(
    state: &AppState,
    intake: &Intake,
    event: WebhookEvent,
    expected: Option<items::Model>,
    changes: Vec<Change>,
) -> Option<Forecast> {
    forecast(&state.db, intake, event, expected?, changes).await.ok().flatten()
}
