//! Items and their history.

use async_graphql::{ComplexObject, Context, ID, InputObject, Json, MaybeUndefined, Object, Result, SimpleObject};
use entity::{history_entries, items as rows};
use serde_json::Value;

use super::{
    context::{Session, session},
    entity::Entity,
    idempotency,
    paging::{Paged, connection, numeric_id, page_request},
};
use crate::{
    domain::item::rfc3339,
    error::{AppError, AppResult},
    service::{
        history::{self, Subject},
        idempotency::{self as service_idempotency, Ran, run_once},
        items::{self, ItemId, ItemPatch as PatchInput, NewItem},
        itemtypes,
    },
};

/// The latest snapshot of an item hookline was told about.
pub struct Item(pub rows::Model);

#[Object]
impl Item {
    /// Unique per itemtype: a caller's own id, or a number hookline assigned.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn itemtype(&self) -> &str {
        &self.0.itemtype
    }

    async fn entity_id(&self) -> ID {
        ID(self.0.entity_id.to_string())
    }

    async fn entity(&self, ctx: &Context<'_>) -> Result<Entity> {
        let loader = super::loaders::loader::<super::loaders::EntityLoader>(ctx)?;
        let id = self.0.entity_id;
        let entity = loader.load_one(id).await?;
        Ok(entity.ok_or_else(|| AppError::not_found(format!("no entity with id {id}")))?.into())
    }

    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The item's own fields, a JSON object.
    async fn fields(&self) -> Json<&Value> {
        Json(&self.0.fields)
    }

    /// The item document that payload templates, filters and the default payload see: `id`,
    /// `name`, `entity {id, name, completename}`, `is_deleted`, `date_creation`, `date_mod` and
    /// every field at top level.
    async fn document(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
        let s = session(ctx)?;
        let entities = s.state.cache.entities(&s.state.db).await?;
        Ok(Json(items::document_in(&entities, &self.0)?))
    }

    /// In the trash.
    async fn is_deleted(&self) -> bool {
        self.0.is_deleted
    }

    async fn parent_itemtype(&self) -> Option<&str> {
        self.0.parent_itemtype.as_deref()
    }

    async fn parent_id(&self) -> Option<ID> {
        self.0.parent_id.clone().map(ID)
    }

    /// The item's last writer: who made its latest change (null for items stored before
    /// tokens). Templates see the writer of each event as `actor`.
    async fn actor(&self) -> Option<Actor> {
        Actor::stored(&self.0.actor_user, &self.0.actor_profile)
    }

    /// RFC 3339, UTC.
    async fn date_creation(&self) -> String {
        rfc3339(self.0.date_creation)
    }

    /// RFC 3339, UTC.
    async fn date_mod(&self) -> String {
        rfc3339(self.0.date_mod)
    }

    /// What happened to the item, newest first.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn history(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<HistoryPage> {
        let s = session(ctx)?;
        let request = page_request(first, after)?;
        let page = history::list(&s.state.db, items::subject(&self.0), request).await?;
        Ok(connection(page, request.after.is_some(), HistoryEntry::from))
    }
}

/// `HistoryConnection`, not `HistoryEntryConnection`.
pub struct HistoryConnectionName;

impl async_graphql::connection::ConnectionNameType for HistoryConnectionName {
    fn type_name<T: async_graphql::OutputType>() -> String {
        "HistoryConnection".into()
    }
}

/// `HistoryEdge`.
pub struct HistoryEdgeName;

impl async_graphql::connection::EdgeNameType for HistoryEdgeName {
    fn type_name<T: async_graphql::OutputType>() -> String {
        "HistoryEdge".into()
    }
}

/// A page of history entries.
pub type HistoryPage = super::paging::PagedAs<HistoryEntry, HistoryConnectionName, HistoryEdgeName>;

/// One entry of an item's or a webhook's history.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct HistoryEntry {
    pub id: ID,
    /// RFC 3339, UTC.
    pub date: String,
    /// `create`, `update`, `delete`, `restore`, …
    pub action: String,
    pub message: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    #[graphql(skip)]
    pub queued_webhook: Option<i64>,
    /// Who made the change (the token's user and profile); null for the server's own entries
    /// (delivery outcomes) and for entries from before tokens.
    pub actor: Option<Actor>,
}

/// The writer of a change: the user and profile of its token.
#[derive(SimpleObject, Clone)]
pub struct Actor {
    /// The token's user (`sub`).
    pub user: String,
    /// The token's profile.
    pub profile: String,
}

impl Actor {
    fn stored(user: &Option<String>, profile: &Option<String>) -> Option<Self> {
        crate::domain::item::Actor::stored(user, profile).map(|a| Self { user: a.user, profile: a.profile })
    }
}

#[ComplexObject]
impl HistoryEntry {
    /// The queued webhook the entry is about, if any.
    async fn queued_webhook_id(&self) -> Option<ID> {
        self.queued_webhook.map(|id| ID(id.to_string()))
    }
}

