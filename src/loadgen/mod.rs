//! The load generator engine: OpenAI-compatible client (HTTP, SSE), workloads, closed- and
//! open-loop scheduling, and the run of a [`Plan`] into [`Results`]. It knows nothing of
//! Kubernetes, the command line, the simulator or how results are shown: the front-ends in
//! [`crate::cli`] (`inferops bench`, the in-cluster `inferops loadgen`) wire it up.
//!
//! Entry point: [`run_plan`] / [`run_plan_with`].
//!
//! [`Plan`]: crate::contract::Plan
//! [`Results`]: crate::contract::Results

pub mod client;
pub mod cpu;
pub mod direct;
mod event;
pub mod probe;
pub mod records;
pub mod run;
pub mod schedule;
pub mod sse;
pub mod target;
pub mod workload;

pub use run::{NoObserver, Observer, RunOptions, run_plan, run_plan_with};
