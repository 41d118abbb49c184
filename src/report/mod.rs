//! Reports people would rather look at: `report.md` and a self-contained `report.html`
//! with SVG charts, the step tables, findings, reproducibility metadata and, with a
//! baseline, a side-by-side comparison with deltas.

pub mod charts;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::analysis::describe;
use crate::api::{LatencyMs, RunSummary, StepStatus};

/// Everything a report shows about one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    /// Title, e.g. the BenchmarkRun name or the model.
    pub title: String,
    /// Reproducibility metadata, shown as a two-column table in insertion order of keys.
    pub metadata: BTreeMap<String, String>,
    /// One row per step.
    pub steps: Vec<StepStatus>,
    /// Conclusions.
    pub summary: RunSummary,
    /// Per-request records (`inferops report --records`), for the charts over time.
    pub records: Option<crate::contract::records::Records>,
}

/// A table rendered to both Markdown and HTML.
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.headers.join(" | "));
        out.push_str(&format!(
            "|{}\n",
            self.headers.iter().map(|_| " --- |").collect::<String>()
        ));
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }

    fn html(&self) -> String {
        let mut out = String::from("<table><thead><tr>");
        for h in &self.headers {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead><tbody>");
        for r in &self.rows {
            out.push_str("<tr>");
            for c in r {
                let _ = write!(out, "<td>{}</td>", escape(c));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ms(v: Option<&LatencyMs>, pick: fn(&LatencyMs) -> f64) -> String {
    v.map(|l| format!("{:.1}", pick(l)))
        .unwrap_or_else(|| "-".into())
}

fn opt(v: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    v.map(fmt).unwrap_or_else(|| "-".into())
}

fn results_table(steps: &[StepStatus]) -> Table {
    let scaling = steps.iter().any(|s| s.replicas.is_some());
    let mut headers = vec!["load"];
    if scaling {
        headers.push("replicas");
    }
    headers.extend([
        "req/s",
        "out tok/s",
        "TTFT p50 (ms)",
        "TTFT p95 (ms)",
        "ITL p50 (ms)",
        "ITL p95 (ms)",
        "E2E p50 (ms)",
        "E2E p95 (ms)",
        "failed",
    ]);
    let priced = steps
        .iter()
        .any(|s| s.cost_per_million_output_tokens.is_some());
    if priced {
        headers.push("cost / M out tok");
    }
    let mut t = Table::new(&headers);
    for s in steps {
        let mut row = vec![describe(&s.load)];
        if scaling {
            row.push(s.replicas.map(|r| r.to_string()).unwrap_or_default());
        }
        row.extend([
            format!("{:.2}", s.requests_per_second),
            format!("{:.0}", s.output_tokens_per_second),
            ms(s.ttft_ms.as_ref(), |l| l.p50),
            ms(s.ttft_ms.as_ref(), |l| l.p95),
            ms(s.itl_ms.as_ref(), |l| l.p50),
            ms(s.itl_ms.as_ref(), |l| l.p95),
            ms(s.e2e_ms.as_ref(), |l| l.p50),
            ms(s.e2e_ms.as_ref(), |l| l.p95),
            format!("{}/{}", s.failed, s.succeeded + s.failed),
        ]);
        if priced {
            row.push(opt(s.cost_per_million_output_tokens, |c| format!("{c:.2}")));
        }
        t.rows.push(row);
    }
    t
}

fn server_table(steps: &[StepStatus]) -> Option<Table> {
    if !steps.iter().any(|s| s.server.is_some() || s.gpu.is_some()) {
        return None;
    }
    let mut t = Table::new(&[
        "load",
        "GPU util max (%)",
        "GPU util mean (%)",
        "GPU mem max (GiB)",
        "KV cache max (%)",
        "running max",
        "waiting max",
        "server TTFT p95 (ms)",
        "server ITL p95 (ms)",
    ]);
    for s in steps {
        let g = s.gpu.clone().unwrap_or_default();
        let v = s.server.clone().unwrap_or_default();
        t.rows.push(vec![
            describe(&s.load),
            opt(g.util_max, |x| format!("{x:.0}")),
            opt(g.util_mean, |x| format!("{x:.0}")),
            opt(g.fb_used_max_bytes, |x| {
                format!("{:.1}", x / 1024f64.powi(3))
            }),
            opt(v.kv_cache_usage_max, |x| format!("{:.1}", x * 100.0)),
            opt(v.running_max, |x| format!("{x:.0}")),
            opt(v.waiting_max, |x| format!("{x:.0}")),
            opt(v.ttft_p95_ms, |x| format!("{x:.1}")),
            opt(v.itl_p95_ms, |x| format!("{x:.1}")),
        ]);
    }
    Some(t)
}

/// With a model mix: each step per model (absent without one).
fn models_table(steps: &[StepStatus]) -> Option<Table> {
    if steps.iter().all(|s| s.models.is_empty()) {
        return None;
    }
    let mut t = Table::new(&[
        "load",
        "model",
        "succeeded",
        "failed",
        "cancelled",
        "req/s",
        "out tok/s",
        "TTFT p50 (ms)",
        "TTFT p95 (ms)",
        "ITL p50 (ms)",
        "E2E p95 (ms)",
    ]);
    for s in steps {
        for m in &s.models {
            t.rows.push(vec![
                describe(&s.load),
                m.model.clone(),
                m.succeeded.to_string(),
                m.failed.to_string(),
                m.cancelled.to_string(),
                format!("{:.2}", m.requests_per_second),
                format!("{:.0}", m.output_tokens_per_second),
                ms(m.ttft_ms.as_ref(), |l| l.p50),
                ms(m.ttft_ms.as_ref(), |l| l.p95),
                ms(m.itl_ms.as_ref(), |l| l.p50),
                ms(m.e2e_ms.as_ref(), |l| l.p95),
            ]);
        }
    }
    Some(t)
}

fn delta(base: f64, this: f64) -> String {
    if base == 0.0 {
        return format!("{this:.1}");
    }
    format!(
        "{base:.1} → {this:.1} ({:+.1}%)",
        (this - base) / base * 100.0
    )
}

fn comparison_table(base: &RunRecord, this: &RunRecord) -> Table {
    let mut t = Table::new(&[
        "load",
        "out tok/s",
        "TTFT p95 (ms)",
        "ITL p95 (ms)",
        "E2E p95 (ms)",
    ]);
    for s in &this.steps {
        let Some(b) = base
            .steps
            .iter()
            .find(|b| b.load == s.load && b.replicas == s.replicas)
        else {
            continue;
        };
        let p95 = |x: Option<&LatencyMs>| x.map(|l| l.p95).unwrap_or_default();
        t.rows.push(vec![
            describe(&s.load),
            delta(b.output_tokens_per_second, s.output_tokens_per_second),
            delta(p95(b.ttft_ms.as_ref()), p95(s.ttft_ms.as_ref())),
            delta(p95(b.itl_ms.as_ref()), p95(s.itl_ms.as_ref())),
            delta(p95(b.e2e_ms.as_ref()), p95(s.e2e_ms.as_ref())),
        ]);
    }
    t
}

fn summary_lines(r: &RunRecord) -> Vec<String> {
    let s = &r.summary;
    let mut out = vec![format!(
        "Peak output throughput: {:.0} tok/s{}",
        s.peak_output_tokens_per_second,
        s.ttft_p95_ms
            .map(|t| format!(" (TTFT p95 {t:.1} ms at that step)"))
            .unwrap_or_default()
    )];
    if let Some(sat) = &s.saturation {
        let held = match (&sat.at, sat.requests_per_second) {
            (Some(at), Some(rps)) => format!("{} ({rps:.2} req/s)", describe(at)),
            _ => "no load point".to_string(),
        };
        let broke = sat
            .first_broken
            .as_ref()
            .map(|b| {
                format!(
                    "; first broken at {} by {}",
                    describe(b),
                    sat.limited_by.map_or("?", |l| l.as_str())
                )
            })
            .unwrap_or_default();
        let bracket = sat
            .bracket_width
            .map(|w| format!(" (bracket {:.1}% wide)", w * 100.0))
            .unwrap_or_default();
        let probes = if sat.probes.is_empty() {
            String::new()
        } else {
            format!("; {} probes of a saturation search", sat.probes.len())
        };
        out.push(format!(
            "Saturation: highest load that held: {held}{broke}{bracket}{probes}"
        ));
    }
    if let Some(b) = s.bottleneck {
        out.push(format!(
            "Bottleneck: {}",
            serde_json::to_value(b)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ));
    }
    if let Some(c) = s.cost_per_million_output_tokens_at_saturation {
        out.push(format!(
            "Cost at the saturation point: {c:.2} per million output tokens"
        ));
    }
    if let Some(r) = &s.recommendation {
        out.push(format!(
            "Recommendation: one replica sustains {:.2} req/s; queue-depth HPA target {:.0} waiting requests per replica{}",
            r.requests_per_second_per_replica,
            r.queue_depth_target,
            match (r.target_request_rate, r.replicas_for_target_rate) {
                (Some(rate), Some(n)) => format!("; {n} replicas for {rate:.1} req/s"),
                _ => String::new(),
            }
        ));
    }
    for (n, e) in &s.scaling_efficiency {
        out.push(format!(
            "Scaling efficiency at {n} replicas: {:.0}%",
            e * 100.0
        ));
    }
    out
}

/// Chart files of a run: (file name, alt text, SVG).
fn chart_files(r: &RunRecord) -> anyhow::Result<Vec<(&'static str, &'static str, String)>> {
    let knee = r.summary.saturation.as_ref().and_then(|s| s.at.as_ref());
    let eff: Vec<(i32, f64)> = r
        .summary
        .scaling_efficiency
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
        .collect();
    let all = [
        (
            "throughput.svg",
            "Output throughput vs load",
            charts::throughput(&r.steps, knee),
        ),
        (
            "latency.svg",
            "TTFT, ITL and E2E p50/p95 vs load",
            charts::latency(&r.steps),
        ),
        (
            "queue.svg",
            "Requests running vs waiting",
            charts::queue(&r.steps),
        ),
        (
            "gpu.svg",
            "GPU utilisation and KV cache usage",
            charts::gpu(&r.steps),
        ),
        ("scaling.svg", "Scaling efficiency", charts::scaling(&eff)),
        (
            "latency-over-time.svg",
            "TTFT and ITL p50/p99 in time slices of each step",
            match &r.records {
                Some(rec) => charts::latency_over_time(&timeline::slices(&rec.records)),
                None => Ok(None),
            },
        ),
        (
            "ttft-vs-prompt.svg",
            "TTFT vs prompt length, one point per request",
            match &r.records {
                Some(rec) => charts::ttft_vs_prompt(&timeline::ttft_by_prompt(&rec.records)),
                None => Ok(None),
            },
        ),
    ];
    let mut out = Vec::new();
    for (file, alt, svg) in all {
        if let Some(svg) = svg.map_err(anyhow::Error::msg)? {
            out.push((file, alt, svg));
        }
    }
    Ok(out)
}

/// Write `report.md`, `report.html` and the SVG charts into `dir`. Returns the files written.
pub fn write(
    run: &RunRecord,
    baseline: Option<&RunRecord>,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let charts = chart_files(run)?;
    let mut written = Vec::new();
    for (file, _, svg) in &charts {
        let path = dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(run, baseline, &charts))?;
    written.push(md);
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, html(run, baseline, &charts))?;
    written.push(html_path);
    Ok(written)
}

fn metadata_table(r: &RunRecord) -> Table {
    let mut t = Table::new(&["", ""]);
    for (k, v) in &r.metadata {
        t.rows.push(vec![k.clone(), v.clone()]);
    }
    t
}

fn markdown(
    r: &RunRecord,
    baseline: Option<&RunRecord>,
    charts: &[(&str, &str, String)],
) -> String {
    let mut out = format!("# Benchmark report: {}\n\n", r.title);
    out.push_str("## Summary\n\n");
    for l in summary_lines(r) {
        let _ = writeln!(out, "- {l}");
    }
    if !r.summary.findings.is_empty() {
        out.push_str("\n### Findings\n\n");
        for f in &r.summary.findings {
            let _ = writeln!(out, "- {f}");
        }
    }
    out.push_str("\n## Results\n\n");
    out.push_str(&results_table(&r.steps).markdown());
    if let Some(t) = models_table(&r.steps) {
        out.push_str("\n## Per model\n\n");
        out.push_str(&t.markdown());
    }
    if let Some(t) = server_table(&r.steps) {
        out.push_str("\n## Server and GPU metrics (Prometheus, same windows)\n\n");
        out.push_str(&t.markdown());
    }
    if let Some(b) = baseline {
        let _ = write!(out, "\n## Compared with {}\n\n", b.title);
        out.push_str(&comparison_table(b, r).markdown());
    }
    out.push_str("\n## Charts\n\n");
    for (file, alt, _) in charts {
        let _ = writeln!(out, "![{alt}]({file})\n");
    }
    if !r.metadata.is_empty() {
        out.push_str("## Reproducibility\n\n");
        out.push_str(&metadata_table(r).markdown());
    }
    out
}

fn html(r: &RunRecord, baseline: Option<&RunRecord>, charts: &[(&str, &str, String)]) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    );
    let _ = write!(out, "<title>Benchmark report: {}</title>", escape(&r.title));
    out.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1400px;\
         color:#222;padding:0 1rem}table{border-collapse:collapse;margin:1rem 0;font-size:14px}\
         th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
         th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
         figure{margin:1rem 0}svg{max-width:100%;height:auto}</style></head><body>",
    );
    let _ = write!(out, "<h1>Benchmark report: {}</h1>", escape(&r.title));
    out.push_str("<h2>Summary</h2><ul>");
    for l in summary_lines(r) {
        let _ = write!(out, "<li>{}</li>", escape(&l));
    }
    out.push_str("</ul>");
    if !r.summary.findings.is_empty() {
        out.push_str("<h3>Findings</h3><ul>");
        for f in &r.summary.findings {
            let _ = write!(out, "<li>{}</li>", escape(f));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Results</h2>");
    out.push_str(&results_table(&r.steps).html());
    if let Some(t) = models_table(&r.steps) {
        out.push_str("<h2>Per model</h2>");
        out.push_str(&t.html());
    }
    if let Some(t) = server_table(&r.steps) {
        out.push_str("<h2>Server and GPU metrics (Prometheus, same windows)</h2>");
        out.push_str(&t.html());
    }
    if let Some(b) = baseline {
        let _ = write!(out, "<h2>Compared with {}</h2>", escape(&b.title));
        out.push_str(&comparison_table(b, r).html());
    }
    out.push_str("<h2>Charts</h2>");
    for (_, alt, svg) in charts {
        let _ = write!(
            out,
            "<figure aria-label=\"{}\">{}</figure>",
            escape(alt),
            svg
        );
    }
    if !r.metadata.is_empty() {
        out.push_str("<h2>Reproducibility</h2>");
        out.push_str(&metadata_table(r).html());
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, summarize};
    use crate::api::{GpuMetrics, LoadPoint, ServerMetrics};

    fn lat(p50: f64) -> Option<LatencyMs> {
        Some(LatencyMs {
            mean: p50,
            p50,
            p90: p50 * 1.2,
            p95: p50 * 1.3,
            p99: p50 * 1.5,
        })
    }

    pub(crate) fn sample_run() -> RunRecord {
        let published = [
            (1, 1.3, 168.0, 27.0, 5.1, 679.0),
            (2, 2.9, 367.0, 37.8, 5.2, 698.0),
            (4, 5.4, 698.0, 50.1, 5.3, 722.0),
            (8, 10.2, 1312.0, 60.9, 5.5, 772.0),
            (16, 17.8, 2277.0, 103.8, 6.0, 870.0),
            (32, 29.5, 3773.0, 135.3, 7.1, 1040.0),
        ];
        let steps: Vec<StepStatus> = published
            .iter()
            .map(|&(c, rps, tps, ttft, itl, e2e)| StepStatus {
                load: LoadPoint::Concurrency(c),
                requests: 200,
                succeeded: 200,
                requests_per_second: rps,
                output_tokens_per_second: tps,
                ttft_ms: lat(ttft),
                itl_ms: lat(itl),
                e2e_ms: lat(e2e),
                server: Some(ServerMetrics {
                    kv_cache_usage_max: Some(0.01 * f64::from(c) / 32.0),
                    running_max: Some(f64::from(c)),
                    waiting_max: Some(0.0),
                    ..Default::default()
                }),
                gpu: Some(GpuMetrics {
                    util_max: Some(40.0 + f64::from(c)),
                    util_mean: Some(30.0 + f64::from(c)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let summary = summarize(&steps, &Options::default());
        RunRecord {
            title: "qwen <sweep>".into(),
            metadata: BTreeMap::from([(
                "model".to_string(),
                "Qwen/Qwen2.5-0.5B-Instruct".to_string(),
            )]),
            steps,
            summary,
            records: None,
        }
    }

    #[test]
    fn writes_markdown_html_and_every_chart_with_data() {
        let dir = tempfile::tempdir().unwrap();
        let run = sample_run();
        let mut base = run.clone();
        base.title = "baseline".into();
        for s in &mut base.steps {
            s.output_tokens_per_second *= 1.25;
        }
        let files = write(&run, Some(&base), dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for f in [
            "throughput.svg",
            "latency.svg",
            "queue.svg",
            "gpu.svg",
            "report.md",
            "report.html",
        ] {
            assert!(names.contains(&f.to_string()), "{f} missing from {names:?}");
        }
        assert!(
            !names.contains(&"scaling.svg".to_string()),
            "no scaling study, no chart"
        );
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("| concurrency 32 | 29.50 | 3773 |"), "{md}");
        assert!(md.contains("Peak output throughput: 3773 tok/s"));
        assert!(md.contains("E2E is decode-dominated"));
        assert!(
            md.contains("4716.2 → 3773.0 (-20.0%)"),
            "baseline delta: {md}"
        );
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("<svg"), "charts are inline");
        assert!(html.contains("qwen &lt;sweep&gt;"), "title is escaped");
        let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
        for label in [
            "Time to first token",
            "Inter-token latency",
            "Milliseconds",
            "p95",
        ] {
            assert!(svg.contains(label), "latency chart lacks {label}");
        }
    }

    #[test]
    fn records_add_a_time_sliced_latency_chart_and_a_ttft_scatter() {
        use crate::contract::records::{RecordOutcome, Records, RequestRecord};
        let dir = tempfile::tempdir().unwrap();
        let mut run = sample_run();
        assert!(
            chart_files(&run)
                .unwrap()
                .iter()
                .all(|c| !c.0.contains("time"))
        );
        // Two steps of 50 requests, 100 ms apart; prompt length varies with the index.
        let records: Vec<RequestRecord> = (0..100u32)
            .map(|i| RequestRecord {
                id: i.to_string(),
                step: (i / 50) as usize,
                trial: 0,
                model: "m".into(),
                scheduled_ms: f64::from(i) * 100.0,
                sent_ms: f64::from(i) * 100.0,
                first_token_ms: Some(f64::from(i) * 100.0 + 20.0 + f64::from(i % 7)),
                last_token_ms: Some(f64::from(i) * 100.0 + 500.0),
                end_ms: f64::from(i) * 100.0 + 500.0,
                prompt_tokens: 100 + i,
                output_tokens: 64,
                itl_ms: Some(vec![7.0; 63]),
                outcome: RecordOutcome::Ok,
                error_class: None,
            })
            .collect();
        run.records = Some(Records {
            headers: Vec::new(),
            records,
        });
        let files = write(&run, None, dir.path()).unwrap();
        let read = |f: &str| {
            assert!(files.iter().any(|p| p.ends_with(f)), "{f} not written");
            std::fs::read_to_string(dir.path().join(f)).unwrap()
        };
        let over_time = read("latency-over-time.svg");
        for label in [
            "Time to first token over time",
            "Inter-token latency over time",
            "Seconds since the run start",
            "p99",
        ] {
            assert!(over_time.contains(label), "lacks {label}");
        }
        // 2 steps x 10 slices, each a point on four lines (TTFT and ITL, p50 and p99).
        assert_eq!(
            timeline::slices(&run.records.as_ref().unwrap().records).len(),
            20
        );
        assert_eq!(
            over_time.matches("<circle").count(),
            20 * 4,
            "one marker per slice"
        );
        let scatter = read("ttft-vs-prompt.svg");
        assert!(scatter.contains("Prompt tokens"));
        assert_eq!(
            scatter.matches("<circle").count(),
            100,
            "one point per request"
        );
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("latency-over-time.svg"), "{md}");
    }

    #[test]
    fn steps_without_server_metrics_skip_those_charts() {
        let mut run = sample_run();
        for s in &mut run.steps {
            s.server = None;
            s.gpu = None;
        }
        let dir = tempfile::tempdir().unwrap();
        let files = write(&run, None, dir.path()).unwrap();
        assert!(
            files
                .iter()
                .all(|f| !f.ends_with("gpu.svg") && !f.ends_with("queue.svg"))
        );
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(!md.contains("Server and GPU metrics"));
    }
}
