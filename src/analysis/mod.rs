//! Conclusions from a sweep: peak throughput, the saturation point, what limited the target,
//! scaling efficiency and findings in plain sentences. Pure functions over status rows, so
//! the operator (BenchmarkRun status) and `inferops bench` (local table) agree.

pub mod rows;

use std::collections::BTreeMap;

use crate::api::{
    BaselineSpec, Bottleneck, Comparison, LatencyMs, LoadPoint, Recommendation, RunSummary,
    Saturation, SaturationLimit, SaturationProbe, StepStatus,
};
use crate::contract::Measured;
pub use crate::contract::Slo;

/// GPU pricing for cost figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Price of one GPU-hour.
    pub gpu_hourly_price: f64,
    /// GPUs per replica.
    pub gpus_per_replica: u32,
}

impl Cost {
    /// Cost of a million output tokens at `output_tps` on `replicas` replicas.
    pub fn per_million_tokens(&self, output_tps: f64, replicas: i32) -> Option<f64> {
        if output_tps <= 0.0 {
            return None;
        }
        let gpus = f64::from(self.gpus_per_replica) * f64::from(replicas.max(1));
        let per_hour = self.gpu_hourly_price * gpus;
        Some(round2(per_hour / (output_tps * 3600.0) * 1e6))
    }
}

/// Set each step's cost per million output tokens.
pub fn price_steps(steps: &mut [StepStatus], cost: &Cost) {
    for s in steps {
        s.cost_per_million_output_tokens =
            cost.per_million_tokens(s.output_tokens_per_second, s.replicas.unwrap_or(1));
    }
}

/// Replicas and queue-depth target from the saturation point. `None` without one.
pub fn recommend(
    steps: &[StepStatus],
    saturation: &Saturation,
    target_request_rate: Option<f64>,
) -> Option<Recommendation> {
    let at = saturation.at.as_ref()?;
    let knee = steps.iter().find(|s| &s.load == at)?;
    let replicas = f64::from(knee.replicas.unwrap_or(1).max(1));
    let per_replica = knee.requests_per_second / replicas;
    if per_replica <= 0.0 {
        return None;
    }
    // Waiting requests per replica just past the knee is where queueing starts to hurt;
    // scale out before it. Never below 1 (a target of 0 would scale on any queue at all).
    let waiting = saturation
        .first_broken
        .as_ref()
        .and_then(|b| steps.iter().find(|s| &s.load == b))
        .or(Some(knee))
        .and_then(|s| s.server.as_ref()?.waiting_max)
        .unwrap_or(0.0);
    let queue_depth_target = ((waiting / replicas) / 2.0).round().max(1.0);
    Some(Recommendation {
        requests_per_second_per_replica: round2(per_replica),
        queue_depth_target,
        target_request_rate,
        replicas_for_target_rate: target_request_rate
            .map(|r| (r / per_replica).ceil().max(1.0) as i32),
    })
}

/// Confidence of the baseline comparison's noise test.
pub const COMPARISON_CONFIDENCE: f64 = 0.95;

/// One-sided exact Mann-Whitney U test: the probability, under "both samples come from the
/// same distribution", of a rank sum of `a` at least as large as observed, i.e. the p-value
/// of "`a` tends to be larger than `b`". Ties get mid-ranks. Exact (all splits of the pooled
/// values) up to 200,000 splits, else the normal approximation. `None` for an empty sample.
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> Option<f64> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Mid-ranks (1-based).
    let n = pooled.len();
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].iter_mut().for_each(|x| *x = r);
        i = j + 1;
    }
    let observed: f64 = (0..n).filter(|&k| pooled[k].1).map(|k| ranks[k]).sum();
    let splits = (0..n1).fold(1f64, |acc, k| acc * (n - k) as f64 / (k + 1) as f64);
    if splits <= 200_000.0 {
        // Every way to pick n1 of the n ranks as the first sample.
        let (mut at_least, mut total) = (0u64, 0u64);
        let mut pick: Vec<usize> = (0..n1).collect();
        loop {
            total += 1;
            let sum: f64 = pick.iter().map(|&k| ranks[k]).sum();
            if sum >= observed - 1e-9 {
                at_least += 1;
            }
            // Next combination.
            let Some(pos) = (0..n1).rev().find(|&p| pick[p] < n - n1 + p) else {
                break;
            };
            pick[pos] += 1;
            for q in pos + 1..n1 {
                pick[q] = pick[q - 1] + 1;
            }
        }
        return Some(at_least as f64 / total as f64);
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let mean = f1 * (f1 + f2 + 1.0) / 2.0;
    let sd = (f1 * f2 * (f1 + f2 + 1.0) / 12.0).sqrt();
    let z = (observed - 0.5 - mean) / sd;
    Some(0.5 * erfc(z / std::f64::consts::SQRT_2))
}

