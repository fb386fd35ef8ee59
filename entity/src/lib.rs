//! SeaORM entities: one module per table, query helpers only (no HTTP, no GraphQL).

pub mod api_tokens;
pub mod audit_entries;
pub mod delivery_attempts;
pub mod entities;
pub mod history_entries;
pub mod idempotency_keys;
pub mod items;
pub mod itemtypes;
pub mod queue_claims;
pub mod queued_webhooks;
pub mod saved_searches;
pub mod webhook_categories;
pub mod webhook_health;
pub mod webhooks;
pub mod workers;
