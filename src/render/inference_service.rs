//! `InferenceService` -> the objects that serve it.
//!
//! | object | when |
//! |---|---|
//! | Deployment `NAME` | always (vLLM, or `inferops sim` for `engine.kind: sim`) |
//! | Service `NAME` (port 8000 `http`) | always |
//! | PersistentVolumeClaim `NAME-hf-cache` | `model.cache.size` is set |
//! | PodDisruptionBudget `NAME` | `replicas > 1` or `autoscaling.maxReplicas > 1` |
//! | HorizontalPodAutoscaler `NAME` | `autoscaling.provider: hpa` |
//! | ScaledObject `NAME` (KEDA) | `autoscaling.provider: keda` |
//! | PodMonitor `NAME` (Prometheus Operator) | `monitoring.podMonitor` (default true), stack `prometheus-operator` |
//! | PodMonitoring `NAME` (GKE Managed Prometheus) | `monitoring.podMonitor`, stack `gmp` |
//!
//! With autoscaling on, the Deployment has no `replicas` field: the autoscaler owns it.
//!
//! The cache PVC's spec depends only on `model.cache` (never on the replica count): a PVC's
//! access modes are immutable, so what is created first must stay valid at any scale.
//!
//! The HPA reads a Pods metric served by the Prometheus adapter. The adapter rule shipped in
//! the chart renames `vllm:<metric>` to `vllm_<metric>` (colons are not valid in custom
//! metric names), so the HPA asks for [`adapter_metric_name`], e.g.
//! `vllm_num_requests_waiting`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::accelerator::{self, GPU_RESOURCE, Placement};
use super::{
    MonitoringStack, RenderContext, RenderError, controller_owner_ref, labels, quantity_to_f64,
};
use crate::api::{
    AutoscalingMetric, AutoscalingProvider, CacheAccessMode, Dtype, EngineKind, InferenceService,
    InferenceServiceSpec, Quantization, RolloutStrategy,
};
use crate::contract::vllm_metrics;

/// Pinned vLLM image used when `engine.image` is unset. Its entrypoint is `vllm serve`:
/// the model is the first (positional) argument.
pub const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.30.0";
/// Startup probe of the vLLM container: period (s) x failure threshold = up to 60 minutes
/// for the first download and weight loading.
pub const VLLM_STARTUP_PROBE: (i32, i32) = (10, 360);
/// Startup probe of the simulator container: 2 s x 30.
pub const SIM_STARTUP_PROBE: (i32, i32) = (2, 30);
/// Added to the startup-probe budget for the default `progressDeadlineSeconds`: scheduling,
/// node scale-up and the image pull come before the probe starts.
pub const PROGRESS_DEADLINE_MARGIN_SECS: i32 = 600;
/// `preStop` sleep of the vLLM container: the Service stops routing to the pod while
/// in-flight streams finish, before the engine gets SIGTERM.
pub const VLLM_DRAIN_SECS: i64 = 30;
/// `preStop` sleep of the simulator container.
pub const SIM_DRAIN_SECS: i64 = 5;
/// Termination grace period of vLLM pods (drain + engine shutdown).
pub const VLLM_TERMINATION_GRACE_SECS: i64 = 90;
/// Termination grace period of simulator pods.
pub const SIM_TERMINATION_GRACE_SECS: i64 = 15;
/// CPU and memory requests of a simulator pod.
pub const SIM_REQUESTS: (&str, &str) = ("100m", "128Mi");
/// Port of the OpenAI-compatible API and `/metrics`, on the engine container and Service.
pub const HTTP_PORT: i32 = 8000;
/// Name of the HTTP port (probes, Service target, PodMonitor endpoint).
pub const HTTP_PORT_NAME: &str = "http";
/// Where the Hugging Face cache volume is mounted (also `HF_HOME`).
pub const HF_HOME: &str = "/root/.cache/huggingface";
/// Simulator profile when `engine.simProfile` is unset.
pub const DEFAULT_SIM_PROFILE: &str = "qwen2.5-0.5b-l4";
/// Name of the engine container.
pub const CONTAINER_NAME: &str = "engine";

/// The vLLM metric an autoscaling metric follows (`vllm:num_requests_waiting`, ...).
pub fn vllm_metric_name(metric: AutoscalingMetric) -> &'static str {
    match metric {
        AutoscalingMetric::QueueDepth => vllm_metrics::NUM_REQUESTS_WAITING,
        AutoscalingMetric::RunningRequests => vllm_metrics::NUM_REQUESTS_RUNNING,
        AutoscalingMetric::KvCacheUsage => vllm_metrics::KV_CACHE_USAGE_PERC,
    }
}

