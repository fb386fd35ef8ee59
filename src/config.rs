//! Configuration: the one place that reads configuration files and the environment.
//!
//! Layers, later over earlier: built-in defaults, the TOML file given with `--config`, then
//! `HOOKLINE_*` environment variables (`HOOKLINE_LISTEN` sets `listen`). Every value is checked
//! here, at start, and an invalid one is refused with a message naming its key.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use crate::telemetry::LogFormat;
use crate::{
    delivery::TargetPolicy,
    domain::{
        breaker::{BreakerConfig, MAX_COOLDOWN},
        retry::{RetryPolicy, parse_duration, parse_schedule},
        template::Limits,
    },
};

/// The raw keys as they appear in the TOML file (and, upper-cased with the `HOOKLINE_` prefix,
/// in the environment). Its Debug output hides the secret key and the database password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
struct RawConfig {
    /// `HOOKLINE_DATABASE_URL`: `sqlite://…` or `postgres://…`. Default: a SQLite file in the
    /// data directory.
    database_url: Option<String>,
    /// `HOOKLINE_DATABASE_MAX_CONNECTIONS`: size of the database connection pool. Default: 1 on
    /// SQLite (one writer at a time anyway; queueing in the pool beats SQLite's busy sleeps),
    /// 10 on PostgreSQL.
    database_max_connections: Option<u32>,
    /// `HOOKLINE_WRITE_LANES`: write transactions a process runs at once on PostgreSQL (one
    /// gathers jobs while another commits; the last one is the claims'); always 1 on SQLite.
    /// Default: one per CPU, at least 2 and at most 4 ([`default_write_lanes`]).
    write_lanes: Option<u32>,
    /// `HOOKLINE_LISTEN`: address and port of the HTTP server.
    listen: String,
    /// `HOOKLINE_DATA_DIR`: where the embedded database and the generated key file live.
    data_dir: PathBuf,
    /// `HOOKLINE_SECRET_KEY`: base64 of 32 bytes; the key that encrypts stored secrets.
    secret_key: Option<String>,
    /// `HOOKLINE_LOG`: a tracing filter such as `info` or `hookline=debug,info`.
    log: String,
    /// `HOOKLINE_LOG_FORMAT`: `text` (for people) or `json` (one JSON object per line).
    log_format: String,
    /// `HOOKLINE_OTLP_ENDPOINT`: the base URL of an OpenTelemetry collector's OTLP/HTTP
    /// receiver (`http://collector:4318`); spans are posted to `<it>/v1/traces`. Unset: no
    /// export (a `traceparent` is still continued and sent with every attempt).
    otlp_endpoint: Option<String>,
    /// `HOOKLINE_HTTP_TIMEOUT`: the whole time one attempt may take.
    http_timeout: String,
    /// `HOOKLINE_MAX_IN_FLIGHT`: concurrent attempts over all targets.
    max_in_flight: usize,
    /// `HOOKLINE_MAX_PER_HOST`: concurrent attempts to one target host.
    max_per_host: usize,
    /// `HOOKLINE_MAX_RESPONSE_BODY`: bytes of a response body read and stored.
    max_response_body: usize,
    /// `HOOKLINE_RETRY_SCHEDULE`: delays before retry 1, 2, …; the last one repeats.
    retry_schedule: String,
    /// `HOOKLINE_RETRY_JITTER`: each delay is spread over ± this fraction of itself.
    retry_jitter: f64,
    /// `HOOKLINE_POLL_INTERVAL`: how often workers look for due retries when nothing woke them.
    poll_interval: String,
    /// `HOOKLINE_CLEANUP_SCHEDULE`: when the cleanup job runs (cron, with seconds).
    cleanup_schedule: String,
    /// `HOOKLINE_CLEANUP_SENT_DAYS`: SENT rows older than this are deleted.
    cleanup_sent_days: u32,
    /// `HOOKLINE_CLEANUP_FAILED_DAYS`: FAILED and CANCELLED rows older than this are deleted.
    cleanup_failed_days: u32,
    /// `HOOKLINE_CLEANUP_AUDIT_DAYS`: audit entries older than this are deleted (and the
    /// records of tokens expired for 30 days).
    cleanup_audit_days: u32,
    /// `HOOKLINE_IDEMPOTENCY_WINDOW`: how long a mutation's `idempotencyKey` is remembered
    /// (a repeat within it answers the first result); older keys are cleaned.
    idempotency_window: String,
    /// `HOOKLINE_MAX_TEMPLATE_SIZE`: bytes of one payload, URL or header template.
    max_template_size: usize,
    /// `HOOKLINE_MAX_RENDERED_SIZE`: bytes a template may render to.
    max_rendered_size: usize,
    /// `HOOKLINE_SUBSCRIPTION_BUFFER`: queue changes kept for a slow subscriber before it
    /// misses some (and is told how many).
    subscription_buffer: usize,
    /// `HOOKLINE_STATS_INTERVAL`: the shortest time between two queueStats messages.
    stats_interval: String,
    /// `HOOKLINE_SUBSCRIPTION_RATE`: most `queueUpdates` messages per second over all the
    /// subscribers of a process, shared evenly; beyond it updates are missed (and counted).
    subscription_rate: u32,
    /// `HOOKLINE_WS_PING_INTERVAL`: how often WebSocket connections are pinged; one silent
    /// for four intervals is closed.
    ws_ping_interval: String,
    /// `HOOKLINE_ALLOWED_ORIGINS`: comma-separated browser origins (`https://dash.example.com`)
    /// whose pages may call the API; `*` allows any.
    allowed_origins: String,
    /// `HOOKLINE_ALLOW_PRIVATE_TARGETS`: let webhooks, token and CRA URLs reach loopback,
    /// private and other special addresses (tests and development only).
    allow_private_targets: bool,
    /// `HOOKLINE_ALLOWED_NETWORKS`: comma-separated CIDRs exempt from that refusal.
    allowed_networks: String,
    /// `HOOKLINE_CRA_CACHE`: how long a successful challenge–response is trusted.
    cra_cache: String,
    /// `HOOKLINE_HEARTBEAT_INTERVAL`: how often a process records that it is alive (several
    /// processes on one PostgreSQL database) and looks for rows whose worker is gone.
    heartbeat_interval: String,
    /// `HOOKLINE_HEARTBEAT_TIMEOUT`: a process silent for this long is taken for dead and the
    /// rows it was sending are given to the others.
    heartbeat_timeout: String,
    /// `HOOKLINE_MAX_REQUEST_BODY`: bytes of one HTTP request body or WebSocket message.
    max_request_body: usize,
    /// `HOOKLINE_MAX_QUERY_DEPTH`: deepest nesting of fields in one GraphQL operation.
    max_query_depth: usize,
    /// `HOOKLINE_MAX_QUERY_COMPLEXITY`: the cost of one GraphQL operation (a connection costs
    /// `first` times its children).
    max_query_complexity: usize,
    /// `HOOKLINE_MAX_QUERY_ALIASES`: aliased fields in one GraphQL operation.
    max_query_aliases: usize,
    /// `HOOKLINE_APQ_CACHE`: persisted queries (sent by their hash) one process remembers.
    apq_cache: usize,
    /// `HOOKLINE_MAX_SUBSCRIPTIONS_PER_CONNECTION`: live subscriptions on one WebSocket.
    max_subscriptions_per_connection: usize,
    /// `HOOKLINE_MAX_SUBSCRIPTIONS`: live subscriptions in one process.
    max_subscriptions: usize,
    /// `HOOKLINE_MAX_WS_CONNECTIONS`: open WebSocket connections in one process.
    max_ws_connections: usize,
    /// `HOOKLINE_HEADER_READ_TIMEOUT`: the time a client has to send its request headers.
    header_read_timeout: String,
    /// `HOOKLINE_TEMPLATE_MAX_ITERATIONS`: steps of one rendering: loop iterations and the
    /// elements array filters walk.
    template_max_iterations: usize,
    /// `HOOKLINE_TEMPLATE_MAX_DEPTH`: deepest nesting of blocks (loops, conditions, captures).
    template_max_depth: usize,
    /// `HOOKLINE_TEMPLATE_TIMEOUT`: the time one rendering may take.
    template_timeout: String,
    /// `HOOKLINE_SQLITE_MAX_SIZE`: bytes the SQLite database may grow to (0: no limit).
    sqlite_max_size: u64,
    /// `HOOKLINE_JWT_JWKS_FILE`: a JWKS file with an identity provider's public keys (RS256,
    /// ES256, EdDSA); its tokens are accepted besides hookline's own.
    jwt_jwks_file: Option<PathBuf>,
    /// `HOOKLINE_JWT_ISSUER`: the `iss` the provider's tokens must carry.
    jwt_issuer: Option<String>,
    /// `HOOKLINE_JWT_AUDIENCE`: the `aud` the provider's tokens must carry.
    jwt_audience: Option<String>,
    /// `HOOKLINE_INTROSPECTION`: whether `__schema` and `__type` answer (any valid token).
    introspection: bool,
    /// `HOOKLINE_TOKEN_MUTATION_RATE`: mutations per second one token may make (a batch counts
    /// its inputs); 0: no limit.
    token_mutation_rate: u32,
    /// `HOOKLINE_TOKEN_MUTATION_BURST`: mutations a token may make at once above that rate
    /// (0: as many as one second of the rate).
    token_mutation_burst: u32,
    /// `HOOKLINE_METRICS_TOKEN`: when set, `GET /metrics` needs `Authorization: Bearer <it>`.
    metrics_token: Option<String>,
    /// `HOOKLINE_METRICS_PER_WEBHOOK`: label the attempt and latency series with `webhook_id`
    /// (one series per webhook: for a modest number of webhooks).
    metrics_per_webhook: bool,
    /// `HOOKLINE_BREAKER_FAILURES`: consecutive failed attempts of a webhook that open its
    /// circuit breaker (its sends pause).
    breaker_failures: u32,
    /// `HOOKLINE_BREAKER_COOLDOWN`: the first pause of an open breaker before one probe is
    /// sent; doubled after each failed probe, up to 1h.
    breaker_cooldown: String,
    /// `HOOKLINE_BREAKER_DISABLE_AFTER`: continuous failure after which the webhook is
    /// deactivated (its rows wait until it is turned on again).
    breaker_disable_after: String,
}

