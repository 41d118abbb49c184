//! The CRD contract: generated YAML in `crds/` matches the code, every example is valid,
//! and every CEL rule rejects a violating object with a message naming the field.

use std::path::{Path, PathBuf};

use inferops::api::{
    BenchmarkRun, InferenceService, crds, crds_yaml, parse_documents, validate_object,
};
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn crds_directory_matches_the_code() {
    let on_disk = std::fs::read_to_string(repo("crds/inferops.dev.yaml")).expect(
        "crds/inferops.dev.yaml exists (regenerate: cargo run -- crds > crds/inferops.dev.yaml)",
    );
    assert!(
        on_disk == crds_yaml(),
        "crds/inferops.dev.yaml drifted from src/api: run `cargo run -- crds > crds/inferops.dev.yaml`"
    );
}

#[test]
fn crds_have_subresources_columns_and_names() {
    let [isvc, bench] = <[_; 2]>::try_from(crds()).unwrap();
    let v = |crd| serde_json::to_value(crd).unwrap();
    let isvc = v(isvc);
    let bench = v(bench);
    assert_eq!(isvc["spec"]["names"]["shortNames"], json!(["infsvc"]));
    assert_eq!(bench["spec"]["names"]["shortNames"], json!(["bench"]));
    assert_eq!(isvc["spec"]["names"]["categories"], json!(["inferops"]));
    assert_eq!(bench["spec"]["names"]["categories"], json!(["inferops"]));
    let ver = &isvc["spec"]["versions"][0];
    assert_eq!(ver["subresources"]["status"], json!({}));
    assert_eq!(
        ver["subresources"]["scale"],
        json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
               "labelSelectorPath": ".status.selector"})
    );
    let cols = |crd: &Value| -> Vec<String> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        cols(&isvc),
        [
            "Model",
            "Accelerator",
            "Ready",
            "Replicas",
            "Endpoint",
            "Age"
        ]
    );
    assert_eq!(
        cols(&bench),
        [
            "Target",
            "Phase",
            "Step",
            "Peak tok/s",
            "TTFT p95 (ms)",
            "Age"
        ]
    );
    assert_eq!(
        bench["spec"]["versions"][0]["subresources"]["status"],
        json!({})
    );
}

#[test]
fn every_crd_field_is_documented() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                if sub.get("description").is_none()
                    && !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let mut missing = Vec::new();
    for crd in crds() {
        let v = serde_json::to_value(&crd).unwrap();
        walk(
            &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &crd.spec.names.kind,
            &mut missing,
        );
    }
    // Fields of embedded Kubernetes types (tolerations, resources, ...) carry upstream docs.
    assert!(
        missing.is_empty(),
        "fields without a doc comment: {missing:#?}"
    );
}

fn examples() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("manifests/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in parse_documents(&text).unwrap() {
                out.push((path.clone(), doc));
            }
        }
    }
    assert!(
        out.len() >= 6,
        "expected the six examples, found {}",
        out.len()
    );
    out
}

#[test]
fn every_example_parses_and_passes_schema_and_cel() {
    for (path, doc) in examples() {
        if let Err(errors) = validate_object(&doc, None) {
            panic!("{} rejected: {errors:?}", path.display());
        }
        match doc["kind"].as_str().unwrap() {
            "InferenceService" => {
                serde_json::from_value::<InferenceService>(doc.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            "BenchmarkRun" => {
                serde_json::from_value::<BenchmarkRun>(doc.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            other => panic!("{}: unexpected kind {other}", path.display()),
        }
    }
}

#[test]
fn examples_cover_what_users_asked_for() {
    let docs: Vec<Value> = examples().into_iter().map(|(_, d)| d).collect();
    let find = |pred: &dyn Fn(&Value) -> bool| docs.iter().any(pred);
    assert!(find(&|d| d["spec"]["accelerator"]["type"] == "nvidia-l4"
        && d["spec"]["accelerator"]["platform"] == "gke"
        && d["spec"]["engine"]["gpuMemoryUtilization"] == 0.6
        && d["spec"]["engine"]["maxModelLen"] == 8192));
    assert!(find(&|d| d["spec"]["accelerator"]["type"] == "nvidia-a10g"
        && d["spec"]["model"]["loraAdapters"]
            .as_array()
            .is_some_and(|a| !a.is_empty())));
    assert!(find(&|d| d["spec"]["autoscaling"]["minReplicas"] == 1
        && d["spec"]["autoscaling"]["maxReplicas"] == 4
        && d["spec"]["autoscaling"]["metric"] == "queueDepth"));
    assert!(find(&|d| d["spec"]["load"]["concurrency"]
        == json!([1, 2, 4, 8, 16, 32])
        && d["spec"]["workload"]["inputTokens"] == 256
        && d["spec"]["workload"]["outputTokens"] == 128
        && d["spec"]["workload"]["seed"] == 42));
    assert!(find(
        &|d| d["spec"]["load"]["saturation"]["slo"]["ttftP95"].is_string()
    ));
    assert!(find(
        &|d| d["spec"]["scaling"]["replicas"] == json!([1, 2, 4])
    ));
    assert!(find(
        &|d| d["spec"]["workload"]["conversation"]["turns"] == 4
    ));
    assert!(find(&|d| d["spec"]["workload"]["dataset"]["kind"]
        == "trace"
        && d["spec"]["load"]["traceSpeedups"] == json!([2])));
}

fn minimal_isvc() -> Value {
    json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": "m"},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"},
                 "accelerator": {"type": "nvidia-l4"}}
    })
}

