//! The load generator against the built-in simulator over loopback: sweeps, split loads merged
//! through histograms, the `loadgen` and `bench` commands, wrong model names, and timing
//! accuracy against the simulator's own record of when it sent each token.

use std::process::Command;
use std::time::{Duration, Instant};

use inferops::contract::{Api, ErrorClass, Plan, Results, RunStatus, TokenCount, merge_results};
use inferops::loadgen::client::{Client, ClientConfig, Scratch};
use inferops::loadgen::workload::RequestSet;
use inferops::loadgen::{NoObserver, run_plan};
use inferops::sim::{SimHandle, SimOptions, spawn};
use tokio_util::sync::CancellationToken;

async fn sim(opts: SimOptions) -> SimHandle {
    spawn(opts, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn plan(sim: &SimHandle, concurrency: Vec<u32>, requests: u64) -> Plan {
    let mut p = Plan::new(sim.base_url(), sim.model());
    p.workload.input_tokens = TokenCount::Fixed(32);
    p.workload.output_tokens = TokenCount::Fixed(16);
    p.load.concurrency = concurrency;
    p.load.requests_per_step = Some(requests);
    p.load.request_timeout = Duration::from_secs(20);
    p
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

#[tokio::test]
async fn sweep_against_the_simulator() {
    let s = sim(SimOptions::fixed(
        Duration::from_millis(20),
        Duration::from_millis(2),
    ))
    .await;
    let mut p = plan(&s, vec![1, 4], 12);
    p.workload.api = Api::Chat;
    let r = run(&p).await;
    assert_eq!(r.metadata.status, RunStatus::Completed);
    assert_eq!(r.steps.len(), 2);
    for (step, c) in r.steps.iter().zip([1, 4]) {
        assert_eq!(step.max_concurrency, Some(c));
        assert_eq!(
            (step.completed, step.failed),
            (12, 0),
            "{}",
            step.one_line()
        );
        assert_eq!(step.total_output_tokens, 12 * 16, "server usage counts");
        assert!(step.total_input_tokens >= 12 * 32);
        assert!(step.median_ttft_ms >= 20.0, "{}", step.median_ttft_ms);
        // The mean, not the median: on a busy machine a late chunk and the next one can
        // arrive together, which moves the median but not the mean gap.
        assert!(step.mean_itl_ms >= 1.5, "{}", step.mean_itl_ms);
        assert!(step.window_end > step.window_start);
        assert!(step.request_throughput > 0.0);
    }
    // Four in flight finish the same work faster than one.
    assert!(r.steps[1].request_throughput > 1.5 * r.steps[0].request_throughput);
    assert!(r.steps[1].window_start >= r.steps[0].window_end);
    s.shutdown().await;
}

#[tokio::test]
async fn wrong_model_fails_with_the_simulators_message() {
    let s = sim(SimOptions::profile("zero").unwrap()).await;
    let mut p = plan(&s, vec![2], 6);
    p.target.model = "no-such-model".into();
    let r = run(&p).await;
    let step = &r.steps[0];
    assert_eq!(
        (step.completed, step.errors.http4xx),
        (0, 6),
        "{}",
        step.one_line()
    );
    let msg = step.error_messages[&ErrorClass::Http4xx].join(" ");
    assert!(msg.contains("no-such-model"), "{msg}");
    assert_eq!(r.summary.steps_over_error_budget.len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn split_load_merges_into_one_result() {
    let s = sim(SimOptions::fixed(
        Duration::from_millis(5),
        Duration::from_millis(1),
    ))
    .await;
    let mut base = plan(&s, vec![4], 20);
    base.parallelism.count = 2;
    let mut a = base.clone();
    a.parallelism.index = 0;
    let mut b = base;
    b.parallelism.index = 1;
    let (ra, rb) = tokio::join!(run(&a), run(&b));
    assert_eq!(ra.steps[0].max_concurrency, Some(2));
    assert_eq!(ra.steps[0].completed + rb.steps[0].completed, 20);
    let m = merge_results(&[ra.clone(), rb.clone()]).unwrap();
    let step = &m.steps[0];
    assert_eq!((step.max_concurrency, step.completed), (Some(4), 20));
    let h = step.histograms.decode().unwrap();
    assert_eq!(h.ttft.len(), 20);
    assert_eq!(step.total_output_tokens, 20 * 16);
    assert!(step.p99_ttft_ms >= ra.steps[0].p99_ttft_ms.min(rb.steps[0].p99_ttft_ms));
    s.shutdown().await;
}

#[tokio::test]
async fn client_timing_matches_the_server_trace() {
    // Client-measured TTFT and inter-token gaps against the simulator's record of when it
    // wrote each chunk. Loopback adds tens of microseconds; the bound is generous for CI.
    let s = sim(SimOptions::fixed(
        Duration::from_millis(20),
        Duration::from_millis(5),
    ))
    .await;
    let p = plan(&s, vec![1], 1);
    let client = Client::new(&ClientConfig::new(
        &p.target,
        Api::Completions,
        true,
        Duration::from_secs(10),
    ))
    .unwrap();
    let w = RequestSet::prepare(&p, 4).unwrap();
    let mut ours = Vec::new();
    let mut scratch = Scratch::with_trace();
    for i in 0..8 {
        let t0 = Instant::now();
        let m = client.send(w.get(i), t0, &mut scratch).await.unwrap();
        let t = scratch.trace.clone().unwrap();
        assert_eq!(t.chunk_times.len(), 16);
        ours.push((t.id, m.ttft_us, scratch.itl_us.clone()));
    }
    let trace: serde_json::Value = reqwest::get(format!("{}/sim/trace", s.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recs = trace["requests"].as_array().unwrap();
    let mut ttft_err = Vec::new();
    let mut itl_err = Vec::new();
    for (id, ttft_us, itl) in &ours {
        let rec = recs
            .iter()
            .find(|r| r["id"] == id.as_str())
            .expect("traced");
        let offs: Vec<i64> = rec["token_offsets_ns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() / 1000)
            .collect();
        assert_eq!(offs.len(), 16);
        ttft_err.push(*ttft_us as i64 - offs[0]);
        for (k, gap) in itl.iter().enumerate() {
            itl_err.push(i64::from(*gap) - (offs[k + 1] - offs[k]));
        }
    }
    ttft_err.sort();
    itl_err.sort();
    let med = |v: &[i64]| v[v.len() / 2];
    // The client can't see the first token before the server sent it.
    assert!(ttft_err[0] >= 0, "{ttft_err:?}");
    assert!(
        med(&ttft_err) < 3_000,
        "median TTFT error {} µs",
        med(&ttft_err)
    );
    assert!(
        med(&itl_err).abs() < 1_000,
        "median ITL error {} µs",
        med(&itl_err)
    );
    s.shutdown().await;
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_inferops"))
}

#[tokio::test]
async fn loadgen_command_writes_results_and_reports_errors() {
    let s = sim(SimOptions::profile("zero").unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.yaml");
    let out = dir.path().join("results.json");
    let yaml = format!(
        "target: {{url: '{}', model: '{}'}}\nworkload: {{inputTokens: 16, outputTokens: 8}}\nload: {{concurrency: [1, 2], requestsPerStep: 5}}\n",
        s.base_url(),
        s.model()
    );
    std::fs::write(&plan_path, &yaml).unwrap();
    let o = tokio::task::spawn_blocking({
        let (plan_path, out) = (plan_path.clone(), out.clone());
        move || {
            bin()
                .arg("loadgen")
                .arg("--plan")
                .arg(plan_path)
                .env("INFEROPS_OUT", out)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("step ")).count(),
        2,
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["metadata"]["status"], "completed");
    assert_eq!(v["steps"][1]["max_concurrency"], 2);
    assert_eq!(v["steps"][1]["completed"], 5);
    assert!(v["steps"][0]["p99_ttft_ms"].is_number());

    // A model the server does not serve: caught before any load, with what it does serve.
    std::fs::write(&plan_path, yaml.replace(s.model(), "wrong-model")).unwrap();
    let o = tokio::task::spawn_blocking({
        let (plan_path, out) = (plan_path.clone(), out.clone());
        move || {
            bin()
                .args(["loadgen", "--plan"])
                .arg(&plan_path)
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"wrong-model\" is not served") && stderr.contains(s.model()),
        "{stderr}"
    );

    // Requests the server refuses (prompts over its context length).
    std::fs::write(
        &plan_path,
        yaml.replace("inputTokens: 16", "inputTokens: 40000"),
    )
    .unwrap();
    let out_again = out.clone();
    let o = tokio::task::spawn_blocking(move || {
        bin()
            .args(["loadgen", "--plan"])
            .arg(&plan_path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    // In a Job the operator judges the rows: a load over its error budget still exits 0 (a
    // failure exit would make the Job rerun a load that ran to its end), says so on stderr
    // and keeps every failed request's class in the results.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("over the error budget")
            && stderr.contains("http4xx")
            && stderr.contains("maximum context length"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_again).unwrap()).unwrap();
    assert_eq!(v["steps"][0]["completed"], 0, "{v}");
    assert!(
        v["steps"][0]["errors"]["http4xx"].as_u64().unwrap() > 0,
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn bench_command_prints_a_table_and_writes_json() {
    let s = sim(SimOptions::profile("zero").unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let url = s.base_url();
    let o = tokio::task::spawn_blocking({
        let json = json.clone();
        move || {
            bin()
                .args([
                    "bench",
                    "--url",
                    &url,
                    "--concurrency",
                    "1,3",
                    "--requests",
                    "6",
                    "--output-tokens",
                    "8",
                    "--json",
                ])
                .arg(json)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("| concurrency | req/s | out tok/s | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 | E2E p50 | E2E p95 | errors |"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("| 3 ")), "{stdout}");
    let r: Results = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r.metadata.model, s.model(), "model taken from /v1/models");
    assert_eq!(r.steps.len(), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn bench_reads_a_benchmark_run_file() {
    let s = sim(SimOptions::profile("zero").unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run.yaml");
    std::fs::write(
        &run,
        format!(
            "apiVersion: inferops.dev/v1alpha1\nkind: BenchmarkRun\nmetadata: {{name: t}}\nspec:\n  target: {{url: '{}', model: '{}'}}\n  workload: {{api: chat, inputTokens: 16, outputTokens: 4}}\n  load: {{mode: rate, rate: [200], arrival: constant, requestsPerStep: 10, requestTimeout: 5s}}\n",
            s.base_url(),
            s.model()
        ),
    )
    .unwrap();
    let json = dir.path().join("r.json");
    let o = tokio::task::spawn_blocking({
        let (run, json) = (run.clone(), json.clone());
        move || {
            bin()
                .arg("bench")
                .arg("-f")
                .arg(run)
                .arg("--json")
                .arg(json)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("| rate (req/s) |"), "{stdout}");
    let r: Results = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r.metadata.api, inferops::contract::Api::Chat);
    assert_eq!(r.steps[0].request_rate, Some(200.0));
    assert_eq!(r.steps[0].completed, 10);
    // The file's target is used when no --url is given (no simulator is started).
    assert_eq!(r.metadata.url, s.base_url());
    s.shutdown().await;
}

#[tokio::test]
async fn split_pods_start_steps_on_common_slots() {
    let s = sim(SimOptions::fixed(
        Duration::from_millis(5),
        Duration::from_millis(1),
    ))
    .await;
    let mut base = plan(&s, vec![1, 4], 1);
    base.load.requests_per_step = None;
    base.load.duration_per_step = Some(Duration::from_millis(300));
    base.parallelism.count = 2;
    base.load.step_slack = Duration::from_millis(200);
    let t0 = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    base.parallelism.start_at = Some(t0);
    let mut a = base.clone();
    a.parallelism.index = 0;
    let mut b = base;
    b.parallelism.index = 1;
    // Pod 1 has no share of concurrency 1: it idles through that slot instead of running ahead.
    let (ra, rb) = tokio::join!(run(&a), run(&b));
    assert_eq!(rb.steps[0].max_concurrency, Some(0));
    assert_eq!(rb.steps[0].completed, 0);
    let slot2 = t0 + chrono::Duration::milliseconds(500);
    for r in [&ra, &rb] {
        assert!(
            r.steps[0].window_start >= t0,
            "{:?}",
            r.steps[0].window_start
        );
        assert!(
            r.steps[1].window_start >= slot2,
            "{:?} < {slot2:?}",
            r.steps[1].window_start
        );
    }
    let skew = (ra.steps[1].window_start - rb.steps[1].window_start)
        .num_milliseconds()
        .abs();
    assert!(skew < 150, "step windows {skew} ms apart");
    let merged = merge_results(&[ra, rb]).unwrap();
    assert_eq!(merged.steps[1].max_concurrency, Some(4));
    s.shutdown().await;
}

#[tokio::test]
async fn tokenizer_sets_exact_prompt_lengths_end_to_end() {
    // A tokenizer whose tokens are single letters: 64-token prompts have far fewer than 64
    // words, which the simulator (one word = one token) reports back.
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for (i, c) in ('a'..='z').enumerate() {
        vocab.insert(c.to_string(), (1 + i).into());
        vocab.insert(format!("##{c}"), (27 + i).into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let s = sim(SimOptions::profile("zero").unwrap()).await;
    let mut p = plan(&s, vec![2], 8);
    p.workload.input_tokens = TokenCount::Fixed(64);
    let opts = inferops::loadgen::RunOptions {
        tokenizer: Some(path),
        ..Default::default()
    };
    let r = inferops::loadgen::run_plan_with(&p, &opts, CancellationToken::new(), &mut NoObserver)
        .await
        .unwrap();
    let step = &r.steps[0];
    assert_eq!(step.completed, 8, "{}", step.one_line());
    assert!(
        step.total_input_tokens < 8 * 40,
        "{}",
        step.total_input_tokens
    );
    let without = run(&p).await;
    assert!(without.steps[0].total_input_tokens >= 8 * 64);
    let bad = inferops::loadgen::RunOptions {
        tokenizer: Some(dir.path().join("missing.json")),
        ..Default::default()
    };
    assert!(
        inferops::loadgen::run_plan_with(&p, &bad, CancellationToken::new(), &mut NoObserver)
            .await
            .is_err()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_restarted_run_keeps_finished_steps_and_continues_after_them() {
    let s = sim(SimOptions::profile("zero").unwrap()).await;
    let p = plan(&s, vec![1, 2, 4], 6);
    let first = run(&p).await;
    assert_eq!(first.steps.len(), 3);
    // The pod died during its third step: two finished, the third cut short.
    let mut prior = first.clone();
    prior.steps[2].interrupted = true;
    let opts = inferops::loadgen::RunOptions {
        resume: Some(prior),
        ..Default::default()
    };
    let again =
        inferops::loadgen::run_plan_with(&p, &opts, CancellationToken::new(), &mut NoObserver)
            .await
            .unwrap();
    assert_eq!(again.steps.len(), 3);
    assert_eq!(
        again.steps[..2],
        first.steps[..2],
        "finished steps are kept as they were"
    );
    assert!(
        again.steps[2].window_start > first.steps[2].window_start,
        "the cut step ran again"
    );
    assert!(!again.steps[2].interrupted);
    assert_eq!(again.metadata.started_at, first.metadata.started_at);
    // Results of another plan are not resumed.
    let mut other = p.clone();
    other.load.concurrency = vec![8];
    let opts = inferops::loadgen::RunOptions {
        resume: Some(first.clone()),
        ..Default::default()
    };
    let fresh =
        inferops::loadgen::run_plan_with(&other, &opts, CancellationToken::new(), &mut NoObserver)
            .await
            .unwrap();
    assert_eq!(fresh.steps.len(), 1);
    assert_eq!(fresh.steps[0].max_concurrency, Some(8));
    s.shutdown().await;
}
