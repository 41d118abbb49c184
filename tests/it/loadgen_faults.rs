//! The load generator against small purpose-built HTTP servers over loopback: every kind of
//! bad server ends requests with the right error class and message, steps and runs still
//! finish with a summary, nothing hangs past its timeout. Also timing and open-loop behaviour
//! against servers with known delays.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferops::contract::plan::{Arrival, Mode, Saturation, Slo};
use inferops::contract::results::ProbePhase;
use inferops::contract::{Api, ErrorClass, Plan, Results};
use inferops::loadgen::client::{Client, ClientConfig, Scratch};
use inferops::loadgen::workload::RequestSet;
use inferops::loadgen::{NoObserver, run_plan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the test server does with each request.
#[derive(Clone, Copy, Debug)]
enum Behavior {
    /// Streams `tokens` chunks: first after `ttft`, then one every `itl`; usage; [DONE].
    Good {
        tokens: u32,
        ttft: Duration,
        itl: Duration,
    },
    /// Same, but writes the whole stream one byte at a time (lines split everywhere).
    Bytewise { tokens: u32 },
    /// 404 with vLLM's wrong-model body.
    WrongModel,
    /// 503 with a plain-text body.
    Unavailable,
    /// Streams 3 tokens then closes without [DONE].
    Truncated,
    /// Streams 2 tokens, then a chunk that is not JSON.
    Malformed,
    /// Streams 1 token then an error event.
    ErrorEvent,
    /// Reads the request, never answers.
    Silent,
    /// Sends headers and one token, then stalls.
    Stall,
    /// Answers a streamed request with a JSON error body and status 200.
    JsonInsteadOfStream,
    /// Non-streamed JSON completion.
    Plain,
    /// One request at a time (global lock), each taking `ttft` for one token.
    Serial { ttft: Duration },
    /// Keep-alive responses framed by content-length; the server closes the connection once
    /// it has been idle for 50 ms.
    KeepAliveThenClose,
    /// Streams one token, then a `data:` line of 10 MB that never ends.
    HugeLine,
    /// Streams one token, then one event of 10 MB in 1 kB `data:` lines.
    HugeEvent,
    /// A non-streamed answer with a 10 MB body.
    HugeBody,
}

/// What the hostile behaviours send in total.
const HOSTILE_BYTES: usize = 10 << 20;

/// Writes `n` bytes of `line` repeated (a static piece: the server itself buffers nothing).
async fn write_repeated(sock: &mut TcpStream, line: &[u8], n: usize) -> std::io::Result<()> {
    let piece = line.repeat((64 * 1024 / line.len()).max(1));
    let mut left = n;
    while left > 0 {
        let k = left.min(piece.len());
        sock.write_all(&piece[..k]).await?;
        left -= k;
    }
    Ok(())
}

struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(b: Behavior) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let lock = lock.clone();
                tokio::spawn(async move {
                    let _ = handle(sock, b, lock).await;
                });
            }
        });
        Server { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    Ok(read_request_line(sock)
        .await?
        .map(|r| r.1)
        .unwrap_or_default())
}

/// The next request's first line and body; `None` at the end of the connection.
async fn read_request_line(sock: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut tmp).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let first = head.lines().next().unwrap_or_default().to_owned();
            return Ok(Some((first, buf[end + 4..].to_vec())));
        }
    }
}

/// The answer to `GET /v1/models`, keeping the connection open.
const MODELS: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"data\":[]}";

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

fn token(i: u32) -> String {
    format!(
        "data: {{\"id\":\"cmpl-t\",\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\"text\":\" w{i}\",\"finish_reason\":null}}]}}\n\n"
    )
}

fn usage(out: u32) -> String {
    format!(
        "data: {{\"id\":\"cmpl-t\",\"choices\":[],\"usage\":{{\"prompt_tokens\":11,\"completion_tokens\":{out},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        11 + out
    )
}

