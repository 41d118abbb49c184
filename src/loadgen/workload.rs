//! Request bodies, prepared once before the run: synthetic prompts of N words (seeded, so the
//! same seed gives the same prompt set), prompts from a ShareGPT JSON file, or groups of
//! synthetic prompts sharing a prefix.
//!
//! A shared-prefix prompt is the group's prefix words, a space and the prompt's own suffix
//! words. The simulator counts and hashes words as tokens (16-word KV blocks), so its prefix
//! cache sees exactly the shared words; a real server sees the same text through its tokenizer
//! (with `--tokenizer` the prefix and suffix are each cut to exact token counts).
//!
//! Without a tokenizer, input lengths are approximate: a synthetic prompt of N common English
//! words is about N tokens for BPE tokenizers (each word here is a single token with its
//! leading space in the Llama/Qwen/GPT vocabularies; chat templates add a few more). The
//! simulator counts one word as one token. With the model's HuggingFace `tokenizer.json`
//! ([`load_tokenizer`]), a synthetic prompt is cut to exactly N tokens (before any chat
//! template) and ShareGPT lengths are counted in tokens. Results always report the server's
//! `usage.prompt_tokens`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use tokenizers::Tokenizer;

use rand_distr::{Distribution, Normal};

use crate::contract::plan::{Api, Conversation, Dataset, Plan, SharedPrefix, TokenCount};

/// Common English words that are single tokens (with a leading space) in common vocabularies.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "time",
    "people",
    "year",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
    "change",
    "morning",
    "reason",
    "research",
    "girl",
    "guy",
    "moment",
    "air",
    "teacher",
    "force",
    "education",
    "good",
    "new",
    "first",
    "last",
    "long",
    "great",
    "little",
    "own",
    "other",
    "old",
    "big",
    "high",
    "different",
    "small",
    "large",
    "next",
    "early",
    "young",
    "important",
    "few",
    "public",
    "bad",
    "same",
    "able",
    "make",
    "know",
    "take",
    "see",
    "come",
    "think",
    "look",
    "want",
    "give",
    "use",
    "find",
    "tell",
    "ask",
    "seem",
    "feel",
    "try",
    "leave",
    "call",
    "keep",
    "let",
    "begin",
    "show",
    "hear",
    "play",
    "run",
    "move",
    "like",
    "live",
    "believe",
    "hold",
    "bring",
    "happen",
    "write",
    "provide",
    "sit",
    "stand",
    "lose",
    "pay",
    "meet",
    "include",
    "continue",
    "set",
    "learn",
    "lead",
    "understand",
    "watch",
    "follow",
    "stop",
    "create",
    "speak",
    "read",
    "spend",
    "grow",
    "open",
    "walk",
    "win",
    "offer",
    "remember",
    "love",
    "consider",
    "appear",
    "buy",
    "wait",
    "serve",
    "die",
    "send",
    "expect",
    "build",
    "stay",
    "fall",
    "cut",
    "reach",
    "kill",
    "remain",
];

/// One prepared request: the JSON body and what it asks for.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// Serialized JSON body (shared, cloned by reference count).
    pub body: Bytes,
    /// Prompt tokens (counted with the tokenizer when given, else words), used when the
    /// server reports no `usage`.
    pub prompt_words: u32,
    /// Requested `max_tokens`.
    pub max_tokens: u32,
    /// Index of its model in `workload.models` (0 without a model mix).
    pub model: usize,
    /// Abandon the request this long after its send (`workload.cancel`).
    pub cancel_after: Option<Duration>,
}

/// One message of a chat history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// One turn of a scripted session: the messages it adds to the history before sending
/// (usually one user message), its `max_tokens`, and the pause after its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnScript {
    /// Messages appended to the history before this turn's request.
    pub messages: Vec<ChatMessage>,
    /// Requested `max_tokens`.
    pub max_tokens: u32,
    /// Think time between this turn's answer and the next turn.
    pub think: Duration,
}

/// The scripted user side of one multi-turn session (the answers come from the server).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionScript {
    /// The turns, in order (at least one).
    pub turns: Vec<TurnScript>,
}

/// A prepared prompt set, reused round-robin; or, for conversations, a set of session
/// scripts; for a trace, the requests with their send offsets.
#[derive(Debug, Clone)]
pub struct RequestSet {
    requests: Vec<PreparedRequest>,
    /// Trace replay: send offset of each request from the step's start at speed-up 1.
    offsets: Option<Vec<Duration>>,
    /// Multi-turn conversations.
    sessions: Option<Vec<SessionScript>>,
    /// The plan the turns' bodies are built for (conversations only).
    plan: Option<Box<Plan>>,
    /// Names of the model mix (empty without one), indexed by [`PreparedRequest::model`].
    models: Vec<String>,
}

impl RequestSet {
    /// Prepares `count` requests (at least one) for `plan`. The set depends only on the plan's
    /// workload (including its seed) and `count`.
    pub fn prepare(plan: &Plan, count: usize) -> anyhow::Result<RequestSet> {
        RequestSet::prepare_with(plan, count, None)
    }

