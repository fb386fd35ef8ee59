//! The GraphQL API: one module per domain, merged into the roots here.

mod attempts;
mod audit;
mod context;
mod entity;
mod errors;
mod filter;
mod idempotency;
mod item;
mod itemtype;
mod limits;
mod live;
mod loaders;
mod operations;
mod paging;
mod persisted;
mod preview;
mod queue;
mod rights;
mod tokens;
mod traces;
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
    preview::PreviewMutation,
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
    let apq_cache = state.as_ref().map_or(1, |state| state.config().api.apq_cache);
    let mut builder = Schema::build(Query::default(), Mutation::default(), live::Subscription)
        // First: the others read the query it fills in.
        .extension(persisted::PersistedQueries::new(apq_cache))
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        // Before the guards, so that the operation's span holds what they do (and after the
        // persisted query, whose text it reads the operation's name from).
        .extension(traces::Traces)
        .extension(limits)
        .extension(rights::Rights { introspection })
        .extension(errors::ErrorCodes);
    if let Some(state) = state {
        // Last: it sees each document before the guards above refuse it.
        builder = builder.extension(operations::Operations(state.metrics.clone()));
        builder = loaders::register(builder, &state.db);
        builder = builder.data(state);
    }
    builder.finish()
}

/// Every root field of the schema, with the operation type it belongs to (what the rights
/// table must declare).
pub fn root_fields() -> Vec<(async_graphql::parser::types::OperationType, String)> {
    use async_graphql::parser::types::{OperationType, TypeKind, TypeSystemDefinition};
    let Ok(document) = async_graphql::parser::parse_schema(sdl()) else { return Vec::new() };
    let mut fields = Vec::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else { continue };
        let operation = match ty.node.name.node.as_str() {
            "Query" => OperationType::Query,
            "Mutation" => OperationType::Mutation,
            "Subscription" => OperationType::Subscription,
            _ => continue,
        };
        let TypeKind::Object(object) = ty.node.kind else { continue };
        fields.extend(object.fields.into_iter().map(|f| (operation, f.node.name.node.to_string())));
    }
    fields
}

/// The SDL of the schema, as `hookline schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(None).sdl()
}
