//! The trace a queued webhook belongs to: the W3C `traceparent` of the event that queued it
//! (the trace of the mutation, continued from the caller's when it sent one), so that every
//! attempt, retries included, joins that trace. Null for rows queued before.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    Traceparent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(QueuedWebhooks::Table)
                    .add_column(string_null(QueuedWebhooks::Traceparent))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(QueuedWebhooks::Table).drop_column(QueuedWebhooks::Traceparent).to_owned(),
            )
            .await
    }
}
