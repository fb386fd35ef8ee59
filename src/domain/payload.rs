//! The default payload (spec 5.2): `{"item": …, "event": …}` plus `"parent_item"` when the
//! item has a parent.

use serde::Serialize;
use serde_json::Value;

/// The template variables of an event: `event`, `item`, `parent_item` when there is one, and
/// `actor` (`{user, profile}`, the writer of the change) when known.
#[derive(Debug, Clone, Serialize)]
pub struct ApiData {
    pub item: Value,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_item: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Value>,
}

/// GLPI's default body: the variables without `actor`.
#[derive(Serialize)]
struct DefaultBody<'a> {
    item: &'a Value,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_item: Option<&'a Value>,
}

impl ApiData {
    /// The default body: compact JSON, keys in GLPI's order (`actor` is not part of it).
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
        let data = ApiData { item: json!({"id": 1}), event: "new", parent_item: None, actor };
        assert_eq!(data.default_body(), r#"{"item":{"id":1},"event":"new"}"#, "the actor is not in GLPI's body");
        assert_eq!(data.to_value()["actor"]["user"], "ci", "but templates see it");
        let followup = ApiData { parent_item: Some(json!({"id": 9})), ..data };
        assert_eq!(followup.default_body(), r#"{"item":{"id":1},"event":"new","parent_item":{"id":9}}"#);
    }
}
