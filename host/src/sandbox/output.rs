//! [`TailPipe`]: bounded capture of a plug-in's stdout or stderr. Keeps the
//! last `capacity` bytes and never fails the guest's write, so a chatty
//! plug-in cannot fill host memory and a panic message at the end survives.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The most one write takes: what the WASI streams answer `check-write` with,
/// and the most one `tracing.write-output` call may carry.
pub(super) const WRITE_LIMIT: usize = 64 << 10;

/// A bounded in-memory output stream; clones share the buffer.
#[derive(Clone)]
pub struct TailPipe {
    capacity: usize,
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl TailPipe {
    /// A pipe keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> TailPipe {
        TailPipe {
            capacity,
            buffer: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// What was kept, as lossy UTF-8.
    pub fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Keeps `bytes`, dropping the oldest kept bytes past the capacity.
    pub(super) fn push(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if bytes.len() >= self.capacity {
            buffer.clear();
            buffer.extend_from_slice(&bytes[bytes.len() - self.capacity..]);
            return;
        }
        let overflow = (buffer.len() + bytes.len()).saturating_sub(self.capacity);
        buffer.drain(..overflow);
        buffer.extend_from_slice(bytes);
    }
}

impl IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for TailPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always writable: excess is dropped from the front, not refused.
        Ok(WRITE_LIMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for TailPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the last `capacity` bytes are kept, whatever the write sizes.
    #[test]
    fn keeps_the_tail() {
        let pipe = TailPipe::new(8);
        pipe.push(b"hello ");
        pipe.push(b"world");
        assert_eq!(pipe.text(), "lo world");
        pipe.push(b"0123456789abc");
        assert_eq!(pipe.text(), "56789abc");
    }
}
