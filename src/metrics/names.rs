//! The names of hookline's series, and what each one's HELP line says. The README's table and
//! the Grafana dashboard (`ops/grafana/hookline.json`) use the same names.

pub const EVENTS_RAISED: &str = "hookline_events_total";
pub const QUEUED: &str = "hookline_queued_total";
pub const ATTEMPTS: &str = "hookline_attempts_total";
pub const ATTEMPT_DURATION: &str = "hookline_attempt_duration_seconds";
pub const DELIVERY_LATENCY: &str = "hookline_delivery_latency_seconds";
pub const QUEUE_ROWS: &str = "hookline_queue_rows";
pub const QUEUE_OLDEST_DUE_AGE: &str = "hookline_queue_oldest_due_age_seconds";
pub const SENDS_IN_FLIGHT: &str = "hookline_sends_in_flight";
pub const SENDS_WAITING_FOR_HOST: &str = "hookline_sends_waiting_for_host";
pub const SUBSCRIBERS: &str = "hookline_subscribers";
pub const SUBSCRIPTION_MESSAGES: &str = "hookline_subscription_messages_total";
pub const OAUTH_TOKEN_REQUESTS: &str = "hookline_oauth_token_requests_total";
pub const CRA_CHALLENGES: &str = "hookline_cra_challenges_total";
pub const GRAPHQL_OPERATIONS: &str = "hookline_graphql_operations_total";
pub const HTTP_REQUESTS: &str = "hookline_http_requests_total";
pub const WRITE_DURATION: &str = "hookline_write_duration_seconds";
pub const WRITE_JOBS: &str = "hookline_write_jobs";

/// The `route` of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Each series: its name, whether it is in seconds, and its HELP text.
pub(super) const DESCRIPTIONS: [(&str, bool, &str); 17] = [
    (EVENTS_RAISED, false, "Events raised (committed), by itemtype and event."),
    (QUEUED, false, "Queued webhooks created (one per event and matching webhook)."),
    (
        ATTEMPTS,
        false,
        "Attempts made, by outcome (sent, retry, failed) and class (2xx, 3xx, 4xx, 5xx, timeout, connect, \
         refused: the address guard).",
    ),
    (ATTEMPT_DURATION, true, "Time one attempt's requests took, from request to response, by class."),
    (DELIVERY_LATENCY, true, "Time from the item write that raised an event to the 2xx of its delivery."),
    (QUEUE_ROWS, false, "Queued webhooks by status, read from the database (the same on every process)."),
    (QUEUE_OLDEST_DUE_AGE, true, "How long the oldest due pending or retrying row has been due (0 when none is)."),
    (SENDS_IN_FLIGHT, false, "Requests to webhook targets under way in this process."),
    (SENDS_WAITING_FOR_HOST, false, "Attempts waiting for a free slot of their target host (HOOKLINE_MAX_PER_HOST)."),
    (SUBSCRIBERS, false, "Live GraphQL subscriptions of this process."),
    (
        SUBSCRIPTION_MESSAGES,
        false,
        "queueUpdates messages handed to subscribers (sent) and lost by subscribers that fell behind (missed).",
    ),
    (OAUTH_TOKEN_REQUESTS, false, "OAuth access token requests to token endpoints, by result."),
    (CRA_CHALLENGES, false, "Challenge-response (CRA) challenges sent to webhook targets, by result."),
    (GRAPHQL_OPERATIONS, false, "GraphQL operations, by type and outcome (error: the answer carried errors)."),
    (HTTP_REQUESTS, false, "HTTP requests answered, by route template and status."),
    (
        WRITE_DURATION,
        true,
        "Time each write transaction took, from its start to its commit; the rate of its sum is the share of \
         time the writer was busy (1 per write lane).",
    ),
    (WRITE_JOBS, false, "Writes (item mutations, claims, batches of outcomes) committed together per transaction."),
];
