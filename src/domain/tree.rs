//! Trees of named nodes: entities and webhook categories. GLPI's `completename` joins the
//! names from the root down with " > "; `level` is 1 at the top.

use std::collections::HashMap;

use crate::error::{AppError, AppResult};

pub const SEPARATOR: &str = " > ";

/// The deepest level a node may have (the top is level 1).
pub const MAX_LEVEL: i32 = 32;
/// The longest `completename`, in characters.
pub const MAX_COMPLETENAME: usize = 4096;

/// One node as the tree rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
}

/// The trimmed name, or a VALIDATION error naming `field`.
pub fn checked_name(name: &str, field: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::validation(format!("{field}: must not be empty")));
    }
    if name.chars().count() > 255 {
        return Err(AppError::validation(format!("{field}: must be at most 255 characters")));
    }
    if name.contains('\0') {
        return Err(AppError::validation(format!("{field}: text cannot contain the NUL character (U+0000)")));
    }
    if name.contains(SEPARATOR.trim()) {
        return Err(AppError::validation(format!(
            "{field}: must not contain `>`, which separates names in completename"
        )));
    }
    Ok(name.to_owned())
}

/// The ids from `id` up to the top, `id` first.
pub fn ancestors_and_self(nodes: &HashMap<i64, Node>, id: i64) -> Vec<i64> {
    let mut chain = vec![id];
    let mut current = nodes.get(&id).and_then(|n| n.parent_id);
    while let Some(parent) = current {
        if chain.contains(&parent) {
            break; // a cycle cannot be stored, but never loop on one
        }
        chain.push(parent);
        current = nodes.get(&parent).and_then(|n| n.parent_id);
    }
    chain
}

/// Whether `candidate` is `id` or lies below it.
pub fn is_in_subtree(nodes: &HashMap<i64, Node>, id: i64, candidate: i64) -> bool {
    ancestors_and_self(nodes, candidate).contains(&id)
}

/// `completename` and `level` of a node.
pub fn label(nodes: &HashMap<i64, Node>, id: i64) -> (String, i32) {
    let chain = ancestors_and_self(nodes, id);
    let names: Vec<&str> = chain.iter().rev().filter_map(|i| nodes.get(i).map(|n| n.name.as_str())).collect();
    (names.join(SEPARATOR), chain.len() as i32)
}

/// Refuses a node (of what `noun` names) whose `completename` and `level` would pass
/// [`MAX_COMPLETENAME`] or [`MAX_LEVEL`]; the error names the input that caused it.
pub fn check_label(noun: &str, completename: &str, level: i32) -> AppResult<()> {
    if level > MAX_LEVEL {
        return Err(AppError::invalid(
            "parentId",
            format!("parentId: the {noun} would be {level} levels deep, at most {MAX_LEVEL} are allowed"),
        ));
    }
    let length = completename.chars().count();
    if length > MAX_COMPLETENAME {
        return Err(AppError::invalid(
            "name",
            format!(
                "name: the {noun}'s completename (`{}…`) would be {length} characters, at most {MAX_COMPLETENAME} are \
                 allowed; use shorter names",
                completename.chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// The ids of `id` and every node below it.
pub fn subtree(nodes: &HashMap<i64, Node>, id: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = nodes.keys().copied().filter(|&n| is_in_subtree(nodes, id, n)).collect();
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> HashMap<i64, Node> {
        [(0, "Root entity", None), (1, "Europe", Some(0)), (2, "Paris", Some(1)), (3, "Asia", Some(0))]
            .into_iter()
            .map(|(id, name, parent_id)| (id, Node { id, name: name.into(), parent_id }))
            .collect()
    }

    #[test]
    fn completename_joins_names_from_the_top() {
        assert_eq!(label(&tree(), 2), ("Root entity > Europe > Paris".into(), 3));
        assert_eq!(label(&tree(), 0), ("Root entity".into(), 1));
    }

    #[test]
    fn subtree_holds_the_node_and_its_descendants() {
        assert_eq!(subtree(&tree(), 1), vec![1, 2]);
        assert!(is_in_subtree(&tree(), 0, 2));
        assert!(!is_in_subtree(&tree(), 3, 2));
    }

    #[test]
    fn deep_and_long_labels_are_refused() {
        assert!(check_label("entity", "a", MAX_LEVEL).is_ok());
        assert!(check_label("entity", "a", MAX_LEVEL + 1).is_err());
        assert!(check_label("entity", &"x".repeat(MAX_COMPLETENAME), 2).is_ok());
        assert!(check_label("entity", &"é".repeat(MAX_COMPLETENAME + 1), 2).is_err());
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(checked_name("  Paris ", "name").expect("valid"), "Paris");
        assert!(checked_name("  ", "name").is_err());
        assert!(checked_name("a > b", "name").is_err());
    }
}
