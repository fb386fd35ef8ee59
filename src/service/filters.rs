//! Saved searches, webhook filters, and which stored items match criteria.

use chrono::Utc;
use entity::{items as item_rows, saved_searches, webhooks as webhook_rows};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;

use super::{
    history::{self, NewEntry, Subject as HistorySubject},
    items::{self, document_in},
    itemtypes,
    paging::{Page, PageRequest},
    tree::EntityIndex,
    webhooks::{self, Webhook},
};
use crate::{
    domain::{
        filter::{CriterionSpec, Filter, Subject},
        item::Actor,
    },
    error::{AppError, AppResult},
};

/// A webhook's filter as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookFilter {
    None,
    Inline(Vec<CriterionSpec>),
    Saved(i64),
    /// Stored criteria that cannot be read, and why: the webhook fires for nothing.
    Unreadable(String),
}

impl WebhookFilter {
    pub fn from_columns(criteria: Option<&Value>, saved_search_id: Option<i64>) -> Self {
        match (saved_search_id, criteria) {
            (Some(id), _) => Self::Saved(id),
            (None, None | Some(Value::Null)) => Self::None,
            (None, Some(criteria)) => stored_criteria(criteria).map_or_else(Self::Unreadable, Self::Inline),
        }
    }
}

/// Parses stored criteria, or says why they cannot be read.
pub fn stored_criteria(value: &Value) -> Result<Vec<CriterionSpec>, String> {
    serde_json::from_value(value.clone()).map_err(|err| format!("the stored criteria cannot be read: {err}"))
}

pub async fn list_saved(conn: &impl ConnectionTrait, itemtype: Option<&str>) -> AppResult<Vec<saved_searches::Model>> {
    let mut query = saved_searches::Entity::find().order_by_asc(saved_searches::Column::Name);
    if let Some(itemtype) = itemtype {
        query = query.filter(saved_searches::Column::Itemtype.eq(itemtype));
    }
    Ok(query.all(conn).await?)
}

