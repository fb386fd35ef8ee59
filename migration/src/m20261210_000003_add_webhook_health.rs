//! Delivery control per webhook: the circuit breaker and the send pacing of a rate limit,
//! shared by every process on one database (`webhook_health`, one row per webhook that ever
//! failed or has a limit), and the limit itself (`webhooks.max_per_second`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    MaxPerSecond,
}

#[derive(DeriveIden)]
enum WebhookHealth {
    Table,
    WebhookId,
    State,
    ConsecutiveFailures,
    FailingSince,
    OpenedAt,
    NextProbeAt,
    CooldownMs,
    ProbeId,
    ProbeUntil,
    PacedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use WebhookHealth as H;
        manager
            .alter_table(
                Table::alter().table(Webhooks::Table).add_column(integer_null(Webhooks::MaxPerSecond)).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(H::Table)
                    .col(big_integer(H::WebhookId).primary_key())
                    .col(string(H::State).default("closed"))
                    .col(integer(H::ConsecutiveFailures).default(0))
                    .col(timestamp_with_time_zone_null(H::FailingSince))
                    .col(timestamp_with_time_zone_null(H::OpenedAt))
                    .col(timestamp_with_time_zone_null(H::NextProbeAt))
                    .col(big_integer(H::CooldownMs).default(0))
                    .col(big_integer_null(H::ProbeId))
                    .col(timestamp_with_time_zone_null(H::ProbeUntil))
                    .col(timestamp_with_time_zone_null(H::PacedUntil))
                    .foreign_key(
                        ForeignKey::create()
                            .from(H::Table, H::WebhookId)
                            .to(Webhooks::Table, Webhooks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookHealth::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Webhooks::Table).drop_column(Webhooks::MaxPerSecond).to_owned()).await
    }
}
