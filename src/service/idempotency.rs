//! Idempotent intake: a mutation called with an `idempotencyKey` records what it answered in
//! the transaction of its write, so that a repeat of the call (a client retrying after a lost
//! answer) answers the same objects again and raises nothing. A key belongs to one user and
//! one mutation; the same key with other arguments is a CONFLICT. Keys are kept for the
//! idempotency window (`HOOKLINE_IDEMPOTENCY_WINDOW`), then ignored and cleaned.
//!
//! The answer is kept by reference (which items, which queued webhooks): a repeat answers the
//! objects the first call wrote, as they are now.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::idempotency_keys::{self, Column as K};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::OnConflict};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};

/// How the refusal of a call whose key another call recorded first begins.
const TAKEN: &str = "idempotencyKey: the key is being used";

/// How long a call refused for its key waits for the call that took it to commit.
const TAKEN_WAIT: Duration = Duration::from_secs(5);

/// The longest key a client may choose.
pub const MAX_KEY_LEN: usize = 255;

/// One call's claim on a key: who, which mutation, which key, and a digest of its arguments.
#[derive(Debug, Clone)]
pub struct Once {
    user: String,
    operation: String,
    key: String,
    fingerprint: String,
    window: Duration,
}

impl Once {
    /// `fingerprint`: a digest of the call's arguments other than the key. VALIDATION for an
    /// empty or overlong key.
    pub fn new(user: &str, operation: &str, key: String, fingerprint: String, window: Duration) -> AppResult<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "idempotencyKey",
                format!("idempotencyKey: must be 1 to {MAX_KEY_LEN} bytes of printable text, such as a UUID"),
            ));
        }
        Ok(Self { user: user.to_owned(), operation: operation.to_owned(), key, fingerprint, window })
    }

    /// Calls made before this are outside the window.
    fn window_start(&self) -> DateTime<Utc> {
        window_start(Utc::now(), self.window)
    }
}

fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(window).ok().and_then(|w| now.checked_sub_signed(w)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// What a call answered, by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    /// The items written (itemtype, id), in the order the call answered them.
    Items(Vec<(String, String)>),
    /// The ids of the queued webhooks of each event raised, in input order.
    Queued(Vec<Vec<i64>>),
    /// The call answered `true` (a purge).
    Done,
}

impl Answer {
    pub fn items<'a>(items: impl IntoIterator<Item = &'a entity::items::Model>) -> Self {
        Self::Items(items.into_iter().map(|item| (item.itemtype.clone(), item.id.clone())).collect())
    }

    pub fn queued<'a>(events: impl IntoIterator<Item = &'a [entity::queued_webhooks::Model]>) -> Self {
        Self::Queued(events.into_iter().map(|rows| rows.iter().map(|row| row.id).collect()).collect())
    }
}

/// What an earlier call with this key answered, when there was one within the window.
/// CONFLICT when that call had other arguments.
pub async fn answered(conn: &impl ConnectionTrait, once: &Once) -> AppResult<Option<Answer>> {
    let Some(earlier) = idempotency_keys::Entity::find()
        .filter(K::User.eq(&once.user))
        .filter(K::Operation.eq(&once.operation))
        .filter(K::Key.eq(&once.key))
        .filter(K::CreatedAt.gte(once.window_start()))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if earlier.fingerprint != once.fingerprint {
        return Err(AppError::conflict(format!(
            "idempotencyKey: `{}` was used at {} for a {} call with other arguments; use a new key for a new call",
            once.key,
            earlier.created_at.to_rfc3339(),
            once.operation
        )));
    }
    let answer = serde_json::from_value(earlier.answer)
        .map_err(|e| AppError::internal(format!("a stored idempotent answer cannot be read: {e}")))?;
    Ok(Some(answer))
}

