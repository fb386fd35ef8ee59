//! The audit log: every configuration change, who made it, and what it changed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEntries {
    Table,
    Id,
    At,
    User,
    Profile,
    ObjectType,
    ObjectId,
    Action,
    Changes,
    EntityId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AuditEntries as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .col(big_integer(T::Id).primary_key().auto_increment())
                    .col(timestamp_with_time_zone(T::At))
                    .col(string(T::User))
                    .col(string(T::Profile))
                    .col(string(T::ObjectType))
                    .col(string(T::ObjectId))
                    .col(string(T::Action))
                    .col(json(T::Changes))
                    .col(big_integer_null(T::EntityId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_entries_object")
                    .table(T::Table)
                    .col(T::ObjectType)
                    .col(T::ObjectId)
                    .to_owned(),
            )
            .await?;
        manager.create_index(Index::create().name("audit_entries_at").table(T::Table).col(T::At).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditEntries::Table).to_owned()).await
    }
}
