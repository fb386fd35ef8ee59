//! The queue's SQL: the only code that knows SQLite from PostgreSQL (claim locking, statement
//! sizes, timestamps in bulk updates, NOTIFY/LISTEN and heartbeats).

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    queue_claims,
    queued_webhooks::{self, Column as Q, Model, QueueStatus},
    workers,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement, UpdateMany, Value as DbValue,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query, SimpleExpr},
};

use super::ROWS_PER_BULK_WRITE;
use crate::{
    db::{insert_sql, value_rows},
    error::{AppError, AppResult},
};

/// The PostgreSQL channel that tells every hookline process that rows were queued.
pub const QUEUE_CHANNEL: &str = "hookline_queue";

fn is_postgres(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DbBackend::Postgres
}

/// The `n`th bound value: `$n` on PostgreSQL, `?n` on SQLite.
fn placeholder(backend: DbBackend, n: usize) -> String {
    if backend == DbBackend::Postgres { format!("${n}") } else { format!("?{n}") }
}

/// Rows per statement, within SQLite's limit of bound variables. (PostgreSQL once took 10:
/// sqlx 0.9.0 had dropped TCP_NODELAY, and a statement written in pieces waited 40 ms for the
/// last one. 0.9.1 sets it again; 100 rows a statement took the fan-out from 3,550 to 4,193/s.)
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// Text PostgreSQL can store: a NUL byte (which a target may well answer) becomes U+FFFD.
pub fn storable(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text }
}

/// Tells the workers of every process that rows were queued (PostgreSQL only; sent with the
/// commit of `conn`'s transaction).
pub async fn notify_queued(conn: &impl ConnectionTrait) -> AppResult<()> {
    if is_postgres(conn) {
        conn.execute_unprepared(&format!("NOTIFY {QUEUE_CHANNEL}")).await?;
    }
    Ok(())
}

/// The columns a new row is written with, in the order of its values in [`insert`]: all but
/// its id and `attempts_kept` (numbered by the database, and 0), each with its type for
/// PostgreSQL ([`crate::db::insert_sql`]).
const NEW_ROW: [(&str, &str); 28] = [
    ("webhook_id", "bigint"),
    ("itemtype", "varchar"),
    ("item_id", "varchar"),
    ("entity_id", "bigint"),
    ("event", "varchar"),
    ("url", "text"),
    ("http_method", "varchar"),
    ("headers", "json"),
    ("body", "text"),
    ("status", "varchar"),
    ("sent_try", "int"),
    ("max_attempts", "int"),
    ("delivery_id", "varchar"),
    ("create_time", "timestamptz"),
    ("send_time", "timestamptz"),
    ("sent_time", "timestamptz"),
    ("last_status_code", "int"),
    ("response_body", "text"),
    ("last_error", "text"),
    ("save_response_body", "boolean"),
    ("log_in_item_history", "boolean"),
    ("lease_until", "timestamptz"),
    ("claim_token", "bigint"),
    ("claimed_by", "varchar"),
    ("traceparent", "varchar"),
    ("is_test", "boolean"),
    ("order_key", "varchar"),
    ("changes", "json"),
];

/// Inserts new rows, a few per statement, and fills in their ids (matched by delivery id).
/// The statement is written here rather than built value by value: the writer runs it, and
/// this is the largest statement of an event with many webhooks.
pub async fn insert(conn: &impl ConnectionTrait, rows: &mut [Model]) -> AppResult<()> {
    let backend = conn.get_database_backend();
    let mut ids = std::collections::HashMap::with_capacity(rows.len());
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let mut values: Vec<DbValue> = Vec::with_capacity(part.len() * NEW_ROW.len());
        for row in part {
            values.extend([
                row.webhook_id.into(),
                row.itemtype.clone().into(),
                row.item_id.clone().into(),
                row.entity_id.into(),
                row.event.clone().into(),
                row.url.clone().into(),
                row.http_method.clone().into(),
                row.headers.to_string().into(),
                row.body.clone().into(),
                row.status.as_str().into(),
                row.sent_try.into(),
                row.max_attempts.into(),
                row.delivery_id.clone().into(),
                row.create_time.into(),
                row.send_time.into(),
                row.sent_time.into(),
                row.last_status_code.into(),
                row.response_body.clone().into(),
                row.last_error.clone().into(),
                row.save_response_body.into(),
                row.log_in_item_history.into(),
                row.lease_until.into(),
                row.claim_token.into(),
                row.claimed_by.clone().into(),
                row.traceparent.clone().into(),
                row.is_test.into(),
                row.order_key.clone().into(),
                row.changes.as_ref().map(|changes| changes.to_string()).into(),
            ]);
        }
        let sql = format!("{} RETURNING id, delivery_id", insert_sql(backend, "queued_webhooks", &NEW_ROW, part.len()));
        for returned in conn.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await? {
            let id: i64 = returned.try_get_by_index(0)?;
            let delivery_id: String = returned.try_get_by_index(1)?;
            ids.insert(delivery_id, id);
        }
    }
    for row in rows.iter_mut() {
        row.id = ids.get(&row.delivery_id).copied().ok_or_else(|| AppError::internal("an inserted row has no id"))?;
    }
    Ok(())
}

