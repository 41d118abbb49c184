//! `BenchmarkRun.spec` -> the load generator's [`Plan`]: what the in-cluster load Job reads
//! from its ConfigMap and what `inferops bench -f RUN.yaml` runs locally. One mapping, so a
//! laptop run and a cluster run of the same file send the same requests.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::{self, BenchmarkRunSpec, DatasetKind, TokenLengthSpec};
use crate::contract::plan::{
    Api, Arrival, Conversation, Dataset, GoodputSlo, Load, Mode, Parallelism, Plan, Ramp,
    RampShape, Saturation, SharedPrefix, Slo, TRACE_BLOCK_TOKENS, Target, TokenCount, TraceReplay,
    Workload,
};

/// Where the dataset ConfigMap key is mounted in load pods.
pub const DATASET_DIR: &str = "/etc/inferops/dataset";

/// Why a spec cannot become a plan (the CRD's CEL rules catch these first; this guards
/// local files and objects created before a rule existed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A length of the API (`{tokens, min, max, stddev}`) as a [`TokenCount`].
pub fn token_count(l: &TokenLengthSpec, field: &str) -> Result<TokenCount, PlanError> {
    match (l.tokens, l.min, l.max, l.stddev) {
        (Some(mean), min, max, Some(stddev)) => Ok(TokenCount::Normal {
            mean,
            stddev,
            min,
            max,
        }),
        (Some(n), None, None, None) => Ok(TokenCount::Fixed(n)),
        (None, Some(min), Some(max), None) if min <= max => Ok(TokenCount::Range { min, max }),
        _ => Err(PlanError {
            field: field.into(),
            message: "set tokens; or min and max (uniform); or tokens and stddev, optionally \
                      with min and max (normal)"
                .into(),
        }),
    }
}

/// `tokens` with the optional `max` (uniform range) and `stddev` (normal) of a workload.
fn length(tokens: u32, max: Option<u32>, stddev: Option<u32>) -> TokenCount {
    match (max, stddev) {
        (max, Some(stddev)) => TokenCount::Normal {
            mean: tokens,
            stddev,
            min: None,
            max,
        },
        (Some(max), None) if max > tokens => TokenCount::Range { min: tokens, max },
        _ => TokenCount::Fixed(tokens),
    }
}

