//! The one SLO check: the objectives a step must meet to count as "held", and the rule that
//! judges a step against them. The saturation search (on raw results) and the verdict (on
//! status rows) both call [`Slo::violations`], so they can never disagree.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::outcome::Metrics;
use super::plan::opt_duration;
use super::results::StepResult;
pub use crate::api::SloTerm;
use crate::api::{GoodputSloSpec, SloSpec, StepStatus};

/// Per-request bounds (any subset), like vLLM bench's `--goodput ttft:200 tpot:10`: a
/// request is "good" when it succeeded and met every bound that is set. Goodput is the rate
/// of good requests (and of their output tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoodputSlo {
    /// Time to first token of the request.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttft: Option<Duration>,
    /// Time per output token after the first.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub tpot: Option<Duration>,
    /// End-to-end latency.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub e2e: Option<Duration>,
}

impl GoodputSlo {
    /// True when at least one bound is set.
    pub fn is_set(&self) -> bool {
        self.ttft.is_some() || self.tpot.is_some() || self.e2e.is_some()
    }

    /// Whether a successful request met every bound. A TPOT bound holds for a request
    /// without TPOT (one token, or not streamed).
    pub fn met(&self, m: &Metrics) -> bool {
        let us = |d: Duration| d.as_micros() as u64;
        self.ttft.is_none_or(|b| m.ttft_us <= us(b))
            && self.e2e.is_none_or(|b| m.e2el_us <= us(b))
            && self
                .tpot
                .is_none_or(|b| m.tpot_us().is_none_or(|t| t <= us(b)))
    }

    /// From a BenchmarkRun's `load.goodputSlo`.
    pub fn from_spec(spec: &GoodputSloSpec) -> GoodputSlo {
        GoodputSlo {
            ttft: spec.ttft.map(Into::into),
            tpot: spec.tpot.map(Into::into),
            e2e: spec.e2e.map(Into::into),
        }
    }

    /// Parses `ttft=200ms,tpot=10ms,e2e=2s` (any subset; `:` works too, bare numbers are ms).
    pub fn parse(text: &str) -> Result<GoodputSlo, String> {
        let mut slo = GoodputSlo::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .or_else(|| part.split_once(':'))
                .ok_or_else(|| format!("{part:?}: expected NAME=DURATION (ttft, tpot, e2e)"))?;
            let value = value.trim();
            let d = match value.parse::<f64>() {
                Ok(ms) if ms >= 0.0 && ms.is_finite() => Duration::from_secs_f64(ms / 1000.0),
                Ok(_) => return Err(format!("{part:?}: the bound must be >= 0")),
                Err(_) => humantime::parse_duration(value).map_err(|e| format!("{part:?}: {e}"))?,
            };
            match key.trim() {
                "ttft" => slo.ttft = Some(d),
                "tpot" => slo.tpot = Some(d),
                "e2e" | "e2el" => slo.e2e = Some(d),
                k => return Err(format!("{k:?}: unknown bound (use ttft, tpot or e2e)")),
            }
        }
        if !slo.is_set() {
            return Err("no bound given (e.g. ttft=200ms,tpot=10ms)".into());
        }
        Ok(slo)
    }
}

/// Latency and error objectives (any subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slo {
    /// Time to first token, 95th percentile.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttft_p95: Option<Duration>,
    /// Inter-token latency, 95th percentile.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub itl_p95: Option<Duration>,
    /// Highest acceptable failed/total ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Lowest acceptable goodput / throughput: the fraction of successful requests that met
    /// every per-request bound of `load.goodputSlo` (e.g. 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_goodput_ratio: Option<f64>,
}

/// What a step measured, as the SLO check needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Failed / (succeeded + failed); 0 without requests.
    pub error_rate: f64,
    /// Whether any request failed while none succeeded.
    pub only_failures: bool,
    /// TTFT p95 in ms; `None` when no request succeeded.
    pub ttft_p95_ms: Option<f64>,
    /// ITL p95 in ms; `None` when no request succeeded.
    pub itl_p95_ms: Option<f64>,
    /// Open loop: completions fell behind arrivals (see [`StepResult::falling_behind`]).
    pub falling_behind: bool,
    /// Open loop: requests arriving / finishing per second while they arrived.
    pub arrival_rate: Option<f64>,
    /// See `arrival_rate`.
    pub achieved_rate: Option<f64>,
    /// Goodput / throughput (good requests over successful ones); `None` without a goodput
    /// SLO or without successful requests.
    pub goodput_ratio: Option<f64>,
}