/// A claim: the rows it took are `sending`, owned by `process` until `lease`, fenced by `token`.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub process: &'a str,
    pub token: i64,
    pub lease: Duration,
}

/// Whether the row `q` may be sent now as far as ordering goes: it has no ordering key (its
/// webhook is not ordered: one test of a null column, the claim's hot path stays as fast), or
/// no other row of its key is being sent and no earlier one is still to be sent. Several
/// processes may claim at once: a row another claim is taking is still `pending` in this
/// claim's view, so the later row waits; and a row is never claimed while another of its key
/// is `sending` (a resent earlier row waits for a later one already in flight), so two rows of
/// one key are never sent at once (except by a forced send, which bypasses order). The one
/// row that turns unfinished again after later rows of its key, a resent one, is due only
/// after claims that began before it have ended ([`RESENT_IN_ORDER_AFTER`]).
/// The probe reads the index of `turn_key`, a row's key while it is unfinished (computed by
/// the database): the rows of one item that are still to be sent, never its sent history.
const IN_TURN: &str = "(q.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM queued_webhooks AS e \
     WHERE e.turn_key = q.order_key AND e.id <> q.id AND (e.id < q.id OR e.status = 'sending')))";

/// Claims up to `limit` due rows, oldest due first, and returns them as they were before. On
/// PostgreSQL rows locked by another process are skipped, so no two processes claim the same
/// attempt. Rows of a webhook whose breaker is open or probing, or whose rate window is spent,
/// are not taken (`health::claimable`); `health::admit` then decides on the rest.
///
/// The due rows are read in the order of the index of `due_at` (the send time of a `pending`
/// or `retrying` row, computed by the database), so a claim reads about the rows it takes,
/// however many are due; rows waiting for an earlier row of their item ([`IN_TURN`]) are
/// passed over. The claim is recorded in `queue_claims`, which is how lease expiry and a dead
/// process's recovery find its rows.
pub async fn claim_due(conn: &impl ConnectionTrait, limit: u64, claim: &Claim<'_>) -> AppResult<Vec<Model>> {
    let backend = conn.get_database_backend();
    let now = Utc::now();
    let lease_until = now + claim.lease;
    let postgres = backend == DbBackend::Postgres;
    let skip_locked = if postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let p = |n| placeholder(backend, n);
    // On PostgreSQL the rows are handed to the update by their physical address (the claim
    // holds their locks, so the addresses are still theirs when the update runs), and the claim
    // is recorded in the same statement.
    let (key, rows_of, end) = if postgres { ("ctid", "ctid = ANY(ARRAY(", "))") } else { ("id", "id IN (", ")") };
    let update = format!(
        "UPDATE queued_webhooks SET status = 'sending', lease_until = {}, claim_token = {}, claimed_by = {} \
         WHERE {rows_of}SELECT {key} FROM queued_webhooks AS q WHERE due_at <= {} AND {} AND {IN_TURN} \
         ORDER BY due_at, id LIMIT {}{skip_locked}{end} RETURNING *",
        p(1),
        p(2),
        p(3),
        p(4),
        super::health::claimable(&p(4)),
        p(5),
    );
    let sql = if postgres {
        format!(
            "WITH claimed AS ({update}), noted AS (INSERT INTO queue_claims (token, claimed_by, lease_until) \
             SELECT $2, $3, $1 WHERE EXISTS (SELECT 1 FROM claimed)) SELECT * FROM claimed"
        )
    } else {
        update
    };
    let values: [DbValue; 5] =
        [lease_until.into(), claim.token.into(), claim.process.into(), now.into(), (limit as i64).into()];
    // PostgreSQL keeps the plan it made for a statement's first runs on a connection. Made on
    // a young table (a new database filling up), the plan of the claim read the whole table to
    // find the rows it had just locked: 1-9 ms a claim instead of 0.3 ms, until the table's next
    // analysis, whatever form the lookup took (by id or by address). So the claim is planned
    // without reading whole tables.
    if postgres {
        conn.execute_unprepared("SET LOCAL enable_seqscan = off").await?;
    }
    let mut rows = Model::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(conn).await?;
    if postgres {
        conn.execute_unprepared("SET LOCAL enable_seqscan TO DEFAULT").await?;
    }
    if !postgres && !rows.is_empty() {
        note_claim(conn, claim, lease_until).await?;
    }
    rows.sort_by_key(|r| (r.send_time, r.id));
    Ok(rows)
}

