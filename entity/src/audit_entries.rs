//! The audit log: one row per configuration change (who, when, which object, what changed).
//! Rows outlive their object.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    /// The token's `sub`.
    pub user: String,
    pub profile: String,
    /// `Webhook`, `Entity`, `WebhookCategory`, `Itemtype`, `SavedSearch`, `ApiToken`.
    pub object_type: String,
    pub object_id: String,
    /// `create`, `update`, `delete`, `regenerateSecret`, `setFilter`, `revoke`.
    pub action: String,
    /// `[{"field", "old", "new"}]`, secrets shown as `(hidden)`.
    pub changes: Json,
    /// The entity the object belongs to, which bounds who reads the entry; null for global
    /// catalogs and saved searches (read by callers of every entity only).
    pub entity_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
