//! Before/after values of the fields a change touched.
//!
//! Events that change something carry a [`Changes`] map so that history read models can
//! show `changes: {field: {from, to}}` without keeping earlier states around.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields a change touched, by field name (ordered, so events serialize stably).
pub type Changes = BTreeMap<String, FieldChange>;

/// One field's value before and after a change, as JSON (`null` when unset).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// The value before the change.
    pub from: Value,
    /// The value after the change.
    pub to: Value,
}

/// The top-level fields whose JSON values differ between `before` and `after`.
///
/// A field absent on one side counts as `null`, so leaving out a field and setting it to
/// `null` are the same. Values that do not serialize to JSON objects are compared whole and
/// reported under the key `"value"`.
pub fn diff<T: Serialize>(before: &T, after: &T) -> Changes {
    let before = serde_json::to_value(before).unwrap_or(Value::Null);
    let after = serde_json::to_value(after).unwrap_or(Value::Null);
    let mut changes = Changes::new();
    match (before, after) {
        (Value::Object(before), Value::Object(after)) => {
            let keys: std::collections::BTreeSet<&String> =
                before.keys().chain(after.keys()).collect();
            for key in keys {
                let from = before.get(key).cloned().unwrap_or(Value::Null);
                let to = after.get(key).cloned().unwrap_or(Value::Null);
                if from != to {
                    changes.insert(key.clone(), FieldChange { from, to });
                }
            }
        }
        (from, to) => {
            if from != to {
                changes.insert("value".to_owned(), FieldChange { from, to });
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_only_changed_fields_and_treats_absent_as_null() {
        let before = json!({"name": "A", "code": "X", "phone": null});
        let after = json!({"name": "B", "code": "X", "email": "a@b.co"});
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes["name"].from, json!("A"));
        assert_eq!(changes["name"].to, json!("B"));
        assert_eq!(changes["email"].from, Value::Null);
        assert_eq!(changes["email"].to, json!("a@b.co"));
    }

    #[test]
    fn diff_of_equal_values_is_empty() {
        assert!(diff(&json!({"a": 1}), &json!({"a": 1, "b": null})).is_empty());
    }
}
