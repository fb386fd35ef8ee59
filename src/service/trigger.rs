//! `triggerEvent`: for systems that own their data. Upserts the snapshot the caller sends (if
//! any) and raises the event it names, changed or not. The event's requests are rendered
//! before the write (outside the writer) for the stored item as the trigger is expected to
//! leave it; the writer renders only when that item, or the webhooks or entity tree, are not
//! the ones rendered for (a new item, a batch that touches one item twice, a cache reloaded).

use serde::Deserialize;
use serde_json::{Map, Value};

use sea_orm::ConnectionTrait;

use chrono::{DateTime, Utc};
use entity::items as item_rows;

use super::{
    events::Intake,
    forecast::{self, Forecast},
    idempotency::{self, Answer, Once},
    items::{self, Changed, ItemId, NewItem, Replacement},
};
use crate::{
    AppState,
    domain::{item::Actor, webhook::WebhookEvent},
    error::{AppError, AppResult},
    queue::Staged,
    telemetry,
};
use tracing::Instrument;

/// One event `triggerEvent` raises.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub itemtype: String,
    pub item_id: String,
    pub event: WebhookEvent,
    /// The snapshot to store first, if any.
    pub snapshot: Option<Value>,
    /// Who raises it: the writer the event carries (and the item's last writer when the
    /// trigger changes it).
    pub actor: Option<Actor>,
}

/// The snapshot `triggerEvent` may carry: the keys of `ItemInput` but `itemtype` and `id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Snapshot {
    name: Option<String>,
    entity_id: Option<Value>,
    fields: Option<Map<String, Value>>,
    parent_itemtype: Option<String>,
    parent_id: Option<Value>,
}

impl Trigger {
    /// The span of the event it raises, in the current span (the caller's operation).
    fn span(&self) -> tracing::Span {
        telemetry::event_span(&self.itemtype, self.event.as_str(), &self.item_id)
    }

    /// The entity the snapshot puts the item in, when it names one that reads as an id (a
    /// malformed one is refused when the trigger runs).
    pub fn snapshot_entity(&self) -> Option<i64> {
        let entity = self.snapshot.as_ref()?.get("entityId")?;
        match entity {
            Value::String(text) => text.parse().ok(),
            Value::Number(number) => number.as_i64(),
            _ => None,
        }
    }
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
pub async fn trigger(state: &AppState, trigger: Trigger, once: Option<Once>) -> AppResult<Changed<()>> {
    let intake = Intake::of(state);
    let parsed = parse(trigger.snapshot.clone())?;
    let now = forecast::write_time();
    let span = trigger.span();
    let forecasts = before_write(state, &intake, &trigger, parsed.as_ref(), now).instrument(span.clone()).await;
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let changed = run(txn, staged, &intake, trigger, parsed, now, forecasts).await?;
                if let Some(once) = &once {
                    idempotency::record(txn, once, &Answer::queued([changed.queued.as_slice()])).await?;
                }
                Ok(changed)
            })
        })
        .instrument(span)
        .await
}

/// Raises every trigger in one transaction, all or nothing: a refused trigger refuses the
/// call, and the error names its index.
pub async fn trigger_many(state: &AppState, triggers: Vec<Trigger>, once: Option<Once>) -> AppResult<Vec<Changed<()>>> {
    items::check_batch(triggers.len())?;
    let mut parsed = Vec::with_capacity(triggers.len());
    for (index, trigger) in triggers.iter().enumerate() {
        parsed.push(parse(trigger.snapshot.clone()).map_err(|e| e.at_index(index))?);
    }
    let intake = Intake::of(state);
    let now = forecast::write_time();
    let mut forecasts = Vec::with_capacity(triggers.len());
    let mut spans = Vec::with_capacity(triggers.len());
    for (trigger, snapshot) in triggers.iter().zip(&parsed) {
        let span = trigger.span();
        forecasts.push(before_write(state, &intake, trigger, snapshot.as_ref(), now).instrument(span.clone()).await);
        spans.push(span);
    }
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let mut results = Vec::with_capacity(triggers.len());
                let each = triggers.into_iter().zip(parsed).zip(forecasts).zip(spans).enumerate();
                for (index, (((trigger, snapshot), forecasts), span)) in each {
                    let result = run(txn, staged, &intake, trigger, snapshot, now, forecasts).instrument(span).await;
                    results.push(result.map_err(|e| e.at_index(index))?);
                }
                if let Some(once) = &once {
                    let answer = Answer::queued(results.iter().map(|changed| changed.queued.as_slice()));
                    idempotency::record(txn, once, &answer).await?;
                }
                Ok(results)
            })
        })
        .await
}

