//! The fast path of `createItem` and `createItems`. Everything that can be decided before the
//! write is decided before it, outside the writer: the input is checked, the item's number
//! taken, its document built and every matching webhook's request rendered. The writer then
//! only inserts, many items at a time: one statement per table for all the creates of a batch.
//!
//! A plan is made against versions of the webhooks and of the entity tree; the writer checks
//! them (once per batch) and plans again inside the transaction when either changed. When the
//! database refuses the grouped rows (an id taken meanwhile), each create runs again on its
//! own, the way every other mutation runs, so that only the refused one fails: in a savepoint
//! of the same transaction when the group held several, in a write of its own when it held
//! only that one (written without a savepoint: nothing of it is kept).

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use entity::{items, queued_webhooks};
use futures_util::future::BoxFuture;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::{
    cache::CachedWebhook,
    events::{self, Intake},
    history::{self, NewEntry},
    items::{self as store, Changed, ItemId, NewItem},
    tree::EntityIndex,
};
use crate::{
    AppState, db,
    domain::{
        item::{self as rules, Actor},
        webhook::WebhookEvent,
    },
    error::{AppError, AppResult},
    queue::{self, Staged},
    telemetry,
    writer::{Completion, Grouped},
};

/// A create decided before the write.
pub struct Prepared {
    /// Whether the caller gave the id.
    given: bool,
    /// The item as it will be stored (`seq` comes from the insert).
    row: items::Model,
    /// The rows its `new` event queues, and the versions they were rendered from.
    plan: Option<Plan>,
    /// The span of its `new` event, made in the caller's operation: the writer raises the
    /// event in it.
    span: tracing::Span,
}

struct Plan {
    queued: Vec<queued_webhooks::Model>,
    webhooks: Arc<Vec<CachedWebhook>>,
    entities: Arc<EntityIndex>,
}

impl Prepared {
    /// The input again, its id settled: what runs on the slow path.
    fn input(&self) -> NewItem {
        let id = if self.given { ItemId::Given(self.row.id.clone()) } else { ItemId::Assigned(self.row.id.clone()) };
        NewItem {
            itemtype: self.row.itemtype.clone(),
            id,
            entity_id: self.row.entity_id,
            name: self.row.name.clone(),
            fields: Some(self.row.fields.clone()),
            parent_itemtype: self.row.parent_itemtype.clone(),
            parent_id: self.row.parent_id.clone(),
            actor: Actor::stored(&self.row.actor_user, &self.row.actor_profile),
        }
    }

    pub fn itemtype(&self) -> &str {
        &self.row.itemtype
    }

    pub fn id(&self) -> &str {
        &self.row.id
    }

    /// Another handle on its event's span. A caller keeps one until the writer has answered,
    /// so that the span closes (and is recorded) in the caller, not in the writer: closing a
    /// span was a tenth of the writer's work for `createItems`.
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }
}

/// What preparing several creates shares: the entity tree and each itemtype's webhooks, read
/// once. Both come from the caches as last loaded, without a version check: the writer checks
/// them (once per batch) and plans again when they changed. An entity missing from a stale
/// tree is looked up again before the input is refused.
pub struct Preparation<'a> {
    state: &'a AppState,
    intake: Intake,
    entities: Arc<EntityIndex>,
    webhooks: HashMap<String, Arc<Vec<CachedWebhook>>>,
}

impl<'a> Preparation<'a> {
    pub async fn new(state: &'a AppState) -> AppResult<Self> {
        let entities = match state.cache.entities_hint() {
            Some(entities) => entities,
            None => state.cache.entities(&state.db).await?,
        };
        Ok(Self { state, intake: Intake::of(state), entities, webhooks: HashMap::new() })
    }