impl std::fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = serde_json::to_value(self).unwrap_or_default();
        if let Some(keys) = shown.as_object_mut() {
            if self.secret_key.is_some() {
                keys.insert("secret_key".into(), "<redacted>".into());
            }
            if self.metrics_token.is_some() {
                keys.insert("metrics_token".into(), "<redacted>".into());
            }
            if let Some(url) = &self.database_url {
                keys.insert("database_url".into(), redacted_url(url).into());
            }
            if let Some(url) = &self.otlp_endpoint {
                keys.insert("otlp_endpoint".into(), redacted_url(url).into());
            }
        }
        write!(f, "RawConfig {shown}")
    }
}

/// A database URL with its password (or, when it does not parse, all of it) left out.
fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => match parsed.set_password(Some("redacted")) {
            Ok(()) => parsed.to_string(),
            Err(()) => "<redacted>".into(),
        },
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<redacted>".into(),
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            database_max_connections: None,
            write_lanes: None,
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            secret_key: None,
            log: "info".into(),
            log_format: "text".into(),
            otlp_endpoint: None,
            http_timeout: "10s".into(),
            max_in_flight: 512,
            max_per_host: 64,
            max_response_body: 64 * 1024,
            retry_schedule: "10s,1m,5m,30m,2h,5h,10h".into(),
            retry_jitter: 0.2,
            poll_interval: "500ms".into(),
            cleanup_schedule: "0 30 3 * * *".into(),
            cleanup_sent_days: 30,
            cleanup_failed_days: 30,
            cleanup_audit_days: 365,
            idempotency_window: "24h".into(),
            max_template_size: 64 * 1024,
            max_rendered_size: 1024 * 1024,
            subscription_buffer: 1024,
            stats_interval: "250ms".into(),
            subscription_rate: 5_000,
            ws_ping_interval: "15s".into(),
            allowed_origins: String::new(),
            allow_private_targets: false,
            allowed_networks: String::new(),
            cra_cache: "10m".into(),
            heartbeat_interval: "2s".into(),
            heartbeat_timeout: "10s".into(),
            max_request_body: 8 * 1024 * 1024,
            max_query_depth: 16,
            max_query_complexity: 10_000,
            max_query_aliases: 100,
            apq_cache: 1000,
            max_subscriptions_per_connection: 100,
            max_subscriptions: 10_000,
            max_ws_connections: 1_000,
            header_read_timeout: "10s".into(),
            template_max_iterations: 10_000,
            template_max_depth: 10,
            template_timeout: "100ms".into(),
            sqlite_max_size: 0,
            jwt_jwks_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            introspection: true,
            token_mutation_rate: 0,
            token_mutation_burst: 0,
            metrics_token: None,
            metrics_per_webhook: false,
            breaker_failures: 20,
            breaker_cooldown: "30s".into(),
            breaker_disable_after: "5d".into(),
        }
    }
}

