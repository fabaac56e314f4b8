//! The stdout sink: points on standard output (line protocol or NDJSON), logs stay on
//! stderr, so `pythond run | some-tool` works.

use tokio::io::AsyncWriteExt;

use super::read_context::ReadContext;
use super::text;
use crate::config::tree::{self, Section};
use crate::config::OutputFormat;
use crate::point::Point;

/// The `type` value.
pub const NAME: &str = "stdout";

/// Keys of `type = "stdout"`: `format`, `"lp"` (default) or `"json"`.
pub const KEYS: &[&[&str]] = &[&["format"]];

/// Reads a `stdout` sink's `format`.
pub(crate) fn read(section: &mut Section<'_, '_>, _: &ReadContext<'_>) -> Option<OutputFormat> {
    let format = section
        .get("format", |node| {
            Ok(tree::string(node)?.parse::<OutputFormat>()?)
        })
        .unwrap_or_default();
    Some(format)
}

pub struct StdoutSink {
    format: OutputFormat,
    out: tokio::io::Stdout,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            out: tokio::io::stdout(),
            buf: Vec::new(),
        }
    }

    pub async fn write(&mut self, points: &[&Point]) -> std::io::Result<()> {
        self.buf.clear();
        text::encode(self.format, points, &mut self.buf);
        self.out.write_all(&self.buf).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().await
    }
}
