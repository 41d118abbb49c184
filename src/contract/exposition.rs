//! The Prometheus text exposition format (and the OpenMetrics text that the simulator and
//! `prometheus-client` write), as far as a `GET /metrics` of vLLM needs it: comment lines
//! (`# HELP`, `# TYPE`, `# EOF`), and samples `name{label="value",...} value [timestamp]`
//! with an optional OpenMetrics exemplar (`# {...} v`) after them. Values may be `+Inf`,
//! `-Inf` or `NaN`; label values use the `\\`, `\"` and `\n` escapes.
//!
//! Parsing is pure; [`Exposition`] then answers the questions the server figures ask: the
//! sum or maximum of a family over every series (all replicas and models of one scrape),
//! and a histogram's cumulative buckets summed by `le`.

use std::fmt;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name as written (`vllm:prompt_tokens_total`).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is not in the text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Cumulative histogram buckets: `(le, count of observations <= le)`, sorted by `le`, the
/// last one `+Inf` when the exposition has it; plus `_sum` and `_count`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets {
    /// `(upper bound, cumulative count)`, ascending bounds.
    pub cumulative: Vec<(f64, f64)>,
    /// Sum of the observations (`_sum`).
    pub sum: f64,
    /// Number of observations (`_count`).
    pub count: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    /// Samples in the order written.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses `text`; the first malformed line fails the whole text (a page that is not
    /// an exposition, such as an HTML error page, must not read as "no series").
    pub fn parse(text: &str) -> Result<Exposition, ParseError> {
        let mut samples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).map_err(|message| ParseError {
                line: i + 1,
                message,
            })?;
            samples.push(sample);
        }
        Ok(Exposition { samples })
    }

    /// Samples named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.named(name).next().is_some()
    }

    /// Sum of the finite values of `name` over every series; `None` when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.named(name).filter(|s| s.value.is_finite()) {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }

    /// Largest finite value of `name` over every series.
    pub fn max(&self, name: &str) -> Option<f64> {
        self.named(name)
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    }

    /// Histogram family `family` (samples `_bucket`, `_sum`, `_count`), every series summed
    /// by `le`. `None` when the family has no buckets.
    pub fn histogram(&self, family: &str) -> Option<Buckets> {
        let bucket = format!("{family}_bucket");
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        for s in self.named(&bucket) {
            let Some(le) = s.label("le").and_then(parse_value) else {
                continue;
            };
            match by_le.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += s.value,
                None => by_le.push((le, s.value)),
            }
        }
        if by_le.is_empty() {
            return None;
        }
        by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = self
            .sum(&format!("{family}_count"))
            .or_else(|| by_le.last().filter(|(le, _)| le.is_infinite()).map(|b| b.1))
            .unwrap_or(0.0);
        Some(Buckets {
            cumulative: by_le,
            sum: self.sum(&format!("{family}_sum")).unwrap_or(0.0),
            count,
        })
    }
}

/// `+Inf`, `-Inf`, `NaN` or a float.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if end == 0 {
        return Err(format!("expected a metric name: {:?}", clip(line)));
    }
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    // An OpenMetrics exemplar follows ` # `; it is not part of the sample.
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or_else(|| format!("{name}: no value"))?;
    let value = parse_value(value).ok_or_else(|| format!("{name}: bad value {value:?}"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<f64>().is_err()
    {
        return Err(format!("{name}: bad timestamp {ts:?}"));
    }
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected {extra:?} after the value"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Label pairs in the order written.
type Labels = Vec<(String, String)>;

/// Labels after `{` up to the closing `}`; returns them and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let end = s
            .char_indices()
            .find(|&(i, c)| !(is_name_char(c, i == 0) && c != ':'))
            .map_or(s.len(), |(i, _)| i);
        if end == 0 {
            return Err(format!("expected a label name at {:?}", clip(s)));
        }
        let key = s[..end].to_string();
        s = s[end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {key}: expected '='"))?
            .trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: expected a quoted value"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(format!("label {key}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {key}: unterminated value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[close + 1..].trim_start();
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' at {:?}", clip(s)));
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
vllm:num_requests_running{engine="1",model_name="qwen"} 2.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="qwen"} 1.2e3
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="qwen"} 4.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_bucket{le="0.25",model_name="qwen"} 7.0
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="other"} 1.0
vllm:time_to_first_token_seconds_bucket{le="0.25",model_name="other"} 1.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="other"} 2.0
vllm:time_to_first_token_seconds_sum{model_name="qwen"} 2.5
vllm:time_to_first_token_seconds_sum{model_name="other"} 0.5
vllm:time_to_first_token_seconds_count{model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_count{model_name="other"} 2.0
weird{a="x\"y\\z\n",b = "," } NaN 1700000000000
spaced 1 # {trace_id="abc"} 0.5 1.0
# EOF
"#;

    #[test]
    fn parses_vllm_text_and_sums_series() {
        let e = Exposition::parse(VLLM).unwrap();
        assert_eq!(e.sum("vllm:num_requests_running"), Some(5.0));
        assert_eq!(e.max("vllm:num_requests_running"), Some(3.0));
        assert_eq!(e.sum("vllm:prompt_tokens_total"), Some(1200.0));
        assert_eq!(e.sum("absent"), None);
        let w = e.named("weird").next().unwrap();
        assert_eq!(w.label("a"), Some("x\"y\\z\n"));
        assert_eq!(w.label("b"), Some(","));
        assert!(w.value.is_nan());
        assert_eq!(e.sum("weird"), None, "NaN is not a value to add");
        assert_eq!(e.sum("spaced"), Some(1.0), "the exemplar is not the value");
    }

    #[test]
    fn histograms_are_summed_by_le_and_sorted() {
        let e = Exposition::parse(VLLM).unwrap();
        let h = e.histogram("vllm:time_to_first_token_seconds").unwrap();
        assert_eq!(
            h.cumulative,
            vec![(0.1, 5.0), (0.25, 8.0), (f64::INFINITY, 12.0)]
        );
        assert_eq!((h.sum, h.count), (3.0, 12.0));
        assert!(e.histogram("vllm:e2e_request_latency_seconds").is_none());
    }

    #[test]
    fn malformed_lines_fail_with_their_number() {
        let err = Exposition::parse("ok 1\n<html>\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("metric name"), "{err}");
        for bad in [
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x{a=\"1\"}",
            "x{a=\"1\"} two",
            "x 1 2 3",
            "x{=\"1\"} 1",
        ] {
            assert!(Exposition::parse(bad).is_err(), "{bad}");
        }
        assert!(Exposition::parse("").unwrap().samples.is_empty());
    }
}
