//! The delivery queue: one row per (event × matching webhook), GLPI's `glpi_queuedwebhooks`
//! columns plus a status, the last error, a stable delivery id and the worker's lease.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    Id,
    WebhookId,
    Itemtype,
    ItemId,
    EntityId,
    Event,
    Url,
    HttpMethod,
    Headers,
    Body,
    Status,
    SentTry,
    MaxAttempts,
    DeliveryId,
    CreateTime,
    SendTime,
    SentTime,
    LastStatusCode,
    ResponseBody,
    LastError,
    SaveResponseBody,
    LogInItemHistory,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager
            .create_table(
                Table::create()
                    .table(Q::Table)
                    .col(big_pk_auto(Q::Id))
                    .col(big_integer(Q::WebhookId))
                    .col(string(Q::Itemtype))
                    .col(string(Q::ItemId))
                    .col(big_integer(Q::EntityId))
                    .col(string(Q::Event))
                    .col(text(Q::Url))
                    .col(string(Q::HttpMethod))
                    .col(json(Q::Headers))
                    .col(text_null(Q::Body))
                    .col(string(Q::Status))
                    .col(integer(Q::SentTry))
                    .col(integer(Q::MaxAttempts))
                    .col(string(Q::DeliveryId))
                    .col(timestamp_with_time_zone(Q::CreateTime))
                    .col(timestamp_with_time_zone(Q::SendTime))
                    .col(timestamp_with_time_zone_null(Q::SentTime))
                    .col(integer_null(Q::LastStatusCode))
                    .col(text_null(Q::ResponseBody))
                    .col(text_null(Q::LastError))
                    .col(boolean(Q::SaveResponseBody))
                    .col(boolean(Q::LogInItemHistory))
                    .col(timestamp_with_time_zone_null(Q::LeaseUntil))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Q::Table, Q::WebhookId)
                            .to(Webhooks::Table, Webhooks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes: [(&str, Vec<Q>); 5] = [
            ("idx_queued_webhooks_due", vec![Q::Status, Q::SendTime]),
            ("idx_queued_webhooks_webhook", vec![Q::WebhookId]),
            ("idx_queued_webhooks_item", vec![Q::Itemtype, Q::ItemId]),
            ("idx_queued_webhooks_entity", vec![Q::EntityId]),
            ("idx_queued_webhooks_delivery", vec![Q::DeliveryId]),
        ];
        for (name, columns) in indexes {
            let mut index = Index::create().name(name).table(Q::Table).to_owned();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(QueuedWebhooks::Table).to_owned()).await
    }
}
