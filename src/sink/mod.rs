//! Where accepted points go: one task per configured sink, fed by a bounded queue.
//!
//! The ingest path hands every accepted batch to [`Sinks::send`], which waits for room
//! in each sink's queue. That wait is the backpressure: a slow sink slows the workers'
//! readers (and so the workers) instead of growing memory or dropping points.

mod file;
mod stdout;

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{OutputFormat, SinkConfig, SinkKind};
use crate::point::{Category, Point};

/// Points accepted together, shared by every sink.
pub type Batch = Arc<Vec<Point>>;

/// How many batches may wait for one sink before senders wait.
const QUEUE_BATCHES: usize = 1024;

/// A sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("file sink {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The running sinks.
pub struct Sinks {
    // Behind locks so that shutdown can close the queues while senders still hold a
    // shared reference (a worker's channel reader may outlive its session briefly).
    outlets: RwLock<Vec<mpsc::Sender<Batch>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Sinks {
    /// Opens every configured sink and starts its task.
    pub fn start(configs: &[SinkConfig]) -> Result<Self, SinkError> {
        let mut outlets = Vec::new();
        let mut tasks = Vec::new();
        for config in configs {
            let writer = match &config.kind {
                SinkKind::Stdout { format } => Writer::Stdout(stdout::StdoutSink::new(*format)),
                SinkKind::File { path } => Writer::File(file::FileSink::open(path).map_err(
                    |source| SinkError::File {
                        path: path.clone(),
                        source,
                    },
                )?),
            };
            let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
            tasks.push(tokio::spawn(drive(writer, config.categories.clone(), rx)));
            outlets.push(tx);
        }
        Ok(Self {
            outlets: RwLock::new(outlets),
            tasks: Mutex::new(tasks),
        })
    }

    /// Hands a batch to every sink, waiting while a sink's queue is full.
    pub async fn send(&self, batch: Batch) {
        let outlets = self
            .outlets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for outlet in &outlets {
            // A closed queue means that sink's task ended; it logged why.
            let _ = outlet.send(batch.clone()).await;
        }
    }

    /// Closes the queues and waits until every sink has written and flushed what it had.
    /// Points sent after this are dropped (and logged by the caller's shutdown path).
    pub async fn shutdown(&self) {
        self.outlets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// One sink's way of writing points.
enum Writer {
    Stdout(stdout::StdoutSink),
    File(file::FileSink),
}

impl Writer {
    fn name(&self) -> String {
        match self {
            Writer::Stdout(_) => "stdout".to_string(),
            Writer::File(f) => format!("file {}", f.path().display()),
        }
    }

    async fn write(&mut self, points: &[&Point]) -> std::io::Result<()> {
        match self {
            Writer::Stdout(s) => s.write(points).await,
            Writer::File(f) => f.write(points).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Stdout(s) => s.flush().await,
            Writer::File(f) => f.flush().await,
        }
    }
}

/// A sink's task: write batches as they come, flush whenever the queue runs dry.
async fn drive(
    mut writer: Writer,
    categories: Option<Vec<Category>>,
    mut rx: mpsc::Receiver<Batch>,
) {
    let name = writer.name();
    let mut failing = false;
    while let Some(batch) = rx.recv().await {
        let mut pending = vec![batch];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let points: Vec<&Point> = pending
            .iter()
            .flat_map(|b| b.iter())
            .filter(|p| {
                categories
                    .as_ref()
                    .map_or(true, |c| c.contains(&p.category))
            })
            .collect();
        let result = match writer.write(&points).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if failing => {
                tracing::info!(sink = %name, "sink writes again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) => {
                tracing::error!(sink = %name, points = points.len(), %error, "sink write failed; these points are lost");
                failing = true;
            }
        }
    }
}

/// Encodes points in a sink's output format.
pub(crate) fn encode(format: OutputFormat, points: &[&Point], out: &mut Vec<u8>) {
    match format {
        OutputFormat::LineProtocol => {
            let mut text = String::new();
            for point in points {
                point.write_line_protocol(&mut text);
            }
            out.extend_from_slice(text.as_bytes());
        }
        OutputFormat::Json => {
            for point in points {
                point.write_json(out);
            }
        }
    }
}
