//! Production-like workloads against the built-in simulator: the request streams they send
//! and what the simulator's prefix cache makes of them.

use std::time::Duration;

use inferops::contract::{Dataset, Plan, Results, SharedPrefix, TokenCount};
use inferops::loadgen::{NoObserver, run_plan};
use inferops::sim::{SimHandle, SimOptions, spawn};
use tokio_util::sync::CancellationToken;

async fn sim(opts: SimOptions) -> SimHandle {
    spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn run(p: &Plan) -> Results {
    tokio::time::timeout(
        Duration::from_secs(120),
        run_plan(p, CancellationToken::new(), &mut NoObserver),
    )
    .await
    .expect("finished in time")
    .expect("ran")
}

/// The value of the unlabelled-but-model sample `name` in the simulator's exposition.
async fn counter(sim: &SimHandle, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn shared_plan(sim: &SimHandle, sp: SharedPrefix, requests: u64) -> Plan {
    let mut p = Plan::new(sim.base_url(), sim.model());
    p.workload.dataset = Dataset::SharedPrefix(sp);
    p.workload.output_tokens = TokenCount::Fixed(8);
    p.load.concurrency = vec![2];
    p.load.requests_per_step = Some(requests);
    p
}

#[tokio::test]
async fn shared_prefixes_lower_ttft_and_move_the_prefix_cache_counters() {
    let s = sim(SimOptions::profile("qwen2.5-0.5b-l4").unwrap()).await;
    let sp = SharedPrefix {
        groups: 2,
        prompts_per_group: 16,
        prefix_tokens: 3000,
        suffix_tokens: TokenCount::Fixed(64),
    };
    let shared = run(&shared_plan(&s, sp, 32)).await;
    let queries = counter(&s, "vllm:prefix_cache_queries_total").await;
    let hits = counter(&s, "vllm:prefix_cache_hits_total").await;
    // Every prompt is 3064 words; 30 of 32 find the 187 full 16-word blocks of their
    // group's 3000-word prefix in the cache.
    assert_eq!(queries, 32.0 * 3064.0);
    assert_eq!(hits, 30.0 * 187.0 * 16.0, "hits {hits}");
    let intended = sp.shared_fraction();
    assert!(
        (hits / queries - intended).abs() < 0.01,
        "{} vs {intended}",
        hits / queries
    );
    // The same lengths without sharing: nothing to reuse.
    let mut p = shared_plan(&s, sp, 32);
    p.workload.dataset = Dataset::Random;
    p.workload.input_tokens = TokenCount::Fixed(3064);
    p.workload.seed = 7;
    let unshared = run(&p).await;
    assert_eq!(counter(&s, "vllm:prefix_cache_hits_total").await, hits);
    let (a, b) = (&shared.steps[0], &unshared.steps[0]);
    assert_eq!((a.failed, b.failed), (0, 0));
    assert!(
        a.median_ttft_ms < 0.75 * b.median_ttft_ms,
        "shared {} ms vs unshared {} ms",
        a.median_ttft_ms,
        b.median_ttft_ms
    );
    s.shutdown().await;
}

#[tokio::test]
async fn without_prefix_caching_nothing_hits() {
    let mut o = SimOptions::profile("zero").unwrap();
    o.prefix_caching = false;
    let s = sim(o).await;
    let sp = SharedPrefix {
        groups: 1,
        prompts_per_group: 4,
        prefix_tokens: 64,
        suffix_tokens: TokenCount::Fixed(4),
    };
    let r = run(&shared_plan(&s, sp, 8)).await;
    assert_eq!(r.steps[0].completed, 8);
    assert_eq!(counter(&s, "vllm:prefix_cache_hits_total").await, 0.0);
    s.shutdown().await;
}