/// How deliveries are sent and retried.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub http_timeout: Duration,
    pub max_in_flight: usize,
    pub max_per_host: usize,
    pub max_response_body: usize,
    pub retry: RetryPolicy,
    pub poll_interval: Duration,
    pub cleanup_schedule: String,
    pub cleanup_sent_days: u32,
    pub cleanup_failed_days: u32,
    pub cleanup_audit_days: u32,
    /// How long an `idempotencyKey` is remembered.
    pub idempotency_window: Duration,
    pub templates: Limits,
    pub subscription_buffer: usize,
    pub stats_interval: Duration,
    pub subscription_rate: u32,
    pub targets: TargetPolicy,
    pub cra_cache: Duration,
    pub ws_ping_interval: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// Browser origins whose pages may call the API (besides the server's own).
    pub allowed_origins: Vec<String>,
    /// What one client may ask of the API.
    pub api: ApiLimits,
    /// When failures pause a webhook's sends, and when they turn it off.
    pub breaker: BreakerConfig,
}

/// The bounds on what one client may ask of the API.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Bytes of one HTTP request body or WebSocket message.
    pub max_request_body: usize,
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    pub max_query_aliases: usize,
    /// Persisted queries remembered.
    pub apq_cache: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_subscriptions: usize,
    pub max_ws_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let raw = RawConfig::default();
        Self::from_raw(&raw).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl DeliveryConfig {
    fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        let duration = |key: &str, text: &str| {
            parse_duration(text).map_err(|e| ConfigError(format!("key `{key}` ({}): {e}", env_name(key))))
        };
        let http_timeout = duration("http_timeout", &raw.http_timeout)?;
        let heartbeat_interval = duration("heartbeat_interval", &raw.heartbeat_interval)?;
        let heartbeat_timeout = duration("heartbeat_timeout", &raw.heartbeat_timeout)?;
        if heartbeat_interval.is_zero() || heartbeat_timeout < heartbeat_interval * 2 {
            return Err(ConfigError(
                "keys `heartbeat_interval` and `heartbeat_timeout` (HOOKLINE_HEARTBEAT_INTERVAL, \
                 HOOKLINE_HEARTBEAT_TIMEOUT): the interval must be more than 0 and the timeout at least twice it"
                    .into(),
            ));
        }
        let poll_interval = duration("poll_interval", &raw.poll_interval)?;
        if http_timeout.is_zero() || poll_interval.is_zero() {
            return Err(ConfigError("keys `http_timeout` and `poll_interval` must be more than 0".into()));
        }
        for (key, value) in [
            ("max_in_flight", raw.max_in_flight),
            ("max_per_host", raw.max_per_host),
            ("subscription_rate", raw.subscription_rate as usize),
            ("max_request_body", raw.max_request_body),
            ("max_query_depth", raw.max_query_depth),
            ("max_query_complexity", raw.max_query_complexity),
            ("max_query_aliases", raw.max_query_aliases),
            ("apq_cache", raw.apq_cache),
            ("max_subscriptions_per_connection", raw.max_subscriptions_per_connection),
            ("max_subscriptions", raw.max_subscriptions),
            ("max_ws_connections", raw.max_ws_connections),
            ("template_max_iterations", raw.template_max_iterations),
            ("template_max_depth", raw.template_max_depth),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("key `{key}` ({}): must be at least 1", env_name(key))));
            }
        }
        let schedule = parse_schedule(&raw.retry_schedule)
            .map_err(|e| ConfigError(format!("key `retry_schedule` (HOOKLINE_RETRY_SCHEDULE): {e}")))?;
        if !(0.0..1.0).contains(&raw.retry_jitter) {
            return Err(ConfigError(
                "key `retry_jitter` (HOOKLINE_RETRY_JITTER): must be a fraction from 0 (no jitter) to below 1".into(),
            ));
        }
        let header_read_timeout = duration("header_read_timeout", &raw.header_read_timeout)?;
        let template_timeout = duration("template_timeout", &raw.template_timeout)?;
        if header_read_timeout.is_zero() || template_timeout.is_zero() {
            return Err(ConfigError(
                "keys `header_read_timeout` and `template_timeout` (HOOKLINE_HEADER_READ_TIMEOUT, \
                 HOOKLINE_TEMPLATE_TIMEOUT) must be more than 0"
                    .into(),
            ));
        }
        let breaker = breaker_config(raw, duration)?;
        if cron::Schedule::from_str(&raw.cleanup_schedule).is_err() {
            return Err(ConfigError(format!(
                "key `cleanup_schedule` (HOOKLINE_CLEANUP_SCHEDULE): `{}` is not a cron expression with seconds, \
                 such as `0 30 3 * * *`",
                raw.cleanup_schedule
            )));
        }
        Ok(Self {
            http_timeout,
            max_in_flight: raw.max_in_flight,
            max_per_host: raw.max_per_host,
            max_response_body: raw.max_response_body,
            retry: RetryPolicy { schedule, jitter: raw.retry_jitter, ..RetryPolicy::default() },
            poll_interval,
            cleanup_schedule: raw.cleanup_schedule.clone(),
            cleanup_sent_days: raw.cleanup_sent_days,
            cleanup_failed_days: raw.cleanup_failed_days,
            cleanup_audit_days: raw.cleanup_audit_days,
            idempotency_window: match duration("idempotency_window", &raw.idempotency_window)? {
                zero if zero.is_zero() => {
                    return Err(ConfigError(
                        "key `idempotency_window` (HOOKLINE_IDEMPOTENCY_WINDOW): must be more than 0".into(),
                    ));
                }
                window => window,
            },
            templates: Limits {
                max_template: raw.max_template_size,
                max_rendered: raw.max_rendered_size,
                max_iterations: raw.template_max_iterations,
                max_depth: raw.template_max_depth,
                timeout: template_timeout,
            },
            subscription_buffer: raw.subscription_buffer.max(1),
            stats_interval: duration("stats_interval", &raw.stats_interval)?,
            subscription_rate: raw.subscription_rate,
            targets: TargetPolicy {
                allow_private: raw.allow_private_targets,
                allowed_networks: parse_networks(&raw.allowed_networks)?,
            },
            cra_cache: duration("cra_cache", &raw.cra_cache)?,
            heartbeat_interval,
            heartbeat_timeout,
            allowed_origins: raw
                .allowed_origins
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
            ws_ping_interval: match duration("ws_ping_interval", &raw.ws_ping_interval)? {
                zero if zero.is_zero() => {
                    return Err(ConfigError(
                        "key `ws_ping_interval` (HOOKLINE_WS_PING_INTERVAL): must be more than 0".into(),
                    ));
                }
                interval => interval,
            },
            api: ApiLimits {
                max_request_body: raw.max_request_body,
                max_query_depth: raw.max_query_depth,
                max_query_complexity: raw.max_query_complexity,
                max_query_aliases: raw.max_query_aliases,
                apq_cache: raw.apq_cache,
                max_subscriptions_per_connection: raw.max_subscriptions_per_connection,
                max_subscriptions: raw.max_subscriptions,
                max_ws_connections: raw.max_ws_connections,
                header_read_timeout,
            },
            breaker,
        })
    }
}

