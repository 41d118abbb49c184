//! The BenchmarkRun reconciler against kube-fake-client (in-memory API with server-side
//! apply and status subresources, no watch). The tests call `reconcile` directly, act as
//! the load pod (the real load generator against the real simulator over loopback, writing
//! its results into the run's ConfigMap) and step the Job's status by hand. One test joins
//! it all with Debian's real Prometheus scraping the simulator's vllm:* and DCGM metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::support::prometheus::Prometheus;
use inferops::api::{BenchmarkRun, ConditionType, InferenceService, Phase, find_condition};
use inferops::cli::bench::{attach_server_figures, pod_target_check};
use inferops::cli::sink::{ConfigMapSink, key};
use inferops::contract::plan::Plan;
use inferops::contract::results::Results;
use inferops::controller::Context;
use inferops::controller::benchmark_run::{FINALIZER, reconcile};
use inferops::loadgen::run::{NoObserver, run_plan};
use inferops::render::RenderContext;
use inferops::sim::{SimHandle, SimOptions, spawn};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NS: &str = "default";

struct Harness {
    client: Client,
    ctx: Arc<Context>,
}

impl Harness {
    async fn new() -> Harness {
        // Behind the strict apiserver harness: the reconciler gets the operator's client.
        let (client, operator) = crate::support::strict::clients(
            ClientBuilder::new()
                .with_resource::<InferenceService>()
                .with_resource::<BenchmarkRun>()
                .with_status_subresource::<Job>(),
        )
        .await;
        let ctx = Arc::new(Context::new(
            operator,
            RenderContext {
                operator_image: "ghcr.io/inferops/inferops:test".into(),
                ..RenderContext::default()
            },
        ));
        Harness { client, ctx }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn create(&self, run: serde_json::Value) -> BenchmarkRun {
        let run: BenchmarkRun = serde_json::from_value(run).unwrap();
        self.api::<BenchmarkRun>()
            .create(&PostParams::default(), &run)
            .await
            .unwrap()
    }

    async fn get(&self, name: &str) -> BenchmarkRun {
        self.api::<BenchmarkRun>().get(name).await.unwrap()
    }

    /// One reconcile of the stored object; returns the stored object afterwards.
    async fn reconcile(&self, name: &str) -> BenchmarkRun {
        let run = self.get(name).await;
        reconcile(Arc::new(run), self.ctx.clone()).await.unwrap();
        self.get(name).await
    }

    async fn plan(&self, cm: &str) -> Plan {
        let cm = self.api::<ConfigMap>().get(cm).await.unwrap();
        Plan::from_text(&cm.data.unwrap()["plan.json"]).unwrap()
    }

    /// Act as load pod `index`: run the plan for real and write results like the pod does,
    /// into its own ConfigMap `{results_base}-{index}`.
    async fn load_pod(&self, plan: &Plan, results_base: &str, prefix: &str, index: u32) -> Results {
        let mut plan = plan.clone();
        let sink = self.sink(results_base, prefix, index);
        let go = pod_target_check(&mut plan, Some(&sink), Duration::from_millis(50))
            .await
            .unwrap();
        assert!(go, "the load pod's target check failed");
        self.run_pod(&plan, results_base, prefix, index).await
    }

    /// A load pod past its target check: run the plan and write the results.
    async fn run_pod(&self, plan: &Plan, results_base: &str, prefix: &str, index: u32) -> Results {
        let mut plan = plan.clone();
        plan.parallelism.index = index;
        plan.parallelism.start_at = None;
        let mut results = run_plan(&plan, CancellationToken::new(), &mut NoObserver)
            .await
            .unwrap();
        // Like the pod: server figures from Prometheus once the load is done (a 1 s scrape
        // interval here, so 2 s settle).
        if let Some(prom) = &plan.prometheus
            && index == 0
        {
            let mut prom = prom.clone();
            prom.settle = Duration::from_secs(2);
            attach_server_figures(&mut results, &prom, &plan.target.model).await;
        }
        self.sink(results_base, prefix, index)
            .write(&results)
            .await
            .unwrap();
        results
    }

    /// The sink load pod `index` writes through.
    fn sink(&self, results_base: &str, prefix: &str, index: u32) -> ConfigMapSink {
        let cm = format!("{results_base}-{index}");
        ConfigMapSink::new(self.client.clone(), NS, &cm, key(prefix, index))
    }

    async fn finish_job(&self, name: &str, outcome: &str, message: &str) {
        let patch = json!({"status": {"conditions": [
            {"type": outcome, "status": "True", "reason": outcome, "message": message}
        ]}});
        self.api::<Job>()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

async fn sim(model: &str, dcgm: bool) -> SimHandle {
    let mut opts = SimOptions::profile("qwen2.5-0.5b-l4").unwrap();
    opts.model = model.to_string();
    opts.dcgm = dcgm;
    spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn url_run(name: &str, url: &str, model: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "target": {"url": url, "model": model},
            "workload": {"inputTokens": 64, "outputTokens": 16},
            "load": {"mode": "concurrency", "concurrency": [2, 8], "requestsPerStep": 16},
        }
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, e) in extra {
            spec.insert(k.clone(), e.clone());
        }
    }
    v
}

fn condition(run: &BenchmarkRun, t: ConditionType) -> (String, String, String) {
    let c = find_condition(&run.status.as_ref().unwrap().conditions, t)
        .unwrap_or_else(|| panic!("no {t:?} condition in {:#?}", run.status));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_target_runs_the_job_joins_prometheus_figures_and_succeeds() {
    let sim = sim("qwen", true).await;
    let prom = Prometheus::start(&[sim.addr()]).await;
    prom.wait_for("DCGM_FI_DEV_GPU_UTIL").await;
    let h = Harness::new().await;
    // Steps of a few seconds, so that a 1 s scrape interval sees several samples each.
    let mut spec = url_run(
        "sweep",
        &sim.base_url(),
        "qwen",
        json!({"prometheus": {"url": prom.url}, "cost": {"gpuHourlyPrice": 0.71}}),
    );
    spec["spec"]["load"] =
        json!({"mode": "concurrency", "concurrency": [2, 8], "durationPerStep": "4s"});
    spec["spec"]["workload"]["outputTokens"] = json!(32);
    h.create(spec).await;

    let run = h.reconcile("sweep").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Running, "{status:#?}");
    assert_eq!(status.target.as_deref(), Some(sim.base_url().as_str()));
    assert_eq!(status.progress.as_deref(), Some("0/2"));
    let job = h.api::<Job>().get("sweep-load").await.unwrap();
    assert_eq!(job.owner_references()[0].kind, "BenchmarkRun");
    assert_eq!(job.owner_references()[0].name, "sweep");
    let plan = h.plan("sweep-plan").await;
    assert_eq!(plan.target.url, sim.base_url());
    assert_eq!(plan.load.concurrency, [2, 8]);
    // The pod asks Prometheus itself (the operator does not), for any pod of a URL target.
    let scope = plan.prometheus.clone().unwrap();
    assert_eq!(
        (scope.url.as_str(), scope.pod_regex),
        (prom.url.as_str(), None)
    );

    // The pod writes results after its steps; rows appear while the Job still runs.
    h.load_pod(&plan, "sweep-results", "", 0).await;
    let run = h.reconcile("sweep").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Running);
    assert_eq!(status.steps.len(), 2);
    assert_eq!(status.progress.as_deref(), Some("2/2"));
    assert_eq!(status.steps[1].load.concurrency(), Some(8));
    assert!(status.steps[1].succeeded > status.steps[0].succeeded);

