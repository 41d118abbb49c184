//! OpenAI request parsing, token counting, and vLLM-shaped error bodies.
//!
//! Token counting is an approximation, chosen so that synthetic prompts made of N words are N
//! tokens: **one whitespace-separated word = one token** (an empty prompt counts as one
//! token). Prompts given as token ids count one token per id. Chat prompts count the words of
//! every message's text content; no chat-template tokens are added.
//!
//! With prefix caching, the same tokens are hashed per KV block ([`super::prefix`]): the words
//! of the prompt (or of every message, in order), or the token ids.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::prefix::block_hashes;
use super::profile::SimOptions;

/// Which endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// A vLLM-style error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// 400 `BadRequestError`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// 404 `NotFoundError`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    /// 500 `InternalServerError`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "BadRequestError",
            StatusCode::NOT_FOUND => "NotFoundError",
            _ => "InternalServerError",
        }
    }

    /// The JSON body: `{"object":"error","message":..,"type":..,"param":null,"code":N}`.
    pub fn body(&self) -> Value {
        json!({
            "object": "error",
            "message": self.message,
            "type": self.type_name(),
            "param": null,
            "code": self.status.as_u16(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

#[derive(Debug, Deserialize, Default)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// The fields of a completions or chat request that the simulator uses.
#[derive(Debug, Deserialize)]
struct RawRequest {
    model: Option<String>,
    prompt: Option<Value>,
    messages: Option<Vec<Value>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    ignore_eos: Option<bool>,
    min_tokens: Option<u64>,
    n: Option<u64>,
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    /// Endpoint.
    pub api: Api,
    /// The served model it names: the base model or a LoRA adapter.
    pub model: String,
    /// Index of the LoRA adapter in [`SimOptions::lora`] (`None`: the base model).
    pub lora: Option<usize>,
    /// Chained hashes of the prompt's full KV blocks (empty without prefix caching).
    pub block_hashes: Vec<u64>,
    /// Prompt tokens (see the module docs).
    pub prompt_tokens: usize,
    /// Output token limit (defaults to the rest of the context).
    pub max_tokens: usize,
    /// Minimum output tokens before EOS may stop the request.
    pub min_tokens: usize,
    /// Generate exactly `max_tokens`.
    pub ignore_eos: bool,
    /// Stream with SSE.
    pub stream: bool,
    /// Send a final `usage` chunk when streaming.
    pub include_usage: bool,
}

/// Tokens of a text: whitespace-separated words.
pub fn count_tokens(text: &str) -> usize {
    text.split_whitespace().count()
}

fn prompt_tokens(v: &Value) -> Result<usize, ApiError> {
    match v {
        Value::String(s) => Ok(count_tokens(s)),
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(items.len()),
        Value::Array(items) if items.len() == 1 => prompt_tokens(&items[0]),
        Value::Array(_) => Err(ApiError::bad_request(
            "the simulator supports a single prompt per request",
        )),
        _ => Err(ApiError::bad_request("`prompt` must be a string or a list")),
    }
}

fn content_tokens(v: &Value) -> usize {
    match v {
        Value::String(s) => count_tokens(s),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(count_tokens)
            .sum(),
        _ => 0,
    }
}

/// The KV block hashes of a prompt (see the module docs).
fn prompt_hashes(api: Api, raw: &RawRequest, model: &str, block_size: usize) -> Vec<u64> {
    match api {
        Api::Completions => match &raw.prompt {
            Some(Value::String(s)) => block_hashes(model, s.split_whitespace(), block_size),
            Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
                let ids: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
                block_hashes(model, &ids, block_size)
            }
            Some(Value::Array(items)) if items.len() == 1 => match &items[0] {
                Value::String(s) => block_hashes(model, s.split_whitespace(), block_size),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        Api::Chat => {
            let words = raw.messages.iter().flatten().flat_map(|m| {
                let texts: Vec<&str> = match m.get("content") {
                    Some(Value::String(s)) => vec![s.as_str()],
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect(),
                    _ => Vec::new(),
                };
                texts.into_iter().flat_map(str::split_whitespace)
            });
            block_hashes(model, words, block_size)
        }
    }
}

/// Parse and validate a request body for the simulator configured by `opts` (served models,
/// `max_model_len`, prefix caching).
pub fn parse(api: Api, body: &[u8], opts: &SimOptions) -> Result<GenRequest, ApiError> {
    let max_model_len = opts.max_model_len;
    let raw: RawRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    let model = match &raw.model {
        Some(m) if *m == opts.model || opts.lora.contains(m) => m.clone(),
        Some(m) => {
            return Err(ApiError::not_found(format!(
                "The model `{m}` does not exist."
            )));
        }
        None => opts.model.clone(),
    };
    if raw.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("the simulator supports only n=1"));
    }
    let prompt = match api {
        Api::Completions => {
            let p = raw
                .prompt
                .as_ref()
                .ok_or_else(|| ApiError::bad_request("field `prompt` is required"))?;
            prompt_tokens(p)?
        }
        Api::Chat => {
            let msgs = raw
                .messages
                .as_ref()
                .ok_or_else(|| ApiError::bad_request("field `messages` is required"))?;
            msgs.iter()
                .map(|m| m.get("content").map(content_tokens).unwrap_or(0))
                .sum()
        }
    }
    .max(1);
    if prompt >= max_model_len {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {max_model_len} tokens. However, your \
             request has {prompt} input tokens. Please reduce the length of the input messages."
        )));
    }
    let requested = raw.max_tokens.or(raw.max_completion_tokens);
    let max_tokens = match requested {
        Some(0) => return Err(ApiError::bad_request("max_tokens must be at least 1")),
        Some(m) if m as usize > max_model_len - prompt => {
            return Err(ApiError::bad_request(format!(
                "'max_tokens' or 'max_completion_tokens' is too large: {m}. This model's \
                 maximum context length is {max_model_len} tokens and your request has \
                 {prompt} input tokens ({m} > {max_model_len} - {prompt})."
            )));
        }
        Some(m) => m as usize,
        None => max_model_len - prompt,
    };
    let min_tokens = raw.min_tokens.unwrap_or(0) as usize;
    if min_tokens > max_tokens {
        return Err(ApiError::bad_request(format!(
            "min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
        )));
    }
    let block_hashes = if opts.prefix_caching {
        prompt_hashes(api, &raw, &model, opts.block_size)
    } else {
        Vec::new()
    };
    Ok(GenRequest {
        api,
        lora: opts.lora.iter().position(|l| *l == model),
        model,
        block_hashes,
        prompt_tokens: prompt,
        max_tokens,
        min_tokens,
        ignore_eos: raw.ignore_eos.unwrap_or(false),
        stream: raw.stream.unwrap_or(false),
        include_usage: raw
            .stream_options
            .is_some_and(|o| o.include_usage.unwrap_or(false)),
    })
}

