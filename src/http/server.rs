//! Connections: accepting them, what bounds each client, and graceful shutdown.
//!
//! One task per connection, HTTP/1.1 on hyper (no pipelining, so a connection has at
//! most one request in flight and `max_connections` also bounds requests in flight).
//! What a client can hold, and for how long (`[server_limits]`, [`ServerLimits`]):
//!
//! - the request head, and an idle keep-alive connection waiting for the next one:
//!   `header_timeout_ms`, then the connection is closed (there is no request to answer);
//! - the body: `body_timeout_ms` from when the handler starts reading it, then `408`
//!   (in `extract.rs`, where the body is read);
//! - the whole request: `request_timeout_ms`, then `503 timeout` (the server was slow:
//!   the body deadline is shorter, so a slow client never gets here);
//! - an answer it does not read: no byte taken for `body_timeout_ms` closes the connection;
//! - a connection over `max_connections`: one `503 overloaded` with `Retry-After`, then
//!   closed; past [`SPARE`] such answers in progress, closed at once.
//!
//! Shutdown stops accepting, lets requests in flight finish and closes idle
//! connections; whatever is still open after `shutdown_timeout_ms` is cut off.
//!
//! A connection closes gracefully: its write side first, then what the client still
//! sends is read and dropped for a moment ([`linger`]), so an answer given before the
//! request's body was read (`401`, `413`) reaches the client instead of a reset.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::ApiError;

/// Connections over `max_connections` that may be in the middle of getting their `503`
/// at once; more are closed without an answer.
pub const SPARE: usize = 64;