fn minimal_bench() -> Value {
    json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": "b"},
        "spec": {"target": {"inferenceServiceRef": {"name": "qwen"}},
                 "load": {"mode": "concurrency", "concurrency": [1, 2]}}
    })
}

/// Set a JSON pointer path, creating objects on the way.
fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let mut cur = &mut v;
    let parts: Vec<&str> = pointer.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.as_object_mut().unwrap().insert(part.to_string(), value);
            break;
        }
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(part.to_string())
            .or_insert_with(|| json!({}));
    }
    v
}

fn without(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    v
}

/// Assert the object is rejected and one error mentions `needle`.
fn rejected(v: &Value, needle: &str) {
    let errors = validate_object(v, None).expect_err(&format!("should be rejected: {v}"));
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains(needle)),
        "no error mentions {needle:?}: {text:#?}"
    );
}

#[test]
fn minimal_objects_are_valid_and_defaults_apply() {
    validate_object(&minimal_isvc(), None).unwrap();
    validate_object(&minimal_bench(), None).unwrap();
    let isvc: InferenceService = serde_json::from_value(minimal_isvc()).unwrap();
    assert_eq!(isvc.spec.replicas, 1);
    assert_eq!(isvc.spec.accelerator.unwrap().count, 1);
    assert!(isvc.spec.monitoring.pod_monitor);
    let bench: BenchmarkRun = serde_json::from_value(minimal_bench()).unwrap();
    assert_eq!(bench.spec.workload.input_tokens, 256);
    assert_eq!(bench.spec.workload.output_tokens, 128);
    assert!(bench.spec.workload.ignore_eos);
    assert_eq!(bench.spec.max_error_rate, 0.01);
}

#[test]
fn cel_target_needs_exactly_one_of_ref_or_url() {
    let both = with(minimal_bench(), "/spec/target/url", json!("http://x:8000"));
    rejected(&both, "exactly one of inferenceServiceRef or url");
    let neither = without(minimal_bench(), "/spec/target/inferenceServiceRef");
    rejected(&neither, "exactly one of inferenceServiceRef or url");
    let url_only = with(
        without(minimal_bench(), "/spec/target/inferenceServiceRef"),
        "/spec/target/url",
        json!("http://vllm:8000"),
    );
    validate_object(&url_only, None).unwrap();
    let bad_scheme = with(
        without(minimal_bench(), "/spec/target/inferenceServiceRef"),
        "/spec/target/url",
        json!("vllm:8000"),
    );
    rejected(&bad_scheme, "must start with http://");
}

