//! Per-request records: one JSON object per line (JSONL), written as requests finish
//! (`inferops bench --records FILE.jsonl`, BenchmarkRun `load.records`).
//!
//! The first line is a [`RecordsHeader`] (it has the key `inferops_records`): the run's start
//! as RFC 3339 and the clock of every time field below. Each further line is one
//! [`RequestRecord`]. Times are milliseconds since the header's `started_at` (the results'
//! `metadata.started_at`), on the load generator's monotonic clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::outcome::ErrorClass;

/// Version of the records format written into the header.
pub const RECORDS_VERSION: u32 = 1;

/// What the clock of the time fields means, as written into the header.
pub const CLOCK: &str = "ms since started_at (monotonic)";

/// The first line of a records file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordsHeader {
    /// Format version ([`RECORDS_VERSION`]).
    pub inferops_records: u32,
    /// When the run started (RFC 3339): time 0 of every record.
    pub started_at: DateTime<Utc>,
    /// The clock of the time fields ([`CLOCK`]).
    pub clock: String,
    /// Server URL.
    pub url: String,
    /// Model of the plan.
    pub model: String,
    /// Index of the load process in a split run (0 alone).
    #[serde(default)]
    pub pod: u32,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOutcome {
    /// Completed: counted in `completed`.
    Ok,
    /// Failed: counted in `failed`, with an error class.
    Failed,
}

/// One measured request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id, also sent as the `X-Request-Id` header.
    pub id: String,
    /// Index of the step in the results' `steps`.
    pub step: usize,
    /// Trial of the step (0-based; with `trials` > 1 a step runs several times).
    #[serde(default)]
    pub trial: u32,
    /// Model the request asked for.
    pub model: String,
    /// When the request was due: the arrival time in open loop, the send time in closed loop.
    pub scheduled_ms: f64,
    /// When the request was handed to the connection.
    pub sent_ms: f64,
    /// When the first token arrived (absent for failed requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<f64>,
    /// When the last token arrived (the response ended; absent for failed requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token_ms: Option<f64>,
    /// When the request ended (ok or failed).
    pub end_ms: f64,
    /// Prompt tokens (server `usage`, else the prompt's length as prepared).
    pub prompt_tokens: u32,
    /// Output tokens (0 for failed requests).
    pub output_tokens: u32,
    /// Inter-token gaps, ms (with `--records-itl` / `records.itl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<Vec<f64>>,
    /// How the request ended.
    pub outcome: RecordOutcome,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
}

impl RequestRecord {
    /// Time to first token, ms, counted from the scheduled time like the results' TTFT.
    pub fn ttft_ms(&self) -> Option<f64> {
        self.first_token_ms.map(|t| t - self.scheduled_ms)
    }
}

/// A parsed records file.
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    /// The header line(s): one per load process whose records were concatenated.
    pub headers: Vec<RecordsHeader>,
    /// Every request.
    pub records: Vec<RequestRecord>,
}

/// Parses JSONL records (header lines and record lines, in any order; blank lines skipped).
pub fn parse_records(text: &str) -> anyhow::Result<Records> {
    let mut out = Records {
        headers: Vec::new(),
        records: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("records line {}: {e}", n + 1))?;
        if v.get("inferops_records").is_some() {
            out.headers.push(
                serde_json::from_value(v)
                    .map_err(|e| anyhow::anyhow!("records line {} (header): {e}", n + 1))?,
            );
        } else {
            out.records.push(
                serde_json::from_value(v)
                    .map_err(|e| anyhow::anyhow!("records line {}: {e}", n + 1))?,
            );
        }
    }
    anyhow::ensure!(
        !out.headers.is_empty() || out.records.is_empty(),
        "records without a header line (first line with `inferops_records`)"
    );
    Ok(out)
}

/// The `encoding` of [`EmbeddedRecords`].
pub const EMBEDDED_ENCODING: &str = "gzip+base64";

/// Records a load pod keeps inside its results document (`records` of the results), bounded
/// in size: JSONL as one or more concatenated gzip members, base64-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedRecords {
    /// How `data` is encoded ([`EMBEDDED_ENCODING`]).
    pub encoding: String,
    /// The records file (header line first), compressed and encoded.
    pub data: String,
    /// Records in `data`.
    pub count: u64,
    /// Records dropped because the compressed size would have exceeded `max_bytes` (or the
    /// results document its ConfigMap): they were measured, but are not in `data`.
    pub dropped: u64,
    /// The compressed size limit (`load.records.maxBytes`).
    pub max_bytes: u32,
}

impl EmbeddedRecords {
    /// Decodes the records.
    pub fn decode(&self) -> anyhow::Result<Records> {
        use base64::Engine as _;
        use std::io::Read as _;
        anyhow::ensure!(
            self.encoding == EMBEDDED_ENCODING,
            "records encoding {:?} is not {EMBEDDED_ENCODING:?}",
            self.encoding
        );
        let gz = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .map_err(|e| anyhow::anyhow!("records are not base64: {e}"))?;
        let mut text = String::new();
        if !gz.is_empty() {
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("records are not gzip JSONL: {e}"))?;
        }
        parse_records(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_round_trip() {
        let h = RecordsHeader {
            inferops_records: RECORDS_VERSION,
            started_at: Utc::now(),
            clock: CLOCK.into(),
            url: "http://x".into(),
            model: "m".into(),
            pod: 0,
        };
        let r = RequestRecord {
            id: "a-0-1".into(),
            step: 1,
            trial: 0,
            model: "m".into(),
            scheduled_ms: 10.0,
            sent_ms: 10.5,
            first_token_ms: Some(40.0),
            last_token_ms: Some(90.0),
            end_ms: 90.0,
            prompt_tokens: 100,
            output_tokens: 20,
            itl_ms: None,
            outcome: RecordOutcome::Ok,
            error_class: None,
        };
        let text = format!(
            "{}\n{}\n\n",
            serde_json::to_string(&h).unwrap(),
            serde_json::to_string(&r).unwrap()
        );
        let parsed = parse_records(&text).unwrap();
        assert_eq!(parsed.headers, vec![h]);
        assert_eq!(parsed.records, vec![r.clone()]);
        assert_eq!(r.ttft_ms(), Some(30.0));
        let err = parse_records("{\"id\": 3}").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse_records(&serde_json::to_string(&r).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("header"), "{err}");
    }
}