    /// [`RequestSet::prepare`] with exact token lengths from `tokenizer`.
    pub fn prepare_with(
        plan: &Plan,
        count: usize,
        tokenizer: Option<&Tokenizer>,
    ) -> anyhow::Result<RequestSet> {
        let w = &plan.workload;
        let count = count.max(1);
        let mut rng = StdRng::seed_from_u64(w.seed);
        if let Some(conv) = &w.conversation {
            let sessions = session_scripts(plan, conv, count, tokenizer)?;
            // The first turns double as a plain request set (what `get` returns).
            let requests = sessions
                .iter()
                .map(|s| turn_request(plan, &s.turns[0].messages, s.turns[0].max_tokens))
                .collect();
            return Ok(RequestSet {
                requests,
                offsets: None,
                sessions: Some(sessions),
                plan: Some(Box::new(plan.clone())),
                models: Vec::new(),
            });
        }
        if let Dataset::Trace { path, block_tokens } = &w.dataset {
            let records = load_trace(path)?;
            let par = &plan.parallelism;
            let t0 = records.first().map_or(0.0, |r| r.timestamp);
            let mut blocks = BlockTexts::new(w.seed, *block_tokens);
            let (mut requests, mut offsets) = (Vec::new(), Vec::new());
            for (i, r) in records.iter().enumerate() {
                if i as u64 % u64::from(par.count.max(1)) != u64::from(par.index) {
                    continue;
                }
                let prompt = blocks.prompt(&mut rng, r.input_length, &r.hash_ids);
                requests.push(PreparedRequest {
                    prompt_words: r.input_length,
                    max_tokens: r.output_length,
                    body: request_body(plan, &Prompt::Text(prompt), r.output_length),
                    model: 0,
                    cancel_after: None,
                });
                offsets.push(Duration::from_secs_f64((r.timestamp - t0) / 1000.0));
            }
            ensure!(
                !requests.is_empty(),
                "trace {}: no record for load pod {} of {}",
                path.display(),
                par.index,
                par.count
            );
            return Ok(RequestSet {
                requests,
                offsets: Some(offsets),
                sessions: None,
                plan: None,
                models: Vec::new(),
            });
        }
        if let Dataset::Jsonl { path } = &w.dataset {
            let lines = load_jsonl(path)?;
            let requests = lines
                .into_iter()
                .map(|l| {
                    let max_tokens = l
                        .max_tokens
                        .unwrap_or_else(|| draw(&mut rng, w.output_tokens));
                    let text = l.prompt.text();
                    Ok(PreparedRequest {
                        prompt_words: count_tokens(tokenizer, &text)?,
                        max_tokens,
                        body: request_body(plan, &l.prompt, max_tokens),
                        model: 0,
                        cancel_after: None,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            return Ok(RequestSet {
                requests,
                offsets: None,
                sessions: None,
                plan: None,
                models: Vec::new(),
            });
        }
        let prompts: Vec<(String, u32)> = match &w.dataset {
            Dataset::Random => (0..count)
                .map(|_| {
                    let n = draw(&mut rng, w.input_tokens);
                    let prompt = match tokenizer {
                        Some(t) => exact_prompt(&mut rng, t, n)?,
                        None => synthetic_prompt(&mut rng, n),
                    };
                    Ok((prompt, draw(&mut rng, w.output_tokens)))
                })
                .collect::<anyhow::Result<_>>()?,
            Dataset::Sharegpt {
                path,
                output_from_dataset,
            } => {
                let mut pairs = load_sharegpt(path, tokenizer)?;
                pairs.shuffle(&mut rng);
                pairs
                    .into_iter()
                    .cycle()
                    .take(count)
                    .map(|(prompt, reply_words)| {
                        let out = if *output_from_dataset {
                            reply_words.clamp(1, 4096)
                        } else {
                            draw(&mut rng, w.output_tokens)
                        };
                        (prompt, out)
                    })
                    .collect()
            }
            Dataset::SharedPrefix(sp) => shared_prefix_prompts(&mut rng, sp, tokenizer)?
                .into_iter()
                .map(|p| (p, draw(&mut rng, w.output_tokens)))
                .collect(),
            Dataset::Trace { .. } | Dataset::Jsonl { .. } => unreachable!("handled above"),
        };
        // Model and cancellation picks draw from their own streams, so adding a mix or
        // cancellation leaves the prompts as they were.
        let mut cancel_rng = StdRng::seed_from_u64(w.seed ^ 0x6361_6e63_656c);
        let mut model_rng = StdRng::seed_from_u64(w.seed ^ 0x6d6f_6465_6c73);
        let assigned = assign_models(&w.models, prompts.len(), &mut model_rng);
        let requests = prompts
            .into_iter()
            .zip(assigned)
            .map(|((prompt, max_tokens), model)| {
                let name = w
                    .models
                    .get(model)
                    .map_or(plan.target.model.as_str(), |m| m.name.as_str());
                Ok(PreparedRequest {
                    prompt_words: count_tokens(tokenizer, &prompt)?,
                    max_tokens,
                    body: request_body_for(plan, name, &Prompt::Text(prompt), max_tokens),
                    model,
                    cancel_after: w
                        .cancel
                        .filter(|c| cancel_rng.random_bool(c.fraction.clamp(0.0, 1.0)))
                        .map(|c| c.after),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(RequestSet {
            requests,
            offsets: None,
            sessions: None,
            plan: None,
            models: w.models.iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// The model mix's names (empty without one), indexed by [`PreparedRequest::model`].
    pub fn model_names(&self) -> &[String] {
        &self.models
    }

    /// Trace replay: the send offset of request `i` from the step's start at speed-up 1.
    pub fn offsets(&self) -> Option<&[Duration]> {
        self.offsets.as_deref()
    }

    /// Multi-turn conversations: the session scripts (reused round-robin).
    pub fn sessions(&self) -> Option<&[SessionScript]> {
        self.sessions.as_deref()
    }

    /// The session for the `i`-th session start (wraps around).
    pub fn session(&self, i: u64) -> Option<&SessionScript> {
        let s = self.sessions.as_ref()?;
        s.get((i % s.len() as u64) as usize)
    }

    /// The request of a conversation turn whose history (ending with the new user message)
    /// is `history` ([`turn_request`] for the prepared plan); `None` unless the set holds
    /// conversations.
    pub fn turn(&self, history: &[ChatMessage], max_tokens: u32) -> Option<PreparedRequest> {
        Some(turn_request(self.plan.as_deref()?, history, max_tokens))
    }

    /// Trace replay: records per second of the trace (at speed-up 1), from its first to its
    /// last timestamp; `None` for a trace of one instant.
    pub fn trace_rate(&self) -> Option<f64> {
        let o = self.offsets.as_ref()?;
        let span = o.last()?.saturating_sub(*o.first()?).as_secs_f64();
        (span > 0.0).then(|| (o.len().saturating_sub(1)) as f64 / span)
    }

    /// The request for the `i`-th send (wraps around).
    pub fn get(&self, i: u64) -> &PreparedRequest {
        &self.requests[(i % self.requests.len() as u64) as usize]
    }

    /// Number of distinct requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Mean prompt length and mean `max_tokens` of the prepared requests.
    pub fn mean_lengths(&self) -> (f64, f64) {
        if let Some(sessions) = self.sessions.as_ref().filter(|s| !s.is_empty()) {
            // A turn's prompt is the history so far: every earlier message and answer (an
            // answer assumed as long as its `max_tokens`) plus the new message.
            let (mut turns, mut prompt, mut output) = (0f64, 0f64, 0f64);
            for s in sessions {
                let mut history = 0f64;
                for t in &s.turns {
                    history += t
                        .messages
                        .iter()
                        .map(|m| f64::from(word_count(&m.content)))
                        .sum::<f64>();
                    prompt += history;
                    output += f64::from(t.max_tokens);
                    history += f64::from(t.max_tokens);
                    turns += 1.0;
                }
            }
            return (prompt / turns, output / turns);
        }
        let n = self.requests.len().max(1) as f64;
        let sum = |f: fn(&PreparedRequest) -> u32| {
            self.requests.iter().map(|r| f64::from(f(r))).sum::<f64>() / n
        };
        (sum(|r| r.prompt_words), sum(|r| r.max_tokens))
    }

    /// Never true: a workload holds at least one request.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Multi-turn conversations: the mean number of turns of the prepared sessions.
    pub fn mean_turns(&self) -> Option<f64> {
        let s = self.sessions.as_ref().filter(|s| !s.is_empty())?;
        Some(s.iter().map(|s| s.turns.len() as f64).sum::<f64>() / s.len() as f64)
    }
}

/// One value of the distribution `c`.
pub fn draw(rng: &mut impl Rng, c: TokenCount) -> u32 {
    match c {
        TokenCount::Fixed(n) => n,
        TokenCount::Range { min, max } => rng.random_range(min..=max.max(min)),
        TokenCount::Normal { mean, stddev, .. } => {
            let x = Normal::new(f64::from(mean), f64::from(stddev))
                .map_or(f64::from(mean), |d| d.sample(rng));
            (x.round().max(0.0) as u32).clamp(c.min(), c.max().max(c.min()))
        }
    }
}

/// The prompts of a shared-prefix dataset, groups interleaved in a seeded random order.
fn shared_prefix_prompts(
    rng: &mut StdRng,
    sp: &SharedPrefix,
    tokenizer: Option<&Tokenizer>,
) -> anyhow::Result<Vec<String>> {
    let text = |rng: &mut StdRng, n: u32| -> anyhow::Result<String> {
        match tokenizer {
            Some(t) if n > 0 => exact_prompt(rng, t, n),
            _ => Ok(synthetic_prompt(rng, n)),
        }
    };
    let prefixes: Vec<String> = (0..sp.groups)
        .map(|_| text(rng, sp.prefix_tokens))
        .collect::<anyhow::Result<_>>()?;
    let mut prompts = Vec::with_capacity((sp.groups * sp.prompts_per_group) as usize);
    for prefix in &prefixes {
        for _ in 0..sp.prompts_per_group {
            let n = draw(rng, sp.suffix_tokens);
            let suffix = text(rng, n)?;
            prompts.push(match (prefix.is_empty(), suffix.is_empty()) {
                (true, _) => suffix,
                (_, true) => prefix.clone(),
                _ => format!("{prefix} {suffix}"),
            });
        }
    }
    prompts.shuffle(rng);
    Ok(prompts)
}

/// `n` random words separated by spaces.
pub fn synthetic_prompt(rng: &mut impl Rng, n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 6);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s
}

/// Reads a HuggingFace `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> anyhow::Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| anyhow!("reading tokenizer {}: {e}", path.display()))
}

/// Tokens of `text` (without special tokens) with `tokenizer`, else its word count.
pub fn count_tokens(tokenizer: Option<&Tokenizer>, text: &str) -> anyhow::Result<u32> {
    match tokenizer {
        Some(t) => Ok(t
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?
            .len() as u32),
        None => Ok(word_count(text)),
    }
}

/// A random prompt of exactly `n` tokens of `tokenizer`: random words, encoded, cut to `n`
/// tokens and decoded (as `vllm bench`'s random dataset does).
pub fn exact_prompt(rng: &mut impl Rng, tokenizer: &Tokenizer, n: u32) -> anyhow::Result<String> {
    let mut words = n + n / 2 + 8;
    loop {
        let text = synthetic_prompt(rng, words);
        let enc = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        if enc.len() >= n as usize {
            return tokenizer
                .decode(&enc.get_ids()[..n as usize], true)
                .map_err(|e| anyhow!("decoding: {e}"));
        }
        ensure!(
            !enc.is_empty(),
            "the tokenizer yields no tokens for English words"
        );
        words *= 2;
    }
}

/// Whitespace-separated words in `s` (the approximation of a token count used here).
pub fn word_count(s: &str) -> u32 {
    s.split_whitespace().count() as u32
}

/// What a request asks: one prompt text, or a chat history.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A single user prompt.
    Text(String),
    /// Chat messages, in order.
    Messages(Vec<ChatMessage>),
}

impl Prompt {
    /// The text a completions request sends: the prompt, or the messages' contents joined by
    /// newlines (the conversation so far, without a chat template).
    pub fn text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(m) => history_text(m),
        }
    }
}

/// The messages' contents joined by newlines.
pub fn history_text(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&m.content);
    }
    out
}

/// The request of a conversation turn whose history (including the new user message) is
/// `history`: chat sends the messages, completions their concatenated text.
pub fn turn_request(plan: &Plan, history: &[ChatMessage], max_tokens: u32) -> PreparedRequest {
    let prompt = Prompt::Messages(history.to_vec());
    PreparedRequest {
        prompt_words: history.iter().map(|m| word_count(&m.content)).sum(),
        max_tokens,
        body: request_body(plan, &prompt, max_tokens),
        model: 0,
        cancel_after: None,
    }
}

/// The model of each of `n` prepared requests: every model gets its weight's share of them
/// (rounded by largest remainder, so a 70/30 mix over 200 prompts is exactly 140/60), in a
/// seeded random order. All 0 without a mix.
pub fn assign_models(
    models: &[crate::contract::plan::ModelWeight],
    n: usize,
    rng: &mut impl Rng,
) -> Vec<usize> {
    let total: u64 = models.iter().map(|m| u64::from(m.weight)).sum();
    if models.len() < 2 || total == 0 {
        return vec![0; n];
    }
    let exact: Vec<f64> = models
        .iter()
        .map(|m| n as f64 * f64::from(m.weight) / total as f64)
        .collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..models.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = n - counts.iter().sum::<usize>();
    for &i in by_remainder.iter().take(short) {
        counts[i] += 1;
    }
    let mut out: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i, c))
        .collect();
    out.shuffle(rng);
    out
}

fn request_body(plan: &Plan, prompt: &Prompt, max_tokens: u32) -> Bytes {
    request_body_for(plan, &plan.target.model, prompt, max_tokens)
}

fn request_body_for(plan: &Plan, model: &str, prompt: &Prompt, max_tokens: u32) -> Bytes {
    let w = &plan.workload;
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": w.stream,
    });
    match (w.api, prompt) {
        (Api::Completions, p) => body["prompt"] = json!(p.text()),
        (Api::Chat, p) => {
            body["messages"] = match p {
                Prompt::Text(t) => json!([{"role": "user", "content": t}]),
                Prompt::Messages(m) => json!(m),
            };
            body["max_completion_tokens"] = json!(max_tokens);
        }
    }
    if w.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if w.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    Bytes::from(serde_json::to_vec(&body).expect("JSON value serializes"))
}

