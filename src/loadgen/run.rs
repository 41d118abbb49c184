//! Runs a whole [`Plan`]: a fixed sweep over load points, or a saturation search that raises
//! the rate until an SLO breaks. Reports each finished step to an [`Observer`] (progress bars,
//! rewriting the results file) and always returns what was measured, also when cancelled.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::client::{Client, ClientConfig};
use super::schedule::{StepContext, StepProgress, StepSpec, run_step};
use super::workload::{RequestSet, load_tokenizer};
use crate::contract::plan::{LoadPoint, Mode, Plan, Saturation, share_u64};
use crate::contract::results::{
    Metadata, Results, RunStatus, SaturationResult, StepResult, Summary,
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
    let ctx = StepContext {
        client,
        workload,
        // Pods of a split run start at different prompts.
        next_prompt: Arc::new(AtomicU64::new(u64::from(par.index) * 7919)),
        cancel: cancel.clone(),
    };
    let kept = resumable(plan, options.resume.as_ref());
    let mut results = Results {
        metadata: Metadata::new(plan),
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
        (Mode::Rate, Some(sat)) => runner.saturation(sat).await,
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
            preconnect: self.preconnect,
        };
        if let Some(at) = plan.step_slot(index) {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = self.ctx.cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let progress = Arc::new(StepProgress::default());
        self.observer
            .step_started(index, point, spec.requests, spec.duration, progress.clone());
        let (cpu0, t0) = (super::cpu::process_cpu(), std::time::Instant::now());
        let mut step = run_step(&self.ctx, &spec, progress).await;
        // How busy the load generator itself was: near 1, its numbers are suspect.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = (super::cpu::process_cpu() - cpu0).as_secs_f64();
        let wall = t0.elapsed().as_secs_f64();
        if wall > 0.0 {
            step.client_cpu_util = Some(((busy / wall / cores) * 1000.0).round() / 1000.0);
        }
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

    async fn saturation(&mut self, sat: &Saturation) {
        let mut outcome = SaturationResult {
            highest_ok_rate: None,
            first_broken_rate: None,
            broken_by: Vec::new(),
        };
        let mut rate = sat.start_rate;
        while rate <= sat.max_rate * (1.0 + 1e-9) && !self.ctx.cancel.is_cancelled() {
            let step = self.step(LoadPoint::Rate(rate)).await;
            if step.interrupted {
                break;
            }
            let broken: Vec<String> = sat
                .slo
                .violations(&Measured::of_result(&step))
                .iter()
                .map(ToString::to_string)
                .collect();
            if broken.is_empty() {
                outcome.highest_ok_rate = Some(rate);
            } else {
                outcome.first_broken_rate = Some(rate);
                outcome.broken_by = broken;
                break;
            }
            self.results.summary.saturation = Some(outcome.clone());
            rate *= sat.step_factor;
        }
        self.results.summary.saturation = Some(outcome);
        self.observer.step_finished(self.results);
    }
}
