//! Names at their limits (issue 13): an InferenceService with the longest name its CRD
//! accepts (63, a DNS-1035 label), and a BenchmarkRun with the longest (253) in a scaling
//! study at the largest replica count with the most load pods, render objects whose names,
//! label values and pod hostnames a real apiserver accepts (checked with the strict
//! harness's own rules).

use inferops::api::{parse_documents, validate_object};
use inferops::cli::render::{RenderOptions, render_documents};
use serde_json::{Value, json};

use crate::support::strict::{ApiPath, check_write};

/// The API path a rendered object is written to.
fn path_of(obj: &Value) -> ApiPath {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = match kind {
        "Deployment" => "deployments",
        "Service" => "services",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        "PodMonitor" => "podmonitors",
        "ScaledObject" => "scaledobjects",
        "ConfigMap" => "configmaps",
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Job" => "jobs",
        other => panic!("rendered kind {other}: add its resource here"),
    };
    ApiPath {
        group: group.to_string(),
        version: version.to_string(),
        namespace: Some("default".into()),
        resource: resource.to_string(),
        name: None,
        subresource: None,
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn render_all(yaml: &str) -> Vec<Value> {
    for doc in parse_documents(yaml).unwrap() {
        validate_object(&doc, None).unwrap_or_else(|e| panic!("the CRD refuses it: {e:?}"));
    }
    let out = render_documents(yaml, &RenderOptions::default())
        .unwrap_or_else(|e| panic!("render failed: {e:#?}"));
    parse_documents(&out.yaml).unwrap()
}

fn assert_accepted(objects: &[Value]) {
    assert!(!objects.is_empty());
    for obj in objects {
        let path = path_of(obj);
        if let Err(refusal) = check_write(&path, None, obj) {
            let body =
                futures::executor::block_on(http_body_util::BodyExt::collect(refusal.into_body()))
                    .unwrap()
                    .to_bytes();
            panic!(
                "{} {} would be refused: {}",
                obj["kind"],
                obj["metadata"]["name"],
                String::from_utf8_lossy(&body)
            );
        }
        if obj["kind"] == "Job" {
            // An Indexed Job's pods get the hostname JOB-INDEX, a DNS label.
            let name = obj["metadata"]["name"].as_str().unwrap();
            let pods = obj["spec"]["parallelism"].as_i64().unwrap_or(1);
            let hostname = format!("{name}-{}", pods - 1);
            assert!(is_dns_label(&hostname), "pod hostname {hostname:?}");
        }
    }
}

#[test]
fn the_longest_inference_service_name_renders_names_within_limits() {
    let name = format!("q{}", "w".repeat(62));
    let isvc = json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "model": {"name": "Qwen/Qwen2.5-0.5B-Instruct", "cache": {"size": "50Gi", "accessMode": "ReadWriteMany"}},
            "accelerator": {"type": "nvidia-l4", "platform": "gke", "count": 1},
            "replicas": 3,
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "provider": "keda",
                            "prometheusUrl": "http://prometheus:9090"},
        }
    });
    let objects = render_all(&serde_yaml::to_string(&isvc).unwrap());
    assert!(objects.iter().any(|o| o["kind"] == "Service"));
    assert_accepted(&objects);
}

#[test]
fn the_longest_benchmark_run_name_renders_names_within_limits() {
    let name = format!("r{}", "u".repeat(252));
    let run = json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "target": {"url": "http://vllm.ml.svc:8000", "model": "qwen"},
            "load": {"mode": "concurrency", "concurrency": [1, 2]},
            "scaling": {"replicas": [1, 2147483647]},
            "loadgen": {"parallelism": 64},
        }
    });
    let objects = render_all(&serde_yaml::to_string(&run).unwrap());
    assert!(objects.iter().filter(|o| o["kind"] == "Job").count() == 2);
    assert_accepted(&objects);
}

#[test]
fn the_checks_refuse_what_the_apiserver_refuses() {
    // The test above must be able to fail: the same checks on a too-long Job name.
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                     "metadata": {"name": "j".repeat(64), "namespace": "default"}});
    assert!(check_write(&path_of(&job), None, &job).is_err());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "c", "labels": {"inferops.dev/benchmark-run": "x".repeat(64)}}});
    assert!(check_write(&path_of(&cm), None, &cm).is_err());
}