/// The breaker's keys: at least one failure, a cooldown within its 1h cap, a disabling delay
/// above 0.
fn breaker_config(
    raw: &RawConfig,
    duration: impl Fn(&str, &str) -> Result<Duration, ConfigError>,
) -> Result<BreakerConfig, ConfigError> {
    if !(1..=1_000_000).contains(&raw.breaker_failures) {
        return Err(ConfigError(format!(
            "key `breaker_failures` (HOOKLINE_BREAKER_FAILURES): must be from 1 to 1000000, not {}",
            raw.breaker_failures
        )));
    }
    let cooldown = duration("breaker_cooldown", &raw.breaker_cooldown)?;
    if cooldown < Duration::from_millis(100) || cooldown > MAX_COOLDOWN {
        return Err(ConfigError(format!(
            "key `breaker_cooldown` (HOOKLINE_BREAKER_COOLDOWN): must be from 100ms to 1h, not `{}`",
            raw.breaker_cooldown
        )));
    }
    let disable_after = duration("breaker_disable_after", &raw.breaker_disable_after)?;
    if disable_after.is_zero() || disable_after > Duration::from_secs(365 * 86_400) {
        return Err(ConfigError(format!(
            "key `breaker_disable_after` (HOOKLINE_BREAKER_DISABLE_AFTER): must be more than 0 and at most 365d, \
             not `{}`",
            raw.breaker_disable_after
        )));
    }
    Ok(BreakerConfig { failures: raw.breaker_failures, cooldown, disable_after })
}

