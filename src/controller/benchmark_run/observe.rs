//! Observe: everything the decision needs, gathered in one place. Only reads; the world as
//! [`World`] is all [`super::decide::decide`] sees.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::decide;
use super::{Context, Error};
use crate::api::{BenchmarkRun, InferenceService, Phase, RunSummary};
use crate::render::benchmark_run::{Names, results_selector};
use crate::render::inference_service as render_isvc;

/// What the InferenceService target looks like.
#[derive(Debug, Clone)]
pub enum TargetObs {
    /// `spec.target.url`: nothing to look up.
    Url,
    /// The referenced InferenceService does not exist.
    Missing,
    /// The referenced InferenceService.
    Service(Box<InferenceService>),
}

/// The load Job of the sweep in progress and its pods.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobObs {
    /// The Job, if it exists.
    pub job: Option<Job>,
    /// Its pods (by the Job's `job-name` label).
    pub pods: Vec<Pod>,
}

/// One results ConfigMap of the sweep in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsObject {
    /// ConfigMap name.
    pub name: String,
    /// Its `data`.
    pub data: BTreeMap<String, String>,
}

/// Everything one decision is made from.
#[derive(Debug, Clone)]
pub struct World {
    /// The time of this reconcile.
    pub now: Timestamp,
    /// The run as stored (spec, metadata, status).
    pub run: BenchmarkRun,
    /// The target InferenceService, when the target is one.
    pub target: TargetObs,
    /// The load Job of the sweep in progress.
    pub job: JobObs,
    /// Results ConfigMaps of the sweep in progress.
    pub results: Vec<ResultsObject>,
    /// The baseline's summary when `spec.baseline` is set and the run is concluding
    /// (`Some(None)`: no such Succeeded run).
    pub baseline: Option<Option<RunSummary>>,
    /// Hardware facts of the target's node (best effort), gathered once.
    pub node_metadata: BTreeMap<String, String>,
}

/// Gather the world of `run`.
pub async fn observe(ctx: &Context, run: &BenchmarkRun) -> Result<World, Error> {
    let ns = run
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let now = Timestamp::now();
    let status = run.status.clone().unwrap_or_default();
    let mut world = World {
        now,
        run: run.clone(),
        target: TargetObs::Url,
        job: JobObs::default(),
        results: Vec::new(),
        baseline: None,
        node_metadata: BTreeMap::new(),
    };
    if let Some(r) = &run.spec.target.inference_service_ref {
        let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), &ns);
        world.target = match api.get_opt(&r.name).await? {
            Some(isvc) => TargetObs::Service(Box::new(isvc)),
            None => TargetObs::Missing,
        };
    }
    if run.metadata.deletion_timestamp.is_some() || status.phase.is_terminal() {
        return Ok(world);
    }
    let slot = decide::current_slot(run);
    let names = Names::new(&run.name_any(), slot);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    world.job.job = jobs.get_opt(&names.job).await?;
    if world.job.job.is_some() {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let selector = format!("job-name={}", names.job);
        world.job.pods = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let wanted = names.all_results(run.spec.loadgen.parallelism.max(1) as u32);
    world.results = cms
        .list(&ListParams::default().labels(&results_selector(&run.name_any())))
        .await?
        .items
        .into_iter()
        .filter(|c| wanted.contains(&c.name_any()))
        .map(|c| ResultsObject {
            name: c.name_any(),
            data: c.data.unwrap_or_default(),
        })
        .collect();
    let finished = world
        .job
        .job
        .as_ref()
        .is_some_and(|j| !matches!(decide::job_outcome(j), decide::JobOutcome::Active));
    if finished
        && matches!(status.phase, Phase::Running | Phase::Collecting)
        && let Some(b) = &run.spec.baseline
    {
        let api: Api<BenchmarkRun> = Api::namespaced(ctx.client.clone(), &ns);
        world.baseline = Some(
            api.get_opt(&b.name)
                .await?
                .and_then(|r| r.status)
                .filter(|s| s.phase == Phase::Succeeded)
                .and_then(|s| s.summary),
        );
    }
    if status.metadata.is_empty()
        && let TargetObs::Service(isvc) = &world.target
    {
        world.node_metadata = node_metadata(ctx, &ns, &isvc.name_any()).await;
    }
    Ok(world)
}

/// Node labels that describe the hardware: instance type, GPU product and count.
const NODE_LABELS: [&str; 5] = [
    "node.kubernetes.io/instance-type",
    "nvidia.com/gpu.product",
    "nvidia.com/gpu.count",
    "cloud.google.com/gke-accelerator",
    "karpenter.k8s.aws/instance-gpu-name",
];

/// Hardware facts from the node of the target's first pod (best effort: without the RBAC
/// to read nodes, or before pods are scheduled, nothing is added).
async fn node_metadata(ctx: &Context, ns: &str, isvc: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = render_isvc::selector_string(isvc);
    let node = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list
            .items
            .into_iter()
            .find_map(|p| p.spec.and_then(|s| s.node_name)),
        Err(e) => {
            tracing::debug!(error = %e, "listing target pods for metadata");
            None
        }
    };
    let Some(node) = node else {
        return BTreeMap::new();
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    match nodes.get_opt(&node).await {
        Ok(Some(n)) => {
            let labels = n.metadata.labels.unwrap_or_default();
            NODE_LABELS
                .iter()
                .filter_map(|k| labels.get(*k).map(|v| (format!("node:{k}"), v.clone())))
                .collect()
        }
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            tracing::debug!(error = %e, "reading the target's node for metadata");
            BTreeMap::new()
        }
    }
}