/// The custom-metrics API name of an autoscaling metric, as the chart's Prometheus adapter
/// rule exposes it: `vllm:` becomes `vllm_` (e.g. `vllm_num_requests_waiting`).
pub fn adapter_metric_name(metric: AutoscalingMetric) -> String {
    vllm_metric_name(metric).replacen("vllm:", "vllm_", 1)
}

/// Every object the operator creates for one `InferenceService`, typed where Kubernetes has
/// a built-in type and as JSON for third-party CRDs (Prometheus Operator, KEDA).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The engine Deployment.
    pub deployment: Deployment,
    /// ClusterIP Service on port 8000.
    pub service: Service,
    /// Model cache PVC, when `model.cache.size` is set.
    pub pvc: Option<PersistentVolumeClaim>,
    /// Disruption budget (maxUnavailable 1), when more than one replica can exist.
    pub pdb: Option<PodDisruptionBudget>,
    /// `autoscaling/v2` HPA, when `autoscaling.provider: hpa`.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// KEDA `keda.sh/v1alpha1` ScaledObject, when `autoscaling.provider: keda`.
    pub scaled_object: Option<Value>,
    /// Prometheus Operator `monitoring.coreos.com/v1` PodMonitor, when monitoring is on and
    /// the stack is `prometheus-operator`.
    pub pod_monitor: Option<Value>,
    /// GKE Managed Prometheus `monitoring.googleapis.com/v1` PodMonitoring, when monitoring
    /// is on and the stack is `gmp`.
    pub pod_monitoring: Option<Value>,
}

impl Rendered {
    /// All objects as JSON, in a fixed order: PVC, Deployment, Service, PDB, HPA,
    /// ScaledObject, PodMonitor, PodMonitoring.
    pub fn to_values(&self) -> Vec<Value> {
        let v = |o: &dyn erased::Ser| o.value();
        let mut out = Vec::new();
        if let Some(p) = &self.pvc {
            out.push(v(p));
        }
        out.push(v(&self.deployment));
        out.push(v(&self.service));
        if let Some(p) = &self.pdb {
            out.push(v(p));
        }
        if let Some(h) = &self.hpa {
            out.push(v(h));
        }
        out.extend(self.scaled_object.clone());
        out.extend(self.pod_monitor.clone());
        out.extend(self.pod_monitoring.clone());
        out
    }
}

mod erased {
    /// Object-safe serialization to JSON.
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("Kubernetes objects always serialize")
        }
    }
}

/// Labels on every object of this InferenceService.
pub fn object_labels(name: &str, engine: EngineKind) -> BTreeMap<String, String> {
    let app = match engine {
        EngineKind::Vllm => "vllm",
        EngineKind::Sim => "inferops-sim",
    };
    super::string_map([
        (labels::NAME, app),
        (labels::INSTANCE, name),
        (labels::COMPONENT, "inference-engine"),
        (labels::MANAGED_BY, labels::MANAGER),
        (labels::INFERENCE_SERVICE, name),
    ])
}

/// The pod selector: only the InferenceService label, so it never changes when the spec
/// does (a Deployment's selector is immutable).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    super::string_map([(labels::INFERENCE_SERVICE, name)])
}

/// The selector in string form, as `status.selector` carries it.
pub fn selector_string(name: &str) -> String {
    format!("{}={name}", labels::INFERENCE_SERVICE)
}

/// The in-cluster OpenAI base URL of the Service.
pub fn endpoint(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}.svc:{HTTP_PORT}/v1")
}

/// Name of the model cache PVC the operator creates.
pub fn cache_pvc_name(name: &str) -> String {
    format!("{name}-hf-cache")
}

fn fmt_f64(x: f64) -> String {
    format!("{x}")
}

fn dtype_arg(d: Dtype) -> &'static str {
    match d {
        Dtype::Auto => "auto",
        Dtype::Half => "half",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Float => "float",
    }
}

fn quantization_arg(q: Quantization) -> &'static str {
    match q {
        Quantization::Awq => "awq",
        Quantization::Gptq => "gptq",
        Quantization::Fp8 => "fp8",
        Quantization::Bitsandbytes => "bitsandbytes",
    }
}