fn plain_response(status: &str, ctype: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn handle(
    mut sock: TcpStream,
    b: Behavior,
    lock: Arc<tokio::sync::Mutex<()>>,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    // The load generator verifies a pre-opened connection with `GET /v1/models` first.
    let mut body = Vec::new();
    while let Some((first, b)) = read_request_line(&mut sock).await? {
        if !first.starts_with("get ") {
            body = b;
            break;
        }
        sock.write_all(MODELS.as_bytes()).await?;
    }
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert!(req.get("model").is_some(), "request without model: {req}");
    match b {
        Behavior::Good { tokens, ttft, itl } => {
            sock.write_all(SSE_HEAD).await?;
            tokio::time::sleep(ttft).await;
            for i in 0..tokens {
                if i > 0 {
                    tokio::time::sleep(itl).await;
                }
                sock.write_all(token(i).as_bytes()).await?;
            }
            sock.write_all(usage(tokens).as_bytes()).await?;
        }
        Behavior::Bytewise { tokens } => {
            let mut all = SSE_HEAD.to_vec();
            for i in 0..tokens {
                all.extend_from_slice(token(i).as_bytes());
            }
            all.extend_from_slice(usage(tokens).as_bytes());
            for byte in all {
                sock.write_all(&[byte]).await?;
                sock.flush().await?;
            }
        }
        Behavior::WrongModel => {
            let body = r#"{"object":"error","message":"The model `wrong` does not exist.","type":"NotFoundError","param":null,"code":404}"#;
            sock.write_all(plain_response("404 Not Found", "application/json", body).as_bytes())
                .await?;
        }
        Behavior::Unavailable => {
            sock.write_all(
                plain_response("503 Service Unavailable", "text/plain", "engine overloaded")
                    .as_bytes(),
            )
            .await?;
        }
        Behavior::Truncated => {
            sock.write_all(SSE_HEAD).await?;
            for i in 0..3 {
                sock.write_all(token(i).as_bytes()).await?;
            }
            sock.write_all(b"data: {\"choices\":[{\"te").await?;
        }
        Behavior::Malformed => {
            sock.write_all(SSE_HEAD).await?;
            sock.write_all(token(0).as_bytes()).await?;
            sock.write_all(token(1).as_bytes()).await?;
            sock.write_all(b"data: {this is not json}\n\n").await?;
            sock.write_all(usage(2).as_bytes()).await?;
        }
        Behavior::ErrorEvent => {
            sock.write_all(SSE_HEAD).await?;
            sock.write_all(token(0).as_bytes()).await?;
            sock.write_all(
                b"data: {\"error\":{\"message\":\"CUDA out of memory\",\"code\":500}}\n\n",
            )
            .await?;
            sock.write_all(b"data: [DONE]\n\n").await?;
        }
        Behavior::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Behavior::Stall => {
            sock.write_all(SSE_HEAD).await?;
            sock.write_all(token(0).as_bytes()).await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Behavior::JsonInsteadOfStream => {
            let body = r#"{"error":{"message":"streaming disabled","type":"x"}}"#;
            sock.write_all(plain_response("200 OK", "application/json", body).as_bytes())
                .await?;
        }
        Behavior::Plain => {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let body = r#"{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"a b c d","finish_reason":"length"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15}}"#;
            sock.write_all(plain_response("200 OK", "application/json", body).as_bytes())
                .await?;
        }
        Behavior::KeepAliveThenClose => {
            let body = format!("{}{}", token(0), usage(1));
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(body.as_bytes()).await?;
            // Serve further requests on this connection until it sits idle for 50 ms.
            while let Ok(Ok(next)) =
                tokio::time::timeout(Duration::from_millis(50), read_request(&mut sock)).await
            {
                if next.is_empty() {
                    break;
                }
                sock.write_all(head.as_bytes()).await?;
                sock.write_all(body.as_bytes()).await?;
            }
        }
        Behavior::HugeLine => {
            sock.write_all(SSE_HEAD).await?;
            sock.write_all(token(0).as_bytes()).await?;
            sock.write_all(b"data: ").await?;
            write_repeated(&mut sock, b"x", HOSTILE_BYTES).await?;
            sock.write_all(b"\n\n").await?;
            sock.write_all(usage(1).as_bytes()).await?;
        }
        Behavior::HugeEvent => {
            sock.write_all(SSE_HEAD).await?;
            sock.write_all(token(0).as_bytes()).await?;
            let line = format!("data: {}\n", "y".repeat(1018));
            write_repeated(&mut sock, line.as_bytes(), HOSTILE_BYTES).await?;
            sock.write_all(b"\n").await?;
            sock.write_all(usage(1).as_bytes()).await?;
        }
        Behavior::HugeBody => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                HOSTILE_BYTES + 2
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(b"\"").await?;
            write_repeated(&mut sock, b"z", HOSTILE_BYTES).await?;
            sock.write_all(b"\"").await?;
        }
        Behavior::Serial { ttft } => {
            let _g = lock.lock().await;
            tokio::time::sleep(ttft).await;
            sock.write_all(SSE_HEAD).await?;
            sock.write_all(token(0).as_bytes()).await?;
            sock.write_all(usage(1).as_bytes()).await?;
        }
    }
    sock.shutdown().await?;
    Ok(())
}

fn small_plan(url: &str, concurrency: u32, requests: u64, timeout: Duration) -> Plan {
    let mut p = Plan::new(url, "test-model");
    p.workload.input_tokens = inferops::contract::TokenCount::Fixed(8);
    p.workload.output_tokens = inferops::contract::TokenCount::Fixed(4);
    p.load.concurrency = vec![concurrency];
    p.load.requests_per_step = Some(requests);
    p.load.request_timeout = timeout;
    p
}

async fn run(plan: &Plan) -> Results {
    // Nothing may hang: the whole run is bounded well above its request timeouts.
    tokio::time::timeout(
        Duration::from_secs(60),
        run_plan(plan, CancellationToken::new(), &mut NoObserver),
    )
    .await
    .expect("run finished")
    .expect("run set up")
}

async fn failing_step(b: Behavior, timeout: Duration) -> inferops::contract::StepResult {
    let server = Server::start(b).await;
    let results = run(&small_plan(&server.url(), 2, 4, timeout)).await;
    assert_eq!(results.steps.len(), 1);
    let s = results.steps[0].clone();
    assert_eq!((s.completed, s.failed), (0, 4), "{b:?}: {}", s.one_line());
    assert!(!results.summary.steps_over_error_budget.is_empty());
    s
}

fn only_message(s: &inferops::contract::StepResult, class: ErrorClass) -> String {
    assert_eq!(s.errors.get(class), 4, "{}", s.one_line());
    s.error_messages[&class].join(" | ")
}

#[tokio::test]
async fn wrong_model_is_a_4xx_with_the_server_message() {
    let s = failing_step(Behavior::WrongModel, Duration::from_secs(5)).await;
    let m = only_message(&s, ErrorClass::Http4xx);
    assert!(
        m.contains("404") && m.contains("The model `wrong` does not exist."),
        "{m}"
    );
}

#[tokio::test]
async fn server_errors_are_5xx() {
    let s = failing_step(Behavior::Unavailable, Duration::from_secs(5)).await;
    assert!(only_message(&s, ErrorClass::Http5xx).contains("engine overloaded"));
}

#[tokio::test]
async fn truncated_stream_is_a_stream_error() {
    let s = failing_step(Behavior::Truncated, Duration::from_secs(5)).await;
    let m = only_message(&s, ErrorClass::Stream);
    assert!(
        m.contains("without [DONE] after 3 chunks") && m.contains("truncated"),
        "{m}"
    );
}

#[tokio::test]
async fn malformed_event_is_a_body_error() {
    let s = failing_step(Behavior::Malformed, Duration::from_secs(5)).await;
    assert!(only_message(&s, ErrorClass::Body).contains("this is not json"));
}

#[tokio::test]
async fn error_event_mid_stream_is_a_stream_error() {
    let s = failing_step(Behavior::ErrorEvent, Duration::from_secs(5)).await;
    assert!(only_message(&s, ErrorClass::Stream).contains("CUDA out of memory"));
}

#[tokio::test]
async fn json_body_instead_of_a_stream_is_a_body_error() {
    let s = failing_step(Behavior::JsonInsteadOfStream, Duration::from_secs(5)).await;
    assert!(only_message(&s, ErrorClass::Body).contains("streaming disabled"));
}

#[tokio::test]
async fn silent_and_stalled_servers_time_out_on_time() {
    for (b, expect) in [
        (Behavior::Silent, "no response within 300ms"),
        (
            Behavior::Stall,
            "stream not finished within 300ms (1 chunks received)",
        ),
    ] {
        let started = Instant::now();
        let s = failing_step(b, Duration::from_millis(300)).await;
        let m = only_message(&s, ErrorClass::Timeout);
        assert!(m.contains(expect), "{m}");
        // 4 requests on 2 workers: two rounds of 300 ms, with generous slack for a busy CI.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn refused_connection_is_a_connect_error_and_later_steps_are_skipped() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut plan = small_plan(&format!("http://{addr}"), 1, 3, Duration::from_secs(5));
    plan.load.concurrency = vec![1, 2, 4];
    let results = run(&plan).await;
    assert_eq!(
        results.steps.len(),
        1,
        "stops after a step where everything failed"
    );
    let s = &results.steps[0];
    assert_eq!(s.errors.connect, 3, "{}", s.one_line());
    let m = s.error_messages[&ErrorClass::Connect].join(" ");
    assert!(m.to_lowercase().contains("refused"), "{m}");
    assert!(results.summary.stopped_early.is_some());
}

#[tokio::test]
async fn streams_split_anywhere_are_measured() {
    let server = Server::start(Behavior::Bytewise { tokens: 5 }).await;
    let results = run(&small_plan(&server.url(), 2, 6, Duration::from_secs(10))).await;
    let s = &results.steps[0];
    assert_eq!((s.completed, s.failed), (6, 0), "{}", s.one_line());
    assert_eq!(s.total_output_tokens, 30);
    assert_eq!(
        s.total_input_tokens, 66,
        "server usage wins over the word count"
    );
    assert!(results.summary.steps_over_error_budget.is_empty());
}

#[tokio::test]
async fn ttft_and_itl_match_known_server_delays() {
    let b = Behavior::Good {
        tokens: 10,
        ttft: Duration::from_millis(60),
        itl: Duration::from_millis(15),
    };
    let server = Server::start(b).await;
    let results = run(&small_plan(&server.url(), 4, 12, Duration::from_secs(10))).await;
    let s = &results.steps[0];
    assert_eq!(s.completed, 12, "{}", s.one_line());
    // Lower bounds are exact (the server sleeps at least this long); upper bounds are generous.
    assert!(
        s.median_ttft_ms >= 60.0 && s.median_ttft_ms < 120.0,
        "{}",
        s.median_ttft_ms
    );
    assert!(
        s.median_itl_ms >= 14.0 && s.median_itl_ms < 30.0,
        "{}",
        s.median_itl_ms
    );
    assert!(
        s.median_tpot_ms >= 14.0 && s.median_tpot_ms < 30.0,
        "{}",
        s.median_tpot_ms
    );
    let e2e_floor = 60.0 + 9.0 * 15.0;
    assert!(s.median_e2el_ms >= e2e_floor, "{}", s.median_e2el_ms);
    let itl = s.histograms.decode().unwrap().itl;
    assert_eq!(itl.len(), 12 * 9, "one gap per chunk after the first");
}

#[tokio::test]
async fn non_streamed_requests_measure_end_to_end() {
    let server = Server::start(Behavior::Plain).await;
    let mut plan = small_plan(&server.url(), 2, 4, Duration::from_secs(5));
    plan.workload.stream = false;
    plan.workload.api = Api::Chat;
    let results = run(&plan).await;
    let s = &results.steps[0];
    assert_eq!(
        (s.completed, s.total_output_tokens),
        (4, 16),
        "{}",
        s.one_line()
    );
    assert!(s.median_e2el_ms >= 30.0);
    assert_eq!(s.histograms.decode().unwrap().itl.len(), 0);
}

#[tokio::test]
async fn open_loop_counts_latency_from_the_scheduled_time() {
    // The server takes 100 ms per request; the client may only have one in flight; requests
    // are scheduled every 50 ms. Request k waits for k earlier ones: its latency measured from
    // its scheduled time grows by ~50 ms each. A client with coordinated omission would
    // report ~100 ms for all of them.
    let server = Server::start(Behavior::Serial {
        ttft: Duration::from_millis(100),
    })
    .await;
    let mut plan = small_plan(&server.url(), 1, 10, Duration::from_secs(10));
    plan.load.mode = Mode::Rate;
    plan.load.rate = vec![20.0];
    plan.load.arrival = Arrival::Constant;
    plan.load.max_in_flight = 1;
    let results = run(&plan).await;
    let s = &results.steps[0];
    assert_eq!(s.completed, 10, "{}", s.one_line());
    assert_eq!(s.request_rate, Some(20.0));
    assert!(s.median_e2el_ms > 250.0, "median {}", s.median_e2el_ms);
    assert!(s.p99_e2el_ms > 450.0, "p99 {}", s.p99_e2el_ms);
}

#[tokio::test]
async fn saturation_search_bisects_to_the_breaking_rate() {
    // A server that serves one request at a time in 20 ms: capacity 50 req/s.
    let server = Server::start(Behavior::Serial {
        ttft: Duration::from_millis(20),
    })
    .await;
    let mut plan = small_plan(&server.url(), 1, 1, Duration::from_secs(10));
    plan.load.mode = Mode::Rate;
    plan.load.requests_per_step = None;
    plan.load.duration_per_step = Some(Duration::from_millis(1500));
    plan.load.saturation = Some(Saturation {
        slo: Slo {
            ttft_p95: Some(Duration::from_millis(150)),
            max_error_rate: Some(0.01),
            ..Slo::default()
        },
        start_rate: 10.0,
        max_rate: 640.0,
        step_factor: 2.0,
        tolerance: 0.05,
        ..Saturation::default()
    });
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        run_plan(&plan, CancellationToken::new(), &mut NoObserver),
    )
    .await
    .expect("search finished")
    .unwrap();
    let sat = results
        .summary
        .saturation
        .clone()
        .expect("saturation result");
    let (ok, broke) = (
        sat.highest_ok_rate.expect("a rate held"),
        sat.first_broken_rate.expect("an SLO broke"),
    );
    // Within 5%, and never above what the server can do.
    assert!(sat.converged, "{sat:?}");
    assert!((broke - ok) / ok <= 0.05 + 1e-9, "{sat:?}");
    assert!(sat.bracket_width.unwrap() <= 0.05 + 1e-9, "{sat:?}");
    assert!(ok >= 10.0 && broke <= 52.0, "{sat:?}");
    // Every probe is a step; growing then bisecting.
    assert_eq!(sat.probes.len(), results.steps.len());
    let phases: Vec<_> = sat.probes.iter().map(|p| p.phase).collect();
    assert!(phases.contains(&ProbePhase::Grow) && phases.contains(&ProbePhase::Bisect));
    for p in &sat.probes {
        assert_eq!(results.steps[p.step].request_rate, p.load.rate());
        assert_eq!(p.held, p.load.rate().unwrap() <= ok, "{p:?}");
    }
    assert!(!sat.broken_by.is_empty(), "{sat:?}");
    assert!(sat.probes.len() <= 12, "{} probes", sat.probes.len());
}

#[tokio::test]
async fn concurrency_saturation_search_finds_the_breaking_concurrency() {
    // One request at a time in 20 ms (plus overhead on a busy machine): at concurrency c,
    // TTFT is about c x 20-30 ms, so a 170 ms TTFT p95 holds up to 5-8 in flight.
    let server = Server::start(Behavior::Serial {
        ttft: Duration::from_millis(20),
    })
    .await;
    let mut plan = small_plan(&server.url(), 1, 40, Duration::from_secs(10));
    plan.load.saturation = Some(Saturation {
        slo: Slo {
            ttft_p95: Some(Duration::from_millis(170)),
            ..Slo::default()
        },
        start_concurrency: 1,
        max_concurrency: 64,
        ..Saturation::default()
    });
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        run_plan(&plan, CancellationToken::new(), &mut NoObserver),
    )
    .await
    .expect("search finished")
    .unwrap();
    let sat = results.summary.saturation.clone().unwrap();
    let (ok, broke) = (
        sat.highest_ok_concurrency.unwrap(),
        sat.first_broken_concurrency.unwrap(),
    );
    assert!(sat.converged, "{sat:?}");
    assert!((4..=8).contains(&ok) && broke == ok + 1, "{sat:?}");
    assert_eq!(sat.highest_ok_rate, None);
    assert_eq!(
        results
            .steps
            .iter()
            .filter_map(|s| s.max_concurrency)
            .collect::<Vec<_>>()[..4],
        [1, 2, 4, 8]
    );
}

