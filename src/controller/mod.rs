//! Controllers (placeholder).