#[test]
fn cel_load_points_match_mode_and_are_positive() {
    rejected(
        &with(minimal_bench(), "/spec/load/concurrency", json!([])),
        "must list at least one load point",
    );
    rejected(
        &with(minimal_bench(), "/spec/load/concurrency", json!([4, 0])),
        "every load point must be > 0",
    );
    let rate = with(
        minimal_bench(),
        "/spec/load",
        json!({"mode": "rate", "concurrency": [1]}),
    );
    rejected(&rate, "spec.load.rate must list at least one load point");
    rejected(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "rate": [5.0, -1.0]}),
        ),
        "every load point must be > 0 req/s",
    );
    validate_object(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "rate": [0.5, 10]}),
        ),
        None,
    )
    .unwrap();
    rejected(
        &with(
            minimal_bench(),
            "/spec/load/saturation",
            json!({"slo": {"ttftP95": "1s"}, "maxRate": 10}),
        ),
        "mode concurrency searches the concurrency and needs maxConcurrency",
    );
    validate_object(
        &with(
            minimal_bench(),
            "/spec/load/saturation",
            json!({"slo": {"ttftP95": "1s"}, "maxConcurrency": 64, "tolerance": 0.1}),
        ),
        None,
    )
    .unwrap();
    rejected(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "saturation": {"slo": {"ttftP95": "1s"}}}),
        ),
        "mode rate searches the request rate and needs maxRate",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "saturation": {"slo": {"ttftP95": "1s"}, "maxRate": 10, "tolerance": 1.5}}),
        ),
        "tolerance must be in (0, 1)",
    );
    rejected(
        &with(
            with(
                minimal_bench(),
                "/spec/load",
                json!({"mode": "rate", "saturation": {"slo": {"ttftP95": "1s"}, "maxRate": 10}}),
            ),
            "/spec/loadgen",
            json!({"parallelism": 2}),
        ),
        "spec.loadgen.parallelism must be 1 with spec.load.saturation",
    );
    rejected(
        &with(minimal_bench(), "/spec/load/goodputSlo", json!({})),
        "set at least one of ttft, tpot, e2e",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "saturation": {"slo": {"minGoodputRatio": 0.9}, "maxRate": 10}}),
        ),
        "minGoodputRatio needs spec.load.goodputSlo",
    );
    validate_object(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "goodputSlo": {"ttft": "200ms", "tpot": "10ms"},
                   "saturation": {"slo": {"minGoodputRatio": 0.9}, "maxRate": 10}}),
        ),
        None,
    )
    .unwrap();
    rejected(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "saturation": {"slo": {}, "maxRate": 10}}),
        ),
        "set at least one of ttftP95",
    );
    rejected(
        &with(
            with(minimal_bench(), "/spec/load/requestsPerStep", json!(10)),
            "/spec/load/durationPerStep",
            json!("30s"),
        ),
        "not both",
    );
}

#[test]
fn cel_autoscaling_bounds() {
    let v = with(
        minimal_isvc(),
        "/spec/autoscaling",
        json!({"minReplicas": 5, "maxReplicas": 2}),
    );
    rejected(&v, "minReplicas must be <= maxReplicas");
    let ok = with(
        minimal_isvc(),
        "/spec/autoscaling",
        json!({"maxReplicas": 4}),
    );
    validate_object(&ok, None).unwrap();
}

#[test]
fn cel_accelerator_and_engine_rules() {
    rejected(
        &with(minimal_isvc(), "/spec/accelerator/count", json!(0)),
        "count must be at least 1",
    );
    rejected(
        &with(
            minimal_isvc(),
            "/spec/engine/gpuMemoryUtilization",
            json!(1.5),
        ),
        "gpuMemoryUtilization must be in (0, 1]",
    );
    rejected(
        &with(
            minimal_isvc(),
            "/spec/engine/gpuMemoryUtilization",
            json!(0.0),
        ),
        "gpuMemoryUtilization must be in (0, 1]",
    );
    validate_object(
        &with(
            minimal_isvc(),
            "/spec/engine/gpuMemoryUtilization",
            json!(1.0),
        ),
        None,
    )
    .unwrap();
    rejected(
        &with(minimal_isvc(), "/spec/engine/tensorParallelSize", json!(2)),
        "tensorParallelSize must not exceed spec.accelerator.count",
    );
    let tp2 = with(
        with(minimal_isvc(), "/spec/engine/tensorParallelSize", json!(2)),
        "/spec/accelerator/count",
        json!(2),
    );
    validate_object(&tp2, None).unwrap();
    rejected(
        &without(minimal_isvc(), "/spec/accelerator"),
        "spec.accelerator is required",
    );
    let sim = with(
        without(minimal_isvc(), "/spec/accelerator"),
        "/spec/engine/kind",
        json!("sim"),
    );
    validate_object(&sim, None).unwrap();
    rejected(
        &with(minimal_isvc(), "/spec/accelerator/spot", json!(true)),
        "spot needs platform gke or eks",
    );
    rejected(
        &with(
            minimal_isvc(),
            "/spec/model/cache",
            json!({"size": "10Gi", "claimName": "x"}),
        ),
        "set exactly one of size",
    );
}

