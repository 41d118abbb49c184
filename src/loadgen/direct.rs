//! Plain-HTTP/1.1 transport on hyper's connection API, used for `http://` targets.
//!
//! Each worker owns its connection (kept alive across its requests) and drives it inside its
//! own task, so a chunk is handled in the same poll that read it from the socket, and every
//! read is timestamped by the socket wrapper when the bytes are returned by the kernel. Under
//! a burst (hundreds of streams receiving a token at the same instant) chunks are thus
//! stamped at their read, not when a second task gets scheduled.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::client::error_chain;
use crate::contract::outcome::{ErrorClass, Failure};

fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

/// Nanoseconds since the process anchor (for lock-free timestamps).
fn now_ns() -> u64 {
    anchor().elapsed().as_nanos() as u64
}

fn from_ns(ns: u64) -> Instant {
    anchor() + Duration::from_nanos(ns)
}

/// A TCP stream that records when its last successful read returned data.
struct TimedStream {
    inner: TcpStream,
    last_read: Arc<AtomicU64>,
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last_read.store(now_ns(), Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

type Conn = http1::Connection<TokioIo<TimedStream>, Full<Bytes>>;

/// One kept-alive connection, owned by a worker.
pub struct DirectConn {
    sender: http1::SendRequest<Full<Bytes>>,
    /// The connection future; `None` once it has finished.
    conn: Option<Pin<Box<Conn>>>,
    last_read: Arc<AtomicU64>,
}

impl std::fmt::Debug for DirectConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectConn")
    }
}

impl DirectConn {
    /// Still usable: the server has not closed it while it sat idle.
    pub(crate) fn usable(&mut self) -> bool {
        let Some(c) = self.conn.as_mut() else {
            return false;
        };
        !self.sender.is_closed() && c.as_mut().now_or_never().is_none()
    }
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct DirectTarget {
    addr: String,
    host: HeaderValue,
    path: http::Uri,
    auth: Option<HeaderValue>,
    connect_timeout: Duration,
    /// Path of the `GET` that verifies a pre-opened connection (`/v1/models`).
    verify_path: Option<http::Uri>,
}

/// The response body of a direct request, with read timestamps.
pub struct DirectBody {
    body: Incoming,
    last_read: Arc<AtomicU64>,
}

impl DirectBody {
    /// The next data chunk and when its bytes were read from the socket.
    pub async fn next(&mut self) -> Result<Option<(Bytes, Instant)>, String> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(error_chain(&e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let at =
                            from_ns(self.last_read.load(Ordering::Relaxed)).min(Instant::now());
                        return Ok(Some((data, at)));
                    }
                }
            }
        }
    }
}

