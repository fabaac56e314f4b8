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

/// Reads newline-terminated lines of at most `max` bytes.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at end of stream. A final line without a newline is
    /// returned as complete.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut discarding: Option<usize> = None;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(match discarding {
                    Some(n) => Some(Line::TooLong(n)),
                    None if self.buf.is_empty() => None,
                    None => Some(Line::Complete(trim_cr(std::mem::take(&mut self.buf)))),
                });
            }
            let (chunk, found_newline) = match memchr(available) {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            let consumed = chunk.len() + usize::from(found_newline);
            match discarding.as_mut() {
                Some(n) => *n += chunk.len(),
                None if self.buf.len() + chunk.len() > self.max => {
                    discarding = Some(self.buf.len() + chunk.len());
                    self.buf.clear();
                }
                None => self.buf.extend_from_slice(chunk),
            }
            self.inner.consume(consumed);
            if found_newline {
                return Ok(Some(match discarding {
                    Some(n) => Line::TooLong(n),
                    None => Line::Complete(trim_cr(std::mem::take(&mut self.buf))),
                }));
            }
        }
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

    #[tokio::test]
    async fn overlong_final_line_without_newline() {
        assert_eq!(read_all(b"0123456789", 4).await, vec![Line::TooLong(10)]);
    }
}
