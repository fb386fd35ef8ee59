//! Sends made now, at a caller's request, by the workers' forced-send loop: a forced send of
//! a queued webhook, and a test delivery (queued and claimed in one transaction, so that no
//! worker ever sees it due). Both pass the webhook's circuit breaker and rate limit, and
//! count in its rate.

use entity::queued_webhooks::{self, Model, QueueStatus};
use sea_orm::EntityTrait;
use tokio::sync::oneshot;

use super::{
    Queue, enqueue, health,
    store::{self, Claim},
    transition::{self, Step},
};
use crate::error::{AppError, AppResult};

/// A forced send asked of the workers: the claimed row, and where to answer with the row as
/// the attempt left it.
pub struct ForcedSend {
    pub row: Model,
    pub reply: oneshot::Sender<AppResult<Model>>,
}

impl Queue {
    /// Sends a queued webhook now, whatever its status and budget, and returns the row as
    /// the attempt left it. CONFLICT while the row is being sent.
    pub async fn force(&self, id: i64) -> AppResult<Model> {
        let (process, token, lease) = self.claim();
        let row = self
            .writer
            .write_queue(move |txn, staged| {
                Box::pin(async move {
                    let before = queued_webhooks::Entity::find_by_id(id)
                        .one(txn)
                        .await?
                        .ok_or_else(|| AppError::not_found(format!("no queued webhook with id {id}")))?;
                    transition::next(Some(before.status), Step::Force)
                        .map_err(|_| AppError::conflict(format!("queued webhook {id} is being sent right now")))?;
                    let claim = Claim { process: &process, token, lease };
                    let row = store::claim_one(txn, id, &claim)
                        .await?
                        .ok_or_else(|| AppError::conflict(format!("queued webhook {id} is being sent right now")))?;
                    // Past the breaker and the rate limit, but counted in the rate.
                    health::spend(txn, row.webhook_id, chrono::Utc::now()).await?;
                    staged.push(&row, Some(before.status));
                    Ok(row)
                })
            })
            .await?;
        self.send_claimed(row, token).await
    }

    /// Queues a test delivery (`row`, with `is_test` set: it is given one attempt) and sends
    /// it at once, like a forced send; returns the row as the attempt left it. Subscribers see
    /// it queued, then sending, then its outcome.
    pub async fn send_test(&self, row: Model) -> AppResult<Model> {
        if !row.is_test || row.body.is_none() {
            return Err(AppError::internal("a test delivery must be a rendered test row"));
        }
        let (process, token, lease) = self.claim();
        let row = self
            .writer
            .write(move |txn, staged| {
                Box::pin(async move {
                    let queued = enqueue(txn, staged, vec![row]).await?;
                    let queued = queued.into_iter().next().ok_or_else(|| AppError::internal("no test row queued"))?;
                    transition::next(Some(queued.status), Step::Force)
                        .map_err(|refused| AppError::internal(refused.to_string()))?;
                    let claim = Claim { process: &process, token, lease };
                    let row = store::claim_one(txn, queued.id, &claim)
                        .await?
                        .ok_or_else(|| AppError::internal("the test row could not be claimed"))?;
                    health::spend(txn, row.webhook_id, chrono::Utc::now()).await?;
                    staged.push(&row, Some(QueueStatus::Pending));
                    Ok(row)
                })
            })
            .await?;
        self.send_claimed(row, token).await
    }

    /// Hands a row this process claimed to the workers' forced-send loop and waits for the
    /// row as its attempt left it.
    async fn send_claimed(&self, row: Model, token: i64) -> AppResult<Model> {
        let id = row.id;
        let (reply, answer) = oneshot::channel();
        if self.forced.send(ForcedSend { row, reply }).await.is_err() {
            self.release(vec![id], token).await?;
            return Err(AppError::internal("the delivery workers are not running"));
        }
        answer.await.map_err(|_| AppError::internal("the delivery workers stopped during a forced send"))?
    }
}
