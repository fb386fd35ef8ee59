//! The workers (apalis): the delivery worker fed by the claimer, the recorder that writes
//! outcomes in batches, forced sends, and the periodic cleanup. They reach the queue only
//! through its owner, [`crate::queue::Queue`].
//!
//! A queued webhook moves `pending`/`retrying` → `sending` (claimed, with a lease) → `sent`,
//! `retrying` or `failed`. The claimer only claims as many rows as there are free send slots,
//! so memory stays bounded; a crash leaves rows `sending`, and they are released when the
//! process's heartbeat stops (PostgreSQL), when their lease ends, or at once on restart
//! (SQLite, whose database has a single process).

mod backend;
mod claimer;
mod cleanup;
mod recorder;

use std::sync::Arc;

use apalis::prelude::*;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    delivery::DeliveryClient,
    error::AppError,
    queue::{ForcedSend, Queue, WorkerInbox},
};

/// Runs the workers until `shutdown` is cancelled, then finishes in-flight attempts, gives
/// claimed but unstarted rows back and writes every outcome.
pub async fn run(queue: Arc<Queue>, client: Arc<DeliveryClient>, inbox: WorkerInbox, shutdown: CancellationToken) {
    // Alive before the first claim: another process must never take this one's fresh claims
    // for a dead process's.
    if let Err(err) = queue.heartbeat().await {
        tracing::error!(?err, "cannot record this process's heartbeat");
    }
    // On SQLite (one process) anything `sending` was cut off by a stop.
    claimer::release_abandoned(&queue, &client, true).await;
    let config = &client.config;
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let (jobs_tx, jobs_rx) = mpsc::channel(config.max_in_flight);
    let (outcomes_tx, outcomes_rx) = mpsc::channel(config.max_in_flight * 2);
    let jobs = backend::ChannelBackend::new(jobs_rx);
    let stop_recorder = CancellationToken::new();

    let claimer = tokio::spawn(claimer::run(queue.clone(), client.clone(), slots, jobs_tx, shutdown.clone()));
    let heartbeat = tokio::spawn(claimer::heartbeat(queue.clone(), client.clone(), shutdown.clone()));
    let recorder = tokio::spawn(recorder::run(queue.clone(), outcomes_rx, stop_recorder.clone()));
    let forced = tokio::spawn(forced_sends(queue.clone(), client.clone(), inbox, shutdown.clone()));

    let attempts = tokio_util::task::TaskTracker::new();
    let handler = backend::Handler {
        client: client.clone(),
        outcomes: outcomes_tx,
        attempts: attempts.clone(),
        queue: queue.clone(),
    };
    let cleanup = cleanup::Cleanup {
        queue: queue.clone(),
        db: client.db().clone(),
        sent_days: config.cleanup_sent_days,
        failed_days: config.cleanup_failed_days,
        audit_days: config.cleanup_audit_days,
        idempotency_window: config.idempotency_window,
    };
    let schedule = cleanup::schedule(&config.cleanup_schedule);
    let concurrency = config.max_in_flight;
    let mut monitor = Monitor::new()
        .shutdown_timeout(client.longest_attempt())
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
    forced.await.ok();
    attempts.close();
    if tokio::time::timeout(client.longest_attempt(), attempts.wait()).await.is_err() {
        tracing::warn!("attempts still running at stop; their rows resume when their lease ends");
    }
    // Rows claimed but never started go back to the queue untouched.
    for (token, ids) in jobs.drain() {
        if let Err(err) = queue.release(ids, token).await {
            tracing::error!(?err, "cannot release claimed deliveries; they resume when their lease ends");
        }
    }
    drop(handler);
    stop_recorder.cancel();
    recorder.await.ok();
    heartbeat.await.ok();
    queue.leave().await;
}

/// Forced sends asked through the API: each is attempted at once and its outcome written
/// before the caller is answered.
async fn forced_sends(
    queue: Arc<Queue>,
    client: Arc<DeliveryClient>,
    mut inbox: WorkerInbox,
    shutdown: CancellationToken,
) {
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = inbox.forced.recv() => next,
        };
        let Some(ForcedSend { row, reply }) = next else { break };
        let (queue, client) = (queue.clone(), client.clone());
        tasks.spawn(async move {
            let _ = reply.send(force(&queue, &client, row).await);
        });
    }
    tasks.close();
    tasks.wait().await;
}

async fn force(
    queue: &Queue,
    client: &DeliveryClient,
    row: entity::queued_webhooks::Model,
) -> Result<entity::queued_webhooks::Model, AppError> {
    let (id, token) = (row.id, row.claim_token.unwrap_or_default());
    let signer = match client.signers.for_webhooks(client.db(), &client.secrets, &[row.webhook_id]).await {
        Ok(mut signers) => signers.remove(&row.webhook_id),
        Err(err) => {
            queue.release(vec![id], token).await?;
            return Err(err);
        }
    };
    let Some(signer) = signer else {
        queue.release(vec![id], token).await?;
        return Err(AppError::not_found(format!("the webhook of queued webhook {id} no longer exists")));
    };
    let outcome = client.attempt(row, &signer).await;
    queue.record(Arc::from([outcome])).await?;
    queue.require(id).await
}
