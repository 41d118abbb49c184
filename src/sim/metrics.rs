//! Prometheus metrics with vLLM's names, types and buckets, plus simulated DCGM gauges.
//!
//! Exposed in the OpenMetrics text format. prometheus-client appends `_total` to counter
//! samples, so counters are registered without it: the family `vllm:prompt_tokens` is exposed
//! as the sample `vllm:prompt_tokens_total`, exactly vLLM's name.
//!
//! Every series carries `model_name`; with more than one replica also `replica="N"` and
//! `pod="sim-N"`. DCGM gauges carry `gpu`, `modelName="<GPU> (simulated)"` and
//! `simulated="true"` so nobody mistakes them for real hardware.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::profile::SimOptions;

/// A label set.
pub type Labels = Vec<(String, String)>;

/// Float gauge.
pub type FGauge = Gauge<f64, AtomicU64>;

type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// vLLM's buckets for `vllm:time_to_first_token_seconds`.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's buckets for `vllm:inter_token_latency_seconds`.
pub const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's buckets for request-level latencies (e2e, queue time).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

fn ttft_hist() -> Histogram {
    Histogram::new(TTFT_BUCKETS.iter().copied())
}
fn itl_hist() -> Histogram {
    Histogram::new(ITL_BUCKETS.iter().copied())
}
fn request_hist() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

/// Handles to every series of one replica (cheap clones of shared atomics).
#[derive(Clone)]
pub struct ReplicaMetrics {
    /// `vllm:num_requests_running`.
    pub running: Gauge,
    /// `vllm:num_requests_waiting`.
    pub waiting: Gauge,
    /// `vllm:kv_cache_usage_perc` (0..1).
    pub kv_usage: FGauge,
    /// `vllm:num_preemptions_total`.
    pub preemptions: Counter,
    /// `vllm:prefix_cache_queries_total`: prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries: Counter,
    /// `vllm:prefix_cache_hits_total`: prompt tokens found in the prefix cache.
    pub prefix_cache_hits: Counter,
    /// `vllm:time_to_first_token_seconds`.
    pub ttft: Histogram,
    /// `vllm:inter_token_latency_seconds`.
    pub itl: Histogram,
    /// `vllm:e2e_request_latency_seconds`.
    pub e2e: Histogram,
    /// `vllm:request_queue_time_seconds`.
    pub queue: Histogram,
    /// `vllm:prompt_tokens_total`.
    pub prompt_tokens: Counter,
    /// `vllm:generation_tokens_total`.
    pub generation_tokens: Counter,
    /// `vllm:request_success_total{finished_reason="length"}`.
    pub success_length: Counter,
    /// `vllm:request_success_total{finished_reason="stop"}`.
    pub success_stop: Counter,
    /// `DCGM_FI_DEV_GPU_UTIL` (only exposed with `--dcgm`).
    pub gpu_util: FGauge,
    /// `DCGM_FI_DEV_FB_USED` (MiB).
    pub fb_used: FGauge,
    /// `DCGM_FI_DEV_POWER_USAGE` (W).
    pub power: FGauge,
    /// `DCGM_FI_DEV_FB_FREE` (MiB).
    pub fb_free: FGauge,
    /// `DCGM_FI_DEV_GPU_TEMP` (°C).
    pub temp: FGauge,
    /// `vllm:lora_requests_info` (only with LoRA adapters).
    pub lora_info: Option<LoraInfo>,
}

/// `vllm:lora_requests_info` of one replica: one series whose labels name the adapters with
/// running and with waiting requests (comma-separated, as vLLM writes them) and `max_lora`;
/// its value is the Unix time of the last change. When the adapters change, the old series
/// is replaced.
#[derive(Clone)]
pub struct LoraInfo {
    family: Family<Labels, FGauge>,
    base: Labels,
    names: Arc<Vec<String>>,
    max_lora: usize,
    current: Arc<Mutex<Option<Labels>>>,
}

