//! The run contract: every rule of `POST /api/runs` that API.md lists, checked in one pass.
//!
//! Shape first (400), then the model (404), then the mode, scope, input and params against
//! the model's contract (400). Installation (409) is the caller's next step.

use std::collections::HashMap;
use std::sync::Arc;

use aimp_embed::{Manifest, Registry};
use jsonschema::Validator;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The top-level fields a run may carry.
const RUN_FIELDS: &[&str] = &["model", "mode", "scope", "input", "params", "options"];
/// Fields the platform manages; a client may not set them.
const PLATFORM_FIELDS: &[&str] = &["resources", "alias", "collection", "namespace"];
/// Options this gateway understands (none yet: an unknown option is refused, not ignored).
const KNOWN_OPTIONS: &[&str] = &[];

/// The filter language's schema, which the contracts' `params.filter` refer to by its `$id`.
const FILTER_SCHEMA: &str = include_str!("../../../models/schemas/filter.json");
const FILTER_SCHEMA_ID: &str = "https://aimp.dev/schemas/filter.json";

/// The mode used when a run names none.
pub const DEFAULT_MODE: &str = "execute";

/// A run that passed every check.
#[derive(Debug)]
pub struct ValidRun {
    pub manifest: Arc<Manifest>,
    pub mode: String,
    pub scope: Option<String>,
    pub input: Map<String, Value>,
    /// `params` with the contract's defaults filled in.
    pub params: Map<String, Value>,
}

/// Compiled JSON Schemas of every model's modes.
#[derive(Debug)]
pub struct Contracts {
    registry: Arc<Registry>,
    validators: HashMap<(String, String), (Validator, Validator)>,
}

impl Contracts {
    pub fn compile(registry: Arc<Registry>) -> Result<Contracts, String> {
        let filter: Value = serde_json::from_str(FILTER_SCHEMA)
            .map_err(|e| format!("the filter schema is not JSON: {e}"))?;
        let shared = jsonschema::Registry::new()
            .add(FILTER_SCHEMA_ID, filter)
            .and_then(|r| r.prepare())
            .map_err(|e| format!("the filter schema: {e}"))?;
        let mut validators = HashMap::new();
        for m in registry.manifests() {
            for (mode, contract) in &m.modes {
                let compile = |schema: &Value, what: &str| {
                    jsonschema::options()
                        .with_registry(&shared)
                        .build(schema)
                        .map_err(|e| format!("{}: modes.{mode}.{what}: {e}", m.slug))
                };
                let input = compile(&contract.input_schema, "input_schema")?;
                let params = compile(&contract.params_schema, "params_schema")?;
                validators.insert((m.slug.clone(), mode.clone()), (input, params));
            }
        }
        Ok(Contracts {
            registry,
            validators,
        })
    }

