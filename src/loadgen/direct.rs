//! Plain-HTTP/1.1 transport for `http://` targets, read straight from the socket.
//!
//! Each worker owns one kept-alive connection and reads its responses in its own task: the
//! request goes out in one write, the head is parsed with `httparse`, and the body is decoded
//! (chunked, `Content-Length` or until close) in place in the connection's read buffer, so
//! every piece handed to the SSE parser is a slice of what one `read` returned, stamped when
//! that read returned. Under paced streams that is one read and no copy per token event; no
//! second task, channel or allocation sits between the socket and the parser. Memory is the
//! read buffer (8 KiB, growing to 64 KiB while reads fill it): a hostile server's long chunk
//! or line streams through it, bounded by the SSE parser's limit.

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::contract::outcome::{ErrorClass, Failure};

const INITIAL_BUF: usize = 8 * 1024;
const MAX_BUF: usize = 64 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;
const MAX_HEADERS: usize = 64;

/// One kept-alive connection, owned by a worker.
pub struct DirectConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// The last read filled the buffer: grow it before the next one.
    grow: bool,
    /// When the last read returned data.
    read_at: Instant,
}

impl std::fmt::Debug for DirectConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectConn")
    }
}

/// Why a round trip failed, and whether resending on a fresh connection is safe.
struct TripError {
    /// Nothing of a response arrived (the server may have closed an idle connection).
    before_response: bool,
    message: String,
}

impl DirectConn {
    fn new(stream: TcpStream) -> DirectConn {
        DirectConn {
            stream,
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            grow: false,
            read_at: Instant::now(),
        }
    }

    /// Still usable: nothing unread is left and the server has not closed it while it sat
    /// idle (a non-blocking read finds no data and no end of stream).
    pub(crate) fn usable(&self) -> bool {
        if self.start != self.end {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes after the unconsumed ones; 0 at the end of the stream. Fails when the
    /// unconsumed bytes already fill the largest buffer.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.grow && self.buf.len() < MAX_BUF {
                self.buf.resize((self.buf.len() * 2).min(MAX_BUF), 0);
            }
            self.grow = false;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_BUF {
                self.buf.resize((self.buf.len() * 2).min(MAX_BUF), 0);
            } else {
                return Err(io::Error::other("read buffer full"));
            }
        }
        let free = self.buf.len() - self.end;
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n > 0 {
            self.read_at = Instant::now();
            self.end += n;
            self.grow = n == free;
        }
        Ok(n)
    }

    /// Writes `request` and reads the response head (skipping `1xx` heads).
    async fn round_trip(&mut self, request: &[u8]) -> Result<Head, TripError> {
        let lost = |e: io::Error| TripError {
            before_response: true,
            message: format!("connection failed before a response: {e}"),
        };
        self.stream.write_all(request).await.map_err(lost)?;
        let mut seen = false;
        loop {
            if self.start < self.end {
                seen = true;
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(self.buffered()) {
                    Ok(httparse::Status::Complete(n)) => {
                        let head = Head::from_parsed(&resp)?;
                        self.start += n;
                        if (100..200).contains(&head.status.as_u16()) {
                            continue;
                        }
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => {
                        return Err(TripError {
                            before_response: false,
                            message: format!("invalid HTTP response head: {e}"),
                        });
                    }
                }
                if self.end - self.start >= MAX_HEAD {
                    return Err(TripError {
                        before_response: false,
                        message: format!("response head longer than {MAX_HEAD} bytes"),
                    });
                }
            }
            match self.fill().await {
                Ok(0) if seen => {
                    return Err(TripError {
                        before_response: false,
                        message: "connection closed in the middle of the response head".into(),
                    });
                }
                Ok(0) => {
                    return Err(TripError {
                        before_response: true,
                        message: "connection closed before a response".into(),
                    });
                }
                Ok(_) => {}
                Err(e) if seen => {
                    return Err(TripError {
                        before_response: false,
                        message: format!("connection failed in the response head: {e}"),
                    });
                }
                Err(e) => return Err(lost(e)),
            }
        }
    }
}

