//! Delivery order and coalescing (issue 16). A webhook may be `ordered` (the deliveries of one
//! item are sent one at a time, in event order) and may coalesce its `update` rows
//! (`coalesce_seconds`: they wait that long, and a newer update of the same item replaces a
//! waiting one). A queued row of an ordered webhook carries its ordering key (webhook, itemtype
//! and item id; null otherwise); the unfinished rows with a key are indexed by (key, id), so
//! that a claim finds an earlier unfinished row of the same key by one probe. An `update` row
//! of a coalescing webhook carries its changes, which a newer one merges.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Ordered,
    CoalesceSeconds,
}

#[derive(DeriveIden)]
enum QueuedWebhooks {
    Table,
    OrderKey,
    Changes,
}

const ORDER_INDEX: &str = "idx_queued_webhooks_order";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            (Webhooks::Table.into_iden(), boolean(Webhooks::Ordered).default(false).to_owned()),
            (Webhooks::Table.into_iden(), integer(Webhooks::CoalesceSeconds).default(0).to_owned()),
            (Q::Table.into_iden(), string_null(Q::OrderKey)),
            (Q::Table.into_iden(), json_null(Q::Changes)),
        ];
        for (table, mut column) in columns {
            manager.alter_table(Table::alter().table(table).add_column(&mut column).to_owned()).await?;
        }
        // Partial: only the rows still to be sent, or being sent, that have a key. A claim's
        // probe then reads the few unfinished rows of one item, not every row it ever had.
        // The same text on both databases (sea-query builds no partial index).
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {ORDER_INDEX} ON queued_webhooks (order_key, id) WHERE order_key IS NOT NULL \
                 AND status IN ('pending', 'sending', 'retrying')"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use QueuedWebhooks as Q;
        manager.drop_index(Index::drop().name(ORDER_INDEX).table(Q::Table).to_owned()).await?;
        let columns = [
            (Q::Table.into_iden(), Q::Changes.into_iden()),
            (Q::Table.into_iden(), Q::OrderKey.into_iden()),
            (Webhooks::Table.into_iden(), Webhooks::CoalesceSeconds.into_iden()),
            (Webhooks::Table.into_iden(), Webhooks::Ordered.into_iden()),
        ];
        for (table, column) in columns {
            manager.alter_table(Table::alter().table(table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