fn parse_networks(text: &str) -> Result<Vec<IpNet>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>().or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                ConfigError(format!(
                    "key `allowed_networks` (HOOKLINE_ALLOWED_NETWORKS): `{part}` is not a network such as \
                     10.0.0.0/8 or fd00::/8"
                ))
            })
        })
        .collect()
}

fn env_name(key: &str) -> String {
    format!("HOOKLINE_{}", key.to_uppercase())
}

/// Which database the URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// Where the key that encrypts stored secrets comes from. Its Debug output never shows the key.
#[derive(Clone)]
pub enum SecretKeySource {
    /// Given in configuration.
    Configured([u8; 32]),
    /// Read from (or created in) this file; only allowed with the embedded SQLite database.
    File(PathBuf),
}

impl std::fmt::Debug for SecretKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured(_) => f.write_str("Configured(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// The checked configuration the application runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    pub database_kind: DatabaseKind,
    pub database_max_connections: u32,
    pub write_lanes: u32,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub secret_key: SecretKeySource,
    pub log: String,
    pub log_format: LogFormat,
    /// The collector spans are exported to (its base URL), if any.
    pub otlp_endpoint: Option<url::Url>,
    /// Bytes the SQLite database may grow to (`PRAGMA max_page_count`); 0 for no limit.
    pub sqlite_max_size: u64,
    pub delivery: DeliveryConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
}

