//! `triggerEvent`: for systems that own their data. Upserts the snapshot the caller sends (if
//! any) and raises the event it names, changed or not.

use serde::Deserialize;
use serde_json::{Map, Value};

use sea_orm::ConnectionTrait;

use super::{
    events::{self, Intake},
    items::{self, Changed, ItemId, NewItem, Replacement},
};
use crate::{
    AppState,
    domain::webhook::WebhookEvent,
    error::{AppError, AppResult},
    queue::Staged,
};

/// One event `triggerEvent` raises.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub itemtype: String,
    pub item_id: String,
    pub event: WebhookEvent,
    /// The snapshot to store first, if any.
    pub snapshot: Option<Value>,
}

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
pub async fn trigger(state: &AppState, trigger: Trigger) -> AppResult<Changed<()>> {
    let intake = Intake::of(state);
    let parsed = parse(trigger.snapshot.clone())?;
    state
        .writer
        .write(move |txn, staged| Box::pin(async move { run(txn, staged, &intake, trigger, parsed).await }))
        .await
}

/// Raises every trigger in one transaction, all or nothing: a refused trigger refuses the
/// call, and the error names its index.
pub async fn trigger_many(state: &AppState, triggers: Vec<Trigger>) -> AppResult<Vec<Changed<()>>> {
    items::check_batch(triggers.len())?;
    let mut parsed = Vec::with_capacity(triggers.len());
    for (index, trigger) in triggers.iter().enumerate() {
        parsed.push(parse(trigger.snapshot.clone()).map_err(|e| e.at_index(index))?);
    }
    let intake = Intake::of(state);
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let mut results = Vec::with_capacity(triggers.len());
                for (index, (trigger, snapshot)) in triggers.into_iter().zip(parsed).enumerate() {
                    results.push(run(txn, staged, &intake, trigger, snapshot).await.map_err(|e| e.at_index(index))?);
                }
                Ok(results)
            })
        })
        .await
}

fn parse(snapshot: Option<Value>) -> AppResult<Option<Snapshot>> {
    match snapshot {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Ok(Some(serde_json::from_value::<Snapshot>(value).map_err(|e| {
            AppError::validation(format!(
                "item: {e}; expected an object with name, entityId, fields, parentItemtype, parentId"
            ))
        })?)),
    }
}

async fn run(
    txn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    trigger: Trigger,
    snapshot: Option<Snapshot>,
) -> AppResult<Changed<()>> {
    let Trigger { itemtype, item_id, event, .. } = trigger;
    let (itemtype, item_id) = (itemtype.as_str(), item_id.as_str());
    let batch = staged.batch();
    let stored = items::get(txn, itemtype, item_id).await?;
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
            items::insert(txn, &intake.cache, batch, new).await?
        }
        (Some(item), Some(snapshot)) => {
            let entity_id = id_text(snapshot.entity_id, "entityId")?.map(|e| parse_entity(&e)).transpose()?;
            let replacement = Replacement {
                name: Some(snapshot.name),
                entity_id,
                fields: Some(snapshot.fields.unwrap_or_default()),
                parent: Some((snapshot.parent_itemtype, id_text(snapshot.parent_id, "parentId")?)),
            };
            items::replace(txn, &intake.cache, batch, item, replacement, super::forecast::write_time()).await?.0
        }
    };
    let queued = match event {
        WebhookEvent::Purge => items::remove(txn, staged, intake, item, Vec::new()).await?.queued,
        WebhookEvent::Delete | WebhookEvent::Restore => {
            let deleted = event == WebhookEvent::Delete;
            let item = if item.is_deleted != deleted {
                items::mark_deleted(txn, item, deleted, super::forecast::write_time()).await?
            } else {
                item
            };
            events::raise(txn, staged, intake, event, &item).await?
        }
        WebhookEvent::New | WebhookEvent::Update => events::raise(txn, staged, intake, event, &item).await?,
    };
    Ok(Changed { item: (), queued })
}

fn parse_entity(text: &str) -> AppResult<i64> {
    text.parse().map_err(|_| AppError::validation(format!("item.entityId: `{text}` is not an entity id")))
}
