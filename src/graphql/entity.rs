//! Entities and webhook categories: the two trees.

use std::marker::PhantomData;

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use super::{
    context::{Session, session},
    paging::numeric_id,
};
use crate::{
    domain::item::rfc3339,
    error::{AppError, AppResult},
    service::{
        audit::{Change, node_view},
        tree::{CATEGORIES, ENTITIES, NodeInput, ROOT_ENTITY_ID, TreeRow},
    },
};
use serde_json::Map;

/// Marks a [`TreeNode`] as an entity.
pub struct EntityKind;
/// Marks a [`TreeNode`] as a webhook category.
pub struct CategoryKind;

/// A node of a tree: an entity (GLPI's organisational unit, where items and webhooks live) or
/// a webhook category.
#[derive(SimpleObject)]
#[graphql(concrete(name = "Entity", params(EntityKind)), concrete(name = "WebhookCategory", params(CategoryKind)))]
pub struct TreeNode<K: Send + Sync + 'static> {
    pub id: ID,
    pub name: String,
    /// The parent node; null for the root entity and for top-level categories.
    pub parent_id: Option<ID>,
    pub comment: Option<String>,
    /// The names from the top down, joined with " > ", e.g. `Root entity > Europe > Paris`.
    pub completename: String,
    /// Depth in the tree; the top is level 1.
    pub level: i32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    #[graphql(skip)]
    kind: PhantomData<K>,
}

impl<K: Send + Sync + 'static> From<TreeRow> for TreeNode<K> {
    fn from(row: TreeRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name,
            parent_id: row.parent_id.map(|p| ID(p.to_string())),
            comment: row.comment,
            completename: row.completename,
            level: row.level,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            kind: PhantomData,
        }
    }
}

pub type Entity = TreeNode<EntityKind>;
pub type WebhookCategory = TreeNode<CategoryKind>;

/// A node to create or the new state of one.
#[derive(InputObject)]
#[graphql(
    concrete(name = "EntityInput", params(EntityKind)),
    concrete(name = "WebhookCategoryInput", params(CategoryKind))
)]
pub struct TreeNodeInput<K: Send + Sync + 'static> {
    /// Not empty, without `>`.
    pub name: String,
    /// The parent. For entities, omitted means the root entity (0); for categories, the top.
    pub parent_id: Option<ID>,
    pub comment: Option<String>,
    #[graphql(skip)]
    kind: PhantomData<K>,
}

impl<K: Send + Sync + 'static> TreeNodeInput<K> {
    fn into_node_input(self) -> crate::error::AppResult<NodeInput> {
        let parent_id = self.parent_id.map(|p| numeric_id(&p, "parentId")).transpose()?;
        Ok(NodeInput { name: self.name, parent_id, comment: self.comment })
    }
}

#[derive(Default)]
pub struct EntityQuery;

#[Object]
impl EntityQuery {
    /// Every entity in the caller's scope, by id.
    async fn entities(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        let s = session(ctx)?;
        let scope = s.scope().await?;
        Ok(ENTITIES
            .all(&s.state.db)
            .await?
            .into_iter()
            .filter(|row| scope.contains(row.id))
            .map(Entity::from)
            .collect())
    }

    /// Null when it does not exist or is outside the caller's scope.
    async fn entity(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Entity>> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        if !s.sees(id).await? {
            return Ok(None);
        }
        Ok(ENTITIES.get(&s.state.db, id).await?.map(Entity::from))
    }

    /// Every webhook category, by id.
    async fn webhook_categories(&self, ctx: &Context<'_>) -> Result<Vec<WebhookCategory>> {
        let s = session(ctx)?;
        Ok(CATEGORIES.all(&s.state.db).await?.into_iter().map(WebhookCategory::from).collect())
    }

    async fn webhook_category(&self, ctx: &Context<'_>, id: ID) -> Result<Option<WebhookCategory>> {
        let s = session(ctx)?;
        Ok(CATEGORIES.get(&s.state.db, numeric_id(&id, "id")?).await?.map(WebhookCategory::from))
    }
}