/// The complementary error function (Numerical Recipes' erfcc, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Compare a run's summary with its baseline's. A change beyond a threshold regresses; when
/// both runs have trials at their peak step it must also be larger than the trial-to-trial
/// noise: a one-sided Mann-Whitney U test on the per-trial figures at
/// [`COMPARISON_CONFIDENCE`]. Without trials the message says the comparison is
/// single-sample.
pub fn compare(this: &RunSummary, base: &RunSummary, spec: &BaselineSpec) -> Comparison {
    let change = |new: f64, old: f64| (old > 0.0).then(|| round4((new - old) / old));
    let throughput = change(
        this.peak_output_tokens_per_second,
        base.peak_output_tokens_per_second,
    );
    let ttft = match (this.ttft_p95_ms, base.ttft_p95_ms) {
        (Some(a), Some(b)) => change(a, b),
        _ => None,
    };
    let trials = match (&this.peak_trials, &base.peak_trials) {
        (Some(a), Some(b)) if a.count > 1 && b.count > 1 => Some((a, b)),
        _ => None,
    };
    let alpha = 1.0 - COMPARISON_CONFIDENCE;
    let conf = COMPARISON_CONFIDENCE * 100.0;
    // Whether the trials show the change beyond the noise, and how to say so.
    let noise = |worse: &[f64], better: &[f64]| -> (bool, String) {
        match mann_whitney_greater(worse, better) {
            Some(p) if p <= alpha + 1e-9 => (
                true,
                format!(
                    "beyond the noise of {} vs {} trials (one-sided Mann-Whitney U p = {p:.3} <= {alpha:.2}, {conf:.0}% confidence)",
                    worse.len(),
                    better.len()
                ),
            ),
            Some(p) => (
                false,
                format!(
                    "within the noise of {} vs {} trials (one-sided Mann-Whitney U p = {p:.3} > {alpha:.2}, {conf:.0}% confidence)",
                    worse.len(),
                    better.len()
                ),
            ),
            None => (true, "no trial figures to test".into()),
        }
    };
    let mut problems = Vec::new();
    let mut dismissed = Vec::new();
    if let Some(t) = throughput
        && -t > spec.max_throughput_drop
    {
        let what = format!(
            "peak output throughput fell {:.1}% ({:.0} -> {:.0} tok/s; allowed {:.0}%)",
            -t * 100.0,
            base.peak_output_tokens_per_second,
            this.peak_output_tokens_per_second,
            spec.max_throughput_drop * 100.0
        );
        match trials {
            Some((a, b)) => {
                // Worse means lower: test the baseline's trials being larger.
                let (real, why) = noise(&b.output_tokens_per_second, &a.output_tokens_per_second);
                if real {
                    problems.push(format!("{what}, {why}"))
                } else {
                    dismissed.push(format!("{what}, {why}"))
                }
            }
            None => problems.push(what),
        }
    }
    if let Some(t) = ttft
        && t > spec.max_ttft_p95_increase
    {
        let what = format!(
            "TTFT p95 at peak rose {:.1}% ({:.1} -> {:.1} ms; allowed {:.0}%)",
            t * 100.0,
            base.ttft_p95_ms.unwrap_or_default(),
            this.ttft_p95_ms.unwrap_or_default(),
            spec.max_ttft_p95_increase * 100.0
        );
        match trials {
            Some((a, b)) => {
                let (real, why) = noise(&a.ttft_p95_ms, &b.ttft_p95_ms);
                if real {
                    problems.push(format!("{what}, {why}"))
                } else {
                    dismissed.push(format!("{what}, {why}"))
                }
            }
            None => problems.push(what),
        }
    }
    let mut message = if !problems.is_empty() {
        format!("against {}: {}", spec.name, problems.join("; "))
    } else if !dismissed.is_empty() {
        format!(
            "no regression against {}: {}",
            spec.name,
            dismissed.join("; ")
        )
    } else {
        format!("within the thresholds of baseline {}", spec.name)
    };
    if trials.is_none() {
        message.push_str(
            " (single-sample comparison: without load.trials on both runs the run-to-run noise is unknown)",
        );
    }
    Comparison {
        baseline: spec.name.clone(),
        peak_throughput_change: throughput,
        ttft_p95_change: ttft,
        regressed: !problems.is_empty(),
        message: Some(message),
        confidence: trials.map(|_| COMPARISON_CONFIDENCE),
    }
}

fn round4(v: f64) -> f64 {
    (v * 10000.0).round() / 10000.0
}

/// failed / (succeeded + failed); 0 for an empty step.
pub fn error_rate(step: &StepStatus) -> f64 {
    let total = step.succeeded + step.failed;
    if total == 0 {
        0.0
    } else {
        step.failed as f64 / total as f64
    }
}

/// A load point for sentences: `concurrency 8` or `5 req/s`.
pub fn describe(point: &LoadPoint) -> String {
    match *point {
        LoadPoint::Concurrency(c) => format!("concurrency {c}"),
        LoadPoint::Rate(r) => format!("{} req/s", trim(r)),
    }
}

fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// What a summary needs besides the steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// The objective defining saturation (none: the throughput knee).
    pub slo: Slo,
    /// The request rate to plan replicas for.
    pub target_request_rate: Option<f64>,
    /// The steps are the probes of a saturation search (the summary lists them).
    pub search: bool,
}

/// Everything the summary says about a run's steps (price them first with
/// [`price_steps`] to get cost figures).
pub fn summarize(steps: &[StepStatus], options: &Options) -> RunSummary {
    let slo = &options.slo;
    let Some(peak) = steps.iter().max_by(|a, b| {
        a.output_tokens_per_second
            .total_cmp(&b.output_tokens_per_second)
    }) else {
        return RunSummary::default();
    };
    let groups = by_replicas(steps);
    // Saturation and bottleneck are judged on the first replica group (the plain sweep), in
    // load order (a saturation search runs its probes out of order).
    let in_run_order = groups.values().next().cloned().unwrap_or_default();
    let first = by_load(&in_run_order);
    let mut saturation = saturation(&first, slo);
    if options.search
        && let Some(sat) = saturation.as_mut()
    {
        sat.probes = probes(&in_run_order, slo);
    }
    let bottleneck = bottleneck(&first);
    let mut findings = Vec::new();
    findings.extend(throughput_finding(&first));
    findings.extend(e2e_finding(peak));
    findings.extend(ttft_tail_finding(&first));
    findings.extend(behind_finding(&first));
    findings.extend(syn_retransmit_finding(steps));
    findings.extend(kv_finding(&first));
    findings.extend(prefix_cache_finding(steps));
    findings.extend(error_finding(steps));
    findings.extend(balance_finding(steps));
    if let Some(sentence) = bottleneck_sentence(bottleneck, &first) {
        findings.push(sentence);
    }
    let knee = saturation
        .as_ref()
        .and_then(|sat| sat.at.as_ref())
        .and_then(|at| first.iter().find(|s| &s.load == at));
    let recommendation = saturation
        .as_ref()
        .and_then(|sat| recommend(steps, sat, options.target_request_rate));
    RunSummary {
        cost_per_million_output_tokens_at_saturation: knee
            .and_then(|k| k.cost_per_million_output_tokens),
        recommendation,
        peak_output_tokens_per_second: round2(peak.output_tokens_per_second),
        peak_trials: peak.trials.clone(),
        ttft_p95_ms: peak.ttft_ms.as_ref().map(|l| round2(l.p95)),
        saturation,
        bottleneck: Some(bottleneck),
        scaling_efficiency: scaling_efficiency(&groups),
        findings,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Steps grouped by replica count (steps without one are group 0), in load order.
fn by_replicas(steps: &[StepStatus]) -> BTreeMap<i32, Vec<&StepStatus>> {
    let mut groups: BTreeMap<i32, Vec<&StepStatus>> = BTreeMap::new();
    for s in steps {
        groups.entry(s.replicas.unwrap_or(0)).or_default().push(s);
    }
    groups
}

/// Steps in load order (lowest first; equal loads keep their run order).
fn by_load<'a>(steps: &[&'a StepStatus]) -> Vec<&'a StepStatus> {
    let mut sorted = steps.to_vec();
    sorted.sort_by(|a, b| a.load.value().total_cmp(&b.load.value()));
    sorted
}

