//! Per-step recording: HDR histograms (microseconds) of TTFT, TPOT, ITL and end-to-end
//! latency plus counters. Recorders are mergeable (per-worker shards, per-pod results) and
//! histograms serialize with HDR's V2 encoding in base64, so percentiles of a whole are always
//! computed from merged histograms, never averaged.

use std::time::Instant;

use anyhow::Context;
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use super::outcome::{ErrorClass, Failure, Metrics};
use super::slo::GoodputSlo;

/// Distinct messages kept per error class.
pub const MESSAGES_PER_CLASS: usize = 3;

/// The four latency histograms of a step, values in microseconds.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Time to first token.
    pub ttft: Histogram<u64>,
    /// Time per output token (excluding the first).
    pub tpot: Histogram<u64>,
    /// Every inter-token gap.
    pub itl: Histogram<u64>,
    /// End-to-end latency.
    pub e2el: Histogram<u64>,
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits, auto-resizing from a small initial range: a few kB each.
    let mut h = Histogram::new_with_bounds(1, 2, 3).expect("valid HDR bounds");
    h.auto(true);
    h
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            ttft: new_histogram(),
            tpot: new_histogram(),
            itl: new_histogram(),
            e2el: new_histogram(),
        }
    }
}

impl Histograms {
    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histograms) {
        // Auto-resizing histograms with equal precision always accept each other's values.
        for (a, b) in self.each_mut().into_iter().zip(other.each()) {
            a.add(b).expect("auto-resizing histogram accepts any value");
        }
    }

    fn each(&self) -> [&Histogram<u64>; 4] {
        [&self.ttft, &self.tpot, &self.itl, &self.e2el]
    }

    fn each_mut(&mut self) -> [&mut Histogram<u64>; 4] {
        [
            &mut self.ttft,
            &mut self.tpot,
            &mut self.itl,
            &mut self.e2el,
        ]
    }

    /// Serializes each histogram (V2 encoding, standard base64).
    pub fn encode(&self) -> EncodedHistograms {
        let [ttft, tpot, itl, e2el] = self.each().map(encode_one);
        EncodedHistograms {
            ttft,
            tpot,
            itl,
            e2el,
        }
    }
}

/// Records `v`, growing the (auto-resizing) histogram as needed.
fn rec(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

fn encode_one(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

fn decode_one(name: &str, text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .with_context(|| format!("histogram {name}: bad base64"))?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram {name}: {e:?}"))?;
    h.auto(true);
    Ok(h)
}

/// Histograms as stored in the results JSON (`steps[].histograms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedHistograms {
    /// TTFT, µs, HDR V2 + base64.
    pub ttft: String,
    /// TPOT, µs, HDR V2 + base64.
    pub tpot: String,
    /// ITL, µs, HDR V2 + base64.
    pub itl: String,
    /// E2E latency, µs, HDR V2 + base64.
    pub e2el: String,
}

impl EncodedHistograms {
    /// Decodes the four histograms.
    pub fn decode(&self) -> anyhow::Result<Histograms> {
        Ok(Histograms {
            ttft: decode_one("ttft", &self.ttft)?,
            tpot: decode_one("tpot", &self.tpot)?,
            itl: decode_one("itl", &self.itl)?,
            e2el: decode_one("e2el", &self.e2el)?,
        })
    }
}

/// mean/median/p90/p95/p99 of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Mean.
    pub mean: f64,
    /// 50th percentile.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of a µs histogram, in ms (all zero when empty, like vLLM's bench).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            mean: h.mean() / 1000.0,
            median: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
        }
    }
}

/// Counts of failed requests by class (`steps[].errors`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Deadline passed.
    pub timeout: u64,
    /// Connection could not be made.
    pub connect: u64,
    /// 4xx (or other non-2xx, non-5xx) status.
    pub http4xx: u64,
    /// 5xx status.
    pub http5xx: u64,
    /// Broken or truncated stream.
    pub stream: u64,
    /// Malformed response body.
    pub body: u64,
}

impl ErrorCounts {
    /// Count of one class.
    pub fn get(&self, c: ErrorClass) -> u64 {
        match c {
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Connect => self.connect,
            ErrorClass::Http4xx => self.http4xx,
            ErrorClass::Http5xx => self.http5xx,
            ErrorClass::Stream => self.stream,
            ErrorClass::Body => self.body,
        }
    }