/// Records a claim that took rows (see `queue_claims`).
async fn note_claim(conn: &impl ConnectionTrait, claim: &Claim<'_>, lease_until: DateTime<Utc>) -> AppResult<()> {
    let row = queue_claims::ActiveModel {
        token: sea_orm::Set(claim.token),
        claimed_by: sea_orm::Set(claim.process.to_owned()),
        lease_until: sea_orm::Set(lease_until),
    };
    queue_claims::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// Claims one row as it is (for a forced send); the caller has checked its status.
pub async fn claim_one(conn: &impl ConnectionTrait, id: i64, claim: &Claim<'_>) -> AppResult<Option<Model>> {
    let lease_until = Utc::now() + claim.lease;
    let mut rows = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(QueueStatus::Sending))
        .col_expr(Q::LeaseUntil, Expr::value(lease_until))
        .col_expr(Q::ClaimToken, Expr::value(claim.token))
        .col_expr(Q::ClaimedBy, Expr::value(claim.process))
        .filter(Q::Id.eq(id))
        .filter(Q::Status.ne(QueueStatus::Sending))
        .exec_with_returning(conn)
        .await?;
    let row = rows.pop();
    if row.is_some() {
        note_claim(conn, claim, lease_until).await?;
    }
    Ok(row)
}

/// Which `sending` rows go back to the queue untouched.
#[derive(Debug, Clone, Copy)]
pub enum Abandoned<'a> {
    /// These rows of this claim (claimed but never started).
    Claimed { ids: &'a [i64], token: i64 },
    /// Every row whose lease ended.
    LeaseEnded,
    /// Every row claimed by a process whose heartbeat is older than this.
    SilentSince(DateTime<Utc>),
    /// Every row (at the start of the only process of a SQLite database).
    All,
    /// Every row whose lease ended and whose claim is not recorded: claimed by a process of a
    /// version before `queue_claims` (at a process's start; each reads the whole table).
    Unrecorded,
}

