//! The file sink: NDJSON appended to a file, one point per line in the same shape as
//! `pythond check --format json`. Meant for local inspection and tests, not durability:
//! durable delivery is the job of the buffered network sinks.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::config::OutputFormat;
use crate::point::Point;

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
        super::encode(OutputFormat::Json, points, &mut self.buf);
        self.file.write_all(&self.buf).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }
}
