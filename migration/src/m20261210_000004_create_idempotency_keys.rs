//! Idempotent intake: the answer of each mutation called with an `idempotencyKey`, kept for
//! the idempotency window, so that a repeat answers it again and raises nothing.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Id,
    User,
    Operation,
    Key,
    Fingerprint,
    Answer,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use IdempotencyKeys as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(big_integer(T::Id).primary_key().auto_increment())
                    .col(string(T::User))
                    .col(string(T::Operation))
                    .col(string(T::Key))
                    .col(string(T::Fingerprint))
                    .col(json(T::Answer))
                    .col(timestamp_with_time_zone(T::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idempotency_keys_scope")
                    .table(T::Table)
                    .col(T::User)
                    .col(T::Operation)
                    .col(T::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idempotency_keys_created").table(T::Table).col(T::CreatedAt).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned()).await
    }
}
