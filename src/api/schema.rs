//! Rules the apiserver does not derive from the Rust types, added to the generated schema so
//! that every object the apiserver accepts also deserializes: a stored object our types
//! reject would stop the watcher of its whole kind.
//!
//! - Integers: the apiserver ignores `format: int32` / `uint32` on CRDs and stores any int64.
//!   Every `type: integer` with a narrower `format` gets the `minimum` / `maximum` of that
//!   Rust type (kept when the field already has a stricter bound). `int64` needs none (the
//!   apiserver's own integers are int64), `uint64` gets `minimum: 0`.
//! - `nullable`: kube marks every optional int-or-string property `nullable`, also a
//!   non-`Option` field with a default (`autoscaling.target`), whose `null` the types
//!   reject. A property with a `default` never needs `nullable`: without it the apiserver
//!   drops the `null` and applies the default.
//! - Durations: [`GoDuration`] is the schema of a `kube::core::Duration` field
//!   (`#[schemars(with = "GoDuration")]`): a pattern of what its parser accepts, bounded so
//!   that no accepted value overflows it.
//! - Timestamps: `format: date-time` gets an RFC 3339 pattern: the apiserver's `date-time`
//!   also accepts forms (no time zone, a space separator) that `Time` does not parse.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};

/// The pattern of a duration field: Go duration syntax (what `kube::core::Duration` parses)
/// without a sign, at most 6 integer and 9 fraction digits per component, e.g. `90s`,
/// `1m30s`, `1.5h`, `250ms`; `0` alone is zero.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]{1,6}(\.[0-9]{1,9})?(ns|us|µs|μs|ms|s|m|h))+)$";

/// Longest duration string: 4 components of the longest form still fit, so the sum cannot
/// overflow (at most 4 x 999999.999999999 h).
pub const DURATION_MAX_LENGTH: u64 = 64;

/// RFC 3339 timestamp, the form `k8s_openapi`'s `Time` parses.
pub const DATE_TIME_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// Schema-only stand-in for `kube::core::Duration`: a string with [`DURATION_PATTERN`].
pub struct GoDuration;

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
        })
    }
}

/// The bounds of an integer `format` the apiserver does not enforce by itself.
fn integer_bounds(format: &str) -> Option<(Option<i64>, Option<i64>)> {
    Some(match format {
        "int8" => (Some(i8::MIN.into()), Some(i8::MAX.into())),
        "int16" => (Some(i16::MIN.into()), Some(i16::MAX.into())),
        "int32" => (Some(i32::MIN.into()), Some(i32::MAX.into())),
        "uint8" => (Some(0), Some(u8::MAX.into())),
        "uint16" => (Some(0), Some(u16::MAX.into())),
        "uint32" => (Some(0), Some(u32::MAX.into())),
        "uint64" | "uint" => (Some(0), None),
        "int64" | "int" => (None, None),
        _ => return None,
    })
}

/// Apply every rule of this module to an `openAPIV3Schema`, in place.
pub fn harden(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    bound_integer(map);
    if map.get("format").and_then(Value::as_str) == Some("date-time")
        && !map.contains_key("pattern")
    {
        map.insert("pattern".into(), DATE_TIME_PATTERN.into());
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for prop in props.values_mut() {
            if let Value::Object(p) = prop
                && p.contains_key("default")
                && p.get("nullable") == Some(&Value::Bool(true))
            {
                p.remove("nullable");
            }
            harden(prop);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = map.get_mut(key) {
            harden(sub);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            subs.iter_mut().for_each(harden);
        }
    }
}

fn bound_integer(map: &mut Map<String, Value>) {
    if map.get("type").and_then(Value::as_str) != Some("integer") {
        return;
    }
    let Some(format) = map.get("format").and_then(Value::as_str) else {
        return;
    };
    let Some((min, max)) = integer_bounds(format) else {
        return;
    };
    if let Some(min) = min {
        let keep = map
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| m >= min as f64);
        if !keep {
            map.insert("minimum".into(), min.into());
        }
    }
    if let Some(max) = max {
        let keep = map
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| m <= max as f64);
        if !keep {
            map.insert("maximum".into(), max.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_get_the_bounds_of_their_format() {
        let mut s = json!({"type": "object", "properties": {
            "a": {"type": "integer", "format": "uint32", "minimum": 1},
            "b": {"type": "integer", "format": "int32"},
            "c": {"type": "integer", "format": "int32", "maximum": 64},
            "d": {"type": "integer", "format": "uint64"},
            "e": {"type": "integer", "format": "int64"},
        }});
        harden(&mut s);
        let p = &s["properties"];
        assert_eq!(p["a"]["minimum"], json!(1));
        assert_eq!(p["a"]["maximum"], json!(4294967295u64));
        assert_eq!(p["b"]["minimum"], json!(-2147483648i64));
        assert_eq!(p["b"]["maximum"], json!(2147483647));
        assert_eq!(p["c"]["maximum"], json!(64));
        assert_eq!(p["d"]["minimum"], json!(0));
        assert!(p["d"].get("maximum").is_none());
        assert!(p["e"].get("minimum").is_none());
    }

    #[test]
    fn a_defaulted_property_is_not_nullable() {
        let mut s = json!({"type": "object", "properties": {
            "target": {"x-kubernetes-int-or-string": true, "nullable": true, "default": "5"},
            "opt": {"type": "string", "nullable": true},
        }});
        harden(&mut s);
        assert!(s["properties"]["target"].get("nullable").is_none());
        assert_eq!(s["properties"]["opt"]["nullable"], json!(true));
    }

    #[test]
    fn the_duration_pattern_accepts_exactly_what_the_parser_accepts_within_bounds() {
        let re = regex_lite(DURATION_PATTERN);
        for ok in [
            "0", "90s", "1m30s", "1.5h", "250ms", "10us", "999999h", "1h0m0.5s",
        ] {
            assert!(re(ok), "{ok} should match");
            ok.parse::<kube::core::Duration>()
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "60", "", "-5s", "+5s", "1d", "s", "1e3s", "1234567h", ".5s", "5.s",
        ] {
            assert!(!re(bad), "{bad} should not match");
        }
    }

    /// A matcher for the test, with the `jsonschema` crate (the validator's regex engine).
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let v = jsonschema::validator_for(&json!({"type": "string", "pattern": pattern}))
            .expect("pattern compiles");
        move |s| v.is_valid(&json!(s))
    }
}
