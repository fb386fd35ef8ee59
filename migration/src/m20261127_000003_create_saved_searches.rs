//! Saved searches, and a webhook's filter: inline criteria or a saved search.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SavedSearches {
    Table,
    Id,
    Name,
    Itemtype,
    Criteria,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    FilterCriteria,
    SavedSearchId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SavedSearches as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(big_pk_auto(S::Id))
                    .col(string(S::Name))
                    .col(string(S::Itemtype))
                    .col(json(S::Criteria))
                    .col(timestamp_with_time_zone(S::CreatedAt))
                    .col(timestamp_with_time_zone(S::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_saved_searches_name").table(S::Table).col(S::Name).unique().to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Webhooks::Table).add_column(json_null(Webhooks::FilterCriteria)).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Webhooks::Table).add_column(big_integer_null(Webhooks::SavedSearchId)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Webhooks::FilterCriteria, Webhooks::SavedSearchId] {
            manager.alter_table(Table::alter().table(Webhooks::Table).drop_column(column).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(SavedSearches::Table).to_owned()).await
    }
}
