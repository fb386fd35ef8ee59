//! API tokens hookline issued: recorded so that they can be listed and revoked. The token
//! itself is never stored, only its id (`jti`) and what it grants.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    /// The token's `jti`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The token's `sub`.
    pub user: String,
    pub profile: String,
    /// `[{"id": 0, "recursive": true}]`
    pub entities: Json,
    /// Who issued it (`sub` of the issuing token; null from the command line or at bootstrap).
    pub issued_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
