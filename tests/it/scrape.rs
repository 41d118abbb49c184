//! Server figures without Prometheus: the `/metrics` reader against a loopback fixture
//! serving vLLM-format text (exact deltas against hand-computed values), and `inferops
//! bench` against the simulator printing and saving the figures per step.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use inferops::contract::ServerSource;
use inferops::loadgen::probe::WindowProbe;
use inferops::scrape::MetricsProbe;
use inferops::sim::{SimOptions, spawn};

/// vLLM's exposition before the window: 10 requests served earlier.
const BEGIN: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 0.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="length",model_name="qwen"} 10.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="qwen"} 0.0
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="qwen"} 2560.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="qwen"} 0.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.04",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.06",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.08",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="qwen"} 0.3
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.3",model_name="qwen"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="0.5",model_name="qwen"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="qwen"} 10.0
vllm:request_queue_time_seconds_count{engine="0",model_name="qwen"} 10.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="qwen"} 0.01
"#;

/// While the load runs: 6 running, 2 waiting, 40% of the KV cache.
fn during() -> String {
    BEGIN
        .replace(
            r#"vllm:num_requests_running{engine="0",model_name="qwen"} 0.0"#,
            r#"vllm:num_requests_running{engine="0",model_name="qwen"} 6.0"#,
        )
        .replace(
            r#"vllm:num_requests_waiting{engine="0",model_name="qwen"} 0.0"#,
            r#"vllm:num_requests_waiting{engine="0",model_name="qwen"} 2.0"#,
        )
        .replace(
            r#"vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.0"#,
            r#"vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.4"#,
        )
}

/// After the window: 40 more requests (30 length, 10 stop). TTFT: 10 in (40, 60] ms, 20 in
/// (60, 80], 10 in (80, 100], adding up to 2.8 s; queue: 30 under 300 ms, 10 in (300,
/// 500], adding up to 4.0 s; prefix cache: 6400 of 10240 tokens hit. The gauges stay as
/// during the load, so a read that races the end reads the same.
fn end() -> String {
    let mut s = during();
    for (from, to) in [
        (
            r#"finished_reason="length",model_name="qwen"} 10.0"#,
            r#"finished_reason="length",model_name="qwen"} 40.0"#,
        ),
        (
            r#"finished_reason="stop",model_name="qwen"} 0.0"#,
            r#"finished_reason="stop",model_name="qwen"} 10.0"#,
        ),
        (
            r#"vllm:prefix_cache_queries_total{engine="0",model_name="qwen"} 2560.0"#,
            r#"vllm:prefix_cache_queries_total{engine="0",model_name="qwen"} 12800.0"#,
        ),
        (
            r#"vllm:prefix_cache_hits_total{engine="0",model_name="qwen"} 0.0"#,
            r#"vllm:prefix_cache_hits_total{engine="0",model_name="qwen"} 6400.0"#,
        ),
        (
            r#"le="0.06",model_name="qwen"} 10.0"#,
            r#"le="0.06",model_name="qwen"} 20.0"#,
        ),
        (
            r#"le="0.08",model_name="qwen"} 10.0"#,
            r#"le="0.08",model_name="qwen"} 40.0"#,
        ),
        (
            r#"le="0.1",model_name="qwen"} 10.0"#,
            r#"le="0.1",model_name="qwen"} 50.0"#,
        ),
        (
            r#"vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="qwen"} 10.0"#,
            r#"vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="qwen"} 50.0"#,
        ),
        (
            r#"vllm:time_to_first_token_seconds_count{engine="0",model_name="qwen"} 10.0"#,
            r#"vllm:time_to_first_token_seconds_count{engine="0",model_name="qwen"} 50.0"#,
        ),
        (
            r#"vllm:time_to_first_token_seconds_sum{engine="0",model_name="qwen"} 0.3"#,
            r#"vllm:time_to_first_token_seconds_sum{engine="0",model_name="qwen"} 3.1"#,
        ),
        (
            r#"le="0.3",model_name="qwen"} 10.0"#,
            r#"le="0.3",model_name="qwen"} 40.0"#,
        ),
        (
            r#"le="0.5",model_name="qwen"} 10.0"#,
            r#"le="0.5",model_name="qwen"} 50.0"#,
        ),
        (
            r#"vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="qwen"} 10.0"#,
            r#"vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="qwen"} 50.0"#,
        ),
        (
            r#"vllm:request_queue_time_seconds_count{engine="0",model_name="qwen"} 10.0"#,
            r#"vllm:request_queue_time_seconds_count{engine="0",model_name="qwen"} 50.0"#,
        ),
        (
            r#"vllm:request_queue_time_seconds_sum{engine="0",model_name="qwen"} 0.01"#,
            r#"vllm:request_queue_time_seconds_sum{engine="0",model_name="qwen"} 4.01"#,
        ),
    ] {
        assert!(s.contains(from), "{from}");
        s = s.replace(from, to);
    }
    s
}

