//! Validate a user's YAML the way an apiserver would, without a cluster: the generated
//! OpenAPI schema (types, enums, required fields, bounds, unknown fields) and then every CEL
//! rule (`x-kubernetes-validations`), with schema defaults applied first. The same checks
//! guard `inferops render` and `inferops bench -f`, and the tests feed them violating objects.

use serde_json::{Map, Value};

use super::{GROUP, VERSION, crds};

/// One reason an object was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path to the offending field, e.g. `spec.load.concurrency`.
    pub field: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Split multi-document YAML into JSON values, skipping empty documents.
pub fn parse_documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| anyhow::anyhow!("YAML document {} is not valid YAML: {e}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The openAPIV3Schema of our CRD for `kind`, if it is one of ours.
fn schema_for(kind: &str) -> Option<Value> {
    crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .and_then(|crd| crd.spec.versions.into_iter().next())
        .and_then(|v| v.schema)
        .and_then(|s| s.open_api_v3_schema)
        .map(|s| serde_json::to_value(s).expect("a schema always serializes"))
}

/// Validate one `inferops.dev/v1alpha1` object (with `old` for update rules such as
/// immutability). Returns every problem found, or `Ok` when the apiserver would accept it.
pub fn validate_object(object: &Value, old: Option<&Value>) -> Result<(), Vec<ValidationError>> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let expected = format!("{GROUP}/{VERSION}");
    if api_version != expected {
        return Err(vec![ValidationError {
            field: "apiVersion".into(),
            message: format!("expected {expected}, got {api_version:?}"),
        }]);
    }
    let Some(schema) = schema_for(kind) else {
        return Err(vec![ValidationError {
            field: "kind".into(),
            message: format!("expected InferenceService or BenchmarkRun, got {kind:?}"),
        }]);
    };
    let structural = structural_errors(&schema, object);
    if !structural.is_empty() {
        return Err(structural);
    }
    kube::core::cel::Validator::new()
        .validate(&schema, object, old)
        .map_err(|errors| {
            errors
                .iter()
                .map(|e| ValidationError {
                    field: e.field_path.clone(),
                    message: e.message.clone(),
                })
                .collect()
        })
}

/// Types, enums, bounds, required and unknown fields, as JSON Schema checks them.
fn structural_errors(schema: &Value, object: &Value) -> Vec<ValidationError> {
    let mut strict = schema.clone();
    if let Some(Value::Object(props)) = strict.get_mut("properties") {
        // The apiserver handles these itself; the CRD schema leaves them out.
        props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        props.insert("kind".into(), serde_json::json!({"type": "string"}));
        props.insert("metadata".into(), serde_json::json!({"type": "object"}));
    }
    make_strict(&mut strict);
    let validator = match jsonschema::validator_for(&strict) {
        Ok(v) => v,
        Err(e) => {
            return vec![ValidationError {
                field: String::new(),
                message: format!("internal error: generated schema is invalid: {e}"),
            }];
        }
    };
    validator
        .iter_errors(object)
        .map(|e| ValidationError {
            field: pointer_to_path(&e.instance_path().to_string()),
            message: e.to_string(),
        })
        .collect()
}

/// Make the OpenAPI schema reject unknown fields (as `kubectl apply`'s strict field
/// validation does) and accept `nullable` values.
fn make_strict(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    let preserve = map
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserve {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if map.get("nullable").and_then(Value::as_bool) == Some(true)
        && let Some(Value::String(t)) = map.get("type").cloned()
    {
        map.insert("type".into(), serde_json::json!([t, "null"]));
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = map.get_mut(key) {
            props.values_mut().for_each(make_strict);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = map.get_mut(key) {
            make_strict(sub);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            subs.iter_mut().for_each(make_strict);
        }
    }
    drop_vendor_keys(map);
}

fn drop_vendor_keys(map: &mut Map<String, Value>) {
    map.retain(|k, _| !k.starts_with("x-kubernetes-") && k != "nullable");
}

/// `/spec/load/concurrency/0` -> `spec.load.concurrency[0]`.
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}
