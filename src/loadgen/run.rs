//! Runs a whole [`Plan`]: a fixed sweep over load points, or a saturation search that grows
//! the load until an SLO breaks and then bisects to the breaking point. Reports each finished step to an [`Observer`] (progress bars,
//! rewriting the results file) and always returns what was measured, also when cancelled.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::client::{Client, ClientConfig};
use super::records::{RecordSink, Recorder};
use super::schedule::{StepContext, StepProgress, StepSpec, run_step};
use super::workload::{RequestSet, load_tokenizer};
use crate::contract::plan::{LoadPoint, Mode, Plan, Saturation, share_u64};
use crate::contract::records::{CLOCK, RECORDS_VERSION, RecordsHeader};
use crate::contract::results::{
    Metadata, ProbePhase, Results, RunStatus, SaturationProbe, SaturationResult, StepResult,
    StepWorkload, Summary, combine_trials,
};
use crate::contract::slo::Measured;

/// Hooks called while a plan runs.
pub trait Observer: Send {
    /// A step starts: `requests`/`duration` bound it (for a progress bar).
    fn step_started(
        &mut self,
        _index: usize,
        _point: LoadPoint,
        _requests: Option<u64>,
        _duration: Option<Duration>,
        _progress: Arc<StepProgress>,
    ) {
    }
    /// A step finished; `results` holds every step so far (status `running`).
    fn step_finished(&mut self, _results: &Results) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// How many distinct prompts to prepare for `plan`.
fn prompt_count(plan: &Plan) -> usize {
    if let Some(n) = plan.workload.num_prompts {
        return n.max(1) as usize;
    }
    plan.requests_per_step()
        .map_or(1024, |r| r.min(1024) as usize)
}

/// Runs `plan` until done or `cancel` fires. Fails only on setup errors (bad plan, unreadable
/// dataset, invalid URL); request failures are counted in the results.
pub async fn run_plan(
    plan: &Plan,
    cancel: CancellationToken,
    observer: &mut dyn Observer,
) -> anyhow::Result<Results> {
    run_plan_with(plan, &RunOptions::default(), cancel, observer).await
}

/// Settings of a run that are not part of the plan.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A HuggingFace `tokenizer.json` of the served model: synthetic prompts get exactly
    /// `inputTokens` tokens (before any chat template) instead of that many words.
    pub tokenizer: Option<PathBuf>,
    /// Results an earlier attempt of the same plan already wrote (a restarted load pod):
    /// its finished steps are kept and the sweep continues after them. Ignored unless the
    /// plan is the same sweep (a saturation search always starts over).
    pub resume: Option<Results>,
    /// Longest SSE line or event, and largest non-streamed body, a response may carry
    /// (bytes; `None`: 1 MiB). A longer one fails its request with class `body`, so a hostile
    /// or broken server can not make the client buffer without bound.
    pub max_event_bytes: Option<usize>,
    /// Do not open connections before each step (by default they are opened, and their
    /// set-up time reported apart, so TCP handshakes stay out of the latencies).
    pub no_preconnect: bool,
    /// Keep per-request records: every measured request gets an id (sent as
    /// `X-Request-Id`) and one record in this sink when it ends.
    pub records: Option<RecordsTo>,
}

/// Where a run's per-request records go.
#[derive(Clone)]
pub struct RecordsTo {
    /// The sink.
    pub sink: Arc<dyn RecordSink>,
    /// Also keep each request's inter-token gaps.
    pub itl: bool,
}

impl std::fmt::Debug for RecordsTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordsTo").field("itl", &self.itl).finish()
    }
}

/// The finished steps of `prior` that a run of `plan` can keep.
fn resumable(plan: &Plan, prior: Option<&Results>) -> Vec<StepResult> {
    let Some(prior) = prior else {
        return Vec::new();
    };
    let mut same = prior.metadata.plan.clone();
    same.parallelism.start_at = plan.parallelism.start_at;
    if same != *plan || plan.load.saturation.is_some() {
        return Vec::new();
    }
    prior
        .steps
        .iter()
        .take_while(|s| !s.interrupted)
        .take(plan.points().len())
        .cloned()
        .collect()
}

