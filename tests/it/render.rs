//! Renderers: golden files for every InferenceService example, targeted assertions on the
//! objects, render errors that name the field and the fix, and the `inferops render` CLI.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test --test render`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use inferops::api::{
    AcceleratorSpec, AcceleratorType, AutoscalingSpec, EngineKind, InferenceService,
    InferenceServiceSpec, ModelSpec, Platform, parse_documents,
};
use inferops::cli::render::{RenderOptions, render_documents};
use inferops::render::inference_service::{Rendered, VLLM_IMAGE, render};
use inferops::render::{MonitoringStack, RenderContext, RenderError};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Value, json};

const TEST_IMAGE: &str = "ghcr.io/inferops/inferops:test";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn ctx() -> RenderContext {
    RenderContext {
        operator_image: TEST_IMAGE.into(),
        ..RenderContext::default()
    }
}

fn example(file: &str) -> InferenceService {
    let text = std::fs::read_to_string(repo(&format!("manifests/examples/{file}"))).unwrap();
    let doc = parse_documents(&text).unwrap().remove(0);
    serde_json::from_value(doc).unwrap()
}

fn with_uid(mut isvc: InferenceService) -> InferenceService {
    isvc.metadata.uid = Some("0000-uid".into());
    isvc
}

fn pod_spec(r: &Rendered) -> PodSpec {
    r.deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap()
}

fn args(r: &Rendered) -> Vec<String> {
    pod_spec(r).containers[0].args.clone().unwrap()
}

const EXAMPLES: [&str; 4] = [
    "infsvc-gke-l4.yaml",
    "infsvc-eks-g5-lora.yaml",
    "infsvc-autoscaling.yaml",
    "infsvc-sim.yaml",
];

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for file in EXAMPLES {
        let text = std::fs::read_to_string(repo(&format!("manifests/examples/{file}"))).unwrap();
        let opts = RenderOptions {
            namespace: None,
            context: ctx(),
        };
        let out = render_documents(&text, &opts).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let golden = repo(&format!("tests/golden/{file}"));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &out.yaml).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != out.yaml {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "rendered output differs from tests/golden/ for {stale:?}; review with \
         `cargo run -- render -f manifests/examples/<file> --operator-image {TEST_IMAGE}` and \
         regenerate with `UPDATE_GOLDEN=1 cargo test --test render`"
    );
}

#[test]
fn gke_l4_deployment() {
    let r = render(&with_uid(example("infsvc-gke-l4.yaml")), &ctx()).unwrap();
    let pod = pod_spec(&r);
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(VLLM_IMAGE));
    assert_ne!(
        VLLM_IMAGE, "vllm/vllm-openai:v0.11.0",
        "a current vLLM release"
    );
    // The image's entrypoint is `vllm serve`: the model is the positional first argument.
    assert_eq!(args(&r)[0], "Qwen/Qwen2.5-0.5B-Instruct");
    assert!(
        !args(&r).contains(&"--model".to_string()),
        "--model is deprecated"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "2");
    assert_eq!(requests["memory"].0, "10Gi");
    let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 30);
    assert!(pod.termination_grace_period_seconds.unwrap() > 30);
    // One replica on a ReadWriteOnce cache: Recreate, no spare GPU needed; the progress
    // deadline is above the startup probe's budget.
    let dep = r.deployment.spec.as_ref().unwrap();
    assert_eq!(
        dep.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    let ns = pod.node_selector.as_ref().unwrap();
    assert_eq!(ns["cloud.google.com/gke-accelerator"], "nvidia-l4");
    let tol = &pod.tolerations.as_ref().unwrap()[0];
    assert_eq!(tol.key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(tol.operator.as_deref(), Some("Exists"));
    assert_eq!(tol.effect.as_deref(), Some("NoSchedule"));
    let a = args(&r);
    let flag = |f: &str| a[a.iter().position(|x| x == f).unwrap() + 1].clone();
    assert_eq!(flag("--served-model-name"), "qwen");
    assert_eq!(flag("--port"), "8000");
    assert_eq!(flag("--gpu-memory-utilization"), "0.6");
    assert_eq!(flag("--max-model-len"), "8192");
    assert_eq!(r.deployment.spec.as_ref().unwrap().replicas, Some(1));
    // Probes: a generous startup probe (>= 30 min), readiness on /health.
    let sp = c.startup_probe.as_ref().unwrap();
    let budget = sp.failure_threshold.unwrap() * sp.period_seconds.unwrap();
    assert!((1800..=3600).contains(&budget), "startup budget {budget}s");
    assert!(
        r.deployment
            .spec
            .as_ref()
            .unwrap()
            .progress_deadline_seconds
            .unwrap()
            > budget
    );
    let rp = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        rp.http_get.as_ref().unwrap().path.as_deref(),
        Some("/health")
    );
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 8000)
    );
    // Cache PVC mounted at the HF cache.
    let pvc = r.pvc.as_ref().unwrap();
    assert_eq!(pvc.metadata.name.as_deref(), Some("qwen-hf-cache"));
    assert_eq!(
        pvc.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard-rwo")
    );
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/root/.cache/huggingface")
    );
    // Single replica: no PDB; no autoscaling: no HPA; monitoring default: PodMonitor.
    assert!(r.pdb.is_none());
    assert!(r.hpa.is_none());
    assert_eq!(r.pod_monitor.as_ref().unwrap()["kind"], "PodMonitor");
    // Service on 8000 named http.
    let sp = &r.service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((sp.name.as_deref(), sp.port), (Some("http"), 8000));
}

