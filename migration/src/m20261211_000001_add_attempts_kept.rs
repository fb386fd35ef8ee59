//! How many attempts each queued webhook keeps (`queued_webhooks.attempts_kept`), counted by
//! the outcome write that adds one: the attempts of a row are trimmed to its latest hundred
//! only when it holds more, instead of ranking every row's attempts at every write. Only the
//! queue's store reads and writes it. Rows queued before count what they already keep.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    AttemptsKept,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager
            .alter_table(Table::alter().table(Q::Table).add_column(integer(Q::AttemptsKept).default(0)).to_owned())
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE queued_webhooks SET attempts_kept = (SELECT COUNT(*) FROM delivery_attempts AS a \
                 WHERE a.queued_webhook_id = queued_webhooks.id) \
                 WHERE id IN (SELECT queued_webhook_id FROM delivery_attempts)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager.alter_table(Table::alter().table(Q::Table).drop_column(Q::AttemptsKept).to_owned()).await
    }
}