    fn slot(&mut self, c: ErrorClass) -> &mut u64 {
        match c {
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Connect => &mut self.connect,
            ErrorClass::Http4xx => &mut self.http4xx,
            ErrorClass::Http5xx => &mut self.http5xx,
            ErrorClass::Stream => &mut self.stream,
            ErrorClass::Body => &mut self.body,
        }
    }

    /// Adds `n` to one class.
    pub fn add(&mut self, c: ErrorClass, n: u64) {
        *self.slot(c) += n;
    }

    /// Adds every class of `other`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for c in ErrorClass::ALL {
            self.add(c, other.get(c));
        }
    }

    /// Sum over classes.
    pub fn total(&self) -> u64 {
        ErrorClass::ALL.iter().map(|&c| self.get(c)).sum()
    }
}

/// Adds `msg` to `list` unless present or the list is full.
pub fn push_distinct(list: &mut Vec<String>, msg: &str) {
    if list.len() < MESSAGES_PER_CLASS && !list.iter().any(|m| m == msg) {
        list.push(msg.to_owned());
    }
}

/// Everything recorded during one step (or one shard of it).
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    /// Latency histograms of successful requests.
    pub hist: Histograms,
    /// Successful requests.
    pub completed: u64,
    /// Failed requests by class.
    pub errors: ErrorCounts,
    /// First few distinct messages per class, indexed by [`ErrorClass::index`].
    pub messages: [Vec<String>; 6],
    /// Prompt tokens of successful requests.
    pub input_tokens: u64,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// When the last recorded request ended.
    pub last_end: Option<Instant>,
    /// Open loop: measured requests sent.
    pub sends: u64,
    /// Open loop: measured requests sent more than [`LATE_SEND`] after their scheduled time
    /// (the client fell behind its schedule).
    pub late_sends: u64,
    /// Arrivals, completions and latencies over the step's time, for judging whether the
    /// server kept up with an open loop.
    pub trend: Trend,
    /// Per-request bounds that make a successful request "good" (goodput).
    pub goodput_slo: Option<GoodputSlo>,
    /// Successful requests that met every bound of `goodput_slo`.
    pub good: u64,
    /// Output tokens of those requests.
    pub good_output_tokens: u64,
    /// Requests the client abandoned on purpose (`workload.cancel`): neither completed nor
    /// failed.
    pub cancelled: u64,
}

/// Bins of a [`Trend`].
pub const TREND_BINS: usize = 64;

/// A step's requests over time in [`TREND_BINS`] equal bins that double in width as the step
/// grows (bounded memory whatever the step's length): per bin, the requests scheduled in it
/// with the sum of their TTFT and end-to-end latency, and the requests that finished in it.
/// Offsets are microseconds since the step's measured window started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trend {
    /// Width of a bin, µs (0 until something is recorded).
    pub width_us: u64,
    /// Requests scheduled per bin (measured, ok or failed).
    pub arrivals: Vec<u64>,
    /// Requests finished per bin (ok or failed), by end time.
    pub finished: Vec<u64>,
    /// Successful requests per bin, by scheduled time.
    pub ok: Vec<u64>,
    /// Sum of TTFT of the successful requests per bin (by scheduled time), µs.
    pub ttft_sum_us: Vec<u64>,
    /// Sum of end-to-end latency of the successful requests per bin, µs.
    pub e2el_sum_us: Vec<u64>,
}

/// What a [`Trend`] says about an open-loop step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Requests arriving per second in the later two thirds of the arrivals.
    pub arrival_rate: f64,
    /// Requests finishing per second over the same time.
    pub finish_rate: f64,
    /// Mean TTFT of the last third of the requests (by scheduled time) over the first third's.
    pub ttft_growth: Option<f64>,
    /// The same for end-to-end latency.
    pub e2el_growth: Option<f64>,
}

/// Fewest arrivals in the judged part of a step for [`Backlog::falling_behind`] to judge.
pub const BACKLOG_MIN_ARRIVALS: u64 = 30;

