//! Bounded line reading from a worker's pipes and channel.
//!
//! `tokio_util`'s `LinesCodec` ends the stream on the first non-UTF-8 line, and an
//! unbounded `read_until` lets one newline-free megabyte blob grow memory without
//! limit. A worker's output is user-controlled, so this reader keeps going after
//! anything: lines longer than the limit are reported as [`Line::TooLong`] (their
//! bytes discarded up to the next newline) and bytes are handed over raw.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One item read by [`LineReader::next_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its trailing `\n` (or `\r\n`).
    Complete(Vec<u8>),
    /// A line that exceeded the limit; the value is how many bytes it had.
    TooLong(usize),
}

/// Reads newline-terminated lines of at most `max` bytes, from an async reader
/// ([`next_line`](LineReader::next_line)) or a blocking one
/// ([`next_line_blocking`](LineReader::next_line_blocking)); both share one splitter.
pub struct LineReader<R> {
    inner: R,
    splitter: Splitter,
}

impl<R> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            splitter: Splitter {
                max,
                buf: Vec::new(),
                discarding: None,
            },
        }
    }
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// The next line, or `None` at end of stream. A final line without a newline is
    /// returned as complete.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.inner.fill_buf().await?;
            let (consumed, line) = self.splitter.split(available);
            self.inner.consume(consumed);
            if let Some(line) = line {
                return Ok(line);
            }
        }
    }
}

impl<R: std::io::BufRead> LineReader<R> {
    /// [`next_line`](LineReader::next_line) for a blocking reader.
    pub fn next_line_blocking(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let (consumed, line) = self.splitter.split(available);
            self.inner.consume(consumed);
            if let Some(line) = line {
                return Ok(line);
            }
        }
    }
}

impl<T: std::io::Read> LineReader<std::io::BufReader<T>> {
    /// Whether a complete line is already buffered, so that
    /// [`next_line_blocking`](LineReader::next_line_blocking) returns without reading
    /// (and without waiting).
    pub fn line_ready(&self) -> bool {
        memchr(self.inner.buffer()).is_some()
    }
}

/// The part of line reading that does not care where bytes come from.
struct Splitter {
    max: usize,
    /// The current line so far.
    buf: Vec<u8>,
    /// Length of the current line once it went over `max` (its bytes are dropped).
    discarding: Option<usize>,
}

impl Splitter {
    /// Takes bytes from `available` (empty at end of stream). Returns how many were
    /// used and, when a line ended, `Some(line)` (`Some(None)` at end of stream).
    fn split(&mut self, available: &[u8]) -> (usize, Option<Option<Line>>) {
        if available.is_empty() {
            let last = match self.discarding.take() {
                Some(n) => Some(Line::TooLong(n)),
                None if self.buf.is_empty() => None,
                None => Some(Line::Complete(trim_cr(std::mem::take(&mut self.buf)))),
            };
            return (0, Some(last));
        }
        let (chunk, found_newline) = match memchr(available) {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        match self.discarding.as_mut() {
            Some(n) => *n += chunk.len(),
            None if self.buf.len() + chunk.len() > self.max => {
                self.discarding = Some(self.buf.len() + chunk.len());
                self.buf.clear();
            }
            None => self.buf.extend_from_slice(chunk),
        }
        let consumed = chunk.len() + usize::from(found_newline);
        if !found_newline {
            return (consumed, None);
        }
        let line = match self.discarding.take() {
            Some(n) => Line::TooLong(n),
            None => Line::Complete(trim_cr(std::mem::take(&mut self.buf))),
        };
        (consumed, Some(Some(line)))
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn trim_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer forces lines to straddle reads.
        let mut reader = LineReader::new(BufReader::with_capacity(3, input), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.expect("in-memory read") {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_across_small_reads() {
        let lines = read_all(b"hello\r\nworld\nlast", 100).await;
        assert_eq!(
            lines,
            vec![
                Line::Complete(b"hello".to_vec()),
                Line::Complete(b"world".to_vec()),
                Line::Complete(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn overlong_line_is_reported_and_reading_resumes() {
        let lines = read_all(b"short\n0123456789abc\nok\xff\n", 8).await;
        assert_eq!(
            lines,
            vec![
                Line::Complete(b"short".to_vec()),
                Line::TooLong(13),
                Line::Complete(b"ok\xff".to_vec()),
            ]
        );
    }

    #[test]
    fn the_blocking_reader_splits_like_the_async_one() {
        let input: &[u8] = b"short\n0123456789abc\nok\r\nlast";
        let mut reader = LineReader::new(std::io::BufReader::with_capacity(3, input), 8);
        let mut out = Vec::new();
        assert!(!reader.line_ready());
        while let Some(line) = reader.next_line_blocking().expect("in-memory read") {
            out.push(line);
        }
        assert_eq!(
            out,
            vec![
                Line::Complete(b"short".to_vec()),
                Line::TooLong(13),
                Line::Complete(b"ok".to_vec()),
                Line::Complete(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn overlong_final_line_without_newline() {
        assert_eq!(read_all(b"0123456789", 4).await, vec![Line::TooLong(10)]);
    }
}