/// vLLM command-line arguments after the image's `vllm serve` entrypoint: the model first
/// (positional; `--model` is deprecated in current releases), then flags.
pub fn vllm_args(spec: &InferenceServiceSpec) -> Vec<String> {
    let e = &spec.engine;
    let mut args = vec![
        spec.model.name.clone(),
        "--served-model-name".into(),
        spec.served_model_name().to_string(),
        "--host".into(),
        "0.0.0.0".into(),
        "--port".into(),
        HTTP_PORT.to_string(),
    ];
    let mut push = |flag: &str, value: String| {
        args.push(flag.to_string());
        args.push(value);
    };
    if let Some(r) = &spec.model.revision {
        push("--revision", r.clone());
    }
    if let Some(v) = e.max_model_len {
        push("--max-model-len", v.to_string());
    }
    if let Some(v) = e.gpu_memory_utilization {
        push("--gpu-memory-utilization", fmt_f64(v));
    }
    if let Some(v) = e.max_num_seqs {
        push("--max-num-seqs", v.to_string());
    }
    if let Some(v) = e.tensor_parallel_size {
        push("--tensor-parallel-size", v.to_string());
    }
    if let Some(v) = e.dtype {
        push("--dtype", dtype_arg(v).to_string());
    }
    if let Some(v) = e.quantization {
        push("--quantization", quantization_arg(v).to_string());
    }
    if !spec.model.lora_adapters.is_empty() {
        args.push("--enable-lora".into());
        args.push("--lora-modules".into());
        for a in &spec.model.lora_adapters {
            args.push(format!("{}={}", a.name, a.source));
        }
    }
    args.extend(e.extra_args.iter().cloned());
    args
}

