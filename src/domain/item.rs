//! Item documents: what templates, filters and the default payload see of an item.
//!
//! The document carries `id`, `name`, `entity {id, name, completename}`, `is_deleted`,
//! `date_creation` and `date_mod`, and every key of the item's own `fields` at top level.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::error::{AppError, AppResult};

/// Keys of the document that hookline fills itself, and `actor` (filters read `actor.user`
/// and `actor.profile` as the change's writer); an item field may not use them.
pub const RESERVED_KEYS: &[&str] = &["id", "name", "entity", "is_deleted", "date_creation", "date_mod", "actor"];

/// Who made an item change: the user and profile of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub profile: String,
}

impl Actor {
    /// The actor stored in a row's `actor_user` and `actor_profile` columns, if any.
    pub fn stored(user: &Option<String>, profile: &Option<String>) -> Option<Self> {
        Some(Self { user: user.clone()?, profile: profile.clone()? })
    }

    /// `{"user", "profile"}`, as templates and filters see it.
    pub fn to_value(&self) -> Value {
        json!({"user": self.user, "profile": self.profile})
    }
}

/// The entity as it appears inside an item document.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRef {
    pub id: i64,
    pub name: String,
    pub completename: String,
}

/// What an item document is built from.
pub struct ItemSnapshot<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub entity: &'a EntityRef,
    pub fields: &'a Map<String, Value>,
    pub is_deleted: bool,
    pub date_creation: DateTime<Utc>,
    pub date_mod: DateTime<Utc>,
}

/// RFC 3339 in UTC with a `Z`, as every timestamp of the API.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The item document (spec 5.1).
pub fn document(item: &ItemSnapshot<'_>) -> Value {
    let mut doc = item.fields.clone();
    doc.insert("id".into(), id_value(item.id));
    doc.insert("name".into(), item.name.map_or(Value::Null, |n| Value::String(n.to_owned())));
    doc.insert(
        "entity".into(),
        json!({"id": item.entity.id, "name": item.entity.name, "completename": item.entity.completename}),
    );
    doc.insert("is_deleted".into(), Value::Bool(item.is_deleted));
    doc.insert("date_creation".into(), Value::String(rfc3339(item.date_creation)));
    doc.insert("date_mod".into(), Value::String(rfc3339(item.date_mod)));
    Value::Object(doc)
}

/// Numeric ids (those hookline assigns, and GLPI's) appear as JSON numbers, others as strings.
pub fn id_value(id: &str) -> Value {
    match id.parse::<i64>() {
        Ok(n) if n.to_string() == id => Value::from(n),
        _ => Value::String(id.to_owned()),
    }
}

/// A caller-given item id: 1 to 255 characters, no surrounding whitespace.
pub fn checked_id(id: &str) -> AppResult<String> {
    if id.is_empty() || id.chars().count() > 255 || id.trim() != id {
        return Err(AppError::validation("id: an item id has 1 to 255 characters and no leading or trailing spaces"));
    }
    Ok(id.to_owned())
}

/// The fields of an item: a JSON object whose keys are not reserved.
pub fn checked_fields(fields: Option<Value>) -> AppResult<Map<String, Value>> {
    let map = match fields {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(AppError::validation("fields: must be a JSON object")),
    };
    if let Some(key) = map.keys().find(|k| RESERVED_KEYS.contains(&k.as_str())) {
        return Err(AppError::validation(format!(
            "fields: the key `{key}` is reserved for hookline (reserved: {})",
            RESERVED_KEYS.join(", ")
        )));
    }
    if map.keys().any(|k| k.is_empty()) {
        return Err(AppError::validation("fields: keys must not be empty"));
    }
    for (key, value) in &map {
        if key.contains('\0') || holds_nul(value) {
            return Err(AppError::validation(format!("fields.{key}: text cannot contain the NUL character (U+0000)")));
        }
    }
    Ok(map)
}

/// Whether a JSON value holds the NUL character anywhere (databases cannot store it in text).
pub fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// A text input without the NUL character, or VALIDATION naming `field`.
pub fn checked_text(text: Option<String>, field: &str) -> AppResult<Option<String>> {
    match text {
        Some(t) if t.contains('\0') => {
            Err(AppError::validation(format!("{field}: text cannot contain the NUL character (U+0000)")))
        }
        other => Ok(other),
    }
}

/// Applies a JSON merge patch (RFC 7396) to the fields: a key set to `null` is removed,
/// objects are merged recursively, anything else replaces.
pub fn merge_fields(fields: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut out = fields.clone();
    for (key, value) in patch {
        match (out.get(key), value) {
            (_, Value::Null) => {
                out.remove(key);
            }
            (Some(Value::Object(old)), Value::Object(new)) => {
                let merged = merge_fields(old, new);
                out.insert(key.clone(), Value::Object(merged));
            }
            _ => {
                out.insert(key.clone(), strip_nulls(value));
            }
        }
    }
    out
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
        }
        other => other.clone(),
    }
}

