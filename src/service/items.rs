//! Items: the latest snapshot of each item hookline is told about, and its history.

use chrono::Utc;
use entity::{items, itemtypes};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::{Map, Value};

use super::{
    history::{self, NewEntry, Subject},
    itemtypes as catalog,
    paging::{Page, PageRequest},
    tree::ENTITIES,
};
use crate::{
    domain::item::{self as rules, EntityRef, ItemSnapshot},
    error::{AppError, AppResult},
};

/// What `createItem` asks for.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub itemtype: String,
    pub id: Option<String>,
    pub entity_id: i64,
    pub name: Option<String>,
    pub fields: Option<Value>,
    pub parent_itemtype: Option<String>,
    pub parent_id: Option<String>,
}

/// What `updateItem` asks for; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct ItemPatch {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub entity_id: Option<i64>,
    /// A JSON merge patch (RFC 7396) of the fields.
    pub fields: Option<Value>,
}

pub async fn get(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    id: &str,
) -> AppResult<Option<items::Model>> {
    Ok(items::Entity::find()
        .filter(items::Column::Itemtype.eq(itemtype))
        .filter(items::Column::Id.eq(id))
        .one(conn)
        .await?)
}

pub async fn require(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    id: &str,
) -> AppResult<items::Model> {
    get(conn, itemtype, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no {itemtype} with id `{id}`")))
}

/// Items of a type in the order they were first stored.
pub async fn list(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    page: PageRequest,
) -> AppResult<Page<items::Model>> {
    let base = items::Entity::find().filter(items::Column::Itemtype.eq(itemtype));
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_asc(items::Column::Seq).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(items::Column::Seq.gt(after));
    }
    let rows = query
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.seq, m))
        .collect();
    Ok(Page::from_fetched(rows, page, total))
}