    /// Checks the input, settles its id and renders its event's requests.
    pub async fn prepare(&mut self, input: NewItem) -> AppResult<Prepared> {
        let (state, db) = (self.state, &self.state.db);
        let NewItem { itemtype, id, entity_id, name, fields, parent_itemtype, parent_id, actor } = input;
        let itemtype = self.intake.cache.itemtype(db, &itemtype, "itemtype").await?;
        let fields = rules::checked_fields(fields)?;
        let name = rules::checked_text(name, "name")?;
        if !self.entities.contains(entity_id) {
            self.entities = self.intake.cache.entities(db).await?;
            if !self.entities.contains(entity_id) {
                return Err(AppError::validation(format!("entityId: no entity with id {entity_id}")));
            }
        }
        let (parent_itemtype, parent_id) = store::checked_parent(db, &itemtype, parent_itemtype, parent_id).await?;
        let given = matches!(id, ItemId::Given(_));
        let id = match id {
            ItemId::Given(id) => {
                let id = rules::checked_id(&id)?;
                if store::get(db, &itemtype.name, &id).await?.is_some() {
                    return Err(AppError::conflict(format!("a {} with id `{id}` already exists", itemtype.name)));
                }
                id
            }
            ItemId::Assigned(id) => id,
            ItemId::Next => state.numbers.next(&state.writer, &itemtype.name).await?.to_string(),
        };
        let now = Utc::now();
        let row = items::Model {
            seq: 0,
            itemtype: itemtype.name.clone(),
            id,
            entity_id,
            name,
            fields: Value::Object(fields),
            parent_itemtype,
            parent_id,
            is_deleted: false,
            date_creation: now,
            date_mod: now,
            actor_user: actor.as_ref().map(|a| a.user.clone()),
            actor_profile: actor.map(|a| a.profile),
        };
        let webhooks = match self.webhooks.get(&row.itemtype) {
            Some(list) => list.clone(),
            None => {
                let new = WebhookEvent::New.as_str();
                let list = match self.intake.cache.webhooks_hint(&row.itemtype, new) {
                    Some(list) => list,
                    None => {
                        self.intake
                            .cache
                            .webhooks(db, &self.intake.secrets, &row.itemtype, new, self.intake.limits, None)
                            .await?
                    }
                };
                self.webhooks.insert(row.itemtype.clone(), list.clone());
                list
            }
        };
        let span = telemetry::event_span(&row.itemtype, WebhookEvent::New.as_str(), &row.id);
        let queued = events::plan(db, &self.intake, WebhookEvent::New, &row, &[], &webhooks, &self.entities)
            .instrument(span.clone())
            .await?;
        let plan = Plan { queued, webhooks, entities: self.entities.clone() };
        Ok(Prepared { given, row, plan: Some(plan), span })
    }

    pub fn intake(&self) -> &Intake {
        &self.intake
    }
}

/// Stores prepared creates, all or nothing; the rows of every create whose plan is still
/// current are inserted together. On success `prepared` is emptied into the result; on an
/// error its items are left for the slow path (their plans are spent).
pub async fn insert_all(
    txn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    prepared: &mut Vec<Prepared>,
) -> AppResult<Vec<Changed<items::Model>>> {
    let new = WebhookEvent::New.as_str();
    if let Some(first) = prepared.first() {
        intake.cache.read_versions(txn, &first.row.itemtype, new, staged.batch()).await?;
    }
    let mut plans = Vec::with_capacity(prepared.len());
    for p in prepared.iter_mut() {
        let plan = match p.plan.take() {
            Some(plan) => {
                let webhooks = intake
                    .cache
                    .webhooks(txn, &intake.secrets, &p.row.itemtype, new, intake.limits, staged.batch())
                    .await?;
                let entities = intake.cache.entities_in(txn, staged.batch()).await?;
                (Arc::ptr_eq(&webhooks, &plan.webhooks) && Arc::ptr_eq(&entities, &plan.entities)).then_some(plan)
            }
            None => None,
        };
        plans.push(plan);
    }
    let backend = txn.get_database_backend();
    if backend == sea_orm::DbBackend::Postgres && prepared.len() <= chunk(txn).min(history::per_statement(backend)) {
        // One statement, one round trip: the items and their history entries.
        let ahead = history::insert_statement(backend, created_entries(prepared).into_iter(), Utc::now(), 0);
        insert_rows(txn, prepared, Some(ahead)).await?;
    } else {
        insert_rows(txn, prepared, None).await?;
        history::add_many(txn, created_entries(prepared)).await?;
    }
    for p in prepared.iter().filter(|p| p.given) {
        store::reserve_numeric_id(txn, &p.row.itemtype, &p.row.id).await?;
    }
    let mut counts = Vec::with_capacity(prepared.len());
    let mut queued = Vec::new();
    for (p, plan) in prepared.iter().zip(plans) {
        intake.count_event(staged, &p.row, WebhookEvent::New);
        let rows = match plan {
            Some(plan) => plan.queued,
            None => {
                let item = &p.row;
                let webhooks = intake
                    .cache
                    .webhooks(txn, &intake.secrets, &item.itemtype, new, intake.limits, staged.batch())
                    .await?;
                let entities = intake.cache.entities_in(txn, staged.batch()).await?;
                events::plan(txn, intake, WebhookEvent::New, item, &[], &webhooks, &entities)
                    .instrument(p.span.clone())
                    .await?
            }
        };
        counts.push(rows.len());
        queued.extend(rows);
    }
    let mut queued = queue::enqueue(txn, staged, queued).await?.into_iter();
    Ok(prepared
        .drain(..)
        .zip(counts)
        .map(|(p, count)| Changed { item: p.row, queued: queued.by_ref().take(count).collect() })
        .collect())
}

