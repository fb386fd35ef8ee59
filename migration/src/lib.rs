//! Database migrations. Each migration is written out explicitly and frozen once it has landed:
//! a change of schema is a new migration, never an edit of an old one.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_configuration_tables;
mod m20261127_000002_create_queued_webhooks;
mod m20261127_000003_create_saved_searches;
mod m20261202_000001_add_claims_and_workers;
mod m20261206_000001_create_api_tokens;
mod m20261206_000002_create_audit_entries;
mod m20261206_000003_add_actors;
mod m20261208_000001_add_queued_traceparent;
mod m20261209_000001_add_test_deliveries;
mod m20261210_000001_add_attempts_and_previous_secrets;
mod m20261210_000002_add_delivery_order_and_coalescing;
mod m20261210_000003_add_webhook_health;
mod m20261210_000004_create_idempotency_keys;
mod m20261211_000001_add_attempts_kept;
mod m20261212_000001_hot_queue_updates;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_configuration_tables::Migration),
            Box::new(m20261127_000002_create_queued_webhooks::Migration),
            Box::new(m20261127_000003_create_saved_searches::Migration),
            Box::new(m20261202_000001_add_claims_and_workers::Migration),
            Box::new(m20261206_000001_create_api_tokens::Migration),
            Box::new(m20261206_000002_create_audit_entries::Migration),
            Box::new(m20261206_000003_add_actors::Migration),
            Box::new(m20261208_000001_add_queued_traceparent::Migration),
            Box::new(m20261209_000001_add_test_deliveries::Migration),
            Box::new(m20261210_000001_add_attempts_and_previous_secrets::Migration),
            Box::new(m20261210_000002_add_delivery_order_and_coalescing::Migration),
            Box::new(m20261210_000003_add_webhook_health::Migration),
            Box::new(m20261210_000004_create_idempotency_keys::Migration),
            Box::new(m20261211_000001_add_attempts_kept::Migration),
            Box::new(m20261212_000001_hot_queue_updates::Migration),
        ]
    }
}
