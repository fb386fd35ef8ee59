//! The queue's schema across an upgrade, on SQLite and on PostgreSQL: the migration that keeps
//! outcomes off every index (`queue_claims`, `due_at`, `turn_key`) gives the rows in flight at
//! the upgrade their claims, sends back to the queue a row no outcome could be written to, and
//! can be undone and made again.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{POSTGRES_ENV, database_url, insert_queued};
use entity::queue_claims;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, Statement,
};
use serde_json::json;

/// Runs `test` on a fresh SQLite database and, when the suite has one, a fresh PostgreSQL
/// database; each connection is the pool's only one, so that a session setting holds for the
/// whole test.
async fn each_database(test: impl AsyncFn(&DatabaseConnection)) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    test(&Database::connect(ConnectOptions::new(url).max_connections(1).to_owned()).await.expect("SQLite")).await;
    if let Ok(admin_url) = std::env::var(POSTGRES_ENV) {
        let name = format!("hookline_m_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.expect("the PostgreSQL server");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("a test database");
        {
            let options = ConnectOptions::new(database_url(&admin_url, &name)).max_connections(1).to_owned();
            let db = Database::connect(options).await.expect("the test database");
            test(&db).await;
            db.close().await.ok();
        }
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
    }
}

#[derive(Debug, FromQueryResult)]
struct Computed {
    status: String,
    claim_token: Option<i64>,
    due_at: Option<DateTime<Utc>>,
    turn_key: Option<String>,
}

async fn computed(db: &DatabaseConnection, id: i64) -> Computed {
    let sql = format!("SELECT status, claim_token, due_at, turn_key FROM queued_webhooks WHERE id = {id}");
    Computed::find_by_statement(Statement::from_string(db.get_database_backend(), sql))
        .one(db)
        .await
        .expect("the row")
        .expect("a row")
}

#[tokio::test]
async fn rows_in_flight_at_the_upgrade_keep_their_claim_and_a_row_without_one_goes_back_to_the_queue() {
    each_database(async |db| {
        let before = Migrator::migrations().len() as u32 - 1;
        Migrator::up(db, Some(before)).await.expect("the schema before the upgrade");
        let no_foreign_keys = match db.get_database_backend() {
            DbBackend::Postgres => "SET session_replication_role = replica",
            _ => "PRAGMA foreign_keys = OFF",
        };
        db.execute_unprepared(no_foreign_keys).await.expect("foreign keys off");
        let now = Utc::now();
        let lease = now + Duration::seconds(60);
        let in_flight = json!({"status": "sending", "claim_token": 7, "claimed_by": "p1", "lease_until": lease});
        let first = insert_queued(db, in_flight.clone()).await;
        let second = insert_queued(db, in_flight).await;
        let tokenless =
            insert_queued(db, json!({"status": "sending", "sent_try": 1, "claimed_by": "p0", "lease_until": lease}))
                .await;
        let ordered = insert_queued(db, json!({"order_key": "1:Ticket:1", "send_time": now})).await;
        let sent = insert_queued(db, json!({"status": "sent", "order_key": "1:Ticket:1", "sent_try": 1})).await;

        Migrator::up(db, None).await.expect("the upgrade");
        let claims = queue_claims::Entity::find().all(db).await.expect("the claims");
        assert_eq!(claims.len(), 1, "{claims:?}");
        assert_eq!((claims[0].token, claims[0].claimed_by.as_str()), (7, "p1"));
        assert_eq!(claims[0].lease_until.timestamp_millis(), lease.timestamp_millis());
        for id in [first, second] {
            let row = computed(db, id).await;
            assert_eq!(
                (row.status.as_str(), row.claim_token, row.due_at, row.turn_key),
                ("sending", Some(7), None, None)
            );
        }
        let row = computed(db, tokenless).await;
        assert_eq!((row.status.as_str(), row.claim_token), ("retrying", None), "back to the queue");
        assert!(row.due_at.is_some(), "a retrying row is due: {row:?}");
        let row = computed(db, ordered).await;
        assert_eq!(row.due_at.map(|t| t.timestamp_millis()), Some(now.timestamp_millis()));
        assert_eq!(row.turn_key.as_deref(), Some("1:Ticket:1"), "an unfinished row holds its turn");
        let row = computed(db, sent).await;
        assert_eq!((row.due_at, row.turn_key), (None, None), "a sent row is neither due nor in turn");

        Migrator::down(db, Some(1)).await.expect("the upgrade undone");
        let status: Vec<String> = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT status FROM queued_webhooks ORDER BY id",
            ))
            .await
            .expect("the rows")
            .iter()
            .map(|row| row.try_get_by_index(0).expect("a status"))
            .collect();
        assert_eq!(status, ["sending", "sending", "retrying", "pending", "sent"], "no row lost");
        Migrator::up(db, None).await.expect("the upgrade again");
        assert_eq!(computed(db, ordered).await.turn_key.as_deref(), Some("1:Ticket:1"));
    })
    .await;
}
