//! Accepted points as the network sinks' encoders read them: a batch whose strings
//! are borrowed wherever they can be, from the request body they were decoded from or
//! from the [`Point`]s it was made of.
//!
//! Relaying line protocol is the agent's hot path (docs/BENCHMARKS.md, "Forwarding
//! side by side with vmagent"), and building a [`Point`] per line costs an owned
//! string per key and value plus two maps, all dropped again once the sinks have
//! encoded it. A [`PointBatch`] keeps the tags and fields of all its points in two
//! vectors (each point's run sorted by key, keys unique, as in a [`Point`]) and
//! reuses them from chunk to chunk. Sinks that keep points in memory (`file`,
//! `stdout`) and the tap get owned [`Point`]s from [`PointBatch::to_points`], made
//! only when one of them is there.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Mutex;

use super::{Category, FieldValue, Point};

/// One tag: key and value.
pub type Tag<'a> = (Cow<'a, str>, Cow<'a, str>);
/// One field: key and value.
pub type Field<'a> = (Cow<'a, str>, FieldRef<'a>);

/// A field value whose string, if it is one, may be borrowed; see [`FieldValue`].
#[derive(Clone, Debug, PartialEq)]
pub enum FieldRef<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(Cow<'a, str>),
}

impl<'a> From<&'a FieldValue> for FieldRef<'a> {
    fn from(value: &'a FieldValue) -> Self {
        match value {
            FieldValue::Int(i) => FieldRef::Int(*i),
            FieldValue::Float(f) => FieldRef::Float(*f),
            FieldValue::Bool(b) => FieldRef::Bool(*b),
            FieldValue::Str(s) => FieldRef::Str(Cow::Borrowed(s)),
        }
    }
}

impl From<FieldValue> for FieldRef<'_> {
    fn from(value: FieldValue) -> Self {
        match value {
            FieldValue::Int(i) => FieldRef::Int(i),
            FieldValue::Float(f) => FieldRef::Float(f),
            FieldValue::Bool(b) => FieldRef::Bool(b),
            FieldValue::Str(s) => FieldRef::Str(Cow::Owned(s)),
        }
    }
}

impl FieldRef<'_> {
    /// The same value, its string (if any) borrowed from this one.
    pub fn reborrow(&self) -> FieldRef<'_> {
        match self {
            FieldRef::Int(i) => FieldRef::Int(*i),
            FieldRef::Float(f) => FieldRef::Float(*f),
            FieldRef::Bool(b) => FieldRef::Bool(*b),
            FieldRef::Str(s) => FieldRef::Str(Cow::Borrowed(s)),
        }
    }

    /// The owned value.
    pub fn to_value(&self) -> FieldValue {
        match self {
            FieldRef::Int(i) => FieldValue::Int(*i),
            FieldRef::Float(f) => FieldValue::Float(*f),
            FieldRef::Bool(b) => FieldValue::Bool(*b),
            FieldRef::Str(s) => FieldValue::Str(s.clone().into_owned()),
        }
    }
}

/// The order of keys (byte-wise, as `str`'s), deciding on the first byte where it
/// can: keys are short and mostly differ there, which spares a `memcmp` call; short
/// keys that share it are compared byte by byte, also without the call.
#[inline]
pub fn key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ if a.len() <= SHORT_KEY && b.len() <= SHORT_KEY => {
            match a.iter().zip(b).find(|(x, y)| x != y) {
                Some((x, y)) => x.cmp(y),
                None => a.len().cmp(&b.len()),
            }
        }
        _ => a.cmp(b),
    }
}

/// Keys up to this many bytes are compared without `memcmp` by [`key_order`].
const SHORT_KEY: usize = 16;

/// Where one point's parts are in its batch.
#[derive(Clone, Debug)]
struct Entry<'a> {
    category: Category,
    measurement: Cow<'a, str>,
    tags: (usize, usize),
    fields: (usize, usize),
    time_ns: i64,
}

