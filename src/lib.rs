//! inferops: serve LLMs with vLLM on Kubernetes GPU node pools and benchmark them.

pub mod analysis;
pub mod api;
pub mod prom;
pub mod report;
