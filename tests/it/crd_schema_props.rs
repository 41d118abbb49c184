//! Every object that the generated CRD schema and its CEL rules accept deserializes into the
//! Rust types. One stored object the types reject stops kube-runtime's watcher of the whole
//! kind (issue 13), so the schema must never be looser than the types.
//!
//! The objects come from the CRD's `openAPIV3Schema` itself, not from the Rust types: a
//! generator walks types, enums, formats, patterns, bounds, lengths, `required`, `nullable`,
//! `default`, maps and lists (boundary values included), applies defaults as the apiserver
//! does, keeps the objects whose `x-kubernetes-validations` rules pass when evaluated with
//! the `cel` crate (an engine independent of the kube validator in `src/api/validate.rs`),
//! and deserializes each into `InferenceService` / `BenchmarkRun`.
//!
//! What the apiserver does that the generator models:
//! - integers are int64 whatever their `format` (it ignores `int32` / `uint32` on CRDs);
//! - `format: date-time` accepts the layouts of Go's strfmt (also without a time zone);
//! - rules are not evaluated on `null`, a rule error rejects the object, transition rules
//!   (`oldSelf`) only run on update (checked here as an update that changes nothing);
//! - a schema keyword the generator does not know fails the test instead of being ignored,
//!   and so does a CEL function the `cel` crate lacks (the rules use none today).
//!
//! The generator is seeded (deterministic in CI; `CRD_PROPS_SEED=n` for another sequence);
//! strings for a `pattern` come from proptest's regex strategy. `PROPTEST_CASES` sets the
//! number of accepted objects per kind (default 1000). `CRD_SCHEMA_FILE=path` runs against
//! another CRD YAML, e.g. an older one: `git show REV:crds/inferops.dev.yaml > /tmp/old.yaml`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use inferops::api::{BenchmarkRun, InferenceService, crds, parse_documents};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// Length bound of strings whose schema has no `maxLength`.
const STRING_MAX: usize = 24;
/// Length bound of lists whose schema has no `maxItems` (the bound itself is also tried).
const LIST_MAX: usize = 3;

/// Keywords the generator understands; anything else in a schema fails the test.
const KNOWN_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "description",
    "title",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "nullable",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
];

/// CEL functions of the Kubernetes libraries that the `cel` crate does not provide. A rule
/// using one fails the test with its name, so that a shim is added instead of the rule being
/// silently skipped or counted as a rejection.
const FUNCTIONS_CEL_CRATE_LACKS: &[&str] = &[
    "quantity",
    "isQuantity",
    "url",
    "isURL",
    "ip",
    "isIP",
    "cidr",
    "isCIDR",
    "format",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "join",
    "indexOf",
    "lastIndexOf",
    "substring",
    "trim",
    "isSorted",
    "sum",
    "reverse",
    "find",
    "findAll",
    "semver",
    "isSemver",
];

fn schemas() -> Vec<(String, Value)> {
    let crds: Vec<Value> = match std::env::var("CRD_SCHEMA_FILE") {
        Ok(path) => parse_documents(&std::fs::read_to_string(&path).expect("CRD_SCHEMA_FILE"))
            .expect("CRD YAML"),
        Err(_) => crds()
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect(),
    };
    crds.into_iter()
        .map(|crd| {
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
            (kind, schema)
        })
        .collect()
}

fn obj(s: &Value) -> &Map<String, Value> {
    s.as_object().expect("a schema is an object")
}

