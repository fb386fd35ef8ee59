//! The database connection: connecting, migrating, seeding, and write transactions that behave
//! the same on SQLite and PostgreSQL.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::{Config, DatabaseKind};

/// How much of a size-limited SQLite database (`HOOKLINE_SQLITE_MAX_SIZE`) each kind of write
/// may fill, in pages (`PRAGMA max_page_count`, a setting of each connection).
///
/// Client writes (items, webhooks, entities…) stop at `clients`; the rest, up to `queue`, is
/// kept for the queue's own work (claims, attempt outcomes, releases, cleanup), so that the
/// deliveries already queued go on and `cleanQueuedWebhooks` can free room once clients have
/// filled the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBudget {
    pub clients: u64,
    pub queue: u64,
}

impl PageBudget {
    /// The budget of a database of `page_size` bytes a page that may grow to `max_size`
    /// bytes: a tenth (at least 16 pages) kept for the queue.
    pub fn new(max_size: u64, page_size: u64) -> Self {
        let queue = (max_size / page_size.max(512)).max(1);
        let reserve = (queue / 10).max(16);
        Self { clients: queue.saturating_sub(reserve).max(1), queue }
    }
}

/// The page budget of the configured size limit (SQLite with `sqlite_max_size` only), for the
/// database `db` is connected to.
pub async fn page_budget(config: &Config, db: &DatabaseConnection) -> Result<Option<PageBudget>, DbErr> {
    if config.database_kind != DatabaseKind::Sqlite || config.sqlite_max_size == 0 {
        return Ok(None);
    }
    let row = db.query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA page_size")).await?;
    let page_size: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(4096);
    Ok(Some(PageBudget::new(config.sqlite_max_size, page_size.max(512) as u64)))
}

/// Limits what the writes of `conn`'s connection may fill (a SQLite connection setting; it
/// holds for the rest of the connection's life, in or out of a transaction). The limit never
/// goes below the pages the database already has.
pub async fn limit_pages(conn: &impl ConnectionTrait, pages: u64) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!("PRAGMA max_page_count = {pages}")).await.map(|_| ())
}

/// Rows a SQLite connection's thread may hand over before the reader takes them (sqlx's
/// default is 50): more than the largest statement of the shared pool returns. (The writer's
/// connection runs on the writer's thread and hands every row over at once.)
const ROW_CHANNEL: usize = 512;

/// Prepared statements a connection keeps (sqlx's default is 100). The queue's multi-row
/// statements differ by their number of rows (1 to 100 of each kind: queued rows, outcomes,
/// attempts, history entries, items), so with 100 a busy writer prepared most of them anew.
const STATEMENT_CACHE: usize = 600;

/// Which pool a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Reads, and the writes made outside the writer (migrations, the CLI).
    Shared,
    /// The writer's own connections ([`crate::writer::Writer`]).
    Writer,
}

/// WAL pages after which SQLite's writer checkpoints itself at a commit (SQLite's default is
/// 1,000; a page is 4 KiB). [`checkpoints`] copies the WAL into the database beside the writer,
/// so that the writer's own checkpoint has little left to copy; but the WAL only starts over
/// once everything in it is copied when the writer begins, which under a steady load only the
/// writer's own checkpoint brings about: this bounds the WAL file (64 MiB). With
/// `sqlite_max_size`, a quarter of the size (at least SQLite's default).
///
/// The threshold costs throughput when low: alternating fan-outs measured 6% less at 4,000
/// pages, and 4% less at 1,000, than at 16,000 (BENCHMARKS.md, sixth session).
const WRITER_CHECKPOINT_PAGES: u64 = 16_000;

/// SQLite's own checkpoint threshold, in pages, kept by the shared connections.
const SQLITE_CHECKPOINT_PAGES: u64 = 1_000;

/// The size the writer cuts the WAL file back to when it starts over (SQLite keeps it at its
/// largest otherwise).
const WAL_KEPT_BYTES: u64 = 4 * 1024 * 1024;

/// The writer's checkpoint threshold, in pages, for a database that may grow to `max_size`
/// bytes (0: no limit).
fn writer_checkpoint_pages(max_size: u64) -> u64 {
    match max_size {
        0 => WRITER_CHECKPOINT_PAGES,
        max_size => (max_size / 4096 / 4).clamp(SQLITE_CHECKPOINT_PAGES, WRITER_CHECKPOINT_PAGES),
    }
}

