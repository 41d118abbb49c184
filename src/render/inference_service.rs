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
//! | PodMonitor `NAME` (Prometheus Operator) | `monitoring.podMonitor` (default true) |
//!
//! With autoscaling on, the Deployment has no `replicas` field: the autoscaler owns it.
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
use super::{RenderContext, RenderError, controller_owner_ref, labels, quantity_to_f64};
use crate::api::{
    AutoscalingMetric, AutoscalingProvider, Dtype, EngineKind, InferenceService,
    InferenceServiceSpec, Quantization,
};

/// Pinned vLLM image used when `engine.image` is unset.
pub const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.11.0";
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
        AutoscalingMetric::QueueDepth => "vllm:num_requests_waiting",
        AutoscalingMetric::RunningRequests => "vllm:num_requests_running",
        AutoscalingMetric::KvCacheUsage => "vllm:kv_cache_usage_perc",
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
    /// Prometheus Operator `monitoring.coreos.com/v1` PodMonitor, when monitoring is on.
    pub pod_monitor: Option<Value>,
}

impl Rendered {
    /// All objects as JSON, in a fixed order: PVC, Deployment, Service, PDB, HPA,
    /// ScaledObject, PodMonitor.
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

/// vLLM command-line arguments (the image's entrypoint is the OpenAI server).
pub fn vllm_args(spec: &InferenceServiceSpec) -> Vec<String> {
    let e = &spec.engine;
    let mut args = vec![
        "--model".to_string(),
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

    let max_replicas = spec
        .autoscaling
        .as_ref()
        .map_or(spec.replicas, |a| a.max_replicas);
    let pvc = render_pvc(spec, &meta, max_replicas);
    Ok(Rendered {
        deployment: render_deployment(spec, &meta, &placement, ctx),
        service: render_service(&meta),
        pdb: (max_replicas > 1).then(|| render_pdb(&meta)),
        hpa: render_hpa(spec, &meta),
        scaled_object: render_scaled_object(spec, &meta),
        pod_monitor: spec
            .monitoring
            .pod_monitor
            .then(|| render_pod_monitor(&meta)),
        pvc,
    })
}

fn render_pvc(
    spec: &InferenceServiceSpec,
    meta: &Meta,
    max_replicas: i32,
) -> Option<PersistentVolumeClaim> {
    let cache = spec.model.cache.as_ref()?;
    let size = cache.size.as_ref()?;
    // Replicas on different nodes can only share a ReadWriteMany volume.
    let mode = if max_replicas > 1 {
        "ReadWriteMany"
    } else {
        "ReadWriteOnce"
    };
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
        json!({
            "name": CONTAINER_NAME,
            "image": spec.engine.image.clone().unwrap_or_else(|| ctx.operator_image.clone()),
            "command": ["inferops"],
            "args": sim_args(spec),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "startupProbe": http_probe(2, 30, 2),
            "readinessProbe": http_probe(5, 3, 2),
            "livenessProbe": http_probe(10, 3, 2),
        })
    } else {
        let count = spec.accelerator.as_ref().map_or(1, |a| a.count);
        let tp = spec.engine.tensor_parallel_size.unwrap_or(1);
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
            "image": spec.engine.image.clone().unwrap_or_else(|| VLLM_IMAGE.to_string()),
            "args": vllm_args(spec),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
            // Up to 60 minutes for the first model download and weight loading.
            "startupProbe": http_probe(10, 360, 5),
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
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": if sim { 10 } else { 60 },
    });
    if !placement.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(placement.node_selector);
    }
    if !placement.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(placement.tolerations);
    }
    if let Some(s) = &spec.scheduling {
        if let Some(a) = &s.affinity {
            pod_spec["affinity"] = json!(a);
        }
        if let Some(p) = &s.priority_class_name {
            pod_spec["priorityClassName"] = json!(p);
        }
    }

    let mut dep_spec = json!({
        "selector": {"matchLabels": selector_labels(&meta.name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
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

fn render_pod_monitor(meta: &Meta) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta.object(&meta.name),
        "spec": {
            "selector": {"matchLabels": selector_labels(&meta.name)},
            "podMetricsEndpoints": [{"port": HTTP_PORT_NAME, "path": "/metrics", "interval": "15s"}],
        },
    })
}
