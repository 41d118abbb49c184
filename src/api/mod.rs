//! The CRDs: `InferenceService` and `BenchmarkRun` in `inferops.dev/v1alpha1`.
//!
//! Every field carries a doc comment (it becomes `kubectl explain`), and the rules an
//! apiserver enforces are CEL expressions in the generated schema (`x-kubernetes-validations`).
//! [`validate`] evaluates the same schema and rules without a cluster.

// kube's `printcolumn(..)` lists repeat `type_ = ...`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
mod benchmark_run;
mod common;
mod conditions;
#[allow(clippy::duplicated_attributes)]
mod inference_service;
pub mod schema;
mod validate;

pub use benchmark_run::*;
pub use common::*;
pub use conditions::*;
pub use inference_service::*;
pub use validate::{ValidationError, parse_documents, validate_object};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of both kinds.
pub const GROUP: &str = "inferops.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";

/// Both CRDs, InferenceService first, with the [`schema::harden`] rules applied to their
/// schemas (so that whatever the apiserver accepts also deserializes).
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![InferenceService::crd(), BenchmarkRun::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(v) = version.schema.as_mut()
                && let Some(s) = v.open_api_v3_schema.as_mut()
            {
                let mut value = serde_json::to_value(&*s).expect("a schema always serializes");
                schema::harden(&mut value);
                *s = serde_json::from_value(value).expect("a hardened schema is still a schema");
            }
        }
    }
    crds
}

/// Both CRDs as multi-document YAML, exactly what `inferops crds` prints and `crds/` holds.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD always serializes to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}
