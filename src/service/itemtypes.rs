//! The itemtype catalog.

use entity::itemtypes;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::Value;

use crate::{
    domain::itemtype::{self, SEEDED},
    error::{AppError, AppResult},
};

/// An itemtype as the services use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Itemtype {
    pub name: String,
    pub is_custom: bool,
    pub parent_itemtypes: Vec<String>,
    pub fields: Vec<String>,
}

impl From<itemtypes::Model> for Itemtype {
    fn from(m: itemtypes::Model) -> Self {
        let strings = |v: Value| -> Vec<String> { serde_json::from_value(v).unwrap_or_default() };
        Self {
            name: m.name,
            is_custom: m.is_custom,
            parent_itemtypes: strings(m.parent_itemtypes),
            fields: strings(m.fields),
        }
    }
}

/// Adds the seeded types that are missing; leaves existing rows alone.
pub async fn seed(db: &DatabaseConnection) -> AppResult<()> {
    let rows = SEEDED.iter().map(|s| itemtypes::ActiveModel {
        name: Set(s.name.to_owned()),
        is_custom: Set(false),
        parent_itemtypes: Set(Value::from(s.parent_itemtypes.to_vec())),
        fields: Set(Value::from(s.fields.to_vec())),
        next_item_id: Set(1),
    });
    itemtypes::Entity::insert_many(rows).on_conflict_do_nothing_on([itemtypes::Column::Name]).exec(db).await?;
    Ok(())
}

pub async fn list(conn: &impl ConnectionTrait) -> AppResult<Vec<Itemtype>> {
    let rows = itemtypes::Entity::find().order_by_asc(itemtypes::Column::Name).all(conn).await?;
    Ok(rows.into_iter().map(Itemtype::from).collect())
}

pub async fn get(conn: &impl ConnectionTrait, name: &str) -> AppResult<Option<Itemtype>> {
    Ok(itemtypes::Entity::find_by_id(name.to_owned()).one(conn).await?.map(Itemtype::from))
}

/// The itemtype, or VALIDATION naming `field` when it is not in the catalog.
pub async fn require(conn: &impl ConnectionTrait, name: &str, field: &str) -> AppResult<Itemtype> {
    get(conn, name).await?.ok_or_else(|| {
        AppError::validation(format!("{field}: unknown itemtype `{name}`; add it with createItemtype first"))
    })
}

/// What `createItemtype` asks for.
#[derive(Debug, Clone)]
pub struct NewItemtype {
    pub name: String,
    pub parent_itemtypes: Vec<String>,
    pub fields: Vec<String>,
}

pub async fn create(db: &DatabaseConnection, input: NewItemtype) -> AppResult<Itemtype> {
    let name = itemtype::checked_name(&input.name)?;
    if get(db, &name).await?.is_some() {
        return Err(AppError::conflict(format!("the itemtype `{name}` already exists")));
    }
    let mut parents = Vec::new();
    for parent in input.parent_itemtypes {
        require(db, &parent, "parentItemtypes").await?;
        if !parents.contains(&parent) {
            parents.push(parent);
        }
    }
    let mut fields = Vec::new();
    for field in input.fields {
        let field = field.trim().to_owned();
        if field.is_empty() || crate::domain::item::RESERVED_KEYS.contains(&field.as_str()) {
            return Err(AppError::validation(format!(
                "fields: `{field}` cannot be a field name (empty or reserved by hookline)"
            )));
        }
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    let model = itemtypes::ActiveModel {
        name: Set(name),
        is_custom: Set(true),
        parent_itemtypes: Set(Value::from(parents)),
        fields: Set(Value::from(fields)),
        next_item_id: Set(1),
    };
    Ok(itemtypes::Entity::insert(model).exec_with_returning(db).await?.into())
}
