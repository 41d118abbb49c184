//! The Prometheus collector against Debian's real Prometheus scraping a target whose
//! metrics the test controls: the window figures must be what the target exposed, scoped to
//! the target's pods, with older vLLM metric names as fallbacks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::prometheus::Prometheus;
use chrono::Utc;
use inferops::prom::{Collector, GpuLabelStyle, Scope};

#[derive(Clone, Copy)]
struct State {
    util: f64,
    hist: [u64; 4],
}

fn exposition(s: State) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, pod: &str, v: f64| {
        out.push_str(&format!(
            "{name}{{namespace=\"ml\",pod=\"{pod}\",model_name=\"qwen\",gpu=\"0\"}} {v}\n"
        ))
    };
    gauge(&mut out, "DCGM_FI_DEV_GPU_UTIL", "qwen-a", s.util);
    gauge(&mut out, "DCGM_FI_DEV_FB_USED", "qwen-a", 2000.0);
    gauge(&mut out, "DCGM_FI_DEV_POWER_USAGE", "qwen-a", 60.0);
    gauge(&mut out, "vllm:num_requests_running", "qwen-a", 2.0);
    gauge(&mut out, "vllm:num_requests_running", "qwen-b", 6.0);
    gauge(&mut out, "vllm:num_requests_waiting", "qwen-a", 0.0);
    gauge(&mut out, "vllm:num_requests_waiting", "qwen-b", 3.0);
    gauge(&mut out, "vllm:gpu_cache_usage_perc", "qwen-a", 0.42);
    // A decoy from another workload that must not leak into the figures.
    gauge(&mut out, "DCGM_FI_DEV_GPU_UTIL", "other-0", 100.0);
    gauge(&mut out, "vllm:num_requests_running", "other-0", 50.0);
    for (le, n) in ["0.05", "0.1", "0.25", "+Inf"].iter().zip(s.hist) {
        out.push_str(&format!(
            "vllm:time_to_first_token_seconds_bucket{{namespace=\"ml\",pod=\"qwen-a\",model_name=\"qwen\",le=\"{le}\"}} {n}\n"
        ));
    }
    out
}

async fn serve(state: Arc<Mutex<State>>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = *state.lock().unwrap();
            async move { exposition(s) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn window_figures_come_from_the_target_pods_only() {
    let state = Arc::new(Mutex::new(State {
        util: 10.0,
        hist: [0; 4],
    }));
    let addr = serve(state.clone()).await;
    let prom = Prometheus::start(&[addr]).await;
    prom.wait_for("DCGM_FI_DEV_GPU_UTIL").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let start = Utc::now();
    // Long enough that a scrape of the zero histogram falls inside the window's whole seconds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    *state.lock().unwrap() = State {
        util: 40.0,
        hist: [50, 90, 100, 100],
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    state.lock().unwrap().util = 90.0;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let end = Utc::now();
    // Let the last scrape land.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let scope = Scope {
        namespace: Some("ml".into()),
        pod_regex: Some("qwen-.*".into()),
        model_name: Some("qwen".into()),
        gpu_labels: GpuLabelStyle::DcgmExporter,
    };
    let m = Collector::new(&prom.url, scope)
        .unwrap()
        .collect(start, end)
        .await
        .unwrap();
    assert_eq!(m.gpu_util_max, Some(90.0), "{m:?}");
    let mean = m.gpu_util_mean.unwrap();
    assert!(
        mean > 20.0 && mean < 90.0,
        "mean util {mean} should mix 10/40/90"
    );
    assert_eq!(m.gpu_fb_used_max_bytes, Some(2000.0 * 1024.0 * 1024.0));
    assert_eq!(m.gpu_power_mean_watts, Some(60.0));
    assert_eq!(
        m.kv_cache_usage_max,
        Some(0.42),
        "falls back to the older name"
    );
    assert_eq!(
        m.num_requests_running_max,
        Some(8.0),
        "sum over replicas, decoy excluded"
    );
    assert_eq!(m.num_requests_waiting_max, Some(3.0));
    assert_eq!(m.per_replica_running_min, Some(2.0));
    assert_eq!(m.per_replica_running_max, Some(6.0));
    let p95 = m.ttft_p95_ms.unwrap();
    assert!(
        (p95 - 175.0).abs() < 1.0,
        "p95 interpolated in (100, 250] ms: {p95}"
    );
    assert_eq!(m.itl_p95_ms, None, "no ITL series exposed");
    assert_eq!(m.queue_time_p95_ms, None);
}

#[tokio::test]
async fn unreachable_prometheus_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let now = Utc::now();
    let err = Collector::new(&url, Scope::default())
        .unwrap()
        .collect(now - chrono::Duration::seconds(10), now)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("failed"), "{text}");
    let bad = Collector::new("not a url", Scope::default());
    assert!(bad.is_err());
}
