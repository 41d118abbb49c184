//! The contract between the operator, the load Job, `inferops bench` and `inferops report`:
//! the [`Plan`] a load generator runs and the [`Results`] it writes, the histograms that
//! merge split runs exactly, the per-step server figures, the one SLO check, and the mapping
//! of a BenchmarkRun spec to a plan. Pure serde types and functions: no I/O, and nothing of
//! the crate below it but [`crate::api`].

pub mod outcome;
pub mod plan;
pub mod records;
pub mod results;
pub mod server;
pub mod slo;
pub mod spec;
pub mod stats;
pub mod target;
pub mod vllm_metrics;

pub use crate::api::LoadPoint;
pub use outcome::{ErrorClass, Failure, Metrics};
pub use plan::{
    Api, Arrival, Dataset, Load, Mode, Plan, Saturation, SharedPrefix, Target, TokenCount, Workload,
};
pub use results::{
    Metadata, Results, RunStatus, SaturationResult, StepResult, Summary, merge_results, merge_steps,
};
pub use server::WindowMetrics;
pub use slo::{GoodputSlo, Measured, Slo, SloTerm, Violation};