/// `(broken - held) / held` of two load points.
fn bracket_width(at: Option<LoadPoint>, broken: Option<LoadPoint>) -> Option<f64> {
    let (a, b) = (at?.value(), broken?.value());
    (a > 0.0).then(|| round4((b - a) / a))
}

/// With an SLO: the highest load that held it below the lowest load that broke it, in load
/// order (a saturation search probes out of order). Without one: the knee, where another
/// load step adds less than 10% throughput or an open-loop step falls behind its arrivals
/// (such a step is saturated whatever the totals say).
pub fn saturation(steps: &[&StepStatus], slo: &Slo) -> Option<Saturation> {
    if steps.is_empty() {
        return None;
    }
    let steps = by_load(steps);
    let found =
        |held: Option<&StepStatus>, broken: Option<&StepStatus>, term: Option<SaturationLimit>| {
            let (at, first_broken) = (held.map(|h| h.load), broken.map(|b| b.load));
            Saturation {
                requests_per_second: held.map(|h| round2(h.requests_per_second)),
                at,
                first_broken,
                limited_by: term,
                bracket_width: bracket_width(at, first_broken),
                probes: Vec::new(),
            }
        };
    if slo.is_set() {
        let mut held: Option<&StepStatus> = None;
        for s in &steps {
            match slo.broken_by(&Measured::of_status(s)) {
                None => held = Some(s),
                Some(term) => return Some(found(held, Some(s), Some(term.into()))),
            }
        }
        return held.map(|h| found(Some(h), None, None));
    }
    for (i, next) in steps.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| steps[p]);
        if next.falling_behind {
            return Some(found(
                prev,
                Some(next),
                Some(SaturationLimit::FallingBehind),
            ));
        }
        if let Some(prev) = prev {
            let gain = next.output_tokens_per_second / prev.output_tokens_per_second.max(1e-9);
            if gain < 1.10 {
                return Some(found(
                    Some(prev),
                    Some(next),
                    Some(SaturationLimit::ThroughputPlateau),
                ));
            }
        }
    }
    None
}

/// The probes of a saturation search, in run order, judged by the one SLO check.
pub fn probes(steps: &[&StepStatus], slo: &Slo) -> Vec<SaturationProbe> {
    steps
        .iter()
        .map(|s| {
            let broken: Vec<String> = slo
                .violations(&Measured::of_status(s))
                .iter()
                .map(ToString::to_string)
                .collect();
            SaturationProbe {
                load: s.load,
                held: broken.is_empty(),
                broken_by: broken,
                achieved_requests_per_second: s
                    .achieved_requests_per_second
                    .unwrap_or(s.requests_per_second),
            }
        })
        .collect()
}

/// Client CPU utilisation (fraction of its cores) past which the load generator, not the
/// server, is taken to limit a step.
pub const CLIENT_BUSY: f64 = 0.9;

/// Fraction of late open-loop sends past which the client is taken to limit a step.
pub const CLIENT_LATE: f64 = 0.05;

/// The load generator, not the server, limited this step.
fn client_bound(s: &&StepStatus) -> bool {
    s.client_cpu_util.is_some_and(|u| u >= CLIENT_BUSY)
        || s.client_late_send_fraction.is_some_and(|f| f > CLIENT_LATE)
}

/// What limited the target over the sweep.
pub fn bottleneck(steps: &[&StepStatus]) -> Bottleneck {
    let Some(last) = steps.last() else {
        return Bottleneck::None;
    };
    let server = last.server.clone().unwrap_or_default();
    let gpu = last.gpu.clone().unwrap_or_default();
    let total = (last.succeeded + last.failed).max(1) as f64;
    let timeouts = last.errors.timeout as f64 / total;
    let gpu_idle = gpu.util_mean.is_some_and(|u| u < 50.0);
    // A saturated client measures itself: say so before judging the server.
    if steps.iter().any(client_bound) {
        return Bottleneck::Client;
    }
    if timeouts > 0.1 && (gpu_idle || gpu.util_mean.is_none()) {
        return Bottleneck::Api;
    }
    if server.kv_cache_usage_max.is_some_and(|kv| kv >= 0.9) {
        return Bottleneck::KvCache;
    }
    if server.waiting_max.is_some_and(|w| w >= 1.0) {
        return Bottleneck::Queueing;
    }
    let itl_growth = match (
        steps.first().and_then(|s| s.itl_ms.as_ref()),
        last.itl_ms.as_ref(),
    ) {
        (Some(a), Some(b)) if a.p50 > 0.0 => b.p50 / a.p50,
        _ => 1.0,
    };
    let knee = saturation(steps, &Slo::default()).is_some();
    if gpu.util_max.is_some_and(|u| u >= 90.0) && (knee || itl_growth >= 1.3) {
        return Bottleneck::Compute;
    }
    if knee && itl_growth >= 1.3 {
        return Bottleneck::Compute;
    }
    if steps.iter().any(|s| s.falling_behind) {
        return Bottleneck::Queueing;
    }
    Bottleneck::None
}

