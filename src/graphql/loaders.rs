//! Batched lookups for nested fields: a page of 500 queued webhooks asking for their webhook,
//! or of items asking for their entity, costs one statement, not 500. Nothing is cached
//! between requests (async-graphql's `DataLoader` without a cache): loads that are due at the
//! same time are gathered into one.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use sea_orm::DatabaseConnection;

use crate::{
    error::AppError,
    service::{
        filters,
        tree::{CATEGORIES, ENTITIES, TreeRow},
        webhooks::{self, Webhook},
    },
};

/// Webhooks by id.
pub struct WebhookLoader(pub DatabaseConnection);

impl Loader<i64> for WebhookLoader {
    type Value = Webhook;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Webhook>, Self::Error> {
        let found = webhooks::get_many(&self.0, ids).await.map_err(async_graphql::Error::from)?;
        Ok(found.into_iter().map(|webhook| (webhook.id, webhook)).collect())
    }
}

/// Entities by id.
pub struct EntityLoader(pub DatabaseConnection);

impl Loader<i64> for EntityLoader {
    type Value = TreeRow;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, TreeRow>, Self::Error> {
        let found = ENTITIES.get_many(&self.0, ids).await.map_err(async_graphql::Error::from)?;
        Ok(found.into_iter().map(|entity| (entity.id, entity)).collect())
    }
}

/// Webhook categories by id.
pub struct CategoryLoader(pub DatabaseConnection);

impl Loader<i64> for CategoryLoader {
    type Value = TreeRow;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, TreeRow>, Self::Error> {
        let found = CATEGORIES.get_many(&self.0, ids).await.map_err(async_graphql::Error::from)?;
        Ok(found.into_iter().map(|category| (category.id, category)).collect())
    }
}

/// Saved searches by id (the filters of a page of webhooks).
pub struct SavedSearchLoader(pub DatabaseConnection);

impl Loader<i64> for SavedSearchLoader {
    type Value = entity::saved_searches::Model;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let found = filters::saved_many(&self.0, ids).await.map_err(async_graphql::Error::from)?;
        Ok(found.into_iter().map(|saved| (saved.id, saved)).collect())
    }
}

/// The loaders, put in the schema's data.
pub fn register(
    builder: async_graphql::SchemaBuilder<super::Query, super::Mutation, super::live::Subscription>,
    db: &DatabaseConnection,
) -> async_graphql::SchemaBuilder<super::Query, super::Mutation, super::live::Subscription> {
    builder
        .data(DataLoader::new(WebhookLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(EntityLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(CategoryLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(SavedSearchLoader(db.clone()), tokio::spawn))
}

/// The loader of type `L` from the request's context.
pub fn loader<'a, L: Send + Sync + 'static>(ctx: &async_graphql::Context<'a>) -> Result<&'a DataLoader<L>, AppError> {
    ctx.data::<DataLoader<L>>().map_err(|_| AppError::internal("the schema was built without its loaders"))
}
