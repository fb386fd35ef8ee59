//! Operations on stored data, shared by the GraphQL resolvers and (later) the workers. Each
//! mutation runs in one transaction and either commits whole or changes nothing.

pub mod audit;
pub mod cache;
pub mod coalesce;
pub mod events;
pub mod filters;
pub mod forecast;
pub mod history;
pub mod idempotency;
pub mod intake;
pub mod items;
pub mod itemtypes;
pub mod numbers;
pub mod paging;
pub mod preview;
pub mod tree;
pub mod trigger;
pub mod webhook_secrets;
pub mod webhooks;
