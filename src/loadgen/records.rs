//! The per-request record hook: when a run keeps records, every measured request gets an id
//! (sent as `X-Request-Id`) and, when it ends, one [`RequestRecord`] handed to a
//! [`RecordSink`]. [`JsonlSink`] streams them to a JSONL file from a writer thread, so
//! nothing but its buffer is held in memory.

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::contract::outcome::{Failure, Metrics};
use crate::contract::records::{RecordOutcome, RecordsHeader, RequestRecord};

/// Where records go. Called from the request tasks: implementations must not block long.
pub trait RecordSink: Send + Sync {
    /// The run starts: `header` describes it (written before any record).
    fn start(&self, header: &RecordsHeader);
    /// One finished request.
    fn record(&self, record: RequestRecord);
    /// A step ended: a good moment to make what was written durable.
    fn flush(&self) {}
}

/// Builds the records of one run (shared by all its request tasks).
pub struct Recorder {
    sink: Arc<dyn RecordSink>,
    origin: Instant,
    model: String,
    itl: bool,
    id_prefix: String,
    seq: AtomicU64,
    step: AtomicUsize,
    trial: AtomicU32,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("id_prefix", &self.id_prefix)
            .finish()
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What a request task knows when its request ends.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// When it was due.
    pub scheduled: Instant,
    /// When it was sent.
    pub sent: Instant,
    /// The instant its latencies count from (`min(scheduled, sent)` in open loop).
    pub t0: Instant,
    /// When it ended.
    pub end: Instant,
    /// Prompt tokens as prepared (used when the server reported none, or on failure).
    pub prompt_tokens: u32,
    /// Inter-token gaps, µs.
    pub itl_us: &'a [u32],
}

impl Recorder {
    /// A recorder whose times count from `origin` (the instant of the header's
    /// `started_at`); ids are `<id_prefix>-<n>`.
    pub fn new(
        sink: Arc<dyn RecordSink>,
        origin: Instant,
        model: &str,
        itl: bool,
        id_prefix: String,
    ) -> Recorder {
        Recorder {
            sink,
            origin,
            model: model.to_owned(),
            itl,
            id_prefix,
            seq: AtomicU64::new(0),
            step: AtomicUsize::new(0),
            trial: AtomicU32::new(0),
        }
    }

    /// Sets the step (and trial) the next requests belong to.
    pub fn set_step(&self, step: usize, trial: u32) {
        self.step.store(step, Ordering::Relaxed);
        self.trial.store(trial, Ordering::Relaxed);
    }

    /// A fresh request id.
    pub fn next_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    /// Tells the sink a step ended.
    pub fn flush(&self) {
        self.sink.flush();
    }

    /// Records one measured request.
    pub fn record(&self, id: String, r: &Result<Metrics, Failure>, f: Finished<'_>) {
        let at = |i: Instant| ms(i.saturating_duration_since(self.origin));
        let since_origin = |us: u64| at(f.t0) + us as f64 / 1e3;
        let (first, last, prompt, output, outcome, class) = match r {
            Ok(m) => (
                Some(since_origin(m.ttft_us)),
                Some(since_origin(m.e2el_us)),
                m.prompt_tokens,
                m.output_tokens,
                RecordOutcome::Ok,
                None,
            ),
            Err(e) => (
                None,
                None,
                f.prompt_tokens,
                0,
                RecordOutcome::Failed,
                Some(e.class),
            ),
        };
        let itl_ms = (self.itl && r.is_ok())
            .then(|| f.itl_us.iter().map(|&us| f64::from(us) / 1e3).collect());
        self.sink.record(RequestRecord {
            id,
            step: self.step.load(Ordering::Relaxed),
            trial: self.trial.load(Ordering::Relaxed),
            model: self.model.clone(),
            scheduled_ms: at(f.scheduled),
            sent_ms: at(f.sent),
            first_token_ms: first,
            last_token_ms: last,
            end_ms: at(f.end),
            prompt_tokens: prompt,
            output_tokens: output,
            itl_ms,
            outcome,
            error_class: class,
        });
    }
}

enum Msg {
    Header(Box<RecordsHeader>),
    Record(Box<RequestRecord>),
    Flush,
}

/// Streams records as JSON lines to a writer from a background thread.
pub struct JsonlSink {
    tx: Mutex<Option<std::sync::mpsc::Sender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<std::io::Result<u64>>>>,
}