/// `inferops sim` arguments for `engine.kind: sim`.
pub fn sim_args(spec: &InferenceServiceSpec) -> Vec<String> {
    let mut args: Vec<String> = [
        "sim",
        "--host",
        "0.0.0.0",
        "--port",
        &HTTP_PORT.to_string(),
        "--profile",
        spec.engine
            .sim_profile
            .as_deref()
            .unwrap_or(DEFAULT_SIM_PROFILE),
        "--model",
        spec.served_model_name(),
        "--dcgm",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(spec.engine.extra_args.iter().cloned());
    args
}

/// Check what the CRD schema and CEL rules would have caught, so a half-filled object built
/// in code (or an old stored object) yields an error instead of a panic or a broken pod.
fn check_spec(spec: &InferenceServiceSpec) -> Result<(), RenderError> {
    if spec.model.name.trim().is_empty() {
        return Err(RenderError::missing(
            "spec.model.name",
            "the model name is empty",
            "set a Hugging Face id such as Qwen/Qwen2.5-0.5B-Instruct",
        ));
    }
    if spec.replicas < 0 {
        return Err(RenderError::invalid(
            "spec.replicas",
            format!("{} replicas", spec.replicas),
            "use 0 or more",
        ));
    }
    if spec.engine.kind == EngineKind::Vllm {
        let Some(acc) = &spec.accelerator else {
            return Err(RenderError::missing(
                "spec.accelerator",
                "engine.kind vllm needs GPUs",
                "set accelerator.type (e.g. nvidia-l4) and accelerator.count, or use engine.kind: sim",
            ));
        };
        let tp = spec.engine.tensor_parallel_size.unwrap_or(1);
        if tp == 0 || tp > acc.count {
            return Err(RenderError::invalid(
                "spec.engine.tensorParallelSize",
                format!(
                    "tensorParallelSize {tp} with accelerator.count {}: each tensor-parallel rank needs its own GPU",
                    acc.count
                ),
                format!(
                    "set tensorParallelSize between 1 and {} or raise accelerator.count",
                    acc.count.max(1)
                ),
            ));
        }
    }
    if let Some(g) = spec.engine.gpu_memory_utilization
        && !(g > 0.0 && g <= 1.0)
    {
        return Err(RenderError::invalid(
            "spec.engine.gpuMemoryUtilization",
            format!("{g} is outside (0, 1]"),
            "use a fraction such as 0.9",
        ));
    }
    if let Some(cache) = &spec.model.cache
        && cache.size.is_some() == cache.claim_name.is_some()
    {
        return Err(RenderError::invalid(
            "spec.model.cache",
            "set exactly one of size and claimName",
            "use size (a new PVC) or claimName (an existing PVC)",
        ));
    }
    if let Some(cache) = &spec.model.cache
        && cache.size.is_some()
        && cache.access_mode.unwrap_or_default() == CacheAccessMode::ReadWriteOnce
        && max_replicas(spec) > 1
    {
        return Err(RenderError::invalid(
            "spec.model.cache.accessMode",
            format!(
                "the cache PVC is ReadWriteOnce (one node mounts it) but up to {} replicas \
                 can exist",
                max_replicas(spec)
            ),
            "set spec.model.cache.accessMode: ReadWriteMany with an RWX storage class \
             (Filestore, EFS), use cache.claimName, or keep one replica",
        ));
    }
    if let Some(r) = &spec.rollout {
        let budget = startup_budget_secs(spec.engine.kind);
        if let Some(d) = r.progress_deadline_seconds
            && d <= budget
        {
            return Err(RenderError::invalid(
                "spec.rollout.progressDeadlineSeconds",
                format!("{d} s is not above the startup probe's budget of {budget} s"),
                format!(
                    "use more than {budget}, e.g. {}, or leave it unset",
                    budget + PROGRESS_DEADLINE_MARGIN_SECS
                ),
            ));
        }
        if r.strategy == Some(RolloutStrategy::Recreate)
            && (r.max_surge.is_some() || r.max_unavailable.is_some())
        {
            return Err(RenderError::invalid(
                "spec.rollout",
                "maxSurge / maxUnavailable set with strategy Recreate",
                "remove them or use strategy: RollingUpdate",
            ));
        }
    }
    if let Some(a) = &spec.autoscaling {
        if a.min_replicas < 1 || a.max_replicas < a.min_replicas {
            return Err(RenderError::invalid(
                "spec.autoscaling",
                format!(
                    "minReplicas {} / maxReplicas {}",
                    a.min_replicas, a.max_replicas
                ),
                "use 1 <= minReplicas <= maxReplicas",
            ));
        }
        if quantity_to_f64(&a.target.0).is_none_or(|t| t <= 0.0) {
            return Err(RenderError::invalid(
                "spec.autoscaling.target",
                format!("{:?} is not a positive quantity", a.target.0),
                "use a quantity such as \"5\" or \"800m\"",
            ));
        }
        if a.provider == AutoscalingProvider::Keda && a.prometheus_url.is_none() {
            return Err(RenderError::missing(
                "spec.autoscaling.prometheusUrl",
                "provider keda queries Prometheus and needs its URL",
                "set prometheusUrl, e.g. http://prometheus-operated.monitoring.svc:9090",
            ));
        }
    }
    Ok(())
}

/// The most replicas that can exist: `autoscaling.maxReplicas`, else `replicas`.
pub fn max_replicas(spec: &InferenceServiceSpec) -> i32 {
    spec.autoscaling
        .as_ref()
        .map_or(spec.replicas, |a| a.max_replicas)
}

/// Seconds the startup probe allows the engine to come up.
pub fn startup_budget_secs(kind: EngineKind) -> i32 {
    let (period, threshold) = match kind {
        EngineKind::Vllm => VLLM_STARTUP_PROBE,
        EngineKind::Sim => SIM_STARTUP_PROBE,
    };
    period * threshold
}

/// The image the engine container runs.
pub fn engine_image(spec: &InferenceServiceSpec, ctx: &RenderContext) -> String {
    match (&spec.engine.image, spec.engine.kind) {
        (Some(i), _) => i.clone(),
        (None, EngineKind::Sim) => ctx.operator_image.clone(),
        (None, EngineKind::Vllm) => VLLM_IMAGE.to_string(),
    }
}

/// The Deployment's `strategy` and `progressDeadlineSeconds`. Defaults need no spare GPU:
/// `Recreate` with one replica (no autoscaling) or a `ReadWriteOnce` cache PVC, otherwise
/// `RollingUpdate` with `maxSurge: 0`, `maxUnavailable: 1` (one pod at a time makes room
/// for its replacement).
pub fn rollout(spec: &InferenceServiceSpec) -> (Value, i32) {
    let r = spec.rollout.clone().unwrap_or_default();
    let single = spec.autoscaling.is_none() && spec.replicas <= 1;
    let rwo_cache = spec.model.cache.as_ref().is_some_and(|c| {
        c.size.is_some() && c.access_mode.unwrap_or_default() == CacheAccessMode::ReadWriteOnce
    });
    let strategy = r.strategy.unwrap_or(if single || rwo_cache {
        RolloutStrategy::Recreate
    } else {
        RolloutStrategy::RollingUpdate
    });
    let strategy = match strategy {
        RolloutStrategy::Recreate => json!({"type": "Recreate"}),
        RolloutStrategy::RollingUpdate => json!({
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": r.max_surge.map_or(json!(0), |v| json!(v)),
                "maxUnavailable": r.max_unavailable.map_or(json!(1), |v| json!(v)),
            },
        }),
    };
    let deadline = r
        .progress_deadline_seconds
        .unwrap_or(startup_budget_secs(spec.engine.kind) + PROGRESS_DEADLINE_MARGIN_SECS);
    (strategy, deadline)
}

