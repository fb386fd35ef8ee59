//! The default payload (spec 5.2): `{"item": …, "event": …}` plus `"parent_item"` when the
//! item has a parent.

use serde::Serialize;
use serde_json::Value;

/// The template variables of an event: `event`, `item`, `parent_item` when there is one,
/// `actor` (`{user, profile}`, the writer of the change) when known, and for `update` the
/// write's `changes` (`[{field, old, new}]`).
#[derive(Debug, Clone, Serialize)]
pub struct ApiData {
    pub item: Value,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_item: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Value>,
}

/// GLPI's default body: the variables without `actor` and `changes`.
#[derive(Serialize)]
struct DefaultBody<'a> {
    item: &'a Value,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_item: Option<&'a Value>,
}

impl ApiData {
    /// The default body: compact JSON, keys in GLPI's order (`actor` and `changes` are not part
    /// of it).
    pub fn default_body(&self) -> String {
        let body = DefaultBody { item: &self.item, event: self.event, parent_item: self.parent_item.as_ref() };
        serde_json::to_string(&body).unwrap_or_else(|_| "{}".into())
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_default_body_has_glpis_shape() {
        let actor = Some(json!({"user": "ci", "profile": "event-writer"}));
        let changes = Some(json!([{"field": "status", "old": "1", "new": "2"}]));
        let data = ApiData { item: json!({"id": 1}), event: "new", parent_item: None, actor, changes };
        assert_eq!(data.default_body(), r#"{"item":{"id":1},"event":"new"}"#, "nor actor nor changes in GLPI's body");
        assert_eq!(data.to_value()["actor"]["user"], "ci", "but templates see them");
        assert_eq!(data.to_value()["changes"][0]["field"], "status");
        let followup = ApiData { parent_item: Some(json!({"id": 9})), ..data };
        assert_eq!(followup.default_body(), r#"{"item":{"id":1},"event":"new","parent_item":{"id":9}}"#);
    }
}