#[tokio::test]
async fn an_open_loop_over_capacity_falls_behind_and_one_under_it_does_not() {
    let server = Server::start(Behavior::Serial {
        ttft: Duration::from_millis(20),
    })
    .await;
    let mut plan = small_plan(&server.url(), 1, 1, Duration::from_secs(20));
    plan.load.mode = Mode::Rate;
    plan.load.rate = vec![15.0, 100.0];
    plan.load.arrival = Arrival::Constant;
    plan.load.requests_per_step = None;
    plan.load.duration_per_step = Some(Duration::from_secs(2));
    let results = run(&plan).await;
    let (under, over) = (&results.steps[0], &results.steps[1]);
    assert!(!under.falling_behind, "{under:?}");
    let (a, f) = (
        over.arrival_rate.unwrap(),
        over.achieved_request_rate.unwrap(),
    );
    assert!((80.0..=120.0).contains(&a), "{a}");
    assert!(f < 60.0, "{f}");
    assert!(over.ttft_growth.unwrap() > 1.5, "{over:?}");
    assert!(over.falling_behind);
    let v = Slo::default().violations(&inferops::contract::Measured::of_result(over));
    assert_eq!(v.len(), 1);
    assert!(v[0].to_string().starts_with("fallingBehind"), "{}", v[0]);
}

