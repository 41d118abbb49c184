//! inferops: serve LLMs with vLLM on Kubernetes GPU node pools and benchmark them.

pub mod api;
pub mod controller;
pub mod render;