#[test]
fn benchmark_spec_is_immutable() {
    let old = minimal_bench();
    let new = with(old.clone(), "/spec/load/concurrency", json!([1, 2, 4]));
    let errors = validate_object(&new, Some(&old)).expect_err("spec change must be rejected");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("spec is immutable")),
        "{errors:?}"
    );
    validate_object(&old, Some(&old)).unwrap();
}

#[test]
fn schema_rejects_unknown_fields_wrong_types_and_bad_enums() {
    rejected(
        &with(minimal_isvc(), "/spec/engine/maxModelLenght", json!(8192)),
        "maxModelLenght",
    );
    rejected(
        &with(minimal_bench(), "/spec/workload/inputTokens", json!("many")),
        "spec.workload.inputTokens",
    );
    rejected(
        &with(
            minimal_isvc(),
            "/spec/accelerator/type",
            json!("nvidia-rtx4090"),
        ),
        "spec.accelerator.type",
    );
    rejected(
        &with(minimal_bench(), "/spec/load/mode", json!("burst")),
        "spec.load.mode",
    );
    rejected(&without(minimal_bench(), "/spec/load"), "load");
    // The Rust types agree with the schema on unknown fields.
    let typo = with(minimal_bench(), "/spec/workload/outputTokns", json!(1));
    let err = serde_json::from_value::<BenchmarkRun>(typo).unwrap_err();
    assert!(err.to_string().contains("outputTokns"), "{err}");
}

#[test]
fn wrong_group_or_kind_is_named() {
    rejected(
        &with(
            minimal_isvc(),
            "/apiVersion",
            json!("serving.kserve.io/v1beta1"),
        ),
        "apiVersion",
    );
    rejected(
        &with(minimal_isvc(), "/kind", json!("InferenceServer")),
        "kind",
    );
}

/// Issue 13: objects the schema used to accept and the types reject (each one stored would
/// stop the watcher of its kind) are refused by the schema, naming the field.
#[test]
fn the_schema_refuses_what_the_types_cannot_read() {
    rejected(
        &with(minimal_bench(), "/spec/load/durationPerStep", json!("60")),
        "spec.load.durationPerStep",
    );
    rejected(
        &with(minimal_bench(), "/spec/load/warmup", json!("-5s")),
        "spec.load.warmup",
    );
    // Larger than the parser can add up without overflowing.
    rejected(
        &with(
            minimal_bench(),
            "/spec/load/requestTimeout",
            json!("99999999999999h"),
        ),
        "spec.load.requestTimeout",
    );
    for ok in ["60s", "1m30s", "1.5h", "250ms", "0"] {
        let run = with(minimal_bench(), "/spec/load/durationPerStep", json!(ok));
        validate_object(&run, None).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        serde_json::from_value::<BenchmarkRun>(run).unwrap();
    }
    rejected(
        &with(minimal_isvc(), "/spec/replicas", json!(5_000_000_000u64)),
        "spec.replicas",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/workload/inputTokens",
            json!(5_000_000_000u64),
        ),
        "spec.workload.inputTokens",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/load/concurrency",
            json!([1, 4_294_967_296u64]),
        ),
        "spec.load.concurrency[1]",
    );
    let max = with(
        minimal_bench(),
        "/spec/workload/inputTokens",
        json!(u32::MAX),
    );
    validate_object(&max, None).unwrap();
    serde_json::from_value::<BenchmarkRun>(max).unwrap();
}

/// `autoscaling.target` is a `Quantity` with a default, not an `Option`: its schema must not
/// be `nullable` (the apiserver then drops a `null` and applies the default).
#[test]
fn a_defaulted_field_is_not_nullable() {
    let [isvc, _] = <[_; 2]>::try_from(crds()).unwrap();
    let v = serde_json::to_value(isvc).unwrap();
    let target = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["autoscaling"]["properties"]["target"];
    assert_eq!(target["default"], json!("5"), "{target}");
    assert!(target.get("nullable").is_none(), "{target}");
}

