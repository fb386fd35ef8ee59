//! hookline: a webhook server. When an item changes, every matching webhook renders its
//! payload, is queued, signed, sent over HTTP, retried and logged.
//!
//! `main` is a thin shell over [`Application`], which tests build the same way on port 0.

mod assets;
pub mod auth;
pub mod bench;
pub mod bench_intake;
pub mod bench_match;
mod bench_report;
pub mod config;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod graphql;
mod http;
pub mod metrics;
pub mod queue;
pub mod secret_box;
pub mod server;
pub mod service;
pub mod slots;
pub mod telemetry;
pub mod verify;
pub mod websocket;
pub mod worker;
pub mod writer;

use std::{net::SocketAddr, sync::Arc};

use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, DeliveryConfig},
    delivery::DeliveryClient,
    queue::{Queue, QueueBus, StatsHub, WorkerInbox},
    secret_box::SecretBox,
    service::tree::ENTITIES,
    writer::Writer,
};

/// What every request handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The pool for reads (and the rare configuration writes).
    pub db: DatabaseConnection,
    /// Item writes go through it, committed in groups.
    pub writer: Writer,
    pub queue: Arc<Queue>,
    pub secrets: SecretBox,
    /// The HTTP client and credential caches (for challenges run from the API).
    pub delivery: Arc<DeliveryClient>,
    pub cache: Arc<service::cache::HotCache>,
    /// Item numbers reserved in blocks (PostgreSQL).
    pub numbers: Arc<service::numbers::ItemNumbers>,
    /// Live queue counters shared by subscribers.
    pub live: Arc<StatsHub>,
    /// Live subscriptions of this process (`HOOKLINE_MAX_SUBSCRIPTIONS`).
    pub subscriptions: Arc<slots::Slots>,
    /// Open WebSocket connections of this process (`HOOKLINE_MAX_WS_CONNECTIONS`).
    pub ws_connections: Arc<slots::Slots>,
    /// Checks the tokens of requests.
    pub auth: Arc<auth::Auth>,
    /// What `GET /metrics` shows.
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn config(&self) -> &DeliveryConfig {
        &self.delivery.config
    }
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot prepare the database: {0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// A built application: database migrated and seeded, listener bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    inbox: WorkerInbox,
    shutdown: CancellationToken,
    /// SQLite: the connection that copies the WAL into the database ([`db::checkpoints`]),
    /// its own so that it neither waits for reads nor holds one up.
    checkpoints: Option<DatabaseConnection>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let (state, inbox) = prepare(&config).await?;
        let bootstrap = auth::store::bootstrap(&state.db, &state.auth.tokens, &config.data_dir)
            .await
            .map_err(|e| StartError::Setup(format!("the first API token: {e:?}")))?;
        if let Some(path) = bootstrap {
            tracing::info!(path = %path.display(), "no API token was recorded: wrote a super-admin token to this file");
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let checkpoints = match config.database_kind {
            config::DatabaseKind::Sqlite => Some(db::connect(&config, 1, db::Pool::Shared).await?),
            config::DatabaseKind::Postgres => None,
        };
        Ok(Self { listener, state, inbox, shutdown: CancellationToken::new(), checkpoints })
    }

    /// The address actually bound (the real port when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token stops the server gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let router = http::router(self.state.clone());
        let shutdown = self.shutdown.clone();
        let state = self.state.clone();
        state.queue.run_background(shutdown.clone());
        tokio::spawn(auth::store::keep_revocations_fresh(state.db.clone(), state.auth.clone(), shutdown.clone()));
        tokio::spawn(state.metrics.clone().keep_up(shutdown.clone()));
        let checkpoints = self.checkpoints.map(|db| tokio::spawn(db::checkpoints(db, shutdown.clone())));
        let workers =
            tokio::spawn(worker::run(state.queue.clone(), state.delivery.clone(), self.inbox, shutdown.clone()));
        let header_read_timeout = state.config().api.header_read_timeout;
        server::serve(self.listener, router, header_read_timeout, shutdown.clone()).await;
        shutdown.cancel();
        workers.await.ok();
        // Every connection is closed before the process ends, the shared pool's last: on
        // SQLite the last connection to close copies the WAL into the database and removes
        // it, which it cannot do while another connection of the process is open (a pool
        // only dropped may still hold one when the process exits).
        self.state.writer.close().await;
        if let Some(checkpoints) = checkpoints {
            checkpoints.await.ok();
        }
        self.state.db.clone().close().await.ok();
        Ok(())
    }
}

/// Opens the key, connects, migrates and seeds: everything the server and `migrate` share.
/// Returns the state and the workers' end of the queue.
pub async fn prepare(config: &Config) -> Result<(AppState, WorkerInbox), StartError> {
    let key = secret_box::master_key(&config.secret_key)?;
    let secrets = SecretBox::new(&key);
    let auth = Arc::new(auth::Auth::new(&key, &config.auth)?);
    let db = db::connect(config, config.database_max_connections, db::Pool::Shared).await?;
    db::migrate(&db).await?;
    let revoked = auth::store::revoked_ids(&db, chrono::Utc::now())
        .await
        .map_err(|e| StartError::Setup(format!("the revoked API tokens: {e:?}")))?;
    auth.revoked.replace(revoked);
    ENTITIES.ensure_root(&db).await.map_err(|e| StartError::Setup(format!("{e:?}")))?;
    service::itemtypes::seed(&db).await.map_err(|e| StartError::Setup(format!("{e:?}")))?;
    let metrics = metrics::Metrics::new(&config.metrics);
    let delivery = DeliveryClient::new(db.clone(), config.delivery.clone(), secrets.clone(), metrics.clone())
        .map_err(|e| StartError::Setup(format!("HTTP client: {e}")))?;
    let bus = Arc::new(QueueBus::new(
        config.delivery.subscription_buffer,
        config.delivery.subscription_rate,
        metrics.subscription_messages.clone(),
    ));
    let publisher = Queue::publisher(&db, bus.clone(), metrics.clone());
    let lanes = db::write_lanes(config);
    let writer_db = db::connect(config, lanes as u32, db::Pool::Writer).await?;
    let budget = db::page_budget(config, &writer_db).await?;
    let writer = Writer::start(writer_db, lanes, publisher.clone(), budget);
    let (queue, inbox) = Queue::new(db.clone(), writer.clone(), publisher, delivery.lease(), config.delivery.breaker);
    let live = Arc::new(StatsHub::new(db.clone(), bus, config.delivery.stats_interval));
    let state = AppState {
        db,
        writer,
        queue: Arc::new(queue),
        secrets,
        delivery: Arc::new(delivery),
        cache: Arc::default(),
        numbers: Arc::default(),
        live,
        subscriptions: slots::Slots::new(config.delivery.api.max_subscriptions),
        ws_connections: slots::Slots::new(config.delivery.api.max_ws_connections),
        auth,
        metrics,
    };
    Ok((state, inbox))
}
