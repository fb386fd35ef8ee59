//! The two trees, entities and webhook categories, which share their columns and rules.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, FromQueryResult,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use crate::{
    db::begin_write,
    domain::tree::{self, Node},
    error::{AppError, AppResult},
};

/// A stored tree node.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct TreeRow {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
    pub comment: Option<String>,
    pub completename: String,
    pub level: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which tree, and what refers to its nodes.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    table: &'static str,
    /// How a node is called in messages.
    noun: &'static str,
    /// The node every node without a parent goes under, if the tree has one.
    root: Option<i64>,
    /// `(table, column, what)` of the rows that keep a node from being deleted.
    dependents: &'static [(&'static str, &'static str, &'static str)],
}

/// GLPI's entities; the root entity (id 0) always exists.
pub const ENTITIES: Tree = Tree {
    table: "entities",
    noun: "entity",
    root: Some(ROOT_ENTITY_ID),
    dependents: &[
        ("entities", "parent_id", "child entities"),
        ("items", "entity_id", "items"),
        ("webhooks", "entity_id", "webhooks"),
    ],
};

/// Webhook categories; several may sit at the top.
pub const CATEGORIES: Tree = Tree {
    table: "webhook_categories",
    noun: "webhook category",
    root: None,
    dependents: &[("webhook_categories", "parent_id", "child categories"), ("webhooks", "category_id", "webhooks")],
};

pub const ROOT_ENTITY_ID: i64 = 0;
pub const ROOT_ENTITY_NAME: &str = "Root entity";

const COLUMNS: [&str; 8] = ["id", "name", "parent_id", "comment", "completename", "level", "created_at", "updated_at"];

/// What a create or update asks for.
#[derive(Debug, Clone)]
pub struct NodeInput {
    pub name: String,
    pub parent_id: Option<i64>,
    pub comment: Option<String>,
}

impl Tree {
    fn table(&self) -> Alias {
        Alias::new(self.table)
    }

    /// Every node, ordered by id.
    pub async fn all(&self, conn: &impl ConnectionTrait) -> AppResult<Vec<TreeRow>> {
        let stmt = Query::select()
            .columns(COLUMNS.map(Alias::new))
            .from(self.table())
            .order_by(Alias::new("id"), sea_orm::Order::Asc)
            .to_owned();
        Ok(TreeRow::find_by_statement(conn.get_database_backend().build(&stmt)).all(conn).await?)
    }

    pub async fn get(&self, conn: &impl ConnectionTrait, id: i64) -> AppResult<Option<TreeRow>> {
        let stmt = Query::select()
            .columns(COLUMNS.map(Alias::new))
            .from(self.table())
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .to_owned();
        Ok(TreeRow::find_by_statement(conn.get_database_backend().build(&stmt)).one(conn).await?)
    }