/// Gives `sending` rows back: PENDING when never attempted, RETRYING otherwise. Returns them
/// as they are now. The claims whose rows are all given back are forgotten.
pub async fn release(conn: &impl ConnectionTrait, which: Abandoned<'_>) -> AppResult<Vec<Model>> {
    let update = queued_webhooks::Entity::update_many()
        .col_expr(
            Q::Status,
            Expr::case(Expr::col(Q::SentTry).gt(0), Expr::value(QueueStatus::Retrying))
                .finally(Expr::value(QueueStatus::Pending))
                .into(),
        )
        .col_expr(Q::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Q::ClaimToken, Expr::value(Option::<i64>::None))
        .col_expr(Q::ClaimedBy, Expr::value(Option::<String>::None))
        .filter(Q::Status.eq(QueueStatus::Sending));
    match which {
        Abandoned::Claimed { ids: [], .. } => Ok(Vec::new()),
        Abandoned::Claimed { ids, token } => {
            let update = update.filter(Q::Id.is_in(ids.iter().copied())).filter(Q::ClaimToken.eq(token));
            let rows = update.exec_with_returning(conn).await?;
            forget_finished_claims(conn, std::iter::once(token)).await?;
            Ok(rows)
        }
        Abandoned::LeaseEnded => give_back_claims(conn, update, queue_claims::Column::LeaseUntil.lt(Utc::now())).await,
        Abandoned::SilentSince(since) => {
            let alive = Query::select()
                .column(workers::Column::Id)
                .from(workers::Entity)
                .and_where(workers::Column::HeartbeatAt.gte(since))
                .to_owned();
            give_back_claims(conn, update, queue_claims::Column::ClaimedBy.not_in_subquery(alive)).await
        }
        Abandoned::All => {
            queue_claims::Entity::delete_many().exec(conn).await?;
            Ok(update.exec_with_returning(conn).await?)
        }
        Abandoned::Unrecorded => {
            let recorded = Query::select().column(queue_claims::Column::Token).from(queue_claims::Entity).to_owned();
            let unrecorded = Condition::any().add(Q::ClaimToken.is_null()).add(Q::ClaimToken.not_in_subquery(recorded));
            Ok(update.filter(Q::LeaseUntil.lt(Utc::now())).filter(unrecorded).exec_with_returning(conn).await?)
        }
    }
}

/// Gives back the rows of the claims `which` selects, found through `queue_claims` (and a
/// claim's rows by the index of their token: no index holds the status). The claims are taken
/// first, so that a claim is forgotten only with its rows given back.
async fn give_back_claims(
    conn: &impl ConnectionTrait,
    update: UpdateMany<queued_webhooks::Entity>,
    which: SimpleExpr,
) -> AppResult<Vec<Model>> {
    let taken = queue_claims::Entity::delete_many().filter(which).exec_with_returning(conn).await?;
    let mut rows = Vec::new();
    for tokens in taken.chunks(ROWS_PER_BULK_WRITE as usize) {
        let tokens = tokens.iter().map(|claim| claim.token);
        rows.extend(update.clone().filter(Q::ClaimToken.is_in(tokens)).exec_with_returning(conn).await?);
    }
    Ok(rows)
}

/// The values one outcome writes; see `Outcome::updated_row`.
pub struct Written<'a> {
    pub row: &'a Model,
    /// The claim token the outcome's attempt held.
    pub token: i64,
    /// 1 when a request was sent (it counts as an attempt), else 0.
    pub counted: i32,
    /// 1 when the attempt is kept with the outcome (`delivery_attempts`), else 0.
    pub kept: i32,
}

/// A row an outcome was written to, and how many attempts it keeps now.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub id: i64,
    pub attempts_kept: i64,
}

const OUTCOME_COLUMNS: usize = 10;
/// The types of an outcome's values, which PostgreSQL cannot infer in `VALUES`.
const OUTCOME_TYPES: [&str; OUTCOME_COLUMNS] =
    ["bigint", "bigint", "varchar", "int", "timestamptz", "timestamptz", "int", "text", "text", "int"];

/// One attempt to keep, as written (see `attempts::Kept`): its headers are JSON text.
pub(super) struct AttemptRow<'a> {
    pub queued_webhook_id: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub method: &'a str,
    pub url: String,
    pub request_headers: String,
    pub status_code: Option<i32>,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// The columns an attempt is written with (all but its id), each with its type for PostgreSQL.
const ATTEMPT_COLUMNS: [(&str, &str); 10] = [
    ("queued_webhook_id", "bigint"),
    ("started_at", "timestamptz"),
    ("duration_ms", "bigint"),
    ("method", "varchar"),
    ("url", "text"),
    ("request_headers", "json"),
    ("status_code", "int"),
    ("response_headers", "json"),
    ("response_body", "text"),
    ("error", "text"),
];

