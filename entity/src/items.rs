use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "items")]
pub struct Model {
    /// Internal insertion order, used for stable paging.
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub itemtype: String,
    /// The public id, unique per itemtype.
    pub id: String,
    pub entity_id: i64,
    pub name: Option<String>,
    /// A JSON object of the item's own fields.
    pub fields: Json,
    pub parent_itemtype: Option<String>,
    pub parent_id: Option<String>,
    pub is_deleted: bool,
    pub date_creation: DateTimeUtc,
    pub date_mod: DateTimeUtc,
    /// The last writer: the `sub` and `profile` of the token of the latest change.
    pub actor_user: Option<String>,
    pub actor_profile: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
