//! `InferenceService`: one model served by vLLM (or the simulator) on a GPU node pool.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SecretKeyRef, default_true};

/// Desired state of an `InferenceService`: a model, the engine that serves it, the GPUs it
/// runs on and how it scales.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "inferops.dev",
    version = "v1alpha1",
    kind = "InferenceService",
    namespaced,
    status = "InferenceServiceStatus",
    shortname = "infsvc",
    category = "inferops",
    doc = "An LLM served by vLLM replicas on a GPU node pool, with an OpenAI-compatible endpoint.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.name"),
    printcolumn(
        name = "Accelerator",
        type_ = "string",
        json_path = ".spec.accelerator.type"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it names the Service and is a label value"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must start with a letter and contain only lowercase letters, digits and '-': it is the name of a Service (a DNS-1035 label)")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.engine.kind == 'sim' || has(self.accelerator)").message("spec.accelerator is required when spec.engine.kind is vllm: set accelerator.type (e.g. nvidia-l4) and accelerator.count"))]
#[x_kube(validation = Rule::new("!has(self.engine.tensorParallelSize) || self.engine.tensorParallelSize <= (has(self.accelerator) && has(self.accelerator.count) ? self.accelerator.count : 1)").message("spec.engine.tensorParallelSize must not exceed spec.accelerator.count: each tensor-parallel rank needs its own GPU"))]
#[x_kube(validation = Rule::new("!has(self.model.cache) || !has(self.model.cache.size) || (has(self.model.cache.accessMode) && self.model.cache.accessMode != 'ReadWriteOnce') || (has(self.autoscaling) ? self.autoscaling.maxReplicas <= 1 : self.replicas <= 1)").message("spec.model.cache.accessMode is ReadWriteOnce (the default), which one node at a time can mount, but more than one replica can exist (spec.replicas or spec.autoscaling.maxReplicas above 1): set spec.model.cache.accessMode: ReadWriteMany with an RWX storage class (Filestore, EFS), use cache.claimName, or keep one replica"))]
pub struct InferenceServiceSpec {
    /// The model to serve: Hugging Face id, served name, revision, token and cache.
    pub model: ModelSpec,
    /// The serving engine and its tuning flags.
    #[serde(default)]
    pub engine: EngineSpec,
    /// Number of replicas when autoscaling is off (each replica is one pod with
    /// `accelerator.count` GPUs). Ignored by the operator when `autoscaling` is set: the
    /// autoscaler owns the replica count. Also the target of the scale subresource.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// The GPUs each replica runs on. Required for `engine.kind: vllm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<AcceleratorSpec>,
    /// Scheduling overrides; each field set here wins over what the accelerator profile
    /// derives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<SchedulingSpec>,
    /// Autoscaling on vLLM's queue depth (or another per-pod metric). When set, the
    /// operator stops setting the Deployment's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Metrics scraping.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// How the engine Deployment replaces its pods when the spec changes. By default no
    /// spare GPU is needed: `Recreate` with one replica or a `ReadWriteOnce` cache,
    /// otherwise `RollingUpdate` with `maxSurge: 0`, `maxUnavailable: 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
}

/// How a rollout replaces engine pods (the Deployment's `strategy`): `Recreate` or
/// `RollingUpdate`. Default: `Recreate` with one replica (no autoscaling) or a
/// `ReadWriteOnce` cache PVC, `RollingUpdate` otherwise.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutStrategy {
    /// Stop every old pod, then start the new ones: downtime, but never two pods for one
    /// GPU or one `ReadWriteOnce` volume.
    Recreate,
    /// Replace pods a few at a time (`maxSurge` / `maxUnavailable`).
    RollingUpdate,
}

