//! The database connection: connecting, migrating, seeding, and write transactions that behave
//! the same on SQLite and PostgreSQL.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::{Config, DatabaseKind};

/// Opens the pool. SQLite runs in WAL mode with foreign keys on and a busy timeout, so that
/// readers never block and writers queue instead of failing.
/// `connections`: the pool's size (the writer has a pool of its own, of one).
pub async fn connect(config: &Config, connections: u32) -> Result<DatabaseConnection, DbErr> {
    if config.database_kind == DatabaseKind::Sqlite {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|err| DbErr::Custom(format!("cannot create the data dir {}: {err}", config.data_dir.display())))?;
    }
    let mut options = ConnectOptions::new(config.database_url.expose_secret().to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
        });
    Database::connect(options).await
}

/// How many write transactions a process runs at once: one on SQLite (the database has one
/// writer), a few on PostgreSQL (one gathers while another commits).
pub fn write_lanes(config: &Config) -> usize {
    match config.database_kind {
        DatabaseKind::Sqlite => 1,
        DatabaseKind::Postgres => config.write_lanes as usize,
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one failing when
/// it upgrades from reading to writing.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
    } else {
        db.begin().await
    }
}