/// How often [`checkpoints`] copies the WAL into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Opens the pool. SQLite runs in WAL mode with foreign keys on and a busy timeout, so that
/// readers never block and writers queue instead of failing; with `sqlite_max_size`, every
/// connection may fill only the clients' part of it ([`PageBudget`]) until told otherwise.
/// `connections`: the pool's size (the writer has a pool of its own, of one on SQLite). The
/// writer's connections leave the WAL's checkpoints to [`checkpoints`].
pub async fn connect(config: &Config, connections: u32, pool: Pool) -> Result<DatabaseConnection, DbErr> {
    if config.database_kind == DatabaseKind::Sqlite {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|err| DbErr::Custom(format!("cannot create the data dir {}: {err}", config.data_dir.display())))?;
    }
    let max_size = config.sqlite_max_size;
    let mut options = ConnectOptions::new(config.database_url.expose_secret().to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        // A SQLite connection is a file on this machine: checking it before each use (sqlx
        // pings it by default) only adds a round trip to its thread to every transaction.
        .test_before_acquire(config.database_kind != DatabaseKind::Sqlite)
        .map_sqlx_sqlite_opts(move |opts| {
            let checkpoint_pages = match pool {
                Pool::Shared => SQLITE_CHECKPOINT_PAGES,
                Pool::Writer => writer_checkpoint_pages(max_size),
            };
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", checkpoint_pages.to_string())
                .pragma("journal_size_limit", WAL_KEPT_BYTES.to_string())
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                // Savepoints (one per job of a write batch) keep the pages they change in a
                // sub-journal: in memory, not a temporary file written page by page.
                .pragma("temp_store", "memory")
                // A shared connection's thread hands rows over through a channel: room for a
                // whole page of results, so that it does not stop every 50 rows to wait for the
                // reader.
                .row_buffer_size(ROW_CHANNEL)
                .statement_cache_capacity(STATEMENT_CACHE)
                // The writer runs statement after statement, each as soon as the last one
                // ended: on its own thread, with no hand-off to the connection's thread and
                // back (a wake of each thread per statement, most of a write's time under
                // load). The writer's task blocks its runtime thread while SQLite works.
                .run_on_caller(pool == Pool::Writer)
        })
        .map_sqlx_postgres_opts(|opts| opts.statement_cache_capacity(STATEMENT_CACHE));
    if max_size > 0 {
        options.map_sqlx_sqlite_pool_opts(move |pool| {
            pool.after_connect(move |conn, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::{AssertSqlSafe, Executor};
                    let page_size: i64 = sea_orm::sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut *conn).await?;
                    let budget = PageBudget::new(max_size, page_size.max(512) as u64);
                    conn.execute(AssertSqlSafe(format!("PRAGMA max_page_count = {}", budget.clients))).await?;
                    Ok(())
                })
            })
        });
    }
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

/// `rows` rows of a multi-row `VALUES` of columns of these types: `($1::bigint, …), …` on
/// PostgreSQL, which cannot infer them there (nor read JSON text into a json column without
/// its cast), `(?, …), …` on SQLite. The values are bound in the same order, row by row.
pub fn value_rows(backend: DbBackend, rows: usize, types: &[&str]) -> String {
    value_rows_after(backend, rows, types, 0)
}

/// [`value_rows`] whose values follow `before` values bound ahead of them in one statement (the
/// placeholders of PostgreSQL are numbered from `before + 1`).
pub fn value_rows_after(backend: DbBackend, rows: usize, types: &[&str], before: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * types.len() * if backend == DbBackend::Postgres { 16 } else { 3 });
    for n in 0..rows {
        sql.push_str(if n == 0 { "(" } else { ", (" });
        for (i, ty) in types.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            match backend {
                DbBackend::Postgres => {
                    let _ = write!(sql, "${}::{ty}", before + n * types.len() + i + 1);
                }
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// `INSERT INTO {table} (…) VALUES (…), …` of `rows` rows of these columns, each given with its
/// type for PostgreSQL ([`value_rows`]); the values are bound in the same order, row by row.
/// For the inserts the writer runs by the hundred, written rather than built value by value.
pub fn insert_sql(backend: DbBackend, table: &str, columns: &[(&str, &str)], rows: usize) -> String {
    insert_sql_after(backend, table, columns, rows, 0)
}

/// [`insert_sql`] whose values follow `before` values bound ahead of them ([`value_rows_after`]).
pub fn insert_sql_after(
    backend: DbBackend,
    table: &str,
    columns: &[(&str, &str)],
    rows: usize,
    before: usize,
) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let types: Vec<&str> = columns.iter().map(|(_, ty)| *ty).collect();
    format!("INSERT INTO {table} ({}) VALUES {}", names.join(", "), value_rows_after(backend, rows, &types, before))
}

/// Asserts that an [`insert_sql`] column list holds every column of the entity whose columns
/// are `C`, in their order, but those the database numbers (`numbered`): a column added to the
/// entity and not to the insert would be stored as its default.
#[cfg(test)]
pub(crate) fn assert_inserts_every_column<C: sea_orm::Iterable + sea_orm::IdenStatic>(
    columns: &[(&str, &str)],
    numbered: &[&str],
) {
    let written: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let all: Vec<&str> = C::iter().map(|c| c.as_str()).filter(|c| !numbered.contains(c)).collect();
    assert_eq!(written, all);
}

/// The rows of `table` (tests that write to a table of their own).
#[cfg(test)]
pub(crate) async fn count_rows(db: &impl ConnectionTrait, table: &str) -> i64 {
    let count =
        db.query_one_raw(Statement::from_string(db.get_database_backend(), format!("SELECT count(*) FROM {table}")));
    count.await.expect("the count").expect("a row").try_get_by_index(0).expect("a number")
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

/// Copies the WAL of a SQLite database into the database itself every
/// [`CHECKPOINT_INTERVAL`], on a connection of `db` (not the writer's), until `shutdown`:
/// SQLite's passive checkpoint runs beside the writer, which goes on appending to the WAL
/// meanwhile, instead of in the writer's commits. Does nothing on PostgreSQL. Closes its
/// connection before it returns.
pub async fn checkpoints(db: DatabaseConnection, shutdown: tokio_util::sync::CancellationToken) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                db.close().await.ok();
                return;
            }
            _ = tick.tick() => {}
        }
        if let Err(err) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::warn!(%err, "cannot copy the WAL into the database; the writer will at its next commits");
        }
    }
}