/// The body of `GET /v1/models`, shaped as vLLM's: the base model (`parent: null`), then
/// every LoRA adapter with `parent` the base model (vLLM lists an adapter's path as its
/// `root`; the simulator has none and uses the name).
pub fn models_list(opts: &SimOptions, created: u64) -> Value {
    let base = &opts.model;
    let mut data = vec![json!({
        "id": base,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": base,
        "parent": null,
        "max_model_len": opts.max_model_len,
    })];
    data.extend(opts.lora.iter().map(|l| {
        json!({
            "id": l,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": l,
            "parent": base,
        })
    }));
    json!({"object": "list", "data": data})
}

/// Words used as output tokens: short, ASCII, no characters that need JSON escaping.
pub const VOCAB: &[&str] = &[
    " the", " of", " and", " to", " a", " in", " is", " it", " that", " for", " on", " was",
    " with", " as", " at", " by", " this", " be", " from", " or", " an", " are", " not", " but",
    " we", " can", " all", " one", " has", " more", " will", " time", " model", " token", " data",
    " GPU", " fast", " small", " cache", " batch", " queue", " load", " test", " run", " node",
    " pod", " step", " rate",
];

/// The word of token `index` of request `id` (deterministic).
pub fn word(id: u64, index: usize, seed: u64) -> &'static str {
    let mut x = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    VOCAB[(x % VOCAB.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(model: &str, max_model_len: usize) -> SimOptions {
        let mut o = SimOptions::profile("zero").unwrap();
        o.model = model.into();
        o.max_model_len = max_model_len;
        o
    }

    #[test]
    fn prompts_hash_per_block_and_chat_history_shares_blocks() {
        let mut o = opts("m", 1000);
        o.block_size = 2;
        let b = br#"{"prompt":"a b c d e"}"#;
        let r = parse(Api::Completions, b, &o).unwrap();
        assert_eq!(r.block_hashes.len(), 2);
        let b = br#"{"messages":[{"role":"user","content":"a b c"},{"role":"assistant","content":"d e"}]}"#;
        let chat = parse(Api::Chat, b, &o).unwrap();
        assert_eq!(
            chat.block_hashes, r.block_hashes,
            "messages hash as one word stream"
        );
        o.lora = vec!["adapter".into()];
        let b = br#"{"model":"adapter","prompt":"a b c d e"}"#;
        let l = parse(Api::Completions, b, &o).unwrap();
        assert_eq!(l.model, "adapter");
        assert_eq!((l.lora, r.lora), (Some(0), None));
        assert_ne!(l.block_hashes[0], r.block_hashes[0]);
        o.prefix_caching = false;
        assert!(
            parse(Api::Completions, b, &o)
                .unwrap()
                .block_hashes
                .is_empty()
        );
    }

    #[test]
    fn models_list_names_adapters_with_their_parent() {
        let mut o = opts("base", 4096);
        o.lora = vec!["sql".into(), "chat".into()];
        let v = models_list(&o, 7);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data[0]["id"], "base");
        assert!(data[0]["parent"].is_null());
        assert_eq!(data[0]["max_model_len"], 4096);
        for (d, name) in data[1..].iter().zip(["sql", "chat"]) {
            assert_eq!(d["id"], name);
            assert_eq!(d["parent"], "base");
            assert_eq!(d["object"], "model");
        }
        let e = parse(Api::Completions, br#"{"model":"other","prompt":"a"}"#, &o).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "The model `other` does not exist.");
    }

    #[test]
    fn counts_words_as_tokens() {
        let b = br#"{"model":"m","prompt":"one two  three\nfour","max_tokens":5}"#;
        let r = parse(Api::Completions, b, &opts("m", 100)).unwrap();
        assert_eq!(r.prompt_tokens, 4);
        assert_eq!(r.max_tokens, 5);
        let b = br#"{"messages":[{"role":"user","content":"a b"},{"role":"user","content":[{"type":"text","text":"c"}]}]}"#;
        let r = parse(Api::Chat, b, &opts("m", 100)).unwrap();
        assert_eq!(r.prompt_tokens, 3);
        assert_eq!(r.max_tokens, 97);
    }

    #[test]
    fn nulls_mean_defaults() {
        let b = br#"{"prompt":"a","max_tokens":null,"stream":null,"ignore_eos":null,"stream_options":null,"temperature":0.5}"#;
        let r = parse(Api::Completions, b, &opts("m", 100)).unwrap();
        assert!(!r.stream && !r.ignore_eos && !r.include_usage);
        assert_eq!(r.max_tokens, 99);
    }

    #[test]
    fn errors_are_vllm_shaped() {
        let e = parse(
            Api::Completions,
            br#"{"model":"x","prompt":"a"}"#,
            &opts("m", 10),
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.body()["type"], "NotFoundError");
        let e = parse(
            Api::Completions,
            br#"{"model":"m","prompt":"a b c d e f g h i j k"}"#,
            &opts("m", 10),
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["code"], 400);
    }

    #[test]
    fn words_need_no_escaping() {
        for w in VOCAB {
            assert!(w.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '));
            assert_eq!(count_tokens(w), 1);
        }
    }
}
