//! A TOML document as a tree of values that remember where they were written, and a
//! reader that turns tables of that tree into typed settings with precise errors.
//!
//! Why not plain `#[derive(Deserialize)]` + `deny_unknown_fields`? toml 0.8 reports a
//! byte span for the first error, but neither the key path of a type error nor which
//! table an unknown field was found in, and serde's internally tagged enums (our
//! `[[sinks]]`) buffer their content and lose spans entirely. Our contract is "every
//! error names file, line and key", so the loader deserializes the text once into a
//! [`Node`] tree (every value and key carrying its byte span) and then reads the tree
//! by hand through [`Section`], which knows the table it is reading, the keys it
//! expects, and reports unknown, missing and malformed keys with their lines. All
//! problems of a document are collected; the most useful one comes first, and
//! `pythond config check` shows them all.
//!
//! Spans come from toml's own `Spanned` support. Tables that were never written as a
//! header (`inputs` in `[[inputs.pythond]]`, `agent` in `agent.hostname = ".."`) have
//! no span in toml, which makes `toml::Spanned<T>` fail on them; [`Node`]'s visitor
//! therefore accepts both the spanned and the plain form. The (private) names toml uses
//! to recognise spanned values and datetimes are learnt at run time by letting
//! `toml::Spanned` and `toml::value::Datetime` describe themselves to a probe
//! deserializer, rather than by copying toml's internal constants.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::ConfigError;

/// Byte range of a key or value in the document text.
pub(crate) type Span = Range<usize>;

/// A TOML value with the span it was written at.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) span: Span,
    pub(crate) value: Value,
}

/// The TOML value kinds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// Kept as text: no setting accepts a datetime, it only appears in error messages.
    Datetime(String),
    Array(Vec<Node>),
    /// Entries in document order.
    Table(Vec<Entry>),
}

/// One `key = value` of a table.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) node: Node,
}

impl Node {
    /// "integer 5", "string \"x\"", "an array": what was found, for error messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::String(s) => {
                let mut shown: String = s.chars().take(64).collect();
                if shown.len() < s.len() {
                    shown.push('…');
                }
                format!("string {shown:?}")
            }
            Value::Integer(i) => format!("integer {i}"),
            Value::Float(x) => format!("float {x}"),
            Value::Boolean(b) => format!("boolean {b}"),
            Value::Datetime(d) => format!("datetime {d}"),
            Value::Array(_) => "an array".to_owned(),
            Value::Table(_) => "a table".to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Deserialization of the tree.

/// How toml recognises the types it treats specially, learnt from the types
/// themselves (see the module documentation).
struct Shapes {
    spanned_name: &'static str,
    spanned_fields: &'static [&'static str],
    datetime_field: &'static str,
}

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let (spanned_name, spanned_fields) = probe::<toml::Spanned<u8>>().unwrap_or(("", &[]));
        let datetime_field = probe::<toml::value::Datetime>()
            .and_then(|(_, fields)| fields.first().copied())
            .unwrap_or("");
        Shapes {
            spanned_name,
            spanned_fields,
            datetime_field,
        }
    })
}

/// The struct name and fields `T` asks its deserializer for.
fn probe<T: for<'de> Deserialize<'de>>() -> Option<(&'static str, &'static [&'static str])> {
    match T::deserialize(Probe) {
        Err(Probed(shape)) => shape,
        Ok(_) => None,
    }
}

/// A deserializer that only records the `deserialize_struct` call it receives.
struct Probe;

#[derive(Debug)]
struct Probed(Option<(&'static str, &'static [&'static str])>);

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Probed(None)
    }
}

impl<'de> Deserializer<'de> for Probe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Probed> {
        Err(Probed(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(Some((name, fields))))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// A value as toml hands it over: with a span, or without one for implicit tables.
struct RawNode {
    span: Option<Span>,
    value: RawValue,
}

enum RawValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<RawNode>),
    Table(Vec<(RawKey, RawNode)>),
}

struct RawKey {
    name: String,
    span: Option<Span>,
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shapes = shapes();
        deserializer.deserialize_struct(shapes.spanned_name, shapes.spanned_fields, NodeVisitor)
    }
}

/// The value inside a spanned wrapper: asking for a span again would loop.
struct Unspanned(RawNode);

impl<'de> Deserialize<'de> for Unspanned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(Unspanned)
    }
}