    h.finish_job("sweep-load", "Complete", "").await;
    let run = h.reconcile("sweep").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Collecting);
    let run = h.reconcile("sweep").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:#?}", status.conditions);
    assert_eq!(condition(&run, ConditionType::Ready).0, "True");
    assert_eq!(
        condition(&run, ConditionType::MetricsUnavailable).0,
        "False"
    );
    assert!(status.completion_time.is_some() && status.start_time.is_some());

    for row in &status.steps {
        let c = row.load.concurrency().unwrap() as f64;
        let server = row.server.as_ref().expect("vLLM metrics for the window");
        let gpu = row.gpu.as_ref().expect("DCGM metrics for the window");
        // The simulator never runs more than the client sends (plus one request finishing
        // while the client's next one arrives).
        let running = server.running_max.unwrap();
        assert!(
            running >= 1.0 && running <= c + 1.0,
            "running max {running} at concurrency {c}"
        );
        assert_eq!(
            server.waiting_max,
            Some(0.0),
            "qwen on L4: nothing waits at c<=8"
        );
        let kv = server.kv_cache_usage_max.unwrap();
        assert!(kv > 0.0 && kv < 0.1, "KV cache {kv}");
        assert!(server.ttft_p95_ms.unwrap() > 0.0);
        let util = gpu.util_max.unwrap();
        assert!(util > 0.0 && util <= 100.0, "GPU util {util}");
        assert!(gpu.fb_used_max_bytes.unwrap() > 1e9);
        assert!(row.cost_per_million_output_tokens.unwrap() > 0.0);
    }
    // Busier step, busier engine.
    let r = |i: usize| {
        status.steps[i]
            .server
            .as_ref()
            .unwrap()
            .running_max
            .unwrap()
    };
    assert!(
        r(1) > r(0),
        "running max grows with concurrency: {} vs {}",
        r(0),
        r(1)
    );
    let summary = status.summary.unwrap();
    assert!(summary.peak_output_tokens_per_second > 0.0);
    assert!(!summary.findings.is_empty());
    assert_eq!(status.metadata["model"], "qwen");
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_model_found_by_the_load_pod_fails_the_run_with_the_served_models() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.create(url_run("typo", &sim.base_url(), "qwen2", json!({})))
        .await;
    // The operator does not call the URL itself: it starts the load Job.
    let run = h.reconcile("typo").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Running);
    // The load pod checks the target first and leaves its finding next to the results.
    let mut plan = h.plan("typo-plan").await;
    let go = pod_target_check(
        &mut plan,
        Some(&h.sink("typo-results", "", 0)),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    assert!(!go);
    let run = h.reconcile("typo").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Failed);
    let (status, reason, message) = condition(&run, ConditionType::Ready);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ModelNotFound")
    );
    assert!(
        message.contains("\"qwen2\"") && message.contains("qwen") && message.contains("no load"),
        "{message}"
    );
    let job = h.api::<Job>().get("typo-load").await.unwrap();
    assert_eq!(
        job.spec.unwrap().suspend,
        Some(true),
        "the failed run stops its Job"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_url_target_without_a_model_runs_the_only_one_served() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    let mut run = url_run("anon", &sim.base_url(), "x", json!({}));
    run["spec"]["target"]
        .as_object_mut()
        .unwrap()
        .remove("model");
    h.create(run).await;
    let run = h.reconcile("anon").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Running);
    let plan = h.plan("anon-plan").await;
    assert_eq!(plan.target.model, "", "left to the load pod");
    let results = h.load_pod(&plan, "anon-results", "", 0).await;
    assert_eq!(results.metadata.model, "qwen");
    let run = h.reconcile("anon").await;
    assert_eq!(run.status.unwrap().metadata["model"], "qwen");
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_inference_service_waits_with_a_reason() {
    let h = Harness::new().await;
    h.create(json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": "early", "namespace": NS},
        "spec": {"target": {"inferenceServiceRef": {"name": "qwen"}},
                 "load": {"mode": "concurrency", "concurrency": [1]}}
    }))
    .await;
    let run = h.reconcile("early").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::WaitingForTarget);
    let (_, reason, message) = condition(&run, ConditionType::Ready);
    assert_eq!(reason, "TargetNotFound");
    assert!(
        message.contains("InferenceService default/qwen not found"),
        "{message}"
    );
}

