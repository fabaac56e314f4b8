//! Reading a line-protocol body: `POST /v1/write/<category>` without a JSON content
//! type, as DataKit and InfluxDB accept it.
//!
//! Grammar (InfluxDB's, with the escapes of `lp_encode.rs`):
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,...] [timestamp]
//! ```
//!
//! - Blank lines and lines starting with `#` (after leading whitespace) are skipped;
//!   a `\r` before the `\n` is ignored.
//! - In measurements, keys and tag values `\,` `\=` `\ ` `\\` are escapes; any other
//!   backslash is a literal backslash.
//! - Field values: `1i`/`-1i` integers, `1u` unsigned (stored as int, or float beyond
//!   i64), floats (`1`, `1.5`, `-1e3`), `t`/`T`/`true`/`True`/`TRUE` and the `f`/`false`
//!   spellings, or `"quoted strings"` with `\"` and `\\` escapes. Quoted strings may
//!   contain newlines, so one point can span several physical lines.
//! - The timestamp is an integer in `precision` units (nanoseconds by default).
//!
//! Each logical line is found first (quote-aware, like InfluxDB's scanner), then
//! parsed strictly, so a broken line costs only itself.
//!
//! Two ways out, one parser: [`parse_line_protocol`] gives [`Point`]s; [`LineDecoder`]
//! (the write API's) appends to a [`PointBatch`] with the strings borrowed from the
//! body, and takes the [`Point`] path only for a point that needs a fix or is refused.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::batch::{key_order, Field, FieldRef, PointBatch, Tag};
use super::lp_encode::ESCAPABLE;
use super::lp_number::{parse_f64, parse_i64};
use super::outcome::{FixReason, RejectReason};
use super::precision::int_time_to_ns;
use super::rules::{self, preview, Preview, UnchangedCheck};
use super::{Accepted, DecodeContext, Fix, Point, Precision, Rejection};

/// Parses every point in `body`. Each item is (1-based line number where the point
/// starts, result); a bad line never stops the others.
pub fn parse_line_protocol(
    body: &str,
    ctx: &DecodeContext<'_>,
) -> Vec<(usize, Result<Accepted, Rejection>)> {
    line_protocol_points(body, ctx).collect()
}

/// Like [`parse_line_protocol`], one point at a time: a caller handing points on in
/// chunks never holds more than a chunk of them.
pub fn line_protocol_points<'a>(
    body: &'a str,
    ctx: &'a DecodeContext<'a>,
) -> impl Iterator<Item = (usize, Result<Accepted, Rejection>)> + 'a {
    LogicalLines::new(body).map(move |(line_no, line)| (line_no, parse_point(line, line_no, ctx)))
}

/// The logical lines of `body` that hold a point (blank lines and comments skipped),
/// with the line number each starts on, without parsing them: to count points.
pub fn line_protocol_lines(body: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    LogicalLines::new(body)
}

/// The logical lines of a body that hold a point, with the 1-based line number each
/// starts on (blank lines and comments skipped, a trailing `\r` removed).
struct LogicalLines<'a> {
    body: &'a str,
    pos: usize,
    line_no: usize,
    /// Whether a plain line (see `next`) is taken without the quote-aware scan; off
    /// only in the test that holds both ways to the same lines.
    plain_lines: bool,
}

impl<'a> LogicalLines<'a> {
    fn new(body: &'a str) -> Self {
        LogicalLines {
            body,
            pos: 0,
            line_no: 1,
            plain_lines: true,
        }
    }
}

impl<'a> Iterator for LogicalLines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let body = self.body;
        let bytes = body.as_bytes();
        while self.pos < bytes.len() {
            let pos = self.pos;
            let line_no = self.line_no;
            // The common line: it starts with a name (not blank, not a comment) and
            // has no quote, so no string can carry it past its newline. One scan
            // finds its newline or tells it is not such a line.
            let plain_start = bytes[pos].is_ascii()
                && !matches!(
                    bytes[pos],
                    b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | b'#'
                );
            if self.plain_lines && plain_start {
                let stop = memchr::memchr2(b'\n', b'"', &bytes[pos..]).map(|i| pos + i);
                if stop.map_or(true, |at| bytes[at] == b'\n') {
                    let physical_end = stop.unwrap_or(bytes.len());
                    let line = &body[pos..physical_end];
                    self.line_no += 1;
                    self.pos = physical_end + 1;
                    return Some((line_no, line.strip_suffix('\r').unwrap_or(line)));
                }
            }
            let physical_end = find_newline(bytes, pos);
            let physical = body[pos..physical_end].trim();
            let (end, line) = if physical.is_empty() || physical.starts_with('#') {
                (physical_end, None)
            } else {
                let end = logical_line_end(bytes, pos);
                let line = &body[pos..end];
                (end, Some(line.strip_suffix('\r').unwrap_or(line)))
            };
            self.line_no += 1 + bytes[pos..end].iter().filter(|&&b| b == b'\n').count();
            self.pos = end + 1;
            if let Some(line) = line {
                return Some((line_no, line));
            }
        }
        None
    }
}

fn find_newline(bytes: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i)
}