#[test]
fn every_object_has_labels_and_a_controller_owner_reference() {
    for file in EXAMPLES {
        let r = render(&with_uid(example(file)), &ctx()).unwrap();
        for obj in r.to_values() {
            let refs = &obj["metadata"]["ownerReferences"];
            assert_eq!(refs[0]["uid"], "0000-uid", "{file} {}", obj["kind"]);
            assert_eq!(refs[0]["controller"], true);
            assert_eq!(refs[0]["kind"], "InferenceService");
            assert_eq!(refs[0]["apiVersion"], "inferops.dev/v1alpha1");
            let labels = &obj["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/managed-by"], "inferops");
            assert!(labels["inferops.dev/inference-service"].is_string());
            assert!(labels["app.kubernetes.io/instance"].is_string());
            assert!(labels["app.kubernetes.io/name"].is_string());
        }
    }
    // Without a uid (rendering a file) there is nothing to reference.
    let r = render(&example("infsvc-gke-l4.yaml"), &ctx()).unwrap();
    assert!(
        r.to_values()
            .iter()
            .all(|o| o["metadata"].get("ownerReferences").is_none())
    );
}

#[test]
fn eks_g5_lora_and_token_from_secret() {
    let r = render(&example("infsvc-eks-g5-lora.yaml"), &ctx()).unwrap();
    let pod = pod_spec(&r);
    assert_eq!(
        pod.node_selector.as_ref().unwrap()["karpenter.k8s.aws/instance-gpu-name"],
        "a10g"
    );
    let a = args(&r);
    let i = a.iter().position(|x| x == "--enable-lora").unwrap();
    assert_eq!(a[i + 1], "--lora-modules");
    assert_eq!(a[i + 2], "sql=yard1/llama-2-7b-sql-lora-test");
    assert_eq!(&a[a.len() - 2..], ["--max-lora-rank", "64"]);
    assert!(a.windows(2).any(|w| w == ["--dtype", "half"]));
    let env = pod.containers[0].env.clone().unwrap();
    let token = env.iter().find(|e| e.name == "HF_TOKEN").unwrap();
    assert!(token.value.is_none(), "HF_TOKEN must never be a literal");
    let sel = token
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("hf-token", "token"));
}

#[test]
fn autoscaling_leaves_replicas_to_the_hpa() {
    let r = render(&example("infsvc-autoscaling.yaml"), &ctx()).unwrap();
    assert_eq!(r.deployment.spec.as_ref().unwrap().replicas, None);
    let yaml = serde_yaml::to_string(&r.deployment).unwrap();
    assert!(!yaml.contains("replicas"), "{yaml}");
    let hpa = serde_json::to_value(r.hpa.as_ref().unwrap()).unwrap();
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(hpa["spec"]["maxReplicas"], 4);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "qwen-autoscaled");
    let m = &hpa["spec"]["metrics"][0];
    assert_eq!(m["type"], "Pods");
    assert_eq!(m["pods"]["metric"]["name"], "vllm_num_requests_waiting");
    assert_eq!(
        m["pods"]["target"],
        json!({"type": "AverageValue", "averageValue": "5"})
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        300
    );
    assert!(r.pdb.is_some(), "up to 4 replicas: a PDB");
    assert!(r.scaled_object.is_none());
}

#[test]
fn keda_provider_renders_a_scaled_object() {
    let mut isvc = example("infsvc-autoscaling.yaml");
    let a = isvc.spec.autoscaling.as_mut().unwrap();
    a.provider = inferops::api::AutoscalingProvider::Keda;
    a.prometheus_url = Some("http://prom:9090".into());
    let r = render(&isvc, &ctx()).unwrap();
    assert!(r.hpa.is_none());
    let so = r.scaled_object.unwrap();
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["spec"]["maxReplicaCount"], 4);
    let t = &so["spec"]["triggers"][0];
    assert_eq!(t["type"], "prometheus");
    assert_eq!(t["metadata"]["threshold"], "5");
    assert!(
        t["metadata"]["query"]
            .as_str()
            .unwrap()
            .starts_with("sum(vllm:num_requests_waiting{namespace=\"default\"")
    );
    assert!(so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"].is_object());
    // KEDA without a Prometheus URL cannot work.
    let mut isvc = example("infsvc-autoscaling.yaml");
    isvc.spec.autoscaling.as_mut().unwrap().provider = inferops::api::AutoscalingProvider::Keda;
    let e = render(&isvc, &ctx()).unwrap_err();
    assert_eq!(e.field(), "spec.autoscaling.prometheusUrl");
}

