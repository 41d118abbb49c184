//! The `BenchmarkRun` reconciler, as observe -> decide -> act.
//!
//! `Pending` -> `WaitingForTarget` (the InferenceService Ready at the study's replica count;
//! the endpoint answering `/v1/models` with the model) -> `Running` (the load Job; each pod
//! writes its results into its own ConfigMap after every step, and status rows follow) ->
//! `Collecting` (Prometheus over each step's window) -> `Succeeded` | `Failed`.
//!
//! - [`observe`] gathers the world (the run, the target, the Job and its pods,
//!   the results ConfigMaps, Prometheus once the Job finished, the time) into a [`World`];
//! - [`decide`] is a pure function from it to the next status, conditions and actions;
//! - [`act`] applies the actions and writes the status (clearing what the decision dropped).
//!
//! Everything the reconciler needs is in the run's status, its owned objects and the results
//! ConfigMaps, so an operator restart resumes where it was, waits included. Measured steps
//! are never dropped: every failure path keeps the rows already in status.

pub mod act;
pub mod decide;
pub mod observe;

use std::sync::Arc;

use kube::runtime::controller::Action;

use super::{Context, Error};
use crate::api::BenchmarkRun;

pub use decide::{
    BARRIER_DELAY, Decision, FINALIZER, LOAD_START_TIMEOUT, MISS_BUDGET, MISS_WINDOW,
    READY_TIMEOUT, TARGET_GRACE, decide,
};
pub use observe::World;

/// The longest message taken from a target, Prometheus or the API server into status and
/// Events.
pub const MESSAGE_MAX: usize = 240;

/// A short, single-line message from text another system produced: control characters and
/// runs of whitespace become one space, credentials in URLs (`user:password@`) are masked,
/// and the result is cut to [`MESSAGE_MAX`] bytes.
pub fn sanitize(text: &str) -> String {
    let mut flat = String::with_capacity(text.len().min(MESSAGE_MAX * 2));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = true;
            continue;
        }
        if space && !flat.is_empty() {
            flat.push(' ');
        }
        space = false;
        flat.push(c);
        if flat.len() > MESSAGE_MAX * 4 {
            break;
        }
    }
    let mut out = String::with_capacity(flat.len());
    let mut rest = flat.as_str();
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '?', '#']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    super::apply::truncate(&out, MESSAGE_MAX)
}

/// Reconcile one `BenchmarkRun`: observe, decide, act, write status. A plain async function
/// so tests drive it directly.
pub async fn reconcile(run: Arc<BenchmarkRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let world = observe::observe(&ctx, &run).await?;
    let decision = decide::decide(&world);
    let mut decision = act::act(&ctx, &world, decision).await?;
    if run.metadata.deletion_timestamp.is_none() {
        act::write_status(&ctx, &run, &mut decision).await?;
    }
    Ok(match decision.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_flattens_masks_and_cuts() {
        assert_eq!(sanitize("a\n\n b\tc"), "a b c");
        assert_eq!(
            sanitize("GET http://user:secret@vllm:8000/v1/models: refused"),
            "GET http://***@vllm:8000/v1/models: refused"
        );
        assert_eq!(sanitize("http://vllm:8000/v1"), "http://vllm:8000/v1");
        let long = format!("<html>{}</html>", "x".repeat(10_000));
        let s = sanitize(&long);
        assert!(s.len() <= MESSAGE_MAX && s.ends_with("..."), "{}", s.len());
    }
}
