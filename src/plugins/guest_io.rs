//! Guest stdout and stderr: each line goes to the log under the plugin's name, at most
//! [`LINES_PER_SECOND`] lines a second per plugin; the rest are counted and reported.
//! A host made with a [`GuestSink`] also hands each line to it (`switchboard plugin test`
//! shows the guest's output beside its verdicts).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines a plugin may log per second; more are dropped and counted.
pub const LINES_PER_SECOND: u32 = 20;

#[derive(Debug)]
struct Budget {
    window: Instant,
    used: u32,
    dropped: u64,
}

/// Where a host also sends its guests' lines: called with the plugin's name, the stream
/// (`stdout` or `stderr`) and the line, within the same rate limit as the log.
#[derive(Clone)]
pub struct GuestSink(Arc<SinkFn>);

/// What a [`GuestSink`] calls: (plugin, stream, line).
type SinkFn = dyn Fn(&str, &'static str, &str) + Send + Sync;

impl GuestSink {
    pub fn new(f: impl Fn(&str, &'static str, &str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for GuestSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestSink")
    }
}

/// One plugin's output, shared by its instances.
#[derive(Clone, Debug)]
pub struct GuestLog {
    plugin: Arc<str>,
    budget: Arc<Mutex<Budget>>,
    sink: Option<GuestSink>,
}

impl GuestLog {
    pub fn new(plugin: &str, sink: Option<GuestSink>) -> Self {
        Self {
            plugin: plugin.into(),
            budget: Arc::new(Mutex::new(Budget { window: Instant::now(), used: 0, dropped: 0 })),
            sink,
        }
    }

    pub fn stream(&self, name: &'static str) -> GuestStream {
        GuestStream { log: self.clone(), name, partial: Vec::new() }
    }

    fn line(&self, stream: &'static str, line: &[u8]) {
        let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        if b.window.elapsed() >= Duration::from_secs(1) {
            if b.dropped > 0 {
                tracing::warn!(plugin = %self.plugin, dropped = b.dropped, "plugin output was rate-limited");
            }
            *b = Budget { window: Instant::now(), used: 0, dropped: 0 };
        }
        if b.used >= LINES_PER_SECOND {
            b.dropped += 1;
            return;
        }
        b.used += 1;
        drop(b);
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if let Some(sink) = &self.sink {
            (sink.0)(&self.plugin, stream, text);
        }
        tracing::info!(plugin = %self.plugin, stream, "{}", text);
    }
}

/// A guest's stdout or stderr, split into lines.
#[derive(Debug)]
pub struct GuestStream {
    log: GuestLog,
    name: &'static str,
    partial: Vec<u8>,
}

impl GuestStream {
    fn take(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if chunk.ends_with(b"\n") {
                if self.partial.is_empty() {
                    self.log.line(self.name, chunk);
                } else {
                    self.partial.extend_from_slice(chunk);
                    let line = std::mem::take(&mut self.partial);
                    self.log.line(self.name, &line);
                }
            } else if self.partial.len() < 4096 {
                self.partial.extend_from_slice(chunk);
            }
        }
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp2 streams are used; this one discards.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestStream { log: self.log.clone(), name: self.name, partial: Vec::new() })
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}