/// One changed value, for the item's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// The top-level keys whose values differ between two documents (sorted by key).
pub fn changes(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<Change> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| Change { field: k.clone(), old_value: old.get(k).map(display), new_value: new.get(k).map(display) })
        .collect()
}

/// Changes as templates see them (the `changes` variable of `update`): `[{field, old, new}]`,
/// values as the item's history shows them, null when absent.
pub fn changes_value(changes: &[Change]) -> Value {
    Value::Array(
        changes.iter().map(|c| serde_json::json!({"field": c.field, "old": c.old_value, "new": c.new_value})).collect(),
    )
}

/// Changes read back from [`changes_value`] (what a queued row stores); anything else is none.
pub fn changes_from_value(value: &Value) -> Vec<Change> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    let field = c.get("field")?.as_str()?.to_owned();
                    Some(Change { field, old_value: text(c.get("old")), new_value: text(c.get("new")) })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The changes of several writes as one: each field once, where it first changed, with the
/// old value of the earliest write and the new value of the latest. A field that ends where
/// it started is dropped (nothing changed, seen from before the first write).
pub fn merged_changes(earlier: &[Change], later: &[Change]) -> Vec<Change> {
    let mut merged: Vec<Change> = earlier.to_vec();
    for change in later {
        match merged.iter_mut().find(|m| m.field == change.field) {
            Some(m) => m.new_value.clone_from(&change.new_value),
            None => merged.push(change.clone()),
        }
    }
    merged.retain(|c| c.old_value != c.new_value);
    merged
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn document_puts_fields_at_top_level_with_entity_and_dates() {
        let entity = EntityRef { id: 1, name: "Paris".into(), completename: "Root entity > Paris".into() };
        let fields = map(json!({"priority": 5, "status": {"id": 2, "name": "Processing"}}));
        let at = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").expect("date").to_utc();
        let doc = document(&ItemSnapshot {
            id: "42",
            name: Some("Printer on fire"),
            entity: &entity,
            fields: &fields,
            is_deleted: false,
            date_creation: at,
            date_mod: at,
        });
        assert_eq!(
            doc,
            json!({"id": 42, "name": "Printer on fire", "priority": 5, "status": {"id": 2, "name": "Processing"},
                   "entity": {"id": 1, "name": "Paris", "completename": "Root entity > Paris"},
                   "is_deleted": false, "date_creation": "2026-11-27T10:00:00Z", "date_mod": "2026-11-27T10:00:00Z"})
        );
    }

    #[test]
    fn ids_keep_their_type() {
        assert_eq!(id_value("42"), json!(42));
        assert_eq!(id_value("042"), json!("042"));
        assert_eq!(id_value("INC-7"), json!("INC-7"));
    }

    #[test]
    fn reserved_and_non_object_fields_are_refused() {
        assert!(checked_fields(Some(json!({"entity": 3}))).is_err());
        assert!(checked_fields(Some(json!([1]))).is_err());
        assert!(checked_fields(Some(json!({"brand": "X"}))).is_ok());
    }

    #[test]
    fn merged_changes_keep_the_first_old_and_the_last_new_and_drop_what_came_back() {
        let change = |field: &str, old: Option<&str>, new: Option<&str>| Change {
            field: field.into(),
            old_value: old.map(Into::into),
            new_value: new.map(Into::into),
        };
        let first = [change("status", Some("1"), Some("2")), change("priority", Some("3"), Some("4"))];
        let second = [change("status", Some("2"), Some("5")), change("priority", Some("4"), Some("3"))];
        let third = [change("solution", None, Some("done"))];
        let merged = merged_changes(&merged_changes(&first, &second), &third);
        assert_eq!(merged, vec![change("status", Some("1"), Some("5")), change("solution", None, Some("done"))]);
        assert_eq!(changes_from_value(&changes_value(&merged)), merged, "stored and read back");
    }

    #[test]
    fn merge_patch_sets_replaces_and_removes() {
        let old = map(json!({"a": 1, "b": {"x": 1, "y": 2}, "c": 3}));
        let patch = map(json!({"a": 2, "b": {"y": null, "z": 3}, "c": null, "d": {"e": null, "f": 1}}));
        assert_eq!(Value::Object(merge_fields(&old, &patch)), json!({"a": 2, "b": {"x": 1, "z": 3}, "d": {"f": 1}}));
    }

    #[test]
    fn changes_list_what_differs() {
        let old = map(json!({"a": 1, "b": "same", "c": "gone"}));
        let new = map(json!({"a": 2, "b": "same", "d": "new"}));
        let fields: Vec<String> = changes(&old, &new).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["a", "c", "d"]);
        assert_eq!(changes(&old, &new)[0].new_value.as_deref(), Some("2"));
    }
}
