//! Per-request records and trials against the simulator: one record line per measured
//! request (ok and failed), ids sent as `X-Request-Id`, and the noise-aware baseline
//! comparison: trials of an unchanged target never regress, a target slowed by 20% does.

use std::sync::Arc;
use std::time::Duration;

use inferops::analysis::{self, Options, rows};
use inferops::api::BaselineSpec;
use inferops::contract::records::{RecordOutcome, parse_records};
use inferops::contract::{Plan, Results, TokenCount};
use inferops::loadgen::records::JsonlSink;
use inferops::loadgen::run::RecordsTo;
use inferops::loadgen::{NoObserver, RunOptions, run_plan_with};
use inferops::sim::{SimHandle, SimOptions, spawn};
use tokio_util::sync::CancellationToken;

async fn sim(ttft_ms: u64, itl_ms: u64) -> SimHandle {
    spawn(
        SimOptions::fixed(
            Duration::from_millis(ttft_ms),
            Duration::from_millis(itl_ms),
        ),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn plan(sim: &SimHandle, trials: u32) -> Plan {
    let mut p = Plan::new(sim.base_url(), sim.model());
    p.workload.input_tokens = TokenCount::Fixed(32);
    p.workload.output_tokens = TokenCount::Fixed(16);
    p.load.concurrency = vec![4];
    p.load.requests_per_step = Some(24);
    p.load.request_timeout = Duration::from_secs(20);
    p.load.trials = trials;
    p
}

async fn run(p: &Plan, options: &RunOptions) -> Results {
    tokio::time::timeout(
        Duration::from_secs(120),
        run_plan_with(p, options, CancellationToken::new(), &mut NoObserver),
    )
    .await
    .expect("finished in time")
    .expect("ran")
}

#[tokio::test]
async fn records_hold_one_line_per_request_ok_or_failed() {
    let s = sim(10, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    let sink = Arc::new(JsonlSink::create(&path).unwrap());
    let options = RunOptions {
        records: Some(RecordsTo {
            sink: sink.clone(),
            itl: true,
        }),
        ..Default::default()
    };
    let mut p = plan(&s, 2);
    p.load.concurrency = vec![2, 4];
    p.load.requests_per_step = Some(10);
    let ok = run(&p, &options).await;
    // A wrong model name: every request fails (HTTP 404) and is recorded as failed.
    let mut bad = plan(&s, 1);
    bad.target.model = "no-such-model".into();
    bad.load.requests_per_step = Some(5);
    let failed = run(&bad, &options).await;
    let written = sink.finish().unwrap();
    let want = ok.summary.completed + ok.summary.failed + failed.summary.failed;
    assert_eq!(ok.summary.completed, 2 * 2 * 10, "two steps of two trials");
    assert_eq!(failed.summary.failed, 5);
    assert_eq!(written, want);
    let text = std::fs::read_to_string(&path).unwrap();
    let r = parse_records(&text).unwrap();
    assert_eq!(r.headers.len(), 2, "one header per run");
    assert_eq!(r.headers[0].started_at, ok.metadata.started_at);
    assert_eq!(r.records.len() as u64, want);
    let oks: Vec<_> = r
        .records
        .iter()
        .filter(|x| x.outcome == RecordOutcome::Ok)
        .collect();
    assert_eq!(oks.len() as u64, ok.summary.completed);
    for x in &oks {
        assert!(x.sent_ms >= x.scheduled_ms);
        let (first, last) = (x.first_token_ms.unwrap(), x.last_token_ms.unwrap());
        assert!(first - x.scheduled_ms >= 9.0, "fixed 10 ms TTFT: {x:?}");
        assert!(last >= first && x.end_ms >= last, "{x:?}");
        assert_eq!(x.output_tokens, 16);
        assert_eq!(x.itl_ms.as_ref().map(Vec::len), Some(15), "{x:?}");
    }
    for (step, trial) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert_eq!(
            oks.iter()
                .filter(|x| x.step == step && x.trial == trial)
                .count(),
            10,
            "step {step} trial {trial}"
        );
    }
    let bad_records: Vec<_> = r
        .records
        .iter()
        .filter(|x| x.outcome == RecordOutcome::Failed)
        .collect();
    assert_eq!(bad_records.len(), 5);
    assert!(bad_records.iter().all(|x| x.error_class
        == Some(inferops::contract::ErrorClass::Http4xx)
        && x.first_token_ms.is_none()));
    let mut ids: Vec<&str> = r.records.iter().map(|x| x.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, want, "ids are unique");
    s.shutdown().await;
}

/// A one-connection-at-a-time HTTP server answering every request with a short
/// non-streamed completion, handing the `x-request-id` header it saw to the test.
async fn header_capture() -> (String, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = text[..head_end].to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + length {
                        continue;
                    }
                    let id = head
                        .lines()
                        .find_map(|l| l.strip_prefix("x-request-id:"))
                        .map(|v| v.trim().to_string());
                    let _ = tx.send(id);
                    buf.drain(..head_end + 4 + length);
                    let body = r#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"hi","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn each_record_id_is_sent_as_the_x_request_id_header() {
    let (url, mut seen) = header_capture().await;
    let mut p = Plan::new(url, "m");
    p.workload.stream = false;
    p.workload.input_tokens = TokenCount::Fixed(3);
    p.workload.output_tokens = TokenCount::Fixed(1);
    p.load.concurrency = vec![1];
    p.load.requests_per_step = Some(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let sink = Arc::new(JsonlSink::create(&path).unwrap());
    let options = RunOptions {
        records: Some(RecordsTo {
            sink: sink.clone(),
            itl: false,
        }),
        no_preconnect: true,
        ..Default::default()
    };
    let r = run(&p, &options).await;
    assert_eq!(r.summary.completed, 4, "{:?}", r.steps[0].one_line());
    assert_eq!(sink.finish().unwrap(), 4);
    let records = parse_records(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut got = Vec::new();
    while let Ok(id) = seen.try_recv() {
        got.push(id.expect("every request carries x-request-id"));
    }
    let want: Vec<String> = records.records.iter().map(|x| x.id.clone()).collect();
    assert_eq!(got, want);
}

fn summary(r: &Results) -> inferops::api::RunSummary {
    let steps: Vec<_> = r.steps.iter().map(|s| rows::step_status(s, None)).collect();
    analysis::summarize(&steps, &Options::default())
}

#[tokio::test]
async fn trials_of_an_unchanged_target_never_regress_and_a_slower_one_does() {
    let spec = BaselineSpec {
        name: "base".into(),
        max_throughput_drop: 0.1,
        max_ttft_p95_increase: 0.1,
    };
    let options = RunOptions::default();
    let fast = sim(40, 4).await;
    let base = run(&plan(&fast, 3), &options).await;
    let again = run(&plan(&fast, 3), &options).await;
    fast.shutdown().await;
    let t = base.steps[0].trials.as_ref().expect("trials reported");
    assert_eq!(t.figures.len(), 3);
    assert_eq!(
        base.steps[0].completed,
        3 * 24,
        "the step merges its trials"
    );
    assert!(t.output_throughput.min <= t.output_throughput.median);
    assert!(t.output_throughput.ci95_low <= t.output_throughput.ci95_high);
    let (b, a) = (summary(&base), summary(&again));
    assert_eq!(b.peak_trials.as_ref().map(|t| t.count), Some(3));
    let c = analysis::compare(&a, &b, &spec);
    assert!(!c.regressed, "unchanged target: {c:?}");
    assert_eq!(c.confidence, Some(0.95));
    // 20% slower TTFT and ITL.
    let slow = sim(48, 5).await;
    let slower = run(&plan(&slow, 3), &options).await;
    slow.shutdown().await;
    let c = analysis::compare(&summary(&slower), &b, &spec);
    assert!(c.regressed, "slowed by 20%: {c:?}");
    let msg = c.message.unwrap();
    assert!(
        msg.contains("Mann-Whitney") && msg.contains("95% confidence"),
        "{msg}"
    );
    // The same runs without trials: a single-sample comparison, and the message says so.
    let single = |mut s: inferops::api::RunSummary| {
        s.peak_trials = None;
        s
    };
    let c = analysis::compare(&single(summary(&slower)), &single(b), &spec);
    assert!(c.regressed);
    assert!(c.message.unwrap().contains("single-sample"));
}

/// `inferops loadgen` with `load.records` embeds the records in its results (what the pod
/// writes to its ConfigMap), and `inferops report` draws the charts over time from them.
#[tokio::test]
async fn a_load_pod_embeds_its_records_and_report_draws_them() {
    let s = sim(5, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.yaml");
    let out = dir.path().join("results.json");
    let yaml = format!(
        "target: {{url: '{}', model: '{}'}}\nworkload: {{inputTokens: 16, outputTokens: 8}}\nload: {{concurrency: [1, 2], requestsPerStep: 12, trials: 2, records: {{maxBytes: 65536}}}}\n",
        s.base_url(),
        s.model()
    );
    std::fs::write(&plan_path, &yaml).unwrap();
    let bin = env!("CARGO_BIN_EXE_inferops");
    let o = tokio::task::spawn_blocking({
        let (plan_path, out) = (plan_path.clone(), out.clone());
        move || {
            std::process::Command::new(bin)
                .arg("loadgen")
                .arg("--plan")
                .arg(plan_path)
                .env("INFEROPS_OUT", out)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results: Results = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let e = results.summary.records.clone().expect("records embedded");
    assert_eq!(e.dropped, 0);
    assert_eq!(e.count, results.summary.completed + results.summary.failed);
    assert_eq!(e.count, 2 * 2 * 12);
    let decoded = e.decode().unwrap();
    assert_eq!(decoded.records.len() as u64, e.count);
    assert_eq!(decoded.headers[0].started_at, results.metadata.started_at);
    let report_dir = dir.path().join("report");
    let o = std::process::Command::new(bin)
        .arg("report")
        .arg(&out)
        .arg("-o")
        .arg(&report_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(report_dir.join("ttft-vs-prompt.svg")).unwrap();
    assert_eq!(
        svg.matches("<circle").count() as u64,
        e.count,
        "one point per request"
    );
    assert!(report_dir.join("latency-over-time.svg").exists());
    s.shutdown().await;
}