#[test]
fn tensor_parallel_gets_shared_memory() {
    let mut isvc = example("infsvc-gke-l4.yaml");
    isvc.spec.accelerator.as_mut().unwrap().count = 4;
    isvc.spec.engine.tensor_parallel_size = Some(4);
    let r = render(&isvc, &ctx()).unwrap();
    let pod = pod_spec(&r);
    let shm = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "dshm")
        .unwrap();
    let ed = shm.empty_dir.as_ref().unwrap();
    assert_eq!(ed.medium.as_deref(), Some("Memory"));
    assert_eq!(ed.size_limit.as_ref().unwrap().0, "32Gi");
    let c = &pod.containers[0];
    assert!(
        c.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/dev/shm")
    );
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
        "4"
    );
    assert!(
        args(&r)
            .windows(2)
            .any(|w| w == ["--tensor-parallel-size", "4"])
    );
}

#[test]
fn sim_has_no_gpu_and_runs_restricted() {
    let r = render(&example("infsvc-sim.yaml"), &ctx()).unwrap();
    let pod = pod_spec(&r);
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(TEST_IMAGE));
    assert_eq!(
        c.args.as_ref().unwrap()[..],
        [
            "sim",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--profile",
            "qwen2.5-0.5b-l4",
            "--model",
            "qwen",
            "--dcgm"
        ]
    );
    let yaml = serde_yaml::to_string(&r.deployment).unwrap();
    assert!(!yaml.contains("nvidia.com/gpu"), "{yaml}");
    assert!(pod.node_selector.is_none());
    assert!(pod.tolerations.is_none());
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".into()])
    );
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
}

#[test]
fn a_sim_serves_the_lora_adapters_of_its_spec() {
    let mut isvc = example("infsvc-sim.yaml");
    isvc.spec.model.lora_adapters = vec![
        inferops::api::LoraAdapter {
            name: "sql".into(),
            source: "org/sql-lora".into(),
        },
        inferops::api::LoraAdapter {
            name: "chat".into(),
            source: "org/chat-lora".into(),
        },
    ];
    let a = args(&render(&isvc, &ctx()).unwrap());
    let tail: Vec<&str> = a
        .iter()
        .skip_while(|s| *s != "--dcgm")
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["--dcgm", "--lora", "sql", "--lora", "chat"], "{a:?}");
}