/// Points sharing their tag and field storage; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct PointBatch<'a> {
    points: Vec<Entry<'a>>,
    tags: Vec<Tag<'a>>,
    fields: Vec<Field<'a>>,
}

impl<'a> PointBatch<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch viewing `points`, every string borrowed from them.
    pub fn borrowing(points: &'a [Point]) -> Self {
        let mut batch = PointBatch {
            points: Vec::with_capacity(points.len()),
            tags: Vec::with_capacity(points.iter().map(|p| p.tags.len()).sum()),
            fields: Vec::with_capacity(points.iter().map(|p| p.fields.len()).sum()),
        };
        for point in points {
            let tags = point
                .tags
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())));
            let fields = point
                .fields
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), FieldRef::from(v)));
            batch.push_parts(
                point.category,
                Cow::Borrowed(&point.measurement),
                tags,
                fields,
                point.time_ns,
            );
        }
        batch
    }

    /// Appends `point`, taking its strings.
    pub fn push_point(&mut self, point: Point) {
        let tags = point
            .tags
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)));
        let fields = point
            .fields
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), FieldRef::from(v)));
        self.push_parts(
            point.category,
            Cow::Owned(point.measurement),
            tags,
            fields,
            point.time_ns,
        );
    }

    /// Appends a point whose tags and fields each come sorted by key, keys unique (the
    /// caller's promise: the encoders rely on it as they do on a [`Point`]'s maps).
    pub(crate) fn push_parts(
        &mut self,
        category: Category,
        measurement: Cow<'a, str>,
        tags: impl IntoIterator<Item = Tag<'a>>,
        fields: impl IntoIterator<Item = Field<'a>>,
        time_ns: i64,
    ) {
        let start = self.parts_start();
        self.tags.extend(tags);
        self.fields.extend(fields);
        self.commit_parts(category, measurement, start, time_ns);
    }

    /// The tag and field vectors, for a decoder that writes a point's parts straight
    /// onto their ends (from [`PointBatch::parts_start`] on) and then either
    /// [`commit_parts`](PointBatch::commit_parts) them or truncates the vectors back:
    /// the parts are not copied once more. Entries before the start belong to the
    /// points already in the batch and must stay as they are.
    pub(crate) fn parts_mut(&mut self) -> (&mut Vec<Tag<'a>>, &mut Vec<Field<'a>>) {
        (&mut self.tags, &mut self.fields)
    }

    /// Where the next point's tags and fields start in [`PointBatch::parts_mut`].
    pub(crate) fn parts_start(&self) -> (usize, usize) {
        (self.tags.len(), self.fields.len())
    }

    /// Appends a point made of the tags and fields from `start` (what
    /// [`PointBatch::parts_start`] said) to the ends of the vectors, sorted by key, keys
    /// unique, as for [`PointBatch::push_parts`].
    pub(crate) fn commit_parts(
        &mut self,
        category: Category,
        measurement: Cow<'a, str>,
        start: (usize, usize),
        time_ns: i64,
    ) {
        let (tags_start, fields_start) = start;
        debug_assert!(self.tags[tags_start..].windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(self.fields[fields_start..]
            .windows(2)
            .all(|w| w[0].0 < w[1].0));
        self.points.push(Entry {
            category,
            measurement,
            tags: (tags_start, self.tags.len()),
            fields: (fields_start, self.fields.len()),
            time_ns,
        });
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Empties the batch, keeping its storage for the next points.
    pub fn clear(&mut self) {
        self.points.clear();
        self.tags.clear();
        self.fields.clear();
    }

    /// The points in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PointRef<'_>> + '_ {
        self.points.iter().map(|entry| PointRef {
            category: entry.category,
            measurement: &entry.measurement,
            tags: &self.tags[entry.tags.0..entry.tags.1],
            fields: &self.fields[entry.fields.0..entry.fields.1],
            time_ns: entry.time_ns,
        })
    }

    /// Owned copies of the points, for what keeps them after the batch is gone.
    pub fn to_points(&self) -> Vec<Point> {
        self.iter().map(|p| p.to_point()).collect()
    }
}

