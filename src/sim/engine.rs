//! The simulated engine: one OS thread per replica running a vLLM-V1-like scheduler on a
//! virtual clock.
//!
//! Each iteration is one engine *step*:
//! 1. Running sequences are scheduled first, in order: a decoding sequence takes one token of
//!    the step's token budget (`max_num_batched_tokens`), a sequence still in prefill takes a
//!    chunk of its remaining prompt (chunked prefill). Each needs KV blocks for the tokens it
//!    computes; when the cache is full the last running sequence is preempted (its blocks are
//!    freed and it is recomputed later from the front of the waiting queue), as vLLM does.
//! 2. If nothing was preempted, waiting requests are admitted in FIFO order while there is
//!    token budget, a free sequence slot (`max_num_seqs`) and enough free KV blocks.
//! 3. The step lasts `base + per_seq * decodes + per_prefill_token * prefill_tokens`, with
//!    jitter (see [`PerfModel`]). The thread sleeps until the step's
//!    end on the virtual clock (absolute deadlines, so errors never accumulate), then every
//!    sequence whose tokens are all computed samples one token, which is sent to its request.
//!
//! Every random choice comes from a seeded RNG, so a given arrival sequence always produces the
//! same schedule.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::ReplicaMetrics;
use super::profile::{PerfModel, SimOptions};
use super::timer::sleep_until_blocking;

/// One token produced for a request.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent {
    /// Virtual time the step that produced it ended.
    pub at: Instant,
    /// 0-based index of the token in the output.
    pub index: usize,
    /// This is the last token of the request.
    pub finished: bool,
    /// Time from submission to the engine until first scheduled.
    pub queue_time: Duration,
}

/// A request handed to an engine.
#[derive(Debug)]
pub struct EngineRequest {
    /// Server-wide request number.
    pub id: u64,
    /// Prompt length in tokens (at least 1).
    pub prompt_tokens: usize,
    /// Number of tokens to generate (at least 1).
    pub output_tokens: usize,
    /// When the request was submitted.
    pub submitted: Instant,
    /// Where tokens go; the request is dropped when the receiver is gone.
    pub events: UnboundedSender<TokenEvent>,
}

enum Msg {
    Submit(EngineRequest),
    Stop,
}

/// Static engine parameters, copied from [`SimOptions`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Cost model.
    pub perf: PerfModel,
    /// Max running sequences.
    pub max_num_seqs: usize,
    /// Token budget per step.
    pub max_num_batched_tokens: usize,
    /// KV cache blocks.
    pub num_gpu_blocks: usize,
    /// Tokens per block.
    pub block_size: usize,
    /// RNG seed of this engine.
    pub seed: u64,
}

