//! The workers (apalis): the delivery worker fed by the claimer, the recorder that writes
//! outcomes in batches, and the periodic cleanup.
//!
//! A queued webhook moves `pending`/`retrying` → `sending` (claimed, with a lease) → `sent`,
//! `retrying` or `failed`. The claimer only claims as many rows as there are free send slots,
//! so memory stays bounded; a crash leaves rows `sending`, and they are claimed again once
//! their lease ends (at once on SQLite, whose database has a single process).

mod backend;
mod claimer;
mod cleanup;
mod recorder;

use std::{sync::Arc, time::Duration};

use apalis::prelude::*;
use chrono::Utc;
use sea_orm::{DatabaseConnection, DbBackend};
use secrecy::ExposeSecret;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    config::DeliveryConfig,
    delivery::{ChallengeCache, HttpSender, PreparedRequest, Signer, TokenCache, prepare},
    domain::outcome::{AttemptResult, Decision, decide},
    error::{AppError, AppResult},
    secret_box::SecretBox,
    service::{
        live::{QueueBus, QueueChange},
        queue::{self, Outcome},
    },
};
use entity::queued_webhooks::status;

pub use claimer::SignerCache;

/// What the workers and the API share about sending.
pub struct Pipeline {
    pub config: DeliveryConfig,
    /// Opens the credential headers stored in queued webhooks.
    pub secrets: SecretBox,
    pub http: HttpSender,
    /// Where every status change of a queued webhook is published.
    pub bus: Arc<QueueBus>,
    /// Wakes the claimer: rows were queued.
    pub wake: Notify,
    pub signers: SignerCache,
    /// Successful challenge–responses, per webhook and URL.
    pub challenges: ChallengeCache,
    /// OAuth access tokens, per webhook.
    pub tokens: TokenCache,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn new(config: DeliveryConfig, secrets: SecretBox) -> Result<Self, reqwest::Error> {
        let http = HttpSender::new(
            config.http_timeout,
            config.max_per_host,
            config.max_response_body,
            config.targets.clone(),
        )?;
        let bus = Arc::new(QueueBus::new(config.subscription_buffer, config.subscription_rate));
        let challenges = ChallengeCache::new(config.cra_cache);
        Ok(Self {
            config,
            secrets,
            http,
            bus,
            wake: Notify::new(),
            signers: SignerCache::default(),
            challenges,
            tokens: TokenCache::default(),
        })
    }

    /// Rows were queued: claim them now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How long a claimed row belongs to its worker: its longest attempt, plus waiting for a
    /// host slot behind every other attempt before each of its (at most two) requests.
    pub fn lease(&self) -> Duration {
        let host_wait = self.config.http_timeout * (self.config.max_in_flight / self.config.max_per_host) as u32;
        self.longest_attempt() + host_wait * 2
    }

    /// The longest one started attempt can take: a challenge, a token request, the request,
    /// and the request again with a new token after a 401, each within the timeout.
    pub fn longest_attempt(&self) -> Duration {
        self.config.http_timeout * 4 + Duration::from_secs(5)
    }

    /// Makes one attempt of a claimed row and decides what follows. A webhook with CRA is
    /// challenged first (unless a recent success is cached); a failed challenge is not an
    /// attempt: the row waits for its next scheduled retry time, until the schedule's window
    /// is spent.
    pub async fn attempt(&self, row: entity::queued_webhooks::Model, signer: &Signer) -> Outcome {
        let attempted_at = Utc::now();
        if signer.cra
            && let Err(error) =
                self.challenges.ensure(&self.http, row.webhook_id, signer.version, &row.url, &signer.secret).await
        {
            let elapsed = (attempted_at - row.create_time).to_std().unwrap_or_default();
            let retries = (row.max_attempts - 1).max(0) as u32;
            let decision = match self.config.retry.next_scheduled(elapsed, retries) {
                Some(delay) => Decision::Retry { delay, error: format!("{error} (not counted as an attempt)") },
                None => Decision::Failed {
                    error: format!("{error}; the retry schedule's window is spent"),
                    deactivate_webhook: false,
                },
            };
            let result = AttemptResult::NoResponse { error };
            return Outcome { row, attempted_at, result, decision, counted: false };
        }
        let result = match prepare(&row, signer, &self.secrets, attempted_at.timestamp()) {
            Ok(request) => self.send_authorized(request, signer).await,
            Err(error) => AttemptResult::NoResponse { error },
        };
        let decision = decide(&result, row.sent_try + 1, row.max_attempts, &self.config.retry);
        Outcome { row, attempted_at, result, decision, counted: true }
    }

    /// Sends a request, with an OAuth access token when the webhook has a client; when the
    /// target answers 401, the token is refreshed once and the request sent again.
    async fn send_authorized(&self, request: PreparedRequest, signer: &Signer) -> AttemptResult {
        let Some(client) = &signer.oauth else {
            return self.http.send(request).await;
        };
        let mut rejected = None;
        loop {
            let token =
                match self.tokens.token(&self.http, signer.webhook_id, signer.version, client, rejected.as_ref()).await
                {
                    Ok(token) => token,
                    Err(error) => return AttemptResult::NoResponse { error },
                };
            let mut authorized = request.clone();
            authorized.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
            authorized.headers.push(("Authorization".into(), format!("Bearer {}", token.expose_secret())));
            let result = self.http.send(authorized).await;
            match result {
                AttemptResult::Response { status: 401, .. } if rejected.is_none() => rejected = Some(token),
                _ => return result,
            }
        }
    }