impl From<history_entries::Model> for HistoryEntry {
    fn from(m: history_entries::Model) -> Self {
        Self {
            id: ID(m.id.to_string()),
            date: rfc3339(m.date),
            action: m.action,
            message: m.message,
            old_value: m.old_value,
            new_value: m.new_value,
            queued_webhook: m.queued_webhook_id,
            actor: Actor::stored(&m.actor_user, &m.actor_profile),
        }
    }
}

/// An item to store.
#[derive(InputObject)]
pub struct ItemInput {
    /// An itemtype of the catalog.
    pub itemtype: String,
    /// Your own id (up to 255 characters); omitted, hookline assigns the next number.
    pub id: Option<ID>,
    pub entity_id: ID,
    pub name: Option<String>,
    /// A JSON object; its keys appear at top level of the item document.
    pub fields: Option<Json<Value>>,
    /// With parentId: the parent item (a followup's ticket), which must be stored.
    pub parent_itemtype: Option<String>,
    pub parent_id: Option<ID>,
}

impl TryFrom<ItemInput> for NewItem {
    type Error = AppError;

    fn try_from(input: ItemInput) -> Result<Self, AppError> {
        Ok(NewItem {
            itemtype: input.itemtype,
            id: input.id.map_or(ItemId::Next, |id| ItemId::Given(id.0)),
            entity_id: numeric_id(&input.entity_id, "entityId")?,
            name: input.name,
            fields: input.fields.map(|j| j.0),
            parent_itemtype: input.parent_itemtype,
            parent_id: input.parent_id.map(|id| id.0),
            actor: None,
        })
    }
}

/// Changes to an item; omitted values stay as they are.
#[derive(InputObject)]
pub struct ItemPatch {
    /// null clears the name.
    pub name: MaybeUndefined<String>,
    pub entity_id: Option<ID>,
    /// A JSON merge patch (RFC 7396) of the fields: given keys are set, keys set to null removed.
    pub fields: Option<Json<Value>>,
}

#[derive(Default)]
pub struct ItemQuery;

#[Object]
impl ItemQuery {
    async fn item(&self, ctx: &Context<'_>, itemtype: String, id: ID) -> Result<Option<Item>> {
        let s = session(ctx)?;
        Ok(visible(&s, &itemtype, &id).await?.map(Item))
    }

    /// Items of a type, in the order they were first stored; with `criteria`, only those that
    /// match (as a webhook filter would).
    #[graphql(
        complexity = "super::paging::page_cost(first, child_complexity) + super::paging::scan_cost(criteria.is_some())"
    )]
    async fn items(
        &self,
        ctx: &Context<'_>,
        itemtype: String,
        criteria: Option<Vec<super::filter::CriterionInput>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<Item>> {
        if let Some(criteria) = criteria {
            return Ok(super::filter::matching(ctx, &itemtype, criteria, first, after).await?);
        }
        let s = session(ctx)?;
        itemtypes::require(&s.state.db, &itemtype, "itemtype").await?;
        let request = page_request(first, after)?;
        let entities = s.scope_ids().await?;
        let page = items::list(&s.state.db, &itemtype, entities.as_deref(), request).await?;
        Ok(connection(page, request.after.is_some(), Item))
    }
}

#[derive(Default)]
pub struct ItemMutation;

