//! The one SLO check: the objectives a step must meet to count as "held", and the rule that
//! judges a step against them. The saturation search (on raw results) and the verdict (on
//! status rows) both call [`Slo::violations`], so they can never disagree.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::opt_duration;
use super::results::StepResult;
pub use crate::api::SloTerm;
use crate::api::{SloSpec, StepStatus};

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
        }
    }

    /// True when at least one term is set.
    pub fn is_set(&self) -> bool {
        self.ttft_p95.is_some() || self.itl_p95.is_some() || self.max_error_rate.is_some()
    }

    /// Every term the step breaks, error rate first. A latency term breaks when the step has
    /// no successful request to measure it on; a step of only failures breaks the error term.
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
        }
    }

    #[test]
    fn terms_break_in_order_and_only_when_set() {
        let slo = Slo {
            ttft_p95: Some(Duration::from_millis(500)),
            itl_p95: Some(Duration::from_millis(50)),
            max_error_rate: Some(0.01),
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