    /// The nodes of these ids that exist (one statement for many).
    pub async fn get_many(&self, conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<Vec<TreeRow>> {
        let stmt = Query::select()
            .columns(COLUMNS.map(Alias::new))
            .from(self.table())
            .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().copied()))
            .to_owned();
        Ok(TreeRow::find_by_statement(conn.get_database_backend().build(&stmt)).all(conn).await?)
    }

    /// The node, or NOT_FOUND naming it.
    pub async fn require(&self, conn: &impl ConnectionTrait, id: i64) -> AppResult<TreeRow> {
        self.get(conn, id).await?.ok_or_else(|| AppError::not_found(format!("no {} with id {id}", self.noun)))
    }

    /// The id and the ids of every node below it.
    pub async fn subtree_ids(&self, conn: &impl ConnectionTrait, id: i64) -> AppResult<Vec<i64>> {
        Ok(tree::subtree(&nodes(&self.all(conn).await?), id))
    }

    /// Makes sure the tree's fixed root exists (entities: id 0, "Root entity").
    pub async fn ensure_root(&self, db: &DatabaseConnection) -> AppResult<()> {
        let Some(root) = self.root else { return Ok(()) };
        if self.get(db, root).await?.is_some() {
            return Ok(());
        }
        let now = Utc::now();
        let stmt = Query::insert()
            .into_table(self.table())
            .columns(COLUMNS.map(Alias::new))
            .values_panic([
                root.into(),
                ROOT_ENTITY_NAME.into(),
                Option::<i64>::None.into(),
                Option::<String>::None.into(),
                ROOT_ENTITY_NAME.into(),
                1i32.into(),
                now.into(),
                now.into(),
            ])
            .to_owned();
        db.execute(&stmt).await?;
        Ok(())
    }

    pub async fn create(&self, db: &DatabaseConnection, input: NodeInput) -> AppResult<TreeRow> {
        let name = tree::checked_name(&input.name, "name")?;
        let txn = begin_write(db).await?;
        let mut nodes = nodes(&self.all(&txn).await?);
        let parent_id = self.checked_parent(&nodes, input.parent_id, None)?;
        let now = Utc::now();
        // Stored ids are never negative: -1 stands for the node being created.
        let provisional = -1;
        nodes.insert(provisional, Node { id: provisional, name: name.clone(), parent_id });
        let (completename, level) = tree::label(&nodes, provisional);
        tree::check_label(self.noun, &completename, level)?;
        let stmt = Query::insert()
            .into_table(self.table())
            .columns(COLUMNS[1..].iter().copied().map(Alias::new))
            .values_panic([
                name.into(),
                parent_id.into(),
                clean_comment(input.comment).into(),
                completename.into(),
                level.into(),
                now.into(),
                now.into(),
            ])
            .returning_col(Alias::new("id"))
            .to_owned();
        let row = txn.query_one(&stmt).await?.ok_or_else(|| AppError::internal("insert returned no id"))?;
        let id: i64 = row.try_get("", "id")?;
        let created = self.require(&txn, id).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// Renames, moves and re-comments a node; the completename and level of the node and of
    /// everything below it follow.
    pub async fn update(&self, db: &DatabaseConnection, id: i64, input: NodeInput) -> AppResult<TreeRow> {
        let name = tree::checked_name(&input.name, "name")?;
        let txn = begin_write(db).await?;
        let mut nodes = nodes(&self.all(&txn).await?);
        if !nodes.contains_key(&id) {
            return Err(AppError::not_found(format!("no {} with id {id}", self.noun)));
        }
        let parent_id = if Some(id) == self.root {
            if input.parent_id.is_some() {
                return Err(AppError::validation(format!("parentId: the root {} cannot be moved", self.noun)));
            }
            None
        } else {
            self.checked_parent(&nodes, input.parent_id, Some(id))?
        };
        nodes.insert(id, Node { id, name: name.clone(), parent_id });
        // The node and everything below it get new labels: all must fit before any is written.
        let mut labels = Vec::new();
        for node_id in tree::subtree(&nodes, id) {
            let (completename, level) = tree::label(&nodes, node_id);
            tree::check_label(self.noun, &completename, level)?;
            labels.push((node_id, completename, level));
        }
        let now = Utc::now();
        let stmt = Query::update()
            .table(self.table())
            .value(Alias::new("name"), name)
            .value(Alias::new("parent_id"), parent_id)
            .value(Alias::new("comment"), clean_comment(input.comment))
            .value(Alias::new("updated_at"), now)
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .to_owned();
        txn.execute(&stmt).await?;
        for (node_id, completename, level) in labels {
            let stmt = Query::update()
                .table(self.table())
                .value(Alias::new("completename"), completename)
                .value(Alias::new("level"), level)
                .and_where(Expr::col(Alias::new("id")).eq(node_id))
                .to_owned();
            txn.execute(&stmt).await?;
        }
        let updated = self.require(&txn, id).await?;
        txn.commit().await?;
        Ok(updated)
    }

    /// Deletes a node; refused with CONFLICT while anything still refers to it.
    pub async fn delete(&self, db: &DatabaseConnection, id: i64) -> AppResult<()> {
        if Some(id) == self.root {
            return Err(AppError::conflict(format!("the root {} cannot be deleted", self.noun)));
        }
        let txn = begin_write(db).await?;
        self.require(&txn, id).await?;
        for (table, column, what) in self.dependents {
            let stmt = Query::select()
                .expr(Expr::col(Alias::new(*column)).count())
                .from(Alias::new(*table))
                .and_where(Expr::col(Alias::new(*column)).eq(id))
                .to_owned();
            let count: i64 = match txn.query_one(&stmt).await? {
                Some(row) => row.try_get_by_index(0)?,
                None => 0,
            };
            if count > 0 {
                return Err(AppError::conflict(format!(
                    "the {} {id} still has {count} {what}; move or delete them first",
                    self.noun
                )));
            }
        }
        let stmt = Query::delete().from_table(self.table()).and_where(Expr::col(Alias::new("id")).eq(id)).to_owned();
        txn.execute(&stmt).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The parent a node may have: an existing node that is not the node itself nor below it.
    fn checked_parent(
        &self,
        nodes: &HashMap<i64, Node>,
        parent_id: Option<i64>,
        id: Option<i64>,
    ) -> AppResult<Option<i64>> {
        let Some(parent) = parent_id.or(self.root) else {
            return Ok(None);
        };
        if !nodes.contains_key(&parent) {
            return Err(AppError::validation(format!("parentId: no {} with id {parent}", self.noun)));
        }
        if let Some(id) = id
            && tree::is_in_subtree(nodes, id, parent)
        {
            return Err(AppError::validation(format!(
                "parentId: a {} cannot be moved under itself or one of its descendants",
                self.noun
            )));
        }
        Ok(Some(parent))
    }
}

fn nodes(rows: &[TreeRow]) -> HashMap<i64, Node> {
    rows.iter().map(|r| (r.id, Node { id: r.id, name: r.name.clone(), parent_id: r.parent_id })).collect()
}

fn clean_comment(comment: Option<String>) -> Option<String> {
    comment.filter(|c| !c.trim().is_empty())
}

/// The entity tree in memory, for matching and for item documents.
#[derive(Debug, Clone)]
pub struct EntityIndex {
    rows: HashMap<i64, TreeRow>,
    nodes: HashMap<i64, Node>,
}

impl EntityIndex {
    pub async fn load(conn: &impl ConnectionTrait) -> AppResult<Self> {
        let rows = ENTITIES.all(conn).await?;
        let nodes = nodes(&rows);
        Ok(Self { rows: rows.into_iter().map(|r| (r.id, r)).collect(), nodes })
    }

    pub fn contains(&self, id: i64) -> bool {
        self.rows.contains_key(&id)
    }

    /// The entity as item documents show it.
    pub fn entity_ref(&self, id: i64) -> AppResult<crate::domain::item::EntityRef> {
        let row = self.rows.get(&id).ok_or_else(|| AppError::internal(format!("entity {id} is missing")))?;
        Ok(crate::domain::item::EntityRef { id, name: row.name.clone(), completename: row.completename.clone() })
    }

    /// The entity and its ancestors, the entity first.
    pub fn chain(&self, id: i64) -> Vec<i64> {
        tree::ancestors_and_self(&self.nodes, id)
    }

    /// The entity and everything below it.
    pub fn subtree(&self, id: i64) -> Vec<i64> {
        tree::subtree(&self.nodes, id)
    }
}