/// Refuses to change an entity outside the caller's scope as if it did not exist.
async fn entity_in_reach(s: &Session<'_>, id: i64) -> AppResult<()> {
    if s.sees(id).await? { Ok(()) } else { Err(AppError::not_found(format!("no entity with id {id}"))) }
}

#[derive(Default)]
pub struct EntityMutation;

#[Object]
impl EntityMutation {
    /// Creates an entity below one in the caller's scope (the root entity when `parentId` is
    /// not given).
    async fn create_entity(&self, ctx: &Context<'_>, input: TreeNodeInput<EntityKind>) -> Result<Entity> {
        let s = session(ctx)?;
        let input = input.into_node_input()?;
        s.entity_input(input.parent_id.unwrap_or(ROOT_ENTITY_ID), "parentId").await?;
        let created = ENTITIES.create(&s.state.db, input).await?;
        s.audit(
            Change::new("Entity", created.id, "create").in_entity(created.id).fields(&Map::new(), &node_view(&created)),
        )
        .await;
        Ok(created.into())
    }

    /// Renames, moves (parentId) or re-comments an entity; the completenames below follow.
    async fn update_entity(&self, ctx: &Context<'_>, id: ID, input: TreeNodeInput<EntityKind>) -> Result<Entity> {
        let s = session(ctx)?;
        let (id, input) = (numeric_id(&id, "id")?, input.into_node_input()?);
        entity_in_reach(&s, id).await?;
        if let Some(parent) = input.parent_id {
            s.entity_input(parent, "parentId").await?;
        }
        let before = ENTITIES.get(&s.state.db, id).await?;
        let updated = ENTITIES.update(&s.state.db, id, input).await?;
        let before = before.as_ref().map(node_view).unwrap_or_default();
        s.audit(Change::new("Entity", id, "update").in_entity(id).fields(&before, &node_view(&updated))).await;
        Ok(updated.into())
    }

    /// Refused with CONFLICT while the entity has child entities, items or webhooks, and for
    /// the root entity.
    async fn delete_entity(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        entity_in_reach(&s, id).await?;
        let before = ENTITIES.get(&s.state.db, id).await?;
        ENTITIES.delete(&s.state.db, id).await?;
        let change = Change::new("Entity", id, "delete")
            .in_entity(before.as_ref().and_then(|b| b.parent_id).unwrap_or(ROOT_ENTITY_ID))
            .fields(&before.as_ref().map(node_view).unwrap_or_default(), &Map::new());
        s.audit(change).await;
        Ok(true)
    }

    async fn create_webhook_category(
        &self,
        ctx: &Context<'_>,
        input: TreeNodeInput<CategoryKind>,
    ) -> Result<WebhookCategory> {
        let s = session(ctx)?;
        let created = CATEGORIES.create(&s.state.db, input.into_node_input()?).await?;
        s.audit(Change::new("WebhookCategory", created.id, "create").fields(&Map::new(), &node_view(&created))).await;
        Ok(created.into())
    }

    async fn update_webhook_category(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: TreeNodeInput<CategoryKind>,
    ) -> Result<WebhookCategory> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        let before = CATEGORIES.get(&s.state.db, id).await?.as_ref().map(node_view).unwrap_or_default();
        let updated = CATEGORIES.update(&s.state.db, id, input.into_node_input()?).await?;
        s.audit(Change::new("WebhookCategory", id, "update").fields(&before, &node_view(&updated))).await;
        Ok(updated.into())
    }

    /// Refused with CONFLICT while the category has child categories or webhooks.
    async fn delete_webhook_category(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        let before = CATEGORIES.get(&s.state.db, id).await?.as_ref().map(node_view).unwrap_or_default();
        CATEGORIES.delete(&s.state.db, id).await?;
        s.audit(Change::new("WebhookCategory", id, "delete").fields(&before, &Map::new())).await;
        Ok(true)
    }
}