impl Backlog {
    /// Completions fell behind arrivals by more than noise (more than 10% and more than three
    /// standard deviations of a Poisson count) while latency grew through the step (the last
    /// third's mean TTFT or E2E at least 1.5 times the first third's): requests pile up, the
    /// step is past what the server sustains whatever its totals say.
    pub fn falling_behind(&self, span_secs: f64) -> bool {
        let arrived = self.arrival_rate * span_secs;
        let finished = self.finish_rate * span_secs;
        let deficit = arrived - finished;
        let behind = finished < 0.9 * arrived && deficit > 3.0 * arrived.sqrt();
        let growing = self.ttft_growth.is_some_and(|g| g >= 1.5)
            || self.e2el_growth.is_some_and(|g| g >= 1.5);
        behind && growing
    }
}

impl Trend {
    fn ensure(&mut self) {
        if self.width_us == 0 {
            self.width_us = 10_000;
            for v in self.each_mut() {
                v.resize(TREND_BINS, 0);
            }
        }
    }

    fn each_mut(&mut self) -> [&mut Vec<u64>; 5] {
        [
            &mut self.arrivals,
            &mut self.finished,
            &mut self.ok,
            &mut self.ttft_sum_us,
            &mut self.e2el_sum_us,
        ]
    }

    /// Doubles the bin width, adding neighbouring bins.
    fn coarsen(&mut self) {
        for v in self.each_mut() {
            let merged: Vec<u64> = (0..TREND_BINS)
                .map(|i| {
                    let (a, b) = (2 * i, 2 * i + 1);
                    v.get(a).copied().unwrap_or(0) + v.get(b).copied().unwrap_or(0)
                })
                .collect();
            *v = merged;
        }
        self.width_us *= 2;
    }

    fn bin(&mut self, offset_us: u64) -> usize {
        self.ensure();
        while offset_us >= self.width_us * TREND_BINS as u64 {
            self.coarsen();
        }
        (offset_us / self.width_us) as usize
    }

    /// Records a request scheduled at `scheduled_us` that finished at `end_us`, with its TTFT
    /// and E2E when it succeeded.
    pub fn record(&mut self, scheduled_us: u64, end_us: u64, ok: Option<(u64, u64)>) {
        // Bin the later offset first so both indexes use the final width.
        self.bin(end_us.max(scheduled_us));
        let at = self.bin(scheduled_us);
        self.arrivals[at] += 1;
        if let Some((ttft, e2el)) = ok {
            self.ok[at] += 1;
            self.ttft_sum_us[at] += ttft;
            self.e2el_sum_us[at] += e2el;
        }
        let end = self.bin(end_us);
        self.finished[end] += 1;
    }

    /// Adds `other` (both measured from the same origin).
    pub fn merge(&mut self, other: &Trend) {
        if other.width_us == 0 {
            return;
        }
        let mut other = other.clone();
        self.ensure();
        while self.width_us < other.width_us {
            self.coarsen();
        }
        while other.width_us < self.width_us {
            other.coarsen();
        }
        for (a, b) in self.each_mut().into_iter().zip(other.each_mut()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
    }

    /// Arrival and finish rates over the later two thirds of the arrival span and the growth
    /// of latency from the first to the last third; `None` with too few arrivals to judge.
    pub fn backlog(&self) -> Option<(Backlog, f64)> {
        let last = self.arrivals.iter().rposition(|&n| n > 0)?;
        let span = last + 1;
        if span < 3 {
            return None;
        }
        let third = span / 3;
        let judged = third..span;
        let arrived: u64 = self.arrivals[judged.clone()].iter().sum();
        if arrived < BACKLOG_MIN_ARRIVALS {
            return None;
        }
        let finished: u64 = self.finished[judged.clone()].iter().sum();
        let secs = (judged.len() as u64 * self.width_us) as f64 / 1e6;
        let mean = |sum: &[u64], range: std::ops::Range<usize>| {
            let n: u64 = self.ok[range.clone()].iter().sum();
            (n > 0).then(|| sum[range].iter().sum::<u64>() as f64 / n as f64)
        };
        let growth = |sum: &[u64]| match (mean(sum, 0..third), mean(sum, span - third..span)) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        };
        Some((
            Backlog {
                arrival_rate: arrived as f64 / secs,
                finish_rate: finished as f64 / secs,
                ttft_growth: growth(&self.ttft_sum_us),
                e2el_growth: growth(&self.e2el_sum_us),
            },
            secs,
        ))
    }
}

/// How late an open-loop send may be before it counts as the client falling behind.
pub const LATE_SEND: std::time::Duration = std::time::Duration::from_millis(10);

impl StepStats {
    /// An empty recorder.
    pub fn new() -> StepStats {
        StepStats::default()
    }