/// What the response head says.
struct Head {
    status: http::StatusCode,
    headers: http::HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    fn from_parsed(resp: &httparse::Response<'_, '_>) -> Result<Head, TripError> {
        let bad = |message: String| TripError {
            before_response: false,
            message,
        };
        let status = resp
            .code
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .ok_or_else(|| bad("invalid HTTP status code".into()))?;
        let mut headers = http::HeaderMap::with_capacity(resp.headers.len());
        let (mut chunked, mut length, mut close, mut keep) = (false, None::<u64>, false, false);
        for h in resp.headers.iter() {
            let value = h.value;
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| bad("invalid Content-Length".into()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad("conflicting Content-Length headers".into()));
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in value.split(|b| *b == b',') {
                    let t = token.trim_ascii();
                    close |= t.eq_ignore_ascii_case(b"close");
                    keep |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        let framing = if matches!(status.as_u16(), 204 | 304) {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked(ChunkPart::Size)
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let http11 = resp.version == Some(1);
        let keep_alive = !close && (http11 || keep) && !matches!(framing, Framing::UntilClose);
        Ok(Head {
            status,
            headers,
            framing,
            keep_alive,
        })
    }
}

/// How the body is delimited, and how far through it the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(ChunkPart),
    /// Until the server closes the connection.
    UntilClose,
    /// The whole body has been read.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPart {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// The response body of a direct request: slices of the connection's read buffer, each with
/// the time its read returned. The connection goes back to the worker's slot when the body
/// was read to its end and the server keeps it alive; otherwise it is closed when dropped.
pub struct DirectBody<'a> {
    slot: &'a mut Option<DirectConn>,
    conn: Option<DirectConn>,
    framing: Framing,
    keep_alive: bool,
}

impl Drop for DirectBody<'_> {
    fn drop(&mut self) {
        if self.framing == Framing::Done && self.keep_alive {
            *self.slot = self.conn.take();
        }
    }
}

/// Splits the first line (ending in LF, CR optional) off `b`: (line without CRLF, length
/// with it).
fn line(b: &[u8]) -> Option<(&[u8], usize)> {
    let lf = memchr::memchr(b'\n', b)?;
    let l = &b[..lf];
    Some((l.strip_suffix(b"\r").unwrap_or(l), lf + 1))
}

impl<'a> DirectBody<'a> {
    fn new(slot: &'a mut Option<DirectConn>, conn: DirectConn, head: &Head) -> DirectBody<'a> {
        DirectBody {
            slot,
            conn: Some(conn),
            framing: head.framing,
            keep_alive: head.keep_alive,
        }
    }

    /// The next piece of body data and when its bytes were read from the socket; `None` at
    /// the end of the body.
    pub async fn next(&mut self) -> Result<Option<(&[u8], Instant)>, String> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let (from, to) = loop {
            let avail = conn.buffered();
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) if !avail.is_empty() => {
                    let n = (avail.len() as u64).min(left) as usize;
                    self.framing = Framing::Length(left - n as u64);
                    break (conn.start, conn.start + n);
                }
                Framing::UntilClose if !avail.is_empty() => break (conn.start, conn.end),
                Framing::Chunked(ChunkPart::Data(left)) if !avail.is_empty() => {
                    let n = (avail.len() as u64).min(left) as usize;
                    self.framing = Framing::Chunked(if n as u64 == left {
                        ChunkPart::DataEnd
                    } else {
                        ChunkPart::Data(left - n as u64)
                    });
                    break (conn.start, conn.start + n);
                }
                Framing::Chunked(ChunkPart::Size) => {
                    if let Some((l, used)) = line(avail) {
                        let digits = l.split(|b| *b == b';').next().unwrap_or_default();
                        let size = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|d| u64::from_str_radix(d.trim(), 16).ok())
                            .ok_or_else(|| {
                                format!(
                                    "invalid chunk size line {:?}",
                                    String::from_utf8_lossy(&l[..l.len().min(40)])
                                )
                            })?;
                        conn.start += used;
                        self.framing = Framing::Chunked(if size == 0 {
                            ChunkPart::Trailers
                        } else {
                            ChunkPart::Data(size)
                        });
                        continue;
                    }
                    if avail.len() > MAX_LINE {
                        return Err(format!("chunk size line longer than {MAX_LINE} bytes"));
                    }
                }
                Framing::Chunked(ChunkPart::DataEnd) => {
                    if let Some((l, used)) = line(avail) {
                        if !l.is_empty() {
                            return Err("chunk data longer than its size line says".into());
                        }
                        conn.start += used;
                        self.framing = Framing::Chunked(ChunkPart::Size);
                        continue;
                    }
                    if avail.len() >= 2 {
                        return Err("chunk data longer than its size line says".into());
                    }
                }
                Framing::Chunked(ChunkPart::Trailers) => {
                    if let Some((l, used)) = line(avail) {
                        let last = l.is_empty();
                        conn.start += used;
                        if last {
                            self.framing = Framing::Done;
                            return Ok(None);
                        }
                        continue;
                    }
                    if avail.len() > MAX_LINE {
                        return Err(format!("trailer line longer than {MAX_LINE} bytes"));
                    }
                }
                // Framed data with nothing buffered: read more.
                Framing::Length(_) | Framing::UntilClose | Framing::Chunked(ChunkPart::Data(_)) => {
                }
            }
            match conn.fill().await {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Ok(0) => return Err("connection closed before the end of the body".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading the body: {e}")),
            }
        };
        conn.start = to;
        Ok(Some((&conn.buf[from..to], conn.read_at)))
    }
}

