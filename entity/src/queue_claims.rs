//! The claims whose rows may still be in flight: each claim's token (which its rows keep in
//! `queued_webhooks.claim_token`), the process that made it and when its lease ends. Rows in
//! flight are found through here, so that no index of the queue holds a column an outcome
//! changes. A claim is deleted once none of its rows is `sending`, or when its rows are given
//! back.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "queue_claims")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token: i64,
    /// The process's id (`workers.id`).
    pub claimed_by: String,
    pub lease_until: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