/// The history entries of new items.
fn created_entries(prepared: &[Prepared]) -> Vec<(history::Subject<'_>, NewEntry)> {
    let entries = prepared.iter().map(|p| {
        let actor = Actor::stored(&p.row.actor_user, &p.row.actor_profile);
        (store::subject(&p.row), NewEntry::new("create", "Item created").by(actor.as_ref()))
    });
    entries.collect()
}

/// Rows per INSERT of items, within SQLite's limit of bound variables. (PostgreSQL took 10 while
/// sqlx 0.9.0 sent statements without TCP_NODELAY; see `queue::store::ROWS_PER_STATEMENT`.)
fn chunk(conn: &impl ConnectionTrait) -> usize {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres { 100 } else { 200 }
}

/// The columns a new item is written with, in the order of its values in [`insert_rows`]: all
/// but `seq` (numbered by the database), each with its type for PostgreSQL
/// ([`db::insert_sql`]).
const ITEM_COLUMNS: [(&str, &str); 12] = [
    ("itemtype", "varchar"),
    ("id", "varchar"),
    ("entity_id", "bigint"),
    ("name", "text"),
    ("fields", "json"),
    ("parent_itemtype", "varchar"),
    ("parent_id", "varchar"),
    ("is_deleted", "boolean"),
    ("date_creation", "timestamptz"),
    ("date_mod", "timestamptz"),
    ("actor_user", "varchar"),
    ("actor_profile", "varchar"),
];

/// Inserts the items, several per statement, and returns them with their `seq` (matched by
/// itemtype and id: RETURNING promises no order). The statement is written here rather than
/// built from active models: it runs in the writer, and a batch of creates writes hundreds.
/// `ahead`: a statement run with the first (PostgreSQL: `WITH ahead AS (…) INSERT …`), and its
/// values, bound first.
async fn insert_rows(
    conn: &impl ConnectionTrait,
    prepared: &mut [Prepared],
    mut ahead: Option<(String, Vec<sea_orm::Value>)>,
) -> AppResult<()> {
    let backend = conn.get_database_backend();
    for part in prepared.chunks_mut(chunk(conn)) {
        let (with, mut values) = match ahead.take() {
            Some((sql, values)) => (format!("WITH ahead AS ({sql}) "), values),
            None => (String::new(), Vec::new()),
        };
        let before = values.len();
        values.reserve(part.len() * ITEM_COLUMNS.len());
        for p in part.iter() {
            let row = &p.row;
            values.extend([
                row.itemtype.clone().into(),
                row.id.clone().into(),
                row.entity_id.into(),
                row.name.clone().into(),
                row.fields.to_string().into(),
                row.parent_itemtype.clone().into(),
                row.parent_id.clone().into(),
                row.is_deleted.into(),
                row.date_creation.into(),
                row.date_mod.into(),
                row.actor_user.clone().into(),
                row.actor_profile.clone().into(),
            ]);
        }
        let insert = db::insert_sql_after(backend, "items", &ITEM_COLUMNS, part.len(), before);
        let sql = format!("{with}{insert} RETURNING seq, itemtype, id");
        let mut seqs = HashMap::with_capacity(part.len());
        for returned in conn.query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await? {
            let key: (String, String) = (returned.try_get_by_index(1)?, returned.try_get_by_index(2)?);
            seqs.insert(key, returned.try_get_by_index::<i64>(0)?);
        }
        for p in part.iter_mut() {
            p.row.seq = seqs
                .remove(&(p.row.itemtype.clone(), p.row.id.clone()))
                .ok_or_else(|| AppError::internal("an inserted item has no seq"))?;
        }
    }
    Ok(())
}