/// Rollout settings of the engine Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.strategy) || self.strategy == 'RollingUpdate' || (!has(self.maxSurge) && !has(self.maxUnavailable))").message("spec.rollout.maxSurge and maxUnavailable only apply to strategy RollingUpdate"))]
pub struct RolloutSpec {
    /// `Recreate` or `RollingUpdate`. Default: `Recreate` with one replica (no
    /// autoscaling) or a `ReadWriteOnce` cache PVC, `RollingUpdate` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,
    /// Extra pods a RollingUpdate may start above the desired count (each needs its own
    /// GPUs). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods a RollingUpdate may take down at once. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds a rollout may make no progress before the Deployment reports
    /// `ProgressDeadlineExceeded` (then `Degraded`). Must exceed the startup probe's budget
    /// (3600 s for vLLM, 60 s for the simulator). Default: that budget plus 600 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
}

fn default_replicas() -> i32 {
    1
}

/// The model and where its weights come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    /// Hugging Face model id (e.g. `Qwen/Qwen2.5-0.5B-Instruct`) or a path inside the cache
    /// volume.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("spec.model.name must not be empty"))]
    pub name: String,
    /// Model name clients send in the OpenAI `model` field (`--served-model-name`).
    /// Defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_name: Option<String>,
    /// Model revision: a branch, tag or commit on the Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Secret key holding a Hugging Face token for gated models, passed as `HF_TOKEN`.
    /// Only the reference is stored; the token never appears in status, events or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Persistent cache for downloaded weights, mounted as the Hugging Face cache, so that
    /// restarts do not download the model again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<ModelCacheSpec>,
    /// LoRA adapters served next to the base model (`--enable-lora --lora-modules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lora_adapters: Vec<LoraAdapter>,
}

/// The model cache volume: either a new PVC the operator creates, or an existing claim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.size) != has(self.claimName)").message("spec.model.cache: set exactly one of size (a new PVC) or claimName (an existing PVC)"))]
pub struct ModelCacheSpec {
    /// Size of a new PVC owned by this InferenceService (e.g. `50Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// Storage class for the new PVC; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Name of an existing PVC to mount instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Access mode of the new PVC (with `size`), fixed when the PVC is created (a PVC's
    /// access modes are immutable): `ReadWriteOnce` (default; one node mounts it, so one
    /// replica) or `ReadWriteMany` (several replicas on several nodes; needs an RWX storage
    /// class such as Filestore or EFS). Not used with `claimName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<CacheAccessMode>,
}

/// Access mode of the new cache PVC (with `size`), fixed when the PVC is created (access
/// modes are immutable): `ReadWriteOnce` (default; one node mounts it, so one replica) or
/// `ReadWriteMany` (replicas on several nodes; needs an RWX storage class such as Filestore or
/// EFS). Not used with `claimName`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CacheAccessMode {
    /// Mounted read-write by the pods of one node.
    #[default]
    ReadWriteOnce,
    /// Mounted read-write by pods on many nodes.
    ReadWriteMany,
}

impl CacheAccessMode {
    /// The Kubernetes spelling (`ReadWriteOnce`, `ReadWriteMany`).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheAccessMode::ReadWriteOnce => "ReadWriteOnce",
            CacheAccessMode::ReadWriteMany => "ReadWriteMany",
        }
    }
}

/// A LoRA adapter served as its own model name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoraAdapter {
    /// Model name clients use to select this adapter.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub name: String,
    /// Where vLLM loads the adapter from: a Hugging Face id or a path in the cache volume.
    pub source: String,
}

/// Which engine serves the model.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// vLLM's OpenAI-compatible server on GPUs.
    #[default]
    Vllm,
    /// inferops' simulated vLLM (no GPU): for demos, CI and clusters without GPUs.
    Sim,
}

/// Weight and activation data type (`--dtype`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Let vLLM choose from the model config.
    Auto,
    /// 16-bit float.
    Half,
    /// bfloat16 (not on T4).
    Bfloat16,
    /// 32-bit float.
    Float,
}

/// Quantization method (`--quantization`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Activation-aware weight quantization.
    Awq,
    /// GPTQ weight quantization.
    Gptq,
    /// FP8 weights and activations (L4, L40S, H100).
    Fp8,
    /// bitsandbytes 4/8-bit.
    Bitsandbytes,
}