fn bottleneck_sentence(b: Bottleneck, steps: &[&StepStatus]) -> Option<String> {
    let last = steps.last()?;
    let at = describe(&last.load);
    Some(match b {
        Bottleneck::Api => format!(
            "API-bound: at {at} {} requests timed out while the GPU was mostly idle; the layer in front of the engine (proxy, API server, client timeouts) limits throughput, not the GPU.",
            last.errors.timeout
        ),
        Bottleneck::KvCache => format!(
            "KV-cache-bound: the KV cache reached {:.0}% at {at}; requests wait for cache blocks. More GPU memory for the cache (gpuMemoryUtilization, a shorter maxModelLen) or another replica raises capacity.",
            last.server.as_ref()?.kv_cache_usage_max? * 100.0
        ),
        Bottleneck::Queueing => match last.server.as_ref().and_then(|s| s.waiting_max) {
            Some(w) if w >= 1.0 => format!(
                "Queueing: up to {w:.0} requests waited at {at} while the KV cache had room; the batch limit (maxNumSeqs) or the scheduler caps concurrency."
            ),
            _ => {
                let step = *steps.iter().find(|s| s.falling_behind)?;
                format!(
                    "Queueing: from {} on, requests arrived faster than the target finished them and latency grew through the step; it sustains at most about {:.1} req/s.",
                    describe(&step.load),
                    step.achieved_requests_per_second
                        .unwrap_or(step.requests_per_second)
                )
            }
        },
        Bottleneck::Compute => "Compute-bound: throughput flattens while inter-token latency grows with the batch; the GPU is the limit. Add replicas or a faster accelerator.".to_string(),
        Bottleneck::Client => {
            let step = *steps.iter().find(|s| client_bound(s))?;
            let why = match (step.client_cpu_util, step.client_late_send_fraction) {
                (Some(u), _) if u >= CLIENT_BUSY => format!("used {:.0}% of its CPU", u * 100.0),
                (_, Some(f)) => format!("sent {:.0}% of requests late", f * 100.0),
                _ => "fell behind".to_string(),
            };
            format!(
                "Client-bound: the load generator {why} at {}; its latencies include its own queueing. Add loadgen.parallelism or CPU and run again.",
                describe(&step.load)
            )
        }
        Bottleneck::None => format!(
            "No saturation up to {at}: throughput still grows with load; extend the sweep to find the limit."
        ),
    })
}

fn throughput_finding(steps: &[&StepStatus]) -> Option<String> {
    let (first, last) = (steps.first()?, steps.last()?);
    if steps.len() < 2 || first.output_tokens_per_second <= 0.0 {
        return None;
    }
    let (i0, i1) = (first.itl_ms.as_ref()?, last.itl_ms.as_ref()?);
    Some(format!(
        "Output throughput went from {:.0} tok/s at {} to {:.0} tok/s at {} ({:.1}x) while ITL p50 went from {:.1} to {:.1} ms.",
        first.output_tokens_per_second,
        describe(&first.load),
        last.output_tokens_per_second,
        describe(&last.load),
        last.output_tokens_per_second / first.output_tokens_per_second,
        i0.p50,
        i1.p50
    ))
}

/// "E2E is decode-dominated: E2E ~ TTFT + 127 x ITL".
fn e2e_finding(step: &StepStatus) -> Option<String> {
    let (ttft, itl, e2e) = (
        step.ttft_ms.as_ref()?,
        step.itl_ms.as_ref()?,
        step.e2e_ms.as_ref()?,
    );
    if step.requests_per_second <= 0.0 || e2e.p50 <= 0.0 {
        return None;
    }
    let tokens = (step.output_tokens_per_second / step.requests_per_second).round();
    if tokens < 2.0 {
        return None;
    }
    let gaps = tokens - 1.0;
    let modelled = ttft.p50 + gaps * itl.p50;
    let decode_share = gaps * itl.p50 / e2e.p50;
    let kind = if decode_share >= 0.5 {
        "decode-dominated"
    } else {
        "prefill-dominated"
    };
    Some(format!(
        "E2E is {kind}: E2E ~ TTFT + {gaps:.0} x ITL = {:.0} + {gaps:.0} x {:.1} = {modelled:.0} ms against {:.0} ms measured (p50, at {}).",
        ttft.p50,
        itl.p50,
        e2e.p50,
        describe(&step.load)
    ))
}

fn ttft_tail_finding(steps: &[&StepStatus]) -> Option<String> {
    let first = steps.first()?;
    let LatencyMs { p50, p95, .. } = first.ttft_ms.clone()?;
    (p50 > 0.0 && p95 > 3.0 * p50).then(|| {
        format!(
            "TTFT p95 at {} is {:.1}x the median ({p95:.0} vs {p50:.0} ms) with no contention: first requests pay warm-up costs (CUDA graphs, connections); use a warmup.",
            describe(&first.load),
            p95 / p50
        )
    })
}

/// "At 80 req/s offered only 50.2 req/s finished ...".
fn behind_finding(steps: &[&StepStatus]) -> Option<String> {
    let step = by_load(steps).into_iter().find(|s| s.falling_behind)?;
    Some(format!(
        "At {} offered, {:.1} req/s arrived and only {:.1} req/s finished while TTFT grew through the step: the target fell behind its arrivals, so this step is past saturation whatever its totals say.",
        describe(&step.load),
        step.arrival_requests_per_second.unwrap_or(0.0),
        step.achieved_requests_per_second
            .unwrap_or(step.requests_per_second),
    ))
}

/// The kernel retransmits a dropped SYN after 1 s, then after 2 s more: connections whose
/// SYN met a full accept queue start 1 s (or 3 s) late.
fn retransmit_mode(p50: f64, tail: f64) -> Option<u32> {
    let gap = tail - p50;
    if p50 >= 500.0 {
        return None;
    }
    if (900.0..=1300.0).contains(&gap) {
        Some(1)
    } else if (2900.0..=3400.0).contains(&gap) {
        Some(3)
    } else {
        None
    }
}

/// A TTFT tail that sits 1 s or 3 s above a short median: SYNs dropped and retransmitted.
fn syn_retransmit_finding(steps: &[StepStatus]) -> Option<String> {
    steps.iter().find_map(|s| {
        let t = s.ttft_ms.as_ref()?;
        let (name, tail, mode) = [("p99", t.p99), ("p95", t.p95), ("p90", t.p90)]
            .into_iter()
            .find_map(|(name, v)| Some((name, v, retransmit_mode(t.p50, v)?)))?;
        Some(format!(
            "TTFT {name} at {} is {tail:.0} ms against a median of {:.0} ms: about {mode} s above it, the signature of SYNs dropped by a full listen queue and retransmitted by the kernel after {mode} s. Connections were opened inside the measured window faster than the server accepts them: keep pre-connect on (the default), raise the server's listen backlog (and net.core.somaxconn), or ramp the load up.",
            describe(&s.load),
            t.p50
        ))
    })
}

fn kv_finding(steps: &[&StepStatus]) -> Option<String> {
    let peak = steps
        .iter()
        .filter_map(|s| s.server.as_ref()?.kv_cache_usage_max)
        .reduce(f64::max)?;
    (peak < 0.2).then(|| {
        format!(
            "KV cache usage peaked at {:.1}%: memory is not the constraint at these loads; there is room for longer contexts or more concurrent sequences.",
            peak * 100.0
        )
    })
}

