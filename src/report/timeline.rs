//! What per-request records show that step summaries hide: latency through the run in time
//! slices of each step, and TTFT against prompt length.

use crate::contract::records::{RecordOutcome, RequestRecord};

/// Time slices each step is cut into.
pub const SLICES_PER_STEP: usize = 10;

/// Requests a slice needs before its percentiles are drawn.
pub const MIN_PER_SLICE: usize = 3;

/// Latency of the requests that started in one time slice of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Step index.
    pub step: usize,
    /// Middle of the slice, seconds since the run start.
    pub mid_s: f64,
    /// Completed requests scheduled in the slice.
    pub requests: usize,
    /// Median TTFT, ms.
    pub ttft_p50: f64,
    /// p99 TTFT, ms.
    pub ttft_p99: f64,
    /// Median inter-token gap, ms (the gaps of `itl_ms` when recorded, else each request's
    /// mean gap `(last - first token) / (output tokens - 1)`).
    pub itl_p50: Option<f64>,
    /// p99 inter-token gap, ms.
    pub itl_p99: Option<f64>,
}

/// The `q` quantile (0..=1) of sorted `v` by the nearest rank.
fn quantile(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn gaps(r: &RequestRecord) -> Vec<f64> {
    match (&r.itl_ms, r.first_token_ms, r.last_token_ms) {
        (Some(g), _, _) if !g.is_empty() => g.clone(),
        (_, Some(first), Some(last)) if r.output_tokens > 1 => {
            vec![(last - first) / f64::from(r.output_tokens - 1)]
        }
        _ => Vec::new(),
    }
}

/// Cuts each step's span (first scheduled to last scheduled request) into
/// [`SLICES_PER_STEP`] slices and summarizes the completed requests scheduled in each; slices
/// with fewer than [`MIN_PER_SLICE`] requests are left out.
pub fn slices(records: &[RequestRecord]) -> Vec<Slice> {
    let mut steps: Vec<usize> = records.iter().map(|r| r.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let mut out = Vec::new();
    for step in steps {
        let ok: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| r.step == step && r.outcome == RecordOutcome::Ok)
            .filter(|r| r.ttft_ms().is_some())
            .collect();
        let Some(lo) = ok.iter().map(|r| r.scheduled_ms).reduce(f64::min) else {
            continue;
        };
        let hi = ok.iter().map(|r| r.scheduled_ms).fold(lo, f64::max);
        let width = ((hi - lo) / SLICES_PER_STEP as f64).max(1e-9);
        let mut buckets: Vec<Vec<&RequestRecord>> = vec![Vec::new(); SLICES_PER_STEP];
        for r in ok {
            let i = (((r.scheduled_ms - lo) / width) as usize).min(SLICES_PER_STEP - 1);
            buckets[i].push(r);
        }
        for (i, b) in buckets.iter().enumerate() {
            if b.len() < MIN_PER_SLICE {
                continue;
            }
            let mut ttft: Vec<f64> = b.iter().filter_map(|r| r.ttft_ms()).collect();
            ttft.sort_by(f64::total_cmp);
            let mut itl: Vec<f64> = b.iter().flat_map(|r| gaps(r)).collect();
            itl.sort_by(f64::total_cmp);
            out.push(Slice {
                step,
                mid_s: (lo + width * (i as f64 + 0.5)) / 1e3,
                requests: b.len(),
                ttft_p50: quantile(&ttft, 0.5),
                ttft_p99: quantile(&ttft, 0.99),
                itl_p50: (!itl.is_empty()).then(|| quantile(&itl, 0.5)),
                itl_p99: (!itl.is_empty()).then(|| quantile(&itl, 0.99)),
            });
        }
    }
    out
}

/// Most points a scatter draws (every n-th request beyond it).
pub const MAX_SCATTER_POINTS: usize = 5000;

/// (prompt tokens, TTFT ms) of completed requests, thinned evenly to at most
/// [`MAX_SCATTER_POINTS`].
pub fn ttft_by_prompt(records: &[RequestRecord]) -> Vec<(f64, f64)> {
    let all: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.outcome == RecordOutcome::Ok)
        .filter_map(|r| Some((f64::from(r.prompt_tokens), r.ttft_ms()?)))
        .collect();
    let every = all.len().div_ceil(MAX_SCATTER_POINTS).max(1);
    all.into_iter().step_by(every).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(step: usize, at: f64, ttft: f64, prompt: u32) -> RequestRecord {
        RequestRecord {
            id: format!("{step}-{at}"),
            step,
            trial: 0,
            model: "m".into(),
            scheduled_ms: at,
            sent_ms: at,
            first_token_ms: Some(at + ttft),
            last_token_ms: Some(at + ttft + 99.0),
            end_ms: at + ttft + 99.0,
            prompt_tokens: prompt,
            output_tokens: 100,
            itl_ms: None,
            outcome: RecordOutcome::Ok,
            error_class: None,
        }
    }

    #[test]
    fn slices_follow_latency_through_a_step() {
        // Step 0: 100 requests over 10 s whose TTFT grows from 10 to 109 ms.
        let mut records: Vec<RequestRecord> = (0..100)
            .map(|i| rec(0, f64::from(i) * 100.0, 10.0 + f64::from(i), 50))
            .collect();
        // Step 1 has too few requests for a slice; a failure is ignored.
        records.push(rec(1, 20_000.0, 5.0, 50));
        let mut failed = rec(0, 500.0, 1000.0, 50);
        failed.outcome = RecordOutcome::Failed;
        failed.first_token_ms = None;
        records.push(failed);
        let s = slices(&records);
        assert_eq!(s.len(), SLICES_PER_STEP, "{s:?}");
        assert!(s.iter().all(|x| x.step == 0));
        assert!(s.windows(2).all(|w| w[0].ttft_p50 < w[1].ttft_p50), "{s:?}");
        assert_eq!(s.iter().map(|x| x.requests).sum::<usize>(), 100);
        assert_eq!(s[0].ttft_p50, 14.0);
        assert_eq!(s[0].ttft_p99, 19.0);
        assert_eq!(s[0].itl_p50, Some(1.0), "mean gap 99 ms / 99");
        assert!((s[0].mid_s - 0.495).abs() < 1e-9, "{}", s[0].mid_s);
        let pts = ttft_by_prompt(&records);
        assert_eq!(pts.len(), 101);
        let many: Vec<RequestRecord> = (0..12_000).map(|i| rec(0, f64::from(i), 1.0, 1)).collect();
        assert!(ttft_by_prompt(&many).len() <= MAX_SCATTER_POINTS);
    }
}
