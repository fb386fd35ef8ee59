//! The apalis backend of the delivery worker: claimed rows arrive through a channel from the
//! claimer, one task each, and the handler makes the attempt.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use apalis::prelude::*;
use apalis_core::backend::BackendConfig;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::task::TaskTracker;

use crate::{
    delivery::{DeliveryClient, Signer},
    domain::breaker::PACING_SLACK,
    queue::{Outcome, Queue},
};

/// A claimed row, its signer, the send slot it holds until its outcome is written, and (for
/// a rate-limited webhook) the start its claim reserved.
pub struct Delivery {
    pub row: entity::queued_webhooks::Model,
    pub signer: Arc<Signer>,
    pub slot: OwnedSemaphorePermit,
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Claimed rows waiting for the worker.
#[derive(Clone)]
pub struct ChannelBackend {
    rx: Arc<Mutex<mpsc::Receiver<Delivery>>>,
}

impl ChannelBackend {
    pub fn new(rx: mpsc::Receiver<Delivery>) -> Self {
        Self { rx: Arc::new(Mutex::new(rx)) }
    }

    fn receiver(&self) -> std::sync::MutexGuard<'_, mpsc::Receiver<Delivery>> {
        self.rx.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the channel and returns the rows still waiting in it, by claim token.
    pub fn drain(&self) -> std::collections::HashMap<i64, Vec<i64>> {
        let mut rx = self.receiver();
        rx.close();
        let mut ids = std::collections::HashMap::<i64, Vec<i64>>::new();
        while let Ok(delivery) = rx.try_recv() {
            ids.entry(delivery.row.claim_token.unwrap_or_default()).or_default().push(delivery.row.id);
        }
        ids
    }
}

impl Backend for ChannelBackend {
    type Task = Task<Delivery>;
    type Error = Infallible;

    fn poll_ready(&mut self, _cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Delivery>, Infallible>>> {
        self.receiver().poll_recv(cx).map(|next| {
            next.map(|delivery| {
                let id = TaskId::from_int(delivery.row.id as u64);
                Ok(TaskBuilder::new(delivery).task_id(id).build())
            })
        })
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for ChannelBackend {
    type Args = Delivery;
    type Id = RandomId;
    type Kind = apalis_core::backend::finalize::Ephemeral;
    type Config = ();
    type Layer = apalis_core::layers::Identity;

    fn config(&self) -> &() {
        &()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        apalis_core::layers::Identity::new()
    }
}

/// An attempt's outcome and the send slot its row holds until the outcome is written.
pub struct Finished {
    pub outcome: Outcome,
    pub slot: OwnedSemaphorePermit,
}

/// What the delivery handler needs.
#[derive(Clone)]
pub struct Handler {
    pub client: Arc<DeliveryClient>,
    pub outcomes: mpsc::Sender<Finished>,
    /// Attempts run as tracked tasks, so that a stop waits for them to finish and be
    /// recorded even when the worker itself is told to stop at once.
    pub attempts: TaskTracker,
    /// Where a paced row that could not start in time goes back.
    pub queue: Arc<Queue>,
}

/// One attempt of one claimed row; its outcome goes to the recorder.
#[tracing::instrument(level = "debug", skip_all, fields(queued_id = job.row.id))]
pub async fn deliver(job: Delivery, handler: Data<Handler>) -> Result<(), BoxDynError> {
    let Delivery { row, signer, slot, start_at } = job;
    let (client, outcomes) = (handler.client.clone(), handler.outcomes.clone());
    let queue = handler.queue.clone();
    let attempt = handler.attempts.spawn(async move {
        // A paced send starts at its reserved time: the attempt begins then, the rate limit's
        // measure of a start. One that could only start later than the slack allows would crowd
        // the next ones; it goes back to the queue (its share stays spent) and is paced again.
        if let Some(start_at) = start_at {
            if let Ok(wait) = (start_at - chrono::Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
            let late = (chrono::Utc::now() - start_at).to_std().unwrap_or_default();
            if late > PACING_SLACK {
                tracing::debug!(queued_id = row.id, ?late, "a paced send missed its start; queued again");
                let token = row.claim_token.unwrap_or_default();
                if let Err(err) = queue.release(vec![row.id], token).await {
                    tracing::warn!(?err, "cannot give a paced delivery back; it resumes when its lease ends");
                }
                drop(slot);
                return Ok(());
            }
        }
        // Boxed: the attempt's future (the HTTP client's among it) is large, and a task's
        // future is moved whole when it is spawned and polled.
        let outcome = Box::pin(client.attempt(row, &signer)).await;
        // The slot goes with the outcome and is freed once it is written: a slow database slows
        // the claimer, and no more rows than there are slots are ever sent but not recorded
        // (what a crash can make a process send twice).
        outcomes.send(Finished { outcome, slot }).await
    });
    attempt.await?.map_err(|_| "the recorder has stopped")?;
    Ok(())
}