/// Achieved and intended prefix-cache hit rates further apart than this are a finding.
pub const PREFIX_HIT_TOLERANCE: f64 = 0.10;

/// The prefix cache served a different share of prompt tokens than the workload shares:
/// the step furthest off, with its likely causes.
fn prefix_cache_finding(steps: &[StepStatus]) -> Option<String> {
    let (step, achieved, intended) = steps
        .iter()
        .filter_map(|s| {
            let achieved = s.server.as_ref()?.prefix_cache_hit_rate?;
            let intended = s.workload.as_ref()?.shared_prefix_fraction?;
            Some((s, achieved, intended))
        })
        .filter(|(_, a, i)| (a - i).abs() > PREFIX_HIT_TOLERANCE)
        .max_by(|a, b| (a.1 - a.2).abs().total_cmp(&(b.1 - b.2).abs()))?;
    let head = format!(
        "At {} the prefix cache served {:.0}% of prompt tokens where the workload shares {:.0}%",
        describe(&step.load),
        achieved * 100.0,
        intended * 100.0
    );
    if achieved > intended {
        return Some(format!(
            "{head}: more than intended, so whole prompts repeat (a step sends more requests than there are distinct prompts, which are reused round-robin) or the suffixes share common words; TTFT looks better than the workload alone would give."
        ));
    }
    let server = step.server.as_ref()?;
    let mut causes = Vec::new();
    match server.kv_cache_usage_max {
        Some(kv) if kv >= 0.9 => causes.push(format!(
            "the KV cache filled up ({:.0}%) and evicted the shared prefixes before they were reused: the cache is too small for the prefixes in flight (more GPU memory for the cache, fewer groups, or more replicas)",
            kv * 100.0
        )),
        _ => causes.push(
            "the cache is too small to keep every group's prefix (evicted before reuse), or prefix caching is off (vLLM --enable-prefix-caching)".to_string(),
        ),
    }
    causes.push(match step.replicas.filter(|&r| r > 1) {
        Some(r) => format!(
            "the router spreads each group's requests over the {r} replicas, each caching its own copy of the prefix: route by prefix or with session affinity"
        ),
        None => "a router spreads each group's requests over several replicas, each caching its own copy of the prefix: route by prefix or with session affinity".to_string(),
    });
    Some(format!("{head}: {}.", causes.join("; or ")))
}

fn error_finding(steps: &[StepStatus]) -> Option<String> {
    let failed: u64 = steps.iter().map(|s| s.failed).sum();
    if failed == 0 {
        return None;
    }
    let total: u64 = steps.iter().map(|s| s.succeeded + s.failed).sum();
    Some(format!(
        "{failed} of {total} requests failed ({}).",
        error_classes(steps)
    ))
}