#[tokio::test]
async fn failed_job_keeps_measured_steps() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.create(url_run("crash", &sim.base_url(), "qwen", json!({})))
        .await;
    h.reconcile("crash").await;
    let mut plan = h.plan("crash-plan").await;
    plan.load.concurrency = vec![2]; // the pod died after its first step
    h.load_pod(&plan, "crash-results", "", 0).await;
    h.finish_job("crash-load", "Failed", "BackoffLimitExceeded")
        .await;
    let run = h.reconcile("crash").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Failed);
    assert_eq!(status.steps.len(), 1, "the measured step is kept");
    let (_, reason, message) = condition(&run, ConditionType::Ready);
    assert_eq!(reason, "LoadJobFailed");
    assert!(
        message.contains("BackoffLimitExceeded") && message.contains("1 measured steps are kept"),
        "{message}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn all_requests_failing_is_failed_not_succeeded_and_names_the_server_message() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.create(url_run("bad", &sim.base_url(), "qwen", json!({})))
        .await;
    h.reconcile("bad").await;
    let mut plan = h.plan("bad-plan").await;
    // The server is redeployed with another name after the pod's check.
    plan.target.model = "gone".into();
    h.run_pod(&plan, "bad-results", "", 0).await;
    h.finish_job("bad-load", "Complete", "").await;
    h.reconcile("bad").await;
    let run = h.reconcile("bad").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Failed);
    assert!(!status.steps.is_empty(), "rows are kept");
    assert_eq!(status.steps[0].succeeded, 0);
    let (_, reason, message) = condition(&run, ConditionType::Ready);
    assert_eq!(reason, "NoSuccessfulRequests");
    assert!(
        message.contains("http4xx") && message.contains("gone"),
        "{message}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_prometheus_keeps_client_results() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    h.create(url_run(
        "noprom",
        &sim.base_url(),
        "qwen",
        json!({"prometheus": {"url": dead}}),
    ))
    .await;
    h.reconcile("noprom").await;
    let plan = h.plan("noprom-plan").await;
    h.load_pod(&plan, "noprom-results", "", 0).await;
    h.finish_job("noprom-load", "Complete", "").await;
    h.reconcile("noprom").await;
    let run = h.reconcile("noprom").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Succeeded);
    assert_eq!(status.steps.len(), 2);
    assert!(status.steps.iter().all(|s| s.server.is_none()));
    let (s, reason, message) = condition(&run, ConditionType::MetricsUnavailable);
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("True", "PrometheusUnavailable")
    );
    assert!(message.contains("client results are kept"), "{message}");
    sim.shutdown().await;
}

