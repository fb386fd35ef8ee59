//! Test deliveries (`sendTestDelivery`): a queued webhook says whether it was a test, so that
//! the queries log can show it apart. And a webhook's rows are indexed by (webhook, id), so
//! that its newest row (`Webhook.lastQueuedWebhook`) and its queue, newest first, are read
//! from the end of the index rather than from every row of the webhook.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    Id,
    WebhookId,
    IsTest,
}

const OLD_INDEX: &str = "idx_queued_webhooks_webhook";
const NEW_INDEX: &str = "idx_queued_webhooks_webhook_newest";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager
            .alter_table(Table::alter().table(Q::Table).add_column(boolean(Q::IsTest).default(false)).to_owned())
            .await?;
        manager
            .create_index(Index::create().name(NEW_INDEX).table(Q::Table).col(Q::WebhookId).col(Q::Id).to_owned())
            .await?;
        manager.drop_index(Index::drop().name(OLD_INDEX).table(Q::Table).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager.create_index(Index::create().name(OLD_INDEX).table(Q::Table).col(Q::WebhookId).to_owned()).await?;
        manager.drop_index(Index::drop().name(NEW_INDEX).table(Q::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Q::Table).drop_column(Q::IsTest).to_owned()).await
    }
}
