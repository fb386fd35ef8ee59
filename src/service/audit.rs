//! The audit log: every configuration change, with who made it and the fields it changed
//! (old and new values; secrets shown as `(hidden)`). Entries outlive their object.

use chrono::{DateTime, Utc};
use entity::audit_entries;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::{Map, Value, json};

use super::{
    filters::WebhookFilter,
    paging::{Page, PageRequest},
    tree::TreeRow,
    webhooks::Webhook,
};
use crate::{
    auth::Caller,
    domain::headers::{HIDDEN, redact_headers},
    error::AppResult,
};

/// What changed: the object and the fields.
#[derive(Debug, Clone)]
pub struct Change {
    pub object_type: &'static str,
    pub object_id: String,
    pub action: &'static str,
    /// `[{field, old, new}]`.
    pub changes: Vec<Value>,
    /// The object's entity (None for global catalogs and saved searches).
    pub entity_id: Option<i64>,
}

impl Change {
    pub fn new(object_type: &'static str, object_id: impl ToString, action: &'static str) -> Self {
        Self { object_type, object_id: object_id.to_string(), action, changes: Vec::new(), entity_id: None }
    }

    pub fn in_entity(mut self, entity_id: i64) -> Self {
        self.entity_id = Some(entity_id);
        self
    }

    /// The fields whose values differ between two views of the object (a created object
    /// has an empty `before`, a deleted one an empty `after`).
    pub fn fields(mut self, before: &Map<String, Value>, after: &Map<String, Value>) -> Self {
        let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let (old, new) = (before.get(name).unwrap_or(&Value::Null), after.get(name).unwrap_or(&Value::Null));
            if old != new {
                self.changes.push(json!({"field": name, "old": old, "new": new}));
            }
        }
        self
    }

    /// A secret that was set or replaced: its values are never written down.
    pub fn secret(mut self, field: &str) -> Self {
        self.changes.push(json!({"field": field, "old": HIDDEN, "new": HIDDEN}));
        self
    }
}

/// A webhook's settings as the audit log compares them (credential headers hidden).
pub fn webhook_view(webhook: &Webhook) -> Map<String, Value> {
    let s = &webhook.settings;
    let filter = match &webhook.filter {
        WebhookFilter::None => Value::Null,
        WebhookFilter::Inline(criteria) => json!({"criteria": criteria}),
        WebhookFilter::Saved(id) => json!({"savedSearchId": id.to_string()}),
        WebhookFilter::Unreadable(why) => json!({"unreadable": why}),
    };
    let view = json!({
        "name": s.name, "comment": s.comment, "isActive": s.is_active,
        "categoryId": s.category_id.map(|id| id.to_string()), "entityId": s.entity_id.to_string(),
        "isRecursive": s.is_recursive, "itemtype": s.itemtype, "event": s.event.as_str(), "sentTry": s.sent_try,
        "url": s.url, "httpMethod": s.http_method.as_str(), "saveResponseBody": s.save_response_body,
        "logInItemHistory": s.log_in_item_history, "signatureScheme": s.signature_scheme.as_str(),
        "expiration": s.expiration, "useCraChallenge": s.use_cra_challenge, "useOauth": s.use_oauth,
        "oauthUrl": s.oauth_url, "clientId": s.client_id, "useDefaultPayload": s.use_default_payload,
        "payload": s.payload, "customHeaders": Value::Object(redact_headers(&s.custom_headers)),
        "maxPerSecond": s.max_per_second, "filter": filter, "ordered": s.ordered, "coalesceSeconds": s.coalesce_seconds,
    });
    match view {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A tree node (entity or webhook category) as the audit log compares it.
pub fn node_view(node: &TreeRow) -> Map<String, Value> {
    match json!({"name": node.name, "parentId": node.parent_id.map(|id| id.to_string()), "comment": node.comment}) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Any serializable view (saved searches, itemtypes, tokens) as a map of its fields.
pub fn view(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Writes the entry, on the connection (or transaction) of the change itself.
pub async fn record(conn: &impl ConnectionTrait, actor: &Caller, change: Change) -> AppResult<()> {
    audit_entries::ActiveModel {
        at: Set(Utc::now()),
        user: Set(actor.user.clone()),
        profile: Set(actor.profile.as_str().to_owned()),
        object_type: Set(change.object_type.to_owned()),
        object_id: Set(change.object_id),
        action: Set(change.action.to_owned()),
        changes: Set(Value::Array(change.changes)),
        entity_id: Set(change.entity_id),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub user: Option<String>,
    /// The caller's entities: only entries of objects in them (and no global ones); None: all.
    pub within: Option<Vec<i64>>,
}

/// Entries, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: PageRequest,
) -> AppResult<Page<audit_entries::Model>> {
    use audit_entries::Column as A;
    let mut base = audit_entries::Entity::find();
    if let Some(object_type) = &filter.object_type {
        base = base.filter(A::ObjectType.eq(object_type));
    }
    if let Some(object_id) = &filter.object_id {
        base = base.filter(A::ObjectId.eq(object_id));
    }
    if let Some(user) = &filter.user {
        base = base.filter(A::User.eq(user));
    }
    if let Some(within) = &filter.within {
        base = base.filter(A::EntityId.is_in(within.iter().copied()));
    }
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_desc(A::Id).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(A::Id.lt(after));
    }
    let rows = query.all(conn).await?.into_iter().map(|m| (m.id, m)).collect();
    Ok(Page::from_fetched(rows, page, total))
}

/// Deletes entries older than `before`, and the records of tokens expired before `expired`;
/// returns how many of each.
pub async fn clean(
    conn: &impl ConnectionTrait,
    before: DateTime<Utc>,
    expired: DateTime<Utc>,
) -> AppResult<(u64, u64)> {
    let entries = audit_entries::Entity::delete_many().filter(audit_entries::Column::At.lt(before)).exec(conn).await?;
    let tokens = entity::api_tokens::Entity::delete_many()
        .filter(entity::api_tokens::Column::ExpiresAt.is_not_null())
        .filter(entity::api_tokens::Column::ExpiresAt.lt(expired))
        .exec(conn)
        .await?;
    Ok((entries.rows_affected, tokens.rows_affected))
}