impl Measured {
    /// From a step of the raw results.
    pub fn of_result(step: &StepResult) -> Measured {
        let any = step.completed > 0;
        Measured {
            error_rate: step.error_rate(),
            only_failures: !any && step.failed > 0,
            ttft_p95_ms: any.then_some(step.p95_ttft_ms),
            itl_p95_ms: any.then_some(step.p95_itl_ms),
            falling_behind: step.falling_behind,
            arrival_rate: step.arrival_rate,
            achieved_rate: step.achieved_request_rate,
            goodput_ratio: step
                .good_requests
                .filter(|_| step.completed > 0)
                .map(|g| g as f64 / step.completed as f64),
        }
    }

    /// From a status row.
    pub fn of_status(step: &StepStatus) -> Measured {
        let total = step.succeeded + step.failed;
        Measured {
            error_rate: if total == 0 {
                0.0
            } else {
                step.failed as f64 / total as f64
            },
            only_failures: step.succeeded == 0 && step.failed > 0,
            ttft_p95_ms: step.ttft_ms.as_ref().map(|l| l.p95),
            itl_p95_ms: step.itl_ms.as_ref().map(|l| l.p95),
            falling_behind: step.falling_behind,
            arrival_rate: step.arrival_requests_per_second,
            achieved_rate: step.achieved_requests_per_second,
            goodput_ratio: step
                .goodput
                .as_ref()
                .filter(|_| step.succeeded > 0)
                .map(|g| g.good_requests as f64 / step.succeeded as f64),
        }
    }
}

