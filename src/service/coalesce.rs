//! Coalescing (`coalesceSeconds`): a coalescing webhook's `update` rows wait before their first
//! send, and a newer update of the same item replaces the rows that still wait. The newer row
//! carries the item as its write left it (the final state) and the changes of every write it
//! replaces, merged (see [`rules::merged_changes`]); it is rendered again from them when they
//! differ from its own. The replaced rows are CANCELLED with `lastError` "coalesced into <id>".
//!
//! It runs in the item write's transaction, after the write: two updates of one item in the
//! same batch run one after the other, and the second sees (and replaces) the first's row. A
//! row a worker is claiming at that moment is left to it (it is sent, the newer row carries
//! only its own changes). A newer row waits until the oldest row it replaces was due, so that
//! a stream of updates cannot hold an item's deliveries back for more than `coalesceSeconds`.

use std::sync::Arc;

use entity::{items, queued_webhooks};
use sea_orm::ConnectionTrait;

use super::{
    cache::CachedWebhook,
    events::{self, Intake},
    tree::EntityIndex,
};
use crate::{
    domain::{
        item::{self as rules, Change},
        render,
        webhook::WebhookEvent,
    },
    error::{AppError, AppResult},
    queue::{self, Staged},
};

/// Queues an event's rows (rendered from `candidates`); for `update`, each row of a coalescing
/// webhook first replaces the rows of its webhook and item that still wait.
#[allow(clippy::too_many_arguments)]
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    event: WebhookEvent,
    item: &items::Model,
    changes: &[Change],
    mut rows: Vec<queued_webhooks::Model>,
    candidates: &Arc<Vec<CachedWebhook>>,
    entities: &EntityIndex,
) -> AppResult<Vec<queued_webhooks::Model>> {
    let mut replaced = Vec::new();
    if event == WebhookEvent::Update {
        for (index, row) in rows.iter_mut().enumerate() {
            // Only a coalescing webhook's rendered update rows carry their changes.
            if row.changes.is_none() || row.body.is_none() {
                continue;
            }
            let waiting = queue::take_waiting_updates(conn, row.webhook_id, &row.itemtype, &row.item_id).await?;
            if waiting.is_empty() {
                continue;
            }
            if merge_into(conn, intake, item, changes, row, &waiting, candidates, entities).await? {
                replaced.push((index, waiting));
            } else {
                queue::keep_waiting(conn, &waiting).await?;
            }
        }
    }
    let rows = queue::enqueue(conn, staged, rows).await?;
    for (index, waiting) in replaced {
        queue::coalesced_into(conn, staged, waiting, rows[index].id).await?;
    }
    Ok(rows)
}

/// Makes `row` carry the changes of the rows it replaces and its own, rendered from them, due
/// when the oldest of them was. Returns false, leaving `row` as it was, when the merged
/// changes cannot be rendered: the row then replaces nothing (the rows that wait are sent, and
/// so is this one, with its own rendering), so that a failed rendering never loses the final
/// state.
#[allow(clippy::too_many_arguments)]
async fn merge_into(
    conn: &impl ConnectionTrait,
    intake: &Intake,
    item: &items::Model,
    changes: &[Change],
    row: &mut queued_webhooks::Model,
    waiting: &[queued_webhooks::Model],
    candidates: &Arc<Vec<CachedWebhook>>,
    entities: &EntityIndex,
) -> AppResult<bool> {
    let earlier = waiting.iter().fold(Vec::new(), |merged, w| {
        rules::merged_changes(&merged, &w.changes.as_ref().map(rules::changes_from_value).unwrap_or_default())
    });
    let merged = rules::merged_changes(&earlier, changes);
    let due = waiting.iter().map(|w| w.send_time).chain([row.send_time]).min().unwrap_or(row.send_time);
    if merged.as_slice() != changes {
        let index = candidates
            .iter()
            .position(|c| c.webhook.id == row.webhook_id)
            .ok_or_else(|| AppError::internal("a coalesced row's webhook is not among the event's webhooks"))?;
        let webhook = &candidates[index].webhook;
        let data = events::api_data(conn, entities, WebhookEvent::Update, item, &merged).await?;
        let rendered = events::render_all(candidates, vec![index], render::variables(&data), data.default_body())
            .await?
            .pop()
            .ok_or_else(|| AppError::internal("a coalesced row was not rendered"))?;
        if let Err(reason) = &rendered {
            tracing::debug!(webhook = webhook.id, %reason, "merged changes cannot be rendered; nothing is coalesced");
            return Ok(false);
        }
        let fresh = events::queued_row(
            webhook.id,
            &webhook.settings,
            item,
            WebhookEvent::Update,
            rendered,
            &intake.secrets,
            row.create_time,
            row.traceparent.clone(),
        );
        *row = fresh;
    }
    row.changes = Some(rules::changes_value(&merged));
    row.send_time = due;
    Ok(true)
}
