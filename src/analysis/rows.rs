//! The one mapping from what the load generator measured (a [`StepResult`]) and what
//! Prometheus reported for the same window ([`WindowMetrics`]) to a status row
//! ([`StepStatus`]), used by the BenchmarkRun status, `inferops bench` and reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    ErrorCounts, Goodput, GpuMetrics, LatencyMs, MinMax, ServerMetrics, SpreadStatus, StepStatus,
    TrialsStatus, Window,
};
use crate::contract::WindowMetrics;
use crate::contract::results::StepResult;

fn time(t: chrono::DateTime<chrono::Utc>) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(t.timestamp_nanos_opt()?))
        .ok()
        .map(Time)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn lat(mean: f64, p50: f64, p90: f64, p95: f64, p99: f64) -> LatencyMs {
    LatencyMs {
        mean: round3(mean),
        p50: round3(p50),
        p90: round3(p90),
        p95: round3(p95),
        p99: round3(p99),
    }
}

/// A status row for one measured step, at `replicas` in a scaling study.
pub fn step_status(s: &StepResult, replicas: Option<i32>) -> StepStatus {
    let measured = s.completed > 0;
    let window = match (time(s.window_start), time(s.window_end)) {
        (Some(start), Some(end)) => Some(Window { start, end }),
        _ => None,
    };
    let mut row = StepStatus {
        load: s.point().unwrap_or_default(),
        replicas,
        window,
        requests: s.completed + s.failed,
        succeeded: s.completed,
        failed: s.failed,
        errors: ErrorCounts {
            timeout: s.errors.timeout,
            connect: s.errors.connect,
            http4xx: s.errors.http4xx,
            http5xx: s.errors.http5xx,
            stream: s.errors.stream,
            body: s.errors.body,
        },
        requests_per_second: round3(s.request_throughput),
        output_tokens_per_second: round3(s.output_throughput),
        ttft_ms: measured.then(|| {
            lat(
                s.mean_ttft_ms,
                s.median_ttft_ms,
                s.p90_ttft_ms,
                s.p95_ttft_ms,
                s.p99_ttft_ms,
            )
        }),
        itl_ms: measured.then(|| {
            lat(
                s.mean_itl_ms,
                s.median_itl_ms,
                s.p90_itl_ms,
                s.p95_itl_ms,
                s.p99_itl_ms,
            )
        }),
        tpot_ms: measured.then(|| {
            lat(
                s.mean_tpot_ms,
                s.median_tpot_ms,
                s.p90_tpot_ms,
                s.p95_tpot_ms,
                s.p99_tpot_ms,
            )
        }),
        e2e_ms: measured.then(|| {
            lat(
                s.mean_e2el_ms,
                s.median_e2el_ms,
                s.p90_e2el_ms,
                s.p95_e2el_ms,
                s.p99_e2el_ms,
            )
        }),
        server: None,
        gpu: None,
        client_cpu_util: s.client_cpu_util,
        client_late_send_fraction: s.late_send_fraction,
        cost_per_million_output_tokens: None,
        arrival_requests_per_second: s.arrival_rate,
        achieved_requests_per_second: s.achieved_request_rate,
        falling_behind: s.falling_behind,
        goodput: s.good_requests.map(|good| Goodput {
            good_requests: good,
            requests_per_second: s.request_goodput.unwrap_or(0.0),
            output_tokens_per_second: s.output_goodput.unwrap_or(0.0),
            slo_attainment: s.slo_attainment.unwrap_or(0.0),
        }),
        trials: s.trials.as_ref().map(trials_status),
        workload: s.workload.as_ref().map(workload),
        cancelled: s.cancelled,
        models: s
            .models
            .iter()
            .map(|m| {
                let row = step_status(&m.step, replicas);
                crate::api::ModelStepStatus {
                    model: m.model.clone(),
                    succeeded: row.succeeded,
                    failed: row.failed,
                    cancelled: row.cancelled,
                    requests_per_second: row.requests_per_second,
                    output_tokens_per_second: row.output_tokens_per_second,
                    ttft_ms: row.ttft_ms,
                    itl_ms: row.itl_ms,
                    e2e_ms: row.e2e_ms,
                }
            })
            .collect(),
    };
    if let Some(m) = &s.server {
        attach_metrics(&mut row, m);
    }
    row
}

fn workload(w: &crate::contract::results::StepWorkload) -> crate::api::StepWorkload {
    use crate::contract::results::WorkloadDataset;
    crate::api::StepWorkload {
        dataset: match w.dataset {
            WorkloadDataset::Random => crate::api::DatasetKind::Random,
            WorkloadDataset::Sharegpt => crate::api::DatasetKind::Sharegpt,
            WorkloadDataset::SharedPrefix => crate::api::DatasetKind::SharedPrefix,
            WorkloadDataset::Trace => crate::api::DatasetKind::Trace,
            WorkloadDataset::Jsonl => crate::api::DatasetKind::Jsonl,
        },
        mean_input_tokens: w.mean_input_tokens,
        mean_output_tokens: w.mean_output_tokens,
        shared_prefix_fraction: w.shared_prefix_fraction,
        models: w
            .models
            .iter()
            .map(|m| crate::api::ModelShare {
                model: m.model.clone(),
                share: m.share,
            })
            .collect(),
        mean_turns_per_session: w.mean_turns_per_session,
        sessions: w.sessions,
        trace_speedup: w.trace_speedup,
    }
}

fn spread(s: &crate::contract::results::Spread) -> SpreadStatus {
    SpreadStatus {
        min: s.min,
        median: s.median,
        max: s.max,
        ci95_low: s.ci95_low,
        ci95_high: s.ci95_high,
    }
}

/// The status form of a step's trials.
pub fn trials_status(t: &crate::contract::results::Trials) -> TrialsStatus {
    TrialsStatus {
        count: t.figures.len() as u32,
        output_tokens_per_second: t
            .figures
            .iter()
            .map(|f| round3(f.output_throughput))
            .collect(),
        ttft_p95_ms: t.figures.iter().map(|f| round3(f.p95_ttft_ms)).collect(),
        itl_p95_ms: t.figures.iter().map(|f| round3(f.p95_itl_ms)).collect(),
        output_tokens_per_second_spread: spread(&t.output_throughput),
        ttft_p95_ms_spread: spread(&t.p95_ttft_ms),
    }
}

/// Attach the server-side figures of the row's window (Prometheus).
pub fn attach_metrics(row: &mut StepStatus, m: &WindowMetrics) {
    let server = ServerMetrics {
        ttft_p95_ms: m.ttft_p95_ms.map(round3),
        itl_p95_ms: m.itl_p95_ms.map(round3),
        queue_time_p95_ms: m.queue_time_p95_ms.map(round3),
        kv_cache_usage_max: m.kv_cache_usage_max,
        running_max: m.num_requests_running_max,
        waiting_max: m.num_requests_waiting_max,
        per_replica_running: match (m.per_replica_running_min, m.per_replica_running_max) {
            (Some(min), Some(max)) => Some(MinMax {
                min: round3(min),
                max: round3(max),
            }),
            _ => None,
        },
        prefix_cache_hit_rate: m.prefix_cache_hit_rate().map(round3),
    };
    let gpu = GpuMetrics {
        util_max: m.gpu_util_max.map(round3),
        util_mean: m.gpu_util_mean.map(round3),
        fb_used_max_bytes: m.gpu_fb_used_max_bytes,
        power_mean_watts: m.gpu_power_mean_watts.map(round3),
    };
    row.server = (server != ServerMetrics::default()).then_some(server);
    row.gpu = (gpu != GpuMetrics::default()).then_some(gpu);
}
