//! Items: the latest snapshot of each item hookline is told about, and its history.

use chrono::{DateTime, Utc};
use entity::{items, itemtypes, queued_webhooks};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::{Map, Value};

use super::{
    cache::HotCache,
    events::{self, Intake},
    forecast::{self, Forecast},
    history::{self, NewEntry, Subject},
    idempotency::{self, Answer, Once},
    intake, itemtypes as catalog,
    numbers::{self, NUMBER_LIMIT},
    paging::{Page, PageRequest},
    tree::EntityIndex,
};
use crate::{
    AppState,
    domain::{
        item::{self as rules, Actor, EntityRef, ItemSnapshot},
        webhook::WebhookEvent,
    },
    error::{AppError, AppResult},
    queue::Staged,
    telemetry,
};
use tracing::Instrument;

/// Most inputs of one batch mutation.
pub const MAX_BATCH: usize = 1000;

/// What `createItem` asks for.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub itemtype: String,
    pub id: ItemId,
    pub entity_id: i64,
    pub name: Option<String>,
    pub fields: Option<Value>,
    pub parent_itemtype: Option<String>,
    pub parent_id: Option<String>,
    /// Who creates it (the token's user and profile).
    pub actor: Option<Actor>,
}

/// Where a new item's id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemId {
    /// The caller's own id.
    Given(String),
    /// A number already taken from the itemtype's counter.
    Assigned(String),
    /// The next number of the itemtype's counter, taken in the item's transaction.
    Next,
}

/// What `updateItem` asks for; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct ItemPatch {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub entity_id: Option<i64>,
    /// A JSON merge patch (RFC 7396) of the fields.
    pub fields: Option<Value>,
    /// Who makes the change.
    pub actor: Option<Actor>,
}

pub async fn get(conn: &impl ConnectionTrait, itemtype: &str, id: &str) -> AppResult<Option<items::Model>> {
    Ok(items::Entity::find()
        .filter(items::Column::Itemtype.eq(itemtype))
        .filter(items::Column::Id.eq(id))
        .one(conn)
        .await?)
}

pub async fn require(conn: &impl ConnectionTrait, itemtype: &str, id: &str) -> AppResult<items::Model> {
    get(conn, itemtype, id).await?.ok_or_else(|| AppError::not_found(format!("no {itemtype} with id `{id}`")))
}

/// Items of a type in the order they were first stored; with `entities`, only those in them.
pub async fn list(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    entities: Option<&[i64]>,
    page: PageRequest,
) -> AppResult<Page<items::Model>> {
    let mut base = items::Entity::find().filter(items::Column::Itemtype.eq(itemtype));
    if let Some(entities) = entities {
        base = base.filter(items::Column::EntityId.is_in(entities.iter().copied()));
    }
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_asc(items::Column::Seq).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(items::Column::Seq.gt(after));
    }
    let rows = query.all(conn).await?.into_iter().map(|m| (m.seq, m)).collect();
    Ok(Page::from_fetched(rows, page, total))
}

/// The item document, with the entity taken from a loaded entity tree.
pub fn document_in(entities: &EntityIndex, item: &items::Model) -> AppResult<Value> {
    let entity: EntityRef = entities.entity_ref(item.entity_id)?;
    let fields = as_map(&item.fields);
    Ok(rules::document(&ItemSnapshot {
        id: &item.id,
        name: item.name.as_deref(),
        entity: &entity,
        fields: &fields,
        is_deleted: item.is_deleted,
        date_creation: item.date_creation,
        date_mod: item.date_mod,
    }))
}

/// An item write and the queued webhooks its event produced.
#[derive(Debug, Clone)]
pub struct Changed<T> {
    pub item: T,
    pub queued: Vec<queued_webhooks::Model>,
}

/// Stores a new item and raises `new`. Prepared outside the writer, then stored with the other
/// creates of its batch. With an idempotency key, stored on its own (its answer is recorded
/// with it).
pub async fn create(state: &AppState, input: NewItem, once: Option<Once>) -> AppResult<Changed<items::Model>> {
    let given = matches!(input.id, ItemId::Given(_));
    let changed = match once {
        None => create_grouped(state, input, given).await?,
        Some(once) => create_alone(state, input, Some(once)).await?,
    };
    if given {
        state.numbers.skip_past(&changed.item.itemtype, &changed.item.id).await;
    }
    Ok(changed)
}