/// [`run_plan`] with [`RunOptions`].
pub async fn run_plan_with(
    plan: &Plan,
    options: &RunOptions,
    cancel: CancellationToken,
    observer: &mut dyn Observer,
) -> anyhow::Result<Results> {
    plan.validate()?;
    let mut config = ClientConfig::new(
        &plan.target,
        plan.workload.api,
        plan.workload.stream,
        plan.load.request_timeout,
    );
    if let Some(limit) = options.max_event_bytes {
        anyhow::ensure!(limit >= 1, "the event size limit must be at least 1 byte");
        config.max_event_bytes = limit;
    }
    let client = Client::new(&config)?;
    let tokenizer = match &options.tokenizer {
        Some(path) => Some(load_tokenizer(path)?),
        None => None,
    };
    let workload = Arc::new(RequestSet::prepare_with(
        plan,
        prompt_count(plan),
        tokenizer.as_ref(),
    )?);
    let par = &plan.parallelism;
    let (origin, started_at) = (std::time::Instant::now(), Utc::now());
    let records = options.records.as_ref().map(|r| {
        r.sink.start(&RecordsHeader {
            inferops_records: RECORDS_VERSION,
            started_at,
            clock: CLOCK.into(),
            url: plan.target.url.clone(),
            model: plan.target.model.clone(),
            pod: par.index,
        });
        // Ids unique across runs and pods: start time (ms, hex), pod, sequence.
        let prefix = format!("{:x}-{}", started_at.timestamp_millis(), par.index);
        Arc::new(Recorder::new(
            r.sink.clone(),
            origin,
            &plan.target.model,
            r.itl,
            prefix,
        ))
    });
    let ctx = StepContext {
        client,
        workload,
        // Pods of a split run start at different prompts.
        next_prompt: Arc::new(AtomicU64::new(u64::from(par.index) * 7919)),
        cancel: cancel.clone(),
        records,
    };
    let kept = resumable(plan, options.resume.as_ref());
    let mut results = Results {
        metadata: Metadata {
            started_at,
            ..Metadata::new(plan)
        },
        summary: Summary::of(&kept, plan.load.max_error_rate),
        steps: kept,
    };
    if let Some(prior) = options
        .resume
        .as_ref()
        .filter(|_| !results.steps.is_empty())
    {
        results.metadata.started_at = prior.metadata.started_at;
    }
    if let Some(at) = par.start_at {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let mut runner = Runner {
        plan,
        preconnect: !options.no_preconnect,
        ctx,
        observer,
        results: &mut results,
    };
    match (&plan.load.mode, &plan.load.saturation) {
        (mode, Some(sat)) => runner.saturation(*mode, sat).await,
        _ => {
            let done = runner.results.steps.len();
            for point in plan.points().into_iter().skip(done) {
                if cancel.is_cancelled() {
                    break;
                }
                let step = runner.step(point).await;
                if step.completed == 0 && step.failed > 0 {
                    // Every request failed: the next (heavier) steps would only fail again.
                    runner.results.summary.stopped_early = Some(format!(
                        "every request of {point} failed; later steps skipped"
                    ));
                    break;
                }
            }
        }
    }
    results.metadata.status = if cancel.is_cancelled() {
        RunStatus::Interrupted
    } else {
        RunStatus::Completed
    };
    results.metadata.finished_at = Some(Utc::now());
    Ok(results)
}

struct Runner<'a> {
    plan: &'a Plan,
    preconnect: bool,
    ctx: StepContext,
    observer: &'a mut dyn Observer,
    results: &'a mut Results,
}