impl JsonlSink {
    /// Writes the header and then every record to `out`.
    pub fn new<W: Write + Send + 'static>(mut out: W) -> std::io::Result<JsonlSink> {
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new().name("records".into()).spawn(
            move || -> std::io::Result<u64> {
                let mut n = 0u64;
                for msg in rx {
                    match msg {
                        Msg::Header(h) => {
                            serde_json::to_writer(&mut out, &h)?;
                            out.write_all(b"\n")?;
                        }
                        Msg::Record(r) => {
                            serde_json::to_writer(&mut out, &r)?;
                            out.write_all(b"\n")?;
                            n += 1;
                        }
                        Msg::Flush => out.flush()?,
                    }
                }
                out.flush()?;
                Ok(n)
            },
        )?;
        Ok(JsonlSink {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A sink writing to a new file at `path` (buffered).
    pub fn create(path: &std::path::Path) -> anyhow::Result<JsonlSink> {
        use anyhow::Context;
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating records file {}", path.display()))?;
        Ok(JsonlSink::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            file,
        ))?)
    }

    /// Stops accepting records, writes out the rest and returns how many were written.
    pub fn finish(&self) -> std::io::Result<u64> {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        match self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("records writer panicked"))),
            None => Ok(0),
        }
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            // A writer that failed has ended; its error is reported by `finish`.
            let _ = tx.send(msg);
        }
    }
}

impl RecordSink for JsonlSink {
    fn start(&self, header: &RecordsHeader) {
        self.send(Msg::Header(Box::new(header.clone())));
    }
    fn record(&self, record: RequestRecord) {
        self.send(Msg::Record(Box::new(record)));
    }
    fn flush(&self) {
        self.send(Msg::Flush);
    }
}

/// Keeps records in memory as gzip-compressed JSONL, at most `max_bytes` compressed (a load
/// pod embeds them in its results). Each step's records become one gzip member when the step
/// ends ([`RecordSink::flush`]); records that would pass the limit are dropped and counted.
pub struct GzipBudgetSink {
    max_bytes: usize,
    state: Mutex<GzState>,
}

struct GzState {
    /// Finished gzip members.
    done: Vec<u8>,
    /// Records in `done`.
    kept: u64,
    /// The member being written and the records in it.
    current: Option<(flate2::write::GzEncoder<Vec<u8>>, u64)>,
    dropped: u64,
    /// No more records fit.
    full: bool,
}

/// Room kept for what the compressor still buffers when deciding whether a record fits.
const GZ_SLACK: usize = 16 * 1024;

impl GzipBudgetSink {
    /// A sink keeping at most `max_bytes` compressed bytes.
    pub fn new(max_bytes: usize) -> GzipBudgetSink {
        GzipBudgetSink {
            max_bytes,
            state: Mutex::new(GzState {
                done: Vec::new(),
                kept: 0,
                current: None,
                dropped: 0,
                full: false,
            }),
        }
    }

    fn write_line(&self, st: &mut GzState, line: &[u8], counts: bool) {
        if st.full {
            st.dropped += u64::from(counts);
            return;
        }
        let (enc, n) = st.current.get_or_insert_with(|| {
            (
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
                0,
            )
        });
        if st.done.len() + enc.get_ref().len() + line.len() / 4 + GZ_SLACK > self.max_bytes {
            st.full = true;
            st.dropped += u64::from(counts);
            return;
        }
        if enc.write_all(line).is_ok() {
            *n += u64::from(counts);
        }
    }

    /// The records kept so far (finished steps only), encoded for the results.
    pub fn snapshot(&self) -> crate::contract::records::EmbeddedRecords {
        use base64::Engine as _;
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pending = st.current.as_ref().map_or(0, |c| c.1);
        crate::contract::records::EmbeddedRecords {
            encoding: crate::contract::records::EMBEDDED_ENCODING.into(),
            data: base64::engine::general_purpose::STANDARD.encode(&st.done),
            count: st.kept,
            dropped: st.dropped + pending,
            max_bytes: u32::try_from(self.max_bytes).unwrap_or(u32::MAX),
        }
    }
}

impl RecordSink for GzipBudgetSink {
    fn start(&self, header: &RecordsHeader) {
        let mut line = serde_json::to_vec(header).unwrap_or_default();
        line.push(b'\n');
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.write_line(&mut st, &line, false);
    }

    fn record(&self, record: RequestRecord) {
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.write_line(&mut st, &line, true);
    }

