//! The queue in front of a local sink (stdout, file): batches wait here while the
//! sink writes, bounded by count and by an estimate of the memory they hold, so a slow
//! disk or a stalled stdout makes senders wait (backpressure) instead of growing the
//! agent's memory (docs/CONFIG.md, "Local sinks' queue").
//!
//! Each batch takes permits worth its estimated size from a semaphore before it is
//! queued and gives them back once the sink has written it. A batch larger than the
//! whole budget takes the whole budget, so it still goes through, alone.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::Batch;
use crate::point::{FieldValue, Point};

/// Most batches waiting for one local sink.
pub const QUEUE_BATCHES: usize = 1024;
/// Most estimated bytes of points waiting for one local sink.
pub const QUEUE_BYTES: usize = 64 << 20;

/// The sending side; cloned freely.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

/// The sink's side.
pub struct Receiver {
    rx: mpsc::Receiver<Queued>,
}

/// A batch and the share of the byte budget it holds until written.
pub struct Queued {
    pub batch: Batch,
    _permit: OwnedSemaphorePermit,
}

/// The sink's task has ended.
#[derive(Debug)]
pub struct Closed;

/// A queue of at most `batches` batches and about `bytes` bytes of points.
pub fn channel(batches: usize, bytes: usize) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(batches);
    let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
    let sender = Sender {
        tx,
        budget: Arc::new(Semaphore::new(bytes)),
        max_bytes: bytes,
    };
    (sender, Receiver { rx })
}

impl Sender {
    /// Queues `batch`, waiting while the queue is full by count or by bytes.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let cost = batch_bytes(&batch).clamp(1, self.max_bytes);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| Closed)?;
        self.tx
            .send(Queued {
                batch,
                _permit: permit,
            })
            .await
            .map_err(|_| Closed)
    }
}

impl Receiver {
    pub async fn recv(&mut self) -> Option<Queued> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Queued> {
        self.rx.try_recv().ok()
    }
}

/// About how much memory `batch`'s points hold: their strings plus a fixed share
/// per point, tag and field for the containers.
pub fn batch_bytes(batch: &[Point]) -> usize {
    batch.iter().map(point_bytes).sum()
}

fn point_bytes(point: &Point) -> usize {
    const POINT: usize = 96;
    const ENTRY: usize = 64;
    let tags: usize = point
        .tags
        .iter()
        .map(|(k, v)| ENTRY + k.len() + v.len())
        .sum();
    let fields: usize = point
        .fields
        .iter()
        .map(|(k, v)| {
            ENTRY
                + k.len()
                + match v {
                    FieldValue::Str(s) => s.len(),
                    _ => 0,
                }
        })
        .sum();
    POINT + point.measurement.len() + tags + fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::collections::BTreeMap;

    fn batch(points: usize) -> Batch {
        let point = Point {
            category: crate::point::Category::Metric,
            measurement: "m".repeat(100),
            tags: BTreeMap::new(),
            fields: BTreeMap::from([("f".to_string(), FieldValue::Str("x".repeat(800)))]),
            time_ns: 0,
        };
        Arc::new(vec![point; points])
    }

    #[tokio::test]
    async fn senders_wait_once_the_bytes_are_used_and_go_on_when_written() {
        let one = batch_bytes(&batch(10));
        let (tx, mut rx) = channel(1024, one * 3);
        for _ in 0..3 {
            tx.send(batch(10)).await.expect("send");
        }
        // Far below the count bound, but the bytes are used: the fourth waits.
        let mut fourth = Box::pin(tx.send(batch(10)));
        assert!((&mut fourth).now_or_never().is_none());
        let written = rx.recv().await.expect("a batch");
        assert!(
            (&mut fourth).now_or_never().is_none(),
            "budget back too early"
        );
        drop(written);
        assert!(
            fourth.now_or_never().is_some(),
            "still waiting after a write"
        );
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_budget_goes_through_alone() {
        let (tx, mut rx) = channel(1024, 1000);
        tx.send(batch(50)).await.expect("send");
        let mut next = Box::pin(tx.send(batch(1)));
        assert!((&mut next).now_or_never().is_none());
        drop(rx.recv().await);
        assert!(next.now_or_never().is_some());
    }
}