/// The session scripts of a conversation workload: `count` sessions (ShareGPT: one per
/// usable conversation, at most `count`), each with its drawn number of turns and think
/// times.
fn session_scripts(
    plan: &Plan,
    conv: &Conversation,
    count: usize,
    tokenizer: Option<&Tokenizer>,
) -> anyhow::Result<Vec<SessionScript>> {
    let w = &plan.workload;
    // A different stream than the first prompts', so adding turns keeps the first prompts.
    let mut rng = StdRng::seed_from_u64(w.seed ^ 0x5e55_1015);
    let user_tokens = conv.user_tokens.unwrap_or(w.input_tokens);
    let text = |rng: &mut StdRng, n: u32| -> anyhow::Result<String> {
        match tokenizer {
            Some(t) => exact_prompt(rng, t, n),
            None => Ok(synthetic_prompt(rng, n)),
        }
    };
    let think = |rng: &mut StdRng| match conv.think_time_max {
        Some(max) if max > conv.think_time => Duration::from_secs_f64(
            rng.random_range(conv.think_time.as_secs_f64()..=max.as_secs_f64()),
        ),
        _ => conv.think_time,
    };
    // The first user message of each session, from the dataset.
    let firsts: Vec<Vec<Vec<ChatMessage>>> = match &w.dataset {
        Dataset::Sharegpt { path, .. } => {
            let mut convs = load_sharegpt_turns(path)?;
            convs.shuffle(&mut rng);
            convs.truncate(count);
            convs
                .into_iter()
                .map(|turns| {
                    turns
                        .into_iter()
                        .map(|t| vec![ChatMessage::user(t)])
                        .collect()
                })
                .collect()
        }
        Dataset::Jsonl { path } => load_jsonl(path)?
            .into_iter()
            .take(count)
            .map(|l| {
                vec![match l.prompt {
                    Prompt::Text(t) => vec![ChatMessage::user(t)],
                    Prompt::Messages(m) => m,
                }]
            })
            .collect(),
        Dataset::SharedPrefix(sp) => shared_prefix_prompts(&mut rng, sp, tokenizer)?
            .into_iter()
            .take(count)
            .map(|p| vec![vec![ChatMessage::user(p)]])
            .collect(),
        Dataset::Random | Dataset::Trace { .. } => (0..count)
            .map(|_| {
                let n = draw(&mut rng, w.input_tokens);
                Ok(vec![vec![ChatMessage::user(text(&mut rng, n)?)]])
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let recorded = matches!(w.dataset, Dataset::Sharegpt { .. });
    firsts
        .into_iter()
        .map(|given| {
            let n = draw(&mut rng, conv.turns).max(1) as usize;
            let n = if recorded { n.min(given.len()) } else { n };
            let mut turns = Vec::with_capacity(n);
            for i in 0..n {
                let messages = match given.get(i) {
                    Some(m) => m.clone(),
                    None => {
                        let len = draw(&mut rng, user_tokens);
                        vec![ChatMessage::user(text(&mut rng, len)?)]
                    }
                };
                turns.push(TurnScript {
                    messages,
                    max_tokens: draw(&mut rng, w.output_tokens),
                    think: if i + 1 < n {
                        think(&mut rng)
                    } else {
                        Duration::ZERO
                    },
                });
            }
            Ok(SessionScript { turns })
        })
        .collect()
}

/// One record of a Mooncake-format trace.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRecord {
    /// Arrival time in milliseconds (from any origin; the first record's is the start).
    pub timestamp: f64,
    /// Prompt tokens.
    pub input_length: u32,
    /// Tokens to generate (`max_tokens`).
    pub output_length: u32,
    /// Ids of the prompt's blocks (equal ids: identical block text).
    #[serde(default)]
    pub hash_ids: Vec<u64>,
}

/// Reads a Mooncake-format JSONL trace (blank lines skipped); errors name the line.
/// Records must be in timestamp order.
pub fn load_trace(path: &Path) -> anyhow::Result<Vec<TraceRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading trace {}", path.display()))?;
    let mut out: Vec<TraceRecord> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("trace {} line {}", path.display(), i + 1);
        let r: TraceRecord = serde_json::from_str(line).with_context(|| {
            format!(
                "{}: expected {{\"timestamp\": MS, \"input_length\": N, \"output_length\": N, \"hash_ids\": [..]}}",
                at()
            )
        })?;
        ensure!(
            r.timestamp.is_finite() && r.timestamp >= 0.0,
            "{}: timestamp must be >= 0",
            at()
        );
        ensure!(
            r.input_length >= 1 && r.output_length >= 1,
            "{}: input_length and output_length must be >= 1",
            at()
        );
        if let Some(prev) = out.last() {
            ensure!(
                r.timestamp >= prev.timestamp,
                "{}: timestamp {} is before the previous record's {} (sort the trace by time)",
                at(),
                r.timestamp,
                prev.timestamp
            );
        }
        out.push(r);
    }
    ensure!(!out.is_empty(), "trace {} has no record", path.display());
    Ok(out)
}