impl LoraInfo {
    /// Publishes the adapters (indices into `--lora`) with running and waiting requests.
    pub fn publish(&self, running: &[usize], waiting: &[usize]) {
        let list = |ids: &[usize]| {
            let mut v: Vec<usize> = ids.to_vec();
            v.sort_unstable();
            v.dedup();
            v.iter()
                .filter_map(|&i| self.names.get(i).map(String::as_str))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut labels = self.base.clone();
        labels.push(("max_lora".into(), self.max_lora.to_string()));
        labels.push(("running_lora_adapters".into(), list(running)));
        labels.push(("waiting_lora_adapters".into(), list(waiting)));
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref() == Some(&labels) {
            return;
        }
        if let Some(old) = current.take() {
            self.family.remove(&old);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.family.get_or_create(&labels).set(now);
        *current = Some(labels);
    }
}

/// The registry and every replica's handles.
pub struct Metrics {
    registry: Registry,
    /// Per replica, by index.
    pub replicas: Vec<ReplicaMetrics>,
}

impl Metrics {
    /// Register every family and create the series of every replica.
    pub fn new(o: &SimOptions) -> Metrics {
        let mut reg = Registry::default();
        let running = Family::<Labels, Gauge>::default();
        let waiting = Family::<Labels, Gauge>::default();
        let kv = Family::<Labels, FGauge>::default();
        let preempt = Family::<Labels, Counter>::default();
        let pc_queries = Family::<Labels, Counter>::default();
        let pc_hits = Family::<Labels, Counter>::default();
        let ttft = HistFamily::new_with_constructor(ttft_hist);
        let itl = HistFamily::new_with_constructor(itl_hist);
        let e2e = HistFamily::new_with_constructor(request_hist);
        let queue = HistFamily::new_with_constructor(request_hist);
        let prompt = Family::<Labels, Counter>::default();
        let gen_tokens = Family::<Labels, Counter>::default();
        let success = Family::<Labels, Counter>::default();
        reg.register(
            "vllm:num_requests_running",
            "Number of requests in model execution batches",
            running.clone(),
        );
        reg.register(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed",
            waiting.clone(),
        );
        reg.register(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage",
            kv.clone(),
        );
        reg.register(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine",
            preempt.clone(),
        );
        reg.register(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            pc_queries.clone(),
        );
        reg.register(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            pc_hits.clone(),
        );
        reg.register(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds",
            ttft.clone(),
        );
        reg.register(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds",
            itl.clone(),
        );
        reg.register(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds",
            e2e.clone(),
        );
        reg.register(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request",
            queue.clone(),
        );
        reg.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed",
            prompt.clone(),
        );
        reg.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed",
            gen_tokens.clone(),
        );
        reg.register(
            "vllm:request_success",
            "Count of successfully processed requests",
            success.clone(),
        );
        let cache_info = Family::<Labels, Gauge>::default();
        reg.register(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            cache_info.clone(),
        );
        let lora_info = Family::<Labels, FGauge>::default();
        if !o.lora.is_empty() {
            reg.register(
                "vllm:lora_requests_info",
                "Running stats on lora requests.",
                lora_info.clone(),
            );
        }
        let lora_names = Arc::new(o.lora.clone());
        let util = Family::<Labels, FGauge>::default();
        let fb = Family::<Labels, FGauge>::default();
        let power = Family::<Labels, FGauge>::default();
        let fb_free = Family::<Labels, FGauge>::default();
        let temp = Family::<Labels, FGauge>::default();
        if o.dcgm {
            reg.register(
                "DCGM_FI_DEV_FB_FREE",
                "Framebuffer memory free (in MiB). Simulated by inferops sim",
                fb_free.clone(),
            );
            reg.register(
                "DCGM_FI_DEV_GPU_TEMP",
                "GPU temperature (in C). Simulated by inferops sim",
                temp.clone(),
            );
            reg.register(
                "DCGM_FI_DEV_GPU_UTIL",
                "GPU utilization (in %). Simulated by inferops sim",
                util.clone(),
            );
            reg.register(
                "DCGM_FI_DEV_FB_USED",
                "Framebuffer memory used (in MiB). Simulated by inferops sim",
                fb.clone(),
            );
            reg.register(
                "DCGM_FI_DEV_POWER_USAGE",
                "Power draw (in W). Simulated by inferops sim",
                power.clone(),
            );
        }
        let replicas = (0..o.replicas)
            .map(|r| {
                let labels = replica_labels(o, r);
                let with = |k: &str, v: &str| {
                    let mut l = labels.clone();
                    l.push((k.to_string(), v.to_string()));
                    l
                };
                let gpu = gpu_labels(o, r);
                let m = ReplicaMetrics {
                    running: running.get_or_create_owned(&labels),
                    waiting: waiting.get_or_create_owned(&labels),
                    kv_usage: kv.get_or_create_owned(&labels),
                    preemptions: preempt.get_or_create_owned(&labels),
                    prefix_cache_queries: pc_queries.get_or_create_owned(&labels),
                    prefix_cache_hits: pc_hits.get_or_create_owned(&labels),
                    ttft: ttft.get_or_create_owned(&labels),
                    itl: itl.get_or_create_owned(&labels),
                    e2e: e2e.get_or_create_owned(&labels),
                    queue: queue.get_or_create_owned(&labels),
                    prompt_tokens: prompt.get_or_create_owned(&labels),
                    generation_tokens: gen_tokens.get_or_create_owned(&labels),
                    success_length: success.get_or_create_owned(&with("finished_reason", "length")),
                    success_stop: success.get_or_create_owned(&with("finished_reason", "stop")),
                    gpu_util: util.get_or_create_owned(&gpu),
                    fb_used: fb.get_or_create_owned(&gpu),
                    power: power.get_or_create_owned(&gpu),
                    fb_free: fb_free.get_or_create_owned(&gpu),
                    temp: temp.get_or_create_owned(&gpu),
                    lora_info: (!o.lora.is_empty()).then(|| LoraInfo {
                        family: lora_info.clone(),
                        // vLLM labels the gauge with the three fields only; replicas of the
                        // simulator add theirs so the series stay apart.
                        base: labels
                            .iter()
                            .filter(|(k, _)| k != "model_name")
                            .cloned()
                            .collect(),
                        names: lora_names.clone(),
                        max_lora: o.max_loras,
                        current: Arc::new(Mutex::new(None)),
                    }),
                };
                if let Some(info) = &m.lora_info {
                    info.publish(&[], &[]);
                }
                let mut info = labels.clone();
                info.push(("block_size".into(), o.block_size.to_string()));
                info.push(("num_gpu_blocks".into(), o.num_gpu_blocks.to_string()));
                info.push(("max_num_seqs".into(), o.max_num_seqs.to_string()));
                info.push(("simulated".into(), "true".into()));
                cache_info.get_or_create(&info).set(1);
                m.fb_used.set(o.gpu.fb_used_base_mib);
                m.power.set(o.gpu.power_idle_w);
                m.fb_free.set(o.gpu.fb_total_mib - o.gpu.fb_used_base_mib);
                m.temp.set(o.gpu.temp_idle_c);
                m
            })
            .collect();
        Metrics {
            registry: reg,
            replicas,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(16 * 1024);
        encode(&mut s, &self.registry).expect("encoding to a String cannot fail");
        s
    }
}

/// `model_name` plus, with several replicas, `replica` and `pod`.
pub fn replica_labels(o: &SimOptions, replica: usize) -> Labels {
    let mut l = vec![("model_name".to_string(), o.model.clone())];
    if o.replicas > 1 {
        l.push(("replica".into(), replica.to_string()));
        l.push(("pod".into(), format!("sim-{replica}")));
    }
    l
}

/// Labels of the DCGM-style gauges of one replica's GPU.
pub fn gpu_labels(o: &SimOptions, replica: usize) -> Labels {
    let mut l = vec![
        ("gpu".to_string(), replica.to_string()),
        ("UUID".into(), format!("GPU-sim-{replica:04}")),
        ("modelName".into(), format!("{} (simulated)", o.gpu.name)),
        ("Hostname".into(), "inferops-sim".into()),
        ("simulated".into(), "true".into()),
    ];
    if o.replicas > 1 {
        l.push(("replica".into(), replica.to_string()));
        l.push(("pod".into(), format!("sim-{replica}")));
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_uses_vllm_names() {
        let mut o = SimOptions::profile("zero").unwrap();
        o.dcgm = true;
        let m = Metrics::new(&o);
        m.replicas[0].prompt_tokens.inc_by(3);
        let text = m.encode();
        for name in [
            "# TYPE vllm:num_requests_running gauge",
            "# TYPE vllm:num_requests_waiting gauge",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            "# TYPE vllm:inter_token_latency_seconds histogram",
            "# TYPE vllm:e2e_request_latency_seconds histogram",
            "# TYPE vllm:request_queue_time_seconds histogram",
            "# TYPE vllm:prompt_tokens counter",
            "vllm:prefix_cache_queries_total{model_name=\"sim-zero\"} 0",
            "vllm:prefix_cache_hits_total{model_name=\"sim-zero\"} 0",
            "vllm:cache_config_info{model_name=\"sim-zero\",block_size=\"16\",num_gpu_blocks=\"68000\"",
            "vllm:prompt_tokens_total{model_name=\"sim-zero\"} 3",
            "vllm:generation_tokens_total{",
            "vllm:request_success_total{",
            "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"",
            "simulated=\"true\"",
            "modelName=\"NVIDIA L4 (simulated)\"",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(!text.contains("_total_total"));
        assert!(!text.contains("lora"), "no LoRA gauge without adapters");
    }

    #[test]
    fn lora_info_names_running_and_waiting_adapters() {
        let mut o = SimOptions::profile("zero").unwrap();
        o.lora = vec!["sql".into(), "chat".into(), "math".into()];
        o.max_loras = 2;
        let m = Metrics::new(&o);
        let text = m.encode();
        assert!(
            text.contains("# TYPE vllm:lora_requests_info gauge"),
            "{text}"
        );
        assert!(
            text.contains("vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"}"),
            "{text}"
        );
        let info = m.replicas[0].lora_info.as_ref().unwrap();
        info.publish(&[2, 0, 0], &[1]);
        let text = m.encode();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("vllm:lora_requests_info{"))
            .collect();
        assert_eq!(series.len(), 1, "the old series is replaced: {series:?}");
        assert!(
            series[0].contains("running_lora_adapters=\"sql,math\",waiting_lora_adapters=\"chat\""),
            "{}",
            series[0]
        );
        let value: f64 = series[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            value > 1.7e9,
            "the value is the Unix time of the change: {value}"
        );
    }
}
