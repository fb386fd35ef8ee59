//! An attempt's outcome, the row it leaves, and how outcomes are written.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{
    queued_webhooks::{Model, QueueStatus},
    webhooks,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};

use super::{
    Staged,
    attempts::{self, AttemptRecord},
    health,
    store::{self, Written, storable},
    transition::{self, Step},
};
use crate::{
    db::PageBudget,
    domain::{
        breaker::{AttemptEnd, BreakerConfig},
        outcome::{AttemptResult, Decision},
    },
    error::AppResult,
    service::history::{self, NewEntry, Subject},
};

/// The result of one attempt of a claimed row, ready to be written.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The row as claimed (its claim token fences the write).
    pub row: Model,
    pub attempted_at: DateTime<Utc>,
    pub result: AttemptResult,
    pub decision: Decision,
    /// Whether a request was sent to the target (a failed CRA challenge is not an attempt).
    pub counted: bool,
    /// The attempt as kept (`QueuedWebhook.attempts`), when a request was sent.
    pub attempt: Option<AttemptRecord>,
}

impl Outcome {
    fn status_code(&self) -> Option<i32> {
        match &self.result {
            AttemptResult::Response { status, .. } => Some(i32::from(*status)),
            AttemptResult::NoResponse { .. } => None,
        }
    }

    /// The row as the outcome leaves it, computed at `now`: what is written and what
    /// subscribers are told. Without its body and headers, which an outcome does not change.
    pub fn updated_row(&self, now: DateTime<Utc>) -> Model {
        let mut row = super::live::published(&self.row);
        row.status =
            transition::next(Some(QueueStatus::Sending), Step::Outcome(&self.decision)).unwrap_or(QueueStatus::Failed);
        if self.counted {
            row.sent_try = row.sent_try.saturating_add(1);
            row.sent_time = Some(self.attempted_at);
        }
        row.last_status_code = self.status_code();
        row.response_body = match &self.result {
            AttemptResult::Response { body, .. } if self.row.save_response_body => body.clone().map(storable),
            _ => None,
        };
        // The claim token stays: the rows of a claim are found by it while they are in flight,
        // and an outcome that changed it would rewrite its index entry.
        row.lease_until = None;
        row.claimed_by = None;
        match &self.decision {
            Decision::Sent => row.last_error = None,
            Decision::Retry { delay, error } => {
                // A delay beyond the calendar (a configured schedule can ask for one) waits forever.
                row.send_time = chrono::Duration::from_std(*delay)
                    .ok()
                    .and_then(|delay| now.checked_add_signed(delay))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                row.last_error = Some(storable(error.clone()));
            }
            Decision::Failed { error, .. } => row.last_error = Some(storable(error.clone())),
        }
        row
    }

    /// The row as written when even the outcome's own values could not be stored.
    fn minimal_row(&self, now: DateTime<Utc>, reason: &str) -> Model {
        let mut row = self.updated_row(now);
        row.response_body = None;
        row.last_error = Some(format!("the attempt's outcome could not be stored ({reason})"));
        row
    }
}