impl Runner<'_> {
    /// Runs one whole-run load point (this process's share of it), records and reports it.
    async fn step(&mut self, point: LoadPoint) -> StepResult {
        let plan = self.plan;
        let par = &plan.parallelism;
        let index = self.results.steps.len();
        // A trace step's point is its speed-up; it runs (and is recorded) at the trace's
        // offered rate at that speed-up.
        let (point, trace_speedup) = match (&plan.load.trace, point) {
            (Some(_), LoadPoint::Rate(speedup)) => {
                let rate = self.ctx.workload.trace_rate().unwrap_or(0.0)
                    * f64::from(par.count.max(1))
                    * speedup;
                (
                    LoadPoint::Rate((rate * 1000.0).round() / 1000.0),
                    Some(speedup),
                )
            }
            _ => (point, None),
        };
        let spec = StepSpec {
            point: point.share(par),
            requests: plan
                .requests_per_step()
                .map(|r| share_u64(r, par.index, par.count)),
            duration: plan.load.duration_per_step,
            warmup: plan.load.warmup,
            arrival: plan.load.arrival,
            max_in_flight: plan.load.max_in_flight,
            seed: plan
                .workload
                .seed
                .wrapping_add(index as u64)
                .wrapping_add(u64::from(par.index) << 32),
            goodput_slo: plan.load.goodput_slo,
            preconnect: self.preconnect,
            ramp: plan.load.ramp,
            trace_speedup,
        };
        let trials = plan.load.trials.max(1);
        let mut parts = Vec::with_capacity(trials as usize);
        let mut sessions = 0;
        for trial in 0..trials {
            let slot = index * trials as usize + trial as usize;
            if let Some(at) = plan.step_slot(slot) {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    _ = self.ctx.cancel.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if trial > 0 && self.ctx.cancel.is_cancelled() {
                break;
            }
            let progress = Arc::new(StepProgress::default());
            self.observer.step_started(
                index,
                point,
                spec.requests,
                spec.duration,
                progress.clone(),
            );
            if let Some(r) = &self.ctx.records {
                r.set_step(index, trial);
            }
            let spec = StepSpec {
                // Trials see different arrival gaps.
                seed: spec.seed.wrapping_add(u64::from(trial) << 48),
                ..spec.clone()
            };
            let (cpu0, t0) = (super::cpu::process_cpu(), std::time::Instant::now());
            let mut part = run_step(&self.ctx, &spec, progress.clone()).await;
            sessions += progress.sessions.load(Ordering::Relaxed);
            if let Some(r) = &self.ctx.records {
                r.flush();
            }
            // How busy the load generator itself was: near 1, its numbers are suspect.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let busy = (super::cpu::process_cpu() - cpu0).as_secs_f64();
            let wall = t0.elapsed().as_secs_f64();
            if wall > 0.0 {
                part.client_cpu_util = Some(((busy / wall / cores) * 1000.0).round() / 1000.0);
            }
            let interrupted = part.interrupted;
            parts.push(part);
            if interrupted {
                break;
            }
        }
        let mut step = match combine_trials(&parts) {
            Ok(s) => s,
            // Trials of one step always merge; keep the first rather than lose the step.
            Err(_) => parts.swap_remove(0),
        };
        let mut workload = StepWorkload::of(plan, Some(self.ctx.workload.mean_lengths()));
        if let Some(turns) = self.ctx.workload.mean_turns() {
            let (input, output) = self.ctx.workload.mean_lengths();
            workload.mean_input_tokens = Some((input * 1000.0).round() / 1000.0);
            workload.mean_output_tokens = Some((output * 1000.0).round() / 1000.0);
            workload.mean_turns_per_session = Some((turns * 1000.0).round() / 1000.0);
            workload.sessions = Some(sessions);
        }
        workload.trace_speedup = trace_speedup;
        step.workload = Some(workload);
        self.results.steps.push(step.clone());
        let old = std::mem::replace(
            &mut self.results.summary,
            Summary::of(&self.results.steps, plan.load.max_error_rate),
        );
        self.results.summary.saturation = old.saturation;
        self.results.summary.stopped_early = old.stopped_early;
        self.observer.step_finished(self.results);
        step
    }

    /// Runs one probe of a search and records it; `None` when the step was interrupted.
    async fn probe(
        &mut self,
        point: LoadPoint,
        phase: ProbePhase,
        sat: &Saturation,
        outcome: &mut SaturationResult,
    ) -> Option<bool> {
        let step = self.step(point).await;
        if step.interrupted {
            return None;
        }
        let broken: Vec<String> = sat
            .slo
            .violations(&Measured::of_result(&step))
            .iter()
            .map(ToString::to_string)
            .collect();
        outcome.probes.push(SaturationProbe {
            step: self.results.steps.len() - 1,
            load: point,
            phase,
            held: broken.is_empty(),
            broken_by: broken.clone(),
            achieved_request_rate: step
                .achieved_request_rate
                .unwrap_or(step.request_throughput),
        });
        Some(broken.is_empty())
    }

    /// The saturation search: grow the load by `stepFactor` from the start until the SLO
    /// breaks (or `max` is reached), shrinking instead when the start already breaks; then
    /// bisect between the highest load that held and the lowest that broke until
    /// `(broken - held) / held <= tolerance`. Every probe is a step of the results.
    async fn saturation(&mut self, mode: Mode, sat: &Saturation) {
        let mut outcome = SaturationResult {
            highest_ok_rate: None,
            first_broken_rate: None,
            broken_by: Vec::new(),
            highest_ok_concurrency: None,
            first_broken_concurrency: None,
            bracket_width: None,
            tolerance: sat.tolerance,
            converged: false,
            probes: Vec::new(),
        };
        let space = Space::new(mode, sat);
        let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
        let mut x = space.start;
        let mut interrupted = false;
        // Grow (or shrink) until the bracket has both ends or a bound is hit.
        loop {
            let phase = if hi.is_some() {
                ProbePhase::Shrink
            } else {
                ProbePhase::Grow
            };
            match self.probe(space.point(x), phase, sat, &mut outcome).await {
                None => {
                    interrupted = true;
                    break;
                }
                Some(true) => lo = Some(x),
                Some(false) => hi = Some(x),
            }
            self.publish(&space, lo, hi, &mut outcome);
            if self.ctx.cancel.is_cancelled() || outcome.probes.len() >= MAX_PROBES {
                break;
            }
            match (lo, hi) {
                (Some(_), Some(_)) => break,
                (Some(l), None) if l >= space.max => break,
                (Some(l), None) => x = space.grow(l),
                (None, Some(h)) => match space.shrink(h) {
                    Some(next) => x = next,
                    None => break,
                },
                (None, None) => break,
            }
        }
        // Bisect.
        while !interrupted
            && !self.ctx.cancel.is_cancelled()
            && outcome.probes.len() < MAX_PROBES
            && let (Some(l), Some(h)) = (lo, hi)
        {
            let Some(mid) = space.mid(l, h, sat.tolerance) else {
                break;
            };
            match self
                .probe(space.point(mid), ProbePhase::Bisect, sat, &mut outcome)
                .await
            {
                None => break,
                Some(true) => lo = Some(mid),
                Some(false) => hi = Some(mid),
            }
            self.publish(&space, lo, hi, &mut outcome);
        }
        self.publish(&space, lo, hi, &mut outcome);
        self.observer.step_finished(self.results);
    }

    /// Writes the bracket so far into the summary.
    fn publish(
        &mut self,
        space: &Space,
        lo: Option<f64>,
        hi: Option<f64>,
        outcome: &mut SaturationResult,
    ) {
        match space.mode {
            Mode::Rate => {
                outcome.highest_ok_rate = lo;
                outcome.first_broken_rate = hi;
            }
            Mode::Concurrency => {
                outcome.highest_ok_concurrency = lo.map(|v| v as u32);
                outcome.first_broken_concurrency = hi.map(|v| v as u32);
            }
        }
        outcome.broken_by = hi
            .and_then(|h| {
                outcome
                    .probes
                    .iter()
                    .rev()
                    .find(|p| (p.load.value() - h).abs() < 1e-9)
            })
            .map(|p| p.broken_by.clone())
            .unwrap_or_default();
        outcome.bracket_width = match (lo, hi) {
            (Some(l), Some(h)) if l > 0.0 => Some(((h - l) / l * 10_000.0).round() / 10_000.0),
            _ => None,
        };
        outcome.converged =
            matches!((lo, hi), (Some(l), Some(h)) if space.mid(l, h, space.tolerance).is_none());
        self.results.summary.saturation = Some(outcome.clone());
    }
}