#[test]
fn scheduling_overrides_win() {
    let mut isvc = example("infsvc-gke-l4.yaml");
    isvc.spec.scheduling = Some(
        serde_json::from_value(json!({
            "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4-custom", "pool": "a"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "inference",
        }))
        .unwrap(),
    );
    let pod = pod_spec(&render(&isvc, &ctx()).unwrap());
    let ns = pod.node_selector.unwrap();
    assert_eq!(ns["cloud.google.com/gke-accelerator"], "nvidia-l4-custom");
    assert_eq!(ns["pool"], "a");
    let tols = pod.tolerations.unwrap();
    assert_eq!(tols.len(), 2);
    assert_eq!(tols[0].key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(tols[1].key.as_deref(), Some("dedicated"));
    assert_eq!(pod.priority_class_name.as_deref(), Some("inference"));
}

fn spec(kind: EngineKind, accelerator: Option<AcceleratorSpec>) -> InferenceService {
    let mut isvc = InferenceService::new(
        "x",
        InferenceServiceSpec {
            model: ModelSpec {
                name: "m".into(),
                ..Default::default()
            },
            engine: Default::default(),
            replicas: 1,
            accelerator,
            scheduling: None,
            autoscaling: None,
            monitoring: Default::default(),
            rollout: None,
        },
    );
    isvc.spec.engine.kind = kind;
    isvc
}

fn acc(type_: AcceleratorType, count: u32, platform: Platform) -> Option<AcceleratorSpec> {
    Some(AcceleratorSpec {
        type_,
        count,
        platform,
        spot: false,
        instance_type: None,
        eks_node_labels: None,
    })
}

fn err(isvc: &InferenceService) -> RenderError {
    render(isvc, &ctx()).unwrap_err()
}

#[test]
fn render_errors_name_the_field_and_the_fix() {
    let e = err(&spec(
        EngineKind::Vllm,
        acc(AcceleratorType::NvidiaA10g, 3, Platform::Eks),
    ));
    assert_eq!(
        e.to_string(),
        "spec.accelerator.count: 3 GPUs is not offered by EKS g5 instances (1, 4 or 8); use 1, 4 or 8"
    );
    let e = err(&spec(
        EngineKind::Vllm,
        acc(AcceleratorType::NvidiaA100_80gb, 2, Platform::Eks),
    ));
    assert_eq!(e.field(), "spec.accelerator.count");
    assert!(e.to_string().contains("p4de"), "{e}");

    let e = err(&spec(
        EngineKind::Vllm,
        acc(AcceleratorType::NvidiaL40s, 1, Platform::Gke),
    ));
    assert_eq!(e.field(), "spec.accelerator.type");
    assert!(e.fix().contains("platform"), "{e}");

    let mut tp = spec(
        EngineKind::Vllm,
        acc(AcceleratorType::NvidiaL4, 1, Platform::Gke),
    );
    tp.spec.engine.tensor_parallel_size = Some(2);
    let e = err(&tp);
    assert_eq!(e.field(), "spec.engine.tensorParallelSize");
    assert!(e.fix().contains("accelerator.count"), "{e}");

    let e = err(&spec(EngineKind::Vllm, None));
    assert_eq!(e.field(), "spec.accelerator");

    let mut it = spec(
        EngineKind::Vllm,
        acc(AcceleratorType::NvidiaL4, 1, Platform::Gke),
    );
    it.spec.accelerator.as_mut().unwrap().instance_type = Some("g6.xlarge".into());
    assert_eq!(err(&it).field(), "spec.accelerator.instanceType");
}

#[test]
fn half_filled_specs_never_panic() {
    // Every combination of missing / zero / odd values gives Ok or a RenderError.
    let counts = [0, 1, 2, 3, 8];
    let types = [
        AcceleratorType::NvidiaL4,
        AcceleratorType::NvidiaA10g,
        AcceleratorType::NvidiaT4,
        AcceleratorType::NvidiaL40s,
        AcceleratorType::NvidiaA100_80gb,
        AcceleratorType::NvidiaH100_80gb,
    ];
    for kind in [EngineKind::Vllm, EngineKind::Sim] {
        let _ = render(&spec(kind, None), &ctx());
        for t in types {
            for p in [Platform::Gke, Platform::Eks, Platform::Generic] {
                for c in counts {
                    for tp in [None, Some(0), Some(1), Some(4)] {
                        let mut isvc = spec(kind, acc(t, c, p));
                        isvc.spec.engine.tensor_parallel_size = tp;
                        let _ = render(&isvc, &ctx());
                    }
                }
            }
        }
    }
    let mut empty = spec(EngineKind::Sim, None);
    empty.spec.model.name.clear();
    assert_eq!(err(&empty).field(), "spec.model.name");
    let mut noname = spec(EngineKind::Sim, None);
    noname.metadata.name = None;
    assert_eq!(err(&noname).field(), "metadata.name");
    let mut badscale = spec(EngineKind::Sim, None);
    badscale.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 3,
        max_replicas: 1,
        metric: Default::default(),
        target: k8s_openapi::apimachinery::pkg::api::resource::Quantity("x".into()),
        provider: Default::default(),
        behavior: None,
        prometheus_url: None,
    });
    assert_eq!(err(&badscale).field(), "spec.autoscaling");
    badscale.spec.autoscaling.as_mut().unwrap().max_replicas = 3;
    assert_eq!(err(&badscale).field(), "spec.autoscaling.target");
}

fn run_cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inferops"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn cli_renders_every_example_deterministically() {
    for file in EXAMPLES {
        let path = repo(&format!("manifests/examples/{file}"));
        let path = path.to_str().unwrap();
        let args = ["render", "-f", path, "--operator-image", TEST_IMAGE];
        let (code, first, stderr) = run_cli(&args, None);
        assert_eq!(code, 0, "{file}: {stderr}");
        let (_, second, _) = run_cli(&args, None);
        assert_eq!(
            first, second,
            "{file}: output must be byte-identical across runs"
        );
        let golden = std::fs::read_to_string(repo(&format!("tests/golden/{file}"))).unwrap();
        assert_eq!(first, golden, "{file}: CLI and golden differ");
        let docs = parse_documents(&first).unwrap();
        assert!(docs.iter().any(|d| d["kind"] == "Deployment"));
        assert!(docs.iter().any(|d| d["kind"] == "Service"));
    }
}

#[test]
fn cli_reads_stdin_and_overrides_the_namespace() {
    let text = std::fs::read_to_string(repo("manifests/examples/infsvc-sim.yaml")).unwrap();
    let (code, out, err) = run_cli(&["render", "-f", "-", "-n", "team-a"], Some(&text));
    assert_eq!(code, 0, "{err}");
    for d in parse_documents(&out).unwrap() {
        assert_eq!(d["metadata"]["namespace"], "team-a");
    }
}