/// The item document templates and filters see (entity resolved from the store).
pub async fn document(conn: &impl ConnectionTrait, item: &items::Model) -> AppResult<Value> {
    let entity = ENTITIES.require(conn, item.entity_id).await?;
    let entity = EntityRef {
        id: entity.id,
        name: entity.name,
        completename: entity.completename,
    };
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

pub async fn create(db: &DatabaseConnection, input: NewItem) -> AppResult<items::Model> {
    let txn = crate::db::begin_write(db).await?;
    let itemtype = catalog::require(&txn, &input.itemtype, "itemtype").await?;
    let fields = rules::checked_fields(input.fields)?;
    require_entity(&txn, input.entity_id).await?;
    let (parent_itemtype, parent_id) = match (input.parent_itemtype, input.parent_id) {
        (None, None) => (None, None),
        (Some(ptype), Some(pid)) => {
            if !itemtype.parent_itemtypes.contains(&ptype) {
                return Err(AppError::validation(format!(
                    "parentItemtype: a {} cannot have a {ptype} as parent (allowed: {})",
                    itemtype.name,
                    if itemtype.parent_itemtypes.is_empty() {
                        "none".into()
                    } else {
                        itemtype.parent_itemtypes.join(", ")
                    }
                )));
            }
            if get(&txn, &ptype, &pid).await?.is_none() {
                return Err(AppError::validation(format!(
                    "parentId: no {ptype} with id `{pid}` is stored"
                )));
            }
            (Some(ptype), Some(pid))
        }
        _ => {
            return Err(AppError::validation(
                "parentItemtype and parentId: give both or neither",
            ));
        }
    };
    let id = match input.id {
        Some(id) => {
            let id = rules::checked_id(&id)?;
            if get(&txn, &itemtype.name, &id).await?.is_some() {
                return Err(AppError::conflict(format!(
                    "a {} with id `{id}` already exists",
                    itemtype.name
                )));
            }
            reserve_numeric_id(&txn, &itemtype.name, &id).await?;
            id
        }
        None => next_free_id(&txn, &itemtype.name).await?,
    };
    let now = Utc::now();
    let model = items::ActiveModel {
        itemtype: Set(itemtype.name.clone()),
        id: Set(id),
        entity_id: Set(input.entity_id),
        name: Set(input.name),
        fields: Set(Value::Object(fields)),
        parent_itemtype: Set(parent_itemtype),
        parent_id: Set(parent_id),
        is_deleted: Set(false),
        date_creation: Set(now),
        date_mod: Set(now),
        ..Default::default()
    };
    let item = items::Entity::insert(model)
        .exec_with_returning(&txn)
        .await?;
    history::add(
        &txn,
        subject(&item),
        vec![NewEntry::new("create", "Item created")],
    )
    .await?;
    txn.commit().await?;
    Ok(item)
}

/// Applies the patch. Returns the item and whether its snapshot changed; nothing is written
/// (not even `date_mod`) when it did not.
pub async fn update(
    db: &DatabaseConnection,
    itemtype: &str,
    id: &str,
    patch: ItemPatch,
) -> AppResult<(items::Model, bool)> {
    let txn = crate::db::begin_write(db).await?;
    let item = require(&txn, itemtype, id).await?;
    let mut entries = Vec::new();
    let mut active = item.clone().into_active_model();
    if let Some(name) = patch.name
        && name != item.name
    {
        entries.push(NewEntry::change(
            "update",
            "name changed",
            item.name.clone(),
            name.clone(),
        ));
        active.name = Set(name);
    }
    if let Some(entity_id) = patch.entity_id
        && entity_id != item.entity_id
    {
        require_entity(&txn, entity_id).await?;
        entries.push(NewEntry::change(
            "update",
            "entity changed",
            Some(item.entity_id.to_string()),
            Some(entity_id.to_string()),
        ));
        active.entity_id = Set(entity_id);
    }
    if let Some(patch) = patch.fields {
        let Value::Object(patch) = patch else {
            return Err(AppError::validation(
                "fields: must be a JSON object (a merge patch)",
            ));
        };
        let old = as_map(&item.fields);
        let new = rules::checked_fields(Some(Value::Object(rules::merge_fields(&old, &patch))))?;
        for change in rules::changes(&old, &new) {
            entries.push(NewEntry::change(
                "update",
                format!("{} changed", change.field),
                change.old_value,
                change.new_value,
            ));
        }
        active.fields = Set(Value::Object(new));
    }
    if entries.is_empty() {
        return Ok((item, false));
    }
    active.date_mod = Set(Utc::now());
    let updated = active.update(&txn).await?;
    history::add(&txn, subject(&updated), entries).await?;
    txn.commit().await?;
    Ok((updated, true))
}

/// Puts the item in the trash (`delete`) or takes it out (`restore`).
pub async fn set_deleted(
    db: &DatabaseConnection,
    itemtype: &str,
    id: &str,
    deleted: bool,
) -> AppResult<items::Model> {
    let txn = crate::db::begin_write(db).await?;
    let item = require(&txn, itemtype, id).await?;
    if item.is_deleted == deleted {
        return Err(AppError::conflict(if deleted {
            format!("{itemtype} `{id}` is already in the trash; restore or purge it")
        } else {
            format!("{itemtype} `{id}` is not in the trash")
        }));
    }
    let mut active = item.into_active_model();
    active.is_deleted = Set(deleted);
    active.date_mod = Set(Utc::now());
    let updated = active.update(&txn).await?;
    let entry = if deleted {
        NewEntry::new("delete", "Item put in the trash")
    } else {
        NewEntry::new("restore", "Item restored from the trash")
    };
    history::add(&txn, subject(&updated), vec![entry]).await?;
    txn.commit().await?;
    Ok(updated)
}

/// Removes the item, its history and its child items (a ticket's followups) for good.
/// Returns the removed items, the item itself first.
pub async fn purge(
    db: &DatabaseConnection,
    itemtype: &str,
    id: &str,
) -> AppResult<Vec<items::Model>> {
    let txn = crate::db::begin_write(db).await?;
    let item = require(&txn, itemtype, id).await?;
    let children = items::Entity::find()
        .filter(items::Column::ParentItemtype.eq(itemtype))
        .filter(items::Column::ParentId.eq(id))
        .all(&txn)
        .await?;
    let mut removed = vec![item];
    removed.extend(children);
    for gone in &removed {
        history::purge(&txn, subject(gone)).await?;
        items::Entity::delete_by_id(gone.seq).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(removed)
}

pub fn subject(item: &items::Model) -> Subject<'_> {
    Subject::Item {
        itemtype: &item.itemtype,
        id: &item.id,
    }
}

pub fn as_map(value: &Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    }
}

async fn require_entity(conn: &impl ConnectionTrait, entity_id: i64) -> AppResult<()> {
    if ENTITIES.get(conn, entity_id).await?.is_none() {
        return Err(AppError::validation(format!(
            "entityId: no entity with id {entity_id}"
        )));
    }
    Ok(())
}

/// Takes the itemtype's next number, skipping numbers a caller already used as ids.
async fn next_free_id(conn: &impl ConnectionTrait, itemtype: &str) -> AppResult<String> {
    loop {
        let stmt = Query::update()
            .table(itemtypes::Entity)
            .value(
                itemtypes::Column::NextItemId,
                Expr::col(itemtypes::Column::NextItemId).add(1),
            )
            .and_where(itemtypes::Column::Name.eq(itemtype))
            .returning_col(itemtypes::Column::NextItemId)
            .to_owned();
        let row = conn
            .query_one(&stmt)
            .await?
            .ok_or_else(|| AppError::internal("itemtype row vanished"))?;
        let next: i64 = row.try_get("", "next_item_id")?;
        let candidate = (next - 1).to_string();
        if get(conn, itemtype, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
}

/// Keeps assigned numbers above a caller-given numeric id.
async fn reserve_numeric_id(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    id: &str,
) -> AppResult<()> {
    let Ok(n) = id.parse::<i64>() else {
        return Ok(());
    };
    if n < 0 || n == i64::MAX {
        return Ok(());
    }
    let stmt = Query::update()
        .table(itemtypes::Entity)
        .value(itemtypes::Column::NextItemId, n + 1)
        .and_where(itemtypes::Column::Name.eq(itemtype))
        .and_where(itemtypes::Column::NextItemId.lte(n))
        .to_owned();
    conn.execute(&stmt).await?;
    Ok(())
}
