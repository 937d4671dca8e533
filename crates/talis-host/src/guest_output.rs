//! A component's stdout and stderr as log events, one per line, for `--log-format json`: a
//! log pipeline reading JSON lines would choke on the guest's raw text. (With the text format
//! they go to the host's stdout and stderr unchanged, as with `spin up`.)

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A line longer than this is logged in pieces rather than buffered without bound.
const MAX_LINE: usize = 16 << 10;

#[derive(Clone)]
pub struct GuestOutput {
    component: Arc<str>,
    stream: &'static str,
}

impl GuestOutput {
    pub fn stdout(component: &str) -> Self {
        Self {
            component: component.into(),
            stream: "stdout",
        }
    }

    pub fn stderr(component: &str) -> Self {
        Self {
            component: component.into(),
            stream: "stderr",
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(
            target: "guest",
            component = %self.component,
            stream = self.stream,
            "{}",
            line.trim_end_matches('\r')
        );
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            out: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    out: GuestOutput,
    buf: Vec<u8>,
}

impl LineWriter {
    fn flush_partial(&mut self) {
        if !self.buf.is_empty() {
            self.out.emit(&self.buf);
            self.buf.clear();
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.buf.extend_from_slice(data);
        while let Some(end) = this.buf.iter().position(|&b| b == b'\n') {
            this.out.emit(&this.buf[..end]);
            this.buf.drain(..=end);
        }
        if this.buf.len() > MAX_LINE {
            this.flush_partial();
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().flush_partial();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    /// Output without a final newline is still logged when the instance goes away.
    fn drop(&mut self) {
        self.flush_partial();
    }
}
