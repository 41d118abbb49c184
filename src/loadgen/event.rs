//! What one streamed event (an SSE `data:` payload of an OpenAI-compatible stream) says:
//! whether it carries text, the token usage, whether it is an error, and the response id.
//!
//! A typical token event takes a fast path ([`scan`]) that walks the JSON's structure once,
//! looking only at the keys that matter, without decoding strings or numbers. Whatever it is
//! not sure of goes to serde, which decides and reports malformed events: an `error` key,
//! a non-null `usage`, an `object` of `"error"`, an escaped id or key, a value of the wrong
//! type, unbalanced brackets, deeper nesting than 16. The fast path does not check that a
//! text's bytes are valid UTF-8, nor catch a duplicated key (serde refuses both).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// One decoded event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    /// Some choice carries non-empty text (`text`, `delta.content`, or reasoning).
    pub has_text: bool,
    /// The `usage` object, when not null.
    pub usage: Option<Usage>,
    /// An error event (`error` present, or `object` is `"error"`).
    pub error: bool,
    /// The response `id`.
    pub id: Option<Cow<'a, str>>,
}

/// Token usage as reported by the server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

/// Decodes one event's JSON.
pub(crate) fn decode(data: &[u8]) -> Result<Event<'_>, serde_json::Error> {
    match scan(data) {
        Some(e) => Ok(e),
        None => with_serde(data),
    }
}

/// The slow path: serde decides, and reports malformed events.
fn with_serde(data: &[u8]) -> Result<Event<'_>, serde_json::Error> {
    let c: Chunk<'_> = serde_json::from_slice(data)?;
    Ok(Event {
        has_text: c.choices.0,
        usage: c.usage,
        error: c.error.is_some() || c.object.as_deref() == Some("error"),
        id: c.id,
    })
}

/// Where a container sits in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The top-level object.
    Root,
    /// The `choices` array.
    Choices,
    /// One element of `choices`.
    Choice,
    /// A choice's `delta`.
    Delta,
    /// Anything else (ignored, but walked).
    Other,
}

const MAX_DEPTH: usize = 16;