    fn flush(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((enc, n)) = st.current.take() else {
            return;
        };
        match enc.finish() {
            Ok(member) if st.done.len() + member.len() <= self.max_bytes => {
                st.done.extend_from_slice(&member);
                st.kept += n;
            }
            _ => {
                st.dropped += n;
                st.full = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::outcome::ErrorClass;
    use crate::contract::records::{CLOCK, RECORDS_VERSION, parse_records};
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_carry_times_from_the_origin_and_reach_the_file() {
        let buf = Shared::default();
        let header = RecordsHeader {
            inferops_records: RECORDS_VERSION,
            started_at: chrono::Utc::now(),
            clock: CLOCK.into(),
            url: "u".into(),
            model: "m".into(),
            pod: 0,
        };
        let sink = Arc::new(JsonlSink::new(buf.clone()).unwrap());
        sink.start(&header);
        let origin = Instant::now();
        let rec = Recorder::new(sink.clone(), origin, "m", true, "run-0".into());
        rec.set_step(2, 1);
        let t0 = origin + Duration::from_millis(100);
        let ok = Metrics {
            ttft_us: 30_000,
            e2el_us: 80_000,
            prompt_tokens: 12,
            output_tokens: 3,
            streamed: true,
        };
        let fin = Finished {
            scheduled: t0,
            sent: t0 + Duration::from_millis(1),
            t0,
            end: t0 + Duration::from_millis(80),
            prompt_tokens: 10,
            itl_us: &[25_000, 25_000],
        };
        rec.record(rec.next_id(), &Ok(ok), fin);
        let fail = Failure::new(ErrorClass::Http5xx, "boom");
        rec.record(rec.next_id(), &Err(fail), fin);
        assert_eq!(sink.finish().unwrap(), 2);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let parsed = parse_records(&text).unwrap();
        assert_eq!(parsed.headers.len(), 1);
        let [a, b] = &parsed.records[..] else {
            panic!("{text}")
        };
        assert_eq!((a.id.as_str(), b.id.as_str()), ("run-0-0", "run-0-1"));
        assert_eq!((a.step, a.trial), (2, 1));
        assert_eq!(a.scheduled_ms, 100.0);
        assert_eq!(a.sent_ms, 101.0);
        assert_eq!(a.first_token_ms, Some(130.0));
        assert_eq!(a.last_token_ms, Some(180.0));
        assert_eq!(a.ttft_ms(), Some(30.0));
        assert_eq!(a.itl_ms, Some(vec![25.0, 25.0]));
        assert_eq!(a.prompt_tokens, 12);
        assert_eq!(b.outcome, RecordOutcome::Failed);
        assert_eq!(b.error_class, Some(ErrorClass::Http5xx));
        assert_eq!((b.prompt_tokens, b.output_tokens), (10, 0));
        assert_eq!(b.itl_ms, None);
    }

    #[test]
    fn the_gzip_budget_keeps_whole_steps_and_counts_what_it_drops() {
        let header = RecordsHeader {
            inferops_records: RECORDS_VERSION,
            started_at: chrono::Utc::now(),
            clock: CLOCK.into(),
            url: "u".into(),
            model: "m".into(),
            pod: 3,
        };
        let origin = Instant::now();
        let fin = Finished {
            scheduled: origin,
            sent: origin,
            t0: origin,
            end: origin + Duration::from_millis(5),
            prompt_tokens: 10,
            itl_us: &[],
        };
        let ok = Ok(Metrics {
            ttft_us: 1000,
            e2el_us: 5000,
            prompt_tokens: 10,
            output_tokens: 4,
            streamed: true,
        });
        // Room for everything.
        let roomy = Arc::new(GzipBudgetSink::new(1 << 20));
        roomy.start(&header);
        let rec = Recorder::new(roomy.clone(), origin, "m", false, "p".into());
        for step in 0..2 {
            rec.set_step(step, 0);
            for _ in 0..50 {
                rec.record(rec.next_id(), &ok, fin);
            }
            rec.flush();
        }
        let e = roomy.snapshot();
        assert_eq!((e.count, e.dropped), (100, 0));
        let back = e.decode().unwrap();
        assert_eq!(back.headers, vec![header.clone()]);
        assert_eq!(back.records.len(), 100);
        assert_eq!(back.records.iter().filter(|r| r.step == 1).count(), 50);
        // A tight budget: what does not fit is dropped and counted, never lost silently.
        let tight = Arc::new(GzipBudgetSink::new(GZ_SLACK + 2048));
        tight.start(&header);
        let rec = Recorder::new(tight.clone(), origin, "m", false, "q".into());
        for step in 0..40 {
            rec.set_step(step, 0);
            for _ in 0..200 {
                rec.record(rec.next_id(), &ok, fin);
            }
            rec.flush();
        }
        let e = tight.snapshot();
        assert!(e.dropped > 0, "{e:?}");
        assert_eq!(e.count + e.dropped, 40 * 200);
        let data_len = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            e.data.as_bytes(),
        )
        .unwrap()
        .len();
        assert!(data_len <= GZ_SLACK + 2048, "{data_len}");
        assert_eq!(e.decode().unwrap().records.len() as u64, e.count);
    }
}