#[tokio::test]
async fn corrupt_results_fail_with_a_reason() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.create(url_run("junk", &sim.base_url(), "qwen", json!({})))
        .await;
    h.reconcile("junk").await;
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "junk-results-0"},
                       "data": {"pod-0.json": "{not json"}});
    h.api::<ConfigMap>()
        .patch(
            "junk-results-0",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    let run = h.reconcile("junk").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Failed);
    let (_, reason, message) = condition(&run, ConditionType::Ready);
    assert_eq!(reason, "ResultsCorrupt");
    assert!(message.contains("pod-0.json"), "{message}");
    // The failed run stops its load Job: nothing keeps loading the GPUs.
    let job = h.api::<Job>().get("junk-load").await.unwrap();
    assert_eq!(
        job.spec.unwrap().suspend,
        Some(true),
        "the Job of a failed run is suspended"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn split_load_merges_pods_and_ttl_deletes_the_job_but_keeps_results() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.create(url_run(
        "split",
        &sim.base_url(),
        "qwen",
        json!({"loadgen": {"parallelism": 2}, "ttlSecondsAfterFinished": 0}),
    ))
    .await;
    h.reconcile("split").await;
    let job = h.api::<Job>().get("split-load").await.unwrap();
    assert_eq!(job.spec.as_ref().unwrap().parallelism, Some(2));
    let plan = h.plan("split-plan").await;
    assert_eq!(plan.parallelism.count, 2);
    assert!(
        plan.parallelism.start_at.is_some(),
        "pods share a start barrier"
    );
    let a = h.load_pod(&plan, "split-results", "", 0).await;
    let b = h.load_pod(&plan, "split-results", "", 1).await;
    h.finish_job("split-load", "Complete", "").await;
    h.reconcile("split").await;
    let run = h.reconcile("split").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:#?}", status.conditions);
    // Counters add up over pods; the load point is the whole (1 + 1 and 4 + 4 in flight).
    assert_eq!(
        status.steps[0].succeeded,
        a.steps[0].completed + b.steps[0].completed
    );
    assert_eq!(status.steps[1].load.concurrency(), Some(8));
    // TTL 0: the next reconcile deletes the Job; the run and its rows stay.
    h.reconcile("split").await;
    assert!(
        h.api::<Job>()
            .get_opt("split-load")
            .await
            .unwrap()
            .is_none()
    );
    let run = h.get("split").await;
    assert_eq!(run.status.unwrap().steps.len(), 2);
    assert!(
        h.api::<ConfigMap>()
            .get_opt("split-results-0")
            .await
            .unwrap()
            .is_some()
    );
    sim.shutdown().await;
}

