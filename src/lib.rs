//! inferops: serve LLMs with vLLM on Kubernetes GPU node pools and benchmark them.

pub mod analysis;
pub mod api;
pub mod controller;
pub mod loadgen;
pub mod prom;
pub mod render;
pub mod report;
pub mod sim;
pub mod vllm_metrics;