/// "12 timeout, 3 http5xx" over all steps.
pub fn error_classes(steps: &[StepStatus]) -> String {
    let mut counts = [
        ("timeout", 0u64),
        ("connect", 0),
        ("http4xx", 0),
        ("http5xx", 0),
        ("stream", 0),
        ("body", 0),
    ];
    for s in steps {
        let e = &s.errors;
        for (i, n) in [e.timeout, e.connect, e.http4xx, e.http5xx, e.stream, e.body]
            .into_iter()
            .enumerate()
        {
            counts[i].1 += n;
        }
    }
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn balance_finding(steps: &[StepStatus]) -> Option<String> {
    let worst = steps
        .iter()
        .filter_map(|s| {
            let mm = s.server.as_ref()?.per_replica_running.as_ref()?;
            (mm.max > 0.0).then(|| (s, mm.min / mm.max))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let (step, ratio) = worst;
    let mm = step.server.as_ref()?.per_replica_running.as_ref()?;
    (ratio < 0.7).then(|| {
        format!(
            "Load is unbalanced across replicas at {}: the least loaded replica ran {:.1} requests on average against {:.1} on the busiest; check the Service's load balancing (least-request routing helps).",
            describe(&step.load),
            mm.min,
            mm.max
        )
    })
}

/// Peak throughput at N replicas / (N x peak throughput at the smallest count, scaled to 1).
fn scaling_efficiency(groups: &BTreeMap<i32, Vec<&StepStatus>>) -> BTreeMap<String, f64> {
    let peak = |steps: &Vec<&StepStatus>| {
        steps
            .iter()
            .map(|s| s.output_tokens_per_second)
            .fold(0.0, f64::max)
    };
    let mut out = BTreeMap::new();
    let mut base: Option<(i32, f64)> = None;
    for (&replicas, steps) in groups {
        if replicas <= 0 {
            continue;
        }
        let p = peak(steps);
        let (n0, p0) = *base.get_or_insert((replicas, p));
        if p0 > 0.0 {
            let eff = (p / replicas as f64) / (p0 / n0 as f64);
            out.insert(replicas.to_string(), round2(eff));
        }
    }
    if out.len() < 2 { BTreeMap::new() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ErrorCounts, GpuMetrics, MinMax, ServerMetrics};

    fn lat(p50: f64, p95: f64) -> Option<LatencyMs> {
        Some(LatencyMs {
            mean: p50,
            p50,
            p90: p95,
            p95,
            p99: p95,
        })
    }

    /// A row of the published Qwen2.5-0.5B / L4 sweep.
    fn row(c: u32, rps: f64, tps: f64, ttft: (f64, f64), itl: (f64, f64), e2e: f64) -> StepStatus {
        StepStatus {
            load: LoadPoint::Concurrency(c),
            requests: 200,
            succeeded: 200,
            requests_per_second: rps,
            output_tokens_per_second: tps,
            ttft_ms: lat(ttft.0, ttft.1),
            itl_ms: lat(itl.0, itl.1),
            e2e_ms: lat(e2e, e2e * 1.1),
            server: Some(ServerMetrics {
                kv_cache_usage_max: Some(0.01),
                waiting_max: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn published() -> Vec<StepStatus> {
        vec![
            row(1, 1.3, 168.0, (27.0, 115.5), (5.1, 6.1), 679.0),
            row(2, 2.9, 367.0, (37.8, 48.2), (5.2, 6.3), 698.0),
            row(4, 5.4, 698.0, (50.1, 85.4), (5.3, 6.4), 722.0),
            row(8, 10.2, 1312.0, (60.9, 88.4), (5.5, 7.4), 772.0),
            row(16, 17.8, 2277.0, (103.8, 140.0), (6.0, 8.0), 870.0),
            row(32, 29.5, 3773.0, (135.3, 200.0), (7.1, 9.5), 1040.0),
        ]
    }

    #[test]
    fn published_sweep_reads_as_unsaturated_decode_dominated_with_idle_kv() {
        let s = summarize(&published(), &Options::default());
        assert_eq!(s.peak_output_tokens_per_second, 3773.0);
        assert_eq!(s.ttft_p95_ms, Some(200.0));
        assert!(s.saturation.is_none(), "{:?}", s.saturation);
        assert_eq!(s.bottleneck, Some(Bottleneck::None));
        let all = s.findings.join("\n");
        assert!(all.contains("E2E is decode-dominated"), "{all}");
        assert!(all.contains("+ 127 x ITL"), "{all}");
        assert!(all.contains("KV cache usage peaked at 1.0%"), "{all}");
        assert!(all.contains("TTFT p95 at concurrency 1 is 4.3x"), "{all}");
        assert!(all.contains("22.5x"), "{all}");
    }

    fn with_prefix(mut s: StepStatus, achieved: Option<f64>, intended: Option<f64>) -> StepStatus {
        if let Some(server) = s.server.as_mut() {
            server.prefix_cache_hit_rate = achieved;
        }
        s.workload = Some(crate::api::StepWorkload {
            dataset: crate::api::DatasetKind::SharedPrefix,
            shared_prefix_fraction: intended,
            ..Default::default()
        });
        s
    }

    fn prefix_findings(steps: &[StepStatus]) -> Vec<String> {
        summarize(steps, &Options::default())
            .findings
            .into_iter()
            .filter(|f| f.contains("prefix cache served"))
            .collect()
    }

    #[test]
    fn prefix_hit_rate_far_below_the_intended_share_is_a_finding_naming_causes() {
        let mut steps = published();
        steps[0] = with_prefix(steps[0].clone(), Some(0.62), Some(0.70));
        steps[3] = with_prefix(steps[3].clone(), Some(0.21), Some(0.70));
        steps[3].server.as_mut().unwrap().kv_cache_usage_max = Some(0.97);
        let found = prefix_findings(&steps);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert!(
            f.starts_with("At concurrency 8 the prefix cache served 21% of prompt tokens where the workload shares 70%"),
            "{f}"
        );
        assert!(f.contains("KV cache filled up (97%)"), "{f}");
        assert!(f.contains("router spreads"), "{f}");
    }

    #[test]
    fn prefix_hit_rate_above_the_intended_share_points_at_repeated_prompts() {
        let mut steps = published();
        steps[1] = with_prefix(steps[1].clone(), Some(0.95), Some(0.40));
        let found = prefix_findings(&steps);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("more than intended"), "{}", found[0]);
    }

    #[test]
    fn prefix_hit_rate_within_ten_points_or_unknown_stays_quiet() {
        let mut steps = published();
        steps[0] = with_prefix(steps[0].clone(), Some(0.61), Some(0.70));
        steps[1] = with_prefix(steps[1].clone(), Some(0.79), Some(0.70));
        // No intended share (random prompts) or no counters: nothing to compare.
        steps[2] = with_prefix(steps[2].clone(), Some(0.0), None);
        steps[3] = with_prefix(steps[3].clone(), None, Some(0.70));
        assert!(prefix_findings(&steps).is_empty());
    }

    #[test]
    fn slo_finds_highest_held_and_first_broken() {
        let slo = Slo {
            ttft_p95: Some(std::time::Duration::from_millis(100)),
            ..Default::default()
        };
        let steps = published();
        let refs: Vec<&StepStatus> = steps.iter().collect();
        // Concurrency 1 already breaks a 100 ms TTFT p95 (115.5 ms).
        let sat = saturation(&refs, &slo).unwrap();
        assert_eq!(sat.at, None);
        assert_eq!(sat.first_broken.unwrap().concurrency(), Some(1));
        let sat = saturation(&refs[1..], &slo).unwrap();
        assert_eq!(sat.at.unwrap().concurrency(), Some(8));
        assert_eq!(sat.first_broken.unwrap().concurrency(), Some(16));
        assert_eq!(sat.limited_by, Some(SaturationLimit::TtftP95));
        assert_eq!(sat.requests_per_second, Some(10.2));
    }

    #[test]
    fn plateau_with_growing_itl_is_compute_bound() {
        let mut steps = published();
        steps[5].output_tokens_per_second = 2300.0;
        steps[5].itl_ms = lat(12.0, 15.0);
        if let Some(s) = steps[5].server.as_mut() {
            s.kv_cache_usage_max = Some(0.3);
        }
        steps[5].gpu = Some(GpuMetrics {
            util_max: Some(99.0),
            util_mean: Some(97.0),
            ..Default::default()
        });
        let s = summarize(&steps, &Options::default());
        let sat = s.saturation.unwrap();
        assert_eq!(sat.at.unwrap().concurrency(), Some(16));
        assert_eq!(sat.limited_by, Some(SaturationLimit::ThroughputPlateau));
        assert_eq!(s.bottleneck, Some(Bottleneck::Compute));
    }

    #[test]
    fn timeouts_with_idle_gpu_are_api_bound_and_errors_are_counted() {
        let mut steps = published();
        let last = steps.last_mut().unwrap();
        last.succeeded = 88;
        last.failed = 112;
        last.errors = ErrorCounts {
            timeout: 112,
            ..Default::default()
        };
        last.gpu = Some(GpuMetrics {
            util_mean: Some(20.0),
            ..Default::default()
        });
        let s = summarize(&steps, &Options::default());
        assert_eq!(s.bottleneck, Some(Bottleneck::Api));
        assert!(
            s.findings
                .iter()
                .any(|f| f.contains("112 of 1200 requests failed (112 timeout)"))
        );
    }

    #[test]
    fn full_cache_and_waiting_are_kv_bound_or_queueing() {
        let mut steps = published();
        steps[5].server = Some(ServerMetrics {
            kv_cache_usage_max: Some(0.97),
            waiting_max: Some(40.0),
            ..Default::default()
        });
        let refs: Vec<&StepStatus> = steps.iter().collect();
        assert_eq!(bottleneck(&refs), Bottleneck::KvCache);
        steps[5].server = Some(ServerMetrics {
            kv_cache_usage_max: Some(0.5),
            waiting_max: Some(12.0),
            ..Default::default()
        });
        let refs: Vec<&StepStatus> = steps.iter().collect();
        assert_eq!(bottleneck(&refs), Bottleneck::Queueing);
    }

    #[test]
    fn scaling_efficiency_and_balance() {
        // Published: one GPU plateaued near 13.7 req/s, four reached 34 req/s (~2.5x).
        let mut steps = Vec::new();
        for (replicas, tps) in [(1, 1370.0), (2, 2500.0), (4, 3400.0)] {
            let mut r = row(64, tps / 100.0, tps, (50.0, 80.0), (6.0, 8.0), 800.0);
            r.replicas = Some(replicas);
            if replicas == 4 {
                r.server.as_mut().unwrap().per_replica_running = Some(MinMax {
                    min: 5.0,
                    max: 30.0,
                });
            }
            steps.push(r);
        }
        let s = summarize(&steps, &Options::default());
        assert_eq!(s.scaling_efficiency["1"], 1.0);
        assert_eq!(s.scaling_efficiency["2"], 0.91);
        assert_eq!(s.scaling_efficiency["4"], 0.62);
        assert!(
            s.findings.iter().any(|f| f.contains("unbalanced")),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn empty_and_failed_steps_do_not_panic() {
        assert_eq!(summarize(&[], &Options::default()), RunSummary::default());
        let dead = StepStatus {
            load: LoadPoint::Concurrency(4),
            requests: 10,
            failed: 10,
            errors: ErrorCounts {
                http4xx: 10,
                ..Default::default()
            },
            ..Default::default()
        };
        let slo = Slo {
            ttft_p95: Some(std::time::Duration::from_millis(500)),
            ..Default::default()
        };
        let s = summarize(
            std::slice::from_ref(&dead),
            &Options {
                slo,
                ..Default::default()
            },
        );
        assert_eq!(
            s.saturation.unwrap().limited_by,
            Some(SaturationLimit::TtftP95)
        );
        assert!(s.findings.iter().any(|f| f.contains("10 http4xx")));
    }

    #[test]
    fn cost_per_million_tokens_and_at_saturation() {
        // One L4 at 0.71/h producing 3773 tok/s: 0.71 / (3773 * 3600) * 1e6 = 0.0523.
        let cost = Cost {
            gpu_hourly_price: 0.71,
            gpus_per_replica: 1,
        };
        assert_eq!(cost.per_million_tokens(3773.0, 1), Some(0.05));
        assert_eq!(cost.per_million_tokens(168.0, 1), Some(1.17));
        assert_eq!(cost.per_million_tokens(168.0, 2), Some(2.35));
        assert_eq!(cost.per_million_tokens(0.0, 1), None);
        let mut steps = published();
        price_steps(&mut steps, &cost);
        let options = Options {
            slo: Slo {
                ttft_p95: Some(std::time::Duration::from_millis(100)),
                ..Default::default()
            },
            target_request_rate: Some(50.0),
            ..Default::default()
        };
        let s = summarize(&steps[1..], &options);
        // Held up to concurrency 8 (10.2 req/s, 1312 tok/s).
        assert_eq!(s.cost_per_million_output_tokens_at_saturation, Some(0.15));
        let rec = s.recommendation.unwrap();
        assert_eq!(rec.requests_per_second_per_replica, 10.2);
        assert_eq!(rec.replicas_for_target_rate, Some(5));
        assert_eq!(rec.queue_depth_target, 1.0, "nothing waited: the floor");
    }

    #[test]
    fn queue_depth_target_follows_waiting_past_the_knee() {
        let mut steps = published();
        steps[4].server.as_mut().unwrap().waiting_max = Some(12.0);
        let sat = Saturation {
            requests_per_second: Some(10.2),
            at: Some(steps[3].load),
            first_broken: Some(steps[4].load),
            limited_by: Some(SaturationLimit::TtftP95),
            ..Default::default()
        };
        let rec = recommend(&steps, &sat, None).unwrap();
        assert_eq!(rec.queue_depth_target, 6.0);
        assert_eq!(rec.replicas_for_target_rate, None);
    }

    #[test]
    fn comparison_flags_regressions_beyond_thresholds() {
        let spec = BaselineSpec {
            name: "last-week".into(),
            max_throughput_drop: 0.1,
            max_ttft_p95_increase: 0.2,
        };
        let base = RunSummary {
            peak_output_tokens_per_second: 3773.0,
            ttft_p95_ms: Some(200.0),
            ..Default::default()
        };
        let same = compare(&base, &base, &spec);
        assert!(!same.regressed);
        assert_eq!(same.peak_throughput_change, Some(0.0));
        let worse = RunSummary {
            peak_output_tokens_per_second: 3000.0,
            ttft_p95_ms: Some(260.0),
            ..Default::default()
        };
        let c = compare(&worse, &base, &spec);
        assert!(c.regressed);
        assert_eq!(c.peak_throughput_change, Some(-0.2049));
        assert_eq!(c.ttft_p95_change, Some(0.3));
        let msg = c.message.unwrap();
        assert!(
            msg.contains("fell 20.5%") && msg.contains("TTFT p95 at peak rose 30.0%"),
            "{msg}"
        );
        let slightly = RunSummary {
            peak_output_tokens_per_second: 3600.0,
            ttft_p95_ms: Some(210.0),
            ..Default::default()
        };
        assert!(!compare(&slightly, &base, &spec).regressed);
    }

    #[test]
    fn mann_whitney_is_exact_for_small_samples() {
        // 3 vs 3 fully separated: 1 of the 20 splits is as extreme.
        assert_eq!(
            mann_whitney_greater(&[3.0, 4.0, 5.0], &[1.0, 2.0, 2.5]),
            Some(0.05)
        );
        assert_eq!(
            mann_whitney_greater(&[1.0, 2.0, 2.5], &[3.0, 4.0, 5.0]),
            Some(1.0)
        );
        // Interleaved: rank sum of a = 2 + 4 + 6 = 12; 7 of the 20 splits reach 12.
        assert_eq!(
            mann_whitney_greater(&[2.0, 4.0, 6.0], &[1.0, 3.0, 5.0]),
            Some(0.35)
        );
        // All tied: every split is as extreme.
        assert_eq!(mann_whitney_greater(&[1.0; 3], &[1.0; 3]), Some(1.0));
        assert_eq!(mann_whitney_greater(&[], &[1.0]), None);
        // Large samples use the normal approximation: a clear shift is significant.
        let a: Vec<f64> = (0..30).map(|i| f64::from(i) + 10.0).collect();
        let b: Vec<f64> = (0..30).map(f64::from).collect();
        let p = mann_whitney_greater(&a, &b).unwrap();
        assert!(p < 0.01, "{p}");
        let p = mann_whitney_greater(&b, &a).unwrap();
        assert!(p > 0.99, "{p}");
        assert!((erfc(0.0) - 1.0).abs() < 1e-7 && (erfc(1.0) - 0.157_299_2).abs() < 1e-6);
    }

    fn with_trials(peak: f64, ttft: f64, tps: &[f64], ttfts: &[f64]) -> RunSummary {
        RunSummary {
            peak_output_tokens_per_second: peak,
            ttft_p95_ms: Some(ttft),
            peak_trials: Some(crate::api::TrialsStatus {
                count: tps.len() as u32,
                output_tokens_per_second: tps.to_vec(),
                ttft_p95_ms: ttfts.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn with_trials_only_a_change_beyond_the_noise_regresses() {
        let spec = BaselineSpec {
            name: "base".into(),
            max_throughput_drop: 0.1,
            max_ttft_p95_increase: 0.1,
        };
        let base = with_trials(
            1000.0,
            100.0,
            &[990.0, 1000.0, 1010.0],
            &[99.0, 100.0, 101.0],
        );
        // Unchanged within the thresholds.
        let same = with_trials(995.0, 101.0, &[985.0, 995.0, 1012.0], &[98.0, 101.0, 102.0]);
        let c = compare(&same, &base, &spec);
        assert!(!c.regressed, "{c:?}");
        assert_eq!(c.confidence, Some(0.95));
        // 20% slower, every trial worse than every baseline trial: regressed.
        let slow = with_trials(833.0, 120.0, &[825.0, 833.0, 840.0], &[119.0, 120.0, 121.0]);
        let c = compare(&slow, &base, &spec);
        assert!(c.regressed, "{c:?}");
        let msg = c.message.unwrap();
        assert!(
            msg.contains("peak output throughput fell 16.7% (1000 -> 833 tok/s"),
            "{msg}"
        );
        assert!(
            msg.contains("TTFT p95 at peak rose 20.0% (100.0 -> 120.0 ms"),
            "{msg}"
        );
        assert!(msg.contains("p = 0.050 <= 0.05, 95% confidence"), "{msg}");
        // Beyond the threshold on the merged figures, but the trials overlap: noise.
        let noisy = with_trials(
            880.0,
            100.0,
            &[600.0, 1005.0, 1035.0],
            &[99.0, 100.0, 101.0],
        );
        let c = compare(&noisy, &base, &spec);
        assert!(!c.regressed, "{c:?}");
        let msg = c.message.unwrap();
        assert!(
            msg.starts_with("no regression against base: peak output throughput fell 12.0%")
                && msg.contains("within the noise of 3 vs 3 trials"),
            "{msg}"
        );
        // Without trials on both sides: thresholds only, and the message says so.
        let single = RunSummary {
            peak_trials: None,
            ..slow.clone()
        };
        let c = compare(&single, &base, &spec);
        assert!(c.regressed);
        assert_eq!(c.confidence, None);
        assert!(c.message.unwrap().contains("single-sample comparison"));
    }

    #[test]
    fn a_busy_client_is_the_bottleneck_whatever_the_server_says() {
        let mut steps = published();
        steps[5].client_cpu_util = Some(0.97);
        steps[5].server.as_mut().unwrap().kv_cache_usage_max = Some(0.95);
        let s = summarize(&steps, &Options::default());
        assert_eq!(s.bottleneck, Some(Bottleneck::Client));
        assert!(
            s.findings
                .iter()
                .any(|f| f.contains("used 97% of its CPU at concurrency 32")),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn late_open_loop_sends_are_client_bound() {
        let mut steps = published();
        steps[2].client_late_send_fraction = Some(0.2);
        let s = summarize(&steps, &Options::default());
        assert_eq!(s.bottleneck, Some(Bottleneck::Client));
        assert!(
            s.findings
                .iter()
                .any(|f| f.contains("sent 20% of requests late at concurrency 4")),
            "{:?}",
            s.findings
        );
        steps[2].client_late_send_fraction = Some(0.01);
        assert_ne!(
            summarize(&steps, &Options::default()).bottleneck,
            Some(Bottleneck::Client)
        );
    }

    #[test]
    fn ttft_tails_one_or_three_seconds_above_the_median_are_syn_retransmits() {
        let mut steps = published();
        assert!(syn_retransmit_finding(&steps).is_none());
        // The measurement: 1,000 streams, truth 20 ms, p99 1,072 ms.
        steps[3].ttft_ms = Some(LatencyMs {
            mean: 40.0,
            p50: 24.0,
            p90: 26.0,
            p95: 30.0,
            p99: 1072.0,
        });
        let f = syn_retransmit_finding(&steps).expect("a 1 s mode");
        assert!(f.contains("p99") && f.contains("about 1 s"), "{f}");
        assert!(f.contains("1072 ms") && f.contains("24 ms"), "{f}");
        steps[3].ttft_ms = Some(LatencyMs {
            mean: 90.0,
            p50: 24.0,
            p90: 26.0,
            p95: 3030.0,
            p99: 5000.0,
        });
        let f = syn_retransmit_finding(&steps).expect("a 3 s mode");
        assert!(f.contains("TTFT p95") && f.contains("about 3 s"), "{f}");
        // A slow server whose whole distribution is around a second is not this.
        steps[3].ttft_ms = Some(LatencyMs {
            mean: 900.0,
            p50: 800.0,
            p90: 1700.0,
            p95: 1800.0,
            p99: 1900.0,
        });
        assert!(syn_retransmit_finding(&steps).is_none());
        let all = summarize(&steps, &Options::default());
        assert!(!all.findings.iter().any(|f| f.contains("SYN")));
    }
}