/// The saved searches of these ids that exist (one statement for many).
pub async fn saved_many(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<Vec<saved_searches::Model>> {
    Ok(saved_searches::Entity::find().filter(saved_searches::Column::Id.is_in(ids.iter().copied())).all(conn).await?)
}

/// The saved search, if it exists.
pub async fn get_saved(conn: &impl ConnectionTrait, id: i64) -> AppResult<Option<saved_searches::Model>> {
    Ok(saved_searches::Entity::find_by_id(id).one(conn).await?)
}

pub async fn require_saved(conn: &impl ConnectionTrait, id: i64) -> AppResult<saved_searches::Model> {
    saved_searches::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no saved search with id {id}")))
}

/// What `createSavedSearch` and `updateSavedSearch` give.
#[derive(Debug, Clone)]
pub struct SavedSearchInput {
    pub name: String,
    pub itemtype: String,
    pub criteria: Vec<CriterionSpec>,
}

async fn checked(conn: &impl ConnectionTrait, input: &SavedSearchInput) -> AppResult<String> {
    let name = input.name.trim().to_owned();
    if name.is_empty() {
        return Err(AppError::validation("name: must not be empty"));
    }
    itemtypes::require(conn, &input.itemtype, "itemtype").await?;
    Filter::compile(&input.criteria)?;
    Ok(name)
}

pub async fn create_saved(db: &DatabaseConnection, input: SavedSearchInput) -> AppResult<saved_searches::Model> {
    let txn = crate::db::begin_write(db).await?;
    let name = checked(&txn, &input).await?;
    if saved_searches::Entity::find().filter(saved_searches::Column::Name.eq(&name)).one(&txn).await?.is_some() {
        return Err(AppError::conflict(format!("a saved search named `{name}` already exists")));
    }
    let now = Utc::now();
    let model = saved_searches::ActiveModel {
        name: Set(name),
        itemtype: Set(input.itemtype),
        criteria: Set(serde_json::to_value(&input.criteria).unwrap_or_default()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    let saved = saved_searches::Entity::insert(model).exec_with_returning(&txn).await?;
    txn.commit().await?;
    Ok(saved)
}

pub async fn update_saved(
    db: &DatabaseConnection,
    id: i64,
    input: SavedSearchInput,
) -> AppResult<saved_searches::Model> {
    let txn = crate::db::begin_write(db).await?;
    let saved = require_saved(&txn, id).await?;
    let name = checked(&txn, &input).await?;
    let clash = saved_searches::Entity::find().filter(saved_searches::Column::Name.eq(&name)).one(&txn).await?;
    if clash.is_some_and(|other| other.id != id) {
        return Err(AppError::conflict(format!("a saved search named `{name}` already exists")));
    }
    if input.itemtype != saved.itemtype && users(&txn, id).await? > 0 {
        return Err(AppError::conflict(format!(
            "saved search {id} filters webhooks of {}; its itemtype cannot change while they use it",
            saved.itemtype
        )));
    }
    let mut active = saved.into_active_model();
    active.name = Set(name);
    active.itemtype = Set(input.itemtype);
    active.criteria = Set(serde_json::to_value(&input.criteria).unwrap_or_default());
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    txn.commit().await?;
    Ok(updated)
}

/// The entities of the webhooks that use the saved search.
pub async fn user_entities(conn: &impl ConnectionTrait, saved_search_id: i64) -> AppResult<Vec<i64>> {
    Ok(webhook_rows::Entity::find()
        .select_only()
        .column(webhook_rows::Column::EntityId)
        .distinct()
        .filter(webhook_rows::Column::SavedSearchId.eq(saved_search_id))
        .into_tuple()
        .all(conn)
        .await?)
}

async fn users(conn: &impl ConnectionTrait, saved_search_id: i64) -> AppResult<u64> {
    Ok(webhook_rows::Entity::find().filter(webhook_rows::Column::SavedSearchId.eq(saved_search_id)).count(conn).await?)
}

/// Deletes a saved search; CONFLICT while a webhook uses it.
pub async fn delete_saved(db: &DatabaseConnection, id: i64) -> AppResult<()> {
    let txn = crate::db::begin_write(db).await?;
    require_saved(&txn, id).await?;
    let count = users(&txn, id).await?;
    if count > 0 {
        return Err(AppError::conflict(format!("saved search {id} is the filter of {count} webhooks")));
    }
    saved_searches::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Sets a webhook's filter to inline criteria or a saved search of its itemtype, or clears it
/// when given neither.
pub async fn set_webhook_filter(
    db: &DatabaseConnection,
    webhook_id: i64,
    criteria: Option<Vec<CriterionSpec>>,
    saved_search_id: Option<i64>,
) -> AppResult<Webhook> {
    let txn = crate::db::begin_write(db).await?;
    let webhook = webhooks::require(&txn, webhook_id).await?;
    let (stored, saved, message) = match (criteria, saved_search_id) {
        (Some(_), Some(_)) => {
            return Err(AppError::validation("criteria and savedSearchId: give one of them, or neither to clear"));
        }
        (Some(criteria), None) => {
            Filter::compile(&criteria)?;
            (Some(serde_json::to_value(&criteria).unwrap_or_default()), None, "filter set")
        }
        (None, Some(id)) => {
            let saved = require_saved(&txn, id)
                .await
                .map_err(|_| AppError::validation(format!("savedSearchId: no saved search with id {id}")))?;
            if saved.itemtype != webhook.settings.itemtype {
                return Err(AppError::validation(format!(
                    "savedSearchId: saved search {id} searches {}, the webhook fires for {}",
                    saved.itemtype, webhook.settings.itemtype
                )));
            }
            (None, Some(id), "filter set to a saved search")
        }
        (None, None) => (None, None, "filter cleared"),
    };
    webhook_rows::Entity::update_many()
        .col_expr(webhook_rows::Column::FilterCriteria, Expr::value(stored))
        .col_expr(webhook_rows::Column::SavedSearchId, Expr::value(saved))
        .col_expr(webhook_rows::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook_rows::Column::Id.eq(webhook_id))
        .exec(&txn)
        .await?;
    history::add(&txn, HistorySubject::Webhook(webhook_id), vec![NewEntry::new("update", message)]).await?;
    let updated = webhooks::require(&txn, webhook_id).await?;
    txn.commit().await?;
    Ok(updated)
}

/// The saved search a webhook's filter names, read from the database.
async fn saved_of(conn: &impl ConnectionTrait, filter: &WebhookFilter) -> AppResult<Option<saved_searches::Model>> {
    match filter {
        WebhookFilter::Saved(id) => Ok(saved_searches::Entity::find_by_id(*id).one(conn).await?),
        _ => Ok(None),
    }
}

/// The criteria of a webhook's filter, its saved search (`saved`, read by the caller; `None`
/// when it names none, or it does not exist) resolved; CONFLICT when they cannot be read.
pub fn criteria_with(
    filter: &WebhookFilter,
    saved: Option<&saved_searches::Model>,
) -> AppResult<Option<Vec<CriterionSpec>>> {
    let unusable = |reason: String| AppError::conflict(format!("the webhook's filter cannot be used: {reason}"));
    Ok(match filter {
        WebhookFilter::None => None,
        WebhookFilter::Inline(criteria) => Some(criteria.clone()),
        WebhookFilter::Saved(id) => {
            let saved = saved.ok_or_else(|| AppError::not_found(format!("no saved search with id {id}")))?;
            Some(stored_criteria(&saved.criteria).map_err(unusable)?)
        }
        WebhookFilter::Unreadable(reason) => return Err(unusable(reason.clone())),
    })
}

/// A webhook's filter compiled: `None` without a filter, `Some(Err(why))` when it cannot be
/// used (unreadable, its saved search gone, criteria that do not compile), in which case the
/// webhook fires for nothing.
pub async fn compiled_filter(
    conn: &impl ConnectionTrait,
    filter: &WebhookFilter,
) -> AppResult<Option<Result<Filter, String>>> {
    Ok(compiled_with(filter, saved_of(conn, filter).await?.as_ref()))
}

/// [`compiled_filter`] with the saved search the filter names already read.
pub fn compiled_with(filter: &WebhookFilter, saved: Option<&saved_searches::Model>) -> Option<Result<Filter, String>> {
    let criteria = match filter {
        WebhookFilter::None => return None,
        WebhookFilter::Inline(criteria) => criteria.clone(),
        WebhookFilter::Unreadable(reason) => return Some(Err(reason.clone())),
        WebhookFilter::Saved(id) => match saved {
            None => return Some(Err(format!("its saved search {id} does not exist"))),
            Some(saved) => match stored_criteria(&saved.criteria) {
                Ok(criteria) => criteria,
                Err(reason) => return Some(Err(format!("saved search {id}: {reason}"))),
            },
        },
    };
    Some(Filter::compile(&criteria).map_err(|err| format!("the stored criteria do not compile: {}", err.message())))
}

/// Whether the filter matches a stored item (its document and its parent's).
pub async fn item_matches(
    conn: &impl ConnectionTrait,
    entities: &EntityIndex,
    filter: &Filter,
    item: &item_rows::Model,
) -> AppResult<bool> {
    let document = document_in(entities, item)?;
    let parent = match (&item.parent_itemtype, &item.parent_id) {
        (Some(t), Some(i)) => match items::get(conn, t, i).await? {
            Some(parent) => Some(document_in(entities, &parent)?),
            None => None,
        },
        _ => None,
    };
    let chain = |id| entities.chain(id);
    let actor = Actor::stored(&item.actor_user, &item.actor_profile).map(|actor| actor.to_value());
    Ok(filter.matches(&Subject {
        item: &document,
        parent_item: parent.as_ref(),
        actor: actor.as_ref(),
        entity_chain: &chain,
    }))
}

/// Items read at once while looking for matches: the itemtype is walked in chunks of this
/// many, so that memory stays bounded however many items it holds.
const SCAN_CHUNK: u64 = 500;

/// Stored items of the itemtype that match the criteria, in the order they were stored, with
/// the total. The same evaluator decides at event time. Only the page's rows are kept.
/// The stored items of the itemtype (in `entities` when given) that the criteria match.
pub async fn matching_items(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    criteria: &[CriterionSpec],
    within: Option<&[i64]>,
    page: PageRequest,
) -> AppResult<Page<item_rows::Model>> {
    itemtypes::require(conn, itemtype, "itemtype").await?;
    let filter = Filter::compile(criteria)?;
    let entities = EntityIndex::load(conn).await?;
    let mut rows: Vec<(i64, item_rows::Model)> = Vec::new();
    let mut total = 0u64;
    let mut last_seq = None;
    loop {
        let mut chunk = item_rows::Entity::find().filter(item_rows::Column::Itemtype.eq(itemtype));
        if let Some(within) = within {
            chunk = chunk.filter(item_rows::Column::EntityId.is_in(within.iter().copied()));
        }
        if let Some(seq) = last_seq {
            chunk = chunk.filter(item_rows::Column::Seq.gt(seq));
        }
        let chunk = chunk.order_by_asc(item_rows::Column::Seq).limit(SCAN_CHUNK).all(conn).await?;
        let Some(last) = chunk.last() else { break };
        last_seq = Some(last.seq);
        let full = chunk.len() as u64 == SCAN_CHUNK;
        for item in chunk {
            if !item_matches(conn, &entities, &filter, &item).await? {
                continue;
            }
            total += 1;
            let wanted = page.after.is_none_or(|after| item.seq > after) && (rows.len() as u64) <= page.first;
            if wanted {
                rows.push((item.seq, item));
            }
        }
        if !full {
            break;
        }
    }
    Ok(Page::from_fetched(rows, page, total))
}