struct Meta {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
}

impl Meta {
    fn object(&self, name: &str) -> Value {
        let mut m = json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels,
        });
        if let Some(o) = &self.owner {
            m["ownerReferences"] = json!([o]);
        }
        m
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("renderer builds valid Kubernetes objects")
}

/// Render every object for `isvc`. Pure: the same input always gives the same output.
pub fn render(isvc: &InferenceService, ctx: &RenderContext) -> Result<Rendered, RenderError> {
    let spec = &isvc.spec;
    check_spec(spec)?;
    let image = engine_image(spec, ctx);
    if !ctx.engine_image_allowed(&image) {
        return Err(RenderError::NotAllowed {
            field: "spec.engine.image".into(),
            message: format!(
                "image {image} is not in the operator's allow-list of engine images ({})",
                ctx.allowed_engine_images.join(", ")
            ),
            fix: "use an allowed image, or ask the cluster admin to add it to the operator's \
                  --allowed-engine-image setting"
                .into(),
        });
    }
    let name = isvc.metadata.name.clone().ok_or_else(|| {
        RenderError::missing(
            "metadata.name",
            "the object has no name",
            "set metadata.name",
        )
    })?;
    let namespace = isvc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| ctx.default_namespace.clone());
    let meta = Meta {
        labels: object_labels(&name, spec.engine.kind),
        owner: controller_owner_ref(isvc),
        name,
        namespace,
    };

    let placement = match (spec.engine.kind, &spec.accelerator) {
        (EngineKind::Vllm, Some(acc)) => accelerator::profile(acc)?,
        _ => Placement::default(),
    };
    let placement = accelerator::apply_overrides(placement, spec.scheduling.as_ref());

    let scrape = spec.monitoring.pod_monitor;
    let stack = ctx.monitoring_stack;
    Ok(Rendered {
        deployment: render_deployment(spec, &meta, &placement, ctx, image),
        service: render_service(&meta),
        pdb: (max_replicas(spec) > 1).then(|| render_pdb(&meta)),
        hpa: render_hpa(spec, &meta),
        scaled_object: render_scaled_object(spec, &meta),
        pod_monitor: (scrape && stack == MonitoringStack::PrometheusOperator)
            .then(|| render_pod_monitor(&meta, ctx)),
        pod_monitoring: (scrape && stack == MonitoringStack::Gmp)
            .then(|| render_pod_monitoring(&meta, ctx)),
        pvc: render_pvc(spec, &meta),
    })
}

fn render_pvc(spec: &InferenceServiceSpec, meta: &Meta) -> Option<PersistentVolumeClaim> {
    let cache = spec.model.cache.as_ref()?;
    let size = cache.size.as_ref()?;
    // Fixed by the spec, never by the replica count: access modes are immutable.
    let mode = cache.access_mode.unwrap_or_default().as_str();
    let mut pvc_spec = json!({
        "accessModes": [mode],
        "resources": {"requests": {"storage": size}},
    });
    if let Some(class) = &cache.storage_class_name {
        pvc_spec["storageClassName"] = json!(class);
    }
    Some(typed(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta.object(&cache_pvc_name(&meta.name)),
        "spec": pvc_spec,
    })))
}

