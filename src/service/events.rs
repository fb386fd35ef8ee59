//! Raising an event: every matching webhook renders its request and joins the queue, in the
//! caller's transaction, so the item write and its queue rows commit together.

use chrono::Utc;
use entity::{
    items, queued_webhooks,
    queued_webhooks::status::{FAILED, PENDING},
};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait};
use serde_json::Value;

use super::{cache::HotCache, items::document_in, tree::EntityIndex, webhooks::Webhook};
use crate::{
    domain::{matching::entity_matches, payload::ApiData, render::render, webhook::WebhookEvent},
    error::AppResult,
};

/// The PostgreSQL channel that tells every hookline process that rows were queued.
pub const QUEUE_CHANNEL: &str = "hookline_queue";

/// The template variables of an event for an item: `event`, `item`, and `parent_item` when
/// the item has a stored parent.
pub async fn api_data(
    conn: &impl ConnectionTrait,
    entities: &EntityIndex,
    event: WebhookEvent,
    item: &items::Model,
) -> AppResult<ApiData> {
    let parent_item = match (&item.parent_itemtype, &item.parent_id) {
        (Some(ptype), Some(pid)) => match super::items::get(conn, ptype, pid).await? {
            Some(parent) => Some(document_in(entities, &parent)?),
            None => None,
        },
        _ => None,
    };
    Ok(ApiData { item: document_in(entities, item)?, event: event.as_str(), parent_item })
}

/// Queues every active webhook of the item's type and the event whose entity scope holds
/// the item. A webhook whose request cannot be rendered gets a FAILED row saying why; the
/// others go on. Returns the queued rows.
pub async fn raise(
    conn: &impl ConnectionTrait,
    cache: &HotCache,
    event: WebhookEvent,
    item: &items::Model,
) -> AppResult<Vec<queued_webhooks::Model>> {
    let candidates = cache.webhooks(conn, &item.itemtype, event.as_str()).await?;
    if !candidates.iter().any(|w| w.settings.is_active) {
        return Ok(Vec::new());
    }
    let entities = cache.entities(conn).await?;
    let chain = entities.chain(item.entity_id);
    let matching: Vec<&Webhook> = candidates
        .iter()
        .filter(|w| w.settings.is_active && entity_matches(w.settings.entity_id, w.settings.is_recursive, &chain))
        .collect();
    if matching.is_empty() {
        return Ok(Vec::new());
    }
    let data = api_data(conn, &entities, event, item).await?;
    let now = Utc::now();
    let mut rows = Vec::with_capacity(matching.len());
    for webhook in matching {
        let rendered = render(&webhook.settings, &data);
        let (url, headers, body, status, last_error) = match rendered {
            Ok(r) => (r.url, Value::Object(r.headers), Some(r.body), PENDING, None),
            Err(reason) => {
                (webhook.settings.url.clone(), Value::Object(Default::default()), None, FAILED, Some(reason))
            }
        };
        rows.push(queued_webhooks::ActiveModel {
            webhook_id: Set(webhook.id),
            itemtype: Set(item.itemtype.clone()),
            item_id: Set(item.id.clone()),
            entity_id: Set(item.entity_id),
            event: Set(event.as_str().to_owned()),
            url: Set(url),
            http_method: Set(webhook.settings.http_method.as_str().to_owned()),
            headers: Set(headers),
            body: Set(body),
            status: Set(status.to_owned()),
            sent_try: Set(0),
            max_attempts: Set(webhook.settings.sent_try + 1),
            delivery_id: Set(format!("msg_{}", uuid::Uuid::now_v7().simple())),
            create_time: Set(now),
            send_time: Set(now),
            sent_time: Set(None),
            last_status_code: Set(None),
            response_body: Set(None),
            last_error: Set(last_error),
            save_response_body: Set(webhook.settings.save_response_body),
            log_in_item_history: Set(webhook.settings.log_in_item_history),
            lease_until: Set(None),
            ..Default::default()
        });
    }
    let queued = queued_webhooks::Entity::insert_many(rows).exec_with_returning(conn).await?;
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared(&format!("NOTIFY {QUEUE_CHANNEL}")).await?;
    }
    Ok(queued)
}
