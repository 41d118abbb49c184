//! The results table printed by `inferops bench`: a Markdown table shaped like a published
//! concurrency sweep, ready to paste into a README.

use std::fmt::Write as _;

use crate::contract::plan::LoadPoint;
use crate::contract::results::{Results, StepResult};

fn num(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

fn adaptive(v: f64) -> String {
    if v >= 100.0 {
        num(v, 0)
    } else if v >= 10.0 {
        num(v, 1)
    } else {
        num(v, 2)
    }
}

fn errors_cell(s: &StepResult) -> String {
    if s.failed == 0 {
        return "0".into();
    }
    let classes: Vec<&str> = crate::contract::outcome::ErrorClass::ALL
        .iter()
        .filter(|c| s.errors.get(**c) > 0)
        .map(|c| c.name())
        .collect();
    format!("{} ({})", s.failed, classes.join(", "))
}

/// Renders the steps as a Markdown table (latencies in milliseconds).
pub fn render(results: &Results) -> String {
    let first_col = match results.steps.first().and_then(StepResult::point) {
        Some(LoadPoint::Rate(_)) => "rate (req/s)",
        _ => "concurrency",
    };
    let open_loop = results
        .steps
        .iter()
        .any(|s| s.achieved_request_rate.is_some());
    let mut header = vec![
        first_col,
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p95",
        "ITL p50",
        "ITL p95",
        "E2E p50",
        "E2E p95",
        "errors",
    ];
    if open_loop {
        header.insert(2, "finished/arrived req/s");
    }
    let goodput = results.steps.iter().any(|s| s.good_requests.is_some());
    if goodput {
        header.extend(["goodput req/s", "goodput tok/s", "SLO met %"]);
    }
    let cancelled = results.steps.iter().any(|s| s.cancelled > 0);
    if cancelled {
        header.push("cancelled");
    }
    let rows: Vec<Vec<String>> = results
        .steps
        .iter()
        .map(|s| {
            let point = point_cell(s);
            let point = if s.interrupted {
                format!("{point}*")
            } else {
                point
            };
            let mut row = vec![
                point,
                adaptive(s.request_throughput),
                num(s.output_throughput, 0),
                num(s.median_ttft_ms, 1),
                num(s.p95_ttft_ms, 1),
                num(s.median_itl_ms, 2),
                num(s.p95_itl_ms, 2),
                adaptive(s.median_e2el_ms),
                adaptive(s.p95_e2el_ms),
                errors_cell(s),
            ];
            if goodput {
                let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| {
                    v.map(f).unwrap_or_else(|| "-".into())
                };
                row.push(opt(s.request_goodput, &adaptive));
                row.push(opt(s.output_goodput, &|v| num(v, 0)));
                row.push(opt(s.slo_attainment, &|v| num(v * 100.0, 1)));
            }
            if cancelled {
                row.push(s.cancelled.to_string());
            }
            if open_loop {
                let cell = match (s.achieved_request_rate, s.arrival_rate) {
                    (Some(f), Some(a)) => format!(
                        "{}/{}{}",
                        adaptive(f),
                        adaptive(a),
                        if s.falling_behind { " behind" } else { "" }
                    ),
                    _ => "-".into(),
                };
                row.insert(2, cell);
            }
            row
        })
        .collect();
    let mut out = markdown(&header, &rows);
    if results.steps.iter().any(|s| s.interrupted) {
        out.push_str("\n* interrupted: the step was cut short\n");
    }
    if results.steps.iter().any(|s| s.falling_behind) {
        out.push_str("\nbehind: requests finished slower than they arrived while latency grew through the step (saturated)\n");
    }
    out
}

fn point_cell(s: &StepResult) -> String {
    match s.point() {
        Some(LoadPoint::Concurrency(c)) => c.to_string(),
        Some(LoadPoint::Rate(r)) => adaptive(r),
        None => "-".into(),
    }
}

/// With a model mix: every step broken down per model (empty without a mix).
pub fn render_models(results: &Results) -> String {
    if results.steps.iter().all(|s| s.models.is_empty()) {
        return String::new();
    }
    let header = [
        "load",
        "model",
        "share %",
        "completed",
        "failed",
        "cancelled",
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p95",
        "ITL p50",
        "ITL p95",
        "E2E p50",
        "E2E p95",
    ];
    let mut rows = Vec::new();
    for s in &results.steps {
        let total = (s.completed + s.failed + s.cancelled).max(1) as f64;
        for m in &s.models {
            let p = &m.step;
            rows.push(vec![
                point_cell(s),
                m.model.clone(),
                num(
                    (p.completed + p.failed + p.cancelled) as f64 * 100.0 / total,
                    1,
                ),
                p.completed.to_string(),
                p.failed.to_string(),
                p.cancelled.to_string(),
                adaptive(p.request_throughput),
                num(p.output_throughput, 0),
                num(p.median_ttft_ms, 1),
                num(p.p95_ttft_ms, 1),
                num(p.median_itl_ms, 2),
                num(p.p95_itl_ms, 2),
                adaptive(p.median_e2el_ms),
                adaptive(p.p95_e2el_ms),
            ]);
        }
    }
    markdown(&header, &rows)
}

/// What Prometheus reported per step (`inferops bench --prometheus`).
pub fn render_server(results: &Results) -> String {
    let header = [
        "load",
        "GPU util max %",
        "GPU util mean %",
        "GPU mem max GiB",
        "KV cache max %",
        "running max",
        "waiting max",
        "server TTFT p95",
        "server ITL p95",
    ];
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".into());
    // Against a server with prefix-cache counters: achieved hit rate (and the intended one).
    let prefix = results.steps.iter().any(|s| {
        s.server
            .as_ref()
            .is_some_and(|m| m.prefix_cache_hit_rate().is_some())
    });
    let mut header = header.to_vec();
    if prefix {
        header.push("prefix hit % (intended)");
    }
    let rows: Vec<Vec<String>> = results
        .steps
        .iter()
        .map(|s| {
            let m = s.server.clone().unwrap_or_default();
            let mut row = vec![
                point_cell(s),
                opt(m.gpu_util_max, &|v| num(v, 0)),
                opt(m.gpu_util_mean, &|v| num(v, 0)),
                opt(m.gpu_fb_used_max_bytes, &|v| num(v / 1024f64.powi(3), 1)),
                opt(m.kv_cache_usage_max, &|v| num(v * 100.0, 1)),
                opt(m.num_requests_running_max, &|v| num(v, 0)),
                opt(m.num_requests_waiting_max, &|v| num(v, 0)),
                opt(m.ttft_p95_ms, &|v| num(v, 1)),
                opt(m.itl_p95_ms, &|v| num(v, 2)),
            ];
            if prefix {
                let intended = s.workload.as_ref().and_then(|w| w.shared_prefix_fraction);
                let achieved = opt(m.prefix_cache_hit_rate(), &|v| num(v * 100.0, 1));
                row.push(match intended {
                    Some(i) => format!("{achieved} ({})", num(i * 100.0, 1)),
                    None => achieved,
                });
            }
            row
        })
        .collect();
    markdown(&header, &rows)
}

/// A Markdown table with padded columns.
/// The spread over trials of the steps that ran more than one (`load.trials`): per figure
/// `median (min-max) ±half-width of the 95% interval of the mean`. Empty when no step did.
pub fn render_trials(results: &Results) -> String {
    use crate::contract::results::Spread;
    let cell = |s: &Spread, f: &dyn Fn(f64) -> String| {
        format!(
            "{} ({}-{}) ±{}",
            f(s.median),
            f(s.min),
            f(s.max),
            f((s.ci95_high - s.ci95_low) / 2.0)
        )
    };
    let rows: Vec<Vec<String>> = results
        .steps
        .iter()
        .filter_map(|s| {
            let t = s.trials.as_ref()?;
            Some(vec![
                point_cell(s),
                t.figures.len().to_string(),
                cell(&t.request_throughput, &adaptive),
                cell(&t.output_throughput, &|v| num(v, 0)),
                cell(&t.p50_ttft_ms, &|v| num(v, 1)),
                cell(&t.p95_ttft_ms, &|v| num(v, 1)),
                cell(&t.p95_itl_ms, &|v| num(v, 2)),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let header = [
        "load",
        "trials",
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p95",
        "ITL p95",
    ];
    let mut out = markdown(&header, &rows);
    out.push_str(
        "\nover trials: median (min-max) ±half-width of the 95% confidence interval of the mean\n",
    );
    out
}

fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(header[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        out.push('|');
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, " {c:<w$} |");
        }
        out.push('\n');
    };
    line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        &mut out,
    );
    line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        &mut out,
    );
    for r in rows {
        line(r, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::plan::Plan;
    use crate::contract::results::{Metadata, Summary};
    use crate::contract::stats::StepStats;
    use crate::contract::{ErrorClass, Failure};
    use chrono::Utc;
    use std::time::Instant;

    #[test]
    fn table_has_a_row_per_step_with_errors_named() {
        let mut stats = StepStats::new();
        stats.record_err(&Failure::new(ErrorClass::Timeout, "slow"), Instant::now());
        let now = Utc::now();
        let steps = vec![
            StepResult::from_stats(
                LoadPoint::Concurrency(1),
                &StepStats::new(),
                now,
                now,
                false,
            ),
            StepResult::from_stats(LoadPoint::Concurrency(32), &stats, now, now, true),
        ];
        let results = Results {
            metadata: Metadata::new(&Plan::new("http://x", "m")),
            summary: Summary::of(&steps, 0.01),
            steps,
        };
        let t = render(&results);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert_eq!(lines[5], "* interrupted: the step was cut short");
        assert!(lines[0].starts_with("| concurrency | req/s | out tok/s | TTFT p50"));
        assert!(
            lines[3].contains("| 32* ") && lines[3].contains("1 (timeout)"),
            "{t}"
        );
        assert!(
            lines[..4]
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }

    #[test]
    fn goodput_columns_appear_with_a_goodput_slo() {
        use crate::contract::{GoodputSlo, Metrics};
        let slo = GoodputSlo::parse("ttft=100ms").unwrap();
        let mut stats = StepStats::with_goodput(Some(slo));
        let t = Instant::now();
        for ttft_ms in [50, 60, 70, 150] {
            let m = Metrics {
                ttft_us: ttft_ms * 1000,
                e2el_us: ttft_ms * 1000 + 10_000,
                prompt_tokens: 8,
                output_tokens: 10,
                streamed: true,
            };
            stats.record_ok(&m, &[], t);
        }
        let start = Utc::now();
        let steps = vec![StepResult::from_stats(
            LoadPoint::Concurrency(4),
            &stats,
            start,
            start + chrono::Duration::seconds(2),
            false,
        )];
        assert_eq!(steps[0].good_requests, Some(3));
        assert_eq!(steps[0].request_goodput, Some(1.5));
        assert_eq!(steps[0].output_goodput, Some(15.0));
        assert_eq!(steps[0].slo_attainment, Some(0.75));
        let results = Results {
            metadata: Metadata::new(&Plan::new("http://x", "m")),
            summary: Summary::of(&steps, 0.01),
            steps,
        };
        let t = render(&results);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].ends_with("| goodput req/s | goodput tok/s | SLO met % |"),
            "{t}"
        );
        assert!(
            lines[2].ends_with("| 1.50          | 15            | 75.0      |"),
            "{t}"
        );
    }
}