/// How long a connection over the limit may take to send the request it is refused.
const SPARE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What one client may take of the server (`[server_limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// Time to receive a request's head, and the longest a keep-alive connection may
    /// sit idle between requests, in milliseconds.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// Time to receive a request's body, from when the handler starts reading it, and
    /// the longest a client may take no byte of an answer, in milliseconds.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_ms: u64,
    /// Time from a request's head to its answer, in milliseconds. Longer than
    /// `body_timeout_ms`, so only a slow server reaches it.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Open connections (and so requests in flight) at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a graceful shutdown waits for requests in flight before it closes
    /// what is still open, in milliseconds.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_ms: u64,
}

fn default_header_timeout() -> u64 {
    10_000
}

fn default_body_timeout() -> u64 {
    30_000
}

fn default_request_timeout() -> u64 {
    60_000
}

fn default_max_connections() -> usize {
    512
}

fn default_shutdown_timeout() -> u64 {
    10_000
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout_ms: default_header_timeout(),
            body_timeout_ms: default_body_timeout(),
            request_timeout_ms: default_request_timeout(),
            max_connections: default_max_connections(),
            shutdown_timeout_ms: default_shutdown_timeout(),
        }
    }
}

impl ServerLimits {
    /// Every problem with these values, one sentence each (none when they are usable),
    /// with the keys it concerns, the one to point at first.
    pub fn problems(&self) -> Vec<(&'static [&'static str], String)> {
        let mut out = Vec::new();
        for (key, value) in [
            (&["header_timeout_ms"], self.header_timeout_ms),
            (&["body_timeout_ms"], self.body_timeout_ms),
            (&["request_timeout_ms"], self.request_timeout_ms),
            (&["shutdown_timeout_ms"], self.shutdown_timeout_ms),
        ] {
            if value == 0 {
                out.push((key as &[&str], format!("`{}` must be at least 1", key[0])));
            }
        }
        if self.max_connections == 0 {
            out.push((&["max_connections"], "`max_connections` must be at least 1".to_owned()));
        }
        if self.body_timeout_ms >= self.request_timeout_ms {
            out.push((
                &["body_timeout_ms", "request_timeout_ms"],
                format!(
                    "`body_timeout_ms` ({}) must be less than `request_timeout_ms` ({}): a slow client gets 408 before the request deadline answers 503",
                    self.body_timeout_ms, self.request_timeout_ms
                ),
            ));
        }
        out
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully
/// within `limits.shutdown_timeout_ms`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(SPARE));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Ok(slot) = slots.clone().try_acquire_owned() {
                        connections.spawn(connection(stream, router.clone(), limits, stopping.clone(), slot));
                    } else if let Ok(slot) = spare.clone().try_acquire_owned() {
                        metrics::counter!("http_connections_refused_total", "answer" => "503").increment(1);
                        connections.spawn(refuse(stream, slot));
                    } else {
                        metrics::counter!("http_connections_refused_total", "answer" => "closed").increment(1);
                        drop(stream);
                    }
                }
                Err(e) => accept_failed(&e).await,
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    let drained =
        tokio::time::timeout(limits.shutdown_timeout(), async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            of = open,
            deadline_ms = limits.shutdown_timeout_ms,
            "shutdown deadline passed: closing the connections still open"
        );
        connections.shutdown().await;
    }
}

/// An error accepting a connection: one that concerns that connection only is
/// skipped; others (out of file descriptors) are logged and retried after a pause, so
/// the loop does not spin.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection until the client closes it, a limit closes it, or shutdown.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ServerLimits,
    mut stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(WriteStall::new(stream, limits.body_timeout()));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| router.clone().oneshot(req.map(Body::new)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout());
    let mut conn = builder.serve_connection(io, service);
    let stop = async move {
        // Dropping the watch's guard before anything else is awaited.
        let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
    };
    let mut stop = pin!(stop);
    let mut stopping_now = false;
    // Served without closing the socket at the end, so the socket can linger (below).
    let outcome = std::future::poll_fn(|cx| {
        if !stopping_now && stop.as_mut().poll(cx).is_ready() {
            stopping_now = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        Pin::new(&mut conn).poll_without_shutdown(cx)
    })
    .await;
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "connection closed");
        return;
    }
    let parts = conn.into_parts();
    linger(parts.io.into_inner().inner, !parts.read_buf.is_empty()).await;
}

/// At most this long and this much of what a client still sends after the last answer is
/// read and dropped before the connection closes.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// Closes a connection whose last answer is sent: the write side first, then, when the
/// client still has bytes on their way (`unread`: some the server took in and never
/// used), reads and drops what it sends (briefly, a bounded amount) until it closes its
/// side. A client still sending a body that was answered early (`401`, `413`, a refusal
/// decided from the head) then reads that answer; closing with its bytes unread makes
/// the kernel reset the connection, and the client sees a broken pipe instead. An idle
/// client (nothing pending) is not waited for.
async fn linger(mut stream: TcpStream, unread: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0; 64 << 10];
    match stream.try_read(&mut buf) {
        Ok(0) => return,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && unread => {}
        Err(_) => return,
    }
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Answers the one request of a connection over `max_connections` with `503`.
async fn refuse(stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let io = TokioIo::new(WriteStall::new(stream, SPARE_HEADER_TIMEOUT));
    let service =
        hyper::service::service_fn(|_: Request<Incoming>| async { Ok::<_, std::convert::Infallible>(overloaded()) });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(SPARE_HEADER_TIMEOUT).keep_alive(false);
    if let Err(e) = builder.serve_connection(io, service).await {
        tracing::debug!(error = %e, "refused connection closed");
    }
}

fn overloaded() -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the server has as many connections as it takes (`max_connections`); retry after a second",
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A connection's socket whose writes fail once the client has taken no byte for
/// `limit`: an answer nobody reads must not hold a connection (and its slot) forever.
struct WriteStall<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// Passes a write's outcome on; a write pending for `limit` becomes an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, outcome: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading the answer")));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_usable_and_bad_values_are_named() {
        assert!(ServerLimits::default().problems().is_empty());
        let bad =
            ServerLimits { header_timeout_ms: 0, max_connections: 0, body_timeout_ms: 60_000, ..Default::default() };
        let problems: Vec<String> = bad.problems().into_iter().map(|(_, p)| p).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("`header_timeout_ms` must be at least 1"), "{problems:?}");
        assert!(problems[1].starts_with("`max_connections` must be at least 1"), "{problems:?}");
        assert!(problems[2].starts_with("`body_timeout_ms` (60000) must be less than `request_timeout_ms` (60000)"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        // A 64 KiB pipe: the client end never reads, so writes stall once it is full.
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut server = WriteStall::new(server, Duration::from_secs(5));
        let chunk = vec![0u8; 16 * 1024];
        let started = tokio::time::Instant::now();
        let err = loop {
            match tokio::io::AsyncWriteExt::write(&mut server, &chunk).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "{waited:?}");
        drop(client);
    }
}