/// Whether the transaction `txn` belongs to is still open, asked after a refused statement
/// before anything else is written in it.
///
/// On some errors SQLite ends the whole transaction instead of undoing only the statement:
/// `SQLITE_FULL` in a statement that keeps no statement journal (a single-row insert), I/O
/// errors, running out of memory. sqlx then answers the rollback of a savepoint as done
/// (there is nothing left to roll back) and opens a new transaction at the next savepoint,
/// so that what was written before the error is gone while what follows would commit on its
/// own. SQLite refuses `BEGIN` inside a transaction: when it accepts it, the transaction had
/// ended, and the one just begun is rolled back at once. Anything else (the probe itself
/// failing) counts as ended: the writer must not answer a write as stored that it cannot
/// vouch for. PostgreSQL keeps a transaction until told to end it.
pub async fn still_open(txn: &DatabaseTransaction) -> bool {
    if txn.get_database_backend() != DbBackend::Sqlite {
        return true;
    }
    match txn.execute_unprepared("BEGIN").await {
        Err(err) => err.to_string().contains("cannot start a transaction within a transaction"),
        Ok(_) => {
            if let Err(err) = txn.execute_unprepared("ROLLBACK").await {
                tracing::error!(%err, "cannot roll back the probe of an ended transaction");
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PageBudget;

    #[test]
    fn an_insert_after_other_values_numbers_its_placeholders_after_theirs() {
        let columns = [("a", "int"), ("b", "text")];
        let (pg, sqlite) = (sea_orm::DbBackend::Postgres, sea_orm::DbBackend::Sqlite);
        assert_eq!(
            super::insert_sql(pg, "t", &columns, 2),
            "INSERT INTO t (a, b) VALUES ($1::int, $2::text), ($3::int, $4::text)"
        );
        assert_eq!(
            super::insert_sql_after(pg, "t", &columns, 2, 3),
            "INSERT INTO t (a, b) VALUES ($4::int, $5::text), ($6::int, $7::text)"
        );
        assert_eq!(super::insert_sql_after(sqlite, "t", &columns, 1, 3), "INSERT INTO t (a, b) VALUES (?, ?)");
    }

    #[test]
    fn the_writer_checkpoints_at_64_mib_or_at_a_quarter_of_a_size_limit() {
        assert_eq!(super::writer_checkpoint_pages(0), 16_000);
        assert_eq!(super::writer_checkpoint_pages(8 * 1024 * 1024), 1_000);
        assert_eq!(super::writer_checkpoint_pages(32 * 1024 * 1024), 2_048);
        assert_eq!(super::writer_checkpoint_pages(1024 * 1024 * 1024), 16_000);
    }

    #[test]
    fn a_tenth_of_the_pages_is_kept_for_the_queue() {
        assert_eq!(PageBudget::new(40 * 1024 * 1024, 4096), PageBudget { clients: 9216, queue: 10240 });
        // Small databases keep at least 16 pages.
        assert_eq!(PageBudget::new(100 * 4096, 4096), PageBudget { clients: 84, queue: 100 });
        assert_eq!(PageBudget::new(1000, 4096), PageBudget { clients: 1, queue: 1 });
    }

    /// A SQLite database in `dir`, configured as `hookline serve` would be.
    fn sqlite_config(dir: &std::path::Path) -> crate::config::Config {
        let file = dir.join("hookline.toml");
        let toml =
            format!("data_dir = {:?}\ndatabase_url = \"sqlite://{}?mode=rwc\"\n", dir, dir.join("t.db").display());
        std::fs::write(&file, toml).expect("the configuration file");
        crate::config::Config::load(Some(&file)).expect("the configuration")
    }

    /// The writer's connection runs each statement on the thread that awaits it (the patched
    /// driver's `run_on_caller`): its statement is done at the first poll. A shared connection
    /// hands it to the connection's own thread and is still waiting then (the statement counts
    /// to 200,000: milliseconds of work, which that thread cannot finish within the poll).
    #[tokio::test]
    async fn only_the_writer_runs_its_statements_on_its_own_thread() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = sqlite_config(dir.path());
        for (pool, on_caller) in [(super::Pool::Writer, true), (super::Pool::Shared, false)] {
            let db = super::connect(&config, 1, pool).await.expect("the database");
            let mut conn = db.get_sqlite_connection_pool().acquire().await.expect("a connection");
            let count = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 200000) \
                         SELECT count(*) FROM c";
            let done = sea_orm::sqlx::Executor::execute(&mut *conn, count).now_or_never();
            assert_eq!(done.is_some(), on_caller, "{pool:?}");
        }
    }

    /// A write transaction of the writer's connection dropped unfinished (a job that panicked,
    /// a cancelled write) is rolled back before the connection's next statement, savepoints
    /// and all, and the next transaction commits.
    #[tokio::test]
    async fn the_writer_rolls_back_a_transaction_dropped_unfinished() {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = super::connect(&sqlite_config(dir.path()), 1, super::Pool::Writer).await.expect("the database");
        db.execute_unprepared("CREATE TABLE t (n INTEGER)").await.expect("the table");
        let count = async || super::count_rows(&db, "t").await;
        {
            let txn = super::begin_write(&db).await.expect("a transaction");
            txn.execute_unprepared("INSERT INTO t VALUES (1)").await.expect("a row");
            let savepoint = txn.begin().await.expect("a savepoint");
            savepoint.execute_unprepared("INSERT INTO t VALUES (2)").await.expect("a row");
        }
        assert_eq!(count().await, 0);
        let txn = super::begin_write(&db).await.expect("a new transaction");
        txn.execute_unprepared("INSERT INTO t VALUES (3)").await.expect("a row");
        txn.commit().await.expect("the commit");
        assert_eq!(count().await, 1);
    }

    /// The writer's connection never waits for a lock on its thread: while another connection
    /// of the process holds the write lock (configuration writes take it on the shared pool),
    /// the writer's `BEGIN IMMEDIATE` waits without blocking, so that the holder, here on the
    /// same one-thread runtime, can finish and let it in. (Blocking, it would hold the only
    /// thread for the whole busy timeout, then fail.)
    #[tokio::test]
    async fn the_writer_waits_for_the_write_lock_without_blocking_its_thread() {
        use sea_orm::ConnectionTrait;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = sqlite_config(dir.path());
        let shared = super::connect(&config, 2, super::Pool::Shared).await.expect("the shared pool");
        let writer = super::connect(&config, 1, super::Pool::Writer).await.expect("the writer's pool");
        shared.execute_unprepared("CREATE TABLE t (n INTEGER)").await.expect("the table");
        let holder = super::begin_write(&shared).await.expect("the write lock");
        holder.execute_unprepared("INSERT INTO t VALUES (1)").await.expect("a row");
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            holder.commit().await
        });
        let txn = super::begin_write(&writer).await.expect("the lock, once released");
        txn.execute_unprepared("INSERT INTO t VALUES (2)").await.expect("a row");
        txn.commit().await.expect("the commit");
        release.await.expect("the holder's task").expect("the holder's commit");
        assert_eq!(super::count_rows(&writer, "t").await, 2);
    }

    /// `.cargo/config.toml` builds the bundled SQLite with `SQLITE_ENABLE_QPSG`: without it a
    /// statement with `LIMIT ?` is compiled again each time it runs with a new binding.
    #[tokio::test]
    async fn the_bundled_sqlite_keeps_its_plans() {
        use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
        let db = Database::connect("sqlite::memory:").await.expect("an in-memory database");
        let options = db
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA compile_options"))
            .await
            .expect("compile options");
        let options: Vec<String> = options.iter().filter_map(|row| row.try_get_by_index(0).ok()).collect();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "built without SQLITE_ENABLE_QPSG: {options:?}");
    }
}
