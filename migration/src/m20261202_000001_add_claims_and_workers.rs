//! Fenced claims and process heartbeats: a queued webhook records which process claimed it
//! and the claim's token (an outcome is written only by the claim that made it), and each
//! process keeps a heartbeat row so that the rows of a dead process are released quickly.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    ClaimToken,
    ClaimedBy,
}

#[derive(DeriveIden)]
enum Workers {
    Table,
    Id,
    StartedAt,
    HeartbeatAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager
            .alter_table(Table::alter().table(Q::Table).add_column(big_integer_null(Q::ClaimToken)).to_owned())
            .await?;
        manager.alter_table(Table::alter().table(Q::Table).add_column(string_null(Q::ClaimedBy)).to_owned()).await?;
        manager
            .create_table(
                Table::create()
                    .table(Workers::Table)
                    .col(string(Workers::Id).primary_key())
                    .col(timestamp_with_time_zone(Workers::StartedAt))
                    .col(timestamp_with_time_zone(Workers::HeartbeatAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager.drop_table(Table::drop().table(Workers::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Q::Table).drop_column(Q::ClaimedBy).to_owned()).await?;
        manager.alter_table(Table::alter().table(Q::Table).drop_column(Q::ClaimToken).to_owned()).await
    }
}
