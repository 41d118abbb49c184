//! Server figures without Prometheus: the target's own `GET /metrics` (vLLM and the
//! simulator expose one), read when each step's measured window opens, every
//! [`GAUGE_INTERVAL`] while its load runs, and after its last request ended. Counters and
//! histograms are the exact increase over the window (no rate extrapolation, unlike a
//! PromQL `increase()`); gauges are min/max/mean over the reads in between
//! ([`crate::contract::server::from_scrapes`]).
//!
//! One URL is one exposition: several replicas behind one Service or load balancer answer
//! the reads in turn, and their counters cannot be told apart or subtracted. Read each
//! replica (or use `--prometheus`) for those.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::contract::WindowMetrics;
use crate::contract::exposition::Exposition;
use crate::contract::server::{GaugeRead, from_scrapes};
use crate::loadgen::probe::{OpenWindow, Probe, WindowProbe};

/// Time between gauge reads while a step's load runs.
pub const GAUGE_INTERVAL: Duration = Duration::from_millis(250);

/// Longest one read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest `/metrics` body read (vLLM's is a few hundred KiB with many LoRA adapters).
const MAX_BODY: usize = 16 << 20;

/// Why a read gave no exposition.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The server answered with an error status (404: it has no `/metrics`).
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The metrics URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// No answer.
    #[error("GET {url}: {message}")]
    Unreachable {
        /// The metrics URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// An answer that is not the text format (a page that is not an exposition).
    #[error("GET {url}: not Prometheus text ({message})")]
    NotText {
        /// The metrics URL.
        url: String,
        /// The first malformed line.
        message: String,
    },
    /// An exposition without any `vllm:` series (some other exporter).
    #[error("GET {url}: no vllm:* series")]
    NotVllm {
        /// The metrics URL.
        url: String,
    },
}

/// `GET /metrics` of the server behind an OpenAI base URL (`http://h:8000` or
/// `http://h:8000/v1`).
pub fn metrics_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/metrics")
}

struct Inner {
    http: reqwest::Client,
    url: String,
    /// Set after a read that shows the target has no usable `/metrics` (error status, not
    /// text, no vLLM series): later steps do not read again.
    disabled: AtomicBool,
    /// One-line notes for the user (taken by [`MetricsProbe::take_notes`]).
    notes: Mutex<Vec<String>>,
    noted: AtomicBool,
}

impl Inner {
    async fn read(&self) -> Result<Exposition, ReadError> {
        let unreachable = |e: reqwest::Error| ReadError::Unreachable {
            url: self.url.clone(),
            message: e.to_string(),
        };
        let resp = self.http.get(&self.url).send().await.map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ReadError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ReadError::NotText {
                    url: self.url.clone(),
                    message: format!("body over {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        let e = Exposition::parse(&text).map_err(|e| ReadError::NotText {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        if !e.samples.iter().any(|s| s.name.starts_with("vllm:")) {
            return Err(ReadError::NotVllm {
                url: self.url.clone(),
            });
        }
        Ok(e)
    }

    /// Notes `e` once; a target without usable metrics is not read again.
    fn failed(&self, e: &ReadError) {
        if !matches!(e, ReadError::Unreachable { .. }) {
            self.disabled.store(true, Ordering::Relaxed);
        }
        if !self.noted.swap(true, Ordering::Relaxed) {
            self.notes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!(
                    "note: no server figures from the target ({e}); --no-server-metrics skips reading it"
                ));
        }
    }
}

/// Reads a target's `/metrics` over each step's window: a [`WindowProbe`] for the engine.
#[derive(Clone)]
pub struct MetricsProbe {
    inner: Arc<Inner>,
}

impl MetricsProbe {
    /// A probe reading `url` (a full metrics URL, see [`metrics_url`]).
    pub fn new(url: &str) -> anyhow::Result<MetricsProbe> {
        let http = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .no_proxy()
            .build()?;
        Ok(MetricsProbe {
            inner: Arc::new(Inner {
                http,
                url: url.to_string(),
                disabled: AtomicBool::new(false),
                notes: Mutex::new(Vec::new()),
                noted: AtomicBool::new(false),
            }),
        })
    }

    /// The probe as the engine takes it.
    pub fn probe(&self) -> Probe {
        Probe(Arc::new(self.clone()))
    }

    /// Notes collected since the last call (at most one per run).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One read, for a first check of the target.
    pub async fn read(&self) -> Result<Exposition, ReadError> {
        self.inner.read().await
    }
}

impl WindowProbe for MetricsProbe {
    fn open(&self) -> BoxFuture<'static, Box<dyn OpenWindow>> {
        let inner = self.inner.clone();
        async move {
            if inner.disabled.load(Ordering::Relaxed) {
                return Box::new(Unobserved) as Box<dyn OpenWindow>;
            }
            let begin = match inner.read().await {
                Ok(e) => e,
                Err(e) => {
                    inner.failed(&e);
                    return Box::new(Unobserved) as Box<dyn OpenWindow>;
                }
            };
            let stop = CancellationToken::new();
            let sampler = tokio::spawn(sample_gauges(inner.clone(), stop.clone()));
            Box::new(Window {
                inner,
                begin,
                stop,
                sampler,
            }) as Box<dyn OpenWindow>
        }
        .boxed()
    }
}

/// Gauge reads every [`GAUGE_INTERVAL`] until `stop`.
async fn sample_gauges(inner: Arc<Inner>, stop: CancellationToken) -> Vec<GaugeRead> {
    let mut reads = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return reads,
            _ = tokio::time::sleep(GAUGE_INTERVAL) => {}
        }
        // A read still under way when the load ended would see the idle server: drop it.
        tokio::select! {
            _ = stop.cancelled() => return reads,
            r = inner.read() => if let Ok(e) = r {
                reads.push(GaugeRead::of(&e));
            },
        }
    }
}

/// A window whose start could not be read.
struct Unobserved;

impl OpenWindow for Unobserved {
    fn close(self: Box<Self>) -> BoxFuture<'static, Option<WindowMetrics>> {
        async { None }.boxed()
    }
}

struct Window {
    inner: Arc<Inner>,
    begin: Exposition,
    stop: CancellationToken,
    sampler: tokio::task::JoinHandle<Vec<GaugeRead>>,
}

impl OpenWindow for Window {
    fn close(self: Box<Self>) -> BoxFuture<'static, Option<WindowMetrics>> {
        async move {
            self.stop.cancel();
            let gauges = self.sampler.await.unwrap_or_default();
            match self.inner.read().await {
                Ok(end) => Some(from_scrapes(&self.begin, &end, &gauges)),
                Err(e) => {
                    self.inner.failed(&e);
                    None
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_url_drops_the_api_path() {
        assert_eq!(metrics_url("http://h:8000"), "http://h:8000/metrics");
        assert_eq!(metrics_url("http://h:8000/v1/"), "http://h:8000/metrics");
        assert_eq!(metrics_url("http://h/x/"), "http://h/x/metrics");
    }
}