    /// An empty recorder that counts requests meeting `slo` (goodput).
    pub fn with_goodput(slo: Option<GoodputSlo>) -> StepStats {
        StepStats {
            goodput_slo: slo,
            ..StepStats::default()
        }
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.total()
    }

    fn saw_end(&mut self, end: Instant) {
        if self.last_end.is_none_or(|e| e < end) {
            self.last_end = Some(end);
        }
    }

    /// Records a successful request and its inter-token gaps (µs).
    pub fn record_ok(&mut self, m: &Metrics, itl_us: &[u32], end: Instant) {
        self.completed += 1;
        self.input_tokens += u64::from(m.prompt_tokens);
        self.output_tokens += u64::from(m.output_tokens);
        if self.goodput_slo.is_some_and(|g| g.met(m)) {
            self.good += 1;
            self.good_output_tokens += u64::from(m.output_tokens);
        }
        let h = &mut self.hist;
        rec(&mut h.ttft, m.ttft_us);
        rec(&mut h.e2el, m.e2el_us);
        if let Some(t) = m.tpot_us() {
            rec(&mut h.tpot, t);
        }
        for &gap in itl_us {
            rec(&mut h.itl, u64::from(gap));
        }
        self.saw_end(end);
    }

    /// Records how late an open-loop request left against its schedule.
    pub fn record_send(&mut self, lag: std::time::Duration) {
        self.sends += 1;
        self.late_sends += u64::from(lag > LATE_SEND);
    }

    /// Records a failed request.
    pub fn record_err(&mut self, f: &Failure, end: Instant) {
        self.errors.add(f.class, 1);
        push_distinct(&mut self.messages[f.class.index()], &f.message);
        self.saw_end(end);
    }

