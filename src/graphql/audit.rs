//! The audit log as the API reads it.

use async_graphql::{Context, ID, Json, Object, Result};
use entity::audit_entries;
use serde_json::Value;

use super::{
    context::session,
    paging::{Paged, connection, page_request},
};
use crate::{
    domain::item::rfc3339,
    service::audit::{self, AuditFilter},
};

/// One configuration change.
pub struct AuditEntry(audit_entries::Model);

#[Object]
impl AuditEntry {
    /// The entry's id (entries are numbered in the order they are written).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// RFC 3339, UTC.
    async fn at(&self) -> String {
        rfc3339(self.0.at)
    }

    /// The user of the token that made the change.
    async fn user(&self) -> &str {
        &self.0.user
    }

    /// That token's profile.
    async fn profile(&self) -> &str {
        &self.0.profile
    }

    /// `Webhook`, `Entity`, `WebhookCategory`, `Itemtype`, `SavedSearch` or `ApiToken`.
    async fn object_type(&self) -> &str {
        &self.0.object_type
    }

    /// The id of the object (a token's is its `jti`, an itemtype's its name).
    async fn object_id(&self) -> ID {
        ID(self.0.object_id.clone())
    }

    /// `create`, `update`, `delete`, `regenerateSecret`, `setFilter` or `revoke`.
    async fn action(&self) -> &str {
        &self.0.action
    }

    /// `[{field, old, new}]`: the fields the change set, with their values before and after
    /// (secrets and credential headers as `(hidden)`).
    async fn changes(&self) -> Json<&Value> {
        Json(&self.0.changes)
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Configuration changes, newest first: those of objects in the caller's entities
    /// (changes to global catalogs and saved searches only for a token of every entity).
    /// Entries outlive their object; the cleanup removes them after
    /// `HOOKLINE_CLEANUP_AUDIT_DAYS`.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        object_type: Option<String>,
        object_id: Option<ID>,
        user: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<AuditEntry>> {
        let s = session(ctx)?;
        let request = page_request(first, after)?;
        let filter =
            AuditFilter { object_type, object_id: object_id.map(|id| id.0), user, within: s.scope_ids().await? };
        let page = audit::list(&s.state.db, &filter, request).await?;
        Ok(connection(page, request.after.is_some(), AuditEntry))
    }
}
