//! The `idempotencyKey` argument of the item mutations, `triggerEvent` and the batch
//! mutations: the key's claim for the call (its user, its mutation, a digest of its other
//! arguments), and the objects an earlier call's answer names.

use std::collections::HashMap;

use async_graphql::Context;
use entity::{items, queued_webhooks};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::context::Session;
use crate::{
    domain::signing::hex,
    error::{AppError, AppResult},
    service::{
        self,
        idempotency::{Answer, Once},
    },
};

/// The argument that carries the key (left out of the digest).
const KEY_ARGUMENT: &str = "idempotencyKey";

/// The key's claim for this call, when the caller gave a key.
pub fn once(ctx: &Context<'_>, s: &Session<'_>, key: Option<String>) -> AppResult<Option<Once>> {
    let Some(key) = key else { return Ok(None) };
    let field = ctx.field();
    let arguments = field.arguments().map_err(|e| AppError::validation(e.message))?;
    let mut canonical = String::new();
    for (name, value) in arguments.iter().filter(|(name, _)| name.as_str() != KEY_ARGUMENT) {
        canonical.push_str(name.as_str());
        canonical.push('=');
        write_canonical(&value.clone().into_json().map_err(|e| AppError::validation(e.to_string()))?, &mut canonical);
        canonical.push(';');
    }
    let fingerprint = hex(&Sha256::digest(canonical.as_bytes()));
    let window = s.state.config().idempotency_window;
    Once::new(&s.caller.user, field.name(), key, fingerprint, window).map(Some)
}

/// JSON with object keys sorted, so that the same input written in another key order has
/// the same digest.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (n, key) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(values) => {
            out.push('[');
            for (n, value) in values.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(value, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The items an earlier call answered, as they are now. NOT_FOUND when one was purged since.
pub async fn items_of(s: &Session<'_>, answer: Answer) -> AppResult<Vec<items::Model>> {
    let Answer::Items(refs) = answer else { return Err(unexpected()) };
    let mut found = Vec::with_capacity(refs.len());
    for (itemtype, id) in refs {
        let item = service::items::get(&s.state.db, &itemtype, &id).await?.ok_or_else(|| {
            AppError::not_found(format!(
                "{itemtype} `{id}`, which the first call with this idempotencyKey answered, was purged since"
            ))
        })?;
        found.push(item);
    }
    Ok(found)
}

/// The queued webhooks of each event an earlier call raised, as they are now (rows cleaned
/// since are left out).
pub async fn queued_of(s: &Session<'_>, answer: Answer) -> AppResult<Vec<Vec<queued_webhooks::Model>>> {
    let Answer::Queued(events) = answer else { return Err(unexpected()) };
    let ids: Vec<i64> = events.iter().flatten().copied().collect();
    let mut rows: HashMap<i64, queued_webhooks::Model> = HashMap::with_capacity(ids.len());
    for part in ids.chunks(500) {
        let found = queued_webhooks::Entity::find()
            .filter(queued_webhooks::Column::Id.is_in(part.iter().copied()))
            .all(&s.state.db)
            .await?;
        rows.extend(found.into_iter().map(|row| (row.id, row)));
    }
    Ok(events.into_iter().map(|event| event.into_iter().filter_map(|id| rows.remove(&id)).collect()).collect())
}

/// An answer of another kind than the mutation gives: the key's record is not this call's.
fn unexpected() -> AppError {
    AppError::internal("the answer recorded for this idempotency key is not of this mutation")
}
