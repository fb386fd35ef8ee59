//! The default payload (spec 5.2): `{"item": …, "event": …}` plus `"parent_item"` when the
//! item has a parent.

use serde::Serialize;
use serde_json::Value;

/// The template variables of an event: `event`, `item`, and `parent_item` when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct ApiData {
    pub item: Value,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_item: Option<Value>,
}

impl ApiData {
    /// The default body: compact JSON, keys in GLPI's order.
    pub fn default_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
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
        let data = ApiData { item: json!({"id": 1}), event: "new", parent_item: None };
        assert_eq!(data.default_body(), r#"{"item":{"id":1},"event":"new"}"#);
        let followup = ApiData { parent_item: Some(json!({"id": 9})), ..data };
        assert_eq!(followup.default_body(), r#"{"item":{"id":1},"event":"new","parent_item":{"id":9}}"#);
    }
}