    /// Checks a run request body against API.md and the model's contract.
    pub fn validate(&self, mut body: Map<String, Value>) -> Result<ValidRun, ApiError> {
        for field in body.keys() {
            check_top_level_field(field)?;
        }
        let model = match body.remove("model") {
            None => return Err(missing("model")),
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(other) => {
                return Err(invalid(
                    "model",
                    "a non-empty string (a model slug)",
                    &other,
                ));
            }
        };
        let input = match body.remove("input") {
            None => return Err(missing("input")),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(invalid("input", "an object", &other)),
        };
        let params = match body.remove("params") {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(invalid("params", "an object (send {} when empty)", &other)),
        };
        match body.remove("options") {
            None => {}
            Some(Value::Object(options)) => check_options(&options)?,
            Some(other) => return Err(invalid("options", "an object", &other)),
        }
        let mode = match body.remove("mode") {
            None => DEFAULT_MODE.to_string(),
            Some(Value::String(s)) => s,
            Some(other) => return Err(invalid("mode", "a string", &other)),
        };
        let scope = match body.remove("scope") {
            None => None,
            Some(Value::String(s)) if valid_scope(&s) => Some(s),
            Some(Value::String(s)) => {
                return Err(ApiError::bad_request(
                    "invalid_scope",
                    format!(
                        "scope {s:?} is invalid: it must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$"
                    ),
                    "scope",
                ));
            }
            Some(other) => return Err(invalid("scope", "a string", &other)),
        };

        let manifest = self.registry.get(&model).map_err(ApiError::from)?.clone();
        let Some(contract) = manifest.modes.get(&mode) else {
            let modes: Vec<&str> = manifest.modes.keys().map(String::as_str).collect();
            return Err(ApiError::bad_request(
                "unsupported_mode",
                format!(
                    "model {model} has no mode {mode:?}; its modes are: {}",
                    modes.join(", ")
                ),
                "mode",
            ));
        };
        if contract.requires_scope && scope.is_none() {
            return Err(ApiError::bad_request(
                "missing_scope",
                format!(
                    "scope is required for mode {mode}: index and search read and write the vectors of one scope"
                ),
                "scope",
            ));
        }
        let (input_schema, params_schema) = self
            .validators
            .get(&(model.clone(), mode.clone()))
            .ok_or_else(|| ApiError::Internal {
                context: "contracts",
                source: format!("no compiled schema for {model}/{mode}").into(),
            })?;
        let input_value = Value::Object(input);
        schema_check(input_schema, &input_value, "input", "invalid_input")?;
        let mut params_value = Value::Object(params);
        schema_check(params_schema, &params_value, "params", "invalid_params")?;
        fill_defaults(&contract.params_schema, &mut params_value);
        let (Value::Object(input), Value::Object(params)) = (input_value, params_value) else {
            unreachable!("both were built as objects above");
        };
        Ok(ValidRun {
            manifest,
            mode,
            scope,
            input,
            params,
        })
    }
}

fn check_top_level_field(field: &str) -> Result<(), ApiError> {
    if RUN_FIELDS.contains(&field) {
        return Ok(());
    }
    if field == "parameters" {
        return Err(ApiError::bad_request(
            "use_params",
            "`parameters` is not accepted: send operation parameters as `params` (an object)",
            "parameters",
        ));
    }
    if PLATFORM_FIELDS.contains(&field) {
        return Err(ApiError::bad_request(
            "platform_managed_field",
            format!("`{field}` is managed by the platform and cannot be set in a run"),
            field,
        ));
    }
    Err(ApiError::bad_request(
        "unknown_field",
        format!(
            "unknown field `{field}`; a run takes: {}",
            RUN_FIELDS.join(", ")
        ),
        field,
    ))
}

fn check_options(options: &Map<String, Value>) -> Result<(), ApiError> {
    for key in options.keys() {
        let param = format!("options.{key}");
        if key == "hardware_tier" {
            return Err(ApiError::bad_request(
                "unsupported_option",
                "`options.hardware_tier` is not accepted: this gateway runs every model on its own configured device",
                &param,
            ));
        }
        if !KNOWN_OPTIONS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_field",
                format!("unknown option `{key}`"),
                &param,
            ));
        }
    }
    Ok(())
}

