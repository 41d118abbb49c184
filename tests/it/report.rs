//! `inferops report` on a real results JSON: a sweep against the simulator, written by the
//! load generator, read back and turned into a report and an autoscaling hint.

use inferops::cli::report::{apply_hint, from_results};
use inferops::contract::plan::{Plan, TokenCount};
use inferops::loadgen::run::{NoObserver, run_plan};
use inferops::sim::{SimOptions, spawn};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn results_json_becomes_a_report_with_charts_and_a_hint() {
    // A small engine (4 sequences at once) saturates at low concurrency.
    let mut opts = SimOptions::profile("qwen2.5-0.5b-l4").unwrap();
    opts.max_num_seqs = 4;
    let sim = spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut plan = Plan::new(sim.base_url(), sim.model());
    plan.workload.input_tokens = TokenCount::Fixed(32);
    plan.workload.output_tokens = TokenCount::Fixed(16);
    plan.load.concurrency = vec![1, 4, 16, 64];
    plan.load.requests_per_step = Some(64);
    let results = run_plan(&plan, CancellationToken::new(), &mut NoObserver)
        .await
        .unwrap();
    // Round-trip through JSON, as `inferops report results.json` does.
    let text = serde_json::to_string(&results).unwrap();
    let record = from_results(&serde_json::from_str(&text).unwrap(), "sweep");
    assert_eq!(record.steps.len(), 4);
    assert_eq!(record.metadata["model"], sim.model());
    // Past 16 in flight, 4 batch slots give no more throughput: the knee.
    let sat = record
        .summary
        .saturation
        .clone()
        .expect("64 in flight on 4 slots plateaus");
    assert_eq!(
        sat.at.unwrap().concurrency(),
        Some(16),
        "{:?}",
        record.summary
    );
    assert_eq!(sat.first_broken.unwrap().concurrency(), Some(64));

    let dir = tempfile::tempdir().unwrap();
    inferops::report::write(&record, None, dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| concurrency 16 |"), "{md}");
    assert!(
        md.contains("Saturation: highest load that held: concurrency 16"),
        "{md}"
    );
    assert!(dir.path().join("throughput.svg").exists());

    // The hint is a valid InferenceService patch carrying the recommendation's numbers, and
    // it applies: the patched example still deserializes and passes the CRD's validation.
    let hint = apply_hint(&record).unwrap();
    let rec = record
        .summary
        .recommendation
        .clone()
        .expect("a recommendation");
    let patch: serde_json::Value = serde_yaml::from_str(&hint).unwrap();
    let auto = &patch["spec"]["autoscaling"];
    assert_eq!(auto["metric"], "queueDepth", "{hint}");
    assert_eq!(
        auto["target"].as_str().unwrap().parse::<f64>().unwrap(),
        rec.queue_depth_target,
        "{hint}"
    );
    assert!(auto["maxReplicas"].as_i64().unwrap() >= auto["minReplicas"].as_i64().unwrap());
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/infsvc-sim.yaml"),
    )
    .unwrap();
    let mut isvc = inferops::api::parse_documents(&example).unwrap().remove(0);
    isvc["spec"]["autoscaling"] = auto.clone();
    inferops::api::validate_object(&isvc, None).expect("the patched InferenceService validates");
    let _: inferops::api::InferenceService = serde_json::from_value(isvc).unwrap();
    sim.shutdown().await;
}