/// The text of trace blocks: block id -> `block_tokens` seeded words, the same for the same
/// id (and seed) in every request.
struct BlockTexts {
    seed: u64,
    block_tokens: u32,
    cache: HashMap<u64, Vec<&'static str>>,
}

impl BlockTexts {
    fn new(seed: u64, block_tokens: u32) -> BlockTexts {
        BlockTexts {
            seed,
            block_tokens: block_tokens.max(1),
            cache: HashMap::new(),
        }
    }

    fn block(&mut self, id: u64) -> &[&'static str] {
        let (seed, n) = (self.seed, self.block_tokens);
        self.cache.entry(id).or_insert_with(|| {
            let mut rng = StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            (0..n)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect()
        })
    }

    /// A prompt of exactly `len` words: the blocks of `ids` in order (the last one cut to
    /// what is left), then unique random words if the ids cover less than `len`.
    fn prompt(&mut self, rng: &mut StdRng, len: u32, ids: &[u64]) -> String {
        let mut words: Vec<&'static str> = Vec::with_capacity(len as usize);
        for &id in ids {
            let left = len as usize - words.len();
            if left == 0 {
                break;
            }
            let b = self.block(id);
            words.extend_from_slice(&b[..left.min(b.len())]);
        }
        while words.len() < len as usize {
            words.push(WORDS[rng.random_range(0..WORDS.len())]);
        }
        words.join(" ")
    }
}