struct NodeVisitor;

impl NodeVisitor {
    fn plain(value: RawValue) -> RawNode {
        RawNode { span: None, value }
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(Self::plain(RawValue::Boolean(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(Self::plain(RawValue::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(|v| Self::plain(RawValue::Integer(v)))
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(Self::plain(RawValue::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(Self::plain(RawValue::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(Self::plain(RawValue::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawNode>()? {
            items.push(item);
        }
        Ok(Self::plain(RawValue::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let shapes = shapes();
        // The first key tells the three map shapes apart: a spanned value
        // (start, end, value), a datetime, or an ordinary (implicit) table.
        let Some(first) = map.next_key::<RawKey>()? else {
            return Ok(Self::plain(RawValue::Table(Vec::new())));
        };
        if shapes.spanned_fields.first() == Some(&first.name.as_str()) {
            let start: usize = map.next_value()?;
            let mut end = start;
            let mut value = None;
            while let Some(key) = map.next_key::<String>()? {
                if shapes.spanned_fields.get(1) == Some(&key.as_str()) {
                    end = map.next_value()?;
                } else {
                    value = Some(map.next_value::<Unspanned>()?.0.value);
                }
            }
            let value = value.ok_or_else(|| de::Error::custom("spanned value without a value"))?;
            return Ok(RawNode {
                span: Some(start..end),
                value,
            });
        }
        if !shapes.datetime_field.is_empty() && first.name == shapes.datetime_field {
            let text: String = map.next_value()?;
            return Ok(Self::plain(RawValue::Datetime(text)));
        }
        let mut entries = vec![(first, map.next_value::<RawNode>()?)];
        while let Some(key) = map.next_key::<RawKey>()? {
            let node = map.next_value::<RawNode>()?;
            entries.push((key, node));
        }
        Ok(Self::plain(RawValue::Table(entries)))
    }
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shapes = shapes();
        deserializer.deserialize_struct(shapes.spanned_name, shapes.spanned_fields, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = RawKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawKey, E> {
        Ok(RawKey {
            name: v.to_owned(),
            span: None,
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawKey, E> {
        Ok(RawKey {
            name: v,
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawKey, A::Error> {
        let shapes = shapes();
        let (mut start, mut end, mut name) = (0, 0, None);
        while let Some(field) = map.next_key::<String>()? {
            match shapes.spanned_fields.iter().position(|f| *f == field) {
                Some(0) => start = map.next_value()?,
                Some(1) => end = map.next_value()?,
                _ => name = Some(map.next_value::<String>()?),
            }
        }
        let name = name.ok_or_else(|| de::Error::custom("spanned key without a name"))?;
        Ok(RawKey {
            name,
            span: Some(start..end),
        })
    }
}

/// Gives every value and key a span: its own, else its key's, else its parent's.
fn settle(raw: RawNode, fallback: &Span) -> Node {
    let span = raw.span.unwrap_or_else(|| fallback.clone());
    let value = match raw.value {
        RawValue::String(s) => Value::String(s),
        RawValue::Integer(i) => Value::Integer(i),
        RawValue::Float(x) => Value::Float(x),
        RawValue::Boolean(b) => Value::Boolean(b),
        RawValue::Datetime(d) => Value::Datetime(d),
        RawValue::Array(items) => {
            Value::Array(items.into_iter().map(|n| settle(n, &span)).collect())
        }
        RawValue::Table(entries) => Value::Table(
            entries
                .into_iter()
                .map(|(key, node)| {
                    let key_span = key
                        .span
                        .or_else(|| node.span.clone())
                        .unwrap_or_else(|| span.clone());
                    let node = settle(node, &key_span);
                    Entry {
                        key: key.name,
                        key_span,
                        node,
                    }
                })
                .collect(),
        ),
    };
    Node { span, value }
}

// ---------------------------------------------------------------------------------
// Documents and problems.

/// How early a problem is reported when a document has several: unknown keys first
/// (a typo often explains a "missing" key), then the rest, each by line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    UnknownKey,
    Other,
}

/// One parsed file: its text (to turn spans into lines) and the problems found so far.
pub(crate) struct Doc<'a> {
    file: &'a Path,
    text: &'a str,
    problems: RefCell<Vec<(Rank, ConfigError)>>,
    /// Byte offsets of every `\n`, found on first use: a file with 10,000 instance
    /// tables asks for 10,000 lines, which must not rescan the text each time.
    newlines: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Doc<'a> {
    /// Parses `text`; a TOML syntax error is returned at once.
    pub(crate) fn parse(text: &'a str, file: &'a Path) -> Result<(Self, Node), ConfigError> {
        let doc = Doc {
            file,
            text,
            problems: RefCell::new(Vec::new()),
            newlines: std::cell::OnceCell::new(),
        };
        match toml::from_str::<RawNode>(text) {
            Ok(raw) => {
                let root = settle(raw, &(0..0));
                Ok((doc, root))
            }
            Err(err) => {
                let offset = err.span().map_or(0, |s| s.start);
                let message = err
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(ConfigError::Syntax {
                    file: file.to_path_buf(),
                    line: doc.line(&(offset..offset)),
                    column: doc.column(offset),
                    message,
                })
            }
        }
    }

    pub(crate) fn file(&self) -> &Path {
        self.file
    }

    /// 1-based line where `span` starts.
    pub(crate) fn line(&self, span: &Span) -> usize {
        let end = span.start.min(self.text.len());
        let newlines = self.newlines.get_or_init(|| {
            self.text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect()
        });
        // Newlines strictly before `end`.
        newlines.partition_point(|at| *at < end) + 1
    }

    /// 1-based column, in characters, of byte `offset`.
    fn column(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        let bytes = &self.text.as_bytes()[..end];
        let line_start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        String::from_utf8_lossy(&bytes[line_start..])
            .chars()
            .count()
            + 1
    }

    fn push(&self, rank: Rank, span: &Span, key: &str, message: String) {
        let error = ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(span),
            key: key.to_owned(),
            message,
        };
        self.problems.borrow_mut().push((rank, error));
    }

    /// Records a problem about `key` at `span`; `message` must name key and table.
    pub(crate) fn report(&self, span: &Span, key: &str, message: String) {
        self.push(Rank::Other, span, key, message);
    }

    /// `value` if no problem was recorded, else the problem to show first.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        match self.sorted_problems().into_iter().next() {
            None => Ok(value),
            Some(error) => Err(error),
        }
    }

    /// `value` if no problem was recorded, else every problem (never empty), the one
    /// to show first first: `pythond config check` reports them all.
    pub(crate) fn finish_all<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        let problems = self.sorted_problems();
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(problems)
        }
    }

    fn sorted_problems(self) -> Vec<ConfigError> {
        let mut problems = self.problems.into_inner();
        // Stable sort: equal rank and line keep the order they were found in.
        problems.sort_by_key(|(rank, error)| (*rank, error.line()));
        problems.into_iter().map(|(_, error)| error).collect()
    }
}

/// Why a value was rejected. `span` narrows the place (an array element, a nested
/// table entry) and `subkey` extends the key (`tags` -> `tags.team`).
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) span: Option<Span>,
    pub(crate) subkey: Option<String>,
    pub(crate) message: String,
}

impl Problem {
    /// A problem at a more precise place than the whole value.
    pub(crate) fn at(span: &Span, message: impl Into<String>) -> Self {
        Problem {
            span: Some(span.clone()),
            subkey: None,
            message: message.into(),
        }
    }

    /// "expected a string, found integer 5".
    pub(crate) fn expected(what: &str, node: &Node) -> Self {
        Problem::from(format!("expected {what}, found {}", node.describe()))
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Problem {
            span: None,
            subkey: None,
            message,
        }
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Self {
        Problem::from(message.to_owned())
    }
}

// ---------------------------------------------------------------------------------
// Reading tables.

/// One table being read: it knows its display name and expected keys, hands out
/// entries by key and, when finished, reports every key nobody asked for.
pub(crate) struct Section<'d, 'a> {
    doc: &'d Doc<'a>,
    name: String,
    span: Span,
    entries: Vec<Entry>,
    /// The keys this table accepts: one list for most tables, the concatenation of
    /// a sink type's key groups for `[[sinks]]` ([`Section::set_expected`]).
    expected: Cow<'static, [&'static str]>,
}

impl<'d, 'a> Section<'d, 'a> {
    /// The document's root table.
    pub(crate) fn root(doc: &'d Doc<'a>, root: Node, expected: &'static [&'static str]) -> Self {
        let entries = match root.value {
            Value::Table(entries) => entries,
            _ => Vec::new(),
        };
        Section {
            doc,
            name: String::new(),
            span: root.span,
            entries,
            expected: Cow::Borrowed(expected),
        }
    }

    pub(crate) fn doc(&self) -> &'d Doc<'a> {
        self.doc
    }

    /// The header span (for a missing key, or the origin of an input).
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Replaces the keys this table accepts with those of `groups`, in order (e.g. once
    /// a sink's type is known: the keys every sink has, then the groups its type
    /// shares with others, then its own). Unknown keys are still refused by
    /// [`Section::finish`], which lists every accepted key.
    pub(crate) fn set_expected(&mut self, groups: &[&'static [&'static str]]) {
        self.expected = Cow::Owned(groups.concat());
    }

    /// Renames the table in messages (e.g. `[[sinks]] of type "file"`).
    pub(crate) fn set_name(&mut self, name: String) {
        self.name = name;
    }

    /// "in [agent]" or "at the top level".
    pub(crate) fn place(&self) -> String {
        if self.name.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in {}", self.name)
        }
    }

    /// Removes and returns the entry for `key`.
    pub(crate) fn take(&mut self, key: &str) -> Option<Entry> {
        debug_assert!(
            self.expected.is_empty() || self.expected.contains(&key),
            "{key} is not declared as expected in {}",
            self.name
        );
        let index = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(index))
    }

    /// The keys not taken yet, in document order (for tables keyed by user names).
    pub(crate) fn keys(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.key.clone()).collect()
    }

    /// Removes and returns every remaining entry (for free-form tables).
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// Records a problem with the value of `key`.
    pub(crate) fn invalid(&self, span: &Span, key: &str, message: &str) {
        self.doc.report(
            span,
            key,
            format!("invalid value for key `{key}` {}: {message}", self.place()),
        );
    }

    fn convert<T>(
        &self,
        key: &str,
        node: &Node,
        conv: impl FnOnce(&Node) -> Result<T, Problem>,
    ) -> Option<T> {
        match conv(node) {
            Ok(value) => Some(value),
            Err(problem) => {
                let key = match &problem.subkey {
                    Some(sub) => format!("{key}.{sub}"),
                    None => key.to_owned(),
                };
                let span = problem.span.as_ref().unwrap_or(&node.span);
                self.invalid(span, &key, &problem.message);
                None
            }
        }
    }

    /// The converted value of an optional key; `None` if absent or invalid (the
    /// problem is recorded).
    pub(crate) fn get<T>(
        &mut self,
        key: &str,
        conv: impl FnOnce(&Node) -> Result<T, Problem>,
    ) -> Option<T> {
        self.get_located(key, conv).map(|(value, _)| value)
    }

    /// Like [`Section::get`], also returning the value's span.
    pub(crate) fn get_located<T>(
        &mut self,
        key: &str,
        conv: impl FnOnce(&Node) -> Result<T, Problem>,
    ) -> Option<(T, Span)> {
        let entry = self.take(key)?;
        let value = self.convert(key, &entry.node, conv)?;
        Some((value, entry.node.span))
    }

    /// Like [`Section::get`], but a missing key is a problem too.
    pub(crate) fn require<T>(
        &mut self,
        key: &str,
        conv: impl FnOnce(&Node) -> Result<T, Problem>,
    ) -> Option<T> {
        self.require_located(key, conv).map(|(value, _)| value)
    }

    /// Like [`Section::require`], also returning the value's span.
    pub(crate) fn require_located<T>(
        &mut self,
        key: &str,
        conv: impl FnOnce(&Node) -> Result<T, Problem>,
    ) -> Option<(T, Span)> {
        if !self.entries.iter().any(|e| e.key == key) {
            self.doc.report(
                &self.span,
                key,
                format!("missing required key `{key}` {}", self.place()),
            );
            return None;
        }
        self.get_located(key, conv)
    }

    /// A sub-table written `[name]` (or inline / dotted).
    pub(crate) fn table(
        &mut self,
        key: &str,
        name: &str,
        expected: &'static [&'static str],
    ) -> Option<Section<'d, 'a>> {
        let entry = self.take(key)?;
        match entry.node.value {
            Value::Table(entries) => Some(self.child(name, entry.node.span, entries, expected)),
            _ => {
                let hint = match entry.node.value {
                    Value::Array(_) => format!(" (write {name}, not [{name}])"),
                    _ => String::new(),
                };
                self.invalid(
                    &entry.node.span,
                    key,
                    &format!("expected a table, found {}{hint}", entry.node.describe()),
                );
                None
            }
        }
    }

    /// The tables of an array of tables written `[[name]]`; a single table is
    /// accepted as an array of one.
    pub(crate) fn tables(
        &mut self,
        key: &str,
        name: &str,
        expected: &'static [&'static str],
    ) -> Vec<Section<'d, 'a>> {
        let Some(entry) = self.take(key) else {
            return Vec::new();
        };
        let nodes = match entry.node.value {
            Value::Table(_) => vec![entry.node],
            Value::Array(items) => items,
            _ => {
                self.invalid(
                    &entry.node.span,
                    key,
                    &format!(
                        "expected an array of tables ({name}), found {}",
                        entry.node.describe()
                    ),
                );
                return Vec::new();
            }
        };
        let mut sections = Vec::new();
        for node in nodes {
            match node.value {
                Value::Table(entries) => {
                    sections.push(self.child(name, node.span, entries, expected))
                }
                _ => self.invalid(
                    &node.span,
                    key,
                    &format!("expected a table ({name}), found {}", node.describe()),
                ),
            }
        }
        sections
    }

    fn child(
        &self,
        name: &str,
        span: Span,
        entries: Vec<Entry>,
        expected: &'static [&'static str],
    ) -> Section<'d, 'a> {
        Section {
            doc: self.doc,
            name: name.to_owned(),
            span,
            entries,
            expected: Cow::Borrowed(expected),
        }
    }

    /// Reports every key that was not taken as unknown.
    pub(crate) fn finish(&mut self) {
        for entry in std::mem::take(&mut self.entries) {
            self.doc.push(
                Rank::UnknownKey,
                &entry.key_span,
                &entry.key,
                format!(
                    "unknown key `{}` {} (expected one of: {})",
                    entry.key,
                    self.place(),
                    self.expected.join(", ")
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Converters for the basic shapes; domain-specific ones live in `values.rs`.

/// Any string.
pub(crate) fn string(node: &Node) -> Result<String, Problem> {
    match &node.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(Problem::expected("a string", node)),
    }
}

/// A string that is not empty or blank.
pub(crate) fn non_empty_string(node: &Node) -> Result<String, Problem> {
    let s = string(node)?;
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s)
}

/// `true` or `false`.
pub(crate) fn boolean(node: &Node) -> Result<bool, Problem> {
    match node.value {
        Value::Boolean(b) => Ok(b),
        _ => Err(Problem::expected("a boolean (true or false)", node)),
    }
}

/// A non-empty array of non-empty strings, each with its span.
pub(crate) fn string_list(node: &Node) -> Result<Vec<(String, Span)>, Problem> {
    let Value::Array(items) = &node.value else {
        return Err(Problem::expected("an array of strings", node));
    };
    if items.is_empty() {
        return Err("must not be empty".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match &item.value {
            Value::String(s) if s.trim().is_empty() => Err(Problem::at(
                &item.span,
                format!("element {} must not be empty", i + 1),
            )),
            Value::String(s) => Ok((s.clone(), item.span.clone())),
            _ => Err(Problem::at(
                &item.span,
                format!(
                    "element {} must be a string, found {}",
                    i + 1,
                    item.describe()
                ),
            )),
        })
        .collect()
}

/// A table of non-empty strings keyed by non-empty strings (tags).
pub(crate) fn string_map(node: &Node) -> Result<BTreeMap<String, String>, Problem> {
    let Value::Table(entries) = &node.value else {
        return Err(Problem::expected("a table of strings", node));
    };
    let mut map = BTreeMap::new();
    for entry in entries {
        let problem = |span: &Span, message: String| Problem {
            span: Some(span.clone()),
            subkey: Some(entry.key.clone()),
            message,
        };
        check_tag(entry).map_err(|m| problem(&entry.node.span, m))?;
        if let Value::String(s) = &entry.node.value {
            map.insert(entry.key.clone(), s.clone());
        }
    }
    Ok(map)
}

/// A tag entry must have a non-empty name and a non-empty string value.
pub(crate) fn check_tag(entry: &Entry) -> Result<(), String> {
    if entry.key.is_empty() {
        return Err("tag names must not be empty".to_owned());
    }
    match &entry.node.value {
        Value::String(s) if s.is_empty() => Err("tag values must not be empty".to_owned()),
        Value::String(_) => Ok(()),
        _ => Err(format!(
            "expected a string, found {}",
            entry.node.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        match Doc::parse(text, Path::new("t.toml")) {
            Ok((_, root)) => root,
            Err(e) => panic!("{e}"),
        }
    }

    fn entries(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Table(entries) => entries,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn toml_special_types_are_recognised() {
        // If toml changes how it marks spanned values or datetimes, every line number
        // would silently become 1: fail loudly instead.
        let shapes = shapes();
        assert!(!shapes.spanned_name.is_empty());
        assert_eq!(shapes.spanned_fields.len(), 3);
        assert!(!shapes.datetime_field.is_empty());
    }

    #[test]
    fn values_and_keys_carry_their_spans() {
        let text = "a = 1\n[t]\n  b = \"x\"\n  c = [true,\n 1979-05-27]\n";
        let (doc, root) = Doc::parse(text, Path::new("t.toml")).expect("parse");
        let top = entries(&root);
        assert_eq!(top[0].key, "a");
        assert_eq!(doc.line(&top[0].key_span), 1);
        assert_eq!(top[0].node.describe(), "integer 1");
        assert_eq!(doc.line(&top[1].node.span), 2);
        let t = entries(&top[1].node);
        assert_eq!((t[0].key.as_str(), doc.line(&t[0].key_span)), ("b", 3));
        assert_eq!(&text[t[0].node.span.clone()], "\"x\"");
        let Value::Array(items) = &t[1].node.value else {
            panic!("not an array")
        };
        assert_eq!(doc.line(&items[1].span), 5);
        assert_eq!(items[1].describe(), "datetime 1979-05-27");
    }

    #[test]
    fn implicit_tables_take_the_span_of_their_key() {
        let text = "\n\n[[inputs.pythond]]\nname = \"x\"\n\nagent.host = \"h\"\n";
        let (doc, root) = Doc::parse(text, Path::new("t.toml")).expect("parse");
        let top = entries(&root);
        assert_eq!(top[0].key, "inputs");
        assert_eq!(doc.line(&top[0].node.span), 3);
        let pythond = &entries(&top[0].node)[0];
        let Value::Array(tables) = &pythond.node.value else {
            panic!("not an array")
        };
        assert_eq!(doc.line(&tables[0].span), 3);
        let name = &entries(&tables[0])[0];
        assert_eq!(doc.line(&name.key_span), 4);
        let host = &entries(&entries(&tables[0])[1].node)[0];
        assert_eq!((host.key.as_str(), doc.line(&host.key_span)), ("host", 6));
    }

    #[test]
    fn long_strings_are_shortened_in_messages() {
        let root = parse(&format!("a = \"{}\"\n", "x".repeat(100)));
        let shown = entries(&root)[0].node.describe();
        assert_eq!(shown, format!("string \"{}…\"", "x".repeat(64)));
    }
}