/// `given`: the caller chose the item's id (its create may touch a stored row).
async fn create_grouped(state: &AppState, input: NewItem, given: bool) -> AppResult<Changed<items::Model>> {
    let mut preparation = intake::Preparation::new(state).await?;
    let prepared = preparation.prepare(input).await?;
    let span = prepared.span();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = intake::CreateJob { prepared, intake: preparation.intake().clone(), reply };
    if given {
        state.writer.submit(job).await?;
    } else {
        // A new number: the create touches no stored row, any lane may take it.
        state.writer.submit_spread(job).await?;
    }
    // A job is dropped unanswered only when its batch failed before it ran.
    match answer.await.map_err(|_| AppError::not_run())? {
        intake::CreateAnswer::Done(changed) => changed,
        // Refused while alone in its group: nothing of it was kept; once more on its own, in
        // its event's span (its rows' traces start there).
        intake::CreateAnswer::Again(input) => {
            tracing::Instrument::instrument(create_alone(state, input, None), span).await
        }
    }
}

/// One create as a write of its own, the way every other mutation runs (its answer recorded
/// with it under an idempotency key).
async fn create_alone(state: &AppState, input: NewItem, once: Option<Once>) -> AppResult<Changed<items::Model>> {
    let intake = Intake::of(state);
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let changed = create_in(txn, staged, &intake, input).await?;
                if let Some(once) = once {
                    idempotency::record(txn, &once, &Answer::items([&changed.item])).await?;
                }
                Ok(changed)
            })
        })
        .await
}

/// Stores new items and raises `new` for each, all or nothing: a refused input refuses the
/// call, and the error names its index.
pub async fn create_many(state: &AppState, inputs: Vec<NewItem>, once: Option<Once>) -> AppResult<Vec<items::Model>> {
    check_batch(inputs.len())?;
    let given: Vec<bool> = inputs.iter().map(|input| matches!(input.id, ItemId::Given(_))).collect();
    let mut preparation = intake::Preparation::new(state).await?;
    let mut prepared = Vec::with_capacity(inputs.len());
    let mut ids = std::collections::HashSet::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        let one = preparation.prepare(input).await.map_err(|e| e.at_index(index))?;
        if !ids.insert((one.itemtype().to_owned(), one.id().to_owned())) {
            let message = format!("id `{}` is given twice in this call", one.id());
            return Err(AppError::conflict(message).at_index(index));
        }
        prepared.push(one);
    }
    let intake = preparation.intake().clone();
    let spans: Vec<tracing::Span> = prepared.iter().map(intake::Prepared::span).collect();
    let created = state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let created = intake::insert_all_indexed(txn, staged, &intake, prepared).await?;
                if let Some(once) = &once {
                    idempotency::record(txn, once, &Answer::items(created.iter().map(|c| &c.item))).await?;
                }
                Ok(created)
            })
        })
        .await;
    drop(spans);
    let created = created?;
    for (changed, given) in created.iter().zip(given) {
        if given {
            state.numbers.skip_past(&changed.item.itemtype, &changed.item.id).await;
        }
    }
    Ok(created.into_iter().map(|changed| changed.item).collect())
}

/// VALIDATION beyond [`MAX_BATCH`] inputs.
pub fn check_batch(len: usize) -> AppResult<()> {
    if len > MAX_BATCH {
        return Err(AppError::validation(format!(
            "inputs: {len} inputs given, at most {MAX_BATCH} per call; split the batch"
        )));
    }
    Ok(())
}

pub(crate) async fn create_in(
    conn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    input: NewItem,
) -> AppResult<Changed<items::Model>> {
    let item = insert(conn, &intake.cache, staged.batch(), input).await?;
    let queued = events::raise(conn, staged, intake, WebhookEvent::New, &item, &[]).await?;
    Ok(Changed { item, queued })
}