/// One line of a custom JSONL prompt file.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonlPrompt {
    /// The prompt or messages.
    pub prompt: Prompt,
    /// The line's `max_tokens`, if given.
    pub max_tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlLine {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

/// Parses custom JSONL prompts: each non-blank line `{"prompt": "..."}` or
/// `{"messages": [{"role": ..., "content": ...}]}`, with an optional `max_tokens`; `name`
/// (the file) and the line number are in every error.
pub fn parse_jsonl(name: &str, text: &str) -> anyhow::Result<Vec<JsonlPrompt>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{name} line {}", i + 1);
        let l: JsonlLine = serde_json::from_str(line).with_context(|| {
            format!("{at}: expected {{\"prompt\": \"...\"}} or {{\"messages\": [{{\"role\": \"user\", \"content\": \"...\"}}]}}, optionally with \"max_tokens\"")
        })?;
        let prompt = match (l.prompt, l.messages) {
            (Some(p), None) if !p.trim().is_empty() => Prompt::Text(p),
            (Some(_), None) => bail!("{at}: the prompt is empty"),
            (None, Some(m)) if !m.is_empty() => Prompt::Messages(m),
            (None, Some(_)) => bail!("{at}: messages is empty"),
            (Some(_), Some(_)) => bail!("{at}: set prompt or messages, not both"),
            (None, None) => bail!("{at}: set prompt or messages"),
        };
        ensure!(l.max_tokens != Some(0), "{at}: max_tokens must be >= 1");
        out.push(JsonlPrompt {
            prompt,
            max_tokens: l.max_tokens,
        });
    }
    ensure!(!out.is_empty(), "{name} has no prompt");
    Ok(out)
}

/// Reads a custom JSONL prompt file ([`parse_jsonl`]).
pub fn load_jsonl(path: &Path) -> anyhow::Result<Vec<JsonlPrompt>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading JSONL prompts {}", path.display()))?;
    parse_jsonl(&path.display().to_string(), &text)
}

