use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "itemtypes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub is_custom: bool,
    /// JSON array of itemtype names an item of this type may have as parent.
    pub parent_itemtypes: Json,
    /// JSON array of the field names known for this type.
    pub fields: Json,
    /// The next number hookline assigns as an item id when the caller gives none.
    pub next_item_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
