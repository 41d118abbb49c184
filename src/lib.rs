//! inferops: serve LLMs with vLLM on Kubernetes GPU node pools and benchmark them.

pub mod loadgen;
pub mod sim;