/// A response head plus its body.
pub struct DirectResponse {
    /// Status code.
    pub status: http::StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body chunks.
    pub body: DirectBody,
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
        Ok(DirectTarget {
            // `host_str` keeps IPv6 brackets, which `host:port` parsing needs.
            addr: format!("{host}:{port}"),
            host: HeaderValue::from_str(&host_header)?,
            path: path.parse()?,
            auth,
            connect_timeout,
            verify_path: None,
        })
    }

    /// Verify pre-opened connections with a `GET` of `path` (see [`Self::connect_verified`]).
    pub fn with_verify_path(mut self, path: &str) -> anyhow::Result<DirectTarget> {
        self.verify_path = Some(path.parse()?);
        Ok(self)
    }

    /// Opens a connection and proves the server serves it: a `GET` of the verify path (any
    /// status) is answered on it within the connect timeout and the connection stays open.
    /// A completed TCP handshake alone proves little: when the server's accept queue is full
    /// the kernel drops the handshake's last ACK, and the first request then waits for the
    /// server's SYN-ACK retransmits (1 s, 2 s, 4 s...).
    pub(crate) async fn connect_verified(&self) -> Result<DirectConn, Failure> {
        let mut conn = self.connect().await?;
        let Some(path) = &self.verify_path else {
            return Ok(conn);
        };
        let mut req = http::Request::get(path.clone())
            .header(HOST, self.host.clone())
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("inferops-loadgen/", env!("CARGO_PKG_VERSION"))),
            );
        if let Some(a) = &self.auth {
            req = req.header(http::header::AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .expect("valid request parts");
        let verify = async {
            let resp = send(&mut conn, req).await?;
            let mut body = resp.into_body();
            let drain = async {
                while let Some(frame) = body.frame().await {
                    frame.map_err(|e| {
                        Failure::new(
                            ErrorClass::Connect,
                            format!("verifying the connection: {}", error_chain(&e)),
                        )
                    })?;
                }
                Ok::<(), Failure>(())
            };
            let mut ended = false;
            match conn.conn.as_mut() {
                Some(driver) => tokio::select! {
                    biased;
                    r = drain => r?,
                    _ = driver.as_mut() => ended = true,
                },
                None => drain.await?,
            }
            if ended {
                conn.conn = None;
            }
            Ok::<(), Failure>(())
        };
        match tokio::time::timeout(self.connect_timeout, verify).await {
            Ok(Ok(())) if conn.usable() => Ok(conn),
            Ok(Ok(())) => Err(Failure::new(
                ErrorClass::Connect,
                format!("the server closed the connection after GET {path}"),
            )),
            Ok(Err(f)) => Err(f),
            Err(_) => Err(Failure::new(
                ErrorClass::Connect,
                format!(
                    "GET {path} on a new connection not answered within {:?}",
                    self.connect_timeout
                ),
            )),
        }
    }

    /// Opens a new connection (TCP handshake, then HTTP/1.1 set-up).
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
        let last_read = Arc::new(AtomicU64::new(now_ns()));
        let io = TokioIo::new(TimedStream {
            inner: stream,
            last_read: last_read.clone(),
        });
        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(|e| {
            Failure::new(
                ErrorClass::Connect,
                format!("HTTP handshake failed: {}", error_chain(&e)),
            )
        })?;
        Ok(DirectConn {
            sender,
            conn: Some(Box::pin(conn)),
            last_read,
        })
    }

    fn request(&self, body: &Bytes, id: Option<&HeaderValue>) -> http::Request<Full<Bytes>> {
        let mut r = http::Request::post(self.path.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(CONTENT_LENGTH, body.len())
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("inferops-loadgen/", env!("CARGO_PKG_VERSION"))),
            );
        if let Some(a) = &self.auth {
            r = r.header(http::header::AUTHORIZATION, a.clone());
        }
        if let Some(id) = id {
            r = r.header(super::client::X_REQUEST_ID, id.clone());
        }
        r.body(Full::new(body.clone()))
            .expect("valid request parts")
    }

    /// Sends `body` on the worker's connection (opening one if needed) and runs `handle` on the
    /// response while driving the connection in this task. The connection is kept for the next
    /// request only when `handle` succeeded and the connection is still open.
    pub async fn exchange<T, F, Fut>(
        &self,
        slot: &mut Option<DirectConn>,
        body: &Bytes,
        request_id: Option<&HeaderValue>,
        handle: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(DirectResponse) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let (mut conn, reused) = match slot.take() {
            Some(mut c) => {
                if c.usable() {
                    (c, true)
                } else {
                    (self.connect().await?, false)
                }
            }
            None => (self.connect().await?, false),
        };
        // A kept-alive connection may have been closed by the server just now: retry once.
        let resp = match send(&mut conn, self.request(body, request_id)).await {
            Ok(r) => r,
            Err(_) if reused => {
                conn = self.connect().await?;
                send(&mut conn, self.request(body, request_id)).await?
            }
            Err(f) => return Err(f),
        };
        let (parts, incoming) = resp.into_parts();
        let response = DirectResponse {
            status: parts.status,
            headers: parts.headers,
            body: DirectBody {
                body: incoming,
                last_read: conn.last_read.clone(),
            },
        };
        let fut = handle(response);
        tokio::pin!(fut);
        let Some(mut driver) = conn.conn.take() else {
            return fut.await;
        };
        tokio::select! {
            biased;
            r = &mut fut => {
                if r.is_ok() {
                    conn.conn = Some(driver);
                    *slot = Some(conn);
                }
                r
            }
            // The connection ended (closed after the response, or broke): what it delivered is
            // still in the body, which reports the rest.
            _ = driver.as_mut() => fut.await,
        }
    }
}

/// Sends a request while driving the connection until the response head arrives.
async fn send(
    conn: &mut DirectConn,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<Incoming>, Failure> {
    let fail = |e: hyper::Error| {
        Failure::new(
            ErrorClass::Stream,
            format!("connection failed before a response: {}", error_chain(&e)),
        )
    };
    let fut = conn.sender.send_request(req);
    tokio::pin!(fut);
    let Some(driver) = conn.conn.as_mut() else {
        return fut.await.map_err(fail);
    };
    let finished = tokio::select! {
        biased;
        r = &mut fut => return r.map_err(fail),
        d = driver.as_mut() => d,
    };
    conn.conn = None;
    match finished {
        Err(e) => Err(fail(e)),
        Ok(()) => fut.await.map_err(fail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            (
                a.addr.as_str(),
                a.host.to_str().unwrap(),
                a.path.to_string().as_str()
            ),
            ("h:8000", "h:8000", "/v1/completions")
        );
        let b = t("http://[::1]/v1/chat/completions?x=1");
        assert_eq!(
            (b.addr.as_str(), b.host.to_str().unwrap()),
            ("[::1]:80", "[::1]")
        );
        assert_eq!(b.path.to_string(), "/v1/chat/completions?x=1");
    }
}