/// Engine settings. Typed fields become vLLM flags; anything else goes in `extraArgs`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineSpec {
    /// `vllm` (default) or `sim` (the operator's own simulated engine, no GPU).
    #[serde(default)]
    pub kind: EngineKind,
    /// Container image; defaults to a pinned `vllm/vllm-openai` for vllm and the operator's
    /// own image for sim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Maximum context length in tokens (`--max-model-len`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_model_len: Option<u32>,
    /// Fraction of GPU memory vLLM may use for weights and KV cache
    /// (`--gpu-memory-utilization`), in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("spec.engine.gpuMemoryUtilization must be in (0, 1], e.g. 0.9"))]
    pub gpu_memory_utilization: Option<f64>,
    /// Maximum sequences batched together (`--max-num-seqs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_num_seqs: Option<u32>,
    /// GPUs a replica shards the model over (`--tensor-parallel-size`); at most
    /// `accelerator.count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tensor_parallel_size: Option<u32>,
    /// Data type (`--dtype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
    /// Quantization method (`--quantization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Simulator profile when `kind: sim` (e.g. `qwen2.5-0.5b-l4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_profile: Option<String>,
    /// Extra command-line arguments appended verbatim (e.g. `--enable-prefix-caching`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Extra environment variables for the engine container. Use `valueFrom` for secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Container resources; the GPU limit is added from `accelerator.count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// NVIDIA GPU models the platform profiles know.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum AcceleratorType {
    /// NVIDIA L4 (24 GB): GKE g2, EKS g6.
    NvidiaL4,
    /// NVIDIA A10G (24 GB): EKS g5.
    NvidiaA10g,
    /// NVIDIA T4 (16 GB): GKE n1 + T4, EKS g4dn.
    NvidiaT4,
    /// NVIDIA L40S (48 GB): EKS g6e.
    NvidiaL40s,
    /// NVIDIA A100 80 GB: GKE a2-ultragpu, EKS p4de.
    #[serde(rename = "nvidia-a100-80gb")]
    NvidiaA100_80gb,
    /// NVIDIA H100 80 GB: GKE a3, EKS p5.
    #[serde(rename = "nvidia-h100-80gb")]
    NvidiaH100_80gb,
}

/// Where the cluster runs; decides the node labels used to find GPUs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Google Kubernetes Engine: `cloud.google.com/gke-accelerator`.
    Gke,
    /// Amazon EKS: instance types or Karpenter GPU labels.
    Eks,
    /// Any cluster with the NVIDIA device plugin: only the `nvidia.com/gpu` resource and
    /// toleration, no node labels.
    #[default]
    Generic,
}

/// GPUs per replica and the node pool they come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.spot) || !self.spot || self.platform == 'gke' || self.platform == 'eks'").message("spec.accelerator.spot needs platform gke or eks: a generic cluster has no standard spot label"))]
#[x_kube(validation = Rule::new("!has(self.eksNodeLabels) || self.platform == 'eks'").message("spec.accelerator.eksNodeLabels needs platform eks"))]
pub struct AcceleratorSpec {
    /// GPU model, e.g. `nvidia-l4`.
    #[serde(rename = "type")]
    pub type_: AcceleratorType,
    /// GPUs per replica (the `nvidia.com/gpu` limit), at least 1.
    #[serde(default = "default_gpu_count")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.accelerator.count must be at least 1"))]
    pub count: u32,
    /// `gke`, `eks` or `generic` (default).
    #[serde(default)]
    pub platform: Platform,
    /// Schedule on spot / preemptible capacity.
    #[serde(default)]
    pub spot: bool,
    /// EKS only: pin an exact instance type (e.g. `g5.2xlarge`) instead of the GPU-name label.
    /// Any `count` up to that instance's GPUs is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// EKS only: which node labels select the GPU nodes. `karpenter` (default):
    /// `karpenter.k8s.aws/instance-gpu-name`; `autoMode`: EKS Auto Mode's
    /// `eks.amazonaws.com/instance-gpu-name`; `instanceType`: the well-known
    /// `node.kubernetes.io/instance-type` that every node carries (managed node groups with
    /// Cluster Autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_node_labels: Option<EksNodeLabels>,
}