/// Storage of emptied batches, kept for the next ones: a write request's chunk starts
/// with the room an earlier request's chunk had instead of growing from empty, which
/// costs a reallocation per doubling and fresh pages from the system for every
/// request. Bounded: at most [`BatchPool::KEEPS`] batches of at most
/// [`BatchPool::KEEPS_BYTES`] each are kept, a bigger one is freed.
#[derive(Debug, Default)]
pub struct BatchPool {
    free: Mutex<Vec<BatchStorage>>,
}

/// The vectors of an emptied [`PointBatch`], free of the lifetime of the strings it
/// held (it holds none).
#[derive(Debug)]
struct BatchStorage {
    points: Vec<Entry<'static>>,
    tags: Vec<Tag<'static>>,
    fields: Vec<Field<'static>>,
}

impl BatchPool {
    /// How many emptied batches are kept at most (about one per write request
    /// decoded at once).
    pub const KEEPS: usize = 4;
    /// The most memory one kept batch may hold.
    pub const KEEPS_BYTES: usize = 2 << 20;

    /// An empty batch, with the storage of one given back earlier if there is one.
    pub fn take<'a>(&self) -> PointBatch<'a> {
        let storage = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match storage {
            None => PointBatch::new(),
            Some(storage) => PointBatch {
                points: emptied(storage.points),
                tags: emptied(storage.tags),
                fields: emptied(storage.fields),
            },
        }
    }

    /// Empties `batch` and keeps its storage for [`BatchPool::take`], unless the
    /// pool is full or the batch is over [`BatchPool::KEEPS_BYTES`].
    pub fn give(&self, batch: PointBatch<'_>) {
        let bytes = batch.points.capacity() * std::mem::size_of::<Entry<'_>>()
            + batch.tags.capacity() * std::mem::size_of::<Tag<'_>>()
            + batch.fields.capacity() * std::mem::size_of::<Field<'_>>();
        if bytes > Self::KEEPS_BYTES || bytes == 0 {
            return;
        }
        let storage = BatchStorage {
            points: emptied(batch.points),
            tags: emptied(batch.tags),
            fields: emptied(batch.fields),
        };
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < Self::KEEPS {
            free.push(storage);
        }
    }
}

/// `items` emptied, as a vector of `U` (the same type but for a lifetime) with the same
/// allocation: collecting a vector's iterator into one of a type of the same size and
/// alignment reuses its buffer, and an empty one moves no item.
fn emptied<T, U>(mut items: Vec<T>) -> Vec<U> {
    items.clear();
    items
        .into_iter()
        .map(|_| unreachable!("the vector was emptied"))
        .collect()
}

/// One point of a [`PointBatch`]: the same content as a [`Point`], tags and fields as
/// slices sorted by key.
#[derive(Clone, Copy, Debug)]
pub struct PointRef<'b> {
    pub category: Category,
    pub measurement: &'b str,
    pub tags: &'b [Tag<'b>],
    pub fields: &'b [Field<'b>],
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
}

impl<'b> PointRef<'b> {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&'b str> {
        let tags = self.tags;
        tags.binary_search_by(|(k, _)| key_order(k, key))
            .ok()
            .map(|i| tags[i].1.as_ref())
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&'b FieldRef<'b>> {
        let fields = self.fields;
        fields
            .binary_search_by(|(k, _)| key_order(k, key))
            .ok()
            .map(|i| &fields[i].1)
    }

    /// Whether the point has `key` as a tag or as a field.
    pub fn has_key(&self, key: &str) -> bool {
        self.tag(key).is_some() || self.field(key).is_some()
    }