    /// Sends a queued webhook now, whatever its status and budget, and returns the row as the
    /// attempt left it. CONFLICT while the row is being sent.
    pub async fn force_send(&self, db: &DatabaseConnection, id: i64) -> AppResult<entity::queued_webhooks::Model> {
        let before = queue::claim_one(db, id, self.lease()).await?;
        let previous = before.status.clone();
        let row = entity::queued_webhooks::Model { status: status::SENDING.into(), ..before };
        let signer = match self.signers.for_webhooks(db, &self.secrets, &[row.webhook_id]).await {
            Ok(mut signers) => signers.remove(&row.webhook_id),
            Err(err) => {
                queue::release(db, &[id]).await?;
                return Err(err);
            }
        };
        let Some(signer) = signer else {
            queue::release(db, &[id]).await?;
            return Err(AppError::not_found(format!("the webhook of queued webhook {id} no longer exists")));
        };
        self.bus.publish(db, vec![QueueChange::new(row.clone(), Some(&previous))]).await;
        let outcome = self.attempt(row, &signer).await;
        queue::record(db, std::slice::from_ref(&outcome)).await?;
        let after = queue::require(db, id).await?;
        self.bus.publish(db, vec![QueueChange::new(after.clone(), Some(status::SENDING))]).await;
        Ok(after)
    }
}

/// Runs the workers until `shutdown` is cancelled, then finishes in-flight attempts, gives
/// claimed but unstarted rows back and writes every outcome.
pub async fn run(db: DatabaseConnection, pipeline: Arc<Pipeline>, shutdown: CancellationToken) {
    if db.get_database_backend() == DbBackend::Sqlite {
        // A SQLite database has one hookline process: anything `sending` was cut off.
        match queue::release_abandoned(&db, true).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(rows = n, "resuming deliveries interrupted by a stop"),
            Err(err) => tracing::error!(?err, "cannot release interrupted deliveries"),
        }
    }
    let slots = Arc::new(Semaphore::new(pipeline.config.max_in_flight));
    let (jobs_tx, jobs_rx) = mpsc::channel(pipeline.config.max_in_flight);
    let (outcomes_tx, outcomes_rx) = mpsc::channel(pipeline.config.max_in_flight * 2);
    let jobs = backend::ChannelBackend::new(jobs_rx);
    let stop_recorder = CancellationToken::new();

    let claimer = tokio::spawn(claimer::run(db.clone(), pipeline.clone(), slots, jobs_tx, shutdown.clone()));
    let recorder = tokio::spawn(recorder::run(db.clone(), pipeline.bus.clone(), outcomes_rx, stop_recorder.clone()));

    let attempts = tokio_util::task::TaskTracker::new();
    let handler = backend::Handler { pipeline: pipeline.clone(), outcomes: outcomes_tx, attempts: attempts.clone() };
    let cleanup = cleanup::Cleanup {
        db: db.clone(),
        sent_days: pipeline.config.cleanup_sent_days,
        failed_days: pipeline.config.cleanup_failed_days,
    };
    let schedule = cleanup::schedule(&pipeline.config.cleanup_schedule);
    let concurrency = pipeline.config.max_in_flight;
    let mut monitor = Monitor::new()
        .shutdown_timeout(pipeline.longest_attempt())
        .should_restart(|worker, err| {
            tracing::error!(worker = worker.name(), %err, "worker stopped; restarting it");
            true
        })
        .register({
            let jobs = jobs.clone();
            let handler = handler.clone();
            move |_restarts| {
                WorkerBuilder::new("deliveries")
                    .backend(jobs.clone())
                    .data(handler.clone())
                    .concurrency(concurrency)
                    .catch_panic()
                    .build(backend::deliver)
            }
        });
    if let Some(schedule) = schedule {
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new("cleanup")
                .backend(apalis_cron::CronScheduler::new(schedule.clone()))
                .data(cleanup.clone())
                .build(cleanup::run)
        });
    }
    let signal = shutdown.clone();
    if let Err(err) = monitor
        .run_with_signal(async move {
            signal.cancelled().await;
            Ok(())
        })
        .await
    {
        tracing::error!(%err, "workers stopped with an error");
    }
    claimer.await.ok();
    attempts.close();
    if tokio::time::timeout(pipeline.longest_attempt(), attempts.wait()).await.is_err() {
        tracing::warn!("attempts still running at stop; their rows resume when their lease ends");
    }
    // Rows claimed but never started go back to the queue untouched.
    let unstarted = jobs.drain();
    if let Err(err) = queue::release(&db, &unstarted).await {
        tracing::error!(?err, "cannot release claimed deliveries; they resume when their lease ends");
    }
    drop(handler);
    stop_recorder.cancel();
    recorder.await.ok();
}