#[test]
fn cli_accepts_benchmark_runs() {
    // A BenchmarkRun document is validated, then rendered to its load Job and the objects
    // the Job needs.
    let path = repo("manifests/examples/bench-concurrency-sweep.yaml");
    let (code, out, err) = run_cli(&["render", "-f", path.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<String> = parse_documents(&out)
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "Job"), "no load Job in {kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "ConfigMap"),
        "no plan ConfigMap in {kinds:?}"
    );
}

#[test]
fn cli_rejects_a_bad_file_with_field_paths() {
    let bad = r#"
apiVersion: inferops.dev/v1alpha1
kind: InferenceService
metadata: {name: bad}
spec:
  model: {name: m}
  engine: {tensorParallelSize: 4}
  accelerator: {type: nvidia-l4, count: 2, platform: gke}
---
apiVersion: inferops.dev/v1alpha1
kind: InferenceService
metadata: {name: worse}
spec:
  model: {name: m}
  accelerator: {type: nvidia-l5}
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, bad).unwrap();
    let (code, out, err) = run_cli(&["render", "-f", file.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert!(err.contains("document 1 (InferenceService bad)"), "{err}");
    assert!(err.contains("tensorParallelSize"), "{err}");
    assert!(err.contains("spec.accelerator.type"), "{err}");

    // Schema-valid but not renderable: a count the family does not offer.
    let bad = "apiVersion: inferops.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: b}\n\
               spec:\n  model: {name: m}\n  accelerator: {type: nvidia-a10g, count: 3, platform: eks}\n";
    let (code, _, err) = run_cli(&["render", "-f", "-"], Some(bad));
    assert_ne!(code, 0);
    assert!(
        err.contains("spec.accelerator.count: 3 GPUs is not offered by EKS g5"),
        "{err}"
    );
}

#[test]
fn render_output_has_no_volatile_fields() {
    for file in EXAMPLES {
        let out = std::fs::read_to_string(repo(&format!("tests/golden/{file}"))).unwrap();
        for word in [
            "creationTimestamp",
            "uid:",
            "resourceVersion",
            "generateName",
            "status:",
        ] {
            assert!(!out.contains(word), "{file} contains {word}");
        }
        let docs: Vec<Value> = parse_documents(&out).unwrap();
        assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "default"));
    }
}

#[test]
fn existing_claim_and_eks_spot() {
    let mut isvc = example("infsvc-eks-g5-lora.yaml");
    isvc.spec.model.cache =
        Some(serde_json::from_value(json!({"claimName": "shared-weights"})).unwrap());
    isvc.spec.accelerator.as_mut().unwrap().spot = true;
    let r = render(&isvc, &ctx()).unwrap();
    assert!(r.pvc.is_none(), "an existing claim is mounted, not created");
    let pod = pod_spec(&r);
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "hf-cache")
        .unwrap();
    assert_eq!(
        vol.persistent_volume_claim.unwrap().claim_name,
        "shared-weights"
    );
    assert_eq!(
        pod.node_selector.unwrap()["karpenter.sh/capacity-type"],
        "spot"
    );
}

