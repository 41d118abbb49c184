//! Before the load: does the target answer, and does it serve the model? Asked from where the
//! load runs (a load pod has the network identity and the credentials of the tenant, not the
//! operator's), with `GET /v1/models`, retried while the target does not answer yet.

use std::time::{Duration, Instant};

use super::client::{models_url, server_message};
pub use crate::contract::target::{TargetProblem, resolve_model};

/// Model ids listed by `GET {base}/v1/models`. Errors name the status and at most a short
/// server message, never the body.
pub async fn served_models(base: &str, api_key: Option<&str>) -> Result<Vec<String>, String> {
    let url = models_url(base);
    let mut req = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?
        .get(&url);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("GET {url}: {:#}", anyhow::Error::new(e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: HTTP {status}: {e}"))?;
    if !status.is_success() {
        let said = server_message(&body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let said: String = if said.starts_with('<') || said.len() > 160 {
            String::new()
        } else {
            format!(": {said}")
        };
        return Err(format!("GET {url}: HTTP {}{said}", status.as_u16()));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| format!("GET {url}: HTTP {status}, but the body is not JSON"))?;
    Ok(v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Ask until the target answers (at most `wait`, every `every`), then resolve the model:
/// `wanted`, or the only one served when it is `None` or empty; every name of a model `mix`
/// must be served too (the same answer). The bearer token is the load generator's
/// (`INFEROPS_API_KEY` / `OPENAI_API_KEY`).
pub async fn check(
    base: &str,
    wanted: Option<&str>,
    mix: &[String],
    wait: Duration,
    every: Duration,
) -> Result<String, TargetProblem> {
    let start = Instant::now();
    let key = super::client::env_api_key();
    loop {
        match served_models(base, key.as_deref()).await {
            Ok(served) => {
                let model = resolve_model(wanted, &served)?;
                crate::contract::target::all_served(mix, &served)?;
                return Ok(model);
            }
            Err(error) if start.elapsed() + every >= wait => {
                return Err(TargetProblem::Unreachable {
                    error,
                    waited: start.elapsed(),
                });
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
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
    async fn model_listing_errors_carry_no_response_body() {
        let page: &'static str = Box::leak(
            format!(
                "<html><body>internal token=abc123 {}</body></html>",
                "x".repeat(5000)
            )
            .into_boxed_str(),
        );
        let url = serve(503, page).await;
        let e = served_models(&url, None).await.unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert!(!e.contains("abc123") && !e.contains("<html>"), "{e}");
        assert!(e.len() <= 200, "{}", e.len());
        let url = serve(
            404,
            r#"{"error": {"message": "no such route\nsecond line"}}"#,
        )
        .await;
        let e = served_models(&url, None).await.unwrap_err();
        assert!(e.ends_with("no such route second line"), "{e}");
        let url = serve(200, r#"{"data": [{"id": "qwen"}]}"#).await;
        assert_eq!(served_models(&url, None).await.unwrap(), ["qwen"]);
    }

    #[tokio::test]
    async fn an_unreachable_target_is_retried_then_given_up() {
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let e = check(
            &base,
            Some("m"),
            &[],
            Duration::from_millis(300),
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        let TargetProblem::Unreachable { error, waited } = &e else {
            panic!("{e:?}");
        };
        assert!(error.contains("/v1/models"), "{error}");
        assert!(*waited >= Duration::from_millis(150), "{waited:?}");
    }
}
