//! A live copy of the points the agent accepts, for `pythond tap` (docs/HTTP.md,
//! `GET /v1/tap`).
//!
//! The ingest path [`publish`](Tap::publish)es every accepted point with its input
//! and plugin; each subscriber has a filter and a bounded queue of
//! [`SUBSCRIBER_QUEUE`] points. Publishing never waits: a subscriber whose queue is
//! full misses the point and its drop counter grows (the stream tells it how many it
//! missed), so a slow or stalled `tap` can neither slow the collectors nor grow the
//! agent's memory. The sinks are not involved at all. With nobody subscribed,
//! publishing costs one atomic load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::point::{Category, Point};

/// Points that may wait for one subscriber before it starts missing them.
pub const SUBSCRIBER_QUEUE: usize = 4096;
/// Subscribers at once; more are refused (each may hold a full queue in memory).
pub const MAX_SUBSCRIBERS: usize = 16;

/// Which points a subscriber wants; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapFilter {
    pub input: Option<String>,
    pub category: Option<Category>,
}

impl TapFilter {
    fn wants_input(&self, input: &str) -> bool {
        self.input.as_deref().map_or(true, |wanted| wanted == input)
    }

    fn wants_category(&self, category: Category) -> bool {
        self.category.map_or(true, |wanted| wanted == category)
    }
}

/// One accepted point and where it came from.
#[derive(Clone, Debug)]
pub struct TapEvent {
    pub input: Arc<str>,
    pub plugin: Arc<str>,
    pub point: Point,
}

struct Subscriber {
    filter: TapFilter,
    queue: mpsc::Sender<TapEvent>,
    dropped: Arc<AtomicU64>,
}

/// Refused: [`MAX_SUBSCRIBERS`] are already tapping.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_SUBSCRIBERS} taps are already open; close one and retry")]
pub struct TooManyTaps;

/// What a subscriber reads: the points, and how many it missed.
pub struct Subscription {
    pub events: mpsc::Receiver<TapEvent>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Points missed since the last call (the queue was full).
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

/// Every open tap.
#[derive(Default)]
pub struct Tap {
    subscribers: Mutex<Vec<Subscriber>>,
    count: AtomicUsize,
    /// Points some subscriber missed, over the agent's life (for /metrics).
    dropped_total: AtomicU64,
}

impl Tap {
    /// Opens a tap; it lasts until the [`Subscription`] is dropped.
    pub fn subscribe(&self, filter: TapFilter) -> Result<Subscription, TooManyTaps> {
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.queue.is_closed());
        if subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(TooManyTaps);
        }
        let (queue, events) = mpsc::channel(SUBSCRIBER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        subscribers.push(Subscriber {
            filter,
            queue,
            dropped: dropped.clone(),
        });
        self.count.store(subscribers.len(), Ordering::Relaxed);
        Ok(Subscription { events, dropped })
    }

    /// Points taps missed because their reader was too slow, since the start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Open taps (closed ones are noticed at the next publish).
    pub fn subscribers(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Offers `points`, accepted from `plugin` of `input`, to every open tap.
    pub fn publish(&self, input: &str, plugin: &str, points: &[Point]) {
        if points.is_empty() || self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subscribers = self.lock();
        let input_name: Arc<str> = Arc::from(input);
        let plugin_name: Arc<str> = Arc::from(plugin);
        subscribers.retain(|subscriber| {
            if !subscriber.filter.wants_input(input) {
                return !subscriber.queue.is_closed();
            }
            for point in points {
                if !subscriber.filter.wants_category(point.category) {
                    continue;
                }
                let event = TapEvent {
                    input: input_name.clone(),
                    plugin: plugin_name.clone(),
                    point: point.clone(),
                };
                match subscriber.queue.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        subscriber.dropped.fetch_add(1, Ordering::Relaxed);
                        self.dropped_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        self.count.store(subscribers.len(), Ordering::Relaxed);
    }

    /// Ends every open tap (their streams finish): the agent is stopping.
    pub fn close(&self) {
        self.lock().clear();
        self.count.store(0, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn point(category: Category, measurement: &str) -> Point {
        Point {
            category,
            measurement: measurement.to_string(),
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
            time_ns: 1,
        }
    }

    #[test]
    fn filters_by_input_and_category() {
        let tap = Tap::default();
        let mut sub = tap
            .subscribe(TapFilter {
                input: Some("a".into()),
                category: Some(Category::Logging),
            })
            .expect("subscribe");
        tap.publish("b", "p", &[point(Category::Logging, "other_input")]);
        tap.publish(
            "a",
            "p",
            &[
                point(Category::Metric, "wrong_category"),
                point(Category::Logging, "wanted"),
            ],
        );
        let got = sub.events.try_recv().expect("one event");
        assert_eq!(got.point.measurement, "wanted");
        assert_eq!(&*got.input, "a");
        assert!(sub.events.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_counts_what_it_misses_and_a_closed_one_goes_away() {
        let tap = Tap::default();
        let sub = tap.subscribe(TapFilter::default()).expect("subscribe");
        let many: Vec<Point> = (0..SUBSCRIBER_QUEUE + 10)
            .map(|_| point(Category::Metric, "m"))
            .collect();
        tap.publish("a", "p", &many);
        assert_eq!(sub.take_dropped(), 10);
        assert_eq!(sub.take_dropped(), 0);
        assert_eq!(tap.dropped_total(), 10);
        drop(sub);
        tap.publish("a", "p", &many[..1]);
        assert_eq!(tap.subscribers(), 0);
    }

    #[test]
    fn subscribers_are_bounded() {
        let tap = Tap::default();
        let subs: Vec<_> = (0..MAX_SUBSCRIBERS)
            .map(|_| tap.subscribe(TapFilter::default()).expect("subscribe"))
            .collect();
        assert!(tap.subscribe(TapFilter::default()).is_err());
        drop(subs);
        assert!(tap.subscribe(TapFilter::default()).is_ok());
    }
}