/// Most probes one search runs (a guard; a search with factor 2 and 5% converges in about
/// a dozen).
const MAX_PROBES: usize = 40;

/// Smallest rate a shrinking search tries, req/s.
const MIN_RATE: f64 = 0.01;

/// The load values a search moves over: rates (continuous) or concurrencies (integers).
struct Space {
    mode: Mode,
    start: f64,
    max: f64,
    factor: f64,
    tolerance: f64,
}

impl Space {
    fn new(mode: Mode, sat: &Saturation) -> Space {
        let (start, max) = match mode {
            Mode::Rate => (sat.start_rate, sat.max_rate),
            Mode::Concurrency => (
                f64::from(sat.start_concurrency),
                f64::from(sat.max_concurrency),
            ),
        };
        Space {
            mode,
            start,
            max,
            factor: sat.step_factor,
            tolerance: sat.tolerance,
        }
    }

    fn point(&self, v: f64) -> LoadPoint {
        match self.mode {
            Mode::Rate => LoadPoint::Rate(v),
            Mode::Concurrency => LoadPoint::Concurrency(v as u32),
        }
    }

    /// The next larger load: times the factor, at least one more in flight, at most `max`.
    fn grow(&self, v: f64) -> f64 {
        let next = match self.mode {
            Mode::Rate => round_rate(v * self.factor),
            Mode::Concurrency => (v * self.factor).ceil().max(v + 1.0),
        };
        next.min(self.max)
    }