fn http_probe(period: i32, failure_threshold: i32, timeout: i32) -> Value {
    json!({
        "httpGet": {"path": "/health", "port": HTTP_PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failure_threshold,
        "timeoutSeconds": timeout,
    })
}

fn render_deployment(
    spec: &InferenceServiceSpec,
    meta: &Meta,
    placement: &Placement,
    ctx: &RenderContext,
    image: String,
) -> Deployment {
    let sim = spec.engine.kind == EngineKind::Sim;
    let mut env: Vec<Value> = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    let mut mounts: Vec<Value> = Vec::new();
    let mut resources = spec
        .engine
        .resources
        .as_ref()
        .map(|r| serde_json::to_value(r).expect("resources serialize"))
        .unwrap_or_else(|| json!({}));

    let container = if sim {
        // The simulator needs no GPU, no cache and no token; it runs fully restricted.
        volumes.push(json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}));
        mounts.push(json!({"name": "tmp", "mountPath": "/tmp"}));
        set_default_requests(&mut resources, SIM_REQUESTS.0, SIM_REQUESTS.1);
        json!({
            "name": CONTAINER_NAME,
            "image": image,
            "command": ["inferops"],
            "args": sim_args(spec),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "lifecycle": {"preStop": {"sleep": {"seconds": SIM_DRAIN_SECS}}},
            "startupProbe": http_probe(SIM_STARTUP_PROBE.0, SIM_STARTUP_PROBE.1, 2),
            "readinessProbe": http_probe(5, 3, 2),
            "livenessProbe": http_probe(10, 3, 2),
        })
    } else {
        let count = spec.accelerator.as_ref().map_or(1, |a| a.count);
        let tp = spec.engine.tensor_parallel_size.unwrap_or(1);
        if let Some(acc) = &spec.accelerator {
            let (cpu, mem_gib) = accelerator::host_requests_per_gpu(acc.type_);
            set_default_requests(
                &mut resources,
                &(cpu * count).to_string(),
                &format!("{}Gi", mem_gib * count),
            );
        }
        if !resources.get("limits").is_some_and(Value::is_object) {
            resources["limits"] = json!({});
        }
        resources["limits"][GPU_RESOURCE] = json!(count.to_string());
        // Extended resources need requests == limits; fix a user-set request too.
        if let Some(req) = resources.get_mut("requests").and_then(Value::as_object_mut)
            && req.contains_key(GPU_RESOURCE)
        {
            req.insert(GPU_RESOURCE.to_string(), json!(count.to_string()));
        }
        env.push(json!({"name": "HF_HOME", "value": HF_HOME}));
        if let Some(token) = &spec.model.token_secret_ref {
            env.push(json!({
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}},
            }));
        }
        // NCCL and vLLM's worker processes share tensors through /dev/shm; the container
        // runtime's 64 MiB default is too small. Memory-backed, counted against the pod.
        let shm_gib = if tp > 1 { 8 * tp } else { 2 };
        volumes.push(json!({
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": format!("{shm_gib}Gi")},
        }));
        mounts.push(json!({"name": "dshm", "mountPath": "/dev/shm"}));
        let cache_volume = match &spec.model.cache {
            Some(c) if c.size.is_some() => {
                json!({"persistentVolumeClaim": {"claimName": cache_pvc_name(&meta.name)}})
            }
            Some(c) if c.claim_name.is_some() => {
                json!({"persistentVolumeClaim": {"claimName": c.claim_name}})
            }
            _ => json!({"emptyDir": {}}),
        };
        let mut vol = json!({"name": "hf-cache"});
        vol.as_object_mut()
            .expect("object")
            .extend(cache_volume.as_object().expect("object").clone());
        volumes.push(vol);
        mounts.push(json!({"name": "hf-cache", "mountPath": HF_HOME}));
        // The vLLM image runs as root (its cache lives under /root); we drop what we can.
        json!({
            "name": CONTAINER_NAME,
            "image": image,
            "args": vllm_args(spec),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
            "lifecycle": {"preStop": {"sleep": {"seconds": VLLM_DRAIN_SECS}}},
            // Up to 60 minutes for the first model download and weight loading.
            "startupProbe": http_probe(VLLM_STARTUP_PROBE.0, VLLM_STARTUP_PROBE.1, 5),
            "readinessProbe": http_probe(5, 3, 5),
            "livenessProbe": http_probe(10, 6, 10),
        })
    };
    let mut container = container;
    env.extend(
        spec.engine
            .env
            .iter()
            .map(|e| serde_json::to_value(e).expect("env serializes")),
    );
    container["ports"] =
        json!([{"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}]);
    if !env.is_empty() {
        container["env"] = json!(env);
    }
    if resources.as_object().is_some_and(|r| !r.is_empty()) {
        container["resources"] = resources;
    }
    container["volumeMounts"] = json!(mounts);

    let mut pod_security = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    if sim {
        pod_security["runAsNonRoot"] = json!(true);
        pod_security["runAsUser"] = json!(65532);
        pod_security["runAsGroup"] = json!(65532);
    }
    let mut pod_spec = json!({
        "containers": [container],
        "volumes": volumes,
        "securityContext": pod_security,
        // Neither vLLM nor the simulator talks to the Kubernetes API.
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": if sim {
            SIM_TERMINATION_GRACE_SECS
        } else {
            VLLM_TERMINATION_GRACE_SECS
        },
    });
    if !ctx.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = json!(
            ctx.image_pull_secrets
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    if !placement.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(placement.node_selector);
    }
    if !placement.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(placement.tolerations);
    }
    let user_affinity = spec.scheduling.as_ref().and_then(|s| s.affinity.as_ref());
    let mut affinity = user_affinity.map_or(json!({}), |a| json!(a));
    // The profile's required node labels, unless the user's affinity has its own node
    // affinity (which then wins as given).
    if !placement.required_node_labels.is_empty() && affinity.get("nodeAffinity").is_none() {
        let exprs: Vec<Value> = placement
            .required_node_labels
            .iter()
            .map(|(k, vs)| json!({"key": k, "operator": "In", "values": vs}))
            .collect();
        affinity["nodeAffinity"] = json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs}],
            },
        });
    }
    if affinity.as_object().is_some_and(|a| !a.is_empty()) {
        pod_spec["affinity"] = affinity;
    }
    if let Some(p) = spec
        .scheduling
        .as_ref()
        .and_then(|s| s.priority_class_name.as_ref())
    {
        pod_spec["priorityClassName"] = json!(p);
    }

    let (strategy, progress_deadline) = rollout(spec);
    let mut dep_spec = json!({
        "selector": {"matchLabels": selector_labels(&meta.name)},
        "strategy": strategy,
        "progressDeadlineSeconds": progress_deadline,
        "template": {
            "metadata": {"labels": meta.labels},
            "spec": pod_spec,
        },
    });
    if spec.autoscaling.is_none() {
        dep_spec["replicas"] = json!(spec.replicas);
    }
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta.object(&meta.name),
        "spec": dep_spec,
    }))
}