/// Validates and inserts an item, with its first history entry.
pub async fn insert(
    conn: &impl ConnectionTrait,
    cache: &HotCache,
    batch: Option<u64>,
    input: NewItem,
) -> AppResult<items::Model> {
    let itemtype = cache.itemtype(conn, &input.itemtype, "itemtype").await?;
    let fields = rules::checked_fields(input.fields)?;
    let name = rules::checked_text(input.name, "name")?;
    require_entity(conn, cache, batch, input.entity_id).await?;
    let (parent_itemtype, parent_id) = checked_parent(conn, &itemtype, input.parent_itemtype, input.parent_id).await?;
    let id = match input.id {
        ItemId::Given(id) => {
            let id = rules::checked_id(&id)?;
            if get(conn, &itemtype.name, &id).await?.is_some() {
                return Err(AppError::conflict(format!("a {} with id `{id}` already exists", itemtype.name)));
            }
            reserve_numeric_id(conn, &itemtype.name, &id).await?;
            id
        }
        ItemId::Assigned(id) => {
            if get(conn, &itemtype.name, &id).await?.is_some() {
                // A caller gave this number as its own id meanwhile: take the next free one.
                next_free_id(conn, &itemtype.name).await?
            } else {
                id
            }
        }
        ItemId::Next => next_free_id(conn, &itemtype.name).await?,
    };
    let now = Utc::now();
    let model = items::ActiveModel {
        itemtype: Set(itemtype.name.clone()),
        id: Set(id),
        entity_id: Set(input.entity_id),
        name: Set(name),
        fields: Set(Value::Object(fields)),
        parent_itemtype: Set(parent_itemtype),
        parent_id: Set(parent_id),
        is_deleted: Set(false),
        date_creation: Set(now),
        date_mod: Set(now),
        actor_user: Set(input.actor.as_ref().map(|a| a.user.clone())),
        actor_profile: Set(input.actor.as_ref().map(|a| a.profile.clone())),
        ..Default::default()
    };
    let item = items::Entity::insert(model).exec_with_returning(conn).await?;
    let entry = NewEntry::new("create", "Item created").by(input.actor.as_ref());
    history::add(conn, subject(&item), vec![entry]).await?;
    Ok(item)
}

/// The parent an item of `itemtype` may have: both or neither given, a type the itemtype
/// allows, a stored item.
pub(crate) async fn checked_parent(
    conn: &impl ConnectionTrait,
    itemtype: &catalog::Itemtype,
    parent_itemtype: Option<String>,
    parent_id: Option<String>,
) -> AppResult<(Option<String>, Option<String>)> {
    match (parent_itemtype, parent_id) {
        (None, None) => Ok((None, None)),
        (Some(ptype), Some(pid)) => {
            if !itemtype.parent_itemtypes.contains(&ptype) {
                let allowed = if itemtype.parent_itemtypes.is_empty() {
                    "none".to_owned()
                } else {
                    itemtype.parent_itemtypes.join(", ")
                };
                return Err(AppError::validation(format!(
                    "parentItemtype: a {} cannot have a {ptype} as parent (allowed: {allowed})",
                    itemtype.name
                )));
            }
            if get(conn, &ptype, &pid).await?.is_none() {
                return Err(AppError::validation(format!("parentId: no {ptype} with id `{pid}` is stored")));
            }
            Ok((Some(ptype), Some(pid)))
        }
        _ => Err(AppError::validation("parentItemtype and parentId: give both or neither")),
    }
}

/// New values for a stored item; `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct Replacement {
    pub name: Option<Option<String>>,
    pub entity_id: Option<i64>,
    /// The complete new fields.
    pub fields: Option<Map<String, Value>>,
    /// The complete new parent (`(None, None)` removes it).
    pub parent: Option<(Option<String>, Option<String>)>,
    /// Who makes the change: the item's last writer when anything changes.
    pub actor: Option<Actor>,
}

/// Writes the new values and a history entry for each one that changed. Returns the item and
/// what changed (the `changes` of its `update` event, as its history shows them); nothing is
/// written (not even `date_mod`) when nothing did.
pub async fn replace(
    conn: &impl ConnectionTrait,
    cache: &HotCache,
    batch: Option<u64>,
    item: items::Model,
    new: Replacement,
    now: DateTime<Utc>,
) -> AppResult<(items::Model, Vec<rules::Change>)> {
    let mut next = item.clone();
    if let Some(name) = new.name.map(|n| rules::checked_text(n, "name")).transpose()? {
        next.name = name;
    }
    if let Some(entity_id) = new.entity_id
        && entity_id != item.entity_id
    {
        require_entity(conn, cache, batch, entity_id).await?;
        next.entity_id = entity_id;
    }
    if let Some(fields) = new.fields {
        next.fields = Value::Object(rules::checked_fields(Some(Value::Object(fields)))?);
    }
    if let Some((ptype, pid)) = new.parent
        && (ptype.as_ref(), pid.as_ref()) != (item.parent_itemtype.as_ref(), item.parent_id.as_ref())
    {
        let itemtype = cache.itemtype(conn, &item.itemtype, "itemtype").await?;
        (next.parent_itemtype, next.parent_id) = checked_parent(conn, &itemtype, ptype, pid).await?;
    }
    let changes = write_changes(&item, &next);
    if changes.is_empty() {
        return Ok((item, changes));
    }
    let mut active = item.into_active_model();
    active.name = Set(next.name);
    active.entity_id = Set(next.entity_id);
    active.fields = Set(next.fields);
    active.parent_itemtype = Set(next.parent_itemtype);
    active.parent_id = Set(next.parent_id);
    active.date_mod = Set(now);
    active.actor_user = Set(new.actor.as_ref().map(|a| a.user.clone()));
    active.actor_profile = Set(new.actor.as_ref().map(|a| a.profile.clone()));
    let updated = active.update(conn).await?;
    let entries = changes
        .iter()
        .map(|c| {
            let message = format!("{} changed", c.field);
            NewEntry::change("update", message, c.old_value.clone(), c.new_value.clone()).by(new.actor.as_ref())
        })
        .collect();
    history::add(conn, subject(&updated), entries).await?;
    Ok((updated, changes))
}

