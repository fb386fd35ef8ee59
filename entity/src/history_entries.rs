use sea_orm::entity::prelude::*;

/// What a history entry is about.
pub const SUBJECT_ITEM: &str = "item";
pub const SUBJECT_WEBHOOK: &str = "webhook";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "history_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// [`SUBJECT_ITEM`] or [`SUBJECT_WEBHOOK`].
    pub subject: String,
    /// The item's itemtype; empty for webhooks.
    pub itemtype: String,
    pub subject_id: String,
    pub date: DateTimeUtc,
    pub action: String,
    pub message: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub queued_webhook_id: Option<i64>,
    /// Who made the change (the token's `sub`); null for the server's own entries.
    pub actor_user: Option<String>,
    pub actor_profile: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