/// Writes the outcomes, stages their transitions, and adds the history entries and webhook
/// deactivations they call for. Returns how many were written.
pub(super) async fn record(
    txn: &DatabaseTransaction,
    staged: &mut Staged,
    outcomes: std::sync::Arc<[Outcome]>,
    breaker: BreakerConfig,
) -> AppResult<usize> {
    let now = Utc::now();
    let rows: Vec<Model> = outcomes.iter().map(|o| o.updated_row(now)).collect();
    let budget = staged.budget;
    let written = match write_rows(txn, &outcomes, &rows, Attempts::Together(budget)).await {
        Ok(ids) => ids,
        Err(err) if !crate::db::still_open(txn).await => return Err(err),
        // The database refused the batch (a value it cannot store, or no room left): the
        // outcomes go first, so that attempts never take the room their outcomes need, then
        // the attempts, as far as the database takes them.
        Err(err) => {
            tracing::warn!(?err, rows = rows.len(), "a batch of outcomes was refused; writing them apart");
            let written = write_outcomes_apart(txn, &outcomes, &rows, now).await?;
            keep_attempts_apart(txn, &outcomes, &rows, &written, budget).await?;
            written
        }
    };
    // Each webhook's breaker sees its counted attempts, test deliveries aside, in order; a
    // probe that was not an attempt (its CRA challenge failed) decides nothing and is replaced.
    let mut ends: BTreeMap<i64, Vec<AttemptEnd>> = BTreeMap::new();
    let mut not_attempts = Vec::new();
    // The webhooks to turn off after a 410 Gone, with the row that was answered so.
    let mut gone = Vec::new();
    for (outcome, row) in outcomes.iter().zip(rows) {
        if !written.contains(&row.id) {
            continue;
        }
        match (outcome.row.is_test, outcome.counted) {
            (true, _) => {}
            (false, true) => ends.entry(row.webhook_id).or_default().push(AttemptEnd {
                queued_id: row.id,
                succeeded: outcome.decision == Decision::Sent,
                at: outcome.attempted_at,
            }),
            (false, false) => not_attempts.push(row.id),
        }
        if follow_up(txn, outcome, &row).await? {
            gone.push((row.webhook_id, row.id));
        }
        staged.push(&row, Some(QueueStatus::Sending));
    }
    for list in ends.values_mut() {
        list.sort_by_key(|end| end.at);
    }
    // Health rows are locked before webhook rows are written (as `updateWebhook` does when it
    // turns a webhook on again), and webhooks are written in id order: two transactions never
    // wait on each other.
    let recorded = health::record(txn, ends, &breaker, now).await?;
    let mut off: Vec<(i64, Option<i64>, String)> = gone
        .into_iter()
        .map(|(webhook_id, id)| {
            (webhook_id, Some(id), format!("Deactivated: the target answered 410 Gone to queued webhook {id}"))
        })
        .collect();
    off.extend(recorded.deactivate.into_iter().map(|webhook_id| {
        let message = format!(
            "Deactivated: every attempt failed for {} (HOOKLINE_BREAKER_DISABLE_AFTER); its queued webhooks wait \
             until it is turned on again",
            crate::domain::breaker::describe(breaker.disable_after)
        );
        (webhook_id, None, message)
    }));
    off.sort_by_key(|(webhook_id, _, _)| *webhook_id);
    for (webhook_id, queued_webhook_id, message) in off {
        deactivate(txn, webhook_id, queued_webhook_id, message, now).await?;
    }
    staged.push_health(recorded.changes);
    staged.push_health(health::released(txn, &not_attempts, now).await?);
    Ok(written.len())
}

/// Turns a webhook off (if it is on) with an entry in its history saying why.
async fn deactivate(
    conn: &impl ConnectionTrait,
    webhook_id: i64,
    queued_webhook_id: Option<i64>,
    message: String,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let deactivated = webhooks::Entity::update_many()
        .col_expr(webhooks::Column::IsActive, Expr::value(false))
        .col_expr(webhooks::Column::UpdatedAt, Expr::value(now))
        .filter(webhooks::Column::Id.eq(webhook_id))
        .filter(webhooks::Column::IsActive.eq(true))
        .exec(conn)
        .await?;
    if deactivated.rows_affected > 0 {
        let entry = NewEntry {
            queued_webhook_id,
            ..NewEntry::change("deactivate", message, Some("true".into()), Some("false".into()))
        };
        history::add(conn, Subject::Webhook(webhook_id), vec![entry]).await?;
    }
    Ok(())
}

/// Where the attempts of a write's outcomes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempts {
    /// In the same savepoint as the outcomes (within the clients' part of a size-limited
    /// database: see [`in_client_room`]).
    Together(Option<PageBudget>),
    /// In a savepoint of their own, after the outcomes ([`keep_attempts_apart`]).
    Apart,
}

