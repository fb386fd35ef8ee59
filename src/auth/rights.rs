//! The right each root field of the GraphQL API needs, declared once. The API's guard
//! (`graphql::rights`) checks it before anything runs; a field missing here is refused to
//! everyone but `super-admin`.

use super::Right;

/// The root type a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Query,
    Mutation,
    Subscription,
}

/// The right a root field needs; None: not declared (only `super-admin` may call it).
pub fn required(root: Root, field: &str) -> Option<Right> {
    use Right::*;
    Some(match (root, field) {
        (Root::Query, "entities" | "entity" | "webhookCategories" | "webhookCategory") => Read,
        (Root::Query, "itemtypes" | "item" | "items") => ReadItems,
        (
            Root::Query,
            "webhook" | "webhooks" | "savedSearches" | "webhookPreview" | "filterPreview" | "payloadVariables"
            | "queuedWebhook" | "queuedWebhooks" | "queueStats" | "auditLog",
        ) => Read,
        (Root::Query, "apiTokens") => Configure,
        (
            Root::Mutation,
            "createItem" | "createItems" | "updateItem" | "deleteItem" | "restoreItem" | "purgeItem" | "triggerEvent"
            | "triggerEvents",
        ) => WriteItems,
        (
            Root::Mutation,
            "forceSendQueuedWebhook"
            | "resendFailedWebhooks"
            | "replayQueuedWebhooks"
            | "cancelQueuedWebhook"
            | "sendTestDelivery",
        ) => OperateQueue,
        (
            Root::Mutation,
            "createEntity"
            | "updateEntity"
            | "deleteEntity"
            | "createWebhook"
            | "updateWebhook"
            | "deleteWebhook"
            | "regenerateWebhookSecret"
            | "validateCraChallenge"
            | "setWebhookFilter"
            | "createSavedSearch"
            | "updateSavedSearch"
            | "deleteSavedSearch"
            | "cleanQueuedWebhooks"
            | "createApiToken"
            | "revokeApiToken",
        ) => Configure,
        (
            Root::Mutation,
            "createWebhookCategory" | "updateWebhookCategory" | "deleteWebhookCategory" | "createItemtype",
        ) => ConfigureGlobal,
        (Root::Subscription, "queueUpdates" | "queueStats" | "webhookHealthUpdates") => Read,
        _ => return None,
    })
}
