//! The `BenchmarkRun` reconciler, as observe -> decide -> act.
//!
//! `Pending` -> `WaitingForTarget` (the InferenceService Ready at the study's replica count;
//! the endpoint answering `/v1/models` with the model) -> `Running` (the load Job; each pod
//! writes its results into its own ConfigMap after every step, and status rows follow) ->
//! `Collecting` (Prometheus over each step's window) -> `Succeeded` | `Failed`.
//!
//! - [`observe`] gathers the world (the run, the target and its probe, the Job and its pods,
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
use std::time::Duration;

use futures::future::BoxFuture;
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

/// Asks an endpoint which models it serves (`GET /v1/models`). A trait so tests can run the
/// controller without a reachable in-cluster Service.
pub trait TargetProbe: Send + Sync {
    /// Model ids served at `base_url`, or why they could not be listed.
    fn models<'a>(&'a self, base_url: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;
}

/// The real probe: HTTP with a short timeout. Its errors carry the status and at most a
/// short, sanitized server message, never the response body.
pub struct HttpProbe(reqwest::Client);

impl Default for HttpProbe {
    fn default() -> Self {
        HttpProbe(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client builds"),
        )
    }
}

impl TargetProbe for HttpProbe {
    fn models<'a>(&'a self, base_url: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let url = format!("{}/v1/models", base_url.trim_end_matches('/'));
            let shown = sanitize(&url);
            let resp = self
                .0
                .get(&url)
                .send()
                .await
                .map_err(|e| sanitize(&format!("GET {shown}: {:#}", anyhow::Error::new(e))))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| sanitize(&format!("GET {shown}: status {status}: {e}")))?;
            if !status.is_success() {
                let said = match error_message(&body) {
                    Some(m) => format!(": {}", super::apply::truncate(&m, 120)),
                    None => String::new(),
                };
                return Err(sanitize(&format!("GET {shown}: status {status}{said}")));
            }
            let body: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| format!("GET {shown}: status {status}, but the body is not JSON"))?;
            Ok(body["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default())
        })
    }
}

/// The message of an OpenAI-style JSON error body (`error.message`, `message`, `detail`);
/// anything else (HTML, text) is not echoed.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/message")
        .or_else(|| v.get("error").filter(|e| e.is_string()))
        .or_else(|| v.get("message"))
        .or_else(|| v.get("detail"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
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

    /// A server answering every request with `status` and `body`.
    async fn serve(status: u16, body: &'static str) -> String {
        let app = axum::Router::new().fallback(move || async move {
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                body.to_string(),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn probe_errors_carry_no_response_body() {
        let page: &'static str = Box::leak(
            format!(
                "<html><body>internal token=abc123 {}</body></html>",
                "x".repeat(5000)
            )
            .into_boxed_str(),
        );
        let url = serve(503, page).await;
        let e = HttpProbe::default().models(&url).await.unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert!(!e.contains("abc123") && !e.contains("<html>"), "{e}");
        assert!(e.len() <= MESSAGE_MAX, "{}", e.len());
        let url = serve(
            404,
            r#"{"error": {"message": "no such route\nsecond line"}}"#,
        )
        .await;
        let e = HttpProbe::default().models(&url).await.unwrap_err();
        assert!(e.ends_with("no such route second line"), "{e}");
        let url = serve(200, r#"{"data": [{"id": "qwen"}]}"#).await;
        assert_eq!(HttpProbe::default().models(&url).await.unwrap(), ["qwen"]);
    }

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