/// What `GET /metrics` shows and to whom.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// The bearer token a scrape must carry; open to anyone who reaches the port when None.
    pub token: Option<SecretString>,
    /// Whether the attempt and latency series carry a `webhook_id` label.
    pub per_webhook: bool,
}

impl MetricsConfig {
    fn from_raw(raw: &RawConfig) -> Self {
        Self {
            token: raw.metrics_token.as_deref().filter(|t| !t.trim().is_empty()).map(|t| SecretString::from(t.trim())),
            per_webhook: raw.metrics_per_webhook,
        }
    }
}

/// Who may call the API, and how much.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// An identity provider's public keys (a JWKS file), whose tokens are accepted too.
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Whether introspection (`__schema`, `__type`) answers.
    pub introspection: bool,
    /// Mutations per second per token (0: no limit) and the burst above it.
    pub mutation_rate: u32,
    pub mutation_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self::from_raw(&RawConfig::default())
    }
}

impl AuthConfig {
    fn from_raw(raw: &RawConfig) -> Self {
        let text =
            |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        Self {
            jwks_file: raw.jwt_jwks_file.clone().filter(|path| !path.as_os_str().is_empty()),
            issuer: text(&raw.jwt_issuer),
            audience: text(&raw.jwt_audience),
            introspection: raw.introspection,
            mutation_rate: raw.token_mutation_rate,
            mutation_burst: if raw.token_mutation_burst == 0 {
                raw.token_mutation_rate
            } else {
                raw.token_mutation_burst
            },
        }
    }
}

/// A configuration value that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads defaults, the optional TOML file and the `HOOKLINE_*` environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("the configuration file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only the keys RawConfig has: other HOOKLINE_* variables are not configuration.
        let known: Vec<String> = match serde_json::to_value(RawConfig::default()) {
            Ok(serde_json::Value::Object(keys)) => keys.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        figment = figment.merge(Env::prefixed("HOOKLINE_").only(&known).map(|k| k.as_str().to_lowercase().into()));
        let raw: RawConfig = figment.extract().map_err(|err| {
            let key = err.path.join(".");
            let env = format!("HOOKLINE_{}", key.to_uppercase());
            ConfigError(format!("key `{key}` ({env}): {}", err.kind))
        })?;
        Self::from_raw(raw)
    }

    /// A configuration for tests and embedding: SQLite in `data_dir`, port 0, a fresh key.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            database_url: SecretString::from(sqlite_url(&data_dir)),
            database_kind: DatabaseKind::Sqlite,
            database_max_connections: 4,
            write_lanes: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret_key: SecretKeySource::File(data_dir.join("secret.key")),
            data_dir,
            log: "warn".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            sqlite_max_size: 0,
            delivery: DeliveryConfig::default(),
            auth: AuthConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }

    /// Points the configuration at another database URL.
    pub fn with_database_url(mut self, url: &str) -> Result<Self, ConfigError> {
        self.database_kind = database_kind(url)?;
        if self.database_kind == DatabaseKind::Postgres {
            self.database_max_connections = 10;
            self.write_lanes = default_write_lanes();
        }
        self.database_url = SecretString::from(url.to_owned());
        Ok(self)
    }

    /// Sets the key that encrypts stored secrets.
    pub fn with_secret_key(mut self, key: [u8; 32]) -> Self {
        self.secret_key = SecretKeySource::Configured(key);
        self
    }

    fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let listen = raw.listen.parse().map_err(|_| {
            ConfigError(format!(
                "key `listen` (HOOKLINE_LISTEN): `{}` is not an address and port such as 127.0.0.1:8080",
                raw.listen
            ))
        })?;
        if raw.write_lanes.is_some_and(|lanes| lanes == 0 || lanes > 16) {
            return Err(ConfigError("key `write_lanes` (HOOKLINE_WRITE_LANES): must be between 1 and 16".into()));
        }
        if raw.database_max_connections == Some(0) {
            return Err(ConfigError(
                "key `database_max_connections` (HOOKLINE_DATABASE_MAX_CONNECTIONS): must be at least 1".into(),
            ));
        }
        let database_url = raw.database_url.clone().unwrap_or_else(|| sqlite_url(&raw.data_dir));
        let database_kind = database_kind(&database_url)?;
        let secret_key = match raw.secret_key.as_deref() {
            Some(text) => SecretKeySource::Configured(parse_secret_key(text)?),
            None if database_kind == DatabaseKind::Postgres => {
                return Err(ConfigError(
                    "key `secret_key` (HOOKLINE_SECRET_KEY) must be set when the database is PostgreSQL: \
                     every hookline process on that database must share it (generate one with \
                     `openssl rand -base64 32`)"
                        .into(),
                ));
            }
            None => SecretKeySource::File(raw.data_dir.join("secret.key")),
        };
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&raw.log) {
            return Err(ConfigError(format!("key `log` (HOOKLINE_LOG): {err}")));
        }
        let log_format =
            raw.log_format.parse().map_err(|e| ConfigError(format!("key `log_format` (HOOKLINE_LOG_FORMAT): {e}")))?;
        let otlp_endpoint = parse_otlp_endpoint(raw.otlp_endpoint.as_deref())?;
        let delivery = DeliveryConfig::from_raw(&raw)?;
        let auth = AuthConfig::from_raw(&raw);
        let metrics = MetricsConfig::from_raw(&raw);
        Ok(Self {
            delivery,
            database_url: SecretString::from(database_url),
            database_kind,
            database_max_connections: raw.database_max_connections.unwrap_or(match database_kind {
                DatabaseKind::Sqlite => 4,
                DatabaseKind::Postgres => 10,
            }),
            write_lanes: match database_kind {
                DatabaseKind::Sqlite => 1,
                DatabaseKind::Postgres => raw.write_lanes.unwrap_or_else(default_write_lanes),
            },
            listen,
            data_dir: raw.data_dir,
            secret_key,
            log: raw.log,
            log_format,
            otlp_endpoint,
            sqlite_max_size: raw.sqlite_max_size,
            auth,
            metrics,
        })
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

