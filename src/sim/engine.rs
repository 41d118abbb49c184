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
//! With prefix caching (vLLM's default), a request admitted from the waiting queue first looks
//! up the longest run of its leading full prompt blocks in the engine's [`PrefixCache`]
//! (leaving at least one prompt token to compute, as vLLM does): those tokens count as computed,
//! so they cost no prefill time and no new KV blocks. Every full prompt block a sequence
//! computes is added to the cache; blocks stay cached after their sequences finish, count as
//! free, and are evicted least recently released first when new blocks are needed. Each
//! admission adds its prompt tokens to `vllm:prefix_cache_queries` and its cached tokens to
//! `vllm:prefix_cache_hits`.
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
use super::prefix::PrefixCache;
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
    /// Chained hashes of the prompt's full blocks ([`super::prefix::block_hashes`]); empty
    /// without prefix caching.
    pub block_hashes: Vec<u64>,
    /// The LoRA adapter it runs with (index into `--lora`; `None`: the base model).
    pub lora: Option<usize>,
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
    /// Most distinct LoRA adapters in one batch (vLLM `--max-loras`).
    pub max_loras: usize,
    /// Extra step time per distinct adapter in the batch, as a fraction of the step.
    pub lora_step_cost: f64,
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
            max_loras: o.max_loras.max(1),
            lora_step_cost: o.lora_step_cost,
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
    /// KV blocks this sequence holds alone.
    own: usize,
    /// Hashes of the cached blocks it holds a reference on (its leading blocks).
    cached: Vec<u64>,
    /// Leading prompt blocks already looked up or offered to the cache.
    registered: usize,
}