#[Object]
impl ItemMutation {
    /// Stores a new item; raises `new`.
    async fn create_item(
        &self,
        ctx: &Context<'_>,
        input: ItemInput,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and writes nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<Item> {
        let s = session(ctx)?;
        let once = idempotency::once(ctx, &s, idempotency_key)?;
        let input = NewItem { actor: Some(s.caller.actor()), ..NewItem::try_from(input)? };
        s.entity_input(input.entity_id, "entityId").await?;
        match run_once(&s.state.db, once.as_ref(), items::create(s.state, input, once.clone())).await? {
            Ran::Now(changed) => Ok(Item(changed.item)),
            Ran::Before(answer) => Ok(Item(one_item(idempotency::items_of(&s, answer).await?)?)),
        }
    }

    /// Stores up to 1000 items in one transaction and raises `new` for each, all or nothing:
    /// a refused input refuses the call, its error naming the input (`extensions.index`).
    /// The items come back in input order.
    #[graphql(complexity = "super::paging::list_cost(inputs.len(), child_complexity)")]
    async fn create_items(
        &self,
        ctx: &Context<'_>,
        inputs: Vec<ItemInput>,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and writes nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<Vec<Item>> {
        let s = session(ctx)?;
        let once = idempotency::once(ctx, &s, idempotency_key)?;
        items::check_batch(inputs.len())?;
        let inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| {
                let input = NewItem::try_from(input).map_err(|e| e.at_index(index))?;
                Ok(NewItem { actor: Some(s.caller.actor()), ..input })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        for (index, input) in inputs.iter().enumerate() {
            s.entity_input(input.entity_id, "entityId").await.map_err(|e| e.at_index(index))?;
        }
        let created =
            match run_once(&s.state.db, once.as_ref(), items::create_many(s.state, inputs, once.clone())).await? {
                Ran::Now(created) => created,
                Ran::Before(answer) => idempotency::items_of(&s, answer).await?,
            };
        Ok(created.into_iter().map(Item).collect())
    }

    /// Changes an item; the history records each changed value. Raises `update` only when the
    /// stored snapshot changed.
    async fn update_item(
        &self,
        ctx: &Context<'_>,
        itemtype: String,
        id: ID,
        input: ItemPatch,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and writes nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<Item> {
        let s = session(ctx)?;
        let once = idempotency::once(ctx, &s, idempotency_key)?;
        let patch = PatchInput {
            name: match input.name {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(name) => Some(Some(name)),
            },
            entity_id: input.entity_id.map(|e| numeric_id(&e, "input.entityId")).transpose()?,
            fields: input.fields.map(|j| j.0),
            actor: Some(s.caller.actor()),
        };
        in_reach(&s, &itemtype, &id).await?;
        if let Some(entity_id) = patch.entity_id {
            s.entity_input(entity_id, "input.entityId").await?;
        }
        let update = items::update(s.state, &itemtype, &id, patch, once.clone());
        Ok(Item(item_answer(&s, run_once(&s.state.db, once.as_ref(), update).await?).await?))
    }

    /// Puts the item in the trash (CONFLICT when it is there already); raises `delete`.
    async fn delete_item(
        &self,
        ctx: &Context<'_>,
        itemtype: String,
        id: ID,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and writes nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<Item> {
        trash(ctx, &itemtype, &id, idempotency_key, true).await
    }

    /// Takes the item out of the trash (CONFLICT when it is not there); raises `restore`.
    async fn restore_item(
        &self,
        ctx: &Context<'_>,
        itemtype: String,
        id: ID,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and writes nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<Item> {
        trash(ctx, &itemtype, &id, idempotency_key, false).await
    }

    /// Raises `purge` with the last snapshot of the item and of its child items, then removes
    /// them and their history for good.
    async fn purge_item(
        &self,
        ctx: &Context<'_>,
        itemtype: String,
        id: ID,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and writes nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<bool> {
        let s = session(ctx)?;
        let once = idempotency::once(ctx, &s, idempotency_key)?;
        // A repeat answers before the purged item is looked for.
        if let Some(once) = &once
            && service_idempotency::answered(&s.state.db, once).await?.is_some()
        {
            return Ok(true);
        }
        in_reach(&s, &itemtype, &id).await?;
        let purge = items::purge(s.state, &itemtype, &id, Some(s.caller.actor()), once.clone());
        run_once(&s.state.db, once.as_ref(), purge).await?;
        Ok(true)
    }
}

/// Puts the item in the trash (`deleted`) or takes it out, raising `delete` or `restore`.
async fn trash(ctx: &Context<'_>, itemtype: &str, id: &str, key: Option<String>, deleted: bool) -> Result<Item> {
    let s = session(ctx)?;
    let once = idempotency::once(ctx, &s, key)?;
    in_reach(&s, itemtype, id).await?;
    let change = items::set_deleted(s.state, itemtype, id, deleted, Some(s.caller.actor()), once.clone());
    Ok(Item(item_answer(&s, run_once(&s.state.db, once.as_ref(), change).await?).await?))
}

/// The one item of an item mutation's answer, now or earlier.
async fn item_answer(s: &Session<'_>, ran: Ran<items::Changed<rows::Model>>) -> AppResult<rows::Model> {
    match ran {
        Ran::Now(changed) => Ok(changed.item),
        Ran::Before(answer) => one_item(idempotency::items_of(s, answer).await?),
    }
}

fn one_item(mut items: Vec<rows::Model>) -> AppResult<rows::Model> {
    match (items.pop(), items.is_empty()) {
        (Some(item), true) => Ok(item),
        _ => Err(AppError::internal("the answer recorded for this idempotency key is not one item")),
    }
}

/// The stored item, when its entity is in the caller's scope.
pub async fn visible(s: &Session<'_>, itemtype: &str, id: &str) -> AppResult<Option<rows::Model>> {
    match items::get(&s.state.db, itemtype, id).await? {
        Some(item) if s.sees(item.entity_id).await? => Ok(Some(item)),
        _ => Ok(None),
    }
}

/// Refuses a change to an item outside the caller's scope as if the item did not exist (a
/// missing item is left for the write itself to refuse).
async fn in_reach(s: &Session<'_>, itemtype: &str, id: &str) -> AppResult<()> {
    if s.unscoped() {
        return Ok(());
    }
    match items::get(&s.state.db, itemtype, id).await? {
        Some(item) if !s.sees(item.entity_id).await? => {
            Err(AppError::not_found(format!("no {itemtype} with id `{id}`")))
        }
        _ => Ok(()),
    }
}

/// History of a webhook, for the webhook module.
pub async fn webhook_history(
    ctx: &Context<'_>,
    webhook_id: i64,
    first: Option<i32>,
    after: Option<String>,
) -> Result<HistoryPage, AppError> {
    let s = session(ctx)?;
    let request = page_request(first, after)?;
    let page = history::list(&s.state.db, Subject::Webhook(webhook_id), request).await?;
    Ok(connection(page, request.after.is_some(), HistoryEntry::from))
}