/// Stores prepared creates, all or nothing, with the index of a refused one: on the grouped
/// path first, then one by one to name the culprit when the database refused the group.
pub async fn insert_all_indexed(
    txn: &DatabaseTransaction,
    staged: &mut Staged,
    intake: &Intake,
    mut prepared: Vec<Prepared>,
) -> AppResult<Vec<Changed<items::Model>>> {
    match grouped(txn, staged, intake, &mut prepared).await {
        Ok(changed) => Ok(changed),
        // The database ended the transaction (see `db::still_open`): nothing more is written.
        Err(err) if !db::still_open(txn).await => Err(err),
        Err(err) => {
            tracing::debug!(?err, "grouped creates refused; trying them one by one");
            let mut changed = Vec::with_capacity(prepared.len());
            for (index, p) in prepared.iter().enumerate() {
                let create = store::create_in(txn, staged, intake, p.input()).instrument(p.span.clone());
                changed.push(create.await.map_err(|e| e.at_index(index))?);
            }
            Ok(changed)
        }
    }
}

/// One `createItem` waiting for the writer, run with the others of its batch.
pub struct CreateJob {
    pub prepared: Prepared,
    pub intake: Intake,
    pub reply: oneshot::Sender<CreateAnswer>,
}

/// What the writer answers a [`CreateJob`].
pub enum CreateAnswer {
    /// Stored (once its batch committed), or refused.
    Done(AppResult<Changed<items::Model>>),
    /// A create alone in its group that the grouped insert could not store: nothing of it was
    /// kept. It is to run again on its own, the way every other mutation runs, which says why
    /// it is refused (or stores it).
    Again(NewItem),
}

impl Grouped for CreateJob {
    fn apply<'a>(
        txn: &'a DatabaseTransaction,
        staged: &'a mut Staged,
        jobs: Vec<Self>,
    ) -> BoxFuture<'a, Result<Completion, ()>> {
        Box::pin(async move {
            let Some(intake) = jobs.first().map(|job| job.intake.clone()) else {
                return Ok(Box::new(|_| {}) as Completion);
            };
            let (mut prepared, replies): (Vec<_>, Vec<_>) =
                jobs.into_iter().map(|job| (job.prepared, job.reply)).unzip();
            if prepared.len() == 1 {
                return lone(txn, staged, &intake, prepared, replies).await;
            }
            let mut answers: Vec<(oneshot::Sender<CreateAnswer>, Changed<items::Model>)> =
                Vec::with_capacity(replies.len());
            match grouped(txn, staged, &intake, &mut prepared).await {
                Ok(changed) => answers.extend(replies.into_iter().zip(changed)),
                // The database ended the transaction (a full disk, say): nothing of the batch is
                // stored, nothing more may be written in it, and every create hears why.
                Err(err) if !db::still_open(txn).await => {
                    // Its reason when the database gave one (it is full), for every create.
                    let unavailable = match err {
                        AppError::Unavailable(message) => Some(message),
                        _ => None,
                    };
                    for reply in replies {
                        let refused = unavailable.clone().map_or_else(AppError::not_run, AppError::Unavailable);
                        let _ = reply.send(CreateAnswer::Done(Err(refused)));
                    }
                    return Err(());
                }
                // One by one: only the refused create fails.
                Err(_) => {
                    let mut replies = replies.into_iter();
                    for (p, reply) in prepared.iter().zip(replies.by_ref()) {
                        match alone(txn, staged, &intake, p.input()).instrument(p.span.clone()).await {
                            Ok(changed) => answers.push((reply, changed)),
                            Err(err) => {
                                let ended = !db::still_open(txn).await;
                                let _ = reply.send(CreateAnswer::Done(Err(err)));
                                // The creates kept so far went with the transaction; the
                                // others (dropped unanswered) were not run.
                                if ended {
                                    return Err(());
                                }
                            }
                        }
                    }
                }
            }
            Ok(answer_after_commit(answers))
        })
    }
}