fn check_keywords(s: &Map<String, Value>, path: &str) {
    for key in s.keys() {
        assert!(
            KNOWN_KEYWORDS.contains(&key.as_str()),
            "{path}: schema keyword {key:?} is not modelled by the generator; teach it"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Generation: a seeded generator that walks the schema (boundary values often)
// ---------------------------------------------------------------------------------------

struct Gen {
    rng: StdRng,
    cel: Arc<Cel>,
    /// Strings for a `pattern`, from proptest's regex strategy.
    runner: TestRunner,
    regex: HashMap<String, BoxedStrategy<String>>,
    matchers: HashMap<String, jsonschema::Validator>,
}

impl Gen {
    fn new(seed: u64, cel: Arc<Cel>) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            cel,
            runner: TestRunner::new_with_rng(
                Config::default(),
                TestRng::from_seed(RngAlgorithm::XorShift, &seed_bytes(seed)),
            ),
            regex: HashMap::new(),
            matchers: HashMap::new(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())].clone()
    }

    /// A value for `s`. Where `s` carries CEL rules, values are drawn until the rules pass
    /// (rejection sampling per node: the rules only see `self`, so this keeps exactly the
    /// values a whole-object filter would keep, and far more objects pass it).
    fn value(&mut self, s: &Value, path: &str) -> Value {
        if s.get("x-kubernetes-validations").is_none() {
            return self.unchecked(s, path);
        }
        let mut v = Value::Null;
        for _ in 0..50 {
            v = self.unchecked(s, path);
            apply_defaults(s, &mut v);
            if self.cel.rules_here(s, &v, None, path).is_ok() {
                break;
            }
        }
        v
    }

    fn unchecked(&mut self, s: &Value, path: &str) -> Value {
        let s = obj(s);
        check_keywords(s, path);
        if s.get("nullable") == Some(&Value::Bool(true)) && self.chance(0.2) {
            return Value::Null;
        }
        if let Some(Value::Array(values)) = s.get("enum") {
            return self.pick(values);
        }
        if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return if self.chance(0.5) {
                self.integer(s)
            } else {
                self.string(s, path)
            };
        }
        match s.get("type").and_then(Value::as_str) {
            Some("integer") => self.integer(s),
            Some("number") => self.number(s),
            Some("boolean") => Value::Bool(self.chance(0.5)),
            Some("string") => self.string(s, path),
            Some("array") => self.array(s, path),
            Some("object") => self.object(s, path),
            None if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => {
                self.pick(&[json!({}), json!({"k": "v", "n": 1})])
            }
            other => panic!("{path}: schema type {other:?} is not modelled by the generator"),
        }
    }

    /// Integers as the apiserver stores them: int64, within the schema's bounds.
    fn integer(&mut self, s: &Map<String, Value>) -> Value {
        let mut min = bound_i64(s.get("minimum")).unwrap_or(i64::MIN);
        let mut max = bound_i64(s.get("maximum")).unwrap_or(i64::MAX);
        if s.get("exclusiveMinimum") == Some(&Value::Bool(true)) {
            min = min.saturating_add(1);
        }
        if s.get("exclusiveMaximum") == Some(&Value::Bool(true)) {
            max = max.saturating_sub(1);
        }
        let v = match self.rng.random_range(0..4) {
            0 => {
                let mut edges = vec![min, max, min.saturating_add(1), max.saturating_sub(1)];
                edges.extend(
                    [0, 1, 1 << 31, 1 << 32, 5_000_000_000]
                        .into_iter()
                        .filter(|v| (min..=max).contains(v)),
                );
                self.pick(&edges)
            }
            1 => self.rng.random_range(min..=max),
            _ => {
                let lo = min.max(-100);
                let hi = max.min(100).max(lo);
                self.rng.random_range(lo..=hi)
            }
        };
        Value::from(v)
    }

    fn number(&mut self, s: &Map<String, Value>) -> Value {
        let min = s.get("minimum").and_then(Value::as_f64);
        let max = s.get("maximum").and_then(Value::as_f64);
        let excl_min = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
        let excl_max = s.get("exclusiveMaximum") == Some(&Value::Bool(true));
        let within = |v: f64| {
            v.is_finite()
                && min.is_none_or(|m| if excl_min { v > m } else { v >= m })
                && max.is_none_or(|m| if excl_max { v < m } else { v <= m })
        };
        for _ in 0..100 {
            let v = match self.rng.random_range(0..4) {
                0 => {
                    let mut edges =
                        vec![0.0, -0.0, 1.0, -1.0, 0.5, 1e-9, f64::MAX, f64::MIN, 1e300];
                    edges.extend(min);
                    edges.extend(max);
                    Value::from(self.pick(&edges))
                }
                // Whole numbers arrive as JSON integers.
                1 => Value::from(self.rng.random_range(-1000i64..1000)),
                2 => Value::from(self.rng.random_range(-2.0..2.0f64)),
                _ => Value::from(f64::from_bits(self.rng.random::<u64>())),
            };
            if v.as_f64().is_some_and(within) {
                return v;
            }
        }
        panic!("no number within {min:?}..{max:?}")
    }

    fn matches(&mut self, pattern: &str, v: &str) -> bool {
        self.matchers
            .entry(pattern.to_string())
            .or_insert_with(|| {
                jsonschema::validator_for(&json!({"pattern": pattern}))
                    .unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"))
            })
            .is_valid(&json!(v))
    }

    fn matching(&mut self, pattern: &str, path: &str) -> String {
        let strategy = self.regex.entry(pattern.to_string()).or_insert_with(|| {
            let p = pattern.strip_prefix('^').unwrap_or(pattern);
            let p = p.strip_suffix('$').unwrap_or(p);
            proptest::string::string_regex(p)
                .unwrap_or_else(|e| panic!("{path}: pattern {p:?}: {e}"))
                .boxed()
        });
        strategy.new_tree(&mut self.runner).unwrap().current()
    }

    fn string(&mut self, s: &Map<String, Value>, path: &str) -> Value {
        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        let pattern = s.get("pattern").and_then(Value::as_str);
        for _ in 0..1000 {
            let v = match s.get("format").and_then(Value::as_str) {
                Some("date-time") => self.date_time(),
                // Number formats on an int-or-string; the apiserver checks no other.
                Some("int32" | "int64" | "uint32" | "uint64" | "double" | "float") | None => {
                    match pattern {
                        Some(p) => self.matching(p, path),
                        None => {
                            let hi = max.unwrap_or(STRING_MAX).min(STRING_MAX).max(min);
                            let n = self.rng.random_range(min..=hi);
                            match self.rng.random_range(0..6) {
                                0 => (0..n).map(|_| self.rng.random::<char>()).collect(),
                                1 => "x".repeat(max.unwrap_or(STRING_MAX).max(min)),
                                // Strings some rules look for (prefixes, empty, numbers).
                                2 => self
                                    .pick(&[
                                        "",
                                        "0",
                                        "-1",
                                        "http://a",
                                        "https://vllm.ml.svc:8000",
                                        "x",
                                    ])
                                    .to_string(),
                                _ => (0..n).map(|_| self.rng.random_range('a'..='z')).collect(),
                            }
                        }
                    }
                }
                Some(other) => {
                    panic!("{path}: string format {other:?} is not modelled by the generator")
                }
            };
            let n = v.chars().count();
            if n >= min && max.is_none_or(|m| n <= m) && pattern.is_none_or(|p| self.matches(p, &v))
            {
                return Value::String(v);
            }
        }
        panic!("{path}: no string satisfies the schema")
    }

    /// What Go's strfmt accepts as `date-time` (the apiserver's check): RFC 3339 with or
    /// without fraction, `Z` or an offset with or without colon, and the local and
    /// reduced-precision ISO 8601 layouts.
    fn date_time(&mut self) -> String {
        let secs = self.rng.random_range(-62_135_596_800i64..253_402_300_799); // years 1..9999
        let nanos = self.rng.random_range(0u32..1_000_000_000);
        let offset_min = self.rng.random_range(-1439i32..=1439);
        let layout = self.pick(&[
            "%Y-%m-%dT%H:%M:%SZ",
            "%Y-%m-%dT%H:%M:%SZ",
            "%Y-%m-%dT%H:%M:%S%.fZ",
            "%Y-%m-%dT%H:%M:%S%:z",
            "%Y-%m-%dT%H:%M:%S%.6f%z",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%MZ",
            "%Y-%m-%d %H:%M:%S",
        ]);
        let utc = chrono::DateTime::from_timestamp(secs, nanos).expect("in range");
        let offset = chrono::FixedOffset::east_opt(offset_min * 60).expect("offset");
        let t = if layout.ends_with('Z') {
            utc.fixed_offset()
        } else {
            utc.with_timezone(&offset)
        };
        t.format(layout).to_string()
    }

    fn array(&mut self, s: &Map<String, Value>, path: &str) -> Value {
        let items = s.get("items").expect("array has items");
        let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s
            .get("maxItems")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        let hi = max.unwrap_or(LIST_MAX).min(LIST_MAX).max(min);
        let n = match max {
            Some(m) if self.chance(0.1) => m,
            _ => self.rng.random_range(min..=hi),
        };
        let item_path = format!("{path}[]");
        let mut list: Vec<Value> = (0..n).map(|_| self.value(items, &item_path)).collect();
        // The apiserver refuses duplicates in sets and maps: keep the first of each.
        let keys: Vec<&str> = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key_of = |v: &Value| match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => Some(v.clone()),
            Some("map") => Some(Value::Array(keys.iter().map(|k| v[*k].clone()).collect())),
            _ => None,
        };
        let mut seen = Vec::new();
        list.retain(|v| match key_of(v) {
            Some(k) if seen.contains(&k) => false,
            Some(k) => {
                seen.push(k);
                true
            }
            None => true,
        });
        assert!(list.len() >= min, "{path}: minItems with unique keys");
        Value::Array(list)
    }

    fn object(&mut self, s: &Map<String, Value>, path: &str) -> Value {
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties").filter(|v| v.is_object());
        let mut out = Map::new();
        match (props, additional) {
            (Some(_), Some(_)) => panic!("{path}: properties and additionalProperties together"),
            (Some(props), None) => {
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let min = s.get("minProperties").and_then(Value::as_u64).unwrap_or(0) as usize;
                let max = s
                    .get("maxProperties")
                    .and_then(Value::as_u64)
                    .map(|m| m as usize);
                for _ in 0..100 {
                    out.clear();
                    for (name, sub) in props {
                        if required.contains(&name.as_str()) || self.chance(0.5) {
                            let v = self.value(sub, &format!("{path}.{name}"));
                            out.insert(name.clone(), v);
                        }
                    }
                    if out.len() >= min && max.is_none_or(|m| out.len() <= m) {
                        break;
                    }
                }
            }
            (None, Some(values)) => {
                let n = self.rng.random_range(0..=LIST_MAX);
                for _ in 0..n {
                    let key = if self.chance(0.75) {
                        self.matching("[a-z][a-z0-9./-]{0,20}", path)
                    } else {
                        (0..self.rng.random_range(0..10))
                            .map(|_| self.rng.random::<char>())
                            .collect()
                    };
                    let v = self.value(values, &format!("{path}[{key}]"));
                    out.insert(key, v);
                }
            }
            (None, None) => {}
        }
        Value::Object(out)
    }

    /// DNS-1123 subdomains: what the apiserver accepts as the name of a custom resource;
    /// often at the limits of the derived names.
    fn name(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0..=2 => self.matching("[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", "metadata.name"),
            3 => self.matching(
                "[a-z0-9]{1,10}(\\.[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?){1,3}",
                "metadata.name",
            ),
            _ => {
                let n = self.pick(&[42usize, 43, 44, 46, 60, 62, 63, 64, 100, 253]);
                format!("a{}", "b".repeat(n - 1))
            }
        }
    }
}