/// Where the point starting at `start` ends: the first newline that is not inside a
/// quoted field value. A quote only opens a string right after a field's `=`, exactly
/// where the parser expects one, so quotes in measurements, keys and tag values are
/// plain characters. An unterminated string runs to the end of the body (as in
/// InfluxDB), which the parser then reports once.
fn logical_line_end(bytes: &[u8], start: usize) -> usize {
    #[derive(PartialEq)]
    enum State {
        Head,
        FieldKey,
        ValueStart,
        Value,
        Quoted,
        Tail,
    }
    let mut state = State::Head;
    let mut i = start;
    // Leading whitespace belongs to no token.
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    while i < bytes.len() {
        let b = bytes[i];
        if state == State::Quoted {
            match b {
                b'\\' => i += 1,
                b'"' => state = State::Value,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'\n' {
            return i;
        }
        if b == b'\\'
            && state != State::Tail
            && bytes.get(i + 1).is_some_and(|n| ESCAPABLE.contains(n))
        {
            i += 2;
            continue;
        }
        state = match (state, b) {
            (State::Head, b' ') => State::FieldKey,
            (State::FieldKey, b'=') => State::ValueStart,
            (State::ValueStart, b'"') => State::Quoted,
            (State::ValueStart | State::Value, b',') => State::FieldKey,
            (State::ValueStart | State::Value, b' ') => State::Tail,
            (State::ValueStart, _) => State::Value,
            (s, _) => s,
        };
        i += 1;
    }
    bytes.len()
}

/// Why a line could not be read, at a byte offset within the line: a syntax error, or
/// (for NaN/inf) a value that parses but is not allowed, which keeps the same reason
/// label as in JSON.
struct LineError {
    at: usize,
    reason: RejectReason,
    message: String,
}

fn syntax(at: usize, message: impl Into<String>) -> LineError {
    LineError {
        at,
        reason: RejectReason::Syntax,
        message: message.into(),
    }
}

/// What one line holds besides its tags and fields (those go to the caller's vectors).
struct Parsed<'a> {
    measurement: Cow<'a, str>,
    timestamp: Option<i64>,
    /// The [`ODD`] and [`DOT`] bits of the bytes of its measurement, keys and tag
    /// values.
    seen: u8,
}

/// A field value as written; an unsigned integer beyond i64 becomes a float with a fix.
enum RawValue<'a> {
    Value(FieldRef<'a>),
    BigUnsigned(u64),
}

/// The point on one logical line, as a [`Point`] through every rule: the reference
/// decoding, which [`LineDecoder`] must match point for point.
fn parse_point(line: &str, line_no: usize, ctx: &DecodeContext<'_>) -> Result<Accepted, Rejection> {
    let mut fixes = Vec::new();
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    let parsed = Parser::new(line)
        .parse(&mut tags, &mut fields, &mut fixes)
        .map_err(|e| syntax_rejection(line, line_no, e))?;
    let time_ns = line_time(parsed.timestamp, &parsed.measurement, line_no, ctx)?;
    apply_rules(
        parsed.measurement,
        tags,
        fields,
        time_ns,
        line_no,
        ctx,
        fixes,
    )
}

/// The point's time in nanoseconds: `now` when the line has none.
fn line_time(
    timestamp: Option<i64>,
    measurement: &str,
    line_no: usize,
    ctx: &DecodeContext<'_>,
) -> Result<i64, Rejection> {
    match timestamp {
        None => Ok(ctx.now_ns),
        Some(t) => {
            // Line protocol is nanoseconds unless the request says otherwise (no
            // magnitude guessing here, unlike JSON: InfluxDB never guesses).
            let precision = ctx.precision.unwrap_or(Precision::Nanoseconds);
            int_time_to_ns(t, Some(precision), ctx.now_ns).map_err(|e| {
                Rejection::new(
                    RejectReason::InvalidTime,
                    format!(
                        "line {line_no}: point {}: timestamp {t} {e}",
                        Preview(measurement)
                    ),
                )
            })
        }
    }
}

/// Builds the [`Point`] (a repeated key keeps its last value, as InfluxDB does) and
/// applies every rule to it.
fn apply_rules<'a>(
    measurement: Cow<'a, str>,
    tags: impl IntoIterator<Item = Tag<'a>>,
    fields: impl IntoIterator<Item = Field<'a>>,
    time_ns: i64,
    line_no: usize,
    ctx: &DecodeContext<'_>,
    mut fixes: Vec<Fix>,
) -> Result<Accepted, Rejection> {
    let mut point = Point {
        category: ctx.category,
        measurement: measurement.into_owned(),
        tags: BTreeMap::new(),
        fields: BTreeMap::new(),
        time_ns,
    };
    for (key, value) in tags {
        point.tags.insert(key.into_owned(), value.into_owned());
    }
    for (key, value) in fields {
        point.fields.insert(key.into_owned(), value.to_value());
    }
    match rules::apply(point, ctx, &mut fixes) {
        Ok(point) => Ok(Accepted { point, fixes }),
        Err(mut rejection) => {
            rejection.message = format!("line {line_no}: {}", rejection.message);
            Err(rejection)
        }
    }
}

/// Decodes line protocol into a [`PointBatch`], borrowing from the body: what the
/// HTTP write API uses. A point that passes every rule unchanged (the common case) is
/// written, sorted and checked in place at the end of the batch and keeps its strings
/// in the body; one that needs a fix, or is refused, takes the [`Point`] path of
/// [`parse_line_protocol`], so both give the same points, fixes and rejections.
pub struct LineDecoder<'a> {
    ctx: DecodeContext<'a>,
    check: UnchangedCheck,
    /// The bits of [`Stops`] that make a line's names need the byte-by-byte check.
    odd: u8,
    /// The extra tags in key order, each with whether it passes the tag rules as it
    /// is: the same for every point of the request, so judged once.
    extra: Vec<(&'a str, &'a str, bool)>,
}