    /// The next smaller load, `None` below the smallest sensible one.
    fn shrink(&self, v: f64) -> Option<f64> {
        match self.mode {
            Mode::Rate => Some(round_rate(v / self.factor)).filter(|&r| r >= MIN_RATE),
            Mode::Concurrency => Some((v / self.factor).floor().min(v - 1.0)).filter(|&c| c >= 1.0),
        }
    }

    /// The middle of the bracket, `None` once it is within `tolerance` (or, for
    /// concurrencies, the ends are adjacent).
    fn mid(&self, lo: f64, hi: f64, tolerance: f64) -> Option<f64> {
        if hi <= lo || (hi - lo) <= tolerance * lo {
            return None;
        }
        match self.mode {
            Mode::Rate => {
                let m = round_rate((lo + hi) / 2.0);
                (m > lo && m < hi).then_some(m)
            }
            Mode::Concurrency => {
                let m = ((lo + hi) / 2.0).floor();
                (m > lo && m < hi).then_some(m)
            }
        }
    }
}

/// A rate to three significant digits (readable load points, same as the next search's).
fn round_rate(r: f64) -> f64 {
    if r <= 0.0 || !r.is_finite() {
        return r;
    }
    let scale = 10f64.powi(2 - r.log10().floor() as i32);
    (r * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(mode: Mode) -> Space {
        Space::new(
            mode,
            &Saturation {
                start_rate: 20.0,
                max_rate: 100.0,
                start_concurrency: 4,
                max_concurrency: 64,
                ..Saturation::default()
            },
        )
    }

    #[test]
    fn rates_grow_to_the_bound_and_bisect_to_the_tolerance() {
        let s = space(Mode::Rate);
        assert_eq!(s.grow(20.0), 40.0);
        assert_eq!(s.grow(80.0), 100.0, "capped at maxRate");
        assert_eq!(s.shrink(20.0), Some(10.0));
        assert_eq!(s.shrink(0.015), None);
        // A server that holds up to 61 req/s: the bisection narrows 40..80 to within 5%.
        let (mut lo, mut hi) = (40.0, 80.0);
        let mut probes = 0;
        while let Some(m) = s.mid(lo, hi, 0.05) {
            if m <= 61.0 {
                lo = m
            } else {
                hi = m
            }
            probes += 1;
        }
        assert!(
            lo <= 61.0 && hi > 61.0 && (hi - lo) / lo <= 0.05,
            "{lo}..{hi}"
        );
        assert!(probes <= 6, "{probes}");
        assert_eq!(round_rate(61.2345), 61.2);
        assert_eq!(round_rate(0.012345), 0.0123);
    }

    #[test]
    fn concurrencies_move_in_integers() {
        let s = space(Mode::Concurrency);
        assert_eq!(s.grow(4.0), 8.0);
        assert_eq!(s.grow(1.0), 2.0);
        assert_eq!(s.grow(48.0), 64.0);
        assert_eq!(s.shrink(4.0), Some(2.0));
        assert_eq!(s.shrink(1.0), None);
        assert_eq!(s.mid(8.0, 16.0, 0.05), Some(12.0));
        assert_eq!(s.mid(12.0, 13.0, 0.05), None, "adjacent");
        assert_eq!(s.point(12.0), LoadPoint::Concurrency(12));
    }
}