impl Seq {
    fn len(&self) -> usize {
        self.req.prompt_tokens + self.generated
    }
    /// KV blocks it uses (own and shared).
    fn blocks(&self) -> usize {
        self.own + self.cached.len()
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
    /// Blocks not used by a running sequence (including unreferenced cached blocks).
    free_blocks: usize,
    cache: PrefixCache,
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
            cache: PrefixCache::default(),
        }
    }

    fn enqueue(&mut self, req: EngineRequest) {
        self.waiting.push_back(Seq {
            req,
            first_scheduled: None,
            computed: 0,
            generated: 0,
            own: 0,
            cached: Vec::new(),
            registered: 0,
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
            let need = self
                .blocks_for(s.computed + chunk)
                .saturating_sub(s.blocks());
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
            self.allocate(need);
            self.running[i].own += need;
            out.push((i, chunk));
            budget -= chunk;
            i += 1;
        }
        if !preempted {
            while budget > 0 && self.running.len() < self.cfg.max_num_seqs {
                let Some(pos) = self.next_admissible() else {
                    break;
                };
                let s = &self.waiting[pos];
                // Cached leading blocks, leaving at least one prompt token to compute.
                let max_hit = s.req.prompt_tokens.saturating_sub(1) / self.cfg.block_size;
                let (hits, idle) = self.cache.lookup(&s.req.block_hashes, max_hit);
                let computed = hits * self.cfg.block_size;
                let chunk = (s.len() - computed).min(budget);
                let need = self.blocks_for(computed + chunk).saturating_sub(hits);
                if need + idle > self.free_blocks {
                    break;
                }
                let mut s = self.waiting.remove(pos).expect("peeked");
                self.cache.acquire(&s.req.block_hashes[..hits]);
                self.free_blocks -= idle;
                s.cached = s.req.block_hashes[..hits].to_vec();
                s.registered = hits;
                s.computed = computed;
                self.allocate(need);
                s.own += need;
                self.metrics
                    .prefix_cache_queries
                    .inc_by(s.req.prompt_tokens as u64);
                self.metrics.prefix_cache_hits.inc_by(computed as u64);
                s.first_scheduled.get_or_insert(now);
                self.running.push(s);
                out.push((self.running.len() - 1, chunk));
                budget -= chunk;
            }
        }
        out
    }

    /// The first waiting request that may join the batch: any base-model request, or one
    /// whose LoRA adapter is running or fits under `max_loras` distinct adapters (vLLM's
    /// scheduler skips the others, so later requests pass them).
    fn next_admissible(&self) -> Option<usize> {
        let front = self.waiting.front()?;
        if front.req.lora.is_none() {
            return Some(0);
        }
        let running = self.running_adapters();
        self.waiting.iter().position(|s| match s.req.lora {
            None => true,
            Some(l) => running.contains(&l) || running.len() < self.cfg.max_loras,
        })
    }

    /// Distinct adapters of the running sequences.
    fn running_adapters(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.running.iter().filter_map(|s| s.req.lora).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Takes `n` free blocks, evicting unreferenced cached blocks when no uncached one is left.
    fn allocate(&mut self, n: usize) {
        self.free_blocks -= n;
        while self.cache.idle() > self.free_blocks && self.cache.evict_lru() {}
    }

    /// Returns the blocks of `s` (its cached ones stay cached, unreferenced).
    fn release(&mut self, s: &mut Seq) {
        self.free_blocks += s.own;
        for h in s.cached.drain(..) {
            if self.cache.release(h) {
                self.free_blocks += 1;
            }
        }
        s.own = 0;
        s.registered = 0;
    }

    /// Offers the full prompt blocks `s` has computed to the cache.
    fn register(cache: &mut PrefixCache, s: &mut Seq, block_size: usize) {
        let full = (s.computed / block_size).min(s.req.block_hashes.len());
        while s.registered < full {
            let h = s.req.block_hashes[s.registered];
            if s.registered == s.cached.len() && cache.insert(h) {
                s.own -= 1;
                s.cached.push(h);
            }
            s.registered += 1;
        }
    }

    fn preempt(&mut self, mut s: Seq) {
        self.release(&mut s);
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
        if self.cfg.lora_step_cost > 0.0 && self.running.iter().any(|s| s.req.lora.is_some()) {
            let mut adapters: Vec<usize> = scheduled
                .iter()
                .filter_map(|&(i, _)| self.running[i].req.lora)
                .collect();
            adapters.sort_unstable();
            adapters.dedup();
            us *= 1.0 + self.cfg.lora_step_cost * adapters.len() as f64;
        }
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
            if s.registered < s.req.block_hashes.len() {
                Self::register(&mut self.cache, s, self.cfg.block_size);
            }
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
            self.remove_running(|s| s.req.output_tokens == 0);
        }
    }

    /// Removes the running sequences `done` selects and frees their blocks.
    fn remove_running(&mut self, done: impl Fn(&Seq) -> bool) {
        let all = std::mem::take(&mut self.running);
        let mut keep = Vec::with_capacity(all.len());
        for mut s in all {
            if done(&s) {
                self.release(&mut s);
            } else {
                keep.push(s);
            }
        }
        self.running = keep;
    }

    /// Drop requests whose client has gone away (a cancelled request frees its KV blocks).
    fn drop_abandoned(&mut self) {
        if self.running.iter().any(|s| s.req.events.is_closed()) {
            self.remove_running(|s| s.req.events.is_closed());
        }
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
        if let Some(info) = &self.metrics.lora_info {
            let waiting: Vec<usize> = self.waiting.iter().filter_map(|s| s.req.lora).collect();
            info.publish(&self.running_adapters(), &waiting);
        }
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
        cached_request(s, id, prompt, out, Vec::new())
    }

    fn cached_request(
        s: &mut Scheduler,
        id: u64,
        prompt: usize,
        out: usize,
        block_hashes: Vec<u64>,
    ) -> UnboundedReceiver<TokenEvent> {
        lora_request(s, id, prompt, out, block_hashes, None)
    }

    fn lora_request(
        s: &mut Scheduler,
        id: u64,
        prompt: usize,
        out: usize,
        block_hashes: Vec<u64>,
        lora: Option<usize>,
    ) -> UnboundedReceiver<TokenEvent> {
        let (tx, rx) = unbounded_channel();
        s.enqueue(EngineRequest {
            id,
            prompt_tokens: prompt,
            output_tokens: out,
            block_hashes,
            lora,
            submitted: Instant::now(),
            events: tx,
        });
        rx
    }

    #[test]
    fn max_loras_bounds_the_adapters_of_a_batch_and_lets_others_pass() {
        let mut s = scheduler(1000, 2048, 8);
        assert_eq!(s.cfg.max_loras, 1);
        let _a = lora_request(&mut s, 1, 10, 5, Vec::new(), Some(0));
        let _b = lora_request(&mut s, 2, 10, 5, Vec::new(), Some(1));
        let _c = lora_request(&mut s, 3, 10, 5, Vec::new(), None);
        let _d = lora_request(&mut s, 4, 10, 5, Vec::new(), Some(0));
        step(&mut s);
        // Adapter 1 waits: only one adapter per batch; the base model and adapter 0 run.
        let running: Vec<u64> = s.running.iter().map(|q| q.req.id).collect();
        assert_eq!(running, vec![1, 3, 4]);
        assert_eq!(s.running_adapters(), vec![0]);
        s.jitter = None;
        let with_cost = s.step_duration(&[(0, 1), (1, 1)]);
        s.cfg.lora_step_cost = 0.0;
        let without = s.step_duration(&[(0, 1), (1, 1)]);
        let ratio = with_cost.as_secs_f64() / without.as_secs_f64();
        assert!((ratio - 1.05).abs() < 1e-3, "one adapter costs 5%: {ratio}");
        run_until_idle(&mut s);
        assert_eq!(s.free_blocks, 1000, "adapter 1 ran once adapter 0 was done");
        s.cfg.max_loras = 2;
        let _a = lora_request(&mut s, 5, 10, 5, Vec::new(), Some(0));
        let _b = lora_request(&mut s, 6, 10, 5, Vec::new(), Some(1));
        step(&mut s);
        assert_eq!(s.running_adapters(), vec![0, 1]);
    }

    /// Hashes of a prompt of `blocks` full 16-token blocks: `shared` from group `g`, the rest
    /// unique to `id`.
    fn hashes(g: u64, shared: usize, id: u64, blocks: usize) -> Vec<u64> {
        (0..blocks as u64)
            .map(|b| {
                if (b as usize) < shared {
                    g * 1000 + b
                } else {
                    1_000_000 + id * 1000 + b
                }
            })
            .collect()
    }

    fn run_until_idle(s: &mut Scheduler) {
        for _ in 0..10_000 {
            if s.running.is_empty() && s.waiting.is_empty() {
                return;
            }
            step(s);
        }
        panic!("did not finish");
    }

    #[test]
    fn cached_prefix_blocks_skip_prefill() {
        let mut s = scheduler(1000, 2048, 8);
        // 100 tokens: 6 full blocks, 4 of them a shared prefix.
        let _a = cached_request(&mut s, 1, 100, 2, hashes(7, 4, 1, 6));
        assert_eq!(step(&mut s), vec![(0, 100)]);
        run_until_idle(&mut s);
        assert_eq!(s.free_blocks, 1000, "finished blocks stay cached but free");
        assert_eq!(s.cache.idle(), 6);
        let _b = cached_request(&mut s, 2, 100, 2, hashes(7, 4, 2, 6));
        // 4 blocks (64 tokens) come from the cache: only 36 are prefilled.
        assert_eq!(step(&mut s), vec![(0, 36)]);
        assert_eq!(s.metrics.prefix_cache_queries.get(), 200);
        assert_eq!(s.metrics.prefix_cache_hits.get(), 64);
        let with = s.step_duration(&[(0, 36)]);
        let without = s.step_duration(&[(0, 100)]);
        assert!(with < without, "{with:?} vs {without:?}");
        run_until_idle(&mut s);
        // The same prompt again: everything but the last token's block is cached (vLLM always
        // computes at least one token).
        let _c = cached_request(&mut s, 3, 96, 1, hashes(7, 4, 2, 6));
        assert_eq!(step(&mut s), vec![(0, 16)]);
    }

    #[test]
    fn running_sequences_share_cached_blocks() {
        let mut s = scheduler(1000, 2048, 8);
        let _a = cached_request(&mut s, 1, 64, 50, hashes(1, 4, 1, 4));
        step(&mut s);
        let used = 1000 - s.free_blocks;
        let _b = cached_request(&mut s, 2, 64, 50, hashes(1, 4, 2, 4));
        step(&mut s);
        // b reuses a's 3 leading blocks (its last prompt block is recomputed) and adds one;
        // a's 65th token takes a fifth block.
        assert_eq!(1000 - s.free_blocks, used + 2);
        run_until_idle(&mut s);
        assert_eq!(s.free_blocks, 1000);
    }

    #[test]
    fn kv_pressure_evicts_least_recently_released_blocks() {
        // 10 blocks: group 1's 4 cached blocks, then group 2 and 3 prompts push them out.
        let mut s = scheduler(10, 2048, 8);
        let _a = cached_request(&mut s, 1, 64, 1, hashes(1, 4, 1, 4));
        run_until_idle(&mut s);
        let _b = cached_request(&mut s, 2, 64, 1, hashes(2, 4, 2, 4));
        run_until_idle(&mut s);
        assert_eq!(s.cache.len(), 8);
        let _c = cached_request(&mut s, 3, 64, 1, hashes(3, 4, 3, 4));
        run_until_idle(&mut s);
        assert!(s.cache.len() <= 10);
        let hits = s.metrics.prefix_cache_hits.get();
        // Group 1 (released first) was evicted: no hit; group 3 is still cached.
        let _d = cached_request(&mut s, 4, 64, 1, hashes(1, 4, 4, 4));
        run_until_idle(&mut s);
        assert_eq!(s.metrics.prefix_cache_hits.get(), hits);
        let _e = cached_request(&mut s, 5, 64, 1, hashes(3, 4, 5, 4));
        run_until_idle(&mut s);
        assert_eq!(s.metrics.prefix_cache_hits.get(), hits + 48);
        assert_eq!(s.free_blocks, 10);
    }

    #[test]
    fn cancelled_requests_free_their_blocks() {
        let mut s = scheduler(100, 2048, 8);
        let a = cached_request(&mut s, 1, 64, 1000, hashes(1, 4, 1, 4));
        step(&mut s);
        step(&mut s);
        assert!(s.free_blocks < 100);
        drop(a);
        s.drop_abandoned();
        assert!(s.running.is_empty());
        assert_eq!(s.free_blocks, 100);
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