impl<'a> LineDecoder<'a> {
    pub fn new(ctx: &DecodeContext<'a>) -> Self {
        let check = UnchangedCheck::of(ctx.category);
        LineDecoder {
            ctx: *ctx,
            check,
            odd: if check.dots_allowed() { ODD } else { ODD | DOT },
            extra: ctx
                .extra_tags
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str(), check.tag(key, value)))
                .collect(),
        }
    }

    /// Decodes the point on `line` (an item of [`line_protocol_lines`], starting on
    /// line `line_no`), appends it to `batch` if it is accepted and returns the fixes it
    /// needed.
    pub fn decode(
        &mut self,
        line: &'a str,
        line_no: usize,
        batch: &mut PointBatch<'a>,
    ) -> Result<Vec<Fix>, Rejection> {
        let ctx = self.ctx;
        let mut fixes = Vec::new();
        // The point's tags and fields go straight onto the ends of the batch's
        // vectors; whatever does not end in the batch as it is is taken off again.
        let start = batch.parts_start();
        let (tags, fields) = batch.parts_mut();
        let parsed = Parser::new(line)
            .parse(tags, fields, &mut fixes)
            .map_err(|e| syntax_rejection(line, line_no, e))
            .and_then(|parsed| {
                let time_ns = line_time(parsed.timestamp, &parsed.measurement, line_no, &ctx)?;
                Ok((parsed.measurement, time_ns, parsed.seen))
            });
        let (measurement, time_ns, seen) = match parsed {
            Ok(parsed) => parsed,
            Err(rejection) => {
                tags.truncate(start.0);
                fields.truncate(start.1);
                return Err(rejection);
            }
        };
        if fixes.is_empty() && self.check.judges() {
            sort_unique(tags, start.0);
            sort_unique(fields, start.1);
            let check = self.check;
            // Names without a byte the rules would look at need only their lengths
            // and the reserved keys checked.
            let plain = seen & self.odd == 0;
            let own_clean = if plain {
                check.plain_measurement(&measurement)
                    && tags[start.0..]
                        .iter()
                        .all(|(key, value)| check.plain_tag(key, value))
            } else {
                check.measurement(&measurement)
                    && tags[start.0..]
                        .iter()
                        .all(|(key, value)| check.tag(key, value))
            };
            // The extra tags the rules would add (where the key is free), so that
            // they are checked with the point's own.
            let extra_clean = add_extra_tags(&self.extra, tags, start.0, &fields[start.1..]);
            let (point_tags, point_fields) = (&tags[start.0..], &fields[start.1..]);
            let fields_clean = if plain {
                point_fields
                    .iter()
                    .all(|(key, value)| check.plain_field(point_tags, key, value))
            } else {
                point_fields
                    .iter()
                    .all(|(key, value)| check.field(point_tags, key, value))
            };
            let clean = own_clean
                && extra_clean
                && fields_clean
                && check.counts_and_defaults(point_tags, point_fields);
            debug_assert_eq!(
                clean,
                rules::passes_unchanged(ctx.category, &measurement, point_tags, point_fields)
            );
            if clean {
                batch.commit_parts(ctx.category, measurement, start, time_ns);
                return Ok(fixes);
            }
        }
        // Extra tags added above are added by the rules the same way, key for key.
        let accepted = apply_rules(
            measurement,
            tags.drain(start.0..),
            fields.drain(start.1..),
            time_ns,
            line_no,
            &ctx,
            fixes,
        )?;
        batch.push_point(accepted.point);
        Ok(accepted.fixes)
    }
}

/// Adds each extra tag whose key the point leaves free (neither a tag nor a field of
/// it) to its tags, which start at `start` and stay in key order; false if one of
/// those added would not pass the tag rules unchanged.
fn add_extra_tags<'a>(
    extra: &[(&'a str, &'a str, bool)],
    tags: &mut Vec<Tag<'a>>,
    start: usize,
    fields: &[Field<'a>],
) -> bool {
    let mut clean = true;
    for &(key, value, tag_clean) in extra {
        // The extra keys differ from each other: among the tags, only one of the
        // point's own can have this key.
        if let Err(at) = tags[start..].binary_search_by(|(k, _)| key_order(k, key)) {
            if find(fields, key).is_none() {
                tags.insert(start + at, (Cow::Borrowed(key), Cow::Borrowed(value)));
                clean &= tag_clean;
            }
        }
    }
    clean
}