/// What a write from `old` to `new` changes, in the order of the item's history entries:
/// `name`, `entity` (ids), each field (top-level keys, sorted), `parent` (`"<itemtype> <id>"`).
pub fn write_changes(old: &items::Model, new: &items::Model) -> Vec<rules::Change> {
    let change = |field: &str, old_value: Option<String>, new_value: Option<String>| rules::Change {
        field: field.to_owned(),
        old_value,
        new_value,
    };
    let mut changes = Vec::new();
    if old.name != new.name {
        changes.push(change("name", old.name.clone(), new.name.clone()));
    }
    if old.entity_id != new.entity_id {
        changes.push(change("entity", Some(old.entity_id.to_string()), Some(new.entity_id.to_string())));
    }
    changes.extend(rules::changes(&as_map(&old.fields), &as_map(&new.fields)));
    let parent = |item: &items::Model| {
        item.parent_itemtype.as_ref().zip(item.parent_id.as_ref()).map(|(t, i)| format!("{t} {i}"))
    };
    if (&old.parent_itemtype, &old.parent_id) != (&new.parent_itemtype, &new.parent_id) {
        changes.push(change("parent", parent(old), parent(new)));
    }
    changes
}

/// Applies the patch; raises `update` only when the stored snapshot changed. The event's
/// requests are rendered before the write for the item as the patch will leave it.
pub async fn update(
    state: &AppState,
    itemtype: &str,
    id: &str,
    patch: ItemPatch,
    once: Option<Once>,
) -> AppResult<Changed<items::Model>> {
    let (intake, itemtype, id) = (Intake::of(state), itemtype.to_owned(), id.to_owned());
    let now = forecast::write_time();
    let before = get(&state.db, &itemtype, &id).await?;
    let expected = before.as_ref().and_then(|item| forecast::patched(item, &patch, now));
    let changes = before.as_ref().zip(expected.as_ref()).map(|(b, e)| write_changes(b, e)).unwrap_or_default();
    let span = telemetry::event_span(&itemtype, WebhookEvent::Update.as_str(), &id);
    let forecast =
        forecast::before_write(state, &intake, WebhookEvent::Update, expected, changes).instrument(span.clone()).await;
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let item = require(txn, &itemtype, &id).await?;
                let fields = match patch.fields {
                    None => None,
                    Some(Value::Object(patch)) => Some(rules::merge_fields(&as_map(&item.fields), &patch)),
                    Some(_) => return Err(AppError::validation("fields: must be a JSON object (a merge patch)")),
                };
                let replacement = Replacement {
                    name: patch.name,
                    entity_id: patch.entity_id,
                    fields,
                    parent: None,
                    actor: patch.actor,
                };
                let (item, changes) = replace(txn, &intake.cache, staged.batch(), item, replacement, now).await?;
                let queued = if !changes.is_empty() {
                    forecast::raise(txn, staged, &intake, WebhookEvent::Update, &item, &changes, forecast).await?
                } else {
                    Vec::new()
                };
                if let Some(once) = &once {
                    idempotency::record(txn, once, &Answer::items([&item])).await?;
                }
                Ok(Changed { item, queued })
            })
        })
        .instrument(span)
        .await
}

