//! Entities and webhook categories: the two trees.

use std::marker::PhantomData;

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use super::{context::session, paging::numeric_id};
use crate::{
    domain::item::rfc3339,
    service::tree::{CATEGORIES, ENTITIES, NodeInput, TreeRow},
};

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
    /// Every entity, by id.
    async fn entities(&self, ctx: &Context<'_>) -> Result<Vec<Entity>> {
        let s = session(ctx)?;
        Ok(ENTITIES.all(&s.state.db).await?.into_iter().map(Entity::from).collect())
    }

    async fn entity(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Entity>> {
        let s = session(ctx)?;
        Ok(ENTITIES.get(&s.state.db, numeric_id(&id, "id")?).await?.map(Entity::from))
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

#[derive(Default)]
pub struct EntityMutation;

#[Object]
impl EntityMutation {
    async fn create_entity(&self, ctx: &Context<'_>, input: TreeNodeInput<EntityKind>) -> Result<Entity> {
        let s = session(ctx)?;
        Ok(ENTITIES.create(&s.state.db, input.into_node_input()?).await?.into())
    }

    /// Renames, moves (parentId) or re-comments an entity; the completenames below follow.
    async fn update_entity(&self, ctx: &Context<'_>, id: ID, input: TreeNodeInput<EntityKind>) -> Result<Entity> {
        let s = session(ctx)?;
        Ok(ENTITIES.update(&s.state.db, numeric_id(&id, "id")?, input.into_node_input()?).await?.into())
    }

    /// Refused with CONFLICT while the entity has child entities, items or webhooks, and for
    /// the root entity.
    async fn delete_entity(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let s = session(ctx)?;
        ENTITIES.delete(&s.state.db, numeric_id(&id, "id")?).await?;
        Ok(true)
    }

    async fn create_webhook_category(
        &self,
        ctx: &Context<'_>,
        input: TreeNodeInput<CategoryKind>,
    ) -> Result<WebhookCategory> {
        let s = session(ctx)?;
        Ok(CATEGORIES.create(&s.state.db, input.into_node_input()?).await?.into())
    }

    async fn update_webhook_category(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: TreeNodeInput<CategoryKind>,
    ) -> Result<WebhookCategory> {
        let s = session(ctx)?;
        Ok(CATEGORIES.update(&s.state.db, numeric_id(&id, "id")?, input.into_node_input()?).await?.into())
    }

    /// Refused with CONFLICT while the category has child categories or webhooks.
    async fn delete_webhook_category(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let s = session(ctx)?;
        CATEGORIES.delete(&s.state.db, numeric_id(&id, "id")?).await?;
        Ok(true)
    }
}