/// What `/metrics` answers: 0 begin, 1 during, 2 end, 3 HTTP 404.
struct Fixture {
    phase: AtomicU32,
    reads: AtomicUsize,
}

async fn metrics(State(f): State<Arc<Fixture>>) -> (StatusCode, String) {
    f.reads.fetch_add(1, Ordering::SeqCst);
    match f.phase.load(Ordering::SeqCst) {
        0 => (StatusCode::OK, BEGIN.to_string()),
        1 => (StatusCode::OK, during()),
        2 => (StatusCode::OK, end()),
        _ => (StatusCode::NOT_FOUND, "404 page not found".into()),
    }
}

async fn fixture() -> (Arc<Fixture>, String) {
    let f = Arc::new(Fixture {
        phase: AtomicU32::new(0),
        reads: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (f, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_over_vllm_metrics_gives_exact_deltas_and_gauges_from_inside_it() {
    let (f, url) = fixture().await;
    let probe = MetricsProbe::new(&url).unwrap();
    let window = probe.open().await;
    f.phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    f.phase.store(2, Ordering::SeqCst);
    let m = window.close().await.expect("figures");
    assert!(probe.take_notes().is_empty());
    assert_eq!(m.source, Some(ServerSource::MetricsEndpoint));
    // Gauges from the reads while the load ran, not from the idle start.
    assert!(m.gauge_reads.unwrap() >= 2, "{m:?}");
    assert_eq!(
        (m.num_requests_running_min, m.num_requests_running_max),
        (Some(6.0), Some(6.0))
    );
    assert_eq!(m.num_requests_waiting_mean, Some(2.0));
    assert_eq!(m.kv_cache_usage_max, Some(0.4));
    assert_eq!(m.requests_succeeded, Some(40));
    assert_eq!(
        (m.prefix_cache_hits, m.prefix_cache_queries),
        (Some(6400.0), Some(10240.0))
    );
    assert_eq!(m.prefix_cache_hit_rate(), Some(0.625));
    let ttft = m.ttft.unwrap();
    assert_eq!(ttft.count, 40.0);
    assert!((ttft.mean_ms.unwrap() - 70.0).abs() < 1e-9, "{ttft:?}");
    // Rank 20 of 40 is the 10th of the 20 in (60, 80]; rank 38 is in (80, 100].
    let p50 = ttft.p50_bucket.unwrap();
    assert_eq!((p50.lower_ms, p50.upper_ms), (60.0, Some(80.0)));
    let p95 = ttft.p95_bucket.unwrap();
    assert_eq!((p95.lower_ms, p95.upper_ms), (80.0, Some(100.0)));
    // histogram_quantile's interpolation: 80 + 20 * (38 - 30) / 10 = 96.
    assert!((m.ttft_p95_ms.unwrap() - 96.0).abs() < 1e-9);
    let queue = m.queue_time.unwrap();
    assert!((queue.mean_ms.unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(queue.fraction_over(300.0), Some(0.25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_metrics_gets_one_note_and_is_not_read_again() {
    let (f, url) = fixture().await;
    f.phase.store(3, Ordering::SeqCst);
    let probe = MetricsProbe::new(&url).unwrap();
    assert!(probe.open().await.close().await.is_none());
    let notes = probe.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("HTTP 404") && notes[0].contains("--no-server-metrics"));
    let reads = f.reads.load(Ordering::SeqCst);
    assert!(probe.open().await.close().await.is_none());
    assert_eq!(f.reads.load(Ordering::SeqCst), reads, "not read again");
    assert!(probe.take_notes().is_empty(), "one note per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_an_exposition_is_no_figures() {
    let app = Router::new().route("/metrics", get(|| async { "<html><body>hi</body></html>" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let probe = MetricsProbe::new(&url).unwrap();
    assert!(probe.open().await.close().await.is_none());
    let notes = probe.take_notes();
    assert!(
        notes[0].contains("not Prometheus text (line 1"),
        "{notes:?}"
    );
}

fn bench(args: &[String]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inferops"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_without_prometheus_prints_and_saves_server_figures_per_step() {
    let opts = SimOptions::profile("qwen2.5-0.5b-l4").unwrap();
    let sim = spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let args: Vec<String> = [
        "--url",
        &sim.base_url(),
        "--concurrency",
        "2,8",
        "--requests",
        "24",
        "--input-tokens",
        "64",
        "--output-tokens",
        "32",
        "--json",
        json.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let a = args.clone();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || bench(&a))
        .await
        .unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Server figures from the target's own /metrics"),
        "{stdout}"
    );
    for col in [
        "running mean",
        "server TTFT mean",
        "server TTFT p95",
        "finished",
    ] {
        assert!(stdout.contains(col), "{col}: {stdout}");
    }
    assert!(
        !stdout.contains("GPU util"),
        "no GPU figures, no GPU columns: {stdout}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = results["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for s in steps {
        let server = &s["server"];
        assert_eq!(server["source"], "metrics_endpoint", "{server}");
        let completed = s["completed"].as_u64().unwrap();
        assert_eq!(completed, 24);
        // Exact for the window: every request of the step, and only those.
        assert_eq!(
            server["requests_succeeded"].as_u64(),
            Some(completed),
            "{server}"
        );
        assert_eq!(
            server["ttft"]["count"].as_f64(),
            Some(completed as f64),
            "{server}"
        );
        assert_eq!(
            server["generation_tokens"].as_u64(),
            Some(completed * 32),
            "{server}"
        );
        let c = s["max_concurrency"].as_f64().unwrap();
        let running = server["num_requests_running_max"].as_f64().unwrap();
        assert!(running >= 1.0 && running <= c + 1.0, "{server}");
        let p95 = &server["ttft"]["p95_bucket"];
        let (lo, up) = (
            p95["lower_ms"].as_f64().unwrap(),
            p95["upper_ms"].as_f64().unwrap(),
        );
        let interpolated = server["ttft_p95_ms"].as_f64().unwrap();
        assert!(lo <= interpolated && interpolated <= up, "{server}");
    }
    // With a warm-up the window opens at its end, while the load runs: still figures.
    let mut warm = args.clone();
    warm.extend(["--warmup".into(), "500ms".into()]);
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || bench(&warm))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for s in results["steps"].as_array().unwrap() {
        let server = &s["server"];
        assert!(server["ttft"]["count"].as_f64().unwrap() >= 1.0, "{server}");
        assert!(server["gauge_reads"].as_u64().unwrap() >= 1, "{server}");
    }
    // Off switch: no reads, no server figures.
    let mut off = args.clone();
    off.push("--no-server-metrics".into());
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || bench(&off))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("Server figures"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(results["steps"][0].get("server").is_none());
    // A target whose metrics path answers 404: one note, the run still succeeds.
    let mut missing = args;
    missing.extend([
        "--metrics-url".into(),
        format!("{}/no-metrics", sim.base_url()),
    ]);
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || bench(&missing))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("note: no server figures").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 404"), "{stderr}");
    assert!(!stdout.contains("Server figures"), "{stdout}");
    sim.shutdown().await;
}
