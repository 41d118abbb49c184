//! Pure renderers: a custom resource (plus a little context) in, the Kubernetes objects the
//! operator would create out. No I/O here: the controller applies what these return, and
//! `inferops render` prints it.
//!
//! - [`inference_service`]: `InferenceService` -> Deployment, Service, PVC, PDB, HPA or KEDA
//!   `ScaledObject`, `PodMonitor` or `PodMonitoring`.
//! - [`accelerator`]: `spec.accelerator` -> node selector and tolerations per platform.
//! - [`benchmark_run`]: `BenchmarkRun` -> load Job, plan ConfigMap, results ConfigMap, RBAC.
//!
//! The `inferops render` subcommand that prints these lives in `crate::cli::render`.

pub mod accelerator;
pub mod benchmark_run;
pub mod inference_service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// Default operator image: the one `engine.kind: sim` pods and load-generator Jobs run.
pub fn default_operator_image() -> String {
    format!("ghcr.io/inferops/inferops:{}", env!("CARGO_PKG_VERSION"))
}

/// Which Prometheus scrapes the engine pods, and so which scrape object is rendered.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MonitoringStack {
    /// Prometheus Operator (kube-prometheus-stack): a `monitoring.coreos.com/v1` PodMonitor.
    #[default]
    #[value(alias = "kube-prometheus-stack")]
    PrometheusOperator,
    /// GKE Managed Prometheus: a `monitoring.googleapis.com/v1` PodMonitoring.
    Gmp,
    /// No scrape objects at all (whatever `monitoring.podMonitor` says).
    None,
}

/// What a renderer needs besides the custom resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// Image of the operator itself (runs `inferops sim` and `inferops loadgen`).
    pub operator_image: String,
    /// Namespace to render into when the object has none in `metadata.namespace`.
    pub default_namespace: String,
    /// Extra labels on every rendered PodMonitor / PodMonitoring, e.g. `release:
    /// kube-prometheus-stack`, which kube-prometheus-stack's default `podMonitorSelector`
    /// requires.
    pub pod_monitor_labels: BTreeMap<String, String>,
    /// Which scrape object engine pods get.
    pub monitoring_stack: MonitoringStack,
    /// Secrets (by name, in the object's namespace) for pulling images: added as
    /// `imagePullSecrets` to engine, simulator and load-generator pods.
    pub image_pull_secrets: Vec<String>,
    /// Engine images an InferenceService may run (`engine.image`, and the default vLLM
    /// image): each entry is a prefix of the image reference (`vllm/vllm-openai:`,
    /// `registry.example.com/ml/`; a trailing `*` is allowed and ignored). Empty: any image.
    /// The operator's own image (the simulator's default) is always allowed.
    pub allowed_engine_images: Vec<String>,
}

impl Default for RenderContext {
    fn default() -> Self {
        Self {
            operator_image: default_operator_image(),
            default_namespace: "default".to_string(),
            pod_monitor_labels: BTreeMap::new(),
            monitoring_stack: MonitoringStack::default(),
            image_pull_secrets: Vec::new(),
            allowed_engine_images: Vec::new(),
        }
    }
}

