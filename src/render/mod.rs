//! Pure renderers: a custom resource (plus a little context) in, the Kubernetes objects the
//! operator would create out. No I/O here: the controller applies what these return, and
//! `inferops render` prints it.
//!
//! - [`inference_service`]: `InferenceService` -> Deployment, Service, PVC, PDB, HPA or KEDA
//!   `ScaledObject`, `PodMonitor`.
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

/// What a renderer needs besides the custom resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// Image of the operator itself (runs `inferops sim` and `inferops loadgen`).
    pub operator_image: String,
    /// Namespace to render into when the object has none in `metadata.namespace`.
    pub default_namespace: String,
}

impl Default for RenderContext {
    fn default() -> Self {
        Self {
            operator_image: default_operator_image(),
            default_namespace: "default".to_string(),
        }
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
}

impl RenderError {
    /// Dotted path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            RenderError::Missing { field, .. }
            | RenderError::Invalid { field, .. }
            | RenderError::Unsupported { field, .. } => field,
        }
    }

    /// The suggested fix.
    pub fn fix(&self) -> &str {
        match self {
            RenderError::Missing { fix, .. }
            | RenderError::Invalid { fix, .. }
            | RenderError::Unsupported { fix, .. } => fix,
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
    fn quantities_parse() {
        assert_eq!(quantity_to_f64("5"), Some(5.0));
        assert_eq!(quantity_to_f64("800m"), Some(0.8));
        assert_eq!(quantity_to_f64("1.5"), Some(1.5));
        assert_eq!(quantity_to_f64("2k"), Some(2000.0));
        assert_eq!(quantity_to_f64("x"), None);
        assert_eq!(quantity_to_f64("5q"), None);
    }
}