/// The plan for `spec` against the resolved `url` / `model`, split over `pods` load pods
/// that start together at `start_at`.
pub fn plan(
    spec: &BenchmarkRunSpec,
    url: &str,
    model: &str,
    pods: u32,
    start_at: Option<DateTime<Utc>>,
) -> Result<Plan, PlanError> {
    let w = &spec.workload;
    let file = || match (&w.dataset.path, &w.dataset.config_map_ref) {
        (Some(p), _) => Ok(PathBuf::from(p)),
        (None, Some(r)) => Ok(PathBuf::from(DATASET_DIR).join(&r.key)),
        (None, None) => Err(PlanError {
            field: "spec.workload.dataset".into(),
            message: "kind sharegpt, trace or jsonl needs path or configMapRef".into(),
        }),
    };
    let dataset = match w.dataset.kind {
        DatasetKind::Random => Dataset::Random,
        DatasetKind::Sharegpt => Dataset::Sharegpt {
            path: file()?,
            output_from_dataset: false,
        },
        DatasetKind::Trace => Dataset::Trace {
            path: file()?,
            block_tokens: w.dataset.block_tokens.unwrap_or(TRACE_BLOCK_TOKENS),
        },
        DatasetKind::Jsonl => Dataset::Jsonl { path: file()? },
        DatasetKind::SharedPrefix => {
            let field = "spec.workload.dataset.sharedPrefix";
            let sp = w.dataset.shared_prefix.as_ref().ok_or_else(|| PlanError {
                field: field.into(),
                message: "kind sharedPrefix needs sharedPrefix".into(),
            })?;
            Dataset::SharedPrefix(SharedPrefix {
                groups: sp.groups,
                prompts_per_group: sp.prompts_per_group,
                prefix_tokens: sp.prefix_tokens,
                suffix_tokens: token_count(&sp.suffix_tokens, &format!("{field}.suffixTokens"))?,
            })
        }
    };
    let conversation = match &w.conversation {
        Some(c) => {
            let field = "spec.workload.conversation";
            Some(Conversation {
                turns: match c.turns_max {
                    Some(max) if max > c.turns => TokenCount::Range { min: c.turns, max },
                    _ => TokenCount::Fixed(c.turns),
                },
                user_tokens: c
                    .user_tokens
                    .as_ref()
                    .map(|u| token_count(u, &format!("{field}.userTokens")))
                    .transpose()?,
                think_time: c.think_time.map(Into::into).unwrap_or_default(),
                think_time_max: c.think_time_max.map(Into::into),
            })
        }
        None => None,
    };
    let input_tokens = length(w.input_tokens, w.input_tokens_max, w.input_tokens_stddev);
    let output_tokens = length(w.output_tokens, w.output_tokens_max, w.output_tokens_stddev);
    let l = &spec.load;
    let mode = match l.mode {
        api::LoadMode::Concurrency => Mode::Concurrency,
        api::LoadMode::Rate => Mode::Rate,
    };
    if l.saturation.is_some() && pods > 1 {
        return Err(PlanError {
            field: "spec.loadgen.parallelism".into(),
            message: "must be 1 with spec.load.saturation: a split search would judge the SLO on each pod's share instead of the merged results".into(),
        });
    }
    let base = Saturation::default();
    let saturation = l.saturation.as_ref().map(|s| Saturation {
        slo: Slo::from_spec(&s.slo, Some(spec.max_error_rate)),
        start_rate: s
            .start_rate
            .or_else(|| l.rate.last().copied())
            .unwrap_or(base.start_rate),
        max_rate: s.max_rate.unwrap_or(base.max_rate),
        step_factor: s.factor.unwrap_or(base.step_factor),
        tolerance: s.tolerance.unwrap_or(base.tolerance),
        start_concurrency: s
            .start_concurrency
            .or_else(|| l.concurrency.last().copied())
            .unwrap_or(base.start_concurrency),
        max_concurrency: s.max_concurrency.unwrap_or(base.max_concurrency),
    });
    let defaults = Load::default();
    let requests_per_step = match (l.requests_per_step, l.duration_per_step) {
        (Some(n), _) => Some(u64::from(n)),
        // A trace replay sends the whole trace unless bounded.
        (None, _) if !l.trace_speedups.is_empty() => None,
        (None, Some(_)) => None,
        (None, None) => Some(200),
    };
    Ok(Plan {
        target: Target {
            url: url.to_string(),
            model: model.to_string(),
            wait: super::plan::DEFAULT_TARGET_WAIT,
        },
        workload: Workload {
            api: match w.api {
                api::ApiKind::Completions => Api::Completions,
                api::ApiKind::Chat => Api::Chat,
            },
            dataset,
            input_tokens,
            output_tokens,
            ignore_eos: w.ignore_eos,
            seed: w.seed,
            stream: w.stream,
            num_prompts: None,
            conversation,
            models: w
                .models
                .iter()
                .map(|m| crate::contract::plan::ModelWeight {
                    name: m.name.clone(),
                    weight: m.weight,
                })
                .collect(),
            cancel: w.cancel.as_ref().map(|c| crate::contract::plan::Cancel {
                fraction: c.fraction,
                after: c.after.into(),
            }),
        },
        load: Load {
            mode,
            concurrency: l.concurrency.clone(),
            rate: l.rate.clone(),
            arrival: match l.arrival {
                api::Arrival::Poisson => Arrival::Poisson,
                api::Arrival::Constant => Arrival::Constant,
                api::Arrival::Gamma => Arrival::Gamma {
                    burstiness: l.burstiness.unwrap_or(1.0),
                },
            },
            requests_per_step,
            duration_per_step: l.duration_per_step.map(Into::into),
            warmup: l.warmup.map(Into::into).unwrap_or_default(),
            request_timeout: l
                .request_timeout
                .map(Into::into)
                .unwrap_or(defaults.request_timeout),
            max_error_rate: spec.max_error_rate,
            goodput_slo: l.goodput_slo.as_ref().map(GoodputSlo::from_spec),
            saturation,
            trace: (!l.trace_speedups.is_empty()).then(|| TraceReplay {
                speedups: l.trace_speedups.clone(),
            }),
            ramp: l.ramp.as_ref().map(|r| Ramp {
                shape: match r.shape {
                    api::RampShape::Linear => RampShape::Linear,
                    api::RampShape::Exponential => RampShape::Exponential,
                },
                duration: r.duration.into(),
                measured: r.measured,
            }),
            trials: l.trials.unwrap_or(1),
            records: l.records.as_ref().filter(|r| r.enabled).map(|r| {
                crate::contract::plan::RecordsPlan {
                    max_bytes: r
                        .max_bytes
                        .unwrap_or(crate::contract::plan::DEFAULT_RECORDS_BYTES),
                    itl: r.itl,
                }
            }),
            ..defaults
        },
        parallelism: Parallelism {
            index: 0,
            count: pods.max(1),
            start_at,
        },
        // The controller adds the Prometheus scope (it knows the namespace and the pods).
        prometheus: None,
    })
}