/// A broken term with the measured value (`None`: nothing to measure) and its limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Violation {
    /// Which term.
    pub term: SloTerm,
    /// The step's value (ms, or a ratio for the error rate).
    pub value: Option<f64>,
    /// The objective (ms, or a ratio).
    pub limit: f64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.term, self.value) {
            (SloTerm::MaxErrorRate, v) => write!(
                f,
                "error rate {:.1}% > {:.1}%",
                v.unwrap_or(1.0) * 100.0,
                self.limit * 100.0
            ),
            (t, None) => write!(
                f,
                "{} unmeasured (no request succeeded), limit {:.1} ms",
                t, self.limit
            ),
            (SloTerm::MinGoodputRatio, v) => match v {
                Some(v) => write!(
                    f,
                    "minGoodputRatio {:.1}% < {:.1}% of requests met every per-request bound",
                    v * 100.0,
                    self.limit * 100.0
                ),
                None => write!(
                    f,
                    "minGoodputRatio unmeasured (no request succeeded or no goodputSlo), limit {:.1}%",
                    self.limit * 100.0
                ),
            },
            (SloTerm::FallingBehind, v) => write!(
                f,
                "fallingBehind: {:.1} req/s finished of {:.1} req/s arriving, latency growing through the step",
                v.unwrap_or(0.0),
                self.limit
            ),
            (t, Some(v)) => write!(f, "{t} {v:.1} ms > {:.1} ms", self.limit),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Slo {
    /// The objectives of a BenchmarkRun's `saturation.slo`; `default_error_rate` applies when
    /// the spec sets no `maxErrorRate`.
    pub fn from_spec(spec: &SloSpec, default_error_rate: Option<f64>) -> Slo {
        Slo {
            ttft_p95: spec.ttft_p95.map(Into::into),
            itl_p95: spec.itl_p95.map(Into::into),
            max_error_rate: spec.max_error_rate.or(default_error_rate),
            min_goodput_ratio: spec.min_goodput_ratio,
        }
    }

    /// True when at least one term is set.
    pub fn is_set(&self) -> bool {
        self.ttft_p95.is_some()
            || self.itl_p95.is_some()
            || self.max_error_rate.is_some()
            || self.min_goodput_ratio.is_some()
    }

    /// Every term the step breaks, error rate first. A latency term breaks when the step has
    /// no successful request to measure it on; a step of only failures breaks the error term.
    /// An open-loop step that fell behind its arrivals breaks `fallingBehind` whatever the
    /// objectives (it is past what the server sustains).
    pub fn violations(&self, m: &Measured) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(limit) = self.max_error_rate
            && (m.error_rate > limit || m.only_failures)
        {
            out.push(Violation {
                term: SloTerm::MaxErrorRate,
                value: Some(m.error_rate),
                limit,
            });
        }
        for (term, limit, value) in [
            (SloTerm::TtftP95, self.ttft_p95, m.ttft_p95_ms),
            (SloTerm::ItlP95, self.itl_p95, m.itl_p95_ms),
        ] {
            if let Some(limit) = limit.map(ms)
                && value.is_none_or(|v| v > limit)
            {
                out.push(Violation { term, value, limit });
            }
        }
        if let Some(limit) = self.min_goodput_ratio
            && m.goodput_ratio.is_none_or(|g| g < limit)
        {
            out.push(Violation {
                term: SloTerm::MinGoodputRatio,
                value: m.goodput_ratio,
                limit,
            });
        }
        if m.falling_behind {
            out.push(Violation {
                term: SloTerm::FallingBehind,
                value: m.achieved_rate,
                limit: m.arrival_rate.unwrap_or(0.0),
            });
        }
        out
    }

    /// The first term the step breaks.
    pub fn broken_by(&self, m: &Measured) -> Option<SloTerm> {
        self.violations(m).first().map(|v| v.term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(error_rate: f64, ttft: Option<f64>, itl: Option<f64>) -> Measured {
        Measured {
            error_rate,
            only_failures: ttft.is_none() && error_rate > 0.0,
            ttft_p95_ms: ttft,
            itl_p95_ms: itl,
            falling_behind: false,
            arrival_rate: None,
            achieved_rate: None,
            goodput_ratio: None,
        }
    }

    #[test]
    fn goodput_bounds_parse_and_judge_each_request() {
        let g = GoodputSlo::parse("ttft=200ms, tpot:10").unwrap();
        assert_eq!(g.ttft, Some(Duration::from_millis(200)));
        assert_eq!(g.tpot, Some(Duration::from_millis(10)));
        assert_eq!(g.e2e, None);
        for bad in ["", "ttft", "itl=5ms", "ttft=-1", "ttft=soon"] {
            assert!(GoodputSlo::parse(bad).is_err(), "accepted {bad:?}");
        }
        let m = |ttft_ms: u64, e2e_ms: u64, out: u32| Metrics {
            ttft_us: ttft_ms * 1000,
            e2el_us: e2e_ms * 1000,
            prompt_tokens: 1,
            output_tokens: out,
            streamed: true,
        };
        assert!(g.met(&m(200, 200 + 99 * 10, 100)), "on the bounds");
        assert!(!g.met(&m(201, 201, 1)), "TTFT over");
        assert!(!g.met(&m(100, 100 + 99 * 11, 100)), "TPOT over");
        assert!(g.met(&m(100, 5000, 1)), "no TPOT with one token");
        let slo = Slo {
            min_goodput_ratio: Some(0.9),
            ..Slo::default()
        };
        let v = slo.violations(&Measured {
            goodput_ratio: Some(0.85),
            ..measured(0.0, Some(1.0), Some(1.0))
        });
        assert_eq!(v[0].term, SloTerm::MinGoodputRatio);
        assert!(v[0].to_string().contains("85.0% < 90.0%"), "{}", v[0]);
        assert!(
            slo.violations(&Measured {
                goodput_ratio: Some(0.95),
                ..measured(0.0, Some(1.0), Some(1.0))
            })
            .is_empty()
        );
    }

    #[test]
    fn falling_behind_breaks_whatever_the_objectives() {
        let m = Measured {
            falling_behind: true,
            arrival_rate: Some(80.0),
            achieved_rate: Some(50.0),
            ..measured(0.0, Some(100.0), Some(10.0))
        };
        let v = Slo::default().violations(&m);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].term, SloTerm::FallingBehind);
        assert!(
            v[0].to_string().contains("50.0 req/s finished of 80.0"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn terms_break_in_order_and_only_when_set() {
        let slo = Slo {
            ttft_p95: Some(Duration::from_millis(500)),
            itl_p95: Some(Duration::from_millis(50)),
            max_error_rate: Some(0.01),
            min_goodput_ratio: None,
        };
        assert!(
            slo.violations(&measured(0.0, Some(499.0), Some(50.0)))
                .is_empty()
        );
        assert_eq!(
            slo.broken_by(&measured(0.0, Some(501.0), Some(10.0))),
            Some(SloTerm::TtftP95)
        );
        assert_eq!(
            slo.broken_by(&measured(0.02, Some(501.0), Some(60.0))),
            Some(SloTerm::MaxErrorRate)
        );
        let all: Vec<SloTerm> = slo
            .violations(&measured(0.02, Some(501.0), Some(60.0)))
            .iter()
            .map(|v| v.term)
            .collect();
        assert_eq!(
            all,
            [SloTerm::MaxErrorRate, SloTerm::TtftP95, SloTerm::ItlP95]
        );
        assert!(
            Slo::default()
                .violations(&measured(1.0, None, None))
                .is_empty()
        );
    }

    #[test]
    fn nothing_measured_cannot_hold_a_latency_term() {
        let slo = Slo {
            ttft_p95: Some(Duration::from_millis(500)),
            ..Slo::default()
        };
        let v = slo.violations(&measured(0.0, None, None));
        assert_eq!(v.len(), 1);
        assert!(v[0].to_string().contains("unmeasured"), "{}", v[0]);
        let errs = Slo {
            max_error_rate: Some(0.5),
            ..Slo::default()
        };
        assert_eq!(
            errs.broken_by(&measured(0.4, None, None)),
            Some(SloTerm::MaxErrorRate),
            "only failures break the error term whatever the ratio"
        );
    }
}