fn strategy(r: &Rendered) -> Value {
    serde_json::to_value(
        r.deployment
            .spec
            .as_ref()
            .unwrap()
            .strategy
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn the_cache_pvc_is_the_same_at_any_replica_count() {
    // A PVC's access modes are immutable: they come from cache.accessMode alone, never from
    // the replica count (scaling 1 -> 3 used to re-apply them as ReadWriteMany).
    let mut isvc = example("infsvc-gke-l4.yaml");
    let cache = isvc.spec.model.cache.as_mut().unwrap();
    cache.access_mode = Some(inferops::api::CacheAccessMode::ReadWriteMany);
    cache.storage_class_name = Some("filestore-rwx".into());
    let one = render(&isvc, &ctx()).unwrap();
    isvc.spec.replicas = 3;
    let three = render(&isvc, &ctx()).unwrap();
    isvc.spec.autoscaling = example("infsvc-autoscaling.yaml").spec.autoscaling;
    let scaled = render(&isvc, &ctx()).unwrap();
    assert_eq!(one.pvc, three.pvc);
    assert_eq!(one.pvc, scaled.pvc);
    let modes = one.pvc.clone().unwrap().spec.unwrap().access_modes.unwrap();
    assert_eq!(modes, ["ReadWriteMany"]);
    assert!(three.pdb.is_some());
    // Several replicas: a rolling update that needs no spare GPU.
    for r in [&three, &scaled] {
        assert_eq!(
            strategy(r),
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        );
    }
    assert_eq!(strategy(&one), json!({"type": "Recreate"}));
}

#[test]
fn several_replicas_on_a_read_write_once_cache_are_refused() {
    let mut isvc = example("infsvc-gke-l4.yaml");
    let one = render(&isvc, &ctx()).unwrap();
    let modes = one.pvc.unwrap().spec.unwrap().access_modes.unwrap();
    assert_eq!(modes, ["ReadWriteOnce"], "the default");
    isvc.spec.replicas = 3;
    let e = err(&isvc);
    assert_eq!(e.field(), "spec.model.cache.accessMode");
    assert!(e.to_string().contains("up to 3 replicas"), "{e}");
    assert!(e.fix().contains("ReadWriteMany"), "{e}");
    // The CRD refuses it too, with the same advice.
    let doc = serde_json::to_value(&isvc).unwrap();
    let errors = inferops::api::validate_object(&doc, None).unwrap_err();
    assert!(
        errors.iter().any(|e| e.to_string().contains("accessMode")),
        "{errors:?}"
    );
    // An existing claim is the user's business (its mode is unknown to the operator).
    isvc.spec.model.cache =
        Some(serde_json::from_value(json!({"claimName": "shared-weights"})).unwrap());
    assert!(render(&isvc, &ctx()).is_ok());
}

#[test]
fn the_rollout_is_configurable_and_its_deadline_checked() {
    let mut isvc = example("infsvc-sim.yaml");
    isvc.spec.replicas = 4;
    isvc.spec.rollout = Some(
        serde_json::from_value(json!({"strategy": "RollingUpdate", "maxSurge": 1,
            "maxUnavailable": "25%", "progressDeadlineSeconds": 900}))
        .unwrap(),
    );
    let r = render(&isvc, &ctx()).unwrap();
    assert_eq!(
        strategy(&r),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
    );
    assert_eq!(
        r.deployment
            .spec
            .as_ref()
            .unwrap()
            .progress_deadline_seconds,
        Some(900)
    );
    let mut gpu = example("infsvc-gke-l4.yaml");
    gpu.spec.rollout =
        Some(serde_json::from_value(json!({"progressDeadlineSeconds": 600})).unwrap());
    let e = err(&gpu);
    assert_eq!(e.field(), "spec.rollout.progressDeadlineSeconds");
    assert!(e.to_string().contains("3600"), "{e}");
}

#[test]
fn engine_pods_get_image_pull_secrets_and_the_allow_list_is_enforced() {
    let mut c = ctx();
    c.image_pull_secrets = vec!["regcred".into()];
    for file in ["infsvc-gke-l4.yaml", "infsvc-sim.yaml"] {
        let pod = pod_spec(&render(&example(file), &c).unwrap());
        let secrets = pod.image_pull_secrets.unwrap();
        assert_eq!(secrets[0].name, "regcred", "{file}");
        assert_eq!(pod.automount_service_account_token, Some(false), "{file}");
    }
    c.allowed_engine_images = vec!["registry.example/vllm:*".into()];
    let e = render(&example("infsvc-gke-l4.yaml"), &c).unwrap_err();
    assert_eq!(e.field(), "spec.engine.image");
    assert!(e.to_string().contains(VLLM_IMAGE), "names the image: {e}");
    assert!(matches!(e, RenderError::NotAllowed { .. }));
    let mut ok = example("infsvc-gke-l4.yaml");
    ok.spec.engine.image = Some("registry.example/vllm:v0.30.0".into());
    assert!(render(&ok, &c).is_ok());
    // The simulator runs the operator's own image: always allowed.
    assert!(render(&example("infsvc-sim.yaml"), &c).is_ok());
}

#[test]
fn pod_monitors_carry_the_configured_labels_and_gmp_gets_a_pod_monitoring() {
    let mut c = ctx();
    c.pod_monitor_labels = [("release".to_string(), "kube-prometheus-stack".to_string())].into();
    let r = render(&example("infsvc-sim.yaml"), &c).unwrap();
    let pm = r.pod_monitor.unwrap();
    assert_eq!(pm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        pm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "inferops"
    );
    assert!(r.pod_monitoring.is_none());

    c.monitoring_stack = MonitoringStack::Gmp;
    let r = render(&example("infsvc-sim.yaml"), &c).unwrap();
    assert!(r.pod_monitor.is_none());
    let pm = r.pod_monitoring.unwrap();
    assert_eq!(pm["apiVersion"], "monitoring.googleapis.com/v1");
    assert_eq!(pm["kind"], "PodMonitoring");
    assert_eq!(pm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"]["inferops.dev/inference-service"],
        "qwen-sim"
    );
    assert_eq!(pm["metadata"]["labels"]["release"], "kube-prometheus-stack");

    c.monitoring_stack = MonitoringStack::None;
    let r = render(&example("infsvc-sim.yaml"), &c).unwrap();
    assert!(r.pod_monitor.is_none() && r.pod_monitoring.is_none());
}

#[test]
fn cpu_and_memory_requests_come_from_the_profile_unless_set() {
    let mut isvc = example("infsvc-gke-l4.yaml");
    isvc.spec.accelerator.as_mut().unwrap().count = 2;
    isvc.spec.engine.tensor_parallel_size = Some(2);
    let r = render(&isvc, &ctx()).unwrap();
    let req = pod_spec(&r).containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(
        (req["cpu"].0.as_str(), req["memory"].0.as_str()),
        ("4", "20Gi")
    );
    isvc.spec.engine.resources =
        Some(serde_json::from_value(json!({"requests": {"memory": "30Gi"}})).unwrap());
    let r = render(&isvc, &ctx()).unwrap();
    let req = pod_spec(&r).containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(
        (req["cpu"].0.as_str(), req["memory"].0.as_str()),
        ("4", "30Gi")
    );
    let sim = render(&example("infsvc-sim.yaml"), &ctx()).unwrap();
    let req = pod_spec(&sim).containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert!(req.contains_key("cpu") && req.contains_key("memory"));
}

#[test]
fn eks_node_placement_for_every_node_provisioner() {
    // Managed node groups: the instance-type scheme, as a required node affinity.
    let mut isvc = example("infsvc-eks-g5-lora.yaml");
    isvc.spec.accelerator.as_mut().unwrap().eks_node_labels =
        Some(inferops::api::EksNodeLabels::InstanceType);
    let pod = pod_spec(&render(&isvc, &ctx()).unwrap());
    assert!(
        pod.node_selector
            .is_none_or(|s| !s.keys().any(|k| k.contains("gpu-name")))
    );
    let term = &pod
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms[0];
    let e = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!(e.key, "node.kubernetes.io/instance-type");
    assert!(
        e.values
            .as_ref()
            .unwrap()
            .contains(&"g5.2xlarge".to_string())
    );

    // EKS Auto Mode.
    isvc.spec.accelerator.as_mut().unwrap().eks_node_labels =
        Some(inferops::api::EksNodeLabels::AutoMode);
    let pod = pod_spec(&render(&isvc, &ctx()).unwrap());
    assert_eq!(
        pod.node_selector.unwrap()["eks.amazonaws.com/instance-gpu-name"],
        "a10g"
    );

    // tensorParallelSize 2 on a 4-GPU g5.12xlarge.
    let mut tp = example("infsvc-eks-g5-lora.yaml");
    let a = tp.spec.accelerator.as_mut().unwrap();
    a.count = 2;
    a.instance_type = Some("g5.12xlarge".into());
    tp.spec.engine.tensor_parallel_size = Some(2);
    let r = render(&tp, &ctx()).unwrap();
    assert_eq!(
        pod_spec(&r).node_selector.unwrap()["node.kubernetes.io/instance-type"],
        "g5.12xlarge"
    );

    // The 80 GB A100 never lands on a 40 GB p4d node.
    let a100 = spec(
        EngineKind::Vllm,
        acc(AcceleratorType::NvidiaA100_80gb, 8, Platform::Eks),
    );
    let sel = pod_spec(&render(&a100, &ctx()).unwrap())
        .node_selector
        .unwrap();
    assert_eq!(sel["karpenter.k8s.aws/instance-family"], "p4de");
}

#[test]
fn user_resources_are_kept_and_the_gpu_count_wins() {
    let mut isvc = example("infsvc-gke-l4.yaml");
    isvc.spec.accelerator.as_mut().unwrap().count = 2;
    isvc.spec.engine.resources = Some(
        serde_json::from_value(json!({
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
        }))
        .unwrap(),
    );
    let r = render(&isvc, &ctx()).unwrap();
    let res = pod_spec(&r).containers[0].resources.clone().unwrap();
    let limits = res.limits.unwrap();
    let requests = res.requests.unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "2");
    assert_eq!(requests["nvidia.com/gpu"].0, "2");
    assert_eq!(limits["memory"].0, "16Gi");
    assert_eq!(requests["cpu"].0, "4");
}

// ---- BenchmarkRun load Jobs ----

const SHAREGPT_RUN: &str = r#"
apiVersion: inferops.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: qwen-sharegpt, namespace: default}
spec:
  target: {inferenceServiceRef: {name: qwen}, model: qwen}
  workload:
    dataset:
      kind: sharegpt
      configMapRef: {name: sharegpt-small, key: sharegpt.json}
  load: {mode: concurrency, concurrency: [1, 4], requestsPerStep: 100}
  loadgen: {parallelism: 2}