    /// Records a request the client abandoned on purpose.
    pub fn record_cancelled(&mut self, end: Instant) {
        self.cancelled += 1;
        self.saw_end(end);
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &StepStats) {
        self.cancelled += other.cancelled;
        self.hist.merge(&other.hist);
        self.completed += other.completed;
        self.errors.merge(&other.errors);
        for (mine, theirs) in self.messages.iter_mut().zip(&other.messages) {
            for m in theirs {
                push_distinct(mine, m);
            }
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.sends += other.sends;
        self.late_sends += other.late_sends;
        self.trend.merge(&other.trend);
        self.goodput_slo = self.goodput_slo.or(other.goodput_slo);
        self.good += other.good;
        self.good_output_tokens += other.good_output_tokens;
        if let Some(e) = other.last_end {
            self.saw_end(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn late_sends_are_counted_and_merged() {
        let mut a = StepStats::new();
        a.record_send(Duration::from_millis(2));
        a.record_send(Duration::from_millis(50));
        let mut b = StepStats::new();
        b.record_send(LATE_SEND);
        b.record_send(LATE_SEND + Duration::from_micros(1));
        a.merge(&b);
        assert_eq!((a.sends, a.late_sends), (4, 2));
        let now = chrono::Utc::now();
        let r = crate::contract::results::StepResult::from_stats(
            crate::contract::plan::LoadPoint::Rate(10.0),
            &a,
            now,
            now,
            false,
        );
        assert_eq!(r.late_send_fraction, Some(0.5));
        let closed = crate::contract::results::StepResult::from_stats(
            crate::contract::plan::LoadPoint::Concurrency(4),
            &StepStats::new(),
            now,
            now,
            false,
        );
        assert_eq!(
            closed.late_send_fraction, None,
            "no schedule in a closed loop"
        );
    }

    fn ok(ttft_ms: u64, e2el_ms: u64, out: u32) -> Metrics {
        Metrics {
            ttft_us: ttft_ms * 1000,
            e2el_us: e2el_ms * 1000,
            prompt_tokens: 10,
            output_tokens: out,
            streamed: true,
        }
    }

    #[test]
    fn records_tpot_itl_and_counters() {
        let t = Instant::now();
        let mut s = StepStats::new();
        s.record_ok(&ok(100, 1100, 11), &[100_000; 10], t);
        s.record_err(
            &Failure::new(ErrorClass::Http4xx, "model x not found"),
            t + Duration::from_millis(5),
        );
        s.record_err(&Failure::new(ErrorClass::Http4xx, "model x not found"), t);
        assert_eq!((s.completed, s.failed(), s.errors.http4xx), (1, 2, 2));
        assert_eq!(
            s.messages[ErrorClass::Http4xx.index()],
            ["model x not found"]
        );
        assert_eq!(s.output_tokens, 11);
        let tpot = Percentiles::of(&s.hist.tpot);
        assert!((tpot.median - 100.0).abs() < 0.1, "{tpot:?}");
        assert_eq!(s.hist.itl.len(), 10);
        assert_eq!(s.last_end, Some(t + Duration::from_millis(5)));
    }

    #[test]
    fn merged_percentiles_come_from_merged_histograms() {
        // Pod A saw 99 fast requests, pod B one slow one: the merged p99 is not an average.
        let t = Instant::now();
        let mut a = StepStats::new();
        for _ in 0..99 {
            a.record_ok(&ok(10, 20, 2), &[], t);
        }
        let mut b = StepStats::new();
        b.record_ok(&ok(1000, 2000, 2), &[], t);
        let (ea, eb) = (a.hist.encode(), b.hist.encode());
        let mut merged = ea.decode().unwrap();
        merged.merge(&eb.decode().unwrap());
        let p = Percentiles::of(&merged.ttft);
        assert!((p.median - 10.0).abs() < 0.05, "{p:?}");
        assert!((p.p99 - 10.0).abs() < 0.05, "{p:?}");
        assert_eq!(merged.ttft.len(), 100);
        assert!((merged.ttft.max() as f64 - 1_000_000.0).abs() < 1000.0);
        let mut c = a.clone();
        c.merge(&b);
        assert_eq!(c.completed, 100);
        assert!((Percentiles::of(&c.hist.e2el).mean - 39.8).abs() < 0.1);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut s = StepStats::new();
        s.record_ok(&ok(5, 50, 3), &[1, 2, 3_000_000_000], Instant::now());
        let enc = s.hist.encode();
        let dec = enc.decode().unwrap();
        assert_eq!(dec.itl.len(), 3);
        assert_eq!(dec.encode(), enc);
        let bad = EncodedHistograms {
            ttft: "!!".into(),
            ..enc.clone()
        };
        assert!(bad.decode().is_err());
        let bad = EncodedHistograms {
            tpot: "AAAA".into(),
            ..enc
        };
        assert!(bad.decode().is_err());
    }

    #[test]
    fn a_server_that_keeps_up_is_not_behind_and_one_that_does_not_is() {
        // 100 req/s for 3 s: latency constant at 50 ms, every request finishes on time.
        let mut keeps_up = Trend::default();
        for i in 0..300u64 {
            let at = i * 10_000;
            keeps_up.record(at, at + 50_000, Some((20_000, 50_000)));
        }
        let (b, secs) = keeps_up.backlog().unwrap();
        assert!((b.arrival_rate - 100.0).abs() < 5.0, "{b:?}");
        assert!((b.finish_rate - b.arrival_rate).abs() < 5.0, "{b:?}");
        assert!(!b.falling_behind(secs), "{b:?}");
        // Capacity 60 req/s: requests finish ever later (a queue), latency grows.
        let mut behind = Trend::default();
        for i in 0..300u64 {
            let at = i * 10_000;
            let end = i * 1_000_000 / 60;
            let latency = end.saturating_sub(at) + 50_000;
            behind.record(at, at + latency, Some((latency - 30_000, latency)));
        }
        let (b, secs) = behind.backlog().unwrap();
        assert!(b.finish_rate < 0.7 * b.arrival_rate, "{b:?}");
        assert!(b.ttft_growth.unwrap() > 1.5, "{b:?}");
        assert!(b.falling_behind(secs), "{b:?}");
        // Shards merge into the same picture.
        let (mut x, mut y) = (Trend::default(), Trend::default());
        for i in 0..300u64 {
            let at = i * 10_000;
            let t = if i % 2 == 0 { &mut x } else { &mut y };
            t.record(at, at + 50_000, Some((20_000, 50_000)));
        }
        x.merge(&y);
        assert_eq!(x, keeps_up);
        assert!(Trend::default().backlog().is_none());
    }

    #[test]
    fn distinct_messages_are_capped() {
        let mut v = Vec::new();
        for m in ["a", "b", "a", "c", "d"] {
            push_distinct(&mut v, m);
        }
        assert_eq!(v, ["a", "b", "c"]);
    }
}