impl EngineConfig {
    /// The engine configuration of replica `replica`.
    pub fn from_options(o: &SimOptions, replica: usize) -> Self {
        EngineConfig {
            perf: o.perf.clone(),
            max_num_seqs: o.max_num_seqs,
            max_num_batched_tokens: o.max_num_batched_tokens,
            num_gpu_blocks: o.num_gpu_blocks,
            block_size: o.block_size,
            seed: o
                .seed
                .wrapping_add((replica as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }
}

/// A running engine thread.
pub struct Engine {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Start an engine thread. `busy_ns` accumulates simulated GPU busy time.
    pub fn start(
        name: String,
        cfg: EngineConfig,
        metrics: ReplicaMetrics,
        busy_ns: Arc<AtomicU64>,
    ) -> Engine {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || Scheduler::new(cfg, metrics, busy_ns).run(rx))
            .expect("spawn engine thread");
        Engine {
            tx,
            thread: Some(thread),
        }
    }

    /// Queue a request. Returns false if the engine has stopped.
    pub fn submit(&self, req: EngineRequest) -> bool {
        self.tx.send(Msg::Submit(req)).is_ok()
    }

    /// Stop the thread and wait for it.
    pub fn stop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

struct Seq {
    req: EngineRequest,
    first_scheduled: Option<Instant>,
    computed: usize,
    generated: usize,
    blocks: usize,
}

impl Seq {
    fn len(&self) -> usize {
        self.req.prompt_tokens + self.generated
    }
}

/// Largest lag behind real time the virtual clock may accumulate before it is reset (so an
/// overloaded host produces slow steps rather than a burst of catch-up tokens).
const MAX_LAG: Duration = Duration::from_millis(20);

struct Scheduler {
    cfg: EngineConfig,
    metrics: ReplicaMetrics,
    busy_ns: Arc<AtomicU64>,
    rng: StdRng,
    jitter: Option<Exp<f64>>,
    running: Vec<Seq>,
    waiting: VecDeque<Seq>,
    free_blocks: usize,
}

/// One scheduled entry of a step: index into `running` and tokens computed.
type Scheduled = (usize, usize);

impl Scheduler {
    fn new(cfg: EngineConfig, metrics: ReplicaMetrics, busy_ns: Arc<AtomicU64>) -> Self {
        let jitter = if cfg.perf.step_jitter > 0.0 {
            Exp::new(1.0 / cfg.perf.step_jitter).ok()
        } else {
            None
        };
        Scheduler {
            rng: StdRng::seed_from_u64(cfg.seed),
            free_blocks: cfg.num_gpu_blocks,
            cfg,
            metrics,
            busy_ns,
            jitter,
            running: Vec::new(),
            waiting: VecDeque::new(),
        }
    }

    fn enqueue(&mut self, req: EngineRequest) {
        self.waiting.push_back(Seq {
            req,
            first_scheduled: None,
            computed: 0,
            generated: 0,
            blocks: 0,
        });
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut clock = Instant::now();
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.publish();
                match rx.recv() {
                    Ok(Msg::Submit(r)) => self.enqueue(r),
                    Ok(Msg::Stop) | Err(_) => return,
                }
                clock = Instant::now();
            }
            loop {
                match rx.try_recv() {
                    Ok(Msg::Submit(r)) => self.enqueue(r),
                    Ok(Msg::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            if now > clock + MAX_LAG {
                clock = now;
            }
            self.drop_abandoned();
            let scheduled = self.schedule(clock);
            if scheduled.is_empty() {
                self.reject_unschedulable();
                continue;
            }
            self.publish();
            let dur = self.step_duration(&scheduled);
            let end = clock + dur;
            sleep_until_blocking(end);
            self.busy_ns
                .fetch_add(dur.as_nanos() as u64, Ordering::Relaxed);
            self.finish_step(&scheduled, end);
            clock = end;
        }
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.cfg.block_size)
    }

    /// Pick the work of one step (see the module docs).
    fn schedule(&mut self, now: Instant) -> Vec<Scheduled> {
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut out = Vec::with_capacity(self.running.len() + 4);
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = &self.running[i];
            let chunk = (s.len() - s.computed).min(budget);
            let need = self.blocks_for(s.computed + chunk).saturating_sub(s.blocks);
            let mut self_preempted = false;
            while self.free_blocks < need {
                let last = self.running.len() - 1;
                let victim = self.running.pop().expect("non-empty");
                self.preempt(victim);
                preempted = true;
                if last == i {
                    self_preempted = true;
                    break;
                }
            }
            if self_preempted {
                break;
            }
            self.free_blocks -= need;
            self.running[i].blocks += need;
            out.push((i, chunk));
            budget -= chunk;
            i += 1;
        }
        if !preempted {
            while budget > 0 && self.running.len() < self.cfg.max_num_seqs {
                let Some(s) = self.waiting.front() else { break };
                let chunk = (s.len() - s.computed).min(budget);
                let need = self.blocks_for(s.computed + chunk).saturating_sub(s.blocks);
                if need > self.free_blocks {
                    break;
                }
                let mut s = self.waiting.pop_front().expect("peeked");
                self.free_blocks -= need;
                s.blocks += need;
                s.first_scheduled.get_or_insert(now);
                self.running.push(s);
                out.push((self.running.len() - 1, chunk));
                budget -= chunk;
            }
        }
        out
    }

    fn preempt(&mut self, mut s: Seq) {
        self.free_blocks += s.blocks;
        s.blocks = 0;
        s.computed = 0;
        self.metrics.preemptions.inc();
        self.waiting.push_front(s);
    }

    fn step_duration(&mut self, scheduled: &[Scheduled]) -> Duration {
        let p = &self.cfg.perf;
        let mut decodes = 0usize;
        let mut prefill = 0usize;
        for &(i, chunk) in scheduled {
            let s = &self.running[i];
            if chunk == 1 && s.generated > 0 && s.computed + 1 == s.len() {
                decodes += 1;
            } else {
                prefill += chunk;
            }
        }
        let mut us = p.step_base_us
            + p.step_per_seq_us * decodes as f64
            + p.step_per_prefill_token_us * prefill as f64;
        if let Some(j) = &self.jitter {
            us *= 1.0 + j.sample(&mut self.rng);
        }
        Duration::from_nanos((us * 1000.0).max(0.0) as u64)
    }

    fn finish_step(&mut self, scheduled: &[Scheduled], end: Instant) {
        let mut any_done = false;
        for &(i, chunk) in scheduled {
            let s = &mut self.running[i];
            s.computed += chunk;
            if s.computed < s.len() {
                continue;
            }
            s.generated += 1;
            let finished = s.generated >= s.req.output_tokens;
            let queue_time = s
                .first_scheduled
                .map(|f| f.saturating_duration_since(s.req.submitted))
                .unwrap_or_default();
            let ev = TokenEvent {
                at: end,
                index: s.generated - 1,
                finished,
                queue_time,
            };
            if s.req.events.send(ev).is_err() || finished {
                // Mark for removal: the request is complete or its client went away.
                s.req.output_tokens = 0;
                any_done = true;
            }
        }
        if any_done {
            let mut freed = 0;
            self.running.retain(|s| {
                let keep = s.req.output_tokens > 0;
                if !keep {
                    freed += s.blocks;
                }
                keep
            });
            self.free_blocks += freed;
        }
    }

    /// Drop requests whose client has gone away.
    fn drop_abandoned(&mut self) {
        let mut freed = 0;
        self.running.retain(|s| {
            let keep = !s.req.events.is_closed();
            if !keep {
                freed += s.blocks;
            }
            keep
        });
        self.free_blocks += freed;
        self.waiting.retain(|s| !s.req.events.is_closed());
    }

    /// Nothing could be scheduled: drop the head of the queue if it cannot fit even in an
    /// empty cache.
    fn reject_unschedulable(&mut self) {
        let Some(head) = self.waiting.front() else {
            return;
        };
        let first_chunk = head.len().min(self.cfg.max_num_batched_tokens);
        if self.running.is_empty() && self.blocks_for(first_chunk) > self.cfg.num_gpu_blocks {
            let s = self.waiting.pop_front().expect("peeked");
            tracing::warn!(
                id = s.req.id,
                prompt_tokens = s.req.prompt_tokens,
                "request does not fit in the simulated KV cache; dropped"
            );
        }
    }

    fn publish(&self) {
        self.metrics.running.set(self.running.len() as i64);
        self.metrics.waiting.set(self.waiting.len() as i64);
        let used = self.cfg.num_gpu_blocks - self.free_blocks;
        self.metrics
            .kv_usage
            .set(used as f64 / self.cfg.num_gpu_blocks as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::metrics::Metrics;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    fn scheduler(blocks: usize, budget: usize, max_seqs: usize) -> Scheduler {
        let mut o = SimOptions::profile("qwen2.5-0.5b-l4").unwrap();
        o.num_gpu_blocks = blocks;
        o.max_num_batched_tokens = budget;
        o.max_num_seqs = max_seqs;
        let m = Metrics::new(&o).replicas[0].clone();
        Scheduler::new(
            EngineConfig::from_options(&o, 0),
            m,
            Arc::new(AtomicU64::new(0)),
        )
    }

    fn request(
        s: &mut Scheduler,
        id: u64,
        prompt: usize,
        out: usize,
    ) -> UnboundedReceiver<TokenEvent> {
        let (tx, rx) = unbounded_channel();
        s.enqueue(EngineRequest {
            id,
            prompt_tokens: prompt,
            output_tokens: out,
            submitted: Instant::now(),
            events: tx,
        });
        rx
    }

    fn step(s: &mut Scheduler) -> Vec<Scheduled> {
        let now = Instant::now();
        let sched = s.schedule(now);
        s.finish_step(&sched, now);
        sched
    }

    #[test]
    fn chunked_prefill_shares_the_token_budget() {
        let mut s = scheduler(1000, 150, 8);
        let mut a = request(&mut s, 1, 100, 3);
        let mut b = request(&mut s, 2, 100, 3);
        let _c = request(&mut s, 3, 100, 3);
        assert_eq!(step(&mut s), vec![(0, 100), (1, 50)]);
        assert_eq!(a.try_recv().unwrap().index, 0);
        assert!(b.try_recv().is_err());
        assert_eq!(s.waiting.len(), 1);
        // a decodes (1), b finishes its prompt (50), c gets the rest of the budget (99).
        assert_eq!(step(&mut s), vec![(0, 1), (1, 50), (2, 99)]);
        assert_eq!(b.try_recv().unwrap().index, 0);
        let dur = s.step_duration(&[(0, 1)]);
        assert!(dur >= Duration::from_micros(4_772));
    }

    #[test]
    fn full_cache_keeps_requests_waiting() {
        // 4 blocks of 16 tokens: one 40-token prompt (3 blocks) fits, a second does not.
        let mut s = scheduler(4, 2048, 8);
        let _a = request(&mut s, 1, 40, 20);
        let _b = request(&mut s, 2, 40, 20);
        assert_eq!(step(&mut s).len(), 1);
        assert_eq!((s.running.len(), s.waiting.len()), (1, 1));
        s.publish();
        assert_eq!(s.metrics.waiting.get(), 1);
        assert_eq!(s.metrics.kv_usage.get(), 0.75);
    }

    #[test]
    fn growing_sequences_preempt_the_last_admitted() {
        // 6 blocks. a: 40 + 20 tokens (4 blocks at the end), b: 20 + 20 (3 blocks): both
        // start (3 + 2 blocks), a takes the last free block, and when b needs its third it is
        // preempted, recomputed after a finishes, and still completes.
        let mut s = scheduler(6, 2048, 8);
        let mut a = request(&mut s, 1, 40, 20);
        let mut b = request(&mut s, 2, 20, 20);
        for _ in 0..60 {
            step(&mut s);
        }
        assert!(s.metrics.preemptions.get() >= 1);
        assert!(s.running.is_empty() && s.waiting.is_empty());
        assert_eq!(s.free_blocks, 6);
        for rx in [&mut a, &mut b] {
            let mut last = None;
            while let Ok(ev) = rx.try_recv() {
                last = Some(ev);
            }
            let last = last.unwrap();
            assert_eq!((last.index, last.finished), (19, true));
        }
    }

    #[test]
    fn max_num_seqs_limits_the_batch() {
        let mut s = scheduler(1000, 2048, 2);
        let _r: Vec<_> = (0..4).map(|i| request(&mut s, i, 10, 5)).collect();
        step(&mut s);
        assert_eq!((s.running.len(), s.waiting.len()), (2, 2));
    }
}