/// Set `requests.cpu` / `requests.memory` unless the user's `engine.resources` has them.
fn set_default_requests(resources: &mut Value, cpu: &str, memory: &str) {
    if !resources.get("requests").is_some_and(Value::is_object) {
        resources["requests"] = json!({});
    }
    let req = resources["requests"]
        .as_object_mut()
        .expect("requests is an object");
    req.entry("cpu").or_insert_with(|| json!(cpu));
    req.entry("memory").or_insert_with(|| json!(memory));
}

fn render_service(meta: &Meta) -> Service {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta.object(&meta.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(&meta.name),
            "ports": [{"name": HTTP_PORT_NAME, "port": HTTP_PORT, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"}],
        },
    }))
}

fn render_pdb(meta: &Meta) -> PodDisruptionBudget {
    typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta.object(&meta.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(&meta.name)},
        },
    }))
}

fn render_hpa(spec: &InferenceServiceSpec, meta: &Meta) -> Option<HorizontalPodAutoscaler> {
    let a = spec.autoscaling.as_ref()?;
    if a.provider != AutoscalingProvider::Hpa {
        return None;
    }
    let mut hpa_spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta.name},
        "minReplicas": a.min_replicas,
        "maxReplicas": a.max_replicas,
        "metrics": [{
            "type": "Pods",
            "pods": {
                "metric": {"name": adapter_metric_name(a.metric)},
                "target": {"type": "AverageValue", "averageValue": a.target},
            },
        }],
    });
    if let Some(b) = &a.behavior {
        hpa_spec["behavior"] = json!(b);
    }
    Some(typed(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta.object(&meta.name),
        "spec": hpa_spec,
    })))
}

/// The PromQL KEDA evaluates: the metric summed over this service's pods. With KEDA's
/// `AverageValue` metric type the HPA divides it by the target, i.e. scales on the per-pod
/// average.
pub fn keda_query(metric: AutoscalingMetric, name: &str, namespace: &str) -> String {
    format!(
        "sum({}{{namespace=\"{namespace}\",pod=~\"{name}-[a-z0-9]+-[a-z0-9]+\"}})",
        vllm_metric_name(metric)
    )
}