/// The rows the trigger's event will queue, rendered before the write for the stored item as
/// the trigger is expected to leave it: replaced by the snapshot, moved into or out of the
/// trash. Nothing for an item not stored yet (the database numbers it; the writer renders),
/// nor when the item cannot be read or the snapshot would be refused (the writer says why).
async fn before_write(
    state: &AppState,
    intake: &Intake,
    trigger: &Trigger,
    snapshot: Option<&Snapshot>,
    now: DateTime<Utc>,
) -> Vec<Forecast> {
    let Ok(Some(stored)) = items::get(&state.db, &trigger.itemtype, &trigger.item_id).await else {
        return Vec::new();
    };
    let item = match snapshot.cloned().map(|s| replacement(s, trigger.actor.clone())) {
        None => stored.clone(),
        Some(Ok(new)) => match forecast::replaced(&stored, &new, now) {
            Some(item) => item,
            None => return Vec::new(),
        },
        Some(Err(_)) => return Vec::new(),
    };
    let event = trigger.event;
    let changes = if event == WebhookEvent::Update { items::write_changes(&stored, &item) } else { Vec::new() };
    let item = match event {
        WebhookEvent::Delete | WebhookEvent::Restore => {
            let deleted = event == WebhookEvent::Delete;
            if item.is_deleted == deleted {
                item
            } else {
                item_rows::Model { is_deleted: deleted, date_mod: now, ..item }
            }
        }
        // A purge's child items are rendered in the writer.
        WebhookEvent::Purge | WebhookEvent::New | WebhookEvent::Update => item,
    };
    let item = items::written_by(item, trigger.actor.as_ref());
    forecast::before_write(state, intake, event, Some(item), changes).await.into_iter().collect()
}

/// What a snapshot replaces in a stored item: all of it.
fn replacement(snapshot: Snapshot, actor: Option<Actor>) -> AppResult<Replacement> {
    let entity_id = id_text(snapshot.entity_id, "entityId")?.map(|e| parse_entity(&e)).transpose()?;
    Ok(Replacement {
        name: Some(snapshot.name),
        entity_id,
        fields: Some(snapshot.fields.unwrap_or_default()),
        parent: Some((snapshot.parent_itemtype, id_text(snapshot.parent_id, "parentId")?)),
        actor,
    })
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
    now: DateTime<Utc>,
    mut forecasts: Vec<Forecast>,
) -> AppResult<Changed<()>> {
    let Trigger { itemtype, item_id, event, actor, .. } = trigger;
    let (itemtype, item_id) = (itemtype.as_str(), item_id.as_str());
    let batch = staged.batch();
    let stored = items::get(txn, itemtype, item_id).await?;
    // What the snapshot changed: the `changes` of an `update`.
    let mut changes = Vec::new();
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
                actor: actor.clone(),
            };
            items::insert(txn, &intake.cache, batch, new).await?
        }
        (Some(item), Some(snapshot)) => {
            let replacement = replacement(snapshot, actor.clone())?;
            let (item, changed) = items::replace(txn, &intake.cache, batch, item, replacement, now).await?;
            changes = changed;
            item
        }
    };
    let actor = actor.as_ref();
    let queued = match event {
        WebhookEvent::Purge => items::remove(txn, staged, intake, item, forecasts, actor).await?.queued,
        WebhookEvent::Delete | WebhookEvent::Restore => {
            let deleted = event == WebhookEvent::Delete;
            let item = if item.is_deleted != deleted {
                items::mark_deleted(txn, item, deleted, now, actor).await?
            } else {
                item
            };
            let item = items::written_by(item, actor);
            forecast::raise(txn, staged, intake, event, &item, &[], forecasts.pop()).await?
        }
        WebhookEvent::New => {
            let item = items::written_by(item, actor);
            forecast::raise(txn, staged, intake, event, &item, &[], forecasts.pop()).await?
        }
        WebhookEvent::Update => {
            let item = items::written_by(item, actor);
            forecast::raise(txn, staged, intake, event, &item, &changes, forecasts.pop()).await?
        }
    };
    Ok(Changed { item: (), queued })
}

fn parse_entity(text: &str) -> AppResult<i64> {
    text.parse().map_err(|_| AppError::validation(format!("item.entityId: `{text}` is not an entity id")))
}