/// `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`
pub fn valid_scope(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn missing(field: &str) -> ApiError {
    ApiError::bad_request("missing_field", format!("`{field}` is required"), field)
}

fn invalid(field: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::bad_request(
        "invalid_field",
        format!("`{field}` must be {expected}, not {}", json_type(got)),
        field,
    )
}

pub use aimp_store::json_type;

/// Validates `value` and names the first failing path, e.g. `input.texts[2]`.
fn schema_check(
    validator: &Validator,
    value: &Value,
    root: &str,
    code: &'static str,
) -> Result<(), ApiError> {
    let Some(error) = validator.iter_errors(value).next() else {
        return Ok(());
    };
    let mut path = dotted_path(root, error.instance_path().as_str());
    // A member the schema does not allow is named itself, not the object holding it.
    if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
        error.kind()
        && let Some(name) = unexpected.first()
    {
        path = format!("{path}.{name}");
    }
    Err(ApiError::bad_request(
        code,
        format!("{path}: {}", shortened(&error.to_string())),
        &path,
    ))
}

/// Longest schema message sent back, in bytes: the validator's message quotes the refused
/// value whole, and a 4 MiB body must not come back as a 4 MiB error.
const MAX_MESSAGE_BYTES: usize = 400;

/// `message` with its middle cut to fit [`MAX_MESSAGE_BYTES`] (the start names the value,
/// the end says what is wrong with it).
fn shortened(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let floor = |mut i: usize| {
        while !message.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let head = floor(MAX_MESSAGE_BYTES / 2);
    let tail = floor(message.len() - MAX_MESSAGE_BYTES / 2 + 4);
    format!(
        "{} … ({} bytes left out) … {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

/// JSON pointer `/texts/2` under `input` → `input.texts[2]`.
pub fn dotted_path(root: &str, pointer: &str) -> String {
    let mut out = root.to_string();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            out.push('.');
            out.push_str(&segment);
        }
    }
    out
}

/// Fills each absent property of `params` from its schema's `default`.
fn fill_defaults(schema: &Value, params: &mut Value) {
    let (Some(props), Value::Object(params)) =
        (schema.get("properties").and_then(Value::as_object), params)
    else {
        return;
    };
    for (name, prop) in props {
        if let Some(default) = prop.get("default") {
            params
                .entry(name.clone())
                .or_insert_with(|| default.clone());
        }
    }
}

/// A filter given at `root` (`params.filter`, or a query string's `filter`).
pub fn parse_filter(
    value: &Value,
    root: &str,
    code: &'static str,
    limits: aimp_store::FilterLimits,
) -> Result<aimp_store::Filter, ApiError> {
    aimp_store::Filter::parse_within(value, limits).map_err(|e| {
        let param = if e.path.is_empty() {
            root.to_string()
        } else {
            format!("{root}.{}", e.path)
        };
        ApiError::bad_request(code, format!("{param} {}", e.reason), &param)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contracts() -> Contracts {
        let reg = Registry::load(None, std::path::Path::new("/nonexistent")).expect("registry");
        Contracts::compile(Arc::new(reg)).expect("compile")
    }

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    fn reject(v: Value) -> (u16, &'static str, Option<String>) {
        let err = contracts()
            .validate(body(v))
            .expect_err("should be refused");
        let status = err.status().as_u16();
        match err {
            ApiError::BadRequest { code, param, .. } | ApiError::NotFound { code, param, .. } => {
                (status, code, param)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn long_schema_messages_keep_their_start_and_end() {
        assert_eq!(shortened("short"), "short");
        let long = format!("[{}] has more than 256 items", "ü,".repeat(5000));
        let cut = shortened(&long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(cut.starts_with("[ü,ü"), "{cut}");
        assert!(cut.ends_with("has more than 256 items"), "{cut}");
        assert!(cut.contains("bytes left out"), "{cut}");
    }

    #[test]
    fn the_api_page_body_is_valid() {
        let run = contracts()
            .validate(body(json!({
                "model": "demo-model", "mode": "execute", "scope": "playground",
                "input": {"text": "Write a one-line summary."}, "params": {}
            })))
            .expect("valid");
        assert_eq!(run.mode, "execute");
        assert_eq!(run.scope.as_deref(), Some("playground"));
    }

    #[test]
    fn mode_defaults_to_execute_and_search_params_get_defaults() {
        let c = contracts();
        let run = c
            .validate(body(
                json!({"model": "demo-model", "input": {"texts": ["a", "b"]}}),
            ))
            .expect("valid");
        assert_eq!(run.mode, "execute");
        let run = c
            .validate(body(
                json!({"model": "demo-model", "mode": "search", "scope": "test",
                "input": {"text": "q"}, "params": {"ef": 50}}),
            ))
            .expect("valid");
        assert_eq!(run.params["top_k"], 10);
        assert_eq!(run.params["exact"], false);
        assert_eq!(run.params["ef"], 50);
    }

    #[test]
    fn missing_model_and_input() {
        assert_eq!(
            reject(json!({"input": {"text": "x"}})),
            (400, "missing_field", Some("model".into()))
        );
        assert_eq!(
            reject(json!({"model": "demo-model"})),
            (400, "missing_field", Some("input".into()))
        );
    }

    #[test]
    fn input_params_options_must_be_objects() {
        assert_eq!(
            reject(json!({"model": "demo-model", "input": "x"})),
            (400, "invalid_field", Some("input".into()))
        );
        assert_eq!(
            reject(json!({"model": "demo-model", "input": {"text": "x"}, "params": []})),
            (400, "invalid_field", Some("params".into()))
        );
        assert_eq!(
            reject(json!({"model": "demo-model", "input": {"text": "x"}, "options": 3})),
            (400, "invalid_field", Some("options".into()))
        );
    }

    #[test]
    fn mode_not_in_contract() {
        assert_eq!(
            reject(json!({"model": "demo-model", "mode": "train", "input": {"text": "x"}})),
            (400, "unsupported_mode", Some("mode".into()))
        );
    }

    #[test]
    fn input_schema_names_the_failing_path() {
        let (status, code, param) =
            reject(json!({"model": "demo-model", "input": {"texts": ["ok", 5]}}));
        assert_eq!((status, code), (400, "invalid_input"));
        assert_eq!(param.as_deref(), Some("input.texts[1]"));
        let (_, code, param) = reject(json!({"model": "demo-model", "input": {"txt": "x"}}));
        assert_eq!(
            (code, param.as_deref()),
            ("invalid_input", Some("input.txt"))
        );
    }

    #[test]
    fn parameters_hardware_tier_and_platform_fields() {
        assert_eq!(
            reject(json!({"model": "demo-model", "input": {"text": "x"}, "parameters": {}})),
            (400, "use_params", Some("parameters".into()))
        );
        assert_eq!(
            reject(json!({"model": "demo-model", "input": {"text": "x"},
                "options": {"hardware_tier": "gpu"}})),
            (
                400,
                "unsupported_option",
                Some("options.hardware_tier".into())
            )
        );
        for field in PLATFORM_FIELDS {
            let mut v = json!({"model": "demo-model", "input": {"text": "x"}});
            v[*field] = json!("x");
            assert_eq!(
                reject(v),
                (400, "platform_managed_field", Some(field.to_string()))
            );
        }
        assert_eq!(
            reject(json!({"model": "demo-model", "input": {"text": "x"}, "extra": 1})),
            (400, "unknown_field", Some("extra".into()))
        );
    }

    #[test]
    fn scope_rules() {
        for mode in ["index", "search"] {
            let input = if mode == "index" {
                json!({"texts": ["a"], "text_ids": ["1"]})
            } else {
                json!({"text": "a"})
            };
            assert_eq!(
                reject(json!({"model": "demo-model", "mode": mode, "input": input})),
                (400, "missing_scope", Some("scope".into()))
            );
            for bad in [
                json!("-starts-with-dash"),
                json!("has space"),
                json!(""),
                json!(7),
                json!("x".repeat(65)),
            ] {
                let (status, _, param) = reject(
                    json!({"model": "demo-model", "mode": mode, "scope": bad, "input": input}),
                );
                assert_eq!((status, param.as_deref()), (400, Some("scope")));
            }
        }
        assert!(valid_scope("playground") && valid_scope("test") && valid_scope(&"a".repeat(64)));
    }

    #[test]
    fn unknown_model_is_404() {
        assert_eq!(
            reject(json!({"model": "nope", "input": {"text": "x"}})),
            (404, "model_not_found", Some("model".into()))
        );
    }

    #[test]
    fn dotted_paths() {
        assert_eq!(dotted_path("input", ""), "input");
        assert_eq!(
            dotted_path("input", "/images/0/media_ref"),
            "input.images[0].media_ref"
        );
        assert_eq!(dotted_path("params", "/a~1b"), "params.a/b");
    }
}