/// Slack on top of a plan's own length before its Job's `activeDeadlineSeconds` stops it:
/// pod start-up (image pull, scheduling), the start barrier of split runs and one restart.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(15 * 60);

/// Steps a saturation search runs at most: every rate from `startRate` up to `maxRate`.
fn saturation_steps(s: &crate::contract::plan::Saturation) -> u32 {
    if s.step_factor <= 1.0 || s.start_rate <= 0.0 || s.max_rate < s.start_rate {
        return 1;
    }
    let n = ((s.max_rate / s.start_rate).ln() / s.step_factor.ln()).floor();
    (n.max(0.0) as u32).saturating_add(1)
}

/// The longest a plan runs when its server answers, with [`DEADLINE_SLACK`]: for each step
/// its warmup, then its `durationPerStep`, or for request-counted steps every request at
/// the request timeout (closed loop: one timeout per round of `concurrency` requests; open
/// loop: the send schedule plus one timeout), for conversations plus a session's longest
/// think times. The default `activeDeadlineSeconds` of the
/// load Job, so pods that hang cannot hold the run (or the GPUs) forever.
pub fn deadline(plan: &Plan) -> Duration {
    let l = &plan.load;
    let timeout = l.request_timeout;
    let step = |point: crate::api::LoadPoint| -> Duration {
        let measured =
            match (l.duration_per_step, plan.requests_per_step()) {
                (Some(d), _) => d + timeout,
                (None, Some(n)) => match point {
                    crate::api::LoadPoint::Concurrency(c) => timeout.saturating_mul(
                        n.div_ceil(u64::from(c.max(1))).min(u64::from(u32::MAX)) as u32,
                    ),
                    crate::api::LoadPoint::Rate(r) => {
                        Duration::from_secs_f64((n as f64 / r.max(1e-3)).min(1e7)) + timeout
                    }
                },
                (None, None) => timeout,
            };
        // A conversation's turns also wait their think times (a session's longest case).
        let thinking = plan
            .workload
            .conversation
            .as_ref()
            .map_or(Duration::ZERO, |c| {
                c.think_time_max
                    .unwrap_or(c.think_time)
                    .saturating_mul(c.turns.max())
            });
        (l.warmup + measured + thinking + l.step_slack).saturating_mul(l.trials.max(1))
    };
    let total: Duration = match &l.saturation {
        Some(s) => {
            step(crate::api::LoadPoint::Rate(s.start_rate)).saturating_mul(saturation_steps(s))
        }
        None => plan.points().into_iter().map(step).sum(),
    };
    // The load pods first wait for the target to answer.
    plan.target.wait + total + DEADLINE_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BenchmarkRun;

    fn example(name: &str) -> BenchmarkRunSpec {
        let path = format!("{}/manifests/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        let run: BenchmarkRun =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        run.spec
    }

    #[test]
    fn concurrency_sweep_maps_every_field() {
        let p = plan(
            &example("bench-concurrency-sweep.yaml"),
            "http://q:8000",
            "qwen",
            1,
            None,
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.load.concurrency, [1, 2, 4, 8, 16, 32]);
        assert_eq!(p.load.mode, Mode::Concurrency);
        assert_eq!(p.load.requests_per_step, Some(200));
        assert_eq!(p.load.warmup, Duration::from_secs(10));
        assert_eq!(p.load.request_timeout, Duration::from_secs(60));
        assert_eq!(p.workload.input_tokens, TokenCount::Fixed(256));
        assert_eq!(p.workload.output_tokens, TokenCount::Fixed(128));
        assert!(p.workload.ignore_eos);
        assert_eq!(p.workload.seed, 42);
        assert_eq!(p.target.model, "qwen");
    }

    #[test]
    fn shared_prefix_example_maps_to_the_dataset() {
        let p = plan(
            &example("bench-shared-prefix.yaml"),
            "http://q:8000",
            "qwen",
            1,
            None,
        )
        .unwrap();
        p.validate().unwrap();
        let Dataset::SharedPrefix(sp) = p.workload.dataset else {
            panic!("{:?}", p.workload.dataset)
        };
        assert_eq!(
            (sp.groups, sp.prompts_per_group, sp.prefix_tokens),
            (8, 16, 512)
        );
        assert_eq!(
            sp.suffix_tokens,
            TokenCount::Normal {
                mean: 128,
                stddev: 32,
                min: Some(32),
                max: Some(256)
            }
        );
    }

    #[test]
    fn lengths_map_to_fixed_uniform_and_normal() {
        let l = |tokens, min, max, stddev| TokenLengthSpec {
            tokens,
            min,
            max,
            stddev,
        };
        assert_eq!(
            token_count(&l(Some(5), None, None, None), "f"),
            Ok(TokenCount::Fixed(5))
        );
        assert_eq!(
            token_count(&l(None, Some(2), Some(9), None), "f"),
            Ok(TokenCount::Range { min: 2, max: 9 })
        );
        assert!(matches!(
            token_count(&l(Some(5), None, Some(9), Some(2)), "f"),
            Ok(TokenCount::Normal {
                mean: 5,
                stddev: 2,
                min: None,
                max: Some(9)
            })
        ));
        for bad in [
            l(None, None, None, None),
            l(None, Some(9), Some(2), None),
            l(Some(5), Some(1), None, None),
            l(None, None, None, Some(3)),
        ] {
            assert_eq!(token_count(&bad, "f").unwrap_err().field, "f", "{bad:?}");
        }
        assert_eq!(length(100, Some(50), None), TokenCount::Fixed(100));
        assert_eq!(
            length(100, None, Some(10)),
            TokenCount::Normal {
                mean: 100,
                stddev: 10,
                min: None,
                max: None
            }
        );
    }

    #[test]
    fn saturation_search_maps_and_refuses_a_split() {
        let start = Utc::now();
        let spec = example("bench-rate-saturation.yaml");
        let p = plan(&spec, "http://q:8000", "qwen", 1, Some(start)).unwrap();
        p.validate().unwrap();
        let s = p.load.saturation.as_ref().unwrap();
        assert_eq!(s.slo.ttft_p95, Some(Duration::from_millis(500)));
        assert_eq!(s.slo.itl_p95, Some(Duration::from_millis(50)));
        assert_eq!(s.start_rate, 20.0);
        assert_eq!(s.max_rate, 100.0);
        assert_eq!(s.tolerance, 0.05);
        assert_eq!(p.load.requests_per_step, None, "duration-based steps");
        assert_eq!(p.load.duration_per_step, Some(Duration::from_secs(60)));
        assert_eq!(p.parallelism.start_at, Some(start));
        let err = plan(&spec, "http://q:8000", "qwen", 3, None).unwrap_err();
        assert_eq!(err.field, "spec.loadgen.parallelism");
    }

    #[test]
    fn a_sweep_splits_over_pods() {
        let p = plan(
            &example("bench-concurrency-sweep.yaml"),
            "http://q:8000",
            "qwen",
            3,
            None,
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.parallelism.count, 3);
    }

    #[test]
    fn deadline_follows_the_plan_length() {
        // 6 steps of 200 requests at concurrency 1..32, 60 s timeout, 10 s warmup.
        let p = plan(
            &example("bench-concurrency-sweep.yaml"),
            "http://q:8000",
            "qwen",
            1,
            None,
        )
        .unwrap();
        let rounds: u64 = [1u64, 2, 4, 8, 16, 32]
            .iter()
            .map(|c| 200u64.div_ceil(*c))
            .sum();
        let per_step_extra = p.load.warmup + p.load.step_slack;
        assert_eq!(
            deadline(&p),
            p.target.wait
                + p.load.request_timeout * rounds as u32
                + per_step_extra * 6
                + DEADLINE_SLACK
        );
        // Time-bounded steps: warmup + duration + one timeout to drain, per step.
        let mut p = p;
        p.load.requests_per_step = None;
        p.load.duration_per_step = Some(Duration::from_secs(60));
        p.load.concurrency = vec![1, 2];
        let one =
            p.load.warmup + Duration::from_secs(60) + p.load.request_timeout + p.load.step_slack;
        assert_eq!(deadline(&p), p.target.wait + one * 2 + DEADLINE_SLACK);
        // A saturation search: 20, 40, 80 req/s up to 100.
        let p = plan(
            &example("bench-rate-saturation.yaml"),
            "http://q:8000",
            "qwen",
            1,
            None,
        )
        .unwrap();
        let one = p.load.warmup
            + p.load.duration_per_step.unwrap()
            + p.load.request_timeout
            + p.load.step_slack;
        assert_eq!(deadline(&p), p.target.wait + one * 3 + DEADLINE_SLACK);
    }

    #[test]
    fn multi_turn_and_trace_examples_map_to_the_plan() {
        let p = plan(
            &example("bench-multi-turn.yaml"),
            "http://q",
            "qwen",
            1,
            None,
        )
        .unwrap();
        p.validate().unwrap();
        let c = p.workload.conversation.as_ref().unwrap();
        assert_eq!(c.turns, TokenCount::Fixed(4));
        assert_eq!(c.think_time, Duration::from_secs(1));
        assert_eq!(c.think_time_max, Some(Duration::from_secs(3)));
        assert_eq!(
            c.user_tokens,
            Some(TokenCount::Normal {
                mean: 64,
                stddev: 16,
                min: Some(16),
                max: Some(128)
            })
        );
        assert_eq!(p.workload.api, Api::Chat);
        let mut without = p.clone();
        without.workload.conversation = None;
        assert_eq!(
            deadline(&p),
            deadline(&without) + Duration::from_secs(2 * 4 * 3),
            "two steps, each with up to four think times of 3 s"
        );
        let p = plan(
            &example("bench-trace-replay.yaml"),
            "http://q",
            "qwen",
            2,
            None,
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(
            p.workload.dataset,
            Dataset::Trace {
                path: PathBuf::from("/etc/inferops/dataset/trace.jsonl"),
                block_tokens: 512
            }
        );
        assert_eq!(p.load.trace.as_ref().unwrap().speedups, [2.0]);
        assert_eq!(p.load.mode, Mode::Rate);
        assert_eq!(
            p.requests_per_step(),
            None,
            "the whole trace, capped by time"
        );
        assert_eq!(p.points().len(), 1);
        let one =
            p.load.warmup + Duration::from_secs(300) + p.load.request_timeout + p.load.step_slack;
        assert_eq!(deadline(&p), p.target.wait + one + DEADLINE_SLACK);
    }

    #[test]
    fn ramps_map_to_the_plan() {
        let mut spec = example("bench-concurrency-sweep.yaml");
        spec.load.mode = api::LoadMode::Rate;
        spec.load.rate = vec![4.0];
        spec.load.ramp = Some(api::RampSpec {
            shape: api::RampShape::Exponential,
            duration: Duration::from_secs(30).into(),
            measured: true,
        });
        let p = plan(&spec, "http://q", "qwen", 1, None).unwrap();
        assert_eq!(
            p.load.ramp,
            Some(Ramp {
                shape: RampShape::Exponential,
                duration: Duration::from_secs(30),
                measured: true
            })
        );
    }

    #[test]
    fn trials_and_records_reach_the_plan_and_trials_lengthen_the_deadline() {
        let mut spec = example("bench-concurrency-sweep.yaml");
        let one = plan(&spec, "http://q:8000", "qwen", 1, None).unwrap();
        assert_eq!((one.load.trials, one.load.records), (1, None));
        spec.load.trials = Some(3);
        spec.load.records = Some(crate::api::RecordsSpec {
            enabled: true,
            max_bytes: None,
            itl: true,
        });
        let three = plan(&spec, "http://q:8000", "qwen", 1, None).unwrap();
        assert_eq!(three.load.trials, 3);
        let r = three.load.records.unwrap();
        assert_eq!(
            (r.max_bytes, r.itl),
            (crate::contract::plan::DEFAULT_RECORDS_BYTES, true)
        );
        let fixed = DEADLINE_SLACK + one.target.wait;
        assert_eq!(deadline(&three) - fixed, (deadline(&one) - fixed) * 3);
        spec.load.records.as_mut().unwrap().enabled = false;
        assert_eq!(
            plan(&spec, "http://q:8000", "qwen", 1, None)
                .unwrap()
                .load
                .records,
            None
        );
    }

    #[test]
    fn a_configmap_dataset_is_read_from_the_mount() {
        let mut spec = example("bench-concurrency-sweep.yaml");
        spec.workload.dataset = crate::api::DatasetSpec {
            kind: DatasetKind::Sharegpt,
            config_map_ref: Some(crate::api::ConfigMapKeyRef {
                name: "sharegpt".into(),
                key: "sharegpt.json".into(),
            }),
            path: None,
            shared_prefix: None,
            block_tokens: None,
        };
        let p = plan(&spec, "http://q:8000", "qwen", 1, None).unwrap();
        match p.workload.dataset {
            Dataset::Sharegpt { path, .. } => {
                assert_eq!(path, PathBuf::from("/etc/inferops/dataset/sharegpt.json"))
            }
            other => panic!("{other:?}"),
        }
    }
}
