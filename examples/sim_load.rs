//! Minimal closed-loop streaming load against a running `inferops sim`, to measure the
//! simulator's own cost: `cargo run --release --example sim_load -- URL CONCURRENCY SECONDS
//! [MAX_TOKENS]`. Prints completed requests and streamed chunks per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: sim_load URL CONCURRENCY SECONDS [MAX_TOKENS]"
    );
    let url = format!("{}/v1/completions", args[1].trim_end_matches('/'));
    let conc: usize = args[2].parse()?;
    let secs: u64 = args[3].parse()?;
    let max_tokens: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(128);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()?;
    let chunks = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let body = serde_json::json!({
        "prompt": vec!["hello"; 256].join(" "),
        "max_tokens": max_tokens, "ignore_eos": true, "stream": true,
    });
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let (chunks, done) = (chunks.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let Ok(resp) = client.post(&url).json(&body).send().await else {
                        continue;
                    };
                    let mut s = resp.bytes_stream();
                    while let Some(Ok(b)) = s.next().await {
                        let n = b.windows(6).filter(|w| w == b"data: ").count();
                        chunks.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    for t in tasks {
        t.await?;
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "{} requests, {:.0} chunks/s over {el:.1} s",
        done.load(Ordering::Relaxed),
        chunks.load(Ordering::Relaxed) as f64 / el
    );
    Ok(())
}
