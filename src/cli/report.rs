//! `inferops report`: a results JSON from `inferops bench` (or `inferops loadgen`), or a
//! BenchmarkRun in the cluster, to `report.md` + `report.html` with charts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kube::Api;

use crate::analysis::{self, Options, rows};
use crate::api::BenchmarkRun;
use crate::contract::results::Results;
use crate::report::RunRecord;

/// Arguments of `inferops report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// A results JSON file, or with `-n` the name of a BenchmarkRun in the cluster.
    pub source: String,
    /// Directory for `report.md`, `report.html` and the SVG charts.
    #[arg(short = 'o', long = "output", default_value = "report")]
    pub out: PathBuf,
    /// Another run to compare against (results JSON, or a BenchmarkRun name with `-n`).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Namespace of the BenchmarkRun(s): read them from the cluster (current kubeconfig).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Print the InferenceService autoscaling patch the run recommends, then exit.
    #[arg(long)]
    pub apply_hint: bool,
    /// Per-request records (`inferops bench --records FILE.jsonl`): adds a latency-over-time
    /// chart (TTFT and ITL p50/p99 in time slices of each step) and a TTFT-vs-prompt-length
    /// scatter.
    #[arg(long, value_name = "FILE.jsonl")]
    pub records: Option<PathBuf>,
}

/// Reads a records file (JSONL).
pub fn read_records(path: &Path) -> anyhow::Result<crate::contract::records::Records> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    crate::contract::records::parse_records(&text).with_context(|| {
        format!(
            "{} is not an inferops records file (write one with `inferops bench --records FILE.jsonl`)",
            path.display()
        )
    })
}

/// A report record from a results JSON document.
pub fn from_results(results: &Results, title: &str) -> RunRecord {
    let steps: Vec<_> = results
        .steps
        .iter()
        .map(|s| {
            let mut row = rows::step_status(s, None);
            if let Some(m) = &s.server {
                rows::attach_metrics(&mut row, m);
            }
            row
        })
        .collect();
    let plan = &results.metadata.plan;
    let slo = plan
        .load
        .saturation
        .as_ref()
        .map(|s| s.slo.clone())
        .unwrap_or_default();
    let summary = analysis::summarize(
        &steps,
        &Options {
            slo,
            target_request_rate: None,
            search: plan.load.saturation.is_some(),
        },
    );
    let m = &results.metadata;
    let mut metadata = BTreeMap::from([
        ("tool".to_string(), format!("{} {}", m.tool, m.version)),
        ("target".to_string(), m.url.clone()),
        ("model".to_string(), m.model.clone()),
        ("api".to_string(), m.api.as_str().to_string()),
        ("load mode".to_string(), m.mode.as_str().to_string()),
        ("started".to_string(), m.started_at.to_rfc3339()),
        (
            "request shape".to_string(),
            format!(
                "{} input / {} output tokens, ignore_eos {}, seed {}",
                plan.workload.input_tokens,
                plan.workload.output_tokens,
                plan.workload.ignore_eos,
                plan.workload.seed
            ),
        ),
    ]);
    if let Some(h) = &m.hostname {
        metadata.insert("load host".into(), h.clone());
    }
    RunRecord {
        title: title.to_string(),
        metadata,
        steps,
        summary,
        records: None,
    }
}

/// A report record from a BenchmarkRun's status.
pub fn from_run(run: &BenchmarkRun) -> anyhow::Result<RunRecord> {
    let name = run.metadata.name.clone().unwrap_or_default();
    let Some(status) = &run.status else {
        bail!("BenchmarkRun {name} has no status yet: the operator has not picked it up");
    };
    if status.steps.is_empty() {
        bail!(
            "BenchmarkRun {name} has no measured steps yet (phase {:?})",
            status.phase
        );
    }
    let mut metadata = status.metadata.clone();
    metadata.insert("phase".into(), format!("{:?}", status.phase));
    if let Some(t) = &status.target {
        metadata.insert("target".into(), t.clone());
    }
    Ok(RunRecord {
        title: name,
        metadata,
        steps: status.steps.clone(),
        summary: status.summary.clone().unwrap_or_default(),
        records: None,
    })
}

fn read_results(path: &Path) -> anyhow::Result<RunRecord> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let results: Results = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an inferops results JSON (write one with `inferops bench --json FILE`)",
            path.display()
        )
    })?;
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| results.metadata.model.clone());
    let mut record = from_results(&results, &title);
    record.records = embedded_records(std::slice::from_ref(&results))?;
    Ok(record)
}

/// The records embedded in results documents (load pods with `load.records`), all pods
/// together; `None` when none embeds any. Warns on stderr when records were dropped.
pub fn embedded_records(
    parts: &[Results],
) -> anyhow::Result<Option<crate::contract::records::Records>> {
    let mut out: Option<crate::contract::records::Records> = None;
    let (mut kept, mut dropped) = (0u64, 0u64);
    for r in parts {
        let Some(e) = &r.summary.records else {
            continue;
        };
        let decoded = e
            .decode()
            .context("decoding the records embedded in the results")?;
        kept += e.count;
        dropped += e.dropped;
        let all = out.get_or_insert_with(|| crate::contract::records::Records {
            headers: Vec::new(),
            records: Vec::new(),
        });
        all.headers.extend(decoded.headers);
        all.records.extend(decoded.records);
    }
    if dropped > 0 {
        eprintln!(
            "warning: {dropped} of {} request records were dropped by the load pods (over load.records.maxBytes or the results ConfigMap budget); the charts over time show the {kept} kept",
            kept + dropped
        );
    }
    Ok(out)
}