"#;

fn rendered_run(yaml: &str) -> Vec<Value> {
    let (code, out, err) = run_cli(&["render", "-f", "-"], Some(yaml));
    assert_eq!(code, 0, "{err}");
    parse_documents(&out).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn a_sharegpt_run_mounts_its_dataset_where_the_plan_reads_it() {
    let docs = rendered_run(SHAREGPT_RUN);
    let plan = kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["plan.json"].is_string())
        .expect("a plan ConfigMap");
    let plan: Value = serde_json::from_str(plan["data"]["plan.json"].as_str().unwrap()).unwrap();
    let read_at = plan["workload"]["dataset"]["sharegpt"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let job = kind(&docs, "Job")[0];
    let pod = &job["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == "sharegpt-small")
        .expect("the dataset ConfigMap is a volume");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("and it is mounted");
    let item = &volume["configMap"]["items"][0];
    assert_eq!(item["key"], "sharegpt.json");
    let file = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap(),
        item["path"].as_str().unwrap()
    );
    assert_eq!(file, read_at, "the plan reads the file the pod mounts");
    assert_eq!(read_at, "/etc/inferops/dataset/sharegpt.json");
    // No mount hides another: the plan is mounted beside the dataset, not above it.
    let mounts: Vec<&str> = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for a in &mounts {
        for b in &mounts {
            assert!(a == b || !b.starts_with(&format!("{a}/")), "{b} inside {a}");
        }
    }
    let args = pod["containers"][0]["args"].as_array().unwrap();
    let plan_arg = args.iter().position(|a| a == "--plan").unwrap() + 1;
    assert!(
        args[plan_arg]
            .as_str()
            .unwrap()
            .starts_with(mounts.iter().find(|m| m.ends_with("/plan")).unwrap()),
        "{args:?}"
    );
}

#[test]
fn a_load_job_stops_after_its_plan_length_and_ignores_disruptions() {
    let docs = rendered_run(SHAREGPT_RUN);
    let job = kind(&docs, "Job")[0];
    let spec = &job["spec"];
    // 100 requests at concurrency 1 and 4 with the 60 s request timeout, plus slack: the
    // default deadline follows the plan, not "forever".
    let deadline = spec["activeDeadlineSeconds"]
        .as_i64()
        .expect("a default deadline");
    let rounds = 100 + 25;
    assert!(
        deadline >= rounds * 60 && deadline <= rounds * 60 + 3600,
        "{deadline}"
    );
    let rules = spec["podFailurePolicy"]["rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["action"] == "Ignore"
            && r["onPodConditions"][0]["type"] == "DisruptionTarget"
            && r["onPodConditions"][0]["status"] == "True"),
        "{rules:?}"
    );
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    // An explicit deadline wins.
    let own = SHAREGPT_RUN.replace(
        "loadgen: {parallelism: 2}",
        "loadgen: {parallelism: 2, activeDeadlineSeconds: 600}",
    );
    let docs = rendered_run(&own);
    assert_eq!(kind(&docs, "Job")[0]["spec"]["activeDeadlineSeconds"], 600);
}

