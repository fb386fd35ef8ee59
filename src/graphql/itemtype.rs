//! The itemtype catalog.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::context::session;
use crate::service::{
    audit,
    itemtypes::{self, NewItemtype},
};

/// A type of item: one of GLPI's (Ticket, Computer, User, …) or a custom one.
#[derive(SimpleObject)]
pub struct Itemtype {
    pub name: String,
    /// Added with createItemtype rather than seeded.
    pub is_custom: bool,
    /// The types an item of this type may have as parent (a followup's ticket).
    pub parent_itemtypes: Vec<String>,
    /// The field names known for this type, offered for autocompletion.
    pub fields: Vec<String>,
}

impl From<itemtypes::Itemtype> for Itemtype {
    fn from(t: itemtypes::Itemtype) -> Self {
        Self { name: t.name, is_custom: t.is_custom, parent_itemtypes: t.parent_itemtypes, fields: t.fields }
    }
}

/// A custom itemtype.
#[derive(InputObject)]
pub struct ItemtypeInput {
    /// A letter, then letters, digits, `_` or `\` (e.g. `Glpi\CustomAsset\Car`).
    pub name: String,
    /// Existing itemtypes an item of this type may have as parent.
    pub parent_itemtypes: Option<Vec<String>>,
    /// Known field names (not `id`, `name`, `entity`, `is_deleted`, `date_creation`, `date_mod`).
    pub fields: Option<Vec<String>>,
}

#[derive(Default)]
pub struct ItemtypeQuery;

#[Object]
impl ItemtypeQuery {
    /// Every itemtype, by name.
    async fn itemtypes(&self, ctx: &Context<'_>) -> Result<Vec<Itemtype>> {
        let s = session(ctx)?;
        Ok(itemtypes::list(&s.state.db).await?.into_iter().map(Itemtype::from).collect())
    }
}

#[derive(Default)]
pub struct ItemtypeMutation;

#[Object]
impl ItemtypeMutation {
    /// Adds a custom itemtype; items of a type not in the catalog are refused.
    async fn create_itemtype(&self, ctx: &Context<'_>, input: ItemtypeInput) -> Result<Itemtype> {
        let s = session(ctx)?;
        let input = NewItemtype {
            name: input.name,
            parent_itemtypes: input.parent_itemtypes.unwrap_or_default(),
            fields: input.fields.unwrap_or_default(),
        };
        let created = itemtypes::create(&s.state.db, input).await?;
        let view = audit::view(serde_json::json!({
            "name": created.name, "parentItemtypes": created.parent_itemtypes, "fields": created.fields,
        }));
        s.audit(audit::Change::new("Itemtype", &created.name, "create").fields(&serde_json::Map::new(), &view)).await;
        Ok(created.into())
    }
}