/// Writes the outcomes one by one (after their batch was refused), each in a savepoint of its
/// own: as they are, or else without their values. Returns the ids written; fails only when
/// the database ended the transaction.
async fn write_outcomes_apart(
    txn: &DatabaseTransaction,
    outcomes: &[Outcome],
    rows: &[Model],
    now: DateTime<Utc>,
) -> AppResult<HashSet<i64>> {
    match write_rows(txn, outcomes, rows, Attempts::Apart).await {
        Ok(written) => return Ok(written),
        Err(err) => go_on_after(txn, err).await?,
    }
    let mut ids = HashSet::with_capacity(rows.len());
    for (outcome, row) in outcomes.iter().zip(rows) {
        let one = std::slice::from_ref(outcome);
        match write_rows(txn, one, std::slice::from_ref(row), Attempts::Apart).await {
            Ok(written) => ids.extend(written),
            Err(err) => {
                tracing::error!(?err, queued_id = row.id, "an outcome was refused; writing it without its values");
                go_on_after(txn, err).await?;
                let minimal = outcome.minimal_row(now, "the database refused a value");
                match write_rows(txn, one, std::slice::from_ref(&minimal), Attempts::Apart).await {
                    Ok(written) => ids.extend(written),
                    Err(err) => go_on_after(txn, err).await?,
                }
            }
        }
    }
    Ok(ids)
}

/// After a refused write: Ok when the transaction is still open and the others may go on,
/// the refusal itself when the database ended it ([`crate::db::still_open`]): then nothing of
/// the batch was stored, and nothing more may be written.
async fn go_on_after(txn: &DatabaseTransaction, refusal: crate::error::AppError) -> AppResult<()> {
    if crate::db::still_open(txn).await { Ok(()) } else { Err(refusal) }
}

/// Keeps the attempts of the written rows after their outcomes: together, else one by one;
/// those the database still refuses are not kept (logged once), never the outcomes. Fails only
/// when the database ended the transaction.
async fn keep_attempts_apart(
    txn: &DatabaseTransaction,
    outcomes: &[Outcome],
    rows: &[Model],
    written: &HashSet<i64>,
    budget: Option<PageBudget>,
) -> AppResult<()> {
    let kept = kept_attempts(outcomes, rows, written);
    match insert_attempts(txn, &kept, budget).await {
        Ok(()) => return Ok(()),
        Err(err) => go_on_after(txn, err).await?,
    }
    let mut refused = 0;
    for one in &kept {
        if let Err(err) = insert_attempts(txn, std::slice::from_ref(one), budget).await {
            go_on_after(txn, err).await?;
            refused += 1;
        }
    }
    if refused > 0 {
        tracing::error!(refused, "attempts were refused by the database; they are not kept");
    }
    Ok(())
}

/// The attempts of the outcomes whose rows were written.
fn kept_attempts<'a>(outcomes: &'a [Outcome], rows: &[Model], written: &HashSet<i64>) -> Vec<attempts::Kept<'a>> {
    outcomes
        .iter()
        .zip(rows)
        .filter(|(_, row)| written.contains(&row.id))
        .filter_map(|(outcome, row)| {
            Some(attempts::Kept {
                queued_webhook_id: row.id,
                record: outcome.attempt.as_ref()?,
                status_code: row.last_status_code,
                response_body: row.response_body.clone(),
                error: row.last_error.clone(),
            })
        })
        .collect()
}