/// EKS only: which node labels select the GPU nodes. `karpenter` (default):
/// `karpenter.k8s.aws/instance-gpu-name`; `autoMode`: EKS Auto Mode's
/// `eks.amazonaws.com/instance-gpu-name`; `instanceType`: the well-known
/// `node.kubernetes.io/instance-type` every node carries (managed node groups with Cluster
/// Autoscaler).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum EksNodeLabels {
    /// Karpenter's `karpenter.k8s.aws/*` labels (and `karpenter.sh/capacity-type`).
    #[default]
    Karpenter,
    /// EKS Auto Mode's `eks.amazonaws.com/*` labels (and `karpenter.sh/capacity-type`).
    AutoMode,
    /// `node.kubernetes.io/instance-type` (and `eks.amazonaws.com/capacityType` for spot):
    /// managed node groups, self-managed nodes, Cluster Autoscaler.
    InstanceType,
}

fn default_gpu_count() -> u32 {
    1
}

/// Scheduling overrides for the engine pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulingSpec {
    /// Node labels merged over (and winning against) the accelerator profile's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added to the profile's `nvidia.com/gpu` toleration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules, used as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Priority class of the engine pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// The per-pod metric the autoscaler follows.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum AutoscalingMetric {
    /// Requests waiting for a batch slot (`vllm:num_requests_waiting`): scales before
    /// latency degrades.
    #[default]
    QueueDepth,
    /// Requests in the running batch (`vllm:num_requests_running`).
    RunningRequests,
    /// KV cache usage, 0..1 (`vllm:kv_cache_usage_perc`).
    KvCacheUsage,
}

/// Who does the scaling.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingProvider {
    /// `autoscaling/v2` HorizontalPodAutoscaler on a Pods metric served by the Prometheus
    /// adapter (rules ship with the chart).
    #[default]
    Hpa,
    /// KEDA `ScaledObject` with a Prometheus trigger.
    Keda,
}

/// Autoscaling bounds, metric and behaviour.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must be <= maxReplicas"))]
pub struct AutoscalingSpec {
    /// Lower bound on replicas.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Upper bound on replicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Metric: `queueDepth` (default), `runningRequests` or `kvCacheUsage`.
    #[serde(default)]
    pub metric: AutoscalingMetric,
    /// Target average value per pod, as a Kubernetes quantity string: e.g. `"5"` waiting
    /// requests, or `"800m"` for 80% KV cache usage.
    #[serde(default = "default_target")]
    pub target: Quantity,
    /// `hpa` (default) or `keda`.
    #[serde(default)]
    pub provider: AutoscalingProvider,
    /// Scale-up / scale-down behaviour, copied into the HPA (or KEDA's advanced HPA config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
    /// Prometheus server KEDA queries (only for `provider: keda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
}

fn default_min_replicas() -> i32 {
    1
}

fn default_target() -> Quantity {
    Quantity("5".to_string())
}

/// Monitoring options.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitoringSpec {
    /// Scrape the engine's `/metrics`: a Prometheus Operator `PodMonitor`, or a GKE Managed
    /// Prometheus `PodMonitoring` when the operator runs with `--monitoring-stack gmp`.
    #[serde(default = "default_true")]
    pub pod_monitor: bool,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self { pod_monitor: true }
    }
}

/// Observed state of an `InferenceService`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist for the current Deployment (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,
    /// Pods passing readiness (`/health`).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the engine pods, in string form (the scale subresource and HPA
    /// read this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// In-cluster OpenAI-compatible base URL, e.g. `http://qwen.default.svc:8000/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl InferenceServiceSpec {
    /// The name clients send in the OpenAI `model` field.
    pub fn served_model_name(&self) -> &str {
        self.model
            .served_name
            .as_deref()
            .unwrap_or(self.model.name.as_str())
    }
}
