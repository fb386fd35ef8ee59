//! `triggerEvent`: for systems that own their data. Upserts the snapshot the caller sends (if
//! any) and raises the event it names, changed or not.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::items::{self, Changed, ItemId, NewItem, Replacement};
use crate::{
    AppState,
    domain::webhook::WebhookEvent,
    error::{AppError, AppResult},
};

/// The snapshot `triggerEvent` may carry: the keys of `ItemInput` but `itemtype` and `id`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Snapshot {
    name: Option<String>,
    entity_id: Option<Value>,
    fields: Option<Map<String, Value>>,
    parent_itemtype: Option<String>,
    parent_id: Option<Value>,
}

fn id_text(value: Option<Value>, field: &str) -> AppResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(AppError::validation(format!("item.{field}: must be a string or a number"))),
    }
}

/// Upserts the snapshot (when given) and raises `event` for the item. `delete` and `restore`
/// also move the stored item into or out of the trash; `purge` removes it after raising.
pub async fn trigger(
    state: &AppState,
    itemtype: &str,
    item_id: &str,
    event: WebhookEvent,
    snapshot: Option<Value>,
) -> AppResult<Changed<()>> {
    let snapshot = match snapshot {
        None | Some(Value::Null) => None,
        Some(value) => Some(serde_json::from_value::<Snapshot>(value).map_err(|e| {
            AppError::validation(format!(
                "item: {e}; expected an object with name, entityId, fields, parentItemtype, parentId"
            ))
        })?),
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let stored = items::get(&txn, itemtype, item_id).await?;
    let item = match (stored, snapshot) {
        (None, None) => {
            return Err(AppError::not_found(format!(
                "no {itemtype} with id `{item_id}` is stored; send its snapshot in `item`"
            )));
        }
        (Some(item), None) => item,
        (None, Some(snapshot)) => {
            let entity_id = id_text(snapshot.entity_id, "entityId")?
                .ok_or_else(|| AppError::validation("item.entityId: required to store a new item"))?;
            let new = NewItem {
                itemtype: itemtype.to_owned(),
                id: ItemId::Given(item_id.to_owned()),
                entity_id: parse_entity(&entity_id)?,
                name: snapshot.name,
                fields: snapshot.fields.map(Value::Object),
                parent_itemtype: snapshot.parent_itemtype,
                parent_id: id_text(snapshot.parent_id, "parentId")?,
            };
            items::insert(&txn, new).await?
        }
        (Some(item), Some(snapshot)) => {
            let entity_id = id_text(snapshot.entity_id, "entityId")?.map(|e| parse_entity(&e)).transpose()?;
            let replacement = Replacement {
                name: Some(snapshot.name),
                entity_id,
                fields: Some(snapshot.fields.unwrap_or_default()),
                parent: Some((snapshot.parent_itemtype, id_text(snapshot.parent_id, "parentId")?)),
            };
            items::replace(&txn, item, replacement).await?.0
        }
    };
    let queued = match event {
        WebhookEvent::Purge => {
            items::remove(&txn, &state.cache, &state.secrets, state.pipeline.config.templates, item).await?.queued
        }
        WebhookEvent::Delete | WebhookEvent::Restore => {
            let deleted = event == WebhookEvent::Delete;
            let item = if item.is_deleted != deleted { items::mark_deleted(&txn, item, deleted).await? } else { item };
            super::events::raise(&txn, &state.cache, &state.secrets, state.pipeline.config.templates, event, &item)
                .await?
        }
        WebhookEvent::New | WebhookEvent::Update => {
            super::events::raise(&txn, &state.cache, &state.secrets, state.pipeline.config.templates, event, &item)
                .await?
        }
    };
    items::commit_and_announce(state, txn, &queued).await?;
    Ok(Changed { item: (), queued })
}

fn parse_entity(text: &str) -> AppResult<i64> {
    text.parse().map_err(|_| AppError::validation(format!("item.entityId: `{text}` is not an entity id")))
}