#[tokio::test]
async fn cancelling_keeps_what_was_measured() {
    let server = Server::start(Behavior::Good {
        tokens: 3,
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
    })
    .await;
    let mut plan = small_plan(&server.url(), 2, 1_000_000, Duration::from_secs(5));
    plan.load.concurrency = vec![2, 4];
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c2.cancel();
    });
    let results = tokio::time::timeout(
        Duration::from_secs(20),
        run_plan(&plan, cancel, &mut NoObserver),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(results.steps.len(), 1);
    assert!(results.steps[0].interrupted);
    assert!(results.steps[0].completed > 0);
    assert_eq!(
        results.metadata.status,
        inferops::contract::RunStatus::Interrupted
    );
}

#[tokio::test]
async fn client_reuses_buffers_and_reports_usage() {
    let server = Server::start(Behavior::Good {
        tokens: 4,
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
    })
    .await;
    let plan = small_plan(&server.url(), 1, 1, Duration::from_secs(5));
    let client = Client::new(&ClientConfig::new(
        &plan.target,
        Api::Completions,
        true,
        Duration::from_secs(5),
    ))
    .unwrap();
    let w = RequestSet::prepare(&plan, 1).unwrap();
    let mut scratch = Scratch::with_trace();
    for _ in 0..3 {
        let m = client
            .send(w.get(0), Instant::now(), &mut scratch)
            .await
            .unwrap();
        assert_eq!((m.prompt_tokens, m.output_tokens), (11, 4));
        assert_eq!(scratch.itl_us.len(), 3);
        let t = scratch.trace.as_ref().unwrap();
        assert_eq!((t.id.as_str(), t.chunk_times.len()), ("cmpl-t", 4));
        assert!(m.ttft_us <= m.e2el_us);
    }
}