/// Names: an InferenceService's name is its Service's (a DNS-1035 label); a BenchmarkRun's
/// derived names are hash-shortened, but a '.' would end up in pod hostnames. The CRDs refuse
/// such names with a message naming metadata.name (see docs/install.md).
#[test]
fn cel_names_fit_what_the_operator_derives_from_them() {
    let name = |v: Value, n: &str| with(v, "/metadata/name", json!(n));
    // Run names of any length fit: render::benchmark_run::fit shortens derived names.
    validate_object(&name(minimal_bench(), &"b".repeat(253)), None).unwrap();
    rejected(
        &name(minimal_bench(), "run.v1"),
        "metadata.name must contain only lowercase",
    );
    validate_object(&name(minimal_isvc(), &"m".repeat(63)), None).unwrap();
    rejected(
        &name(minimal_isvc(), &"m".repeat(64)),
        "metadata.name must be at most 63",
    );
    rejected(
        &name(minimal_isvc(), "1qwen"),
        "metadata.name must start with a letter",
    );
    rejected(
        &name(minimal_isvc(), "qwen.v1"),
        "metadata.name must start with a letter",
    );
}

#[test]
fn cel_shared_prefix_dataset_and_lengths() {
    let sp = json!({"kind": "sharedPrefix", "sharedPrefix": {"groups": 4, "promptsPerGroup": 8,
        "prefixTokens": 512, "suffixTokens": {"tokens": 64}}});
    validate_object(
        &with(minimal_bench(), "/spec/workload/dataset", sp.clone()),
        None,
    )
    .unwrap();
    rejected(
        &with(
            minimal_bench(),
            "/spec/workload/dataset",
            json!({"kind": "sharedPrefix"}),
        ),
        "kind sharedPrefix needs sharedPrefix",
    );
    let mut stray = sp.clone();
    stray["kind"] = json!("random");
    rejected(
        &with(minimal_bench(), "/spec/workload/dataset", stray),
        "sharedPrefix needs kind sharedPrefix",
    );
    let length = |l: Value| {
        let mut d = sp.clone();
        d["sharedPrefix"]["suffixTokens"] = l;
        with(minimal_bench(), "/spec/workload/dataset", d)
    };
    for ok in [
        json!({"min": 8, "max": 64}),
        json!({"tokens": 64, "stddev": 16}),
        json!({"tokens": 64, "stddev": 16, "min": 8, "max": 128}),
    ] {
        validate_object(&length(ok), None).unwrap();
    }
    rejected(&length(json!({})), "a length needs tokens, or min and max");
    rejected(
        &length(json!({"stddev": 3, "min": 1, "max": 9})),
        "stddev needs tokens",
    );
    rejected(
        &length(json!({"tokens": 64, "max": 99})),
        "min/max with tokens need stddev",
    );
    rejected(&length(json!({"min": 9, "max": 2})), "min must be <= max");
    rejected(
        &length(json!({"tokens": 64, "stddev": 1, "max": 32})),
        "tokens must be <= max",
    );
    rejected(&length(json!({"tokens": -1})), "suffixTokens");
    let mut zero = sp.clone();
    zero["sharedPrefix"]["groups"] = json!(0);
    rejected(
        &with(minimal_bench(), "/spec/workload/dataset", zero),
        "groups",
    );
    rejected(
        &with(
            with(minimal_bench(), "/spec/workload/outputTokens", json!(64)),
            "/spec/workload/outputTokensMax",
            json!(32),
        ),
        "outputTokensMax must be >= outputTokens",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/workload/dataset",
            json!({"kind": "random", "path": "/x.json"}),
        ),
        "configMapRef and path are for file datasets",
    );
}

#[test]
fn cel_gamma_arrivals_need_a_positive_burstiness() {
    let rate = |extra: Value| {
        let mut load = json!({"mode": "rate", "rate": [4]});
        for (k, v) in extra.as_object().unwrap() {
            load[k] = v.clone();
        }
        with(minimal_bench(), "/spec/load", load)
    };
    validate_object(&rate(json!({"arrival": "gamma", "burstiness": 0.5})), None).unwrap();
    rejected(
        &rate(json!({"arrival": "gamma"})),
        "arrival gamma needs burstiness",
    );
    rejected(
        &rate(json!({"burstiness": 2.0})),
        "burstiness needs arrival gamma",
    );
    rejected(
        &rate(json!({"arrival": "gamma", "burstiness": 0.0})),
        "spec.load.burstiness must be in (0, 100]",
    );
}

