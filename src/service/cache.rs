//! Caches for the write path: the webhooks of an (itemtype, event), the entity tree and the
//! itemtype catalog.
//!
//! A use checks a cheap version of the cached rows (their count and latest `updated_at`) in
//! the caller's transaction, so a change made by any process is seen at once and nothing has
//! to be invalidated by hand. Inside the writer the version is checked once per batch (every
//! job of a batch was submitted before the batch began, so a change that completed before a
//! job was submitted is seen by that check). Itemtypes are never changed or removed once
//! created: a known one is never read again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use entity::{entities, saved_searches, webhooks as webhook_rows};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    filters::{WebhookFilter, compiled_filter},
    itemtypes::{self, Itemtype},
    tree::EntityIndex,
    webhook_secrets::opened_settings,
    webhooks::Webhook,
};
use crate::{
    domain::{filter::Filter, render::WebhookTemplates, template::Limits},
    error::{AppError, AppResult},
    secret_box::SecretBox,
};

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
struct Version {
    count: i64,
    latest: Option<DateTime<Utc>>,
}

type WebhookKey = (String, &'static str);

/// The versions of the webhooks and of the saved searches a list was loaded at, the list, and
/// the write batch in which the versions were last checked.
type CachedList = ((Version, Version), Arc<Vec<CachedWebhook>>, Option<u64>);

/// A webhook and its parsed templates (or why they do not parse). Its Debug output leaves the
/// templates out: their credential headers are opened.
pub struct CachedWebhook {
    pub webhook: Webhook,
    pub templates: Result<WebhookTemplates, String>,
    /// The compiled filter, if the webhook has one.
    pub filter: Option<Result<Filter, String>>,
}

impl std::fmt::Debug for CachedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedWebhook")
            .field("webhook", &self.webhook)
            .field("templates", &self.templates.as_ref().map(|_| "<parsed>"))
            .field("filter", &self.filter)
            .finish()
    }
}

/// The version the entity tree was loaded at, the tree, and the batch it was last checked in.
type CachedTree = (Version, Arc<EntityIndex>, Option<u64>);

#[derive(Default)]
pub struct HotCache {
    webhooks: Mutex<HashMap<WebhookKey, CachedList>>,
    entities: Mutex<Option<CachedTree>>,
    itemtypes: Mutex<HashMap<String, Itemtype>>,
    /// Versions read together for one write batch ([`HotCache::read_versions`]).
    read: Mutex<Option<BatchVersions>>,
}

/// The versions a write batch read in one statement: those of one (itemtype, event)'s
/// webhooks, of the saved searches and of the entity tree.
struct BatchVersions {
    batch: u64,
    key: WebhookKey,
    webhooks: Version,
    searches: Version,
    entities: Version,
}

impl std::fmt::Debug for HotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HotCache")
    }
}

/// The count and latest `updated_at` of the rows a query selects.
async fn version<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    rows: sea_orm::Select<E>,
    id: E::Column,
    updated_at: E::Column,
) -> AppResult<Option<Version>> {
    Ok(rows
        .select_only()
        .column_as(Expr::col(id).count(), "count")
        .column_as(Expr::col(updated_at).max(), "latest")
        .into_model::<Version>()
        .one(conn)
        .await?)
}

