//! Batched lookups for nested fields: a page of 500 queued webhooks asking for their webhook,
//! or of items asking for their entity, costs one statement, not 500. Nothing is cached
//! between requests (async-graphql's `DataLoader` without a cache): loads that are due at the
//! same time are gathered into one.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::{DataLoader, Loader};
use sea_orm::DatabaseConnection;

use crate::{
    domain::breaker::Health,
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

/// The circuit breakers of webhooks by id (those that never failed have none: closed).
pub struct HealthLoader(pub DatabaseConnection);

impl Loader<i64> for HealthLoader {
    type Value = Health;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Health>, Self::Error> {
        let found = crate::queue::health::get_many(&self.0, ids).await.map_err(async_graphql::Error::from)?;
        Ok(found.into_iter().map(|health| (health.webhook_id, health)).collect())
    }
}

/// The entities a caller sees (None: every entity), shared by the keys of one request.
pub type Within = Option<Arc<[i64]>>;

/// The newest queued webhook of each webhook, among the rows of the caller's entities.
pub struct NewestQueuedLoader(pub DatabaseConnection);

impl Loader<(i64, Within)> for NewestQueuedLoader {
    type Value = entity::queued_webhooks::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[(i64, Within)]) -> Result<HashMap<(i64, Within), Self::Value>, Self::Error> {
        let mut out = HashMap::with_capacity(keys.len());
        for (within, ids) in grouped(keys, |(id, within)| (within.clone(), *id)) {
            let newest = crate::queue::recent::newest(&self.0, &ids, within.as_deref())
                .await
                .map_err(async_graphql::Error::from)?;
            out.extend(newest.into_iter().map(|(id, row)| ((id, within.clone()), row)));
        }
        Ok(out)
    }
}

/// A webhook's counters over its rows created in the last `seconds`, of the caller's entities.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecentStatsKey {
    pub webhook_id: i64,
    pub seconds: i64,
    pub within: Within,
}

/// The counters of `Webhook.stats`, for every webhook of a page at once.
pub struct RecentStatsLoader(pub DatabaseConnection);

impl Loader<RecentStatsKey> for RecentStatsLoader {
    type Value = crate::queue::QueueStats;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[RecentStatsKey]) -> Result<HashMap<RecentStatsKey, Self::Value>, Self::Error> {
        let now = chrono::Utc::now();
        let mut out = HashMap::with_capacity(keys.len());
        for ((seconds, within), ids) in grouped(keys, |k| ((k.seconds, k.within.clone()), k.webhook_id)) {
            let since = now - chrono::Duration::seconds(seconds);
            let stats = crate::queue::recent::stats_since(&self.0, &ids, since, within.as_deref())
                .await
                .map_err(async_graphql::Error::from)?;
            out.extend(
                stats
                    .into_iter()
                    .map(|(webhook_id, stats)| (RecentStatsKey { webhook_id, seconds, within: within.clone() }, stats)),
            );
        }
        Ok(out)
    }
}

/// The webhook ids of the keys, grouped by what else the keys ask.
fn grouped<K, G: std::hash::Hash + Eq>(keys: &[K], split: impl Fn(&K) -> (G, i64)) -> HashMap<G, Vec<i64>> {
    let mut groups: HashMap<G, Vec<i64>> = HashMap::new();
    for key in keys {
        let (group, id) = split(key);
        groups.entry(group).or_default().push(id);
    }
    groups
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
        .data(DataLoader::new(NewestQueuedLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(RecentStatsLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(HealthLoader(db.clone()), tokio::spawn))
}

/// The loader of type `L` from the request's context.
pub fn loader<'a, L: Send + Sync + 'static>(ctx: &async_graphql::Context<'a>) -> Result<&'a DataLoader<L>, AppError> {
    ctx.data::<DataLoader<L>>().map_err(|_| AppError::internal("the schema was built without its loaders"))
}