    /// The point, owned.
    pub fn to_point(&self) -> Point {
        Point {
            category: self.category,
            measurement: self.measurement.to_owned(),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.clone().into_owned(), v.clone().into_owned()))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                .collect(),
            time_ns: self.time_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: i64) -> Point {
        Point {
            category: if n % 2 == 0 {
                Category::Metric
            } else {
                Category::Logging
            },
            measurement: format!("m{n}"),
            tags: [("a".to_string(), format!("x{n}")), ("b".into(), "y".into())]
                .into_iter()
                .collect(),
            fields: [
                ("f".to_string(), FieldValue::Float(n as f64)),
                ("s".to_string(), FieldValue::Str(format!("s{n}"))),
            ]
            .into_iter()
            .collect(),
            time_ns: n,
        }
    }

    #[test]
    fn borrowed_and_owned_batches_give_the_points_back_in_order() {
        let points: Vec<Point> = (0..5).map(sample).collect();
        let borrowed = PointBatch::borrowing(&points);
        assert_eq!(borrowed.to_points(), points);
        let mut owned = PointBatch::new();
        for p in points.clone() {
            owned.push_point(p);
        }
        assert_eq!(owned.len(), 5);
        assert_eq!(owned.to_points(), points);
        owned.clear();
        assert!(owned.is_empty());
        assert!(owned.to_points().is_empty());
    }

    #[test]
    fn key_order_is_the_order_of_str() {
        let keys = [
            "",
            "a",
            "ab",
            "b",
            "_",
            "__name__",
            "Z",
            "é",
            "aa",
            "a\u{0}",
            "host",
            "host_id",
            "hosu",
            "a_sixteen_bytes_",
            "a_sixteen_bytes_x",
            "a_sixteen_bytes",
            "a_seventeen_bytes",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(key_order(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn lookups_find_tags_and_fields_by_key() {
        let points = [sample(3)];
        let batch = PointBatch::borrowing(&points);
        let p = batch.iter().next().expect("one point");
        assert_eq!(p.tag("a"), Some("x3"));
        assert_eq!(p.tag("f"), None);
        assert_eq!(p.field("s"), Some(&FieldRef::Str("s3".into())));
        assert_eq!(p.field("a"), None);
        assert!(p.has_key("b") && p.has_key("f") && !p.has_key("z"));
        assert_eq!(p.measurement, "m3");
        assert_eq!(p.category, Category::Logging);
    }

    #[test]
    fn a_pooled_batch_comes_back_empty_with_its_room() {
        let pool = BatchPool::default();
        let points: Vec<Point> = (0..100).map(sample).collect();
        let mut batch = pool.take();
        for p in &points {
            batch.push_point(p.clone());
        }
        let room = (
            batch.points.capacity(),
            batch.tags.capacity(),
            batch.fields.capacity(),
        );
        pool.give(batch);
        let again = pool.take();
        assert!(again.is_empty());
        assert!(again.to_points().is_empty());
        assert_eq!(
            (
                again.points.capacity(),
                again.tags.capacity(),
                again.fields.capacity()
            ),
            room,
            "the storage is reused, not reallocated"
        );
        // Only one was given back: the next one is new.
        assert_eq!(pool.take().points.capacity(), 0);
    }

    #[test]
    fn the_pool_keeps_few_and_small_batches() {
        let pool = BatchPool::default();
        let mut big = PointBatch::new();
        big.tags
            .reserve(BatchPool::KEEPS_BYTES / std::mem::size_of::<Tag<'_>>() + 1);
        pool.give(big);
        assert_eq!(
            pool.take().tags.capacity(),
            0,
            "a batch over the bound is freed"
        );
        for _ in 0..BatchPool::KEEPS + 2 {
            let mut batch = PointBatch::new();
            batch.push_point(sample(1));
            pool.give(batch);
        }
        let kept = pool.free.lock().unwrap().len();
        assert_eq!(kept, BatchPool::KEEPS);
    }
}