fn client_for(url: &str, force_reqwest: bool, timeout: Duration) -> (Client, RequestSet) {
    let plan = small_plan(url, 1, 1, timeout);
    let mut cfg = ClientConfig::new(&plan.target, Api::Completions, true, timeout);
    cfg.force_reqwest = force_reqwest;
    (
        Client::new(&cfg).unwrap(),
        RequestSet::prepare(&plan, 1).unwrap(),
    )
}

#[tokio::test]
async fn both_transports_classify_alike() {
    for force_reqwest in [false, true] {
        for (b, class) in [
            (Behavior::WrongModel, Some(ErrorClass::Http4xx)),
            (Behavior::Truncated, Some(ErrorClass::Stream)),
            (Behavior::Malformed, Some(ErrorClass::Body)),
            (Behavior::Stall, Some(ErrorClass::Timeout)),
            (Behavior::Bytewise { tokens: 3 }, None),
        ] {
            let server = Server::start(b).await;
            let (client, w) = client_for(&server.url(), force_reqwest, Duration::from_millis(400));
            let mut scratch = Scratch::default();
            let r = client.send(w.get(0), Instant::now(), &mut scratch).await;
            match class {
                Some(c) => assert_eq!(r.unwrap_err().class, c, "{b:?} reqwest={force_reqwest}"),
                None => assert_eq!(r.unwrap().output_tokens, 3, "{b:?} reqwest={force_reqwest}"),
            }
        }
    }
}

