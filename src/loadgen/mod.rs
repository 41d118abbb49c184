//! Load generator: OpenAI-compatible client, workloads, closed/open-loop scheduling,
//! HDR-histogram statistics and the results JSON. The same engine runs in the in-cluster
//! load Job (`inferops loadgen`) and on a laptop (`inferops bench`).
//!
//! Entry points for other modules: [`run_plan`] runs a [`Plan`] and returns [`Results`];
//! [`merge_results`] / [`merge_steps`] combine per-pod results through their histograms.

pub mod benchmarkrun;
pub mod cli;
pub mod client;
pub mod direct;
pub mod outcome;
pub mod plan;
pub mod results;
pub mod run;
pub mod schedule;
pub mod selftest;
pub mod sink;
pub mod sse;
pub mod stats;
pub mod table;
pub mod workload;

pub use outcome::{ErrorClass, Failure, Metrics};
pub use plan::{
    Api, Arrival, Dataset, Load, LoadPoint, Mode, Plan, Saturation, Slo, Target, TokenCount,
    Workload,
};
pub use results::{
    Metadata, Results, RunStatus, SaturationResult, StepResult, Summary, merge_results, merge_steps,
};
pub use run::{NoObserver, Observer, RunOptions, run_plan, run_plan_with};
