//! Writes attempt outcomes in batches: one write for everything that finished since the last
//! one. Outcomes that finish while a write is committing wait for the next one, so the busier
//! the workers, the larger the batches; a lone outcome is written at once.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::backend::Finished;
use crate::queue::{Outcome, Queue};

const BATCH: usize = 512;
/// Scheduler turns the recorder gives attempts that are finishing to join a batch (no timer:
/// a slot is freed only once its outcome is written, so waiting for a batch to fill would
/// hold every slot of the batch idle).
const GATHER_TURNS: usize = 4;
/// Tries to write a batch of outcomes at least this many times, however soon its leases end.
const MIN_ATTEMPTS: u32 = 8;

/// Runs until `stop` is cancelled and every outcome sent before has been written.
pub async fn run(queue: Arc<Queue>, mut outcomes: mpsc::Receiver<Finished>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut slots = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            next = outcomes.recv() => next,
            _ = stop.cancelled() => {
                outcomes.close();
                outcomes.recv().await
            }
        };
        let Some(first) = first else { return };
        batch.push(first.outcome);
        slots.push(first.slot);
        // Let the attempts that are finishing hand in their outcomes too, for as long as more
        // keep coming (a few scheduler turns at most).
        for _ in 0..GATHER_TURNS {
            tokio::task::yield_now().await;
            let before = batch.len();
            while batch.len() < BATCH {
                match outcomes.try_recv() {
                    Ok(next) => {
                        batch.push(next.outcome);
                        slots.push(next.slot);
                    }
                    Err(_) => break,
                }
            }
            if batch.len() == before || batch.len() == BATCH {
                break;
            }
        }
        write(&queue, &mut batch, &stop).await;
        // Written (or given up on: the rows then wait for their lease): the slots are free.
        slots.clear();
    }
}

/// Writes the batch, retrying while the database refuses (its connection is lost, it is
/// full) for as long as the rows are still this process's: until the first of their leases
/// ends (and at least a few times; only those few once the process stops). Outcomes that still
/// cannot be written are dropped from memory: their rows stay `sending` and are sent again once
/// released, so nothing is lost.
async fn write(queue: &Queue, batch: &mut Vec<Outcome>, stop: &CancellationToken) {
    let lease_ends = batch.iter().filter_map(|o| o.row.lease_until).min();
    let outcomes: Arc<[Outcome]> = batch.drain(..).collect();
    let mut delay = Duration::from_millis(50);
    for attempt in 1.. {
        let Err(err) = queue.record(outcomes.clone()).await else { break };
        let leased = !stop.is_cancelled() && lease_ends.is_some_and(|end| chrono::Utc::now() + delay < end);
        if attempt >= MIN_ATTEMPTS && !leased {
            tracing::error!(
                ?err,
                attempt,
                rows = outcomes.len(),
                "cannot write delivery outcomes; their rows will be sent again"
            );
            break;
        }
        tracing::warn!(?err, attempt, rows = outcomes.len(), "cannot write delivery outcomes; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