impl RenderContext {
    /// Whether `image` may run as an engine under [`RenderContext::allowed_engine_images`].
    pub fn engine_image_allowed(&self, image: &str) -> bool {
        self.allowed_engine_images.is_empty()
            || image == self.operator_image
            || self
                .allowed_engine_images
                .iter()
                .any(|p| image.starts_with(p.strip_suffix('*').unwrap_or(p)))
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let (k, v) = (k.trim(), v.trim());
    if k.is_empty() || k.len() > 317 || v.len() > 63 {
        return Err(format!(
            "{s:?}: a label key must be non-empty (at most 253 + 63 characters) and a value \
             at most 63 characters"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Operator settings that change what the renderers produce: flags of `inferops operator`
/// and `inferops render` (the Helm chart sets them from its values).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderSettings {
    /// Extra label `KEY=VALUE` on every PodMonitor / PodMonitoring (repeat the flag, or
    /// comma-separate in the env var), e.g. `release=kube-prometheus-stack` so that
    /// kube-prometheus-stack's default `podMonitorSelector` picks the PodMonitors up.
    #[arg(long = "podmonitor-label", env = "INFEROPS_PODMONITOR_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub podmonitor_labels: Vec<(String, String)>,
    /// Scrape objects for engine pods: `prometheus-operator` (PodMonitor, default), `gmp`
    /// (GKE Managed Prometheus PodMonitoring) or `none`.
    #[arg(long = "monitoring-stack", env = "INFEROPS_MONITORING_STACK", value_enum, default_value_t = MonitoringStack::PrometheusOperator)]
    pub monitoring_stack: MonitoringStack,
    /// Image pull Secret added to engine, simulator and load-generator pods (repeat the
    /// flag, or comma-separate in the env var); each must exist in the pod's namespace.
    #[arg(
        long = "image-pull-secret",
        env = "INFEROPS_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub image_pull_secrets: Vec<String>,
    /// Engine image prefix InferenceServices may run, e.g. `vllm/vllm-openai:` (repeat the
    /// flag, or comma-separate in the env var; a trailing `*` is ignored). Unset: any image.
    #[arg(
        long = "allowed-engine-image",
        env = "INFEROPS_ALLOWED_ENGINE_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_engine_images: Vec<String>,
}

impl RenderSettings {
    /// `ctx` with these settings applied.
    pub fn apply(&self, mut ctx: RenderContext) -> RenderContext {
        ctx.pod_monitor_labels = self.podmonitor_labels.iter().cloned().collect();
        ctx.monitoring_stack = self.monitoring_stack;
        ctx.image_pull_secrets = self
            .image_pull_secrets
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        ctx.allowed_engine_images = self
            .allowed_engine_images
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        ctx
    }
}

/// Why a custom resource cannot be rendered. Every variant names the offending field (as a
/// dotted path) and says how to fix it; the controller turns this into a `Degraded`
/// condition with reason `InvalidSpec` and a Warning Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A field that this configuration needs is not set.
    #[error("{field}: {message}; {fix}")]
    Missing {
        /// Dotted path of the field, e.g. `spec.accelerator`.
        field: String,
        /// What is missing.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// A value is out of range or inconsistent with another field.
    #[error("{field}: {message}; {fix}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The accelerator / platform / instance family combination does not exist.
    #[error("{field}: {message}; {fix}")]
    Unsupported {
        /// Dotted path of the field.
        field: String,
        /// What is not offered.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The operator's settings forbid the value (e.g. an engine image outside the
    /// allow-list).
    #[error("{field}: {message}; {fix}")]
    NotAllowed {
        /// Dotted path of the field.
        field: String,
        /// What is not allowed.
        message: String,
        /// How to fix it.
        fix: String,
    },
}

impl RenderError {
    /// Dotted path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            RenderError::Missing { field, .. }
            | RenderError::Invalid { field, .. }
            | RenderError::Unsupported { field, .. }
            | RenderError::NotAllowed { field, .. } => field,
        }
    }

    /// The suggested fix.
    pub fn fix(&self) -> &str {
        match self {
            RenderError::Missing { fix, .. }
            | RenderError::Invalid { fix, .. }
            | RenderError::Unsupported { fix, .. }
            | RenderError::NotAllowed { fix, .. } => fix,
        }
    }

    pub(crate) fn missing(field: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        RenderError::Missing {
            field: field.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        RenderError::Invalid {
            field: field.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn unsupported(
        field: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        RenderError::Unsupported {
            field: field.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Label keys shared by every object the operator creates.
pub mod labels {
    /// Kubernetes recommended label: the application.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// Kubernetes recommended label: this instance.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// Kubernetes recommended label: the component inside the application.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Kubernetes recommended label: the tool managing the object (`inferops`).
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The owning `InferenceService`; the only pod selector label (stable across spec edits).
    pub const INFERENCE_SERVICE: &str = "inferops.dev/inference-service";
    /// Value of [`MANAGED_BY`].
    pub const MANAGER: &str = "inferops";
}

/// An owner reference (controller=true, blockOwnerDeletion=true) to `owner`, or `None` when
/// the owner has no `metadata.uid` yet (e.g. rendering a file with `inferops render`: the
/// operator adds the reference from the live object).
pub fn controller_owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let meta = owner.meta();
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Parse a Kubernetes quantity (`"5"`, `"800m"`, `"1.5"`, `"2k"`, `"1Gi"`) into a number.
pub fn quantity_to_f64(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let base: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(base * mult)
}

pub(crate) fn string_map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_image_allow_list() {
        let mut ctx = RenderContext::default();
        assert!(
            ctx.engine_image_allowed("anything:latest"),
            "empty list: all"
        );
        ctx.allowed_engine_images = vec!["vllm/vllm-openai:*".into(), "r.example/ml/".into()];
        assert!(ctx.engine_image_allowed("vllm/vllm-openai:v0.30.0"));
        assert!(ctx.engine_image_allowed("r.example/ml/v:1"));
        assert!(!ctx.engine_image_allowed("r.example/other:2"));
        assert!(!ctx.engine_image_allowed("evil/vllm-openai:v0.30.0"));
        assert!(!ctx.engine_image_allowed("vllm/vllm-openai-evil:1"));
        let own = ctx.operator_image.clone();
        assert!(ctx.engine_image_allowed(&own), "the operator's own image");
    }

    #[test]
    fn settings_from_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            s: RenderSettings,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--podmonitor-label",
            "release=kube-prometheus-stack",
            "--podmonitor-label",
            "team=ml",
            "--monitoring-stack",
            "gmp",
            "--image-pull-secret",
            "regcred",
            "--allowed-engine-image",
            "vllm/vllm-openai:*",
        ])
        .unwrap();
        let ctx = cli.s.apply(RenderContext::default());
        assert_eq!(ctx.pod_monitor_labels["release"], "kube-prometheus-stack");
        assert_eq!(ctx.pod_monitor_labels["team"], "ml");
        assert_eq!(ctx.monitoring_stack, MonitoringStack::Gmp);
        assert_eq!(ctx.image_pull_secrets, ["regcred"]);
        assert_eq!(ctx.allowed_engine_images, ["vllm/vllm-openai:*"]);
        assert!(Cli::try_parse_from(["x", "--podmonitor-label", "novalue"]).is_err());
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(quantity_to_f64("5"), Some(5.0));
        assert_eq!(quantity_to_f64("800m"), Some(0.8));
        assert_eq!(quantity_to_f64("1.5"), Some(1.5));
        assert_eq!(quantity_to_f64("2k"), Some(2000.0));
        assert_eq!(quantity_to_f64("x"), None);
        assert_eq!(quantity_to_f64("5q"), None);
    }
}
