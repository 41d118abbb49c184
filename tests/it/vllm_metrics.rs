//! One table of vLLM metric names (`inferops::contract::vllm_metrics`): the chart's
//! dashboards, alerts and Prometheus-adapter rules, the simulator and the Prometheus
//! collector use only names in it. The chart files are read, never written, here.

use std::path::{Path, PathBuf};

use inferops::contract::vllm_metrics::{
    KV_CACHE_USAGE_PERC, NUM_REQUESTS_RUNNING, NUM_REQUESTS_WAITING, is_known,
    is_known_adapter_name, tokens,
};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn known(t: &str) -> bool {
    if t.starts_with("vllm:") {
        is_known(t)
    } else {
        is_known_adapter_name(t)
    }
}

#[test]
fn chart_dashboards_alerts_and_adapter_rules_use_only_known_names() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/inferops");
    let mut files = Vec::new();
    files_under(&chart.join("files"), &mut files);
    files_under(&chart.join("templates"), &mut files);
    files.push(chart.join("values.yaml"));
    let mut unknown = Vec::new();
    let mut seen = 0;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for t in tokens(&text) {
            seen += 1;
            if !known(&t) {
                unknown.push(format!("{}: {t}", f.display()));
            }
        }
    }
    assert!(seen > 10, "the chart uses vLLM metrics: found only {seen}");
    assert!(
        unknown.is_empty(),
        "names outside src/contract/vllm_metrics.rs: {unknown:#?}"
    );
}

#[test]
fn the_simulator_exposes_only_known_names_and_the_autoscaling_gauges() {
    let o = inferops::sim::profile::SimOptions::profile("zero").unwrap();
    let text = inferops::sim::metrics::Metrics::new(&o).encode();
    let found = tokens(&text);
    for t in &found {
        assert!(is_known(t), "the simulator exposes {t}, not in the table");
    }
    for needed in [
        NUM_REQUESTS_RUNNING,
        NUM_REQUESTS_WAITING,
        KV_CACHE_USAGE_PERC,
    ] {
        assert!(found.iter().any(|t| t == needed), "sim lacks {needed}");
    }
}

#[test]
fn the_collector_queries_only_known_names() {
    let scope = inferops::prom::Scope::default();
    let mut n = 0;
    for q in inferops::prom::queries(&scope, 60, 5) {
        for promql in &q.promql {
            for t in tokens(promql) {
                n += 1;
                assert!(is_known(&t), "{}: {t} not in the table", q.field);
            }
        }
    }
    assert!(n > 5, "the collector queries vLLM metrics");
}

#[test]
fn the_renderer_uses_table_names() {
    use inferops::api::AutoscalingMetric;
    use inferops::render::inference_service::{adapter_metric_name, vllm_metric_name};
    for m in [
        AutoscalingMetric::QueueDepth,
        AutoscalingMetric::RunningRequests,
        AutoscalingMetric::KvCacheUsage,
    ] {
        assert!(is_known(vllm_metric_name(m)));
        assert!(is_known_adapter_name(&adapter_metric_name(m)));
    }
}
