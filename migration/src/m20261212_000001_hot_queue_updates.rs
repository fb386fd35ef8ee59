//! Queue updates that touch no index (issue 11). On PostgreSQL an update that changes no
//! indexed column, and finds room on its row's page, is a HOT update: it writes no index entry.
//! `status` was in the due rows' index and in the ordered rows' index predicate, so every claim
//! and every outcome rewrote an entry in each of the table's indexes: a third of PostgreSQL's
//! time in a fan-out. Now no index holds a column an outcome changes when a row is sent:
//!
//! - the due rows are found by `due_at`, the send time of a `pending` or `retrying` row and
//!   null otherwise, computed by the database from `status` and `send_time`;
//! - an ordered row's key is indexed by `turn_key`, its `order_key` while it is unfinished;
//! - the rows in flight are found through `queue_claims`, one row per claim (its token, process
//!   and lease), and the rows' `claim_token`, which they keep after their outcome;
//! - on PostgreSQL, pages are filled to half so that the new versions of a row fit beside it.
//!
//! Rows `sending` at the upgrade get the claims they belong to; one without a claim token
//! (which no outcome could be written to) goes back to the queue.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, DbBackend},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueueClaims {
    Table,
    Token,
    ClaimedBy,
    LeaseUntil,
}

const CLAIMS_LEASE_INDEX: &str = "idx_queue_claims_lease";

/// The columns the database computes: name, type on PostgreSQL, type on SQLite, value.
const COMPUTED: [(&str, &str, &str, &str); 2] = [
    (
        "due_at",
        "timestamptz",
        "timestamp_with_timezone_text",
        "CASE WHEN status IN ('pending', 'retrying') THEN send_time END",
    ),
    ("turn_key", "varchar", "varchar", "CASE WHEN status IN ('pending', 'sending', 'retrying') THEN order_key END"),
];

/// The indexes this migration creates on `queued_webhooks` (name, columns, condition).
const NEW_INDEXES: [(&str, &str, &str); 3] = [
    ("idx_queued_webhooks_due_at", "due_at, id", " WHERE due_at IS NOT NULL"),
    ("idx_queued_webhooks_turn", "turn_key, id", " WHERE turn_key IS NOT NULL"),
    ("idx_queued_webhooks_claim", "claim_token", " WHERE claim_token IS NOT NULL"),
];

/// The indexes it replaces, as the earlier migrations made them.
const OLD_INDEXES: [(&str, &str, &str); 2] = [
    ("idx_queued_webhooks_due", "status, send_time", ""),
    (
        "idx_queued_webhooks_order",
        "order_key, id",
        " WHERE order_key IS NOT NULL AND status IN ('pending', 'sending', 'retrying')",
    ),
];

async fn create_indexes(manager: &SchemaManager<'_>, indexes: &[(&str, &str, &str)]) -> Result<(), DbErr> {
    for (name, columns, condition) in indexes {
        manager
            .get_connection()
            .execute_unprepared(&format!("CREATE INDEX {name} ON queued_webhooks ({columns}){condition}"))
            .await?;
    }
    Ok(())
}

async fn drop_indexes(manager: &SchemaManager<'_>, indexes: &[(&str, &str, &str)]) -> Result<(), DbErr> {
    for (name, ..) in indexes {
        manager.drop_index(Index::drop().name(*name).table(Alias::new("queued_webhooks")).to_owned()).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let postgres = conn.get_database_backend() == DbBackend::Postgres;
        // Stored on PostgreSQL (only a stored generated column can be indexed there), both in
        // one rewrite of the table, which leaves the room the fill factor asks for on each page;
        // computed when read on SQLite, which adds no stored column to an existing table (and
        // takes one column per statement).
        let added: Vec<String> = COMPUTED
            .iter()
            .map(|(name, pg_type, sqlite_type, value)| {
                let (kind, storage) = if postgres { (pg_type, "STORED") } else { (sqlite_type, "VIRTUAL") };
                format!("ADD COLUMN {name} {kind} GENERATED ALWAYS AS ({value}) {storage}")
            })
            .collect();
        if postgres {
            conn.execute_unprepared("ALTER TABLE queued_webhooks SET (fillfactor = 50)").await?;
            conn.execute_unprepared(&format!("ALTER TABLE queued_webhooks {}", added.join(", "))).await?;
        } else {
            for column in added {
                conn.execute_unprepared(&format!("ALTER TABLE queued_webhooks {column}")).await?;
            }
        }
        drop_indexes(manager, &OLD_INDEXES).await?;
        create_indexes(manager, &NEW_INDEXES).await?;
        manager
            .create_table(
                Table::create()
                    .table(QueueClaims::Table)
                    .col(big_integer(QueueClaims::Token).primary_key())
                    .col(string(QueueClaims::ClaimedBy))
                    .col(timestamp_with_time_zone(QueueClaims::LeaseUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CLAIMS_LEASE_INDEX)
                    .table(QueueClaims::Table)
                    .col(QueueClaims::LeaseUntil)
                    .to_owned(),
            )
            .await?;
        conn.execute_unprepared(
            "INSERT INTO queue_claims (token, claimed_by, lease_until) \
             SELECT claim_token, COALESCE(MAX(claimed_by), ''), MIN(lease_until) FROM queued_webhooks \
             WHERE status = 'sending' AND claim_token IS NOT NULL AND lease_until IS NOT NULL GROUP BY claim_token",
        )
        .await?;
        conn.execute_unprepared(
            "UPDATE queued_webhooks SET status = CASE WHEN sent_try > 0 THEN 'retrying' ELSE 'pending' END, \
             lease_until = NULL, claim_token = NULL, claimed_by = NULL \
             WHERE status = 'sending' AND (claim_token IS NULL OR lease_until IS NULL)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared("ALTER TABLE queued_webhooks RESET (fillfactor)").await?;
        }
        manager.drop_table(Table::drop().table(QueueClaims::Table).to_owned()).await?;
        drop_indexes(manager, &NEW_INDEXES).await?;
        create_indexes(manager, &OLD_INDEXES).await?;
        for (name, ..) in COMPUTED {
            conn.execute_unprepared(&format!("ALTER TABLE queued_webhooks DROP COLUMN {name}")).await?;
        }
        Ok(())
    }
}
