//! API tokens: the record of each token hookline issued, so that it can be listed and revoked.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    User,
    Profile,
    Entities,
    IssuedBy,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ApiTokens as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(string(T::Id).primary_key())
                    .col(string(T::User))
                    .col(string(T::Profile))
                    .col(json(T::Entities))
                    .col(string_null(T::IssuedBy))
                    .col(timestamp_with_time_zone(T::CreatedAt))
                    .col(timestamp_with_time_zone_null(T::ExpiresAt))
                    .col(timestamp_with_time_zone_null(T::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("api_tokens_created_at").table(T::Table).col(T::CreatedAt).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiTokens::Table).to_owned()).await
    }
}