#[test]
fn each_load_pod_has_its_own_results_configmap_and_may_write_only_those() {
    let docs = rendered_run(SHAREGPT_RUN);
    let results: Vec<&str> = kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["inferops.dev/role"] == "results")
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["qwen-sharegpt-results-0", "qwen-sharegpt-results-1"]
    );
    let role = kind(&docs, "Role")[0];
    assert_eq!(role["rules"][0]["resourceNames"], json!(results));
    let args = kind(&docs, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let i = args
        .iter()
        .position(|a| *a == "--results-configmap")
        .unwrap();
    assert_eq!(args[i + 1], "qwen-sharegpt-results-{index}");
}

#[test]
fn steps_times_replicas_is_bounded_by_the_schema() {
    let run = |points: usize, replicas: usize| {
        json!({"apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
               "metadata": {"name": "big"},
               "spec": {"target": {"url": "http://vllm:8000"},
                        "load": {"mode": "concurrency",
                                 "concurrency": (1..=points as u32).collect::<Vec<_>>()},
                        "scaling": {"replicas": (1..=replicas as i32).collect::<Vec<_>>()}}})
    };
    assert!(inferops::api::validate_object(&run(64, 2), None).is_ok());
    let errors = inferops::api::validate_object(&run(64, 3), None).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("at most 128 steps")),
        "{errors:?}"
    );
}

#[test]
fn a_sixty_character_run_renders_names_and_labels_within_limits() {
    let name = "a-benchmark-run-named-with-sixty-characters-for-the-l4-sweep";
    assert_eq!(name.len(), 60);
    let yaml = SHAREGPT_RUN.replace("qwen-sharegpt", name).replace(
        "loadgen: {parallelism: 2}",
        "loadgen: {parallelism: 2}\n  scaling: {replicas: [1, 16]}",
    );
    let docs = rendered_run(&yaml);
    assert!(!docs.is_empty());
    for d in &docs {
        let n = d["metadata"]["name"].as_str().unwrap();
        let max = if d["kind"] == "Job" { 52 } else { 63 };
        assert!(
            n.len() <= max,
            "{} {n} is {} characters",
            d["kind"],
            n.len()
        );
        let mut labels: Vec<&Value> = d["metadata"]["labels"]
            .as_object()
            .unwrap()
            .values()
            .collect();
        if d["kind"] == "Job" {
            labels.extend(
                d["spec"]["template"]["metadata"]["labels"]
                    .as_object()
                    .unwrap()
                    .values(),
            );
        }
        for v in labels {
            assert!(v.as_str().unwrap().len() <= 63, "label value {v}");
        }
    }
}