/// Every pod's results document in the run's results ConfigMaps.
async fn results_documents(
    client: kube::Client,
    ns: &str,
    run: &BenchmarkRun,
) -> anyhow::Result<Vec<Results>> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let Some(selector) = run
        .status
        .as_ref()
        .and_then(|s| s.results_ref.as_ref())
        .map(|r| r.selector.clone())
    else {
        return Ok(Vec::new());
    };
    let api: Api<ConfigMap> = Api::namespaced(client, ns);
    let list = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("listing the results ConfigMaps ({selector})"))?;
    let mut out = Vec::new();
    for cm in list.items {
        for (key, text) in cm.data.unwrap_or_default() {
            if key.ends_with(".json") {
                out.push(
                    serde_json::from_str(&text)
                        .with_context(|| format!("results ConfigMap key {key}"))?,
                );
            }
        }
    }
    Ok(out)
}

async fn load(source: &str, namespace: Option<&str>) -> anyhow::Result<RunRecord> {
    match namespace {
        None => read_results(Path::new(source)),
        Some(ns) => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the cluster (kubeconfig)")?;
            let api: Api<BenchmarkRun> = Api::namespaced(client, ns);
            let run = api
                .get_opt(source)
                .await?
                .with_context(|| format!("BenchmarkRun {ns}/{source} not found"))?;
            let mut record = from_run(&run)?;
            let wants_records = run.spec.load.records.as_ref().is_some_and(|r| r.enabled);
            if wants_records {
                let docs = results_documents(api.into_client(), ns, &run).await?;
                record.records = embedded_records(&docs)?;
            }
            Ok(record)
        }
    }
}

/// The InferenceService patch a run recommends, as YAML.
pub fn apply_hint(record: &RunRecord) -> anyhow::Result<String> {
    let Some(r) = &record.summary.recommendation else {
        bail!(
            "{} has no saturation point, so there is nothing to recommend: extend the sweep until throughput flattens or an SLO breaks",
            record.title
        );
    };
    let max = r.replicas_for_target_rate.unwrap_or(4).max(1);
    let patch = serde_json::json!({
        "spec": {"autoscaling": {
            "minReplicas": 1,
            "maxReplicas": max,
            "metric": "queueDepth",
            "target": format!("{}", r.queue_depth_target),
        }}
    });
    Ok(format!(
        "# One replica sustains {:.2} req/s within the SLO; scale on queue depth before it.\n# kubectl patch infsvc NAME --type merge --patch-file hint.yaml\n{}",
        r.requests_per_second_per_replica,
        serde_yaml::to_string(&patch)?
    ))
}

impl ReportArgs {
    /// Run the subcommand.
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut record = load(&self.source, self.namespace.as_deref()).await?;
        if let Some(path) = &self.records {
            record.records = Some(read_records(path)?);
        }
        if self.apply_hint {
            print!("{}", apply_hint(&record)?);
            return Ok(());
        }
        let baseline = match &self.baseline {
            Some(b) => Some(load(b, self.namespace.as_deref()).await?),
            None => None,
        };
        let files = crate::report::write(&record, baseline.as_ref(), &self.out)?;
        for f in files {
            println!("{}", f.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BenchmarkRunStatus, Phase};

    fn run(status: Option<BenchmarkRunStatus>) -> BenchmarkRun {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/examples/bench-concurrency-sweep.yaml"
        ))
        .unwrap();
        let mut run: BenchmarkRun = serde_yaml::from_str(&text).unwrap();
        run.status = status;
        run
    }

    #[test]
    fn a_run_without_results_says_why() {
        let err = from_run(&run(None)).unwrap_err().to_string();
        assert!(err.contains("has no status yet"), "{err}");
        let pending = BenchmarkRunStatus {
            phase: Phase::WaitingForTarget,
            ..Default::default()
        };
        let err = from_run(&run(Some(pending))).unwrap_err().to_string();
        assert!(
            err.contains("no measured steps yet (phase WaitingForTarget)"),
            "{err}"
        );
    }

    #[test]
    fn a_finished_run_becomes_a_record_with_its_metadata() {
        let mut status = BenchmarkRunStatus {
            phase: Phase::Succeeded,
            target: Some("infsvc/qwen".into()),
            ..Default::default()
        };
        status.steps = vec![crate::api::StepStatus {
            requests: 10,
            succeeded: 10,
            output_tokens_per_second: 100.0,
            ..Default::default()
        }];
        status
            .metadata
            .insert("accelerator".into(), "nvidia-l4".into());
        let record = from_run(&run(Some(status))).unwrap();
        assert_eq!(record.title, "qwen-concurrency-sweep");
        assert_eq!(record.metadata["accelerator"], "nvidia-l4");
        assert_eq!(record.metadata["target"], "infsvc/qwen");
        assert_eq!(record.steps.len(), 1);
        let hint = apply_hint(&record).unwrap_err().to_string();
        assert!(hint.contains("no saturation point"), "{hint}");
    }
}