fn skip_ws(d: &[u8], mut i: usize) -> usize {
    while i < d.len() && matches!(d[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (index of the closing quote) of the string whose contents start at `i`, and
/// whether it holds escapes. A plain loop: an event's strings are short, where `memchr`'s
/// vector set-up costs more than it saves (an eight-bytes-at-a-time variant measured no
/// faster, within this machine's noise).
fn string_end(d: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    while let Some(&b) = d.get(i) {
        match b {
            b'"' => return Some((i, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// A value at `ctx` under `key`: what the fast path makes of it.
enum Value<'a> {
    Str(&'a [u8], bool),
    /// `null`, `true`, `false` or a number.
    Literal(&'a [u8]),
    /// `{` or `[`.
    Open(u8),
}

/// The fast path: `Some` only when it is sure of the answer serde would give.
fn scan(d: &[u8]) -> Option<Event<'_>> {
    let mut stack = [(Ctx::Other, 0u8); MAX_DEPTH];
    let mut depth = 0usize;
    let mut key: Option<&[u8]> = None;
    let mut ev = Event {
        has_text: false,
        usage: None,
        error: false,
        id: None,
    };
    let mut i = skip_ws(d, 0);
    if d.get(i) != Some(&b'{') {
        return None;
    }
    loop {
        i = skip_ws(d, i);
        let &b = d.get(i)?;
        let (ctx, kind) = if depth > 0 {
            stack[depth - 1]
        } else {
            (Ctx::Other, 0)
        };
        let value = match b {
            b'}' | b']' => {
                if depth == 0 || (kind == b'{') != (b == b'}') || key.is_some() {
                    return None;
                }
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return (skip_ws(d, i) == d.len()).then_some(ev);
                }
                continue;
            }
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {
                let (end, escaped) = string_end(d, i + 1)?;
                let s = &d[i + 1..end];
                i = end + 1;
                if kind == b'{' && key.is_none() {
                    let j = skip_ws(d, i);
                    if d.get(j) != Some(&b':') || escaped {
                        return None;
                    }
                    key = Some(s);
                    i = j + 1;
                    continue;
                }
                Value::Str(s, escaped)
            }
            b'{' | b'[' => {
                i += 1;
                Value::Open(b)
            }
            _ => {
                let start = i;
                while i < d.len()
                    && !matches!(d[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    i += 1;
                }
                let lit = &d[start..i];
                let number = lit
                    .iter()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'));
                if !(number || matches!(lit, b"null" | b"true" | b"false")) {
                    return None;
                }
                Value::Literal(lit)
            }
        };
        // Inside an object every value follows a key; inside an array none does.
        if (kind == b'{') != key.is_some() && depth > 0 {
            return None;
        }
        let k = key.take().unwrap_or_default();
        let null = matches!(value, Value::Literal(b"null"));
        let child = match (ctx, k, &value) {
            (_, _, _) if depth == 0 => Ctx::Root,
            (Ctx::Root, b"error", _) => return None,
            (Ctx::Root, b"usage", _) if !null => return None,
            (Ctx::Root, b"object", Value::Str(s, _)) if *s == b"error" => return None,
            (Ctx::Root, b"id", Value::Str(s, false)) => {
                ev.id = Some(Cow::Borrowed(std::str::from_utf8(s).ok()?));
                Ctx::Other
            }
            (Ctx::Root, b"id" | b"object", v) if !null && !matches!(v, Value::Str(_, false)) => {
                return None;
            }
            (Ctx::Root, b"choices", Value::Open(b'[')) => Ctx::Choices,
            (Ctx::Root, b"choices", _) if !null => return None,
            (Ctx::Choices, _, Value::Open(b'{')) => Ctx::Choice,
            (Ctx::Choices, _, _) => return None,
            (Ctx::Choice, b"delta", Value::Open(b'{')) => Ctx::Delta,
            (Ctx::Choice, b"text", Value::Str(s, _))
            | (Ctx::Delta, b"content" | b"reasoning_content" | b"reasoning", Value::Str(s, _)) => {
                ev.has_text |= !s.is_empty();
                Ctx::Other
            }
            (Ctx::Choice, b"text" | b"delta", _)
            | (Ctx::Delta, b"content" | b"reasoning_content" | b"reasoning", _)
                if !null =>
            {
                return None;
            }
            _ => Ctx::Other,
        };
        if let Value::Open(o) = value {
            if depth == MAX_DEPTH {
                return None;
            }
            stack[depth] = (child, o);
            depth += 1;
        }
    }
}

/// One streamed chunk as serde reads it (the slow path), without allocating: strings are
/// borrowed or only checked for emptiness.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: HasText,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<de::IgnoredAny>,
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
}

/// Whether any choice carries non-empty text (`text`, `delta.content`, or reasoning).
#[derive(Default)]
struct HasText(bool);

/// Whether a string field is present and non-empty (never allocates).
#[derive(Default)]
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: NonEmpty,
    #[serde(default)]
    reasoning_content: NonEmpty,
    #[serde(default)]
    reasoning: NonEmpty,
}

#[derive(Deserialize)]
struct ChoiceChunk {
    #[serde(default)]
    text: NonEmpty,
    #[serde(default)]
    delta: Option<Delta>,
}

impl ChoiceChunk {
    fn has_text(&self) -> bool {
        self.text.0
            || self
                .delta
                .as_ref()
                .is_some_and(|d| d.content.0 || d.reasoning_content.0 || d.reasoning.0)
    }
}

impl<'de> Deserialize<'de> for HasText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HasText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HasText, A::Error> {
                let mut any = false;
                while let Some(c) = seq.next_element::<ChoiceChunk>()? {
                    any |= c.has_text();
                }
                Ok(HasText(any))
            }
            fn visit_unit<E: de::Error>(self) -> Result<HasText, E> {
                Ok(HasText(false))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(d: &[u8]) -> Option<Event<'_>> {
        with_serde(d).ok()
    }

    /// Events as vLLM, the simulator and other servers write them, and some they do not.
    const EVENTS: &[&str] = &[
        r#"{"id":"cmpl-1","object":"text_completion","created":1733000000,"model":"m","choices":[{"index":0,"text":" word","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}"#,
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length","stop_reason":null}]}"#,
        r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" \"quoted\" \\ \u00e9"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning":"hmm","content":null}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{}},{"index":1,"text":"b"}]}"#,
        r#"{"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
        r#"{"object":"error","message":"boom"}"#,
        r#"{"error":{"message":"oom","code":500}}"#,
        r#"{"error":null,"choices":[{"text":"a"}]}"#,
        r#"{ "id" : "spaced" , "choices" : [ { "text" : "x" } ] }"#,
        r#"{"id":"n","choices":null,"usage":null}"#,
        r#"{"id":"e\"scaped","choices":[{"text":"x"}]}"#,
        r#"{"choices":[{"text":5}]}"#,
        r#"{"choices":[{"delta":"x"}]}"#,
        r#"{"choices":["x"]}"#,
        r#"{"choices":{"text":"x"}}"#,
        r#"{"id":7,"choices":[]}"#,
        r#"{"meta":{"choices":[{"text":"not a choice"}],"text":"x"},"choices":[{"text":""}]}"#,
        r#"{"choices":[{"text":"#,
        r#"{"choices":[{"text":"a"}]"#,
        r#"{"choices":[{"text":"a"}]}}"#,
        r#"{"choices":[{"text":"a"]}}"#,
        r#"{"choices":[{"text":"a"}]} trailing"#,
        r#"{"choices":[{"text":nul}]}"#,
        r#"[{"choices":[]}]"#,
        "",
    ];

    #[test]
    fn the_fast_path_agrees_with_serde_whenever_it_answers() {
        let mut fast = 0;
        for e in EVENTS {
            let d = e.as_bytes();
            if let Some(f) = scan(d) {
                fast += 1;
                assert_eq!(Some(f), slow(d), "{e}");
            }
            // Whatever the path, decode gives serde's answer.
            assert_eq!(decode(d).ok(), slow(d), "{e}");
        }
        assert!(fast >= 8, "only {fast} events took the fast path");
    }

    #[test]
    fn typical_token_events_take_the_fast_path() {
        for e in &EVENTS[..7] {
            assert!(scan(e.as_bytes()).is_some(), "{e}");
        }
        // Usage, errors, escaped ids and wrong types go to serde.
        for e in &EVENTS[7..11] {
            assert!(scan(e.as_bytes()).is_none(), "{e}");
        }
        assert!(scan(EVENTS[13].as_bytes()).is_none());
    }

    #[test]
    fn string_ends_are_found_at_every_position() {
        for len in 0usize..40 {
            for esc in [None, Some(0), Some(len / 2), Some(len.saturating_sub(2))] {
                let mut body = vec![b'a'; len];
                if let Some(e) = esc.filter(|&e| e + 1 < len) {
                    body[e] = b'\\';
                    body[e + 1] = b'"';
                }
                let mut d = b"\"".to_vec();
                d.extend_from_slice(&body);
                d.extend_from_slice(b"\",\"x\"");
                let escaped = esc.is_some_and(|e| e + 1 < len);
                assert_eq!(string_end(&d, 1), Some((len + 1, escaped)), "{len} {esc:?}");
                assert_eq!(string_end(&d[..len + 1], 1), None);
            }
        }
    }

    #[test]
    fn every_prefix_of_an_event_is_refused_or_agrees() {
        for e in EVENTS {
            for cut in 0..e.len() {
                let d = &e.as_bytes()[..cut];
                if let Some(f) = scan(d) {
                    assert_eq!(Some(f), slow(d), "{e} cut at {cut}");
                }
            }
        }
    }
}
