//! The bounded log of one sandbox: guest stdout, stderr and `wasi:logging` lines.
//!
//! A guest can print without limit; the host keeps the first `capacity` bytes and counts
//! the rest, so a chatty or hostile plugin costs a bounded amount of memory and never
//! fails because of its own logging.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

/// A shared, bounded log buffer; cloning shares the buffer.
#[derive(Debug, Clone)]
pub struct TaskLog(Arc<Mutex<Buffer>>);

/// What a sandbox logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedLog {
    /// The first bytes logged, lossily decoded as UTF-8.
    pub text: String,
    /// Bytes that did not fit and were dropped.
    pub dropped_bytes: u64,
}

impl TaskLog {
    /// An empty log keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> TaskLog {
        TaskLog(Arc::new(Mutex::new(Buffer {
            bytes: Vec::new(),
            capacity,
            dropped: 0,
        })))
    }

    /// Appends what fits of `data`.
    pub fn append(&self, data: &[u8]) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = b.capacity.saturating_sub(b.bytes.len());
        let take = room.min(data.len());
        b.bytes.extend_from_slice(&data[..take]);
        b.dropped += (data.len() - take) as u64;
    }

    /// Appends one line (a newline is added).
    pub fn line(&self, line: &str) {
        let mut s = String::with_capacity(line.len() + 1);
        s.push_str(line);
        s.push('\n');
        self.append(s.as_bytes());
    }

    /// A copy of what was captured so far.
    pub fn snapshot(&self) -> CapturedLog {
        let b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        CapturedLog {
            text: String::from_utf8_lossy(&b.bytes).into_owned(),
            dropped_bytes: b.dropped,
        }
    }
}

impl IsTerminal for TaskLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TaskLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for TaskLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        // Accept everything: dropping past the limit is the point.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_first_bytes_and_counts_the_rest() {
        let log = TaskLog::new(8);
        log.append(b"hello ");
        log.append(b"world");
        let c = log.snapshot();
        assert_eq!(c.text, "hello wo");
        assert_eq!(c.dropped_bytes, 3);
    }
}
