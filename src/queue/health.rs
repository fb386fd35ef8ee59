//! The circuit breaker and the rate limit at the queue's two ends: a claim admits the rows
//! of open breakers and rate-limited webhooks only as their health allows (in the claim's
//! transaction), and a batch of outcomes updates each webhook's health once. The state lives in
//! `webhook_health`, shared by every process; on PostgreSQL the rows a decision reads are
//! locked first (in webhook order, so that no two transactions wait on each other), so that
//! two processes never both take the probe, nor the same share of a rate.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use entity::{
    queued_webhooks::Model,
    webhook_health::{self, Column as H},
    webhooks,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockBehavior, LockType, Query},
};
use serde::{Deserialize, Serialize};

use super::store::{self, Abandoned, Claim};
use crate::{
    domain::breaker::{Admission, AttemptEnd, BreakerConfig, BreakerState, Health},
    error::{AppError, AppResult},
};

/// A change of a webhook's breaker state, as subscribers receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthChange {
    pub webhook_id: i64,
    /// The webhook's entity (subscribers see only the webhooks of their scope).
    pub entity_id: i64,
    pub state: String,
    pub consecutive_failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
}

impl HealthChange {
    pub fn health(&self) -> Health {
        Health {
            state: BreakerState::parse(&self.state).unwrap_or(BreakerState::Closed),
            consecutive_failures: self.consecutive_failures,
            opened_at: self.opened_at,
            next_probe_at: self.next_probe_at,
            ..Health::closed(self.webhook_id)
        }
    }
}

fn from_model(m: webhook_health::Model) -> AppResult<Health> {
    Ok(Health {
        webhook_id: m.webhook_id,
        state: BreakerState::parse(&m.state).ok_or_else(|| {
            AppError::internal(format!("webhook {}: stored breaker state `{}`", m.webhook_id, m.state))
        })?,
        consecutive_failures: m.consecutive_failures,
        failing_since: m.failing_since,
        opened_at: m.opened_at,
        next_probe_at: m.next_probe_at,
        cooldown: std::time::Duration::from_millis(m.cooldown_ms.max(0) as u64),
        probe_id: m.probe_id,
        probe_until: m.probe_until,
        paced_until: m.paced_until,
    })
}