/// Records the answer of the call, in the transaction of its write. CONFLICT when another
/// call recorded the key meanwhile (the write is then refused with it: its caller answers
/// the other call's answer).
pub async fn record(conn: &impl ConnectionTrait, once: &Once, answer: &Answer) -> AppResult<()> {
    // A key used before the window is free again.
    idempotency_keys::Entity::delete_many()
        .filter(K::User.eq(&once.user))
        .filter(K::Operation.eq(&once.operation))
        .filter(K::Key.eq(&once.key))
        .filter(K::CreatedAt.lt(once.window_start()))
        .exec(conn)
        .await?;
    let row = idempotency_keys::ActiveModel {
        user: Set(once.user.clone()),
        operation: Set(once.operation.clone()),
        key: Set(once.key.clone()),
        fingerprint: Set(once.fingerprint.clone()),
        answer: Set(serde_json::to_value(answer).map_err(|e| AppError::internal(e.to_string()))?),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    let inserted = idempotency_keys::Entity::insert(row)
        .on_conflict(OnConflict::columns([K::User, K::Operation, K::Key]).do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    if inserted == 0 {
        return Err(AppError::conflict(format!("{TAKEN} by another {} call at this moment", once.operation)));
    }
    Ok(())
}

/// Deletes the keys older than `window`; returns how many.
pub async fn clean(conn: &impl ConnectionTrait, window: Duration) -> AppResult<u64> {
    let before = window_start(Utc::now(), window);
    Ok(idempotency_keys::Entity::delete_many().filter(K::CreatedAt.lt(before)).exec(conn).await?.rows_affected)
}

/// How a call with an idempotency key went.
#[derive(Debug)]
pub enum Ran<T> {
    /// It ran now and answered this.
    Now(T),
    /// An earlier call with the key answered this; nothing ran.
    Before(Answer),
}

/// Runs a call (whose write records its answer under `once` when given), unless an earlier
/// call with the same key answered already. When the call is refused because a concurrent
/// call with the key won, that call's answer is the answer.
pub async fn run_once<T>(
    conn: &impl ConnectionTrait,
    once: Option<&Once>,
    call: impl Future<Output = AppResult<T>>,
) -> AppResult<Ran<T>> {
    let Some(once) = once else { return Ok(Ran::Now(call.await?)) };
    if let Some(answer) = answered(conn, once).await? {
        return Ok(Ran::Before(answer));
    }
    let err = match call.await {
        Ok(answer) => return Ok(Ran::Now(answer)),
        Err(err) => err,
    };
    // A refused call is answered at once, while the call that took its key may not have
    // committed yet: wait for that one's answer (it commits with its batch, in milliseconds).
    let taken = matches!(&err, AppError::Conflict(message) if message.starts_with(TAKEN));
    let deadline = tokio::time::Instant::now() + if taken { TAKEN_WAIT } else { Duration::ZERO };
    loop {
        if let Some(answer) = answered(conn, once).await? {
            return Ok(Ran::Before(answer));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_printable_text() {
        let once = |key: &str| Once::new("u", "createItem", key.to_owned(), "f".into(), Duration::from_secs(60));
        assert!(once("6f1c2c1e-2b7e-4d0b-9a57-3f1f0f4f3a10").is_ok());
        assert_eq!(once("").expect_err("empty").code(), "VALIDATION");
        assert_eq!(once(&"k".repeat(MAX_KEY_LEN + 1)).expect_err("too long").code(), "VALIDATION");
        assert_eq!(once("a\nb").expect_err("a control").code(), "VALIDATION");
    }

    #[test]
    fn answers_round_trip_through_json() {
        for answer in [
            Answer::Items(vec![("Ticket".into(), "12".into())]),
            Answer::Queued(vec![vec![1, 2], vec![]]),
            Answer::Done,
        ] {
            let stored = serde_json::to_value(&answer).expect("serialized");
            assert_eq!(serde_json::from_value::<Answer>(stored).expect("read back"), answer);
        }
    }
}