/// The collector's base URL: http or https, with no query (`/v1/traces` is added to its path).
fn parse_otlp_endpoint(text: Option<&str>) -> Result<Option<url::Url>, ConfigError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let refused = |why: &str| {
        ConfigError(format!(
            "key `otlp_endpoint` (HOOKLINE_OTLP_ENDPOINT): `{}` {why}; give the base URL of an OTLP/HTTP \
             receiver such as http://127.0.0.1:4318",
            redacted_url(text)
        ))
    };
    let url = url::Url::parse(text).map_err(|_| refused("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refused("is not an http or https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refused("has a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("carries a user or password (send credentials in OTEL_EXPORTER_OTLP_HEADERS)"));
    }
    Ok(Some(url))
}

/// PostgreSQL's write lanes when none are configured: one per CPU, at least 2 (the claims'
/// lane and one for everything else) and at most 4. More lanes than CPUs made smaller
/// batches, each paying its own round trips and commit, on CPUs already busy with the
/// database and the API: on 2 CPUs, 4 lanes gave fewer `createItem`/s and twice the fan-out's
/// latency of 2 lanes (BENCHMARKS.md, "Write lanes on 2 CPUs").
fn default_write_lanes() -> u32 {
    std::thread::available_parallelism().map_or(2, |cpus| cpus.get() as u32).clamp(2, 4)
}

fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("hookline.db").display())
}

fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    if url.starts_with("sqlite:") {
        Ok(DatabaseKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else {
        Err(ConfigError("key `database_url` (HOOKLINE_DATABASE_URL): must start with sqlite: or postgres://".into()))
    }
}

/// Decodes a secret key given as base64 of exactly 32 bytes.
pub fn parse_secret_key(text: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| {
        ConfigError("key `secret_key` (HOOKLINE_SECRET_KEY): is not valid base64 (expected base64 of 32 bytes)".into())
    })?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        ConfigError(format!("key `secret_key` (HOOKLINE_SECRET_KEY): decodes to {} bytes, expected 32", bytes.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig::default()
    }

    #[test]
    fn debug_output_never_shows_the_key_or_the_database_password() {
        let key = BASE64.encode([42u8; 32]);
        let raw = RawConfig {
            secret_key: Some(key.clone()),
            database_url: Some("postgres://hookline:pg-pass-9@db.example.org/hookline".into()),
            metrics_token: Some("scrape-secret-7".into()),
            ..raw()
        };
        let shown = format!("{raw:?}");
        assert!(!shown.contains(&key) && !shown.contains("pg-pass-9"), "{shown}");
        assert!(!shown.contains("scrape-secret-7"), "{shown}");
        assert!(shown.contains("db.example.org") && shown.contains("listen"), "{shown}");
        let config = Config::from_raw(raw).expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("pg-pass-9") && !shown.contains("42, 42"), "{shown}");
        assert!(!shown.contains("scrape-secret-7") && config.metrics.token.is_some(), "{shown}");
        assert!(shown.contains("Configured(<redacted>)"), "{shown}");
    }

    #[test]
    fn defaults_use_sqlite_in_the_data_dir_and_a_key_file() {
        let config = Config::from_raw(raw()).expect("defaults are valid");
        assert_eq!(config.database_kind, DatabaseKind::Sqlite);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(config.database_url().contains("data/hookline.db"));
        assert!(matches!(config.secret_key, SecretKeySource::File(ref p) if p.ends_with("secret.key")));
    }

    #[test]
    fn postgres_without_a_secret_key_is_refused_naming_the_key() {
        let config = RawConfig { database_url: Some("postgres://localhost/x".into()), ..raw() };
        let err = Config::from_raw(config).expect_err("must be refused");
        assert!(err.0.contains("HOOKLINE_SECRET_KEY"), "{}", err.0);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let err = Config::from_raw(RawConfig { listen: "nowhere".into(), ..raw() }).expect_err("bad listen");
        assert!(err.0.contains("HOOKLINE_LISTEN"), "{}", err.0);
        let err = Config::from_raw(RawConfig { secret_key: Some("c2hvcnQ=".into()), ..raw() }).expect_err("short key");
        assert!(err.0.contains("HOOKLINE_SECRET_KEY") && err.0.contains("5 bytes"), "{}", err.0);
        let err = Config::from_raw(RawConfig { database_url: Some("mysql://x".into()), ..raw() }).expect_err("mysql");
        assert!(err.0.contains("HOOKLINE_DATABASE_URL"), "{}", err.0);
    }

    #[test]
    fn write_lanes_follow_the_cpus_unless_configured() {
        let key = Some(BASE64.encode([7u8; 32]));
        let postgres =
            || RawConfig { database_url: Some("postgres://localhost/x".into()), secret_key: key.clone(), ..raw() };
        let cpus = std::thread::available_parallelism().expect("the CPUs are known").get() as u32;
        let lanes = Config::from_raw(postgres()).expect("valid").write_lanes;
        assert_eq!(lanes, cpus.clamp(2, 4), "{cpus} CPUs");
        let configured = Config::from_raw(RawConfig { write_lanes: Some(7), ..postgres() }).expect("valid");
        assert_eq!(configured.write_lanes, 7);
        let sqlite = Config::from_raw(RawConfig { write_lanes: Some(7), ..raw() }).expect("valid");
        assert_eq!(sqlite.write_lanes, 1, "SQLite has one writer");
        for bad in [0, 17] {
            let err = Config::from_raw(RawConfig { write_lanes: Some(bad), ..postgres() }).expect_err("out of range");
            assert!(err.0.contains("HOOKLINE_WRITE_LANES"), "{}", err.0);
        }
    }

    #[test]
    fn breaker_settings_are_checked() {
        let config = Config::from_raw(raw()).expect("defaults are valid");
        assert_eq!(config.delivery.breaker, BreakerConfig::default());
        for (bad, key) in [
            (RawConfig { breaker_failures: 0, ..raw() }, "HOOKLINE_BREAKER_FAILURES"),
            (RawConfig { breaker_cooldown: "2h".into(), ..raw() }, "HOOKLINE_BREAKER_COOLDOWN"),
            (RawConfig { breaker_cooldown: "soon".into(), ..raw() }, "HOOKLINE_BREAKER_COOLDOWN"),
            (RawConfig { breaker_disable_after: "0s".into(), ..raw() }, "HOOKLINE_BREAKER_DISABLE_AFTER"),
        ] {
            let err = Config::from_raw(bad).expect_err(key);
            assert!(err.0.contains(key), "{}", err.0);
        }
        let small = RawConfig { breaker_failures: 3, breaker_cooldown: "1s".into(), ..raw() };
        let breaker = Config::from_raw(small).expect("valid").delivery.breaker;
        assert_eq!((breaker.failures, breaker.cooldown), (3, Duration::from_secs(1)));
    }
}