/// Puts the item in the trash or takes it out, with its history entry.
pub async fn mark_deleted(
    conn: &impl ConnectionTrait,
    item: items::Model,
    deleted: bool,
    now: DateTime<Utc>,
    actor: Option<&Actor>,
) -> AppResult<items::Model> {
    let mut active = item.into_active_model();
    active.is_deleted = Set(deleted);
    active.date_mod = Set(now);
    active.actor_user = Set(actor.map(|a| a.user.clone()));
    active.actor_profile = Set(actor.map(|a| a.profile.clone()));
    let updated = active.update(conn).await?;
    let entry = if deleted {
        NewEntry::new("delete", "Item put in the trash").by(actor)
    } else {
        NewEntry::new("restore", "Item restored from the trash").by(actor)
    };
    history::add(conn, subject(&updated), vec![entry]).await?;
    Ok(updated)
}

/// Puts the item in the trash (`delete`) or takes it out (`restore`), and raises that event.
pub async fn set_deleted(
    state: &AppState,
    itemtype: &str,
    id: &str,
    deleted: bool,
    actor: Option<Actor>,
    once: Option<Once>,
) -> AppResult<Changed<items::Model>> {
    let (intake, itemtype, id) = (Intake::of(state), itemtype.to_owned(), id.to_owned());
    let event = if deleted { WebhookEvent::Delete } else { WebhookEvent::Restore };
    let now = forecast::write_time();
    let expected = get(&state.db, &itemtype, &id)
        .await?
        .filter(|item| item.is_deleted != deleted)
        .map(|item| items::Model { is_deleted: deleted, date_mod: now, ..written_by(item, actor.as_ref()) });
    let span = telemetry::event_span(&itemtype, event.as_str(), &id);
    let forecast = forecast::before_write(state, &intake, event, expected, Vec::new()).instrument(span.clone()).await;
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let item = require(txn, &itemtype, &id).await?;
                if item.is_deleted == deleted {
                    return Err(AppError::conflict(if deleted {
                        format!("{itemtype} `{id}` is already in the trash; restore or purge it")
                    } else {
                        format!("{itemtype} `{id}` is not in the trash")
                    }));
                }
                let item = mark_deleted(txn, item, deleted, now, actor.as_ref()).await?;
                let queued = forecast::raise(txn, staged, &intake, event, &item, &[], forecast).await?;
                if let Some(once) = &once {
                    idempotency::record(txn, once, &Answer::items([&item])).await?;
                }
                Ok(Changed { item, queued })
            })
        })
        .instrument(span)
        .await
}

/// Raises `purge` with the last snapshot of the item and of each child item (a ticket's
/// followups), then removes them and their history for good. Returns the removed items.
/// Run it in the span of the item's purge event; each child's event has a span of its own
/// (its forecast's, else a new child of that one).
pub async fn remove(
    conn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    item: items::Model,
    mut forecasts: Vec<Forecast>,
    actor: Option<&Actor>,
) -> AppResult<Changed<Vec<items::Model>>> {
    let children = children_of(conn, &item).await?;
    let mut removed = vec![item];
    removed.extend(children);
    // The purge event's writer is whoever purges.
    let removed: Vec<items::Model> = removed.into_iter().map(|gone| written_by(gone, actor)).collect();
    let mut queued = Vec::new();
    let purge = tracing::Span::current();
    for (index, gone) in removed.iter().enumerate() {
        let forecast = forecasts.iter().position(|f| f.is_for(gone.seq)).map(|i| forecasts.swap_remove(i));
        let span = match &forecast {
            _ if index == 0 => purge.clone(),
            Some(forecast) => forecast.span().clone(),
            None => purge.in_scope(|| telemetry::event_span(&gone.itemtype, WebhookEvent::Purge.as_str(), &gone.id)),
        };
        let raise = forecast::raise(conn, staged, intake, WebhookEvent::Purge, gone, &[], forecast);
        queued.extend(raise.instrument(span).await?);
    }
    for gone in removed.iter().rev() {
        history::purge(conn, subject(gone)).await?;
        items::Entity::delete_by_id(gone.seq).exec(conn).await?;
    }
    Ok(Changed { item: removed, queued })
}

/// The item with `actor` as its last writer.
pub fn written_by(item: items::Model, actor: Option<&Actor>) -> items::Model {
    items::Model { actor_user: actor.map(|a| a.user.clone()), actor_profile: actor.map(|a| a.profile.clone()), ..item }
}

async fn children_of(conn: &impl ConnectionTrait, item: &items::Model) -> AppResult<Vec<items::Model>> {
    Ok(items::Entity::find()
        .filter(items::Column::ParentItemtype.eq(&item.itemtype))
        .filter(items::Column::ParentId.eq(&item.id))
        .all(conn)
        .await?)
}