fn isvc(name: &str, replicas: i32) -> InferenceService {
    serde_json::from_value(json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct", "servedName": "qwen"},
                 "engine": {"kind": "sim"}, "replicas": replicas}
    }))
    .unwrap()
}

/// Step the InferenceService's status as its controller would once pods are ready.
async fn ready(h: &Harness, name: &str) {
    let api = h.api::<InferenceService>();
    let current = api.get(name).await.unwrap();
    let replicas = current.spec.replicas;
    let patch = json!({"status": {"replicas": replicas, "readyReplicas": replicas,
        "observedGeneration": current.metadata.generation,
        "endpoint": format!("http://{name}.{NS}.svc:8000/v1"),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "ok",
                        "lastTransitionTime": "2026-11-30T00:00:00Z"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn scaling_study_sweeps_each_replica_count_and_restores_the_original() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.api::<InferenceService>()
        .create(&PostParams::default(), &isvc("qwen", 3))
        .await
        .unwrap();
    ready(&h, "qwen").await;
    h.create(json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": "study", "namespace": NS},
        "spec": {"target": {"inferenceServiceRef": {"name": "qwen"}},
                 "workload": {"inputTokens": 32, "outputTokens": 8},
                 "load": {"mode": "concurrency", "concurrency": [4], "requestsPerStep": 8},
                 "scaling": {"replicas": [1, 2]}}
    }))
    .await;
    // First reconcile: finalizer added and the original count recorded in status, before
    // any scale (a failure right after scaling must not record the scaled count).
    let run = h.reconcile("study").await;
    assert!(run.finalizers().iter().any(|f| f == FINALIZER));
    let scaling = run.status.as_ref().unwrap().scaling.clone().unwrap();
    assert_eq!(
        (scaling.original_replicas, scaling.current_replicas),
        (3, None)
    );
    let target = h.api::<InferenceService>().get("qwen").await.unwrap();
    assert_eq!(
        target.spec.replicas, 3,
        "not scaled before the record is stored"
    );
    for n in [1, 2] {
        let run = h.reconcile("study").await; // scales the target to n, waits for it
        assert_eq!(run.status.as_ref().unwrap().phase, Phase::WaitingForTarget);
        assert_eq!(
            h.api::<InferenceService>()
                .get("qwen")
                .await
                .unwrap()
                .spec
                .replicas,
            n
        );
        ready(&h, "qwen").await;
        let run = h.reconcile("study").await;
        assert_eq!(
            run.status.as_ref().unwrap().phase,
            Phase::Running,
            "at {n}: {:#?}",
            run.status
        );
        let job = format!("study-load-r{n}");
        let mut plan = h.plan(&format!("study-plan-r{n}")).await;
        assert_eq!(plan.target.url, "http://qwen.default.svc:8000");
        plan.target.url = sim.base_url(); // the pod would reach the Service; we reach the sim
        h.load_pod(&plan, &format!("study-results-r{n}"), &format!("r{n}-"), 0)
            .await;
        h.finish_job(&job, "Complete", "").await;
        h.reconcile("study").await; // Collecting
        h.reconcile("study").await; // next count, or done
    }
    let run = h.get("study").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:#?}", status.conditions);
    assert_eq!(status.steps.len(), 2);
    assert_eq!(status.steps[0].replicas, Some(1));
    assert_eq!(status.steps[1].replicas, Some(2));
    let summary = status.summary.unwrap();
    assert!(summary.scaling_efficiency.contains_key("2"), "{summary:?}");
    let scaling = status.scaling.unwrap();
    assert!(scaling.restored);
    assert_eq!(scaling.original_replicas, 3);
    // Status is applied whole, so fields that no longer apply are cleared in the stored
    // object (a merge patch would have left them).
    assert_eq!(
        scaling.current_replicas, None,
        "currentReplicas cleared after restore"
    );
    assert_eq!(status.wait, None, "no wait left once the run ended");
    let target = h.api::<InferenceService>().get("qwen").await.unwrap();
    assert_eq!(target.spec.replicas, 3, "original replica count restored");
    let run = h.reconcile("study").await;
    assert!(
        !run.finalizers().iter().any(|f| f == FINALIZER),
        "finalizer released"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn target_deleted_mid_run_fails_with_rows_kept_and_a_restarted_operator_resumes() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.api::<InferenceService>()
        .create(&PostParams::default(), &isvc("qwen", 1))
        .await
        .unwrap();
    ready(&h, "qwen").await;
    h.create(json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": "orphan", "namespace": NS},
        "spec": {"target": {"inferenceServiceRef": {"name": "qwen"}},
                 "workload": {"inputTokens": 32, "outputTokens": 8},
                 "load": {"mode": "concurrency", "concurrency": [2, 4], "requestsPerStep": 8}}
    }))
    .await;
    let run = h.reconcile("orphan").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Running);
    let mut plan = h.plan("orphan-plan").await;
    plan.target.url = sim.base_url();
    plan.load.concurrency = vec![2];
    h.load_pod(&plan, "orphan-results", "", 0).await;

    // The operator restarts: a new context, nothing in memory; it resumes from status.
    let h = Harness {
        client: h.client.clone(),
        ctx: Arc::new(Context::new(h.client.clone(), RenderContext::default())),
    };
    let run = h.reconcile("orphan").await;
    assert_eq!(run.status.as_ref().unwrap().phase, Phase::Running);
    assert_eq!(run.status.as_ref().unwrap().steps.len(), 1);

    h.api::<InferenceService>()
        .delete("qwen", &Default::default())
        .await
        .unwrap();
    let run = h.reconcile("orphan").await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Phase::Failed);
    assert_eq!(status.steps.len(), 1, "the measured step is kept");
    let (_, reason, message) = condition(&run, ConditionType::Ready);
    assert_eq!(reason, "TargetDeleted");
    assert!(message.contains("measured steps are kept"), "{message}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_restarted_load_pod_never_shrinks_the_rows() {
    let sim = sim("qwen", false).await;
    let h = Harness::new().await;
    h.create(url_run("retry", &sim.base_url(), "qwen", json!({})))
        .await;
    h.reconcile("retry").await;
    let plan = h.plan("retry-plan").await;
    h.load_pod(&plan, "retry-results", "", 0).await;
    let run = h.reconcile("retry").await;
    assert_eq!(run.status.unwrap().steps.len(), 2);
    // The pod was killed and its retry has so far rewritten its key with one step.
    let mut first = plan.clone();
    first.load.concurrency = vec![2];
    h.load_pod(&first, "retry-results", "", 0).await;
    let run = h.reconcile("retry").await;
    let steps = run.status.unwrap().steps;
    assert_eq!(
        steps.len(),
        2,
        "the step measured before the restart is kept"
    );
    assert_eq!(steps[1].load.concurrency(), Some(8));
    sim.shutdown().await;
}

