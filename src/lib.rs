//! inferops: serve LLMs with vLLM on Kubernetes GPU node pools and benchmark them.
//!
//! Layers, bottom to top (a module may only use modules below it; `tests/layering.rs`
//! enforces this):
//! - [`api`]: the CRD types, the contract with users.
//! - [`contract`]: the plan and results formats shared by the operator, the load Job,
//!   `inferops bench` and `inferops report` (pure serde types, no I/O).
//! - [`render`], [`analysis`], [`prom`], [`report`]: pure renderers and analysis, and the
//!   Prometheus collector.
//! - [`loadgen`] (the engine: HTTP, SSE, schedule, run) and [`sim`] (a vLLM-compatible
//!   server): independent of each other and of Kubernetes.
//! - [`scrape`]: the server figures from a target's own `/metrics` (plugs into the engine's
//!   window probe).
//! - [`controller`] and [`cli`]: the only places that wire the pieces together.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod contract;
pub mod controller;
pub mod loadgen;
pub mod prom;
pub mod render;
pub mod report;
pub mod scrape;
pub mod sim;
