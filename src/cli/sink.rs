//! In a cluster, the load pods hand their results to the operator through one ConfigMap
//! owned by the BenchmarkRun: each pod server-side-applies its own key
//! (`<prefix>pod-<index>.json`) after every step, so a crash loses at most the running step
//! and pods never overwrite each other.

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use crate::contract::results::Results;

/// Largest results document a pod writes (a ConfigMap holds 1 MiB in all).
pub const MAX_RESULTS_BYTES: usize = 900 * 1024;

/// The ConfigMap key a pod writes.
pub fn key(prefix: &str, index: u32) -> String {
    format!("{prefix}pod-{index}.json")
}

/// Writes one pod's results into its key of the results ConfigMap.
pub struct ConfigMapSink {
    api: Api<ConfigMap>,
    name: String,
    key: String,
}

impl ConfigMapSink {
    /// A sink for ConfigMap `name` in `namespace`, key `key`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, key: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            key,
        }
    }

    /// A sink using the in-cluster (or kubeconfig) client and `POD_NAMESPACE`.
    pub async fn from_env(name: &str, key: String) -> anyhow::Result<Self> {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API to write results")?;
        let namespace = std::env::var("POD_NAMESPACE")
            .unwrap_or_else(|_| client.default_namespace().to_string());
        Ok(Self::new(client, &namespace, name, key))
    }

    /// The results this pod's key already holds (an earlier attempt of the pod), if any.
    pub async fn read(&self) -> anyhow::Result<Option<Results>> {
        let cm = self
            .api
            .get_opt(&self.name)
            .await
            .with_context(|| format!("reading ConfigMap {}", self.name))?;
        let Some(text) = cm
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(&self.key))
        else {
            return Ok(None);
        };
        let results = serde_json::from_str(&text)
            .with_context(|| format!("ConfigMap {} key {}", self.name, self.key))?;
        Ok(Some(results))
    }

    /// Apply the results under this pod's key.
    pub async fn write(&self, results: &Results) -> anyhow::Result<()> {
        let text = serde_json::to_string(results)?;
        if text.len() > MAX_RESULTS_BYTES {
            bail!(
                "results are {} KiB, more than the {} KiB a ConfigMap key can hold; use fewer steps per run",
                text.len() / 1024,
                MAX_RESULTS_BYTES / 1024
            );
        }
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name},
            "data": {(self.key.clone()): text},
        });
        let params = PatchParams::apply(&format!("inferops-loadgen-{}", self.key)).force();
        self.api
            .patch(&self.name, &params, &Patch::Apply(&patch))
            .await
            .with_context(|| format!("writing results to ConfigMap {}", self.name))?;
        Ok(())
    }
}
