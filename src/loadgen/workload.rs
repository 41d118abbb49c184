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

use std::path::Path;

use anyhow::{Context, anyhow, ensure};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use tokenizers::Tokenizer;

use rand_distr::{Distribution, Normal};

use crate::contract::plan::{Api, Dataset, Plan, SharedPrefix, TokenCount};

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
}

/// A prepared prompt set, reused round-robin.
#[derive(Debug, Clone)]
pub struct RequestSet {
    requests: Vec<PreparedRequest>,
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
        };
        let requests = prompts
            .into_iter()
            .map(|(prompt, max_tokens)| {
                Ok(PreparedRequest {
                    prompt_words: count_tokens(tokenizer, &prompt)?,
                    max_tokens,
                    body: request_body(plan, &prompt, max_tokens),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(RequestSet { requests })
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

fn request_body(plan: &Plan, prompt: &str, max_tokens: u32) -> Bytes {
    let w = &plan.workload;
    let mut body = json!({
        "model": plan.target.model,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": w.stream,
    });
    match w.api {
        Api::Completions => body["prompt"] = json!(prompt),
        Api::Chat => {
            body["messages"] = json!([{"role": "user", "content": prompt}]);
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

#[derive(Deserialize)]
struct Conversation {
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
    let convs: Vec<Conversation> = serde_json::from_str(&text)
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
}
