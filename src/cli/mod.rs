//! The command line's front-ends: the only place (with the controllers) that wires the
//! engine, the simulator, Prometheus and the report together.
//!
//! - [`bench`]: `inferops bench` (against a URL or the built-in simulator) and the in-cluster
//!   `inferops loadgen` (plan in, results ConfigMap out through [`sink`]).
//! - [`run_file`]: `inferops bench -f RUN.yaml`, a BenchmarkRun file mapped to a plan.
//! - [`selftest`]: `inferops bench --self-test`, the load generator measuring itself.
//! - [`table`]: the results table `inferops bench` prints.
//! - [`report`]: `inferops report`.
//! - [`render`]: `inferops render`.

pub mod bench;
pub mod render;
pub mod report;
pub mod run_file;
pub mod selftest;
pub mod sink;
pub mod table;
