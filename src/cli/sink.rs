//! In a cluster, the load pods hand their results to the operator through ConfigMaps owned
//! by the BenchmarkRun, one per pod: each pod server-side-applies its key
//! (`<prefix>pod-<index>.json`) after every step, so a crash loses at most the running step
//! and pods never crowd each other out of the 1 MiB an object may hold. Results that outgrow
//! [`MAX_RESULTS_BYTES`] are not written: the pod writes a short marker key
//! (`...json` + [`OVER_BUDGET_SUFFIX`]) instead, keeping the steps it wrote before, and the
//! operator fails the run with the `ResultsOverBudget` reason. Embedded per-request records
//! (`load.records`) go first: results that outgrow the budget with them are written without
//! them, every record counted in `summary.records.dropped`.

use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use crate::contract::results::Results;
use crate::contract::target::TargetProblem;

/// Largest results document a pod writes (a ConfigMap holds 1 MiB in all).
pub const MAX_RESULTS_BYTES: usize = 900 * 1024;

/// Suffix of the marker key a pod writes when its results outgrow [`MAX_RESULTS_BYTES`].
pub use crate::render::benchmark_run::{OVER_BUDGET_SUFFIX, TARGET_PROBLEM_SUFFIX};

/// The ConfigMap key a pod writes.
pub fn key(prefix: &str, index: u32) -> String {
    format!("{prefix}pod-{index}.json")
}

/// `results` without the records it embeds, all of them counted as dropped (`None` when it
/// embeds none).
pub fn without_records(results: &Results) -> Option<Results> {
    let r = results.summary.records.as_ref().filter(|r| r.count > 0)?;
    let mut out = results.clone();
    out.summary.records = Some(crate::contract::records::EmbeddedRecords {
        data: String::new(),
        count: 0,
        dropped: r.dropped + r.count,
        ..r.clone()
    });
    Some(out)
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The results are in the pod's key.
    Stored,
    /// They were over the budget: the marker says so (the message), the key is unchanged.
    OverBudget(String),
}

/// Writes one pod's results into its key of its results ConfigMap.
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

    /// Apply the results under this pod's key. Results over [`MAX_RESULTS_BYTES`] become
    /// the over-budget marker instead (the key keeps the last results that fit).
    pub async fn write(&self, results: &Results) -> anyhow::Result<Written> {
        let mut text = serde_json::to_string(results)?;
        if text.len() > MAX_RESULTS_BYTES
            && let Some(stripped) = without_records(results)
        {
            // Results first: drop the embedded records (counted) rather than the steps.
            text = serde_json::to_string(&stripped)?;
        }
        if text.len() > MAX_RESULTS_BYTES {
            let msg = format!(
                "{} steps of results are {} KiB, over the {} KiB budget of one results ConfigMap",
                results.steps.len(),
                text.len() / 1024,
                MAX_RESULTS_BYTES / 1024
            );
            self.apply(format!("{}{OVER_BUDGET_SUFFIX}", self.key), msg.clone())
                .await?;
            return Ok(Written::OverBudget(msg));
        }
        self.apply(self.key.clone(), text).await?;
        Ok(Written::Stored)
    }

    /// Record why the target could not be benchmarked (the marker the operator fails on).
    pub async fn write_target_problem(&self, problem: &TargetProblem) -> anyhow::Result<()> {
        let text = serde_json::to_string(problem)?;
        self.apply(format!("{}{TARGET_PROBLEM_SUFFIX}", self.key), text)
            .await
    }

    async fn apply(&self, key: String, text: String) -> anyhow::Result<()> {
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name},
            "data": {(key.clone()): text},
        });
        // One field manager per key: applying the marker must not drop the results key.
        let params = PatchParams::apply(&format!("inferops-loadgen-{key}")).force();
        self.api
            .patch(&self.name, &params, &Patch::Apply(&patch))
            .await
            .with_context(|| format!("writing results to ConfigMap {}", self.name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::plan::Plan;
    use crate::contract::records::{EMBEDDED_ENCODING, EmbeddedRecords};
    use crate::contract::results::{Metadata, Summary};

    #[test]
    fn records_are_dropped_and_counted_before_results_are() {
        let mut results = Results {
            metadata: Metadata::new(&Plan::new("http://x", "m")),
            steps: vec![],
            summary: Summary::of(&[], 0.01),
        };
        assert!(without_records(&results).is_none(), "nothing to drop");
        results.summary.records = Some(EmbeddedRecords {
            encoding: EMBEDDED_ENCODING.into(),
            data: "x".repeat(1000),
            count: 40,
            dropped: 2,
            max_bytes: 4096,
        });
        let stripped = without_records(&results).unwrap();
        let r = stripped.summary.records.unwrap();
        assert_eq!((r.count, r.dropped, r.data.as_str()), (0, 42, ""));
        assert_eq!(r.max_bytes, 4096);
    }
}
