//! Delivery control (issue 16): every attempt of a queued webhook kept in `delivery_attempts`
//! (deleted with its row: the foreign key cascades, and SQLite connections run with foreign
//! keys on), and a webhook's previous signing secret, sealed like the current one, kept until
//! its expiry so that a rotation signs with both for a while.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    QueuedWebhookId,
    StartedAt,
    DurationMs,
    Method,
    Url,
    RequestHeaders,
    StatusCode,
    ResponseHeaders,
    ResponseBody,
    Error,
}

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    PreviousSecretEncrypted,
    PreviousSecretExpiresAt,
}

const INDEX: &str = "idx_delivery_attempts_row";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use DeliveryAttempts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .col(big_pk_auto(A::Id))
                    .col(big_integer(A::QueuedWebhookId))
                    .col(timestamp_with_time_zone(A::StartedAt))
                    .col(big_integer(A::DurationMs))
                    .col(string(A::Method))
                    .col(text(A::Url))
                    .col(json(A::RequestHeaders))
                    .col(integer_null(A::StatusCode))
                    .col(json_null(A::ResponseHeaders))
                    .col(text_null(A::ResponseBody))
                    .col(text_null(A::Error))
                    .foreign_key(
                        ForeignKey::create()
                            .from(A::Table, A::QueuedWebhookId)
                            .to(QueuedWebhooks::Table, QueuedWebhooks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name(INDEX).table(A::Table).col(A::QueuedWebhookId).col(A::Id).to_owned())
            .await?;
        // One column per statement: SQLite alters one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .add_column(text_null(Webhooks::PreviousSecretEncrypted))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .add_column(timestamp_with_time_zone_null(Webhooks::PreviousSecretExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Webhooks::PreviousSecretExpiresAt, Webhooks::PreviousSecretEncrypted] {
            manager.alter_table(Table::alter().table(Webhooks::Table).drop_column(column).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(DeliveryAttempts::Table).to_owned()).await
    }
}