/// Run `name` against `url` through to its end, acting as the load pod.
async fn run_to_end(h: &Harness, name: &str, url: &str, extra: serde_json::Value) -> BenchmarkRun {
    h.create(url_run(name, url, "qwen", extra)).await;
    h.reconcile(name).await;
    let plan = h.plan(&format!("{name}-plan")).await;
    h.load_pod(&plan, &format!("{name}-results"), "", 0).await;
    h.finish_job(&format!("{name}-load"), "Complete", "").await;
    h.reconcile(name).await;
    h.reconcile(name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_engine_than_the_baseline_is_a_regression() {
    let fast = sim("qwen", false).await;
    let mut opts = SimOptions::profile("llama3.2-3b-t4").unwrap();
    opts.model = "qwen".into();
    let slow = spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let h = Harness::new().await;
    let base = run_to_end(&h, "monday", &fast.base_url(), json!({})).await;
    assert_eq!(base.status.unwrap().phase, Phase::Succeeded);
    let same = run_to_end(&h, "tuesday", &fast.base_url(), json!({"baseline": {"name": "monday", "maxThroughputDrop": 0.5, "maxTtftP95Increase": 2.0}})).await;
    let (s, reason, _) = condition(&same, ConditionType::Regressed);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "NoRegression"));
    let worse = run_to_end(
        &h,
        "wednesday",
        &slow.base_url(),
        json!({"baseline": {"name": "monday"}}),
    )
    .await;
    let status = worse.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Phase::Succeeded,
        "a regression is reported, not a failure"
    );
    let (s, reason, message) = condition(&worse, ConditionType::Regressed);
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Regressed"));
    assert!(message.contains("peak output throughput fell"), "{message}");
    let c = status.comparison.unwrap();
    assert!(
        c.regressed && c.peak_throughput_change.unwrap() < -0.5,
        "{c:?}"
    );
    let missing = run_to_end(
        &h,
        "thursday",
        &fast.base_url(),
        json!({"baseline": {"name": "nope"}}),
    )
    .await;
    let (s, reason, _) = condition(&missing, ConditionType::Regressed);
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", "BaselineUnavailable")
    );
    fast.shutdown().await;
    slow.shutdown().await;
}

