//! Reads a `BenchmarkRun` YAML (the operator's own resource) into a [`Plan`] for
//! `inferops bench -f`. Works on the untyped YAML so the load generator does not depend on the
//! CRD types; fields the local run cannot honour (an `inferenceServiceRef` target, a dataset in
//! a ConfigMap) are reported, and flags may fill them in.

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::plan::Plan;

/// The `spec` of the first `BenchmarkRun` document in `text` (or of the first document when
/// none declares a kind).
pub fn benchmark_run_spec(text: &str) -> anyhow::Result<Value> {
    let mut first = None;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).context("parsing YAML")?;
        if v.is_null() {
            continue;
        }
        if v.get("kind").and_then(Value::as_str) == Some("BenchmarkRun") {
            return spec_of(v);
        }
        if first.is_none() {
            first = Some(v);
        }
    }
    match first {
        Some(v) => spec_of(v),
        None => bail!("no YAML document found"),
    }
}

fn spec_of(v: Value) -> anyhow::Result<Value> {
    match v.get("spec") {
        Some(s) => Ok(s.clone()),
        None => bail!("the document has no `spec`"),
    }
}

fn key(k: &str) -> Value {
    Value::String(k.to_owned())
}

/// Maps a BenchmarkRun `spec` to a plan. `target.url`/`target.model` may come out empty when
/// the spec names an `inferenceServiceRef`; the caller fills them (flags) and validates.
pub fn plan_from_benchmark_run_spec(spec: &Value) -> anyhow::Result<Plan> {
    let mut target = Mapping::new();
    let t = spec.get("target");
    let url = t
        .and_then(|t| t.get("url"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let model = t
        .and_then(|t| t.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("");
    target.insert(key("url"), key(url));
    target.insert(key("model"), key(model));

    let mut workload = spec
        .get("workload")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    if let Some(d) = workload.get("dataset").cloned() {
        workload.insert(key("dataset"), normalize_dataset(&d)?);
    }

    let mut load = spec
        .get("load")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    if !load.contains_key("mode") && load.contains_key("rate") && !load.contains_key("concurrency")
    {
        load.insert(key("mode"), key("rate"));
    }
    if load.contains_key("saturation") && !load.contains_key("mode") {
        load.insert(key("mode"), key("rate"));
    }

    let mut plan = Mapping::new();
    plan.insert(key("target"), Value::Mapping(target));
    plan.insert(key("workload"), Value::Mapping(workload));
    plan.insert(key("load"), Value::Mapping(load));
    serde_yaml::from_value(Value::Mapping(plan))
        .context("mapping the BenchmarkRun spec to a load plan")
}

/// Accepts `random`, `{sharegpt: {path: P}}`, `{type: sharegpt, path: P}`.
fn normalize_dataset(d: &Value) -> anyhow::Result<Value> {
    let sharegpt = |m: &Value| -> anyhow::Result<Value> {
        if m.get("configMapRef").is_some() {
            bail!(
                "a ShareGPT dataset in a ConfigMap needs the cluster; locally use `path` or --dataset"
            );
        }
        let Some(path) = m.get("path") else {
            bail!("workload.dataset sharegpt needs a `path`");
        };
        let mut inner = Mapping::new();
        inner.insert(key("path"), path.clone());
        if let Some(v) = m.get("outputFromDataset") {
            inner.insert(key("outputFromDataset"), v.clone());
        }
        let mut outer = Mapping::new();
        outer.insert(key("sharegpt"), Value::Mapping(inner));
        Ok(Value::Mapping(outer))
    };
    match d {
        Value::String(s) if s == "random" => Ok(d.clone()),
        Value::String(s) if s == "sharegpt" => bail!("workload.dataset sharegpt needs a `path`"),
        Value::Mapping(m) if m.contains_key("sharegpt") => {
            sharegpt(m.get("sharegpt").unwrap_or(&Value::Null))
        }
        Value::Mapping(m) if m.get("type").and_then(Value::as_str) == Some("sharegpt") => {
            sharegpt(d)
        }
        Value::Mapping(m) if m.get("type").and_then(Value::as_str) == Some("random") => {
            Ok(key("random"))
        }
        other => bail!("unsupported workload.dataset {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::plan::{Api, Dataset, Mode, TokenCount};
    use std::time::Duration;

    const RUN: &str = r#"
apiVersion: inferops.dev/v1alpha1
kind: InferenceService
metadata: {name: other}
spec: {}
---
apiVersion: inferops.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: sweep}
spec:
  target: {url: "http://qwen:8000", model: qwen}
  workload: {api: chat, dataset: random, inputTokens: 256, outputTokens: 128,
             ignoreEos: true, seed: 42, stream: true}
  load:
    mode: concurrency
    concurrency: [1, 2, 4]
    requestsPerStep: 200
    warmup: 10s
    requestTimeout: 60s
  scaling: {replicas: [1, 2]}
  loadgen: {parallelism: 2}
  prometheus: {url: "http://prom:9090"}
"#;

    #[test]
    fn maps_a_benchmark_run() {
        let spec = benchmark_run_spec(RUN).unwrap();
        let p = plan_from_benchmark_run_spec(&spec).unwrap();
        p.validate().unwrap();
        assert_eq!(p.target.url, "http://qwen:8000");
        assert_eq!(p.workload.api, Api::Chat);
        assert_eq!(p.workload.output_tokens, TokenCount::Fixed(128));
        assert_eq!(p.load.concurrency, [1, 2, 4]);
        assert_eq!(p.load.warmup, Duration::from_secs(10));
        assert_eq!(p.requests_per_step(), Some(200));
    }

    #[test]
    fn rate_and_saturation_and_sharegpt() {
        let spec: Value = serde_yaml::from_str(
            r#"
target: {inferenceServiceRef: {name: qwen}}
workload: {dataset: {type: sharegpt, path: /data/sg.json}}
load: {saturation: {slo: {ttftP95: 500ms, itlP95: 50ms}, maxRate: 100}, durationPerStep: 60s}
"#,
        )
        .unwrap();
        let p = plan_from_benchmark_run_spec(&spec).unwrap();
        assert_eq!(p.load.mode, Mode::Rate);
        assert_eq!(p.target.url, "");
        assert!(p.validate().is_err(), "empty url must not validate");
        assert!(matches!(p.workload.dataset, Dataset::Sharegpt { .. }));
        let s = p.load.saturation.unwrap();
        assert_eq!(s.slo.ttft_p95, Some(Duration::from_millis(500)));
        let spec: Value = serde_yaml::from_str("load: {rate: [5, 10]}").unwrap();
        assert_eq!(
            plan_from_benchmark_run_spec(&spec).unwrap().load.mode,
            Mode::Rate
        );
    }

    #[test]
    fn unusable_inputs_are_explained() {
        let spec: Value =
            serde_yaml::from_str("workload: {dataset: {sharegpt: {configMapRef: {name: x}}}}")
                .unwrap();
        let e = plan_from_benchmark_run_spec(&spec).unwrap_err();
        assert!(format!("{e:#}").contains("ConfigMap"));
        assert!(benchmark_run_spec("kind: BenchmarkRun\n").is_err());
        assert!(benchmark_run_spec("").is_err());
        let spec: Value = serde_yaml::from_str("load: {requestTimeout: soon}").unwrap();
        assert!(plan_from_benchmark_run_spec(&spec).is_err());
    }
}
