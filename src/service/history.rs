//! History entries of items and webhooks.

use chrono::Utc;
use entity::history_entries::{self, SUBJECT_ITEM, SUBJECT_WEBHOOK};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::paging::{Page, PageRequest};
use crate::{
    domain::item::{Actor, Change},
    error::AppResult,
};

/// Whose history.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Item { itemtype: &'a str, id: &'a str },
    Webhook(i64),
}

impl Subject<'_> {
    fn columns(&self) -> (&'static str, String, String) {
        match self {
            Subject::Item { itemtype, id } => (SUBJECT_ITEM, (*itemtype).to_owned(), (*id).to_owned()),
            Subject::Webhook(id) => (SUBJECT_WEBHOOK, String::new(), id.to_string()),
        }
    }
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub action: &'static str,
    pub message: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub queued_webhook_id: Option<i64>,
    /// Who made the change; None for the server's own entries.
    pub actor: Option<Actor>,
}

impl NewEntry {
    pub fn new(action: &'static str, message: impl Into<String>) -> Self {
        Self { action, message: message.into(), old_value: None, new_value: None, queued_webhook_id: None, actor: None }
    }

    /// The entry, made by `actor`.
    pub fn by(self, actor: Option<&Actor>) -> Self {
        Self { actor: actor.cloned(), ..self }
    }

    pub fn change(action: &'static str, message: impl Into<String>, old: Option<String>, new: Option<String>) -> Self {
        Self { old_value: old, new_value: new, ..Self::new(action, message) }
    }
}

pub async fn add(conn: &impl ConnectionTrait, subject: Subject<'_>, entries: Vec<NewEntry>) -> AppResult<()> {
    add_many(conn, entries.into_iter().map(|entry| (subject, entry)).collect()).await
}

/// The columns a new entry is written with, in the order of its values in [`add_many`]: all but
/// its id (numbered by the database), each with its type for PostgreSQL
/// ([`crate::db::insert_sql`]).
const ENTRY_COLUMNS: [(&str, &str); 11] = [
    ("subject", "varchar"),
    ("itemtype", "varchar"),
    ("subject_id", "varchar"),
    ("date", "timestamptz"),
    ("action", "varchar"),
    ("message", "text"),
    ("old_value", "text"),
    ("new_value", "text"),
    ("queued_webhook_id", "bigint"),
    ("actor_user", "varchar"),
    ("actor_profile", "varchar"),
];

/// Entries of several subjects in one statement per few hundred. The statement is written here
/// rather than built from active models: it runs in the writer, and a batch of creates writes
/// hundreds.
pub async fn add_many(conn: &impl ConnectionTrait, entries: Vec<(Subject<'_>, NewEntry)>) -> AppResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let now = Utc::now();
    // Without `RETURNING`: nobody needs the new ids.
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let part = entries.by_ref().take(per_statement(backend));
        let (sql, values) = insert_statement(backend, part, now, 0);
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// Entries one statement writes at most. (PostgreSQL took 10 while sqlx 0.9.0 sent statements
/// without TCP_NODELAY.)
pub fn per_statement(backend: sea_orm::DbBackend) -> usize {
    if backend == sea_orm::DbBackend::Postgres { 100 } else { 200 }
}

/// The `INSERT` of these entries (at most [`per_statement`]) and its values, which follow
/// `before` values bound ahead of them in the same statement.
pub fn insert_statement<'s>(
    backend: sea_orm::DbBackend,
    entries: impl Iterator<Item = (Subject<'s>, NewEntry)>,
    now: chrono::DateTime<Utc>,
    before: usize,
) -> (String, Vec<sea_orm::Value>) {
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(entries.size_hint().0 * ENTRY_COLUMNS.len());
    let mut rows = 0;
    for (subject, e) in entries {
        rows += 1;
        let (kind, itemtype, subject_id) = subject.columns();
        let (actor_user, actor_profile) = match e.actor {
            Some(actor) => (Some(actor.user), Some(actor.profile)),
            None => (None, None),
        };
        values.extend([
            kind.into(),
            itemtype.into(),
            subject_id.into(),
            now.into(),
            e.action.into(),
            e.message.into(),
            e.old_value.into(),
            e.new_value.into(),
            e.queued_webhook_id.into(),
            actor_user.into(),
            actor_profile.into(),
        ]);
    }
    (crate::db::insert_sql_after(backend, "history_entries", &ENTRY_COLUMNS, rows, before), values)
}

/// The subject's entries, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    subject: Subject<'_>,
    page: PageRequest,
) -> AppResult<Page<history_entries::Model>> {
    let (kind, itemtype, subject_id) = subject.columns();
    let base = history_entries::Entity::find()
        .filter(history_entries::Column::Subject.eq(kind))
        .filter(history_entries::Column::Itemtype.eq(itemtype))
        .filter(history_entries::Column::SubjectId.eq(subject_id));
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_desc(history_entries::Column::Id).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(history_entries::Column::Id.lt(after));
    }
    let rows = query.all(conn).await?.into_iter().map(|m| (m.id, m)).collect();
    Ok(Page::from_fetched(rows, page, total))
}

/// What the item's last update changed, from its history: the `update` entries written with
/// the newest one (a write's entries share their date), as `changes` shows them. Empty when it
/// was never updated.
pub async fn last_changes(conn: &impl ConnectionTrait, itemtype: &str, id: &str) -> AppResult<Vec<Change>> {
    use history_entries::Column as H;
    let (kind, itemtype, subject_id) = Subject::Item { itemtype, id }.columns();
    let updates = history_entries::Entity::find()
        .filter(H::Subject.eq(kind))
        .filter(H::Itemtype.eq(itemtype))
        .filter(H::SubjectId.eq(subject_id))
        .filter(H::Action.eq("update"));
    let Some(newest) = updates.clone().order_by_desc(H::Id).one(conn).await? else {
        return Ok(Vec::new());
    };
    let entries = updates.filter(H::Date.eq(newest.date)).order_by_asc(H::Id).limit(1000).all(conn).await?;
    Ok(entries
        .into_iter()
        .map(|e| Change {
            field: e.message.strip_suffix(" changed").unwrap_or(&e.message).to_owned(),
            old_value: e.old_value,
            new_value: e.new_value,
        })
        .collect())
}

/// Removes the subject's entries (when an item is purged or a webhook deleted).
pub async fn purge(conn: &impl ConnectionTrait, subject: Subject<'_>) -> AppResult<()> {
    let (kind, itemtype, subject_id) = subject.columns();
    history_entries::Entity::delete_many()
        .filter(history_entries::Column::Subject.eq(kind))
        .filter(history_entries::Column::Itemtype.eq(itemtype))
        .filter(history_entries::Column::SubjectId.eq(subject_id))
        .exec(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_new_entry_is_written_with_every_column_but_its_id() {
        crate::db::assert_inserts_every_column::<entity::history_entries::Column>(&super::ENTRY_COLUMNS, &["id"]);
    }
}
