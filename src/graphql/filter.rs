//! Filters: saved searches, a webhook's filter, and previews of the items they match.

use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use entity::saved_searches;
use serde_json::{Map, Value};

use super::{
    context::{Session, session},
    item::Item,
    paging::{Paged, connection, numeric_id, page_request},
    webhook::Webhook,
};
use crate::{
    domain::{filter::CriterionSpec, item::rfc3339},
    error::{AppError, AppResult},
    service::{
        audit::{self, Change},
        filters::{self, SavedSearchInput as SavedInput},
    },
};

/// One search criterion, or a group of them (a parenthesis).
#[derive(InputObject, Clone)]
pub struct CriterionInput {
    /// AND (default), OR, AND NOT, OR NOT. NOT binds first, then AND, then OR.
    pub link: Option<String>,
    /// A dotted path into the item document (`priority`, `status.name`, `entity.id`), or into
    /// the parent item's (`parent_item.priority`).
    pub field: Option<String>,
    /// contains, notcontains, equals, notequals, lessthan, morethan, under, notunder, empty.
    pub searchtype: Option<String>,
    pub value: Option<String>,
    /// A group's criteria.
    pub criteria: Option<Vec<CriterionInput>>,
}

impl From<CriterionInput> for CriterionSpec {
    fn from(input: CriterionInput) -> Self {
        Self {
            link: input.link,
            field: input.field,
            searchtype: input.searchtype,
            value: input.value,
            criteria: input.criteria.map(|c| c.into_iter().map(Self::from).collect()),
        }
    }
}

pub fn specs(criteria: Vec<CriterionInput>) -> Vec<CriterionSpec> {
    criteria.into_iter().map(CriterionSpec::from).collect()
}

