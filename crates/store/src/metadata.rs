//! An item's own metadata: one JSON object per item, stored with its vector and returned with
//! it. What it may hold is bounded here, and every refusal names the path inside the object.
//!
//! Values are strings (an RFC 3339 string is a datetime to `range`), numbers, booleans, null,
//! arrays of those, and objects nesting more of them, addressed by dotted paths. Keys are
//! non-empty, hold no `.` (the path separator) and do not start with `$` (the system fields').

use serde_json::{Map, Value};

/// Most bytes of one item's metadata, as compact JSON.
pub const MAX_BYTES: usize = 16 * 1024;
/// Deepest nesting of objects (the item's object is depth 1).
pub const MAX_DEPTH: usize = 4;
/// Most keys in one item's metadata, counted through every nesting.
pub const MAX_KEYS: usize = 128;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Most elements of one array.
pub const MAX_ARRAY: usize = 256;
/// Most values in one item's metadata, each array element counted: every value is indexed
/// (a payload row written in the item's transaction), so this bounds the rows one item adds
/// to the write transaction every workspace shares.
pub const MAX_VALUES: usize = 256;

/// The JSON type of a value, as an error message names it.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A refused metadata object: the path inside it (`tags[3]`, `camera.make`; empty for the
/// object itself) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError {
    pub path: String,
    pub reason: String,
}

/// Checks one item's metadata against the rules above.
pub fn check(value: &Value) -> Result<(), MetadataError> {
    let map = value.as_object().ok_or_else(|| MetadataError {
        path: String::new(),
        reason: format!("must be an object, not {}", json_type(value)),
    })?;
    let mut counted = Counted::default();
    check_object(map, "", 1, &mut counted)?;
    let bytes = serde_json::to_vec(value).map_or(usize::MAX, |b| b.len());
    if bytes > MAX_BYTES {
        return Err(MetadataError {
            path: String::new(),
            reason: format!(
                "is {bytes} bytes as JSON; an item's metadata holds at most {MAX_BYTES}"
            ),
        });
    }
    Ok(())
}

/// Keys and values met so far.
#[derive(Default)]
struct Counted {
    keys: usize,
    values: usize,
}

impl Counted {
    /// Counts one more value at `at`, refusing one past [`MAX_VALUES`].
    fn value(&mut self, at: impl FnOnce() -> String) -> Result<(), MetadataError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(MetadataError {
                path: at(),
                reason: format!(
                    "is one value too many; an item's metadata holds at most {MAX_VALUES} values \
                     (each array element counted), since every value is indexed"
                ),
            });
        }
        Ok(())
    }
}

fn check_object(
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
    counted: &mut Counted,
) -> Result<(), MetadataError> {
    let fail = |path: String, reason: String| Err(MetadataError { path, reason });
    if depth > MAX_DEPTH {
        return fail(
            path.to_string(),
            format!("nests objects deeper than {MAX_DEPTH} levels"),
        );
    }
    for (key, value) in map {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        counted.keys += 1;
        if counted.keys > MAX_KEYS {
            return fail(
                at,
                format!("is one key too many; metadata holds at most {MAX_KEYS}"),
            );
        }
        if key.is_empty() || key.contains('.') || key.starts_with('$') || key.contains("[]") {
            return fail(
                at,
                format!(
                    "{key:?} is not a usable key: keys are non-empty, hold no '.' or '[]' and \
                     do not start with '$'"
                ),
            );
        }
        if key.len() > MAX_KEY_BYTES {
            return fail(at, format!("is a key longer than {MAX_KEY_BYTES} bytes"));
        }
        match value {
            Value::Object(inner) => check_object(inner, &at, depth + 1, counted)?,
            Value::Array(items) => {
                if items.len() > MAX_ARRAY {
                    return fail(at, format!("holds more than {MAX_ARRAY} elements"));
                }
                for (i, item) in items.iter().enumerate() {
                    if matches!(item, Value::Array(_) | Value::Object(_)) {
                        return fail(
                            format!("{at}[{i}]"),
                            format!(
                                "is {}; arrays hold strings, numbers, booleans and nulls",
                                json_type(item)
                            ),
                        );
                    }
                    counted.value(|| format!("{at}[{i}]"))?;
                }
            }
            _ => counted.value(|| at.clone())?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usable_metadata_passes() {
        let ok = json!({"album": "Holidays", "year": 2024, "price": 9.5, "fav": false,
            "taken": "2024-05-30T09:00:00Z", "tags": ["a", 1, true, null], "note": null,
            "camera": {"make": "Fuji", "lens": {"mm": 23}}});
        check(&ok).expect("valid");
        check(&json!({})).expect("empty");
    }

    #[test]
    fn refusals_name_the_path() {
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let cases = [
            (json!([1]), "", "must be an object"),
            (json!({"tags": ["a", ["b"]]}), "tags[1]", "arrays hold"),
            (json!({"tags": [{"a": 1}]}), "tags[0]", "an object"),
            (json!({"a.b": 1}), "a.b", "not a usable key"),
            (json!({"$width": 1}), "$width", "not a usable key"),
            (json!({"": 1}), "", "not a usable key"),
            (
                json!({"c": {"d": {"e": {"f": {"g": 1}}}}}),
                "c.d.e.f",
                "deeper",
            ),
            (json!({ long_key.clone(): 1 }), long_key.as_str(), "longer"),
            (json!({"t": vec![0; MAX_ARRAY + 1]}), "t", "more than"),
            (json!({"s": "x".repeat(MAX_BYTES)}), "", "bytes"),
        ];
        for (value, path, reason) in cases {
            let e = check(&value).expect_err(&format!("{value:.80}"));
            assert_eq!(e.path, path, "{e:?}");
            assert!(e.reason.contains(reason), "{e:?}");
        }
        let many: Map<String, Value> = (0..=MAX_KEYS)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        let e = check(&Value::Object(many)).expect_err("too many keys");
        assert_eq!(e.path, format!("k{MAX_KEYS}"));
    }

    /// Every value is indexed: an item of many small values (thousands fit in 16 KiB) made
    /// thousands of payload rows in the write transaction every workspace shares.
    #[test]
    fn an_item_holds_a_bounded_number_of_values_to_index() {
        let at_limit = json!({"a": vec![0; 200], "b": vec![1; 55], "c": "x"});
        check(&at_limit).expect("256 values");
        let past = json!({"a": vec![0; 200], "b": vec![1; 56], "c": "x"});
        let e = check(&past).expect_err("257 values");
        assert_eq!(e.path, "c");
        assert!(e.reason.contains("256 values"), "{e:?}");
        let past = json!({"x": {"y": vec![true; MAX_ARRAY]}, "z": null});
        assert_eq!(check(&past).expect_err("257").path, "z");
        // Well under 16 KiB, as the review's item was.
        let small: Map<String, Value> = (0..100)
            .map(|i| (format!("k{i}"), json!([1, 2, 3])))
            .collect();
        let small = Value::Object(small);
        assert!(serde_json::to_vec(&small).expect("json").len() < MAX_BYTES);
        assert!(
            check(&small)
                .expect_err("300 values")
                .path
                .starts_with("k85[")
        );
    }
}
