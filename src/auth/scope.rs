//! The entities a caller may see and touch: its token's entities, with the descendants of
//! those marked recursive, resolved against the entity tree.

use std::{collections::HashSet, sync::Arc};

use super::EntityScope;
use crate::service::tree::{EntityIndex, ROOT_ENTITY_ID};

/// The entities in a caller's reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every entity (the root entity, recursive).
    All,
    /// These entities only.
    Entities(Arc<HashSet<i64>>),
}

impl Scope {
    /// Resolves a token's entities against the tree as it is now (an entity created below a
    /// recursive one is in reach at once; one that no longer exists adds nothing).
    pub fn of(entities: &[EntityScope], index: &EntityIndex) -> Self {
        if entities.iter().any(|e| e.id == ROOT_ENTITY_ID && e.recursive) {
            return Self::All;
        }
        let mut ids = HashSet::new();
        for entity in entities.iter().filter(|e| index.contains(e.id)) {
            if entity.recursive {
                ids.extend(index.subtree(entity.id));
            } else {
                ids.insert(entity.id);
            }
        }
        Self::Entities(Arc::new(ids))
    }

    /// Whether a token's entities say every entity, without reading the tree.
    pub fn is_everything(entities: &[EntityScope]) -> bool {
        entities.iter().any(|e| e.id == ROOT_ENTITY_ID && e.recursive)
    }

    pub fn contains(&self, entity_id: i64) -> bool {
        match self {
            Self::All => true,
            Self::Entities(ids) => ids.contains(&entity_id),
        }
    }

    /// The entity ids to filter a query by; None: no filter.
    pub fn ids(&self) -> Option<Vec<i64>> {
        match self {
            Self::All => None,
            Self::Entities(ids) => {
                let mut ids: Vec<i64> = ids.iter().copied().collect();
                ids.sort_unstable();
                Some(ids)
            }
        }
    }

    /// Whether every entity of `other` is in this scope (a token is issued only within its
    /// issuer's scope).
    pub fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (Self::Entities(_), Self::All) => false,
            (Self::Entities(mine), Self::Entities(theirs)) => theirs.is_subset(mine),
        }
    }
}
