//! The file sink: NDJSON appended to a file, one point per line in the same shape as
//! `pythond check --format json`. Meant for local inspection and tests, not durability:
//! durable delivery is the job of the buffered network sinks.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::read_context::ReadContext;
use super::text;
use crate::config::tree::{self, Section};
use crate::config::values;
use crate::config::OutputFormat;
use crate::point::Point;

/// The `type` value.
pub const NAME: &str = "file";

/// Keys of `type = "file"`: `path`, required, relative to the configuration file.
pub const KEYS: &[&[&str]] = &[&["path"]];

/// Reads a `file` sink's `path` (absolute, and not written by another file sink).
pub(crate) fn read(section: &mut Section<'_, '_>, context: &ReadContext<'_>) -> Option<PathBuf> {
    let (path, span) = section.require_located("path", |node| {
        tree::non_empty_string(node).map(|p| values::resolve(context.base, &p))
    })?;
    let line = section.doc().line(&span);
    let mut seen = context.file_paths.borrow_mut();
    match seen.iter().find(|(p, _)| *p == path) {
        Some((_, first)) => section.invalid(
            &span,
            "path",
            &format!(
                "{} is already written by the file sink at line {first}",
                path.display()
            ),
        ),
        None => seen.push((path.clone(), line)),
    }
    Some(path)
}

pub struct FileSink {
    path: PathBuf,
    file: tokio::fs::File,
    buf: Vec<u8>,
}

impl FileSink {
    /// Opens `path` for appending, creating it and its parent directories.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: tokio::fs::File::from_std(file),
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn write(&mut self, points: &[&Point]) -> std::io::Result<()> {
        self.buf.clear();
        text::encode(OutputFormat::Json, points, &mut self.buf);
        self.file.write_all(&self.buf).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }
}
