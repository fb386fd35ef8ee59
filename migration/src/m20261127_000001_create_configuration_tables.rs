//! Entities, webhook categories, itemtypes, items, history entries and webhooks.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Entities {
    Table,
    Id,
    Name,
    ParentId,
    Comment,
    Completename,
    Level,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookCategories {
    Table,
    Id,
    Name,
    ParentId,
    Comment,
    Completename,
    Level,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)] // `ParentItemtypes` is the column's name
enum Itemtypes {
    Table,
    Name,
    IsCustom,
    ParentItemtypes,
    Fields,
    NextItemId,
}

#[derive(DeriveIden)]
enum Items {
    Table,
    Seq,
    Itemtype,
    Id,
    EntityId,
    Name,
    Fields,
    ParentItemtype,
    ParentId,
    IsDeleted,
    DateCreation,
    DateMod,
}

#[derive(DeriveIden)]
enum HistoryEntries {
    Table,
    Id,
    Subject,
    Itemtype,
    SubjectId,
    Date,
    Action,
    Message,
    OldValue,
    NewValue,
    QueuedWebhookId,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Name,
    Comment,
    IsActive,
    CategoryId,
    EntityId,
    IsRecursive,
    Itemtype,
    Event,
    SentTry,
    Url,
    HttpMethod,
    SaveResponseBody,
    LogInItemHistory,
    SecretEncrypted,
    SignatureScheme,
    Expiration,
    UseCraChallenge,
    UseOauth,
    OauthUrl,
    ClientId,
    ClientSecretEncrypted,
    UseDefaultPayload,
    Payload,
    CustomHeaders,
    CreatedAt,
    UpdatedAt,
}