/// Inserts attempts, several per statement (`delivery_attempts`).
pub(super) async fn insert_attempts(conn: &impl ConnectionTrait, attempts: Vec<AttemptRow<'_>>) -> AppResult<()> {
    let backend = conn.get_database_backend();
    let mut attempts = attempts.into_iter().peekable();
    while attempts.peek().is_some() {
        let mut values: Vec<DbValue> = Vec::with_capacity(ROWS_PER_STATEMENT * ATTEMPT_COLUMNS.len());
        let mut rows = 0;
        for a in attempts.by_ref().take(ROWS_PER_STATEMENT) {
            rows += 1;
            values.extend([
                a.queued_webhook_id.into(),
                a.started_at.into(),
                a.duration_ms.into(),
                a.method.into(),
                a.url.into(),
                a.request_headers.into(),
                a.status_code.into(),
                a.response_headers.into(),
                a.response_body.into(),
                a.error.into(),
            ]);
        }
        let sql = insert_sql(backend, "delivery_attempts", &ATTEMPT_COLUMNS, rows);
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// Writes outcomes, several per statement, each only where its row is still `sending` under
/// the same claim token (a row whose lease ended and was claimed again is not overwritten by
/// the old attempt), and counts the attempts kept with them. Returns the rows written.
pub async fn record(conn: &impl ConnectionTrait, outcomes: &[Written<'_>]) -> AppResult<Vec<Recorded>> {
    let backend = conn.get_database_backend();
    let mut written = Vec::with_capacity(outcomes.len());
    for part in outcomes.chunks(ROWS_PER_STATEMENT) {
        let mut values: Vec<DbValue> = Vec::with_capacity(part.len() * OUTCOME_COLUMNS);
        for outcome in part {
            let row = outcome.row;
            values.extend([
                row.id.into(),
                outcome.token.into(),
                row.status.as_str().into(),
                outcome.counted.into(),
                row.sent_time.into(),
                row.send_time.into(),
                row.last_status_code.into(),
                row.response_body.clone().into(),
                row.last_error.clone().into(),
                outcome.kept.into(),
            ]);
        }
        // PostgreSQL names the updated table by its alias in expressions; SQLite by its name.
        let target = if backend == DbBackend::Postgres { "q" } else { "queued_webhooks" };
        let set = format!(
            "status = v.status, sent_try = {target}.sent_try + v.counted, sent_time = v.sent_time, \
             send_time = v.send_time, last_status_code = v.code, response_body = v.body, \
             last_error = v.error, attempts_kept = {target}.attempts_kept + v.kept, lease_until = NULL, \
             claimed_by = NULL"
        );
        let columns = "v(id, token, status, counted, sent_time, send_time, code, body, error, kept)";
        let sql = if backend == DbBackend::Postgres {
            format!(
                "UPDATE queued_webhooks AS q SET {set} FROM (VALUES {}) AS {columns} \
                 WHERE q.id = v.id AND q.status = 'sending' AND q.claim_token = v.token \
                 RETURNING q.id, q.attempts_kept::bigint",
                value_rows(backend, part.len(), &OUTCOME_TYPES)
            )
        } else {
            format!(
                "WITH {columns} AS (VALUES {}) UPDATE queued_webhooks SET {set} FROM v \
                 WHERE queued_webhooks.id = v.id AND queued_webhooks.status = 'sending' \
                 AND queued_webhooks.claim_token = v.token \
                 RETURNING queued_webhooks.id, queued_webhooks.attempts_kept",
                value_rows(backend, part.len(), &OUTCOME_TYPES)
            )
        };
        for returned in conn.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await? {
            let id = returned.try_get_by_index::<i64>(0)?;
            let attempts_kept = returned.try_get_by_index::<i64>(1)?;
            written.push(Recorded { id, attempts_kept });
        }
    }
    forget_finished_claims(conn, outcomes.iter().map(|outcome| outcome.token)).await?;
    Ok(written)
}

/// Forgets the claims among `tokens` that have no row `sending` left (found by the index of
/// the rows' tokens), so that `queue_claims` holds about the claims in flight. A claim left
/// here (its last outcomes were written by two transactions at once) goes when its lease ends.
async fn forget_finished_claims(conn: &impl ConnectionTrait, tokens: impl Iterator<Item = i64>) -> AppResult<()> {
    let mut tokens: Vec<i64> = tokens.collect();
    tokens.sort_unstable();
    tokens.dedup();
    let sending = Query::select()
        .expr(Expr::val(1))
        .from(queued_webhooks::Entity)
        .and_where(
            Expr::col((queued_webhooks::Entity, Q::ClaimToken))
                .equals((queue_claims::Entity, queue_claims::Column::Token)),
        )
        .and_where(Expr::col((queued_webhooks::Entity, Q::Status)).eq(QueueStatus::Sending))
        .to_owned();
    let mut finished = Query::select()
        .column(queue_claims::Column::Token)
        .from(queue_claims::Entity)
        .and_where(queue_claims::Column::Token.is_in(tokens))
        .and_where(Expr::exists(sending).not())
        .to_owned();
    // This holds the rows' locks and then takes the claims', where a release takes a claim's
    // lock and then its rows': on PostgreSQL a claim another process is releasing is passed
    // over (the release forgets it), so that neither waits for the other.
    if is_postgres(conn) {
        finished.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    queue_claims::Entity::delete_many().filter(queue_claims::Column::Token.in_subquery(finished)).exec(conn).await?;
    Ok(())
}

/// How long after being resent an ordered row is due. A resent row is an earlier row of its
/// item becoming unfinished again: a claim whose snapshot predates the resend could take a
/// later row of the item while another process takes the resent one. Claims last milliseconds
/// (they skip the queued rows and the health rows other transactions hold, see
/// `health::admit`, and never wait for a lock); one that began before the resend has ended by
/// the time the resent row is due.
const RESENT_IN_ORDER_AFTER: chrono::Duration = chrono::Duration::seconds(1);

/// FAILED rows (with a body to send; of one webhook, and among `ids`, when given) back to
/// PENDING with a fresh budget, due now ([`RESENT_IN_ORDER_AFTER`] for ordered rows); returns
/// them as they are now.
pub async fn resend_failed(
    conn: &impl ConnectionTrait,
    webhook_id: Option<i64>,
    ids: Option<&[i64]>,
    within: Option<&[i64]>,
    after: i64,
    limit: u64,
) -> AppResult<Vec<Model>> {
    let now = Utc::now();
    let due = Expr::case(Expr::col(Q::OrderKey).is_null(), Expr::value(now))
        .finally(Expr::value(now + RESENT_IN_ORDER_AFTER));
    // The first `limit` of them after `after`, in event order.
    let mut first = queued_webhooks::Entity::find()
        .select_only()
        .column(Q::Id)
        .filter(Q::Status.eq(QueueStatus::Failed))
        .filter(Q::Id.gt(after));
    if let Some(id) = webhook_id {
        first = first.filter(Q::WebhookId.eq(id));
    }
    if let Some(ids) = ids {
        first = first.filter(Q::Id.is_in(ids.iter().copied()));
    }
    if let Some(within) = within {
        first = first.filter(Q::EntityId.is_in(within.iter().copied()));
    }
    let first = first.filter(Q::Body.is_not_null()).order_by_asc(Q::Id).limit(limit).into_query();
    let mut rows = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(QueueStatus::Pending))
        .col_expr(Q::SentTry, Expr::value(0))
        .col_expr(Q::SendTime, due.into())
        .filter(Q::Id.in_subquery(first))
        .filter(Q::Status.eq(QueueStatus::Failed))
        .exec_with_returning(conn)
        .await?;
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// Cancels the `update` rows of this webhook and item that wait for their first attempt
/// (pending, never attempted, not a test) and returns them, oldest first: a newer update
/// replaces them. A row a claim is taking meanwhile is left to its claim. Only rows that carry
/// their write's `changes` are taken: those an item write queued for a coalescing webhook. A
/// replayed row carries none (it sends a stored body again, not the item's state), so it is
/// never replaced.
pub async fn take_waiting_updates(
    conn: &impl ConnectionTrait,
    webhook_id: i64,
    itemtype: &str,
    item_id: &str,
) -> AppResult<Vec<Model>> {
    let mut rows = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(QueueStatus::Cancelled))
        .filter(Q::WebhookId.eq(webhook_id))
        .filter(Q::Itemtype.eq(itemtype))
        .filter(Q::ItemId.eq(item_id))
        .filter(Q::Event.eq("update"))
        .filter(Q::Status.eq(QueueStatus::Pending))
        .filter(Q::SentTry.eq(0))
        .filter(Q::IsTest.eq(false))
        .filter(Q::Body.is_not_null())
        .filter(Q::Changes.is_not_null())
        .exec_with_returning(conn)
        .await?;
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// Puts rows [`take_waiting_updates`] cancelled in this transaction back to PENDING.
pub async fn uncancel(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<()> {
    queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(QueueStatus::Pending))
        .filter(Q::Id.is_in(ids.iter().copied()))
        .filter(Q::Status.eq(QueueStatus::Cancelled))
        .exec(conn)
        .await?;
    Ok(())
}

/// Says on replaced rows which row replaced them.
pub async fn set_last_error(conn: &impl ConnectionTrait, ids: &[i64], error: &str) -> AppResult<()> {
    queued_webhooks::Entity::update_many()
        .col_expr(Q::LastError, Expr::value(error))
        .filter(Q::Id.is_in(ids.iter().copied()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Sets the status of one row if it still is `from`; returns whether it was.
pub async fn set_status(conn: &impl ConnectionTrait, id: i64, from: QueueStatus, to: QueueStatus) -> AppResult<bool> {
    let updated = queued_webhooks::Entity::update_many()
        .col_expr(Q::Status, Expr::value(to))
        .filter(Q::Id.eq(id))
        .filter(Q::Status.eq(from))
        .exec(conn)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Deletes up to `limit` SENT rows whose last attempt is before `sent_before`, and up to `limit`
/// FAILED or CANCELLED rows older than `failed_before` (of the `within` entities when given);
/// never a row still to be sent. Returns how many of each.
pub async fn clean(
    conn: &impl ConnectionTrait,
    sent_before: DateTime<Utc>,
    failed_before: DateTime<Utc>,
    within: Option<&[i64]>,
    limit: u64,
) -> AppResult<(u64, u64)> {
    let some = |condition: sea_orm::Condition| {
        let mut ids = queued_webhooks::Entity::find().select_only().column(Q::Id).filter(condition);
        if let Some(within) = within {
            ids = ids.filter(Q::EntityId.is_in(within.iter().copied()));
        }
        Q::Id.in_subquery(ids.limit(limit).into_query())
    };
    let sent = queued_webhooks::Entity::delete_many()
        .filter(some(sea_orm::Condition::all().add(Q::Status.eq(QueueStatus::Sent)).add(Q::SentTime.lt(sent_before))))
        .exec(conn)
        .await?;
    let old = Expr::expr(Expr::col(Q::SentTime).if_null(Expr::col(Q::CreateTime))).lt(failed_before);
    let failed = queued_webhooks::Entity::delete_many()
        .filter(some(
            sea_orm::Condition::all().add(Q::Status.is_in([QueueStatus::Failed, QueueStatus::Cancelled])).add(old),
        ))
        .exec(conn)
        .await?;
    Ok((sent.rows_affected, failed.rows_affected))
}

/// Whether processes share this database and need heartbeats (PostgreSQL); a SQLite database
/// has one process, which releases every claimed row when it starts.
pub fn shared(conn: &impl ConnectionTrait) -> bool {
    is_postgres(conn)
}

/// Records that `process` is alive; forgets processes silent for a day.
pub async fn heartbeat(conn: &impl ConnectionTrait, process: &str, started_at: DateTime<Utc>) -> AppResult<()> {
    let now = Utc::now();
    let row = workers::ActiveModel {
        id: sea_orm::Set(process.to_owned()),
        started_at: sea_orm::Set(started_at),
        heartbeat_at: sea_orm::Set(now),
    };
    workers::Entity::insert(row)
        .on_conflict(OnConflict::column(workers::Column::Id).update_column(workers::Column::HeartbeatAt).to_owned())
        .exec(conn)
        .await?;
    workers::Entity::delete_many()
        .filter(workers::Column::HeartbeatAt.lt(now - chrono::Duration::days(1)))
        .exec(conn)
        .await?;
    Ok(())
}

/// A process that stops cleanly says so, and its successor need not wait for its heartbeat
/// to go stale.
pub async fn leave(conn: &impl ConnectionTrait, process: &str) -> AppResult<()> {
    workers::Entity::delete_by_id(process.to_owned()).exec(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::db::assert_inserts_every_column;

    #[test]
    fn a_new_row_is_written_with_every_column_but_its_id() {
        assert_inserts_every_column::<super::Q>(&super::NEW_ROW, &["id"]);
    }

    #[test]
    fn an_attempt_is_written_with_every_column_but_its_id() {
        assert_inserts_every_column::<entity::delivery_attempts::Column>(&super::ATTEMPT_COLUMNS, &["id"]);
    }
}
