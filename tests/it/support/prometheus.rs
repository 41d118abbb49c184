//! Debian's real `prometheus` binary, started on a free loopback port with a scrape config
//! for the given targets (1 s interval, target labels kept). Stopped on drop.
//!
//! The test command (`scripts/test-all.sh`) installs it; when it is missing the tests fail
//! with instructions rather than skipping.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> String {
    std::env::var("INFEROPS_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string())
}

impl Prometheus {
    /// Start scraping `targets` every second.
    pub async fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sim\n    honor_labels: true\n    static_configs:\n      - targets: [{list}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}). The Prometheus integration tests need Debian's \
                     prometheus: run ./scripts/test-all.sh (installs it) or \
                     `apt-get install prometheus`, or set INFEROPS_PROMETHEUS to its path",
                    binary()
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let prom = Prometheus {
            child,
            url,
            _dir: dir,
        };
        prom.wait_ready().await;
        prom
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/-/ready", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("prometheus at {} did not become ready in 30 s", self.url);
    }

    /// Wait until the series named by `promql` has a sample.
    pub async fn wait_for(&self, promql: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let r = client
                .get(format!("{}/api/v1/query", self.url))
                .query(&[("query", promql)])
                .send()
                .await;
            if let Ok(r) = r
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["data"]["result"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("no samples for {promql} after 30 s");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
