//! The server's limits over real sockets: a client slow with its headers is closed, a
//! slow body is `408`, connections over the cap get `503` with `Retry-After`, an answer
//! given before the body was read reaches the client, and a stalled client cannot hold a
//! graceful shutdown open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Daemon, INTEGRATION, Process, SUPERVISOR};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(d: &Daemon) -> SocketAddr {
    d.client.base.trim_start_matches("http://").parse().unwrap()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (or `limit` passes: a failure).
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open; read so far: {}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `want` has arrived.
async fn read_until(s: &mut TcpStream, want: &str, limit: Duration) -> String {
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no `{want}` in time; got: {}", String::from_utf8_lossy(&out)))
            .unwrap();
        assert!(n > 0, "closed before `{want}`: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The part of a raw answer after the head.
fn body(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_client_stalling_in_its_headers_is_closed_after_the_header_timeout() {
    let d = Daemon::start_with("[server_limits]\nheader_timeout_ms = 300\n").await;
    let mut s = connect(addr(&d)).await;
    s.write_all(b"GET /v1/conversations HTTP/1.1\r\nHost: sb\r\nAuthor").await.unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert_eq!(answer, "", "nothing to answer: the request never arrived");
    assert!(waited >= Duration::from_millis(250), "closed after {waited:?}, before the timeout");

    // An idle keep-alive connection is closed the same way; the server still serves.
    let mut s = connect(addr(&d)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: sb\r\n\r\n").await.unwrap();
    let first = read_until(&mut s, "{\"status\":\"ok\"}", Duration::from_secs(5)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_eq!(read_to_close(&mut s, Duration::from_secs(5)).await, "");
    d.client.get("/v1/conversations", SUPERVISOR).await.expect(200);
    d.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let d = Daemon::start_with("[server_limits]\nbody_timeout_ms = 300\n").await;
    d.client.seed_directory().await;
    let mut s = connect(addr(&d)).await;
    let head = format!(
        "POST /v1/conversations HTTP/1.1\r\nHost: sb\r\nAuthorization: Bearer {INTEGRATION}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` means the handler is reading the body; then a part of it, and nothing.
    read_until(&mut s, "HTTP/1.1 100 Continue\r\n\r\n", Duration::from_secs(5)).await;
    s.write_all(b"{\"record\": {\"entity\": \"case\",").await.unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "answered before the timeout: {answer}");
    let answer = answer.split_once("HTTP/1.1 100 Continue\r\n\r\n").map_or(answer.as_str(), |(_, a)| a);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert_eq!(header(answer, "content-type"), Some("application/problem+json"), "{answer}");
    assert_eq!(header(answer, "connection"), Some("close"), "{answer}");
    let problem = body(answer);
    assert_eq!(problem["status"], 408);
    assert_eq!(problem["code"], "request_timeout");
    assert!(problem["detail"].as_str().unwrap().contains("300 ms"), "{problem}");
    // Nothing was created, and the server serves.
    let list = d.client.get("/v1/conversations", SUPERVISOR).await.expect(200);
    assert_eq!(list.json["items"].as_array().unwrap().len(), 0, "{}", list.text);
    d.stop().await;
}

#[tokio::test]
async fn an_answer_given_before_the_body_was_read_reaches_a_client_still_sending_it() {
    let d = Daemon::start().await;
    let mut s = connect(addr(&d)).await;
    // No token: `401` from the head alone. The client sends the start of a 2 MiB body,
    // gives the server time to answer and finish with the connection, then sends the rest
    // (as a client streaming a large body does) and only then reads.
    let total = 2 << 20;
    let head = format!(
        "POST /v1/conversations HTTP/1.1\r\nHost: sb\r\nContent-Type: application/json\r\n\
         Content-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 << 10];
    s.write_all(&chunk).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sent = chunk.len();
    while sent < total {
        // A server that closed with bytes unread has reset the connection by now.
        s.write_all(&chunk).await.expect("the server reset the connection while the client sent its body");
        sent += chunk.len();
    }
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{answer}");
    assert_eq!(body(&answer)["code"], "unauthorized");
    d.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_get_503_with_retry_after() {
    let d = Daemon::start_with("[server_limits]\nmax_connections = 2\n").await;
    let a = addr(&d);
    // Two connections hold both slots (idle, within the header timeout).
    let mut held = vec![connect(a).await, connect(a).await];
    for s in &mut held {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: sb\r\n\r\n").await.unwrap();
        read_until(s, "{\"status\":\"ok\"}", Duration::from_secs(5)).await;
    }
    let mut third = connect(a).await;
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: sb\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut third, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert_eq!(header(&answer, "retry-after"), Some("1"), "{answer}");
    assert_eq!(header(&answer, "content-type"), Some("application/problem+json"), "{answer}");
    assert_eq!(body(&answer)["code"], "overloaded");
    // A freed slot serves again.
    drop(held);
    common::eventually(Duration::from_secs(5), || {
        let c = d.client.clone();
        async move {
            let mut s = connect(c.base.trim_start_matches("http://").parse().unwrap()).await;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: sb\r\nConnection: close\r\n\r\n").await.unwrap();
            read_to_close(&mut s, Duration::from_secs(5)).await.starts_with("HTTP/1.1 200")
        }
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn a_stalled_client_cannot_hold_shutdown_open() {
    // Every timeout of a client is a minute; only the shutdown deadline can end this.
    let dir = common::workdir(
        "[server_limits]\nheader_timeout_ms = 60000\nbody_timeout_ms = 60000\nrequest_timeout_ms = 120000\n\
         shutdown_timeout_ms = 500\n",
    );
    let mut p = Process::spawn(dir.path());
    let a: SocketAddr = p.client.base.trim_start_matches("http://").parse().unwrap();
    let mut s = connect(a).await;
    let head = format!(
        "PUT /v1/queues/billing HTTP/1.1\r\nHost: sb\r\nAuthorization: Bearer {INTEGRATION}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut s, "HTTP/1.1 100 Continue\r\n\r\n", Duration::from_secs(10)).await;
    s.write_all(b"{\"name\": ").await.unwrap();

    let started = Instant::now();
    p.signal("-TERM");
    let status = p.wait(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= Duration::from_millis(400), "exited after {took:?}: did it wait for the request at all?");
    assert!(took < Duration::from_secs(5), "exited after {took:?}; the deadline is 500 ms");
    // The stalled client's connection was closed.
    read_to_close(&mut s, Duration::from_secs(5)).await;
}
