//! Who made each item change: the item's last writer, and the writer of each history entry
//! (the `sub` and `profile` of the token). Null for rows written before tokens, and for
//! entries the server writes itself (delivery outcomes).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Items {
    Table,
    ActorUser,
    ActorProfile,
}

#[derive(DeriveIden)]
enum HistoryEntries {
    Table,
    ActorUser,
    ActorProfile,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [Items::ActorUser, Items::ActorProfile] {
            manager.alter_table(Table::alter().table(Items::Table).add_column(string_null(column)).to_owned()).await?;
        }
        for column in [HistoryEntries::ActorUser, HistoryEntries::ActorProfile] {
            manager
                .alter_table(Table::alter().table(HistoryEntries::Table).add_column(string_null(column)).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Items::ActorUser, Items::ActorProfile] {
            manager.alter_table(Table::alter().table(Items::Table).drop_column(column).to_owned()).await?;
        }
        for column in [HistoryEntries::ActorUser, HistoryEntries::ActorProfile] {
            manager.alter_table(Table::alter().table(HistoryEntries::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