/// The stored health of these webhooks (one statement for many); a webhook without a row is
/// closed and never failed.
pub async fn get_many(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<Vec<Health>> {
    webhook_health::Entity::find()
        .filter(H::WebhookId.is_in(ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// What a transaction does with a health row another transaction has locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locked {
    /// Waits for it.
    Wait,
    /// Passes it over: the row is left out of what [`lock`] returns. A claim never waits,
    /// so that it ends within milliseconds (which `store::RESENT_IN_ORDER_AFTER` counts on).
    Skip,
}

/// The stored health of these webhooks; on PostgreSQL their rows are locked until the
/// transaction ends (in webhook order), or, with [`Locked::Skip`], those no other
/// transaction holds.
async fn lock(conn: &impl ConnectionTrait, ids: &[i64], locked: Locked) -> AppResult<BTreeMap<i64, Health>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut query =
        webhook_health::Entity::find().filter(H::WebhookId.is_in(ids.iter().copied())).order_by_asc(H::WebhookId);
    if conn.get_database_backend() == DbBackend::Postgres {
        query = match locked {
            Locked::Wait => query.lock_exclusive(),
            Locked::Skip => query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked),
        };
    }
    query.all(conn).await?.into_iter().map(|m| Ok((m.webhook_id, from_model(m)?))).collect()
}

/// Creates the (closed) health rows these webhooks lack, so that they can be locked.
async fn ensure(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let rows = ids.iter().map(|&id| webhook_health::ActiveModel {
        webhook_id: sea_orm::Set(id),
        state: sea_orm::Set(BreakerState::Closed.as_str().to_owned()),
        consecutive_failures: sea_orm::Set(0),
        cooldown_ms: sea_orm::Set(0),
        ..Default::default()
    });
    webhook_health::Entity::insert_many(rows).on_conflict_do_nothing_on([H::WebhookId]).exec(conn).await?;
    Ok(())
}

async fn save(conn: &impl ConnectionTrait, h: &Health) -> AppResult<()> {
    webhook_health::Entity::update_many()
        .col_expr(H::State, Expr::value(h.state.as_str()))
        .col_expr(H::ConsecutiveFailures, Expr::value(h.consecutive_failures))
        .col_expr(H::FailingSince, Expr::value(h.failing_since))
        .col_expr(H::OpenedAt, Expr::value(h.opened_at))
        .col_expr(H::NextProbeAt, Expr::value(h.next_probe_at))
        .col_expr(H::CooldownMs, Expr::value(i64::try_from(h.cooldown.as_millis()).unwrap_or(i64::MAX)))
        .col_expr(H::ProbeId, Expr::value(h.probe_id))
        .col_expr(H::ProbeUntil, Expr::value(h.probe_until))
        .col_expr(H::PacedUntil, Expr::value(h.paced_until))
        .filter(H::WebhookId.eq(h.webhook_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The webhooks among `ids` whose claimed rows need a decision, in one statement: those with a
/// rate limit (given with it) and those whose breaker is not closed (given with None).
async fn guarded(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<Vec<(i64, Option<u32>)>> {
    let not_closed = Query::select()
        .column(H::WebhookId)
        .from(webhook_health::Entity)
        .and_where(H::State.ne(BreakerState::Closed.as_str()))
        .to_owned();
    let rows: Vec<(i64, Option<i32>)> = webhooks::Entity::find()
        .select_only()
        .column(webhooks::Column::Id)
        .column(webhooks::Column::MaxPerSecond)
        .filter(webhooks::Column::Id.is_in(ids.iter().copied()))
        .filter(
            Condition::any()
                .add(webhooks::Column::MaxPerSecond.is_not_null())
                .add(webhooks::Column::Id.in_subquery(not_closed)),
        )
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|(id, limit)| (id, limit.and_then(|l| u32::try_from(l).ok()).map(|l| l.max(1)))).collect())
}

/// The webhooks among `ids` whose breaker has something to change on a success: not closed,
/// or closed with failures counted.
async fn failing(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<Vec<i64>> {
    Ok(webhook_health::Entity::find()
        .select_only()
        .column(H::WebhookId)
        .filter(H::WebhookId.is_in(ids.iter().copied()))
        .filter(Condition::any().add(H::State.ne(BreakerState::Closed.as_str())).add(H::ConsecutiveFailures.gt(0)))
        .into_tuple()
        .all(conn)
        .await?)
}

/// The changes subscribers are told of: those whose breaker state moved, with their
/// webhook's entity.
async fn changes(conn: &impl ConnectionTrait, moved: Vec<Health>) -> AppResult<Vec<HealthChange>> {
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    let entities: HashMap<i64, i64> = webhooks::Entity::find()
        .select_only()
        .column(webhooks::Column::Id)
        .column(webhooks::Column::EntityId)
        .filter(webhooks::Column::Id.is_in(moved.iter().map(|h| h.webhook_id)))
        .into_tuple::<(i64, i64)>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    Ok(moved
        .into_iter()
        .filter_map(|h| {
            Some(HealthChange {
                entity_id: *entities.get(&h.webhook_id)?,
                webhook_id: h.webhook_id,
                state: h.state.as_str().to_owned(),
                consecutive_failures: h.consecutive_failures,
                opened_at: h.opened_at,
                next_probe_at: h.next_probe_at,
            })
        })
        .collect())
}

/// The breaker state of one webhook, or of every webhook that has one recorded, as changes:
/// what a subscriber that fell behind is told, so that it ends up with every state as it is.
/// A webhook without a recorded state is closed and never failed: none was missed.
pub async fn current(conn: &impl ConnectionTrait, webhook_id: Option<i64>) -> AppResult<Vec<HealthChange>> {
    let mut query = webhook_health::Entity::find().order_by_asc(H::WebhookId);
    if let Some(id) = webhook_id {
        query = query.filter(H::WebhookId.eq(id));
    }
    let healths = query.all(conn).await?.into_iter().map(from_model).collect::<AppResult<Vec<_>>>()?;
    changes(conn, healths).await
}

/// The rows a claim keeps, after its webhooks' breakers and rate limits had their say.
pub struct Admitted {
    pub rows: Vec<Model>,
    /// The reserved start of each paced row (by row id): its send waits until then.
    pub starts: HashMap<i64, DateTime<Utc>>,
    /// How many claimed rows went back to the queue (their webhooks are now skipped by claims).
    pub given_back: usize,
    pub changes: Vec<HealthChange>,
}

/// Admits the rows a claim took: all of a closed breaker's (within its webhook's rate limit),
/// the oldest as the probe of an open breaker due for one (which goes half-open), none of a
/// breaker that is open or probing. The others go back to the queue as they were, in the same
/// transaction (nobody sees them taken), and so do the rows of a webhook whose health row
/// another transaction holds (PostgreSQL): a claim never waits for a lock. Test deliveries
/// pass (they are never paced either).
pub async fn admit(
    conn: &impl ConnectionTrait,
    rows: Vec<Model>,
    claim: &Claim<'_>,
    now: DateTime<Utc>,
) -> AppResult<Admitted> {
    let mut ids: Vec<i64> = rows.iter().filter(|r| !r.is_test).map(|r| r.webhook_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut admitted = Admitted { rows: Vec::new(), starts: HashMap::new(), given_back: 0, changes: Vec::new() };
    if ids.is_empty() {
        admitted.rows = rows;
        return Ok(admitted);
    }
    let guarded = guarded(conn, &ids).await?;
    if guarded.is_empty() {
        admitted.rows = rows;
        return Ok(admitted);
    }
    let limits: HashMap<i64, u32> = guarded.iter().filter_map(|&(id, limit)| Some((id, limit?))).collect();
    // In webhook order, as every other locker of these rows.
    let mut limited: Vec<i64> = limits.keys().copied().collect();
    limited.sort_unstable();
    ensure(conn, &limited).await?;
    let decided: Vec<i64> = guarded.iter().map(|&(id, _)| id).collect();
    let mut health = lock(conn, &decided, Locked::Skip).await?;
    let mut by_webhook: BTreeMap<i64, Vec<Model>> = BTreeMap::new();
    let mut back = Vec::new();
    for row in rows {
        if row.is_test || !decided.contains(&row.webhook_id) {
            admitted.rows.push(row);
        } else if health.contains_key(&row.webhook_id) {
            by_webhook.entry(row.webhook_id).or_default().push(row);
        } else {
            // Its health row is another transaction's now (every webhook decided on has one):
            // the row goes back untouched, for a later claim.
            back.push(row.id);
        }
    }
    let lease = chrono::Duration::from_std(claim.lease).unwrap_or(chrono::Duration::MAX);
    let mut moved = Vec::new();
    for (webhook_id, mut group) in by_webhook {
        let Some(h) = health.get_mut(&webhook_id) else { continue };
        let before = h.clone();
        group.sort_by_key(|r| (r.send_time, r.id));
        let admission = h.admission(now);
        let mut keep = match admission {
            Admission::All => group.len(),
            Admission::Probe => 1,
            Admission::None => 0,
        };
        if let Some(&per_second) = limits.get(&webhook_id) {
            let starts = h.pace(keep, per_second, now);
            keep = starts.len();
            admitted.starts.extend(group.iter().zip(starts).map(|(row, at)| (row.id, at)));
        }
        // A probe the rate window has no room for waits for the next claim.
        if admission == Admission::Probe
            && let Some(probe) = group.first().filter(|_| keep == 1)
        {
            h.probing(probe.id, now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC));
        }
        back.extend(group.drain(keep..).map(|r| r.id));
        admitted.rows.extend(group);
        if *h != before {
            save(conn, h).await?;
            if h.state != before.state {
                moved.push(h.clone());
            }
        }
    }
    admitted.given_back = back.len();
    store::release(conn, Abandoned::Claimed { ids: &back, token: claim.token }).await?;
    admitted.changes = changes(conn, moved).await?;
    Ok(admitted)
}

/// A forced send or a test delivery of this webhook spends a share of its rate limit (it was
/// not paced, but it counts).
pub async fn spend(conn: &impl ConnectionTrait, webhook_id: i64, now: DateTime<Utc>) -> AppResult<()> {
    let guarded = guarded(conn, &[webhook_id]).await?;
    let Some(per_second) = guarded.into_iter().find_map(|(_, limit)| limit) else { return Ok(()) };
    ensure(conn, &[webhook_id]).await?;
    if let Some(mut h) = lock(conn, &[webhook_id], Locked::Wait).await?.remove(&webhook_id) {
        h.spend(per_second, now);
        save(conn, &h).await?;
    }
    Ok(())
}

/// What a batch of outcomes did to its webhooks' health.
pub struct Recorded {
    /// The webhooks to deactivate now (continuous failure for the configured time).
    pub deactivate: Vec<i64>,
    pub changes: Vec<HealthChange>,
}

/// Updates the health of the webhooks of a batch of outcomes: once per webhook, with all its
/// attempts in order. A batch of successes of healthy webhooks reads one statement, locks
/// and writes nothing.
pub async fn record(
    conn: &impl ConnectionTrait,
    ends: BTreeMap<i64, Vec<AttemptEnd>>,
    config: &BreakerConfig,
    now: DateTime<Utc>,
) -> AppResult<Recorded> {
    let mut recorded = Recorded { deactivate: Vec::new(), changes: Vec::new() };
    if ends.is_empty() {
        return Ok(recorded);
    }
    let failed: Vec<i64> = ends.iter().filter(|(_, e)| e.iter().any(|e| !e.succeeded)).map(|(&id, _)| id).collect();
    ensure(conn, &failed).await?;
    // Successes of webhooks that never failed since their last success change nothing: only
    // the others are locked and decided on.
    let succeeded: Vec<i64> = ends.keys().copied().filter(|id| !failed.contains(id)).collect();
    let mut ids = failing(conn, &succeeded).await?;
    ids.extend(failed);
    ids.sort_unstable();
    let stored = lock(conn, &ids, Locked::Wait).await?;
    let mut moved = Vec::new();
    for (webhook_id, attempts) in &ends {
        // A webhook without a row had no failure, and these attempts all succeeded.
        let Some(before) = stored.get(webhook_id) else { continue };
        let (after, deactivate) = before.after(attempts, config, now);
        if after != *before {
            save(conn, &after).await?;
        }
        if after.state != before.state {
            moved.push(after.clone());
        }
        if deactivate {
            recorded.deactivate.push(*webhook_id);
        }
    }
    recorded.changes = changes(conn, moved).await?;
    Ok(recorded)
}

/// Rows went back to the queue unsent: a probe among them no longer holds its breaker
/// half-open, and another probe may go at once.
pub async fn released(conn: &impl ConnectionTrait, ids: &[i64], now: DateTime<Utc>) -> AppResult<Vec<HealthChange>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let probing: Vec<i64> = webhook_health::Entity::find()
        .select_only()
        .column(H::WebhookId)
        .filter(H::State.eq(BreakerState::HalfOpen.as_str()))
        .filter(H::ProbeId.is_in(ids.iter().copied()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut moved = Vec::new();
    for (_, mut h) in lock(conn, &probing, Locked::Wait).await? {
        if h.state == BreakerState::HalfOpen && h.probe_id.is_some_and(|id| ids.contains(&id)) {
            h.probe_released(now);
            save(conn, &h).await?;
            moved.push(h);
        }
    }
    changes(conn, moved).await
}

/// A webhook was turned on again: if the breaker had deactivated it, one probe is due at once.
/// Returns whether it was. Called before the webhook's row is written: a transaction locks
/// health rows before webhook rows, as the recorder does (it deactivates webhooks after
/// locking their health), so that the two never wait on each other.
pub async fn reactivated(conn: &impl ConnectionTrait, webhook_id: i64, now: DateTime<Utc>) -> AppResult<bool> {
    if let Some(mut h) = lock(conn, &[webhook_id], Locked::Wait).await?.remove(&webhook_id)
        && h.held()
    {
        h.reactivated(now);
        save(conn, &h).await?;
        return Ok(true);
    }
    Ok(false)
}

/// A stored time that may be unset.
type Moment = Option<DateTime<Utc>>;

/// The earliest time after `now` at which a webhook's claims may resume (a probe due, a lost
/// probe replaced, a rate window freed): the workers look for rows again then.
pub async fn next_reopening(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<Option<DateTime<Utc>>> {
    let rows: Vec<(String, Moment, Moment, Moment)> = webhook_health::Entity::find()
        .select_only()
        .columns([H::State, H::NextProbeAt, H::ProbeUntil, H::PacedUntil])
        .filter(sea_orm::Condition::any().add(H::State.ne(BreakerState::Closed.as_str())).add(H::PacedUntil.gt(now)))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .flat_map(|(state, probe_at, probe_until, paced_until)| {
            let breaker = match state.as_str() {
                "open" => probe_at,
                "half_open" => probe_until,
                _ => None,
            };
            [breaker, paced_until]
        })
        .flatten()
        .filter(|at| *at > now)
        .min())
}

/// The condition a claimable row of a webhook meets (SQL over `queued_webhooks`; `now` is the
/// bound value `now`): a test delivery, or a webhook whose breaker is closed or due for a
/// probe, and whose rate window is free.
pub fn claimable(now: &str) -> String {
    format!(
        "(q.is_test OR NOT EXISTS (SELECT 1 FROM webhook_health h \
         WHERE h.webhook_id = q.webhook_id AND ((h.state = 'open' AND (h.next_probe_at IS NULL \
         OR h.next_probe_at > {now})) OR (h.state = 'half_open' AND h.probe_until > {now}) OR h.paced_until > {now})))"
    )
}