/// The columns shared by the two trees (entities and webhook categories).
fn tree_table<T: IntoIden + Copy + 'static>(
    table: T,
    [id, name, parent_id, comment, completename, level, created_at, updated_at]: [T; 8],
) -> TableCreateStatement {
    Table::create()
        .table(table)
        .col(big_pk_auto(id))
        .col(string(name))
        .col(big_integer_null(parent_id))
        .col(text_null(comment))
        .col(text(completename))
        .col(integer(level))
        .col(timestamp_with_time_zone(created_at))
        .col(timestamp_with_time_zone(updated_at))
        .foreign_key(ForeignKey::create().from(table, parent_id).to(table, id))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Entities as E;
        manager
            .create_table(tree_table(
                E::Table,
                [E::Id, E::Name, E::ParentId, E::Comment, E::Completename, E::Level, E::CreatedAt, E::UpdatedAt],
            ))
            .await?;
        manager
            .create_index(Index::create().name("idx_entities_parent").table(E::Table).col(E::ParentId).to_owned())
            .await?;

        use WebhookCategories as C;
        manager
            .create_table(tree_table(
                C::Table,
                [C::Id, C::Name, C::ParentId, C::Comment, C::Completename, C::Level, C::CreatedAt, C::UpdatedAt],
            ))
            .await?;
        manager
            .create_index(
                Index::create().name("idx_webhook_categories_parent").table(C::Table).col(C::ParentId).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Itemtypes::Table)
                    .col(string(Itemtypes::Name).primary_key())
                    .col(boolean(Itemtypes::IsCustom))
                    .col(json(Itemtypes::ParentItemtypes))
                    .col(json(Itemtypes::Fields))
                    .col(big_integer(Itemtypes::NextItemId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Items::Table)
                    .col(big_pk_auto(Items::Seq))
                    .col(string(Items::Itemtype))
                    .col(string(Items::Id))
                    .col(big_integer(Items::EntityId))
                    .col(text_null(Items::Name))
                    .col(json(Items::Fields))
                    .col(string_null(Items::ParentItemtype))
                    .col(string_null(Items::ParentId))
                    .col(boolean(Items::IsDeleted))
                    .col(timestamp_with_time_zone(Items::DateCreation))
                    .col(timestamp_with_time_zone(Items::DateMod))
                    .foreign_key(
                        ForeignKey::create().from(Items::Table, Items::Itemtype).to(Itemtypes::Table, Itemtypes::Name),
                    )
                    .foreign_key(
                        ForeignKey::create().from(Items::Table, Items::EntityId).to(Entities::Table, Entities::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_items_itemtype_id")
                    .table(Items::Table)
                    .col(Items::Itemtype)
                    .col(Items::Id)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_items_entity").table(Items::Table).col(Items::EntityId).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_items_parent")
                    .table(Items::Table)
                    .col(Items::ParentItemtype)
                    .col(Items::ParentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HistoryEntries::Table)
                    .col(big_pk_auto(HistoryEntries::Id))
                    .col(string(HistoryEntries::Subject))
                    .col(string(HistoryEntries::Itemtype))
                    .col(string(HistoryEntries::SubjectId))
                    .col(timestamp_with_time_zone(HistoryEntries::Date))
                    .col(string(HistoryEntries::Action))
                    .col(text(HistoryEntries::Message))
                    .col(text_null(HistoryEntries::OldValue))
                    .col(text_null(HistoryEntries::NewValue))
                    .col(big_integer_null(HistoryEntries::QueuedWebhookId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_history_entries_subject")
                    .table(HistoryEntries::Table)
                    .col(HistoryEntries::Subject)
                    .col(HistoryEntries::Itemtype)
                    .col(HistoryEntries::SubjectId)
                    .col(HistoryEntries::Id)
                    .to_owned(),
            )
            .await?;

        use Webhooks as W;
        manager
            .create_table(
                Table::create()
                    .table(W::Table)
                    .col(big_pk_auto(W::Id))
                    .col(string(W::Name))
                    .col(text_null(W::Comment))
                    .col(boolean(W::IsActive))
                    .col(big_integer_null(W::CategoryId))
                    .col(big_integer(W::EntityId))
                    .col(boolean(W::IsRecursive))
                    .col(string(W::Itemtype))
                    .col(string(W::Event))
                    .col(integer(W::SentTry))
                    .col(text(W::Url))
                    .col(string(W::HttpMethod))
                    .col(boolean(W::SaveResponseBody))
                    .col(boolean(W::LogInItemHistory))
                    .col(text(W::SecretEncrypted))
                    .col(string(W::SignatureScheme))
                    .col(integer(W::Expiration))
                    .col(boolean(W::UseCraChallenge))
                    .col(boolean(W::UseOauth))
                    .col(text_null(W::OauthUrl))
                    .col(string_null(W::ClientId))
                    .col(text_null(W::ClientSecretEncrypted))
                    .col(boolean(W::UseDefaultPayload))
                    .col(text_null(W::Payload))
                    .col(json(W::CustomHeaders))
                    .col(timestamp_with_time_zone(W::CreatedAt))
                    .col(timestamp_with_time_zone(W::UpdatedAt))
                    .foreign_key(ForeignKey::create().from(W::Table, W::EntityId).to(Entities::Table, Entities::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .from(W::Table, W::CategoryId)
                            .to(WebhookCategories::Table, WebhookCategories::Id),
                    )
                    .foreign_key(ForeignKey::create().from(W::Table, W::Itemtype).to(Itemtypes::Table, Itemtypes::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhooks_itemtype_event")
                    .table(W::Table)
                    .col(W::Itemtype)
                    .col(W::Event)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_webhooks_entity").table(W::Table).col(W::EntityId).to_owned())
            .await?;
        manager
            .create_index(Index::create().name("idx_webhooks_category").table(W::Table).col(W::CategoryId).to_owned())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Webhooks::Table.into_iden(),
            HistoryEntries::Table.into_iden(),
            Items::Table.into_iden(),
            Itemtypes::Table.into_iden(),
            WebhookCategories::Table.into_iden(),
            Entities::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