/// A response head plus its body.
pub struct DirectResponse<'a> {
    /// Status code.
    pub status: http::StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body pieces.
    pub body: DirectBody<'a>,
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct DirectTarget {
    addr: String,
    /// `Host`, `User-Agent` and `Authorization` lines, CRLF-terminated.
    fixed_headers: Vec<u8>,
    path: String,
    connect_timeout: Duration,
    /// Path of the `GET` that verifies a pre-opened connection (`/v1/models`).
    verify_path: Option<String>,
}

impl DirectTarget {
    /// A target for the `http://` URL `url` (already including the API path).
    pub fn new(
        url: &reqwest::Url,
        auth: Option<HeaderValue>,
        connect_timeout: Duration,
    ) -> anyhow::Result<DirectTarget> {
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("URL {url} has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut fixed_headers = format!(
            "Host: {host_header}\r\nUser-Agent: inferops-loadgen/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
        if let Some(a) = &auth {
            fixed_headers.extend_from_slice(b"Authorization: ");
            fixed_headers.extend_from_slice(a.as_bytes());
            fixed_headers.extend_from_slice(b"\r\n");
        }
        Ok(DirectTarget {
            // `host_str` keeps IPv6 brackets, which `host:port` parsing needs.
            addr: format!("{host}:{port}"),
            fixed_headers,
            path,
            connect_timeout,
            verify_path: None,
        })
    }

    /// Verify pre-opened connections with a `GET` of `path` (see [`Self::connect_verified`]).
    pub fn with_verify_path(mut self, path: &str) -> anyhow::Result<DirectTarget> {
        anyhow::ensure!(
            path.starts_with('/'),
            "verify path {path:?} must start with /"
        );
        self.verify_path = Some(path.to_owned());
        Ok(self)
    }

    /// The bytes of a request: head and body in one buffer, written with one `write`.
    fn request(&self, method: &str, path: &str, body: &[u8], id: Option<&HeaderValue>) -> Vec<u8> {
        let mut r = Vec::with_capacity(160 + self.fixed_headers.len() + body.len());
        r.extend_from_slice(method.as_bytes());
        r.push(b' ');
        r.extend_from_slice(path.as_bytes());
        r.extend_from_slice(b" HTTP/1.1\r\n");
        r.extend_from_slice(&self.fixed_headers);
        if method == "POST" {
            r.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            r.extend_from_slice(body.len().to_string().as_bytes());
            r.extend_from_slice(b"\r\n");
        }
        if let Some(id) = id {
            r.extend_from_slice(b"X-Request-Id: ");
            r.extend_from_slice(id.as_bytes());
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(body);
        r
    }

    /// Opens a connection and proves the server serves it: a `GET` of the verify path (any
    /// status) is answered on it within the connect timeout and the connection stays open.
    /// A completed TCP handshake alone proves little: when the server's accept queue is full
    /// the kernel drops the handshake's last ACK, and the first request then waits for the
    /// server's SYN-ACK retransmits (1 s, 2 s, 4 s...).
    pub(crate) async fn connect_verified(&self) -> Result<DirectConn, Failure> {
        let conn = self.connect().await?;
        let Some(path) = &self.verify_path else {
            return Ok(conn);
        };
        let fail = |m: String| Failure::new(ErrorClass::Connect, m);
        let request = self.request("GET", path, b"", None);
        let mut slot = None;
        let verify = async {
            let mut conn = conn;
            let head = conn
                .round_trip(&request)
                .await
                .map_err(|e| fail(format!("verifying the connection: {}", e.message)))?;
            let mut body = DirectBody::new(&mut slot, conn, &head);
            while body
                .next()
                .await
                .map_err(|e| fail(format!("verifying the connection: {e}")))?
                .is_some()
            {}
            Ok::<(), Failure>(())
        };
        match tokio::time::timeout(self.connect_timeout, verify).await {
            Ok(Ok(())) => match slot {
                Some(c) if c.usable() => Ok(c),
                _ => Err(fail(format!(
                    "the server closed the connection after GET {path}"
                ))),
            },
            Ok(Err(f)) => Err(f),
            Err(_) => Err(fail(format!(
                "GET {path} on a new connection not answered within {:?}",
                self.connect_timeout
            ))),
        }
    }

    /// Opens a new connection (TCP handshake).
    pub(crate) async fn connect(&self) -> Result<DirectConn, Failure> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(&self.addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Failure::new(
                    ErrorClass::Connect,
                    format!("tcp connect error to {}: {e}", self.addr),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    ErrorClass::Connect,
                    format!(
                        "tcp connect to {} timed out after {:?}",
                        self.addr, self.connect_timeout
                    ),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(DirectConn::new(stream))
    }

    /// Posts `body` on the worker's connection (opening one if none is usable) and returns the
    /// response head with its body, which reads from the connection and puts it back into
    /// `slot` once read to its end (if the server keeps it alive). A kept-alive connection
    /// the server closed just before the request is replaced and the request sent once more.
    pub async fn exchange<'a>(
        &self,
        slot: &'a mut Option<DirectConn>,
        body: &Bytes,
        request_id: Option<&HeaderValue>,
    ) -> Result<DirectResponse<'a>, Failure> {
        let (mut conn, reused) = match slot.take() {
            Some(c) if c.usable() => (c, true),
            _ => (self.connect().await?, false),
        };
        let request = self.request("POST", &self.path, body, request_id);
        let fail = |e: TripError| Failure::new(ErrorClass::Stream, e.message);
        let head = match conn.round_trip(&request).await {
            Ok(h) => h,
            Err(e) if reused && e.before_response => {
                conn = self.connect().await?;
                conn.round_trip(&request).await.map_err(fail)?
            }
            Err(e) => return Err(fail(e)),
        };
        let body = DirectBody::new(slot, conn, &head);
        Ok(DirectResponse {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn targets_from_urls() {
        let t = |u: &str| {
            DirectTarget::new(
                &reqwest::Url::parse(u).unwrap(),
                None,
                Duration::from_secs(1),
            )
            .unwrap()
        };
        let a = t("http://h:8000/v1/completions");
        let req = String::from_utf8(a.request("POST", &a.path, b"{}", None)).unwrap();
        assert_eq!(a.addr, "h:8000");
        assert!(
            req.starts_with("POST /v1/completions HTTP/1.1\r\nHost: h:8000\r\n"),
            "{req}"
        );
        assert!(req.ends_with("Content-Length: 2\r\n\r\n{}"), "{req}");
        let b = t("http://[::1]/v1/chat/completions?x=1");
        let req = String::from_utf8(b.request("GET", &b.path, b"", None)).unwrap();
        assert_eq!(b.addr, "[::1]:80");
        assert!(
            req.starts_with("GET /v1/chat/completions?x=1 HTTP/1.1\r\nHost: [::1]\r\n"),
            "{req}"
        );
        assert!(!req.contains("Content-Length"), "{req}");
    }

    /// A server that answers one request on one connection with `response`, written in
    /// pieces of `piece` bytes (to cut heads, size lines and data at every point).
    async fn serve_once(response: Vec<u8>, piece: usize) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/completions", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let mut got = 0;
            while !req[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                got += s.read(&mut req[got..]).await.unwrap();
            }
            for p in response.chunks(piece) {
                s.write_all(p).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Keep the connection open a moment so keep-alive can be judged.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        url
    }

    async fn fetch(url: &str) -> (u16, Result<Vec<u8>, String>, bool) {
        let t = DirectTarget::new(
            &reqwest::Url::parse(url).unwrap(),
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        let mut slot = None;
        let DirectResponse {
            status, mut body, ..
        } = t
            .exchange(&mut slot, &Bytes::from_static(b"{}"), None)
            .await
            .unwrap();
        let status = status.as_u16();
        let mut out = Vec::new();
        let r = loop {
            match body.next().await {
                Ok(Some((b, _))) => out.extend_from_slice(b),
                Ok(None) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        drop(body);
        (status, r, slot.is_some())
    }

    #[tokio::test]
    async fn bodies_decode_the_same_at_every_cut() {
        let chunked = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        let length = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello, world";
        let close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello, world";
        for piece in [1, 2, 3, 7, 1000] {
            for (resp, kept) in [
                (&chunked[..], true),
                (&length[..], true),
                (&close[..], false),
            ] {
                let url = serve_once(resp.to_vec(), piece).await;
                let (status, body, reused) = fetch(&url).await;
                assert_eq!(status, 200);
                assert_eq!(body.as_deref(), Ok(&b"hello, world"[..]), "piece {piece}");
                assert_eq!(
                    reused,
                    kept,
                    "piece {piece}: {}",
                    String::from_utf8_lossy(resp)
                );
            }
        }
    }

    #[tokio::test]
    async fn continue_heads_are_skipped_and_bad_framing_is_an_error() {
        let url = serve_once(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno"
                .to_vec(),
            5,
        )
        .await;
        let (status, body, reused) = fetch(&url).await;
        assert_eq!(
            (status, body.as_deref(), reused),
            (404, Ok(&b"no"[..]), true)
        );

        let broken: [(&[u8], &str); 3] = [
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                "invalid chunk size line",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
                "longer than its size line",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                "closed before the end of the body",
            ),
        ];
        for (resp, error) in broken {
            let url = serve_once(resp.to_vec(), 1000).await;
            let (_, body, reused) = fetch(&url).await;
            assert!(body.unwrap_err().contains(error), "{error}");
            assert!(!reused, "a connection with broken framing is not kept");
        }
    }

    #[tokio::test]
    async fn a_long_chunk_streams_through_a_bounded_buffer() {
        let size = 3 * MAX_BUF;
        let mut resp = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{size:x}\r\n")
            .into_bytes();
        resp.extend(std::iter::repeat_n(b'x', size));
        resp.extend_from_slice(b"\r\n0\r\n\r\n");
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/completions", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await.unwrap();
            s.write_all(&resp).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let t = DirectTarget::new(
            &reqwest::Url::parse(&url).unwrap(),
            None,
            Duration::from_secs(2),
        )
        .unwrap();
        let mut slot = None;
        let resp = t.exchange(&mut slot, &Bytes::new(), None).await.unwrap();
        let mut body = resp.body;
        let mut total = 0;
        while let Some((b, _)) = body.next().await.unwrap() {
            assert!(b.len() <= MAX_BUF);
            total += b.len();
        }
        assert_eq!(total, size);
        assert!(body.conn.as_ref().unwrap().buf.len() <= MAX_BUF);
    }
}
