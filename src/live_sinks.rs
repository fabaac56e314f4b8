//! The agent's sinks as a set that a reload of `[[sinks]]` can change while points
//! flow (docs/RELOAD.md).
//!
//! Each configured sink runs as its own [`Sinks`] (its queue or disk buffer, its
//! delivery task), so [`LiveSinks::reconfigure`] can keep the ones whose settings did
//! not change — same buffer, same connection — and stop, start or restart only the
//! others. A changed network sink is stopped the way shutdown stops it (what it
//! accepted is already in its disk buffer) and started again on the same buffer, so
//! points waiting there are delivered by the new settings, not lost.
//!
//! Sends hold a read lock for as long as the sinks take to accept the batch; a
//! reconfiguration takes the write lock, so it waits for sends in flight and no
//! point is handed to a sink that is being stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::RwLock;

use crate::config::SinkConfig;
use crate::point::PointBatch;
use crate::sink::{Batch, SinkError, Sinks};
use crate::stats::Stats;

/// How long a restarted network sink waits for its old self to let go of the disk
/// buffer's lock (the old delivery task ends within its drain grace).
const BUFFER_RELEASE_WAIT: Duration = Duration::from_secs(15);

/// One configured sink and what runs for it.
struct Running {
    /// `None` for a fixed set that is never reconfigured (`pythond check`).
    config: Option<SinkConfig>,
    sinks: Sinks,
}

/// What [`LiveSinks::reconfigure`] did, named by [`describe`], for the log and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SinksApplied {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: usize,
}

/// Every running sink.
pub struct LiveSinks {
    running: RwLock<Vec<Running>>,
    /// Where network sinks keep their buffers; `None` for a fixed set.
    data_dir: Option<PathBuf>,
}

impl From<Sinks> for LiveSinks {
    /// A fixed set (no data directory): it cannot be reconfigured.
    fn from(sinks: Sinks) -> Self {
        LiveSinks {
            running: RwLock::new(vec![Running {
                config: None,
                sinks,
            }]),
            data_dir: None,
        }
    }
}

/// A sink as the log names it: its type and its name or path.
pub fn describe(config: &SinkConfig) -> String {
    use crate::config::SinkKind;
    match (&config.kind, config.kind.network()) {
        (_, Some(net)) => format!("{} {}", config.kind.type_name(), net.name),
        (SinkKind::File { path }, None) => format!("file {}", path.display()),
        (kind, None) => kind.type_name().to_string(),
    }
}

impl LiveSinks {
    /// Opens every configured sink, network sinks with their disk buffer under
    /// `data_dir/buffers/<name>/`.
    pub fn open(configs: &[SinkConfig], data_dir: &Path, stats: &Stats) -> Result<Self, SinkError> {
        let mut running = Vec::new();
        for config in configs {
            running.push(Running {
                sinks: Sinks::open(std::slice::from_ref(config), data_dir, stats)?,
                config: Some(config.clone()),
            });
        }
        Ok(LiveSinks {
            running: RwLock::new(running),
            data_dir: Some(data_dir.to_path_buf()),
        })
    }

    /// Hands a batch to every sink (see [`Sinks::send`]); returns once every one has
    /// taken it.
    pub async fn send(&self, batch: Batch) {
        let running = self.running.read().await;
        let sends = running.iter().map(|r| r.sinks.send(batch.clone()));
        futures_util::future::join_all(sends).await;
    }

    /// Hands points still borrowed from where they were decoded to every sink (see
    /// [`Sinks::send_points`]); owned copies are made, once, only if a sink keeps
    /// points in memory, and returned so the caller can tell when that sink is done.
    pub async fn send_points(&self, points: &PointBatch<'_>) -> Option<Batch> {
        let running = self.running.read().await;
        let owned = running
            .iter()
            .any(|r| r.sinks.keeps_points())
            .then(|| Batch::new(points.to_points()));
        let sends = running
            .iter()
            .map(|r| r.sinks.send_points(points, owned.as_ref()));
        futures_util::future::join_all(sends).await;
        owned
    }

    /// Brings the running sinks to `configs`: a sink whose settings are unchanged is
    /// kept as it runs; the others are stopped (flushed, buffer closed) and the new
    /// or changed ones started. A sink that cannot start is returned as an error
    /// after the others were applied (it does not run until the next reload).
    pub async fn reconfigure(
        &self,
        configs: &[SinkConfig],
        stats: &Stats,
    ) -> (SinksApplied, Vec<SinkError>) {
        let mut applied = SinksApplied::default();
        let mut errors = Vec::new();
        let Some(data_dir) = &self.data_dir else {
            return (applied, errors);
        };
        let mut running = self.running.write().await;
        let mut kept: Vec<Option<Running>> = configs.iter().map(|_| None).collect();
        let mut stopping = Vec::new();
        for sink in running.drain(..) {
            let slot = configs
                .iter()
                .enumerate()
                .position(|(i, c)| kept[i].is_none() && sink.config.as_ref() == Some(c));
            match slot {
                Some(i) => {
                    applied.unchanged += 1;
                    kept[i] = Some(sink);
                }
                None => stopping.push(sink),
            }
        }
        for sink in stopping {
            let name = sink.config.as_ref().map(describe).unwrap_or_default();
            tracing::info!(sink = %name, "sink removed or changed in pythond.toml; stopping it");
            sink.sinks.shutdown().await;
            drop(sink);
            applied.stopped.push(name);
        }
        let still_wanted: Vec<&str> = configs
            .iter()
            .filter_map(|c| c.kind.network().map(|n| n.name.as_str()))
            .collect();
        for (config, slot) in configs.iter().zip(kept) {
            if let Some(sink) = slot {
                running.push(sink);
                continue;
            }
            match open_waiting(config, data_dir, stats).await {
                Ok(sinks) => {
                    tracing::info!(sink = %describe(config), "sink started after a reload of pythond.toml");
                    applied.started.push(describe(config));
                    running.push(Running {
                        config: Some(config.clone()),
                        sinks,
                    });
                }
                Err(error) => errors.push(error),
            }
        }
        stats.retain_sinks(&still_wanted);
        (applied, errors)
    }

    /// Closes every sink and waits until each has written and flushed what it had.
    pub async fn shutdown(&self) {
        let running = self.running.read().await;
        futures_util::future::join_all(running.iter().map(|r| r.sinks.shutdown())).await;
    }
}

/// Opens one sink; a network sink whose buffer is still locked by its stopping old
/// self is tried again until [`BUFFER_RELEASE_WAIT`] passes.
async fn open_waiting(
    config: &SinkConfig,
    data_dir: &Path,
    stats: &Stats,
) -> Result<Sinks, SinkError> {
    let deadline = tokio::time::Instant::now() + BUFFER_RELEASE_WAIT;
    loop {
        match Sinks::open(std::slice::from_ref(config), data_dir, stats) {
            Err(SinkError::Buffer { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}