fn seed_bytes(seed: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..].copy_from_slice(&seed.rotate_left(17).to_le_bytes());
    out
}

fn bound_i64(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_f64).map(|f| {
        if f >= i64::MAX as f64 {
            i64::MAX
        } else if f <= i64::MIN as f64 {
            i64::MIN
        } else {
            f as i64
        }
    })
}

// ---------------------------------------------------------------------------------------
// Apiserver steps: defaulting, then CEL
// ---------------------------------------------------------------------------------------

/// Fill missing properties from their `default`, recursively (also inside defaults).
fn apply_defaults(s: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if !map.contains_key(name)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(sub, child);
                    }
                }
            } else if let Some(values) = s.get("additionalProperties").filter(|v| v.is_object()) {
                map.values_mut().for_each(|c| apply_defaults(values, c));
            }
        }
        Value::Array(list) => {
            if let Some(items) = s.get("items") {
                list.iter_mut().for_each(|c| apply_defaults(items, c));
            }
        }
        _ => {}
    }
}

static EMPTY: Value = Value::Null;

/// A JSON value as the apiserver hands it to CEL: typed by the schema (a whole number in a
/// `number` field is a double, a `date-time` string a timestamp).
fn to_cel(s: &Value, v: &Value) -> cel::Value {
    use cel::Value as C;
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Number(n) => {
            if s.get("type").and_then(Value::as_str) == Some("number") {
                C::Float(n.as_f64().unwrap())
            } else if let Some(i) = n.as_i64() {
                C::Int(i)
            } else {
                C::Float(n.as_f64().unwrap())
            }
        }
        Value::String(text) => {
            if s.get("format").and_then(Value::as_str) == Some("date-time")
                && let Ok(t) = chrono::DateTime::parse_from_rfc3339(text)
            {
                C::Timestamp(t)
            } else {
                C::String(Arc::new(text.clone()))
            }
        }
        Value::Array(list) => {
            let items = s.get("items").unwrap_or(&EMPTY);
            C::List(Arc::new(list.iter().map(|x| to_cel(items, x)).collect()))
        }
        Value::Object(map) => {
            let mut out: HashMap<cel::objects::Key, C> = HashMap::new();
            for (k, x) in map {
                let sub = s
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| s.get("additionalProperties"))
                    .unwrap_or(&EMPTY);
                out.insert(
                    cel::objects::Key::String(Arc::new(k.clone())),
                    to_cel(sub, x),
                );
            }
            C::Map(cel::objects::Map { map: Arc::new(out) })
        }
    }
}