/// `SELECT COUNT(id), MAX(updated_at)` of the rows of `E` that meet `condition`, as two scalar
/// subqueries named `{name}_count` and `{name}_latest` of `into`. Built from the table alone:
/// a `Select` of the entity would list (and allocate) every column first, once per write batch.
fn version_columns<E: EntityTrait>(
    into: &mut sea_orm::sea_query::SelectStatement,
    name: &str,
    condition: sea_orm::Condition,
    id: E::Column,
    updated_at: E::Column,
) {
    use sea_orm::sea_query::{Query, SubQueryStatement};
    let scalar = |value: Expr| {
        let query = Query::select().expr(value).from(E::default()).cond_where(condition.clone()).to_owned();
        Expr::SubQuery(None, Box::new(SubQueryStatement::SelectStatement(query)))
    };
    into.expr_as(scalar(Expr::col(id).count()), format!("{name}_count"));
    into.expr_as(scalar(Expr::col(updated_at).max()), format!("{name}_latest"));
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HotCache {
    /// The webhooks of the itemtype and event as last loaded, unchecked: good enough to prepare
    /// a write that the writer checks again.
    pub fn webhooks_hint(&self, itemtype: &str, event: &'static str) -> Option<Arc<Vec<CachedWebhook>>> {
        lock(&self.webhooks).get(&(itemtype.to_owned(), event)).map(|(_, list, _)| list.clone())
    }

    /// The entity tree as last loaded, unchecked (see [`Self::webhooks_hint`]).
    pub fn entities_hint(&self) -> Option<Arc<EntityIndex>> {
        lock(&self.entities).as_ref().map(|(_, index, _)| index.clone())
    }

    /// The itemtype, or VALIDATION naming `field` when it is not in the catalog.
    pub async fn itemtype(&self, conn: &impl ConnectionTrait, name: &str, field: &str) -> AppResult<Itemtype> {
        if let Some(known) = lock(&self.itemtypes).get(name) {
            return Ok(known.clone());
        }
        let found = itemtypes::get(conn, name).await?.ok_or_else(|| {
            AppError::validation(format!("{field}: unknown itemtype `{name}`; add it with createItemtype first"))
        })?;
        lock(&self.itemtypes).insert(name.to_owned(), found.clone());
        Ok(found)
    }

    /// Reads, in one statement, the versions that [`Self::webhooks`] (for `itemtype` and
    /// `event`) and [`Self::entities_in`] check in write batch `batch`, unless both were checked
    /// in it already: the checks then use them instead of a statement each. Outside a batch it
    /// does nothing.
    pub async fn read_versions(
        &self,
        conn: &impl ConnectionTrait,
        itemtype: &str,
        event: &'static str,
        batch: Option<u64>,
    ) -> AppResult<()> {
        let Some(number) = batch else { return Ok(()) };
        let key = (itemtype.to_owned(), event);
        let webhooks_checked = lock(&self.webhooks).get(&key).is_some_and(|(_, _, checked)| *checked == batch);
        let entities_checked = lock(&self.entities).as_ref().is_some_and(|(_, _, checked)| *checked == batch);
        if webhooks_checked && entities_checked {
            return Ok(());
        }
        let mut query = sea_orm::sea_query::Query::select();
        let webhooks = sea_orm::Condition::all()
            .add(webhook_rows::Column::Itemtype.eq(itemtype))
            .add(webhook_rows::Column::Event.eq(event));
        version_columns::<webhook_rows::Entity>(
            &mut query,
            "webhooks",
            webhooks,
            webhook_rows::Column::Id,
            webhook_rows::Column::UpdatedAt,
        );
        version_columns::<saved_searches::Entity>(
            &mut query,
            "searches",
            sea_orm::Condition::all(),
            saved_searches::Column::Id,
            saved_searches::Column::UpdatedAt,
        );
        version_columns::<entities::Entity>(
            &mut query,
            "entities",
            sea_orm::Condition::all(),
            entities::Column::Id,
            entities::Column::UpdatedAt,
        );
        let Some(row) = conn.query_one(&query).await? else { return Ok(()) };
        let read = |name: &str| -> AppResult<Version> {
            Ok(Version {
                count: row.try_get("", &format!("{name}_count"))?,
                latest: row.try_get("", &format!("{name}_latest"))?,
            })
        };
        let versions = BatchVersions {
            batch: number,
            key,
            webhooks: read("webhooks")?,
            searches: read("searches")?,
            entities: read("entities")?,
        };
        *lock(&self.read) = Some(versions);
        Ok(())
    }

    /// The versions read for this batch by [`Self::read_versions`], if it read them.
    fn versions_read<T>(&self, batch: Option<u64>, pick: impl FnOnce(&BatchVersions) -> Option<T>) -> Option<T> {
        lock(&self.read).as_ref().filter(|read| Some(read.batch) == batch).and_then(pick)
    }

    /// Every webhook (active or not) of the itemtype and event, with its templates parsed (its
    /// credential headers opened with `secrets`). `batch`: the writer's batch the caller runs
    /// in, if any.
    pub async fn webhooks(
        &self,
        conn: &impl ConnectionTrait,
        secrets: &SecretBox,
        itemtype: &str,
        event: &'static str,
        limits: Limits,
        batch: Option<u64>,
    ) -> AppResult<Arc<Vec<CachedWebhook>>> {
        let key = (itemtype.to_owned(), event);
        if let Some((_, list, Some(checked))) = lock(&self.webhooks).get(&key)
            && batch == Some(*checked)
        {
            return Ok(list.clone());
        }
        let filter = |q: sea_orm::Select<webhook_rows::Entity>| {
            q.filter(webhook_rows::Column::Itemtype.eq(itemtype)).filter(webhook_rows::Column::Event.eq(event))
        };
        let webhooks = match self.versions_read(batch, |read| (read.key == key).then(|| read.webhooks.clone())) {
            Some(read) => Some(read),
            None => {
                version(
                    conn,
                    filter(webhook_rows::Entity::find()),
                    webhook_rows::Column::Id,
                    webhook_rows::Column::UpdatedAt,
                )
                .await?
            }
        };
        // Saved searches used as filters change independently of the webhooks; their version
        // only matters when one of these webhooks uses one.
        let uses_saved = match lock(&self.webhooks).get(&key) {
            Some(((cached, _), list, _)) if Some(cached) == webhooks.as_ref() => {
                list.iter().any(|c| matches!(c.webhook.filter, WebhookFilter::Saved(_)))
            }
            _ => true,
        };
        let searches = if uses_saved {
            match self.versions_read(batch, |read| Some(read.searches.clone())) {
                Some(read) => Some(read),
                None => {
                    version(
                        conn,
                        saved_searches::Entity::find(),
                        saved_searches::Column::Id,
                        saved_searches::Column::UpdatedAt,
                    )
                    .await?
                }
            }
        } else {
            Some(Version { count: -1, latest: None })
        };
        let version = webhooks.zip(searches);
        if let (Some((webhooks, searches)), Some(((cached_webhooks, cached_searches), list, checked))) =
            (&version, lock(&self.webhooks).get_mut(&key))
            && webhooks == cached_webhooks
            && (!uses_saved || searches == cached_searches)
        {
            *checked = batch;
            return Ok(list.clone());
        }
        let rows = filter(webhook_rows::Entity::find()).all(conn).await?;
        let mut list = Vec::with_capacity(rows.len());
        for row in rows {
            let webhook = Webhook::try_from(row)?;
            let templates = match opened_settings(&webhook, secrets) {
                Ok(settings) => WebhookTemplates::parse(&settings, limits).map_err(|e| e.to_string()),
                Err(err) => {
                    tracing::error!(webhook = webhook.id, error = ?err, "a credential header of the webhook cannot be opened");
                    Err("a stored credential header cannot be decrypted: was HOOKLINE_SECRET_KEY changed?".to_owned())
                }
            };
            let filter = compiled_filter(conn, &webhook.filter).await?;
            if let Some(Err(reason)) = &filter {
                tracing::warn!(webhook = webhook.id, %reason, "the webhook's filter cannot be used; it fires for nothing");
            }
            list.push(CachedWebhook { webhook, templates, filter });
        }
        let list = Arc::new(list);
        if let Some(version) = version {
            lock(&self.webhooks).insert(key, (version, list.clone(), batch));
        }
        Ok(list)
    }

    /// The entity tree.
    pub async fn entities(&self, conn: &impl ConnectionTrait) -> AppResult<Arc<EntityIndex>> {
        self.entities_in(conn, None).await
    }

    /// The entity tree, checked once per writer batch.
    pub async fn entities_in(&self, conn: &impl ConnectionTrait, batch: Option<u64>) -> AppResult<Arc<EntityIndex>> {
        if let Some((_, index, Some(checked))) = lock(&self.entities).as_ref()
            && batch == Some(*checked)
        {
            return Ok(index.clone());
        }
        let version = match self.versions_read(batch, |read| Some(read.entities.clone())) {
            Some(read) => Some(read),
            None => version(conn, entities::Entity::find(), entities::Column::Id, entities::Column::UpdatedAt).await?,
        };
        if let (Some(version), Some((cached, index, checked))) = (&version, lock(&self.entities).as_mut())
            && version == cached
        {
            *checked = batch;
            return Ok(index.clone());
        }
        let index = Arc::new(EntityIndex::load(conn).await?);
        if let Some(version) = version {
            *lock(&self.entities) = Some((version, index.clone(), batch));
        }
        Ok(index)
    }
}