/// Criteria saved under a name, reusable as a webhook filter.
#[derive(SimpleObject)]
pub struct SavedSearch {
    pub id: ID,
    pub name: String,
    pub itemtype: String,
    pub criteria: Json<Value>,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl From<saved_searches::Model> for SavedSearch {
    fn from(m: saved_searches::Model) -> Self {
        Self {
            id: ID(m.id.to_string()),
            name: m.name,
            itemtype: m.itemtype,
            criteria: Json(m.criteria),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

#[derive(InputObject)]
pub struct SavedSearchInput {
    /// Unique.
    pub name: String,
    pub itemtype: String,
    pub criteria: Vec<CriterionInput>,
}

impl From<SavedSearchInput> for SavedInput {
    fn from(input: SavedSearchInput) -> Self {
        Self { name: input.name, itemtype: input.itemtype, criteria: specs(input.criteria) }
    }
}

/// Stored items of the itemtype matching the criteria, for `items` and `filterPreview`.
pub async fn matching(
    ctx: &Context<'_>,
    itemtype: &str,
    criteria: Vec<CriterionInput>,
    first: Option<i32>,
    after: Option<String>,
) -> AppResult<Paged<Item>> {
    let s = session(ctx)?;
    let request = page_request(first, after)?;
    let entities = s.scope_ids().await?;
    let page = filters::matching_items(&s.state.db, itemtype, &specs(criteria), entities.as_deref(), request).await?;
    Ok(connection(page, request.after.is_some(), Item))
}

#[derive(Default)]
pub struct FilterQuery;

#[Object]
impl FilterQuery {
    /// Saved searches by name, optionally of one itemtype.
    async fn saved_searches(&self, ctx: &Context<'_>, itemtype: Option<String>) -> Result<Vec<SavedSearch>> {
        let s = session(ctx)?;
        Ok(filters::list_saved(&s.state.db, itemtype.as_deref()).await?.into_iter().map(SavedSearch::from).collect())
    }

    /// The stored items that the criteria match, with the total: what a webhook with this
    /// filter fires for (the same evaluator decides at event time).
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity) + super::paging::scan_cost(true)")]
    async fn filter_preview(
        &self,
        ctx: &Context<'_>,
        itemtype: String,
        criteria: Vec<CriterionInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<Item>> {
        Ok(matching(ctx, &itemtype, criteria, first, after).await?)
    }
}

/// A saved search as the audit log compares it.
fn saved_view(saved: &saved_searches::Model) -> Map<String, serde_json::Value> {
    audit::view(serde_json::json!({"name": saved.name, "itemtype": saved.itemtype, "criteria": saved.criteria}))
}

/// Saved searches belong to no entity: a caller limited to some entities may change one only
/// while no webhook outside them uses it (it would change what those webhooks fire for).
async fn shared_with_others(s: &Session<'_>, saved_search_id: i64) -> AppResult<()> {
    if s.unscoped() {
        return Ok(());
    }
    for entity_id in filters::user_entities(&s.state.db, saved_search_id).await? {
        if !s.sees(entity_id).await? {
            return Err(AppError::Forbidden(format!(
                "saved search {saved_search_id} is used by webhooks outside your entities; only a token for every \
                 entity may change it"
            )));
        }
    }
    Ok(())
}

#[derive(Default)]
pub struct FilterMutation;

#[Object]
impl FilterMutation {
    async fn create_saved_search(&self, ctx: &Context<'_>, input: SavedSearchInput) -> Result<SavedSearch> {
        let s = session(ctx)?;
        let created = filters::create_saved(&s.state.db, input.into()).await?;
        s.audit(Change::new("SavedSearch", created.id, "create").fields(&Map::new(), &saved_view(&created))).await;
        Ok(created.into())
    }

    async fn update_saved_search(&self, ctx: &Context<'_>, id: ID, input: SavedSearchInput) -> Result<SavedSearch> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        shared_with_others(&s, id).await?;
        let before = filters::get_saved(&s.state.db, id).await?.as_ref().map(saved_view).unwrap_or_default();
        let updated = filters::update_saved(&s.state.db, id, input.into()).await?;
        s.audit(Change::new("SavedSearch", id, "update").fields(&before, &saved_view(&updated))).await;
        Ok(updated.into())
    }

    /// CONFLICT while a webhook uses it.
    async fn delete_saved_search(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        shared_with_others(&s, id).await?;
        let before = filters::get_saved(&s.state.db, id).await?.as_ref().map(saved_view).unwrap_or_default();
        filters::delete_saved(&s.state.db, id).await?;
        s.audit(Change::new("SavedSearch", id, "delete").fields(&before, &Map::new())).await;
        Ok(true)
    }

    /// Sets the webhook's filter: inline `criteria`, or a saved search of its itemtype. With
    /// neither, clears it. A webhook with a filter fires only for items that match.
    async fn set_webhook_filter(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        criteria: Option<Vec<CriterionInput>>,
        saved_search_id: Option<ID>,
    ) -> Result<Webhook> {
        let s = session(ctx)?;
        let webhook_id = numeric_id(&webhook_id, "webhookId")?;
        super::webhook::webhook_in_reach(&s, webhook_id).await?;
        let saved = saved_search_id.map(|id| numeric_id(&id, "savedSearchId")).transpose()?;
        let before = crate::service::webhooks::get(&s.state.db, webhook_id).await?;
        let updated = filters::set_webhook_filter(&s.state.db, webhook_id, criteria.map(specs), saved).await?;
        let only_filter = |view: Map<String, serde_json::Value>| {
            view.into_iter().filter(|(field, _)| field == "filter").collect::<Map<_, _>>()
        };
        let before = before.as_ref().map(audit::webhook_view).map(only_filter).unwrap_or_default();
        let change = Change::new("Webhook", webhook_id, "setFilter")
            .in_entity(updated.settings.entity_id)
            .fields(&before, &only_filter(audit::webhook_view(&updated)));
        s.audit(change).await;
        Ok(Webhook(updated))
    }
}