#[test]
fn cel_conversations_traces_jsonl_and_ramps() {
    let conv = |c: Value| with(minimal_bench(), "/spec/workload/conversation", c);
    validate_object(
        &conv(
            json!({"turns": 4, "turnsMax": 6, "thinkTime": "1s", "thinkTimeMax": "3s",
                     "userTokens": {"tokens": 64, "stddev": 8}}),
        ),
        None,
    )
    .unwrap();
    rejected(
        &conv(json!({"turns": 4, "turnsMax": 2})),
        "conversation.turnsMax must be >= turns",
    );
    rejected(
        &conv(json!({"turns": 4, "thinkTime": "2s", "thinkTimeMax": "500ms"})),
        "conversation.thinkTimeMax must be >= thinkTime",
    );
    rejected(&conv(json!({"turns": 0})), "turns");
    rejected(
        &conv(json!({"turns": 2, "userTokens": {"stddev": 3}})),
        "stddev needs tokens",
    );

    let trace_dataset = json!({"kind": "trace", "path": "/t.jsonl", "blockTokens": 512});
    let trace = |load: Value| {
        with(
            with(
                minimal_bench(),
                "/spec/workload/dataset",
                trace_dataset.clone(),
            ),
            "/spec/load",
            load,
        )
    };
    validate_object(
        &trace(json!({"mode": "rate", "traceSpeedups": [1, 2, 4], "durationPerStep": "5m"})),
        None,
    )
    .unwrap();
    rejected(
        &trace(json!({"mode": "rate", "rate": [1], "durationPerStep": "5m"})),
        "a trace dataset (spec.workload.dataset.kind trace) needs spec.load.traceSpeedups",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/load",
            json!({"mode": "rate", "traceSpeedups": [2], "durationPerStep": "1m"}),
        ),
        "traceSpeedups needs a trace dataset",
    );
    rejected(
        &trace(json!({"mode": "rate", "traceSpeedups": [2]})),
        "traceSpeedups needs durationPerStep",
    );
    rejected(
        &trace(json!({"mode": "rate", "traceSpeedups": [0], "durationPerStep": "1m"})),
        "every speed-up must be > 0",
    );
    rejected(
        &trace(
            json!({"mode": "concurrency", "concurrency": [1], "traceSpeedups": [1],
                      "durationPerStep": "1m"}),
        ),
        "a trace replay is open loop",
    );
    rejected(
        &trace(json!({"mode": "rate", "rate": [3], "traceSpeedups": [1], "durationPerStep": "1m"})),
        "a trace replay is open loop: it needs mode rate, without rate or saturation",
    );
    rejected(
        &with(
            trace(json!({"mode": "rate", "traceSpeedups": [1], "durationPerStep": "1m"})),
            "/spec/workload/conversation",
            json!({"turns": 2}),
        ),
        "a trace replays its own requests",
    );
    rejected(
        &trace(
            json!({"mode": "rate", "traceSpeedups": [1], "durationPerStep": "1m",
                      "ramp": {"duration": "10s"}}),
        ),
        "spec.load.ramp ramps an open-loop rate",
    );
    let mut no_file = trace(json!({"mode": "rate", "traceSpeedups": [1], "durationPerStep": "1m"}));
    no_file["spec"]["workload"]["dataset"] = json!({"kind": "trace"});
    rejected(
        &no_file,
        "kind sharegpt, trace or jsonl needs configMapRef or path",
    );
    rejected(
        &with(
            minimal_bench(),
            "/spec/workload/dataset",
            json!({"kind": "random", "blockTokens": 512}),
        ),
        "blockTokens is for kind trace",
    );
    validate_object(
        &with(
            minimal_bench(),
            "/spec/workload/dataset",
            json!({"kind": "jsonl", "configMapRef": {"name": "p", "key": "p.jsonl"}}),
        ),
        None,
    )
    .unwrap();

    let ramp = |load: Value| with(minimal_bench(), "/spec/load", load);
    validate_object(
        &ramp(json!({"mode": "rate", "rate": [4],
                     "ramp": {"shape": "exponential", "duration": "30s", "measured": true}})),
        None,
    )
    .unwrap();
    rejected(
        &ramp(json!({"mode": "concurrency", "concurrency": [4], "ramp": {"duration": "30s"}})),
        "spec.load.ramp ramps an open-loop rate",
    );
    rejected(
        &ramp(json!({"mode": "rate", "rate": [4], "ramp": {"shape": "steep", "duration": "3s"}})),
        "shape",
    );
    rejected(
        &ramp(json!({"mode": "rate", "rate": [4], "ramp": {}})),
        "duration",
    );
}