/// `load.trials: 3` on both runs: an unchanged target never sets `Regressed`, a target 20%
/// slower does, and the condition names the metric, both values and the confidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trials_the_baseline_comparison_tests_the_noise() {
    let fixed = |ttft_ms: u64, itl_ms: u64| {
        let mut o = SimOptions::fixed(
            std::time::Duration::from_millis(ttft_ms),
            std::time::Duration::from_millis(itl_ms),
        );
        o.model = "qwen".into();
        o
    };
    let fast = spawn(fixed(40, 4), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let slow = spawn(fixed(48, 5), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let h = Harness::new().await;
    let load =
        json!({"mode": "concurrency", "concurrency": [4], "requestsPerStep": 16, "trials": 3});
    let base = run_to_end(&h, "t-monday", &fast.base_url(), json!({"load": load})).await;
    let row = &base.status.as_ref().unwrap().steps[0];
    assert_eq!(row.trials.as_ref().map(|t| t.count), Some(3), "{row:?}");
    let baseline = json!({"name": "t-monday", "maxThroughputDrop": 0.1, "maxTtftP95Increase": 0.1});
    let same = run_to_end(
        &h,
        "t-tuesday",
        &fast.base_url(),
        json!({"load": load, "baseline": baseline}),
    )
    .await;
    let (s, reason, message) = condition(&same, ConditionType::Regressed);
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", "NoRegression"),
        "{message}"
    );
    assert_eq!(
        same.status.unwrap().comparison.unwrap().confidence,
        Some(0.95)
    );
    let worse = run_to_end(
        &h,
        "t-wednesday",
        &slow.base_url(),
        json!({"load": load, "baseline": baseline}),
    )
    .await;
    let (s, reason, message) = condition(&worse, ConditionType::Regressed);
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("True", "Regressed"),
        "{message}"
    );
    assert!(
        message.contains("TTFT p95 at peak rose") && message.contains(" ms; allowed 10%"),
        "{message}"
    );
    assert!(message.contains("95% confidence"), "{message}");
    fast.shutdown().await;
    slow.shutdown().await;
}