fn render_scaled_object(spec: &InferenceServiceSpec, meta: &Meta) -> Option<Value> {
    let a = spec.autoscaling.as_ref()?;
    if a.provider != AutoscalingProvider::Keda {
        return None;
    }
    let threshold = quantity_to_f64(&a.target.0).unwrap_or(1.0);
    let mut so_spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta.name},
        "minReplicaCount": a.min_replicas,
        "maxReplicaCount": a.max_replicas,
        "triggers": [{
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": a.prometheus_url.clone().unwrap_or_default(),
                "query": keda_query(a.metric, &meta.name, &meta.namespace),
                "threshold": fmt_f64(threshold),
            },
        }],
    });
    if let Some(b) = &a.behavior {
        so_spec["advanced"] = json!({"horizontalPodAutoscalerConfig": {"behavior": b}});
    }
    Some(json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta.object(&meta.name),
        "spec": so_spec,
    }))
}

/// Metadata of a scrape object: the operator's labels, plus the configured extra labels
/// (which never replace the operator's own keys).
fn scrape_metadata(meta: &Meta, ctx: &RenderContext) -> Value {
    let mut m = meta.object(&meta.name);
    let mut labels = ctx.pod_monitor_labels.clone();
    labels.extend(meta.labels.clone());
    m["labels"] = json!(labels);
    m
}

fn render_pod_monitor(meta: &Meta, ctx: &RenderContext) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": scrape_metadata(meta, ctx),
        "spec": {
            "selector": {"matchLabels": selector_labels(&meta.name)},
            "podMetricsEndpoints": [{"port": HTTP_PORT_NAME, "path": "/metrics", "interval": "15s"}],
        },
    })
}

fn render_pod_monitoring(meta: &Meta, ctx: &RenderContext) -> Value {
    json!({
        "apiVersion": "monitoring.googleapis.com/v1",
        "kind": "PodMonitoring",
        "metadata": scrape_metadata(meta, ctx),
        "spec": {
            "selector": {"matchLabels": selector_labels(&meta.name)},
            "endpoints": [{"port": HTTP_PORT_NAME, "path": "/metrics", "interval": "15s"}],
            // The `pod` label is what the adapter rules, KEDA query and dashboards match on.
            "targetLabels": {"metadata": ["pod", "container"]},
        },
    })
}

/// The pods of InferenceService `isvc`: those of its Deployment's ReplicaSets,
/// `NAME-HASH-SUFFIX` where HASH is the pod-template hash (1 to 10 characters) and SUFFIX 5
/// characters, both of the alphabet Kubernetes generates names from. `NAME-.*` would also
/// match other InferenceServices whose names start with `NAME-` (`qwen-sim` for `qwen`).
pub fn pod_regex(isvc: &str) -> String {
    const ALPHABET: &str = "[bcdfghjklmnpqrstvwxz2456789]";
    let mut name = String::new();
    for c in isvc.chars() {
        if !c.is_ascii_alphanumeric() && c != '-' {
            name.push('\\');
        }
        name.push(c);
    }
    format!("{name}-{ALPHABET}{{1,10}}-{ALPHABET}{{5}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(re: &str, name: &str) -> bool {
        // Prometheus anchors `=~` at both ends.
        regex::Regex::new(&format!("^(?:{re})$"))
            .unwrap()
            .is_match(name)
    }

    #[test]
    fn pod_regex_matches_only_the_targets_own_pods() {
        let re = pod_regex("qwen");
        // Pods of Deployment `qwen` (pod-template hashes of 9 and 10 characters).
        assert!(matches(&re, "qwen-7d9f8c6b5-x2k4q"));
        assert!(matches(&re, "qwen-5c8b9d7f46-b7w9z"));
        // The shipped examples `qwen-sim` and `qwen-autoscaled`, and a load pod.
        assert!(!matches(&re, "qwen-sim-7d9f8c6b5-x2k4q"));
        assert!(!matches(&re, "qwen-autoscaled-5c8b9d7f46-b7w9z"));
        assert!(!matches(&re, "qwen-scaling-load-0-x2k4q"));
        assert!(!matches(&re, "qwen-sim-x2k4q"));
        // And `qwen-sim`'s own pods match its own regex.
        assert!(matches(&pod_regex("qwen-sim"), "qwen-sim-7d9f8c6b5-x2k4q"));
        assert!(!matches(&pod_regex("qwen-sim"), "qwen-7d9f8c6b5-x2k4q"));
        // Dots in a name are literal.
        assert!(!matches(&pod_regex("a.b"), "axb-7d9f8c6b5-x2k4q"));
    }
}
