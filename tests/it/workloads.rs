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

fn mix_plan(sim: &SimHandle, requests: u64) -> Plan {
    let mut p = Plan::new(sim.base_url(), sim.model());
    p.workload.input_tokens = TokenCount::Fixed(16);
    p.workload.output_tokens = TokenCount::Fixed(4);
    p.workload.models = vec![
        inferops::contract::plan::ModelWeight {
            name: sim.model().to_string(),
            weight: 70,
        },
        inferops::contract::plan::ModelWeight {
            name: "sql-lora".into(),
            weight: 30,
        },
    ];
    p.workload.num_prompts = Some(requests as u32);
    p.load.concurrency = vec![8];
    p.load.requests_per_step = Some(requests);
    p
}

#[tokio::test]
async fn a_model_mix_sends_each_model_its_share_and_breaks_the_step_down() {
    let mut o = SimOptions::profile("zero").unwrap();
    o.lora = vec!["sql-lora".into()];
    let s = sim(o).await;
    let p = mix_plan(&s, 1000);
    let r = run(&p).await;
    let step = &r.steps[0];
    assert_eq!((step.completed, step.failed), (1000, 0));
    assert_eq!(step.models.len(), 2);
    let (base, lora) = (&step.models[0], &step.models[1]);
    assert_eq!(
        (base.model.as_str(), lora.model.as_str()),
        (s.model(), "sql-lora")
    );
    // 70/30 from the seed: within a few points over 1000 requests.
    assert!(
        (620..=780).contains(&base.step.completed),
        "{}",
        base.step.completed
    );
    assert_eq!(base.step.completed + lora.step.completed, step.completed);
    assert_eq!(
        base.step.total_output_tokens + lora.step.total_output_tokens,
        step.total_output_tokens
    );
    let sum = base.step.request_throughput + lora.step.request_throughput;
    assert!((sum - step.request_throughput).abs() < 1e-6 * step.request_throughput.max(1.0));
    assert!(lora.step.median_ttft_ms > 0.0 && lora.step.p99_e2el_ms > 0.0);
    // The same seed picks the same models; the simulator saw the adapter's share.
    let again = run(&p).await;
    assert_eq!(again.steps[0].models[1].step.completed, lora.step.completed);
    let w = step.workload.as_ref().unwrap();
    assert_eq!((w.models[0].share, w.models[1].share), (0.7, 0.3));
    // The breakdown survives a round trip and merging two pods' results.
    let json = serde_json::to_string(&r).unwrap();
    let back: Results = serde_json::from_str(&json).unwrap();
    assert_eq!(back.steps[0].models, step.models);
    let merged = inferops::contract::merge_steps(&[step.clone(), again.steps[0].clone()]).unwrap();
    assert_eq!(
        merged.models[1].step.completed,
        2 * lora.step.completed,
        "per-model parts merge by name"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn cancelled_requests_are_counted_apart_and_free_the_engine() {
    let s = sim(SimOptions::profile("qwen2.5-0.5b-l4").unwrap()).await;
    let mut p = Plan::new(s.base_url(), s.model());
    p.workload.input_tokens = TokenCount::Fixed(64);
    // Long enough (about 2 s of decode) that a cancelled request is cut in mid-stream.
    p.workload.output_tokens = TokenCount::Fixed(400);
    p.workload.cancel = Some(inferops::contract::plan::Cancel {
        fraction: 0.5,
        after: Duration::from_millis(300),
    });
    p.load.concurrency = vec![8];
    p.load.requests_per_step = Some(40);
    let r = run(&p).await;
    let step = &r.steps[0];
    assert_eq!(
        step.failed, 0,
        "cancellations are not errors: {:?}",
        step.errors
    );
    assert!(
        (10..=30).contains(&step.cancelled),
        "about half cancelled: {}",
        step.cancelled
    );
    assert_eq!(step.completed + step.cancelled, 40);
    assert_eq!(step.total_output_tokens, step.completed * 400);
    let v = serde_json::to_value(step).unwrap();
    assert_eq!(v["cancelled"], step.cancelled);
    // The simulator stopped generating for them: far fewer tokens than 40 × 400, and
    // nothing left running or holding KV blocks.
    let generated = counter(&s, "vllm:generation_tokens_total").await;
    assert!(
        generated < (step.completed * 400 + step.cancelled * 200) as f64,
        "generated {generated}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while counter(&s, "vllm:num_requests_running").await > 0.0
        || counter(&s, "vllm:kv_cache_usage_perc").await > 0.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "abandoned requests still hold the engine"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.shutdown().await;
}
