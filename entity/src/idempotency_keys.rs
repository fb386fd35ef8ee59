//! The answers of mutations called with an `idempotencyKey`, kept for the idempotency window.
//! A key is unique per user and mutation.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The token's `sub`.
    pub user: String,
    /// The mutation's field name (`createItem`, `triggerEvents`, …).
    pub operation: String,
    /// The key the client chose.
    pub key: String,
    /// SHA-256 (hex) of the call's arguments other than the key.
    pub fingerprint: String,
    /// What the call answered: the objects it wrote, by reference.
    pub answer: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