/// Answers each create once its batch has committed (or failed to).
fn answer_after_commit(answers: Vec<(oneshot::Sender<CreateAnswer>, Changed<items::Model>)>) -> Completion {
    Box::new(move |committed: Result<(), String>| {
        for (reply, changed) in answers {
            let stored = committed.clone().map(|()| changed).map_err(AppError::not_confirmed);
            let _ = reply.send(CreateAnswer::Done(stored));
        }
    })
}

/// A create alone in its group, written without a savepoint of its own: the writer undoes
/// the whole run when it fails (with its batch's savepoint, or its transaction when the run is
/// the batch), so a refused grouped insert leaves nothing, and the create is answered to run
/// again on its own. Saves the savepoint and its release: two round trips of every lone
/// `createItem` on PostgreSQL.
async fn lone(
    txn: &DatabaseTransaction,
    staged: &mut Staged,
    intake: &Intake,
    mut prepared: Vec<Prepared>,
    replies: Vec<oneshot::Sender<CreateAnswer>>,
) -> Result<Completion, ()> {
    match insert_all(txn, staged, intake, &mut prepared).await {
        Ok(changed) => Ok(answer_after_commit(replies.into_iter().zip(changed).collect())),
        // Whatever the error (a refusal, or a database that failed or ended the transaction):
        // the create runs once more on its own, which answers why it is refused, or stores it.
        Err(_) => {
            for (reply, p) in replies.into_iter().zip(&prepared) {
                let _ = reply.send(CreateAnswer::Again(p.input()));
            }
            Err(())
        }
    }
}

/// The creates together, in a savepoint.
async fn grouped(
    txn: &DatabaseTransaction,
    staged: &mut Staged,
    intake: &Intake,
    prepared: &mut Vec<Prepared>,
) -> AppResult<Vec<Changed<items::Model>>> {
    in_savepoint(txn, staged, async |savepoint, own| insert_all(savepoint, own, intake, prepared).await).await
}

/// One create on its own, in a savepoint.
async fn alone(
    txn: &DatabaseTransaction,
    staged: &mut Staged,
    intake: &Intake,
    input: NewItem,
) -> AppResult<Changed<items::Model>> {
    in_savepoint(txn, staged, async |savepoint, own| store::create_in(savepoint, own, intake, input).await).await
}

/// Runs `write` in a savepoint of `txn`: kept (and its staged changes with it) when it
/// succeeds, undone when it fails, the transaction usable either way.
async fn in_savepoint<T>(
    txn: &DatabaseTransaction,
    staged: &mut Staged,
    write: impl AsyncFnOnce(&DatabaseTransaction, &mut Staged) -> AppResult<T>,
) -> AppResult<T> {
    let savepoint = txn.begin().await?;
    let mut own = staged.nested();
    match write(&savepoint, &mut own).await {
        Ok(value) => {
            savepoint.commit().await?;
            staged.absorb(own);
            Ok(value)
        }
        Err(err) => {
            savepoint.rollback().await?;
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_new_item_is_written_with_every_column_but_its_seq() {
        crate::db::assert_inserts_every_column::<entity::items::Column>(&super::ITEM_COLUMNS, &["seq"]);
    }
}
