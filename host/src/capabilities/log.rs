//! `log`: plugin lines into `tracing`, tagged with plugin id and version, capped per call.
//! WASI stdout and stderr land in the same capped buffer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::Serialize;
use tokio::io::AsyncWrite;

use crate::bindings::imports::payloom::plugin::log;
use crate::state::CallState;

pub use log::Level;

/// One line a plugin logged.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Severity.
    pub level: &'static str,
    /// The text (truncated at the cap).
    pub message: String,
}

/// A call's log, capped in bytes; what exceeds the cap is counted, not kept.
#[derive(Debug)]
pub struct LogBuffer {
    bytes_max: usize,
    bytes_used: usize,
    /// Kept lines.
    pub lines: Vec<LogLine>,
    /// Bytes dropped at the cap.
    pub bytes_dropped: usize,
}

impl LogBuffer {
    pub(crate) fn new(bytes_max: usize) -> Self {
        Self {
            bytes_max,
            bytes_used: 0,
            lines: Vec::new(),
            bytes_dropped: 0,
        }
    }

    /// Appends as much of `message` as fits; returns the kept part, if any.
    fn push(&mut self, level: &'static str, message: &str) -> Option<&str> {
        let room = self.bytes_max - self.bytes_used;
        let mut keep = message.len().min(room);
        while !message.is_char_boundary(keep) {
            keep -= 1;
        }
        self.bytes_dropped += message.len() - keep;
        if keep == 0 {
            return None;
        }
        self.bytes_used += keep;
        self.lines.push(LogLine {
            level,
            message: message[..keep].to_owned(),
        });
        self.lines.last().map(|l| l.message.as_str())
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Writes one line to the buffer and, if kept, to `tracing`.
pub(crate) fn emit(
    buffer: &Mutex<LogBuffer>,
    plugin: &str,
    version: &str,
    level: Level,
    message: &str,
) {
    let mut buffer = buffer.lock().expect("log lock");
    let Some(kept) = buffer.push(level_name(level), message) else {
        return;
    };
    match level {
        Level::Trace => tracing::trace!(plugin, version, "{kept}"),
        Level::Debug => tracing::debug!(plugin, version, "{kept}"),
        Level::Info => tracing::info!(plugin, version, "{kept}"),
        Level::Warn => tracing::warn!(plugin, version, "{kept}"),
        Level::Error => tracing::error!(plugin, version, "{kept}"),
    }
}

impl log::Host for CallState {
    fn write(&mut self, level: Level, message: String) {
        let manifest = &self.plugin.manifest;
        emit(&self.log, &manifest.id, &manifest.version, level, &message);
    }
}

/// WASI stdout/stderr: bytes go into the call's log buffer at one level.
pub(crate) struct LogStream {
    buffer: Arc<Mutex<LogBuffer>>,
    level: Level,
}

impl LogStream {
    pub(crate) fn new(buffer: Arc<Mutex<LogBuffer>>, level: Level) -> Self {
        Self { buffer, level }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LogStream {
            buffer: self.buffer.clone(),
            level: self.level,
        })
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let text = String::from_utf8_lossy(bytes);
        let mut buffer = self.buffer.lock().expect("log lock");
        // Past the cap the bytes are accepted and dropped: a chatty guest must not fail.
        buffer.push(level_name(self.level), text.trim_end_matches('\n'));
        Poll::Ready(Ok(bytes.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_keeps_up_to_the_cap_on_char_boundaries() {
        let mut buffer = LogBuffer::new(5);
        assert_eq!(buffer.push("info", "abc"), Some("abc"));
        assert_eq!(buffer.push("info", "déf"), Some("d"));
        assert_eq!(buffer.push("info", "more"), Some("m"));
        assert_eq!(buffer.push("info", "x"), None);
        assert_eq!(buffer.bytes_dropped, 3 + 3 + 1);
    }
}
