//! The GraphQL API: one module per domain, merged into the roots here.

mod audit;
mod context;
mod entity;
mod errors;
mod filter;
mod item;
mod itemtype;
mod limits;
mod live;
mod loaders;
mod paging;
mod preview;
mod queue;
mod rights;
mod tokens;
mod webhook;

use async_graphql::{MergedObject, Schema};

pub use context::{Caller, Session, session};
pub use rights::required as required_right;

use crate::AppState;

/// Every query of the API.
#[derive(MergedObject, Default)]
pub struct Query(
    entity::EntityQuery,
    itemtype::ItemtypeQuery,
    item::ItemQuery,
    webhook::WebhookQuery,
    queue::QueueQuery,
    preview::PreviewQuery,
    filter::FilterQuery,
    live::StatsQuery,
    tokens::TokenQuery,
    audit::AuditQuery,
);

/// Every mutation of the API.
#[derive(MergedObject, Default)]
pub struct Mutation(
    entity::EntityMutation,
    itemtype::ItemtypeMutation,
    item::ItemMutation,
    webhook::WebhookMutation,
    queue::QueueMutation,
    filter::FilterMutation,
    tokens::TokenMutation,
);

pub type AppSchema = Schema<Query, Mutation, live::Subscription>;

/// The schema, with the application state every resolver reaches through [`session`].
pub fn build_schema(state: Option<AppState>) -> AppSchema {
    let limits = match &state {
        Some(state) => limits::QueryLimits::from(&state.config().api),
        None => limits::QueryLimits::from(&crate::config::DeliveryConfig::default().api),
    };
    let introspection = state.as_ref().is_none_or(|state| state.auth.introspection);
    let mut builder = Schema::build(Query::default(), Mutation::default(), live::Subscription)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        .extension(limits)
        .extension(rights::Rights { introspection })
        .extension(errors::ErrorCodes);
    if let Some(state) = state {
        builder = loaders::register(builder, &state.db);
        builder = builder.data(state);
    }
    builder.finish()
}

/// The SDL of the schema, as `hookline schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(None).sdl()
}