/// The recorded human turns of every ShareGPT conversation that has one (in order).
pub fn load_sharegpt_turns(path: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading ShareGPT dataset {}", path.display()))?;
    let convs: Vec<SharegptConversation> = serde_json::from_str(&text)
        .with_context(|| format!("parsing ShareGPT dataset {}", path.display()))?;
    let out: Vec<Vec<String>> = convs
        .into_iter()
        .map(|c| {
            c.conversations
                .into_iter()
                .filter(|t| matches!(t.from.as_str(), "human" | "user"))
                .map(|t| t.value.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect();
    ensure!(
        !out.is_empty(),
        "ShareGPT dataset {} has no conversation with a human turn",
        path.display()
    );
    Ok(out)
}

#[derive(Deserialize)]
struct SharegptConversation {
    #[serde(default)]
    conversations: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    #[serde(default)]
    from: String,
    #[serde(default)]
    value: String,
}

/// Reads (first human prompt, reply length) pairs from a ShareGPT JSON file; lengths in
/// tokens with `tokenizer`, else in words.
pub fn load_sharegpt(
    path: &Path,
    tokenizer: Option<&Tokenizer>,
) -> anyhow::Result<Vec<(String, u32)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading ShareGPT dataset {}", path.display()))?;
    let convs: Vec<SharegptConversation> = serde_json::from_str(&text)
        .with_context(|| format!("parsing ShareGPT dataset {}", path.display()))?;
    let pairs: Vec<(String, u32)> = convs
        .into_iter()
        .filter_map(|c| {
            let i = c
                .conversations
                .iter()
                .position(|t| matches!(t.from.as_str(), "human" | "user"))?;
            let prompt = c.conversations[i].value.trim().to_owned();
            let reply = c.conversations.get(i + 1)?;
            (!prompt.is_empty()).then(|| count_tokens(tokenizer, &reply.value).map(|n| (prompt, n)))
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        !pairs.is_empty(),
        "ShareGPT dataset {} has no usable conversation (a human turn followed by a reply)",
        path.display()
    );
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_mix_gets_exact_shares_in_a_seeded_order() {
        use crate::contract::plan::ModelWeight;
        let mix = vec![
            ModelWeight {
                name: "base".into(),
                weight: 70,
            },
            ModelWeight {
                name: "a".into(),
                weight: 20,
            },
            ModelWeight {
                name: "b".into(),
                weight: 10,
            },
        ];
        let pick = |seed: u64, n: usize| assign_models(&mix, n, &mut StdRng::seed_from_u64(seed));
        let v = pick(1, 200);
        let count = |v: &[usize], i: usize| v.iter().filter(|&&m| m == i).count();
        assert_eq!((count(&v, 0), count(&v, 1), count(&v, 2)), (140, 40, 20));
        // Largest remainder: 7 prompts of 70/20/10 are 5/1/1 (4.9, 1.4, 0.7).
        let small = pick(1, 7);
        assert_eq!(
            (count(&small, 0), count(&small, 1), count(&small, 2)),
            (5, 1, 1)
        );
        assert_eq!(pick(1, 200), v, "same seed, same order");
        assert_ne!(pick(2, 200), v, "another seed, another order");
        assert!(
            v[..20].contains(&1) || v[..20].contains(&2),
            "shuffled, not blocked"
        );
        assert_eq!(
            assign_models(&mix[..1], 3, &mut StdRng::seed_from_u64(1)),
            [0, 0, 0]
        );
    }

    fn plan() -> Plan {
        let mut p = Plan::new("http://x", "m");
        p.workload.input_tokens = TokenCount::Range { min: 5, max: 9 };
        p
    }

    #[test]
    fn synthetic_prompts_are_seeded_and_sized() {
        let a = RequestSet::prepare(&plan(), 50).unwrap();
        let b = RequestSet::prepare(&plan(), 50).unwrap();
        let mut other = plan();
        other.workload.seed = 43;
        let c = RequestSet::prepare(&other, 50).unwrap();
        assert_eq!(a.len(), 50);
        let bodies = |w: &RequestSet| (0..50).map(|i| w.get(i).body.clone()).collect::<Vec<_>>();
        assert_eq!(bodies(&a), bodies(&b));
        assert_ne!(bodies(&a), bodies(&c));
        let lens: Vec<u32> = (0..50).map(|i| a.get(i).prompt_words).collect();
        assert!(lens.iter().all(|&n| (5..=9).contains(&n)), "{lens:?}");
        assert!(
            lens.iter().any(|&n| n != lens[0]),
            "range not used: {lens:?}"
        );
        assert_eq!(a.get(50).body, a.get(0).body);
    }

    #[test]
    fn bodies_follow_the_api() {
        let v: serde_json::Value =
            serde_json::from_slice(&RequestSet::prepare(&plan(), 1).unwrap().get(0).body).unwrap();
        assert_eq!(v["model"], "m");
        assert_eq!(v["max_tokens"], 128);
        assert_eq!(v["ignore_eos"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!((5..=9).contains(&word_count(v["prompt"].as_str().unwrap())));
        let mut p = plan();
        p.workload.api = Api::Chat;
        p.workload.stream = false;
        p.workload.ignore_eos = false;
        let v: serde_json::Value =
            serde_json::from_slice(&RequestSet::prepare(&p, 1).unwrap().get(0).body).unwrap();
        assert_eq!(v["messages"][0]["role"], "user");
        assert!(
            v.get("prompt").is_none()
                && v.get("stream_options").is_none()
                && v.get("ignore_eos").is_none()
        );
        assert_eq!(v["stream"], false);
    }

    /// A WordPiece tokenizer whose tokens are single letters: a word of k letters is k tokens.
    pub(crate) fn letter_tokenizer_json() -> String {
        let mut vocab = serde_json::Map::new();
        vocab.insert("[UNK]".into(), json!(0));
        for (i, c) in ('a'..='z').enumerate() {
            vocab.insert(c.to_string(), json!(1 + i));
            vocab.insert(format!("##{c}"), json!(27 + i));
        }
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}
        })
        .to_string()
    }

    #[test]
    fn tokenizer_gives_exact_prompt_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, letter_tokenizer_json()).unwrap();
        let tok = load_tokenizer(&path).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for n in [1, 7, 40, 300] {
            let p = exact_prompt(&mut rng, &tok, n).unwrap();
            assert_eq!(count_tokens(Some(&tok), &p).unwrap(), n, "{p:?}");
            assert!(n < 7 || word_count(&p) < n, "{p:?}");
        }
        let mut plan = plan();
        plan.workload.input_tokens = TokenCount::Fixed(30);
        let w = RequestSet::prepare_with(&plan, 5, Some(&tok)).unwrap();
        for i in 0..5 {
            let r = w.get(i);
            assert_eq!(r.prompt_words, 30);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                count_tokens(Some(&tok), v["prompt"].as_str().unwrap()).unwrap(),
                30
            );
        }
        std::fs::write(&path, "{}").unwrap();
        assert!(load_tokenizer(&path).is_err());
    }

    #[test]
    fn normal_lengths_are_clipped_around_the_mean() {
        let mut rng = StdRng::seed_from_u64(3);
        let c = TokenCount::Normal {
            mean: 100,
            stddev: 30,
            min: Some(60),
            max: Some(130),
        };
        let xs: Vec<u32> = (0..5000).map(|_| draw(&mut rng, c)).collect();
        assert!(xs.iter().all(|x| (60..=130).contains(x)));
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64;
        assert!((mean - 100.0).abs() < 3.0, "{mean}");
        assert!(
            xs.contains(&60) && xs.contains(&130),
            "clipping reaches both bounds"
        );
        let mut sd = |s: u32| {
            let v: Vec<f64> = (0..5000)
                .map(|_| {
                    f64::from(draw(
                        &mut rng,
                        TokenCount::Normal {
                            mean: 1000,
                            stddev: s,
                            min: None,
                            max: None,
                        },
                    ))
                })
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        assert!((sd(50) - 50.0).abs() < 4.0);
    }

    #[test]
    fn shared_prefix_groups_share_exactly_their_prefix() {
        let mut p = plan();
        let sp = SharedPrefix {
            groups: 3,
            prompts_per_group: 5,
            prefix_tokens: 40,
            suffix_tokens: TokenCount::Range { min: 8, max: 12 },
        };
        p.workload.dataset = Dataset::SharedPrefix(sp);
        let w = RequestSet::prepare(&p, 1000).unwrap();
        assert_eq!(
            w.len(),
            15,
            "groups x promptsPerGroup prompts, whatever the count"
        );
        let prompts: Vec<String> = (0..15)
            .map(|i| {
                let v: serde_json::Value = serde_json::from_slice(&w.get(i).body).unwrap();
                v["prompt"].as_str().unwrap().to_owned()
            })
            .collect();
        let mut groups = std::collections::BTreeMap::<Vec<&str>, usize>::new();
        for (i, text) in prompts.iter().enumerate() {
            let words: Vec<&str> = text.split_whitespace().collect();
            assert!((48..=52).contains(&words.len()), "{}", words.len());
            assert_eq!(w.get(i as u64).prompt_words as usize, words.len());
            *groups.entry(words[..40].to_vec()).or_default() += 1;
        }
        assert_eq!(groups.values().copied().collect::<Vec<_>>(), [5, 5, 5]);
        // Suffixes are unique: no two prompts share a 41st word run.
        let suffixes: std::collections::BTreeSet<Vec<&str>> = prompts
            .iter()
            .map(|t| t.split_whitespace().skip(40).collect())
            .collect();
        assert_eq!(suffixes.len(), 15);
        // Groups are interleaved, not in blocks of five.
        let first: Vec<&str> = prompts[0].split_whitespace().take(40).collect();
        let run = prompts
            .iter()
            .take_while(|t| t.split_whitespace().take(40).eq(first.iter().copied()))
            .count();
        assert!(run < 5, "shuffled");
        let f = sp.shared_fraction();
        assert!((f - 40.0 * 4.0 / (50.0 * 5.0)).abs() < 1e-9, "{f}");
    }

    #[test]
    fn sharegpt_prompts_and_output_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sg.json");
        std::fs::write(
            &path,
            r#"[{"conversations":[{"from":"human","value":"hello there"},{"from":"gpt","value":"one two three"}]},
                {"conversations":[{"from":"gpt","value":"orphan"}]},
                {"id":"x"}]"#,
        )
        .unwrap();
        let mut p = plan();
        p.workload.dataset = Dataset::Sharegpt {
            path: path.clone(),
            output_from_dataset: true,
        };
        let w = RequestSet::prepare(&p, 3).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!((w.get(0).prompt_words, w.get(0).max_tokens), (2, 3));
        std::fs::write(&path, "[]").unwrap();
        assert!(RequestSet::prepare(&p, 3).is_err());
        std::fs::write(&path, "{not json").unwrap();
        assert!(RequestSet::prepare(&p, 3).is_err());
    }

    #[test]
    fn jsonl_prompts_parse_and_bad_lines_name_their_number() {
        let ok = parse_jsonl(
            "p.jsonl",
            "{\"prompt\": \"hello there\", \"max_tokens\": 7}\n\n\
             {\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"hi\"}]}\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].prompt, Prompt::Text("hello there".into()));
        assert_eq!(ok[0].max_tokens, Some(7));
        assert_eq!(
            ok[1].prompt,
            Prompt::Messages(vec![
                ChatMessage {
                    role: "system".into(),
                    content: "be brief".into()
                },
                ChatMessage::user("hi")
            ])
        );
        assert_eq!(ok[1].max_tokens, None);
        for (text, needle) in [
            (
                "{\"prompt\": \"a\"}\n{\"prompt\": 5}\n",
                "p.jsonl line 2: expected",
            ),
            (
                "{\"prompt\": \"a\"}\n\n{not json\n",
                "p.jsonl line 3: expected",
            ),
            (
                "{\"prompt\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}",
                "line 1: set prompt or messages, not both",
            ),
            ("{\"max_tokens\": 3}", "line 1: set prompt or messages"),
            ("{\"prompt\": \"  \"}", "line 1: the prompt is empty"),
            ("{\"messages\": []}", "line 1: messages is empty"),
            (
                "{\"prompt\": \"a\", \"max_tokens\": 0}",
                "line 1: max_tokens must be >= 1",
            ),
            ("{\"prompt\": \"a\", \"maxTokens\": 3}", "line 1: expected"),
            ("{\"messages\": [{\"role\": \"user\"}]}", "line 1: expected"),
            ("\n\n", "has no prompt"),
        ] {
            let e = format!("{:#}", parse_jsonl("p.jsonl", text).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn jsonl_requests_follow_the_api_and_their_max_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"one two three\", \"max_tokens\": 5}\n{\"messages\": [{\"role\": \"user\", \"content\": \"four five\"}, {\"role\": \"assistant\", \"content\": \"six\"}, {\"role\": \"user\", \"content\": \"seven\"}]}\n",
        )
        .unwrap();
        let mut p = plan();
        p.workload.dataset = Dataset::Jsonl { path };
        p.workload.output_tokens = TokenCount::Fixed(9);
        let w = RequestSet::prepare(&p, 100).unwrap();
        assert_eq!(w.len(), 2, "one request per line, whatever the count");
        let body = |i| serde_json::from_slice::<serde_json::Value>(&w.get(i).body).unwrap();
        assert_eq!(body(0)["prompt"], "one two three");
        assert_eq!((w.get(0).max_tokens, w.get(0).prompt_words), (5, 3));
        assert_eq!(body(1)["prompt"], "four five\nsix\nseven");
        assert_eq!((w.get(1).max_tokens, w.get(1).prompt_words), (9, 4));
        p.workload.api = Api::Chat;
        let w = RequestSet::prepare(&p, 1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&w.get(1).body).unwrap();
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": "six"})
        );
        let v: serde_json::Value = serde_json::from_slice(&w.get(0).body).unwrap();
        assert_eq!(
            v["messages"],
            json!([{"role": "user", "content": "one two three"}])
        );
    }

    #[test]
    fn trace_prompts_share_exactly_their_common_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            "{\"timestamp\": 1000, \"input_length\": 20, \"output_length\": 3, \"hash_ids\": [7, 8, 9]}\n\
             {\"timestamp\": 1250, \"input_length\": 24, \"output_length\": 4, \"hash_ids\": [7, 8, 5]}\n\
             {\"timestamp\": 1250, \"input_length\": 6, \"output_length\": 5}\n\
             {\"timestamp\": 3000.5, \"input_length\": 16, \"output_length\": 6, \"hash_ids\": [8]}\n",
        )
        .unwrap();
        let mut p = plan();
        p.workload.dataset = Dataset::Trace {
            path: path.clone(),
            block_tokens: 8,
        };
        p.load.mode = crate::contract::plan::Mode::Rate;
        p.load.trace = Some(crate::contract::plan::TraceReplay {
            speedups: vec![1.0],
        });
        p.validate().unwrap();
        let w = RequestSet::prepare(&p, 1).unwrap();
        assert_eq!(w.len(), 4);
        let words = |i: u64| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_slice(&w.get(i).body).unwrap();
            v["prompt"]
                .as_str()
                .unwrap()
                .split(' ')
                .map(str::to_owned)
                .collect()
        };
        let (a, b, c, d) = (words(0), words(1), words(2), words(3));
        assert_eq!((a.len(), b.len(), c.len(), d.len()), (20, 24, 6, 16));
        assert_eq!(a[..16], b[..16], "blocks 7 and 8 are the same text");
        assert_ne!(a[16..20], b[16..20], "block 9 is not block 5");
        assert_eq!(d[..8], a[8..16], "block 8 wherever it appears");
        assert_ne!(d[8..], a[16..], "past the ids: unique words");
        assert_eq!(
            (0..4).map(|i| w.get(i).max_tokens).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
        assert_eq!(
            w.offsets().unwrap(),
            [0.0, 0.25, 0.25, 2.0005].map(Duration::from_secs_f64)
        );
        assert!((w.trace_rate().unwrap() - 3.0 / 2.0005).abs() < 1e-9);
        // Split over two pods: every other record each.
        p.parallelism.count = 2;
        p.parallelism.index = 1;
        let half = RequestSet::prepare(&p, 1).unwrap();
        assert_eq!(half.len(), 2);
        assert_eq!(half.get(0).body, w.get(1).body);
        // Bad records name their line.
        for (text, needle) in [
            (
                "{\"timestamp\": 1, \"input_length\": 2}",
                "line 1: expected",
            ),
            (
                "{\"timestamp\": 5, \"input_length\": 2, \"output_length\": 1}\n{\"timestamp\": 4, \"input_length\": 2, \"output_length\": 1}",
                "line 2: timestamp 4 is before",
            ),
            (
                "{\"timestamp\": 1, \"input_length\": 0, \"output_length\": 1}",
                "line 1: input_length and output_length must be >= 1",
            ),
            ("", "has no record"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = format!("{:#}", RequestSet::prepare(&p, 1).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    fn conversation(turns: TokenCount) -> Conversation {
        Conversation {
            turns,
            user_tokens: Some(TokenCount::Fixed(5)),
            think_time: Duration::from_millis(100),
            think_time_max: Some(Duration::from_millis(300)),
        }
    }

    #[test]
    fn session_scripts_draw_turns_lengths_and_think_times() {
        let mut p = plan();
        p.workload.input_tokens = TokenCount::Fixed(12);
        p.workload.conversation = Some(conversation(TokenCount::Range { min: 2, max: 5 }));
        let w = RequestSet::prepare(&p, 200).unwrap();
        let sessions = w.sessions().unwrap();
        assert_eq!(sessions.len(), 200);
        let mut seen = std::collections::BTreeSet::new();
        for s in sessions {
            seen.insert(s.turns.len());
            assert_eq!(word_count(&s.turns[0].messages[0].content), 12);
            for t in &s.turns[1..] {
                assert_eq!(t.messages.len(), 1);
                assert_eq!(t.messages[0].role, "user");
                assert_eq!(word_count(&t.messages[0].content), 5);
            }
            for t in &s.turns[..s.turns.len() - 1] {
                assert!((100..=300).contains(&t.think.as_millis()), "{:?}", t.think);
            }
            assert_eq!(s.turns.last().unwrap().think, Duration::ZERO);
        }
        assert_eq!(
            seen,
            (2..=5).collect(),
            "every number of turns of the range"
        );
        let again = RequestSet::prepare(&p, 200).unwrap();
        assert_eq!(again.sessions().unwrap(), sessions, "seeded");
        // The body of a turn: the whole history.
        let history = [
            ChatMessage::user("a b"),
            ChatMessage::assistant(" c d"),
            ChatMessage::user("e"),
        ];
        let r = w.turn(&history, 3).unwrap();
        assert_eq!(r.prompt_words, 5);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["prompt"], "a b\n c d\ne");
        p.workload.api = Api::Chat;
        let w = RequestSet::prepare(&p, 2).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&w.turn(&history, 3).unwrap().body).unwrap();
        assert_eq!(v["messages"], json!(history));
        assert!(
            RequestSet::prepare(&plan(), 1)
                .unwrap()
                .turn(&history, 3)
                .is_none()
        );
    }

    #[test]
    fn sharegpt_sessions_replay_the_recorded_user_turns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sg.json");
        std::fs::write(
            &path,
            r#"[{"conversations":[{"from":"human","value":"q one"},{"from":"gpt","value":"a"},
                                  {"from":"human","value":"q two"},{"from":"gpt","value":"b"},
                                  {"from":"human","value":"q three"}]}]"#,
        )
        .unwrap();
        let mut p = plan();
        p.workload.dataset = Dataset::Sharegpt {
            path,
            output_from_dataset: false,
        };
        p.workload.conversation = Some(conversation(TokenCount::Fixed(8)));
        let w = RequestSet::prepare(&p, 10).unwrap();
        let s = &w.sessions().unwrap()[0];
        let users: Vec<&str> = s
            .turns
            .iter()
            .map(|t| t.messages[0].content.as_str())
            .collect();
        assert_eq!(
            users,
            ["q one", "q two", "q three"],
            "recorded turns, not 8"
        );
        p.workload.conversation = Some(conversation(TokenCount::Fixed(2)));
        let w = RequestSet::prepare(&p, 10).unwrap();
        assert_eq!(w.sessions().unwrap()[0].turns.len(), 2, "at most `turns`");
    }
}
