//! `inferops bench --prometheus`: the binary against a simulator with DCGM gauges that
//! Debian's real Prometheus scrapes; the results JSON carries each step's server figures,
//! histogram quantiles with the buckets that hold them.

use std::process::Command;

use crate::support::prometheus::Prometheus;
use inferops::sim::{SimOptions, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_joins_server_and_gpu_figures_per_step() {
    let mut opts = SimOptions::profile("qwen2.5-0.5b-l4").unwrap();
    opts.dcgm = true;
    let sim = spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let prom = Prometheus::start(&[sim.addr()]).await;
    prom.wait_for("vllm:num_requests_running").await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let (url, prom_url, json_arg) = (sim.base_url(), prom.url.clone(), json.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_inferops"))
            .args([
                "bench",
                "--url",
                &url,
                "--concurrency",
                "2,8",
                "--duration",
                "3s",
            ])
            .args(["--input-tokens", "64", "--output-tokens", "32"])
            .args(["--prometheus", &prom_url, "--json"])
            .arg(&json_arg)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("GPU util max %"), "second table: {stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = results["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for s in steps {
        let server = &s["server"];
        let c = s["max_concurrency"].as_f64().unwrap();
        let running = server["num_requests_running_max"].as_f64().unwrap();
        // A finished request leaves the engine's count a moment after the client sees its
        // last token and sends the next one: a scrape can catch c + 1.
        assert!(running >= 1.0 && running <= c + 1.0, "{server}");
        assert!(server["gpu_util_max"].as_f64().unwrap() > 0.0, "{server}");
        assert!(
            server["kv_cache_usage_max"].as_f64().unwrap() > 0.0,
            "{server}"
        );
        assert!(server["ttft_p95_ms"].as_f64().unwrap() > 0.0, "{server}");
        assert_eq!(server["source"], "prometheus", "{server}");
        // histogram_quantile's interpolation comes with the bucket that holds it.
        let p95 = &server["ttft"]["p95_bucket"];
        let lower = p95["lower_ms"].as_f64().unwrap();
        let interpolated = server["ttft_p95_ms"].as_f64().unwrap();
        assert!(lower <= interpolated + 1e-6, "{server}");
        if let Some(upper) = p95["upper_ms"].as_f64() {
            assert!(interpolated <= upper + 1e-6, "{server}");
        }
        assert!(
            server["ttft"]["mean_ms"].as_f64().unwrap() > 0.0,
            "{server}"
        );
    }
    assert!(
        stdout.contains("Server figures from Prometheus"),
        "{stdout}"
    );
    sim.shutdown().await;
}