/// Where `key` is in entries sorted by key.
fn find<V>(entries: &[(Cow<'_, str>, V)], key: &str) -> Option<usize> {
    entries.binary_search_by(|(k, _)| key_order(k, key)).ok()
}

/// Sorts the entries from `start` on by key, keeping the last value of a repeated key
/// (as a map that each entry is inserted into in turn would).
fn sort_unique<V>(entries: &mut Vec<(Cow<'_, str>, V)>, start: usize) {
    let run = &mut entries[start..];
    if run.windows(2).all(|w| key_order(&w[0].0, &w[1].0).is_lt()) {
        return;
    }
    // Stable: equal keys stay in line order, and the last of each run is kept.
    run.sort_by(|a, b| key_order(&a.0, &b.0));
    // Entries before `kept` are final; those from `kept` to `i` were dropped.
    let mut kept = start;
    for i in start..entries.len() {
        if entries
            .get(i + 1)
            .is_some_and(|next| next.0 == entries[i].0)
        {
            continue;
        }
        entries.swap(kept, i);
        kept += 1;
    }
    entries.truncate(kept);
}

/// "line 3, column 12: expected ..." — the column counts characters, 1-based, on the
/// physical line where the error is (a point may span lines inside quoted strings).
fn syntax_rejection(line: &str, line_no: usize, e: LineError) -> Rejection {
    let at = e.at.min(line.len());
    let before = &line[..rules::floor_char_boundary(line, at)];
    let line_no = line_no + before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Rejection::new(
        e.reason,
        format!("line {line_no}, column {column}: {}", e.message),
    )
}

/// What each byte is to a token, as a table: one lookup per byte of a token. A byte
/// may end the token ([`STOP`]; the backslash too, which may start an escape), and a
/// byte may be one the rules would change in that kind of name ([`ODD`], [`DOT`]):
/// a line whose names hold none of those is checked without a byte-by-byte scan.
struct Stops([u8; 256]);

/// Ends the token (or, the backslash, may start an escape).
const STOP: u8 = 1;
/// A byte that the rules fix or refuse in this kind of name (a backslash too: it
/// escapes, or it trails).
const ODD: u8 = 2;
/// A dot, which keys of some categories may not hold.
const DOT: u8 = 4;

impl Stops {
    const fn new(stops: &[u8], odd: &[u8], dot: bool) -> Stops {
        let mut table = [0u8; 256];
        table[b'\\' as usize] = STOP | ODD;
        let mut i = 0;
        while i < stops.len() {
            table[stops[i] as usize] = STOP;
            i += 1;
        }
        let mut i = 0;
        while i < odd.len() {
            table[odd[i] as usize] = ODD;
            i += 1;
        }
        if dot {
            table[b'.' as usize] = DOT;
        }
        Stops(table)
    }
}

// The odd bytes: a measurement with a newline, NUL or byte-order mark (its first byte,
// 0xEF, which a few other characters start with too), a key or tag value with a
// newline (docs/POINTS.md).
static MEASUREMENT_END: Stops = Stops::new(b", ", b"\n\0\xEF", false);
static KEY_END: Stops = Stops::new(b",= ", b"\n", true);
static TAG_VALUE_END: Stops = Stops::new(b", ", b"\n", false);
static TIMESTAMP_END: Stops = Stops::new(b" \t", b"", false);

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// The [`ODD`] and [`DOT`] bits of every byte of the tokens read so far.
    seen: u8,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
            seen: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn parse(
        mut self,
        tags: &mut Vec<Tag<'a>>,
        fields: &mut Vec<Field<'a>>,
        fixes: &mut Vec<Fix>,
    ) -> Result<Parsed<'a>, LineError> {
        self.skip_blanks();
        let measurement = self.token(&MEASUREMENT_END);
        if measurement.is_empty() {
            return Err(syntax(self.i, "expected a measurement name"));
        }
        let who = Preview(&measurement);

        while self.peek() == Some(b',') {
            self.i += 1;
            let key_at = self.i;
            let key = self.token(&KEY_END);
            if key.is_empty() {
                return Err(syntax(
                    key_at,
                    format!("expected a tag key after ',' (point {who})"),
                ));
            }
            if self.peek() != Some(b'=') {
                return Err(syntax(
                    self.i,
                    format!("expected '=' after tag key {} (point {who})", preview(&key)),
                ));
            }
            self.i += 1;
            // An empty value is read as such; the rules drop it with a fix.
            let value = self.token(&TAG_VALUE_END);
            tags.push((key, value));
        }

        if self.peek() != Some(b' ') {
            let what = match self.peek() {
                None => "end of line".to_owned(),
                Some(_) => format!("{:?}", self.s[self.i..].chars().next().unwrap_or(' ')),
            };
            return Err(syntax(
                self.i,
                format!("expected a space and fields after the measurement and tags, found {what} (point {who})"),
            ));
        }
        self.skip_blanks();

        loop {
            let key_at = self.i;
            let key = self.token(&KEY_END);
            if key.is_empty() {
                return Err(syntax(
                    key_at,
                    format!("expected a field key (point {who})"),
                ));
            }
            if self.peek() != Some(b'=') {
                return Err(syntax(
                    self.i,
                    format!(
                        "expected '=' after field key {} (point {who})",
                        preview(&key)
                    ),
                ));
            }
            self.i += 1;
            let value = match self.field_value(who, &key)? {
                RawValue::Value(v) => v,
                RawValue::BigUnsigned(u) => {
                    fixes.push(Fix::new(
                        FixReason::IntToFloat,
                        format!(
                            "field {}: integer {u} exceeds i64, stored as a float",
                            preview(&key)
                        ),
                    ));
                    FieldRef::Float(u as f64)
                }
            };
            fields.push((key, value));
            if self.peek() == Some(b',') {
                self.i += 1;
                continue;
            }
            break;
        }

        let mut timestamp = None;
        if matches!(self.peek(), Some(b' ' | b'\t')) {
            self.skip_blanks();
            if self.peek().is_some() {
                let at = self.i;
                let raw = self.token(&TIMESTAMP_END);
                let t = parse_i64(&raw).ok_or_else(|| {
                    syntax(
                        at,
                        format!(
                            "expected an integer timestamp, found {} (point {who})",
                            preview(&raw)
                        ),
                    )
                })?;
                timestamp = Some(t);
                self.skip_blanks();
            }
        }
        if self.peek().is_some() {
            return Err(syntax(
                self.i,
                format!(
                    "unexpected text {} after the point (point {who})",
                    preview(&self.s[self.i..])
                ),
            ));
        }
        Ok(Parsed {
            measurement,
            timestamp,
            seen: self.seen,
        })
    }

    /// Reads an unquoted token up to (not including) an unescaped byte in `stops` or
    /// the end, undoing `\,` `\=` `\ ` `\\`. Borrowed when there is nothing to undo.
    fn token(&mut self, stops: &Stops) -> Cow<'a, str> {
        let start = self.i;
        let mut i = start;
        let mut seen = 0;
        while let Some(&b) = self.b.get(i) {
            let class = stops.0[usize::from(b)];
            if class & STOP != 0 {
                break;
            }
            seen |= class;
            i += 1;
        }
        self.i = i;
        self.seen |= seen;
        if self.b.get(i) != Some(&b'\\') {
            return Cow::Borrowed(&self.s[start..i]);
        }
        self.token_with_backslash(start, stops)
    }

    /// The rest of [`Parser::token`] from a backslash on (the token began at `start`).
    fn token_with_backslash(&mut self, start: usize, stops: &Stops) -> Cow<'a, str> {
        // Whatever else the token holds, its names are checked byte by byte.
        self.seen |= ODD;
        let mut owned: Option<String> = None;
        let mut run_start = start;
        while let Some(&b) = self.b.get(self.i) {
            if stops.0[usize::from(b)] & STOP == 0 {
                self.i += 1;
                continue;
            }
            if b != b'\\' {
                break;
            }
            if let Some(&next) = self.b.get(self.i + 1) {
                if ESCAPABLE.contains(&next) {
                    let buf = owned.get_or_insert_with(String::new);
                    buf.push_str(&self.s[run_start..self.i]);
                    buf.push(char::from(next));
                    self.i += 2;
                    run_start = self.i;
                    continue;
                }
            }
            self.i += 1;
        }
        match owned {
            None => Cow::Borrowed(&self.s[start..self.i]),
            Some(mut buf) => {
                buf.push_str(&self.s[run_start..self.i]);
                Cow::Owned(buf)
            }
        }
    }

    fn field_value(&mut self, who: Preview<'_>, key: &str) -> Result<RawValue<'a>, LineError> {
        if self.peek() == Some(b'"') {
            return self.quoted().map(|s| RawValue::Value(FieldRef::Str(s)));
        }
        let at = self.i;
        // Field values have no escapes; they end at ',' or whitespace.
        while !matches!(self.peek(), None | Some(b',' | b' ' | b'\t')) {
            self.i += 1;
        }
        let raw = &self.s[at..self.i];
        if raw.is_empty() {
            return Err(syntax(at, "expected a field value after '='"));
        }
        let bad = |kind: &str| syntax(at, format!("invalid {kind} field value {}", preview(raw)));
        if let Some(digits) = raw.strip_suffix('i') {
            return parse_i64(digits)
                .map(|i| RawValue::Value(FieldRef::Int(i)))
                .ok_or_else(|| bad("integer"));
        }
        if let Some(digits) = raw.strip_suffix('u') {
            // DataKit (and InfluxDB 1.x) store unsigned as signed where it fits.
            let u = digits.parse::<u64>().map_err(|_| bad("unsigned integer"))?;
            return Ok(match i64::try_from(u) {
                Ok(i) => RawValue::Value(FieldRef::Int(i)),
                Err(_) => RawValue::BigUnsigned(u),
            });
        }
        match raw {
            "t" | "T" | "true" | "True" | "TRUE" => {
                return Ok(RawValue::Value(FieldRef::Bool(true)))
            }
            "f" | "F" | "false" | "False" | "FALSE" => {
                return Ok(RawValue::Value(FieldRef::Bool(false)))
            }
            _ => {}
        }
        match parse_f64(raw) {
            Some(f) if f.is_finite() => Ok(RawValue::Value(FieldRef::Float(f))),
            Some(_) => Err(LineError {
                at,
                reason: RejectReason::InvalidFieldValue,
                message: format!(
                    "field {} of point {who} is {raw}; fields must be finite numbers",
                    preview(key)
                ),
            }),
            None => Err(syntax(
                at,
                format!(
                    "invalid field value {}: expected a number, 1i, 1u, a boolean or a \"quoted string\"",
                    preview(raw)
                ),
            )),
        }
    }

    /// Reads `"..."` starting at the opening quote. `\"` and `\\` are escapes; any other
    /// backslash is kept, as InfluxDB does.
    fn quoted(&mut self) -> Result<Cow<'a, str>, LineError> {
        let open = self.i;
        self.i += 1;
        let start = self.i;
        let mut owned: Option<String> = None;
        let mut run_start = self.i;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let value = match owned {
                        None => Cow::Borrowed(&self.s[start..self.i]),
                        Some(mut out) => {
                            out.push_str(&self.s[run_start..self.i]);
                            Cow::Owned(out)
                        }
                    };
                    self.i += 1;
                    return Ok(value);
                }
                b'\\' if matches!(self.b.get(self.i + 1), Some(b'"' | b'\\')) => {
                    owned
                        .get_or_insert_with(String::new)
                        .push_str(&self.s[run_start..self.i]);
                    self.i += 1;
                    run_start = self.i;
                    self.i += 1;
                }
                _ => self.i += 1,
            }
        }
        Err(syntax(open, "unterminated string: no closing '\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{Category, FieldValue};

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn parse_in(
        category: Category,
        precision: Option<Precision>,
        body: &str,
    ) -> Vec<(usize, Result<Accepted, Rejection>)> {
        let extra = BTreeMap::new();
        let ctx = DecodeContext {
            category,
            precision,
            now_ns: NOW,
            extra_tags: &extra,
        };
        parse_line_protocol(body, &ctx)
    }

    fn parse(body: &str) -> Vec<(usize, Result<Accepted, Rejection>)> {
        parse_in(Category::Logging, None, body)
    }

    fn one(body: &str) -> Point {
        let mut results = parse_in(Category::Rum, None, body);
        assert_eq!(results.len(), 1, "{body:?}: {results:?}");
        match results.remove(0).1 {
            Ok(a) => {
                assert!(a.fixes.is_empty(), "{body:?}: {:?}", a.fixes);
                a.point
            }
            Err(e) => panic!("{body:?}: {e}"),
        }
    }

    fn err(body: &str) -> Rejection {
        let mut results = parse_in(Category::Rum, None, body);
        assert_eq!(results.len(), 1, "{body:?}: {results:?}");
        match results.remove(0).1 {
            Ok(a) => panic!("{body:?} parsed as {:?}", a.point),
            Err(e) => e,
        }
    }

    fn fields(p: &Point) -> Vec<(&str, &FieldValue)> {
        p.fields.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    #[test]
    fn basic_point() {
        let p = one("cpu,host=a,cpu=cpu0 usage=1.5,n=3i,ok=true,s=\"hi\" 1700000000000000001");
        assert_eq!(p.measurement, "cpu");
        assert_eq!(p.tags.len(), 2);
        assert_eq!(p.tags["host"], "a");
        assert_eq!(
            fields(&p),
            [
                ("n", &FieldValue::Int(3)),
                ("ok", &FieldValue::Bool(true)),
                ("s", &FieldValue::Str("hi".into())),
                ("usage", &FieldValue::Float(1.5)),
            ]
        );
        assert_eq!(p.time_ns, 1_700_000_000_000_000_001);
        assert_eq!(p.category, Category::Rum);
    }

    #[test]
    fn no_tags_and_no_timestamp() {
        let p = one("m v=1");
        assert!(p.tags.is_empty());
        assert_eq!(p.fields["v"], FieldValue::Float(1.0));
        assert_eq!(p.time_ns, NOW);
        // Extra blanks between sections and after the point are tolerated.
        let p = one("  m,t=x   v=1i   17  ");
        assert_eq!(p.fields["v"], FieldValue::Int(1));
        assert_eq!(p.time_ns, 17);
    }

    #[test]
    fn integer_suffixes() {
        let p = one("m a=1i,b=-9223372036854775808i,c=9223372036854775807u,d=0u");
        assert_eq!(p.fields["a"], FieldValue::Int(1));
        assert_eq!(p.fields["b"], FieldValue::Int(i64::MIN));
        assert_eq!(p.fields["c"], FieldValue::Int(i64::MAX));
        assert_eq!(p.fields["d"], FieldValue::Int(0));
    }

    #[test]
    fn unsigned_beyond_i64_becomes_float_with_fix() {
        let results = parse_in(Category::Metric, None, "m big=18446744073709551615u");
        let a = results[0].1.as_ref().unwrap();
        assert_eq!(a.point.fields["big"], FieldValue::Float(u64::MAX as f64));
        assert_eq!(a.fixes.len(), 1);
        assert_eq!(a.fixes[0].reason, FixReason::IntToFloat);
        assert!(a.fixes[0].message.contains("\"big\""));
    }

    #[test]
    fn boolean_spellings() {
        for t in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(
                one(&format!("m b={t}")).fields["b"],
                FieldValue::Bool(true),
                "{t}"
            );
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(
                one(&format!("m b={f}")).fields["b"],
                FieldValue::Bool(false),
                "{f}"
            );
        }
        let e = err("m b=yes");
        assert_eq!(e.reason, RejectReason::Syntax);
        assert!(e.message.contains("\"yes\""), "{}", e.message);
    }

    #[test]
    fn float_spellings() {
        let p = one("m a=1,b=-1.5,c=1e3,d=2.5E-3,e=.5,f=+2");
        assert_eq!(p.fields["a"], FieldValue::Float(1.0));
        assert_eq!(p.fields["b"], FieldValue::Float(-1.5));
        assert_eq!(p.fields["c"], FieldValue::Float(1000.0));
        assert_eq!(p.fields["d"], FieldValue::Float(0.0025));
        assert_eq!(p.fields["e"], FieldValue::Float(0.5));
        assert_eq!(p.fields["f"], FieldValue::Float(2.0));
    }

    #[test]
    fn nan_and_inf_are_invalid_values_not_syntax() {
        for bad in ["NaN", "nan", "inf", "-inf", "Infinity", "1e999"] {
            let e = err(&format!("cpu ok=1,v={bad}"));
            assert_eq!(e.reason, RejectReason::InvalidFieldValue, "{bad}");
            assert!(e.message.contains("field \"v\""), "{}", e.message);
            assert!(e.message.contains("\"cpu\""), "{}", e.message);
            assert!(e.message.starts_with("line 1, column 12:"), "{}", e.message);
        }
    }

    #[test]
    fn quoted_strings_with_escapes() {
        let p = one(r#"m s="a \"quoted\" \\ back\slash, = space""#);
        assert_eq!(
            p.fields["s"],
            FieldValue::Str(r#"a "quoted" \ back\slash, = space"#.into())
        );
        let p = one(r#"m empty="",x=1i"#);
        assert_eq!(p.fields["empty"], FieldValue::Str(String::new()));
        assert_eq!(p.fields["x"], FieldValue::Int(1));
    }

    #[test]
    fn escapes_in_measurement_keys_and_tag_values() {
        let p = one(r"my\ meas\,x,tag\ key\==va\,l\ ue\=,path=C:\dir\x f\ k\,\==1i");
        assert_eq!(p.measurement, "my meas,x");
        assert_eq!(p.tags["tag key="], "va,l ue=");
        assert_eq!(p.tags["path"], r"C:\dir\x");
        assert_eq!(p.fields["f k,="], FieldValue::Int(1));
        // An unescaped '=' in a tag value is accepted as a character.
        let p = one("m,t=a=b v=1");
        assert_eq!(p.tags["t"], "a=b");
        // An unescaped '=' in a measurement too.
        assert_eq!(one("a=b v=1").measurement, "a=b");
    }

    #[test]
    fn multi_line_string_spans_lines_and_numbers_follow() {
        let body = "log message=\"first\nsecond\n# not a comment\" 5\nm2 v=1i 6\n";
        let results = parse(body);
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].0, 1);
        let a = results[0].1.as_ref().unwrap();
        assert_eq!(
            a.point.fields["message"],
            FieldValue::Str("first\nsecond\n# not a comment".into())
        );
        assert_eq!(
            results[1].0, 4,
            "line numbers count the lines inside strings"
        );
        assert_eq!(results[1].1.as_ref().unwrap().point.time_ns, 6);
    }

    #[test]
    fn blank_lines_comments_and_crlf() {
        let body = "\n# comment with a \" quote\n   \r\nm v=1i 1\r\n\t# indented comment\r\nm v=2i 2\r\n\r\n";
        let results = parse(body);
        let lines: Vec<usize> = results.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [4, 6]);
        for (_, r) in &results {
            let a = r.as_ref().unwrap();
            assert_eq!(a.point.measurement, "m");
        }
        assert_eq!(results[1].1.as_ref().unwrap().point.time_ns, 2);
    }

    proptest::proptest! {
        /// Plain lines taken at their newline are the lines the quote-aware scan finds.
        #[test]
        fn plain_lines_are_found_as_the_full_scan_finds_them(
            body in "([a-c#\"\\\\ =,\t\r\n]|\u{3000}|é){0,40}"
        ) {
            let fast: Vec<_> = LogicalLines::new(&body).collect();
            let full: Vec<_> = LogicalLines { plain_lines: false, ..LogicalLines::new(&body) }.collect();
            proptest::prop_assert_eq!(fast, full);
        }
    }

    #[test]
    fn bad_line_does_not_stop_the_others() {
        let body = "good v=1i 1\nbad,tag v=1i 2\nbad2 v=\"unterminated 3\n";
        let results = parse(body);
        assert_eq!(results.len(), 3);
        assert!(results[0].1.is_ok());
        let e = results[1].1.as_ref().unwrap_err();
        assert_eq!(results[1].0, 2);
        assert_eq!(e.reason, RejectReason::Syntax);
        assert_eq!(
            e.message,
            "line 2, column 8: expected '=' after tag key \"tag\" (point \"bad\")"
        );
        let e = results[2].1.as_ref().unwrap_err();
        assert_eq!(results[2].0, 3);
        assert!(e.message.contains("unterminated string"), "{}", e.message);
        assert!(e.message.starts_with("line 3, column 8:"), "{}", e.message);
    }

    #[test]
    fn good_line_after_a_bad_one_mid_value() {
        // The error is before a multi-line string; the string still belongs to line 1.
        let body = "m bad=zz,s=\"a\nb\" 1\nm v=1i 2";
        let results = parse(body);
        assert_eq!(results.len(), 2);
        assert!(results[0].1.is_err());
        assert_eq!(results[1].0, 3);
        assert!(results[1].1.is_ok());
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        let cases = [
            (",t=1 v=1", "line 1, column 1: expected a measurement name"),
            ("m", "line 1, column 2: expected a space and fields after the measurement and tags, found end of line"),
            ("m,=x v=1", "line 1, column 3: expected a tag key after ','"),
            ("m v", "line 1, column 4: expected '=' after field key \"v\""),
            ("m =1", "line 1, column 3: expected a field key"),
            ("m v=", "line 1, column 5: expected a field value after '='"),
            ("m v=1,", "line 1, column 7: expected a field key"),
            ("m v=1x", "line 1, column 5: invalid field value \"1x\""),
            ("m v=12.5i", "line 1, column 5: invalid integer field value \"12.5i\""),
            ("m v=-1u", "line 1, column 5: invalid unsigned integer field value \"-1u\""),
            ("m v=99999999999999999999i", "line 1, column 5: invalid integer field value"),
            ("m v=1 12.5", "line 1, column 7: expected an integer timestamp, found \"12.5\""),
            ("m v=1 1 2", "line 1, column 9: unexpected text \"2\" after the point"),
            ("m v=\"x\"y", "line 1, column 8: unexpected text \"y\""),
            ("m,t=1,u v=1", "line 1, column 8: expected '=' after tag key \"u\""),
            ("  m s=\"abc", "line 1, column 7: unterminated string"),
            ("温度 v=x", "line 1, column 6: invalid field value \"x\""),
        ];
        for (body, expected) in cases {
            let e = err(body);
            assert_eq!(e.reason, RejectReason::Syntax, "{body:?}");
            assert!(
                e.message.starts_with(expected),
                "{body:?}: got {:?}",
                e.message
            );
        }
    }

    #[test]
    fn error_column_is_on_the_physical_line() {
        let e = err("m s=\"a\nbc\",v=oops");
        assert!(e.message.starts_with("line 2, column 7:"), "{}", e.message);
    }

    #[test]
    fn timestamps_use_precision_default_ns() {
        assert_eq!(
            one("m v=1 1700000000").time_ns,
            1_700_000_000,
            "no guessing in LP"
        );
        let cases = [
            (Precision::Nanoseconds, 1),
            (Precision::Microseconds, 1_000),
            (Precision::Milliseconds, 1_000_000),
            (Precision::Seconds, 1_000_000_000),
            (Precision::Minutes, 60_000_000_000),
            (Precision::Hours, 3_600_000_000_000),
        ];
        for (p, factor) in cases {
            let r = parse_in(Category::Metric, Some(p), "m v=1 7");
            assert_eq!(r[0].1.as_ref().unwrap().point.time_ns, 7 * factor, "{p}");
        }
    }

    #[test]
    fn zero_negative_and_overflowing_timestamps() {
        assert_eq!(one("m v=1 0").time_ns, NOW);
        let e = err("cpu v=1 -5");
        assert_eq!(e.reason, RejectReason::InvalidTime);
        assert!(
            e.message.contains("negative") && e.message.contains("\"cpu\""),
            "{}",
            e.message
        );
        let r = parse_in(
            Category::Metric,
            Some(Precision::Seconds),
            "m v=1 9999999999",
        );
        let e = r[0].1.as_ref().unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidTime);
        assert!(e.message.contains("out of range"), "{}", e.message);
    }

    #[test]
    fn rules_apply_to_line_protocol_too() {
        let r = parse_in(Category::Metric, None, "m s=\"x\",v=1i\nonly s=\"x\"");
        let a = r[0].1.as_ref().unwrap();
        assert!(!a.point.fields.contains_key("s"));
        assert_eq!(a.fixes[0].reason, FixReason::MetricStringField);
        let e = r[1].1.as_ref().unwrap_err();
        assert_eq!(e.reason, RejectReason::NoFields);
        assert!(
            e.message.starts_with("line 2: point \"only\""),
            "{}",
            e.message
        );

        let r = parse_in(Category::Logging, None, "nginx message=\"x\"");
        let a = r[0].1.as_ref().unwrap();
        assert_eq!(a.point.fields["status"], FieldValue::Str("info".into()));

        let r = parse_in(Category::Keyevent, None, "measurement df_status=\"bad\"");
        assert_eq!(
            r[0].1.as_ref().unwrap_err().reason,
            RejectReason::MissingEventKey
        );
    }

    #[test]
    fn empty_tag_value_is_dropped_by_the_rules() {
        let r = parse_in(Category::Metric, None, "m,t=,u=1 v=1");
        let a = r[0].1.as_ref().unwrap();
        assert!(!a.point.tags.contains_key("t"));
        assert_eq!(a.point.tags["u"], "1");
        assert_eq!(a.fixes[0].reason, FixReason::EmptyTagValue);
    }

    #[test]
    fn empty_body_gives_nothing() {
        assert!(parse("").is_empty());
        assert!(parse("\n\n# x\n").is_empty());
    }

    // ---- encode -> parse round trips -------------------------------------------------

    fn round_trip(p: &Point) -> Point {
        let mut line = String::new();
        p.write_line_protocol(&mut line);
        let extra = BTreeMap::new();
        let ctx = DecodeContext {
            category: p.category,
            precision: None,
            now_ns: NOW,
            extra_tags: &extra,
        };
        let mut results = parse_line_protocol(&line, &ctx);
        assert_eq!(results.len(), 1, "{line:?}: {results:?}");
        let (line_no, result) = results.remove(0);
        assert_eq!(line_no, 1);
        match result {
            Ok(a) => {
                assert!(a.fixes.is_empty(), "{line:?}: {:?}", a.fixes);
                a.point
            }
            Err(e) => panic!("{line:?}: {e}"),
        }
    }

    const NASTY: [&str; 16] = [
        "plain",
        "with space",
        "comma,here",
        "equals=here",
        "quote\"here",
        "back\\slash",
        "C:\\Windows\\System32",
        "\\leading",
        "a\\,b",
        "a\\=b",
        "a\\ b",
        "a\\\\b",
        "a\\\\\\,b",
        "unicode 温度 😀 é",
        "tab\there",
        "#hash,= \"\\ mixed",
    ];

    #[test]
    fn nasty_strings_round_trip_everywhere() {
        for s in NASTY {
            let p = Point {
                category: Category::Rum,
                measurement: format!("m{s}"),
                tags: [
                    (format!("k{s}"), format!("v{s}")),
                    ("x".to_string(), s.to_string()),
                ]
                .into_iter()
                .collect(),
                fields: [
                    (format!("f{s}"), FieldValue::Str(s.to_string())),
                    (s.to_string(), FieldValue::Int(1)),
                ]
                .into_iter()
                .collect(),
                time_ns: 1_700_000_000_123_456_789,
            };
            assert_eq!(round_trip(&p), p, "{s:?}");
        }
    }

    #[test]
    fn multi_line_log_messages_round_trip() {
        let message = "Traceback (most recent call last):\n  File \"x.py\", line 1\r\n    raise ValueError(\"a\\b\")\nValueError: a\\b\n\n# trailing\n";
        let p = Point {
            category: Category::Logging,
            measurement: "python".into(),
            tags: [("service".to_string(), "app".to_string())]
                .into_iter()
                .collect(),
            fields: [
                ("message".to_string(), FieldValue::Str(message.into())),
                ("status".to_string(), FieldValue::Str("error".into())),
            ]
            .into_iter()
            .collect(),
            time_ns: 42,
        };
        assert_eq!(round_trip(&p), p);

        // Several such points in one body keep their boundaries and line numbers.
        let mut body = String::new();
        p.write_line_protocol(&mut body);
        p.write_line_protocol(&mut body);
        let r = parse_in(Category::Logging, None, &body);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, 1);
        assert_eq!(r[1].0, 1 + message.matches('\n').count() + 1);
        assert_eq!(r[1].1.as_ref().unwrap().point, p);
    }

    #[test]
    fn numbers_round_trip_exactly() {
        let floats = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.0 / 3.0,
            1e21,
            1e-7,
            -2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        let ints = [0, 1, -1, i64::MAX, i64::MIN];
        let mut fields = BTreeMap::new();
        for (i, f) in floats.iter().enumerate() {
            fields.insert(format!("f{i}"), FieldValue::Float(*f));
        }
        for (i, n) in ints.iter().enumerate() {
            fields.insert(format!("i{i}"), FieldValue::Int(*n));
        }
        fields.insert("t".into(), FieldValue::Bool(true));
        fields.insert("u".into(), FieldValue::Bool(false));
        let p = Point {
            category: Category::Metric,
            measurement: "nums".into(),
            tags: BTreeMap::new(),
            fields,
            time_ns: i64::MAX,
        };
        let back = round_trip(&p);
        assert_eq!(back, p);
        // -0.0 == 0.0 in PartialEq; check the sign survived too.
        assert!(matches!(back.fields["f1"], FieldValue::Float(z) if z.is_sign_negative()));
    }

    #[test]
    fn json_decoded_points_round_trip_through_lp() {
        // What a script sends, through the rules, out as LP and back: same point.
        let extra: BTreeMap<String, String> = [("host".to_string(), "h 1".to_string())]
            .into_iter()
            .collect();
        let ctx = DecodeContext {
            category: Category::Logging,
            precision: None,
            now_ns: NOW,
            extra_tags: &extra,
        };
        let v = serde_json::json!({
            "measurement": "app,log",
            "tags": {"path": "C:\\logs\\", "a.b": "x=y"},
            "fields": {"message": "multi\nline \"quoted\"", "n": 1, "f": 2.0},
            "time": 1_700_000_000.5,
        });
        let a = crate::point::from_json(&v, &ctx).unwrap();
        let mut line = String::new();
        a.point.write_line_protocol(&mut line);
        let r = parse_line_protocol(&line, &ctx);
        let b = r[0].1.as_ref().unwrap();
        assert!(b.fixes.is_empty(), "{:?}", b.fixes);
        assert_eq!(b.point, a.point);
        assert_eq!(b.point.fields["f"], FieldValue::Float(2.0));
        assert_eq!(b.point.time_ns, 1_700_000_000_500_000_000);
    }
}