#[tokio::test]
async fn kept_alive_connections_closed_by_the_server_are_replaced() {
    let server = Server::start(Behavior::KeepAliveThenClose).await;
    for force_reqwest in [false, true] {
        let (client, w) = client_for(&server.url(), force_reqwest, Duration::from_secs(5));
        let mut scratch = Scratch::default();
        for _ in 0..3 {
            let m = client.send(w.get(0), Instant::now(), &mut scratch).await;
            assert_eq!(m.unwrap().output_tokens, 1, "reqwest={force_reqwest}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // Back to back: the connection is reused while the server still holds it.
        let a = client.send(w.get(0), Instant::now(), &mut scratch).await;
        let b = client.send(w.get(0), Instant::now(), &mut scratch).await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    }
}

#[tokio::test]
async fn unresolvable_hosts_end_within_their_timeout() {
    // A name that does not resolve (or whose lookup hangs): the request ends by its deadline.
    for url in ["http://no-such-host.invalid:8000"] {
        for force_reqwest in [false, true] {
            let (client, w) = client_for(url, force_reqwest, Duration::from_millis(500));
            let started = Instant::now();
            let mut scratch = Scratch::default();
            let f = client
                .send(w.get(0), Instant::now(), &mut scratch)
                .await
                .unwrap_err();
            assert!(
                matches!(f.class, ErrorClass::Connect | ErrorClass::Timeout),
                "{url}: {f:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{url}: {:?}",
                started.elapsed()
            );
        }
    }
}

/// Resident memory of this process, bytes.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `plan` while sampling the resident memory; returns the results and the peak growth.
async fn run_sampling_rss(plan: &Plan) -> (Results, usize) {
    let base = rss_bytes();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let results = run(plan).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    (results, peak.saturating_sub(base))
}

#[tokio::test]
async fn huge_lines_and_events_fail_with_a_body_error_in_bounded_memory() {
    for b in [Behavior::HugeLine, Behavior::HugeEvent] {
        let server = Server::start(b).await;
        // 16 streams at once, each sent 10 MB without a line or event end: buffered whole,
        // that is 160 MB; with the 1 MiB default limit each request holds at most 1 MiB.
        let plan = small_plan(&server.url(), 16, 32, Duration::from_secs(20));
        let (results, growth) = run_sampling_rss(&plan).await;
        let s = &results.steps[0];
        assert_eq!((s.completed, s.failed), (0, 32), "{b:?}: {}", s.one_line());
        assert_eq!(s.errors.get(ErrorClass::Body), 32, "{}", s.one_line());
        let m = s.error_messages[&ErrorClass::Body].join(" | ");
        assert!(m.contains("response too large"), "{m}");
        assert!(m.contains("1048576-byte limit"), "{m}");
        assert!(
            growth < 80 << 20,
            "{b:?}: memory grew by {} MB while hostile streams were read",
            growth >> 20
        );
    }
}

#[tokio::test]
async fn the_event_limit_is_configurable_and_applies_to_plain_bodies() {
    let server = Server::start(Behavior::HugeBody).await;
    let mut plan = small_plan(&server.url(), 2, 4, Duration::from_secs(20));
    plan.workload.stream = false;
    let r = run(&plan).await;
    let m = only_message(&r.steps[0], ErrorClass::Body);
    assert!(m.contains("body longer than the 1048576-byte limit"), "{m}");
    // Raised above the body, the same response is read (and then is not a completion).
    let opts = inferops::loadgen::RunOptions {
        max_event_bytes: Some(20 << 20),
        ..Default::default()
    };
    let r =
        inferops::loadgen::run_plan_with(&plan, &opts, CancellationToken::new(), &mut NoObserver)
            .await
            .unwrap();
    let m = only_message(&r.steps[0], ErrorClass::Body);
    assert!(!m.contains("too large"), "{m}");
    // A small limit fails an ordinary stream whose events are longer.
    let good = Server::start(Behavior::Good {
        tokens: 3,
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
    })
    .await;
    let plan = small_plan(&good.url(), 2, 4, Duration::from_secs(20));
    let opts = inferops::loadgen::RunOptions {
        max_event_bytes: Some(40),
        ..Default::default()
    };
    let r =
        inferops::loadgen::run_plan_with(&plan, &opts, CancellationToken::new(), &mut NoObserver)
            .await
            .unwrap();
    let m = only_message(&r.steps[0], ErrorClass::Body);
    assert!(m.contains("40-byte limit"), "{m}");
}

/// A keep-alive SSE server behind a listen queue of one connection that accepts one
/// connection every 20 ms: a burst of connects overflows the queue and the dropped SYNs are
/// retransmitted by the kernel after 1 s.
async fn slow_accepting_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let body = format!("{}{}", token(0), usage(1));
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                while let Ok(Some((first, _))) = read_request_line(&mut sock).await {
                    if first.starts_with("get ") {
                        if sock.write_all(MODELS.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if sock.write_all(head.as_bytes()).await.is_err()
                        || sock.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (addr, task)
}

#[tokio::test]
#[ignore = "depends on how the kernel drops and retransmits SYNs (varies between machines and kernels; fails on some): run it by name, scripts/test-all.sh skips it"]
async fn connections_are_opened_before_the_measured_window() {
    // Pre-connect on (the default): the SYN retransmits land in the connection set-up, the
    // requests themselves (one per kept-alive connection) see none of it.
    let (addr, task) = slow_accepting_server().await;
    // A generous timeout: the kernel retransmits a dropped SYN after 1, 3, 7, 15 and 31 s, and
    // how many connections each wave admits varies between kernels.
    let plan = small_plan(&format!("http://{addr}"), 16, 16, Duration::from_secs(45));
    let r = run(&plan).await;
    task.abort();
    let s = &r.steps[0];
    assert_eq!((s.completed, s.failed), (16, 0), "{}", s.one_line());
    let setup = s
        .connection_setup
        .as_ref()
        .expect("a connection set-up phase");
    assert_eq!((setup.connections, setup.failed), (16, 0));
    assert!(
        setup.slowest_ms >= 900.0,
        "a burst of 16 connects into a queue of 1 retransmits SYNs: {setup:?}"
    );
    assert!(
        s.p99_ttft_ms < 500.0,
        "TTFT p99 {} ms includes connection set-up",
        s.p99_ttft_ms
    );
    let window = (s.window_end - s.window_start).num_milliseconds();
    assert!(
        window < 900,
        "the measured window ({window} ms) holds the set-up"
    );
    // Without pre-connect, the same burst happens inside the window: the 1 s mode shows in
    // TTFT, and there is no set-up phase to report.
    let (addr, task) = slow_accepting_server().await;
    let plan = small_plan(&format!("http://{addr}"), 16, 16, Duration::from_secs(45));
    let opts = inferops::loadgen::RunOptions {
        no_preconnect: true,
        ..Default::default()
    };
    let r =
        inferops::loadgen::run_plan_with(&plan, &opts, CancellationToken::new(), &mut NoObserver)
            .await
            .unwrap();
    task.abort();
    let s = &r.steps[0];
    assert_eq!(s.completed, 16, "{}", s.one_line());
    assert!(s.connection_setup.is_none());
    assert!(s.p99_ttft_ms >= 900.0, "{}", s.one_line());
}