/// Raises `purge` for the item and its children and removes them; the requests are rendered
/// before the write for the snapshots as they are.
pub async fn purge(
    state: &AppState,
    itemtype: &str,
    id: &str,
    actor: Option<Actor>,
    once: Option<Once>,
) -> AppResult<Changed<Vec<items::Model>>> {
    let (intake, itemtype, id) = (Intake::of(state), itemtype.to_owned(), id.to_owned());
    let span = telemetry::event_span(&itemtype, WebhookEvent::Purge.as_str(), &id);
    let forecasts = purge_forecasts(state, &intake, &itemtype, &id, actor.as_ref()).instrument(span.clone()).await?;
    state
        .writer
        .write(move |txn, staged| {
            Box::pin(async move {
                let item = require(txn, &itemtype, &id).await?;
                let removed = remove(txn, staged, &intake, item, forecasts, actor.as_ref()).await?;
                if let Some(once) = &once {
                    idempotency::record(txn, once, &Answer::Done).await?;
                }
                Ok(removed)
            })
        })
        .instrument(span)
        .await
}

/// The purge events' rows for the stored item and its children, rendered before the write.
/// Run it in the span of the item's purge event: each child's event gets a span of its own
/// inside it.
pub async fn purge_forecasts(
    state: &AppState,
    intake: &Intake,
    itemtype: &str,
    id: &str,
    actor: Option<&Actor>,
) -> AppResult<Vec<Forecast>> {
    let mut forecasts = Vec::new();
    if let Some(item) = get(&state.db, itemtype, id).await? {
        let children = children_of(&state.db, &item).await?;
        let snapshot = written_by(item, actor);
        forecasts.extend(forecast::before_write(state, intake, WebhookEvent::Purge, Some(snapshot), Vec::new()).await);
        for child in children {
            let span = telemetry::event_span(&child.itemtype, WebhookEvent::Purge.as_str(), &child.id);
            let snapshot = written_by(child, actor);
            let forecast = forecast::before_write(state, intake, WebhookEvent::Purge, Some(snapshot), Vec::new());
            forecasts.extend(forecast.instrument(span).await);
        }
    }
    Ok(forecasts)
}

pub fn subject(item: &items::Model) -> Subject<'_> {
    Subject::Item { itemtype: &item.itemtype, id: &item.id }
}

pub fn as_map(value: &Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    }
}

async fn require_entity(
    conn: &impl ConnectionTrait,
    cache: &HotCache,
    batch: Option<u64>,
    entity_id: i64,
) -> AppResult<()> {
    if !cache.entities_in(conn, batch).await?.contains(entity_id) {
        return Err(AppError::validation(format!("entityId: no entity with id {entity_id}")));
    }
    Ok(())
}

/// Takes the itemtype's next number, skipping numbers a caller already used as ids.
async fn next_free_id(conn: &impl ConnectionTrait, itemtype: &str) -> AppResult<String> {
    loop {
        let stmt = Query::update()
            .table(itemtypes::Entity)
            .value(itemtypes::Column::NextItemId, Expr::col(itemtypes::Column::NextItemId).add(1))
            .and_where(itemtypes::Column::Name.eq(itemtype))
            .and_where(itemtypes::Column::NextItemId.lt(NUMBER_LIMIT))
            .returning_col(itemtypes::Column::NextItemId)
            .to_owned();
        // The itemtype exists (the caller found it), so no row means no number left.
        let row = conn.query_one(&stmt).await?.ok_or_else(|| numbers::exhausted(itemtype))?;
        let next: i64 = row.try_get("", "next_item_id")?;
        let candidate = next.saturating_sub(1).to_string();
        if get(conn, itemtype, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
}

/// Keeps assigned numbers above a caller-given numeric id below 2^53 (see
/// [`numbers::NUMBER_LIMIT`]).
pub(crate) async fn reserve_numeric_id(conn: &impl ConnectionTrait, itemtype: &str, id: &str) -> AppResult<()> {
    let Some(n) = numbers::counted(id) else {
        return Ok(());
    };
    let stmt = Query::update()
        .table(itemtypes::Entity)
        .value(itemtypes::Column::NextItemId, n.saturating_add(1))
        .and_where(itemtypes::Column::Name.eq(itemtype))
        .and_where(itemtypes::Column::NextItemId.lte(n))
        .to_owned();
    conn.execute(&stmt).await?;
    Ok(())
}