async fn insert_attempts(
    txn: &DatabaseTransaction,
    kept: &[attempts::Kept<'_>],
    budget: Option<PageBudget>,
) -> AppResult<()> {
    let savepoint = txn.begin().await?;
    let inserted = in_client_room(&savepoint, budget, attempts::insert(&savepoint, kept)).await;
    settle(savepoint, inserted).await
}

/// Runs `work` (an outcome job's writes that are not essential: kept attempts) within the part
/// of a size-limited SQLite database that clients may fill, then gives the job back the
/// queue's reserve: the reserve is for outcomes, which attempts must never crowd out.
async fn in_client_room<T>(
    conn: &DatabaseTransaction,
    budget: Option<PageBudget>,
    work: impl std::future::Future<Output = AppResult<T>>,
) -> AppResult<T> {
    let Some(budget) = budget else { return work.await };
    crate::db::limit_pages(conn, budget.clients).await?;
    let result = work.await;
    crate::db::limit_pages(conn, budget.queue).await?;
    result
}

/// Keeps a savepoint's work when it succeeded, rolls it back otherwise (the transaction stays
/// usable either way).
async fn settle<T>(savepoint: DatabaseTransaction, result: AppResult<T>) -> AppResult<T> {
    match result {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(value)
        }
        Err(err) => {
            savepoint.rollback().await?;
            Err(err)
        }
    }
}

/// Writes rows and (with [`Attempts::Together`]) the attempts of those written, in one
/// savepoint, so that a refused statement leaves the transaction usable. Each row counts its
/// attempt as kept either way (`attempts_kept` only decides when to trim, which counts again);
/// rows that now keep more than `attempts::KEPT_PER_ROW` lose their oldest. Returns the ids
/// written.
async fn write_rows(
    txn: &DatabaseTransaction,
    outcomes: &[Outcome],
    rows: &[Model],
    attempts: Attempts,
) -> AppResult<HashSet<i64>> {
    let values: Vec<Written<'_>> = outcomes
        .iter()
        .zip(rows)
        .map(|(outcome, row)| Written {
            row,
            token: outcome.row.claim_token.unwrap_or_default(),
            counted: i32::from(outcome.counted),
            kept: i32::from(outcome.attempt.is_some()),
        })
        .collect();
    let savepoint = txn.begin().await?;
    let written = write_in(&savepoint, &values, outcomes, rows, attempts).await;
    settle(savepoint, written).await
}

async fn write_in(
    conn: &DatabaseTransaction,
    values: &[Written<'_>],
    outcomes: &[Outcome],
    rows: &[Model],
    attempts: Attempts,
) -> AppResult<HashSet<i64>> {
    let recorded = store::record(conn, values).await?;
    let written: HashSet<i64> = recorded.iter().map(|r| r.id).collect();
    let Attempts::Together(budget) = attempts else { return Ok(written) };
    in_client_room(conn, budget, attempts::insert(conn, &kept_attempts(outcomes, rows, &written))).await?;
    let over: Vec<i64> =
        recorded.iter().filter(|r| r.attempts_kept > attempts::KEPT_PER_ROW as i64).map(|r| r.id).collect();
    attempts::trim(conn, &over).await?;
    Ok(written)
}

/// The item history entry of a webhook that logs in it; returns whether the webhook is to be
/// turned off (its target answered 410 Gone). A test delivery does neither: the item did not
/// change, and a webhook is often tested before it is turned on.
async fn follow_up(conn: &impl ConnectionTrait, outcome: &Outcome, row: &Model) -> AppResult<bool> {
    let before = &outcome.row;
    if before.is_test {
        return Ok(false);
    }
    if before.log_in_item_history && before.event != "purge" && outcome.counted {
        let old = before.last_status_code.map(|c| c.to_string()).unwrap_or_default();
        let new = row.last_status_code.map(|c| c.to_string()).unwrap_or_default();
        let entry = NewEntry {
            queued_webhook_id: Some(row.id),
            ..NewEntry::change(
                "webhook",
                format!("Send a queued webhook: {} (Status {old} -> {new})", row.id),
                Some(old),
                Some(new),
            )
        };
        history::add(conn, Subject::Item { itemtype: &row.itemtype, id: &row.item_id }, vec![entry]).await?;
    }
    Ok(matches!(outcome.decision, Decision::Failed { deactivate_webhook: true, .. }))
}
