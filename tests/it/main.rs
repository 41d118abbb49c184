//! Every integration test in one binary: one link instead of one per file (each of those
//! linked the whole crate and its dependencies). Run one area with a filter, e.g.
//! `cargo test --test it controller::`.

mod support;

mod api;
mod bench_prometheus;
mod benchmark_run_controller;
mod controller;
mod crd_schema_props;
mod deploy;
mod layering;
mod loadgen_faults;
mod loadgen_sim;
mod name_limits;
mod prom;
mod records_trials;
mod render;
mod report;
mod sim;
mod strict_harness;
mod vllm_metrics;
mod workloads;