/// The compiled rules, and how often each outcome happened (printed at the end).
struct Cel {
    /// The standard environment, built once (building it per evaluation dominates the run).
    env: Arc<cel::Env>,
    programs: std::sync::Mutex<HashMap<String, Arc<cel::Program>>>,
    transition_rules_skipped: AtomicUsize,
}

impl Default for Cel {
    fn default() -> Self {
        Cel {
            env: Arc::new(cel::Env::stdlib()),
            programs: Default::default(),
            transition_rules_skipped: AtomicUsize::new(0),
        }
    }
}

impl Cel {
    fn program(&self, rule: &str) -> Arc<cel::Program> {
        let mut cache = self.programs.lock().unwrap();
        cache
            .entry(rule.to_string())
            .or_insert_with(|| {
                let p = self
                    .env
                    .compile(rule)
                    .unwrap_or_else(|e| panic!("CEL rule {rule:?} does not parse: {e:?}"));
                for f in p.references().functions() {
                    assert!(
                        !FUNCTIONS_CEL_CRATE_LACKS.contains(&f),
                        "CEL rule {rule:?} uses {f}(), which the cel crate lacks: add a shim \
                         to this test before relying on the rule"
                    );
                }
                Arc::new(p)
            })
            .clone()
    }

    /// `Err(why)` when the apiserver would refuse `v` (a rule false or erroring).
    fn check(&self, s: &Value, v: &Value, old: Option<&Value>, path: &str) -> Result<(), String> {
        if v.is_null() {
            return Ok(());
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let sub = s
                        .get("properties")
                        .and_then(|p| p.get(k))
                        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()));
                    if let Some(sub) = sub {
                        let old_child = old.and_then(|o| o.get(k));
                        self.check(sub, child, old_child, &format!("{path}.{k}"))?;
                    }
                }
            }
            Value::Array(list) => {
                if let Some(items) = s.get("items") {
                    for (i, child) in list.iter().enumerate() {
                        // Lists without map keys have no correlated old element.
                        self.check(items, child, None, &format!("{path}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
        self.rules_here(s, v, old, path)
    }

    /// The rules of this node only (its children are checked by [`Cel::check`]).
    fn rules_here(
        &self,
        s: &Value,
        v: &Value,
        old: Option<&Value>,
        path: &str,
    ) -> Result<(), String> {
        if v.is_null() {
            return Ok(());
        }
        let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) else {
            return Ok(());
        };
        for rule in rules {
            let text = rule["rule"].as_str().expect("a rule has a rule");
            let program = self.program(text);
            let transition = program.references().has_variable("oldSelf");
            if transition && old.is_none() {
                self.transition_rules_skipped
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut ctx = cel::Context::with_env(self.env.clone());
            ctx.add_variable_from_value("self", to_cel(s, v));
            if let Some(old) = old {
                ctx.add_variable_from_value("oldSelf", to_cel(s, old));
            }
            match program.execute(&ctx) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => {
                    return Err(format!(
                        "{path}: {}",
                        rule["message"].as_str().unwrap_or(text)
                    ));
                }
                Ok(other) => panic!("{path}: rule {text:?} returned {other:?}, not a bool"),
                // A `null` (a nullable field set to null is present for `has()`) has no
                // overloads on the apiserver either: the object is refused with this error.
                Err(cel::ExecutionError::NoSuchOverload(o))
                    if o.argument_types().iter().any(|t| t == "null_type") =>
                {
                    return Err(format!("{path}: rule {text:?} errs: {o}"));
                }
                Err(
                    e @ (cel::ExecutionError::UndeclaredReference(_)
                    | cel::ExecutionError::NoSuchOverload(_)),
                ) => panic!(
                    "{path}: rule {text:?}: the cel crate cannot evaluate it ({e}); handle it \
                     explicitly in this test"
                ),
                Err(e) => return Err(format!("{path}: rule {text:?} errs: {e}")),
            }
        }
        Ok(())
    }
}

/// The object as the apiserver sees it at the root of the schema: CEL on the root only sees
/// `apiVersion`, `kind`, `metadata.name` and `metadata.generateName`.
fn root_view(object: &Value) -> Value {
    let mut v = object.clone();
    v["metadata"] = json!({"name": object["metadata"]["name"]});
    v
}

fn run_kind<T: serde::de::DeserializeOwned>(kind: &str) {
    let (_, schema) = schemas()
        .into_iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let mut root = schema.clone();
    // The apiserver validates metadata itself; the CRD's root has only spec and status.
    root["properties"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "spec" || k == "status");
    // The root's rules (on metadata.name) are checked on the whole object below.
    root.as_object_mut()
        .unwrap()
        .remove("x-kubernetes-validations");
    let cases: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("CRD_PROPS_SEED")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(13);
    let cel = Arc::new(Cel::default());
    let mut generator = Gen::new(seed, cel.clone());
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted = 0usize;
    let mut generated = 0usize;
    while accepted < cases {
        generated += 1;
        assert!(
            generated <= cases * 50,
            "{kind}: only {accepted} of {generated} objects passed the CEL rules: {refusals:#?}"
        );
        let mut object = generator.value(&root, kind);
        let map = object.as_object_mut().unwrap();
        map.insert("apiVersion".into(), json!("inferops.dev/v1alpha1"));
        map.insert("kind".into(), json!(kind));
        let name = generator.name();
        map.insert(
            "metadata".into(),
            json!({"name": name, "namespace": "default"}),
        );
        apply_defaults(&schema, &mut object);
        let view = root_view(&object);
        if let Err(why) = cel.check(&schema, &view, None, kind) {
            let key = why.split(": ").take(2).collect::<Vec<_>>().join(": ");
            *refusals.entry(key).or_default() += 1;
            continue;
        }
        // An update that changes nothing passes the transition rules.
        if let Err(why) = cel.check(&schema, &view, Some(&view), kind) {
            panic!("{kind}: a no-op update is refused: {why}");
        }
        accepted += 1;
        if let Err(e) = serde_json::from_value::<T>(object.clone()) {
            panic!(
                "object {generated} (seed {seed}): the apiserver accepts this {kind} but the Rust \
                 types reject it: {e}\n{}",
                serde_json::to_string_pretty(&object).unwrap()
            );
        }
    }
    eprintln!(
        "{kind}: {accepted} of {generated} generated objects passed the CEL rules and \
         deserialized; {} transition rule evaluations skipped on create; refusals: {refusals:#?}",
        cel.transition_rules_skipped.load(Ordering::Relaxed),
    );
}

#[test]
fn every_inference_service_the_crd_accepts_deserializes() {
    run_kind::<InferenceService>("InferenceService");
}

#[test]
fn every_benchmark_run_the_crd_accepts_deserializes() {
    run_kind::<BenchmarkRun>("BenchmarkRun");
}