#[test]
fn trials_and_records_are_bounded() {
    let load = |extra: Value| {
        let mut load = json!({"mode": "concurrency", "concurrency": [4]});
        for (k, v) in extra.as_object().unwrap() {
            load[k] = v.clone();
        }
        with(minimal_bench(), "/spec/load", load)
    };
    let ok =
        load(json!({"trials": 3, "records": {"enabled": true, "maxBytes": 65536, "itl": true}}));
    validate_object(&ok, None).unwrap();
    let run: BenchmarkRun = serde_json::from_value(ok).unwrap();
    assert_eq!(run.spec.load.trials, Some(3));
    let records = run.spec.load.records.clone().unwrap();
    assert!(records.enabled && records.itl);
    assert_eq!(records.max_bytes, Some(65536));
    rejected(&load(json!({"trials": 0})), "minimum");
    rejected(&load(json!({"trials": 51})), "maximum");
    rejected(
        &load(json!({"records": {"enabled": true, "maxBytes": 100}})),
        "minimum",
    );
    rejected(
        &load(json!({"records": {"enabled": true, "maxBytes": 1048576}})),
        "maximum",
    );
    rejected(
        &load(json!({"records": {"enabled": true, "bytes": 1}})),
        "bytes",
    );
}

#[test]
fn cel_model_mix_names_are_unique_and_weights_positive() {
    let mix = |models: Value| with(minimal_bench(), "/spec/workload/models", models);
    validate_object(
        &mix(json!([{"name": "base", "weight": 70}, {"name": "sql-lora", "weight": 30}])),
        None,
    )
    .unwrap();
    rejected(
        &mix(json!([{"name": "base", "weight": 70}, {"name": "base", "weight": 30}])),
        "every model name must be listed once",
    );
    rejected(
        &mix(json!([{"name": "base", "weight": 0}])),
        "every weight must be > 0",
    );
    rejected(&mix(json!([{"name": "", "weight": 1}])), "name");
}

#[test]
fn cel_cancellation_needs_a_fraction_in_range_and_a_delay() {
    let cancel = |c: Value| with(minimal_bench(), "/spec/workload/cancel", c);
    validate_object(&cancel(json!({"fraction": 0.2, "after": "2s"})), None).unwrap();
    validate_object(&cancel(json!({"fraction": 1.0, "after": "500ms"})), None).unwrap();
    for bad in [0.0, -0.5, 1.5] {
        rejected(
            &cancel(json!({"fraction": bad, "after": "2s"})),
            "spec.workload.cancel.fraction must be in (0, 1]",
        );
    }
    rejected(
        &cancel(json!({"fraction": 0.2, "after": "0s"})),
        "spec.workload.cancel.after must be > 0",
    );
    rejected(&cancel(json!({"fraction": 0.2, "after": "soon"})), "after");
}

#[test]
fn cel_mix_and_cancellation_refuse_conversations_traces_and_jsonl() {
    let mix = json!([{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]);
    let cancel = json!({"fraction": 0.2, "after": "2s"});
    let conv = with(
        minimal_bench(),
        "/spec/workload/conversation",
        json!({"turns": 2}),
    );
    rejected(
        &with(conv.clone(), "/spec/workload/models", mix.clone()),
        "spec.workload.models: a model mix applies to random",
    );
    rejected(
        &with(conv, "/spec/workload/cancel", cancel.clone()),
        "spec.workload.cancel: cancellation applies to random",
    );
    let jsonl = with(
        minimal_bench(),
        "/spec/workload/dataset",
        json!({"kind": "jsonl", "path": "/p.jsonl"}),
    );
    rejected(
        &with(jsonl.clone(), "/spec/workload/models", mix.clone()),
        "spec.workload.models: a model mix applies to random",
    );
    rejected(
        &with(jsonl, "/spec/workload/cancel", cancel.clone()),
        "spec.workload.cancel: cancellation applies to random",
    );
    // The same with the prepared prompt sources is fine.
    let shared = with(minimal_bench(), "/spec/workload/models", mix);
    validate_object(&with(shared, "/spec/workload/cancel", cancel), None).unwrap();
}
