//! Writes a sample report (a three-replica scaling study shaped like the published data) to
//! the directory given as the first argument, to look at the charts:
//! `cargo run --example report_sample -- /tmp/report`.

use std::collections::BTreeMap;

use inferops::analysis::{Options, summarize};
use inferops::api::{GpuMetrics, LatencyMs, LoadPoint, MinMax, ServerMetrics, StepStatus};
use inferops::report::{RunRecord, write};

fn lat(p50: f64) -> Option<LatencyMs> {
    Some(LatencyMs {
        mean: p50 * 1.05,
        p50,
        p90: p50 * 1.2,
        p95: p50 * 1.3,
        p99: p50 * 1.6,
    })
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "report-sample".into());
    let mut steps = Vec::new();
    for (replicas, peak) in [(1, 1370.0), (2, 2500.0), (4, 3400.0)] {
        for c in [8u32, 32, 128] {
            let load = f64::from(c).min(peak / 100.0 * 4.0);
            let tps = peak * (load / (load + 8.0));
            steps.push(StepStatus {
                load: LoadPoint::Concurrency(c),
                replicas: Some(replicas),
                requests: 400,
                succeeded: 400,
                requests_per_second: tps / 128.0,
                output_tokens_per_second: tps,
                ttft_ms: lat(30.0 + f64::from(c) * 2.0 / f64::from(replicas)),
                itl_ms: lat(5.0 + f64::from(c) * 0.05 / f64::from(replicas)),
                e2e_ms: lat(700.0 + f64::from(c) * 8.0 / f64::from(replicas)),
                server: Some(ServerMetrics {
                    running_max: Some(f64::from(c).min(64.0 * f64::from(replicas))),
                    waiting_max: Some((f64::from(c) - 64.0 * f64::from(replicas)).max(0.0)),
                    kv_cache_usage_max: Some(0.02 * f64::from(c) / f64::from(replicas)),
                    per_replica_running: Some(MinMax {
                        min: f64::from(c) / f64::from(replicas) * 0.7,
                        max: f64::from(c) / f64::from(replicas) * 1.2,
                    }),
                    ..Default::default()
                }),
                gpu: Some(GpuMetrics {
                    util_max: Some((40.0 + f64::from(c)).min(100.0)),
                    util_mean: Some((30.0 + f64::from(c) * 0.6).min(99.0)),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let summary = summarize(&steps, &Options::default());
    let record = RunRecord {
        title: "sample scaling study".into(),
        metadata: BTreeMap::from([("model".into(), "TinyLlama/TinyLlama-1.1B-Chat-v1.0".into())]),
        steps,
        summary,
        records: None,
    };
    for f in write(&record, None, std::path::Path::new(&dir))? {
        println!("{}", f.display());
    }
    Ok(())
}
