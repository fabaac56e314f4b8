//! The rules every decoded point passes through, whatever format it arrived in.
//!
//! Decoders (`json.rs`, `lp_parse.rs`) only turn bytes into a raw [`Point`] and reject
//! what cannot be represented at all. This module then applies DataKit's point checker
//! (cliutils `point/check.go`) plus the per-category rules from DESIGN §2, in one fixed
//! order so that the same input always yields the same fixes:
//!
//! 1. measurement: required; no NUL nor byte-order mark; newlines become spaces; cut
//!    to 1024 bytes
//! 2. extra tags (input/global/host) added where the key is free
//! 3. tag keys and values: newline, length, trailing `\`, dots, empty, reserved keys
//! 4. field keys and values: the same for keys, then tag/field clashes, metric
//!    strings, string length
//! 5. tag and field counts
//! 6. at least one field
//! 7. category defaults (logging `status`, object `name`); keyevent required keys
//!
//! Whatever can be repaired becomes a [`Fix`]; only points that cannot be stored
//! meaningfully are rejected. POINTS.md is the user-facing version of this file.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use super::batch::{key_order, Field, FieldRef, Tag};
use super::outcome::{FixReason, RejectReason};
use super::{Category, DecodeContext, FieldValue, Fix, Point, Rejection};

/// Longest measurement, in bytes (DataKit `maxMeasurementLen`).
pub const MAX_MEASUREMENT_LEN: usize = 1024;
/// Most tags on one point (DataKit `maxTags`).
pub const MAX_TAGS: usize = 256;
/// Most fields on one point (DataKit `maxFields`).
pub const MAX_FIELDS: usize = 1024;
/// Longest tag or field key, in bytes (DataKit `defaultKeyLen`).
pub const MAX_KEY_LEN: usize = 256;
/// Longest tag value, in bytes (DataKit `maxTagValLen`).
pub const MAX_TAG_VALUE_LEN: usize = 1024;
/// Longest string field value, in bytes (DataKit `defaultMaxFieldValLen`, 32 MiB).
pub const MAX_FIELD_VALUE_LEN: usize = 32 * 1024 * 1024;

/// The values a keyevent's `df_status` may take.
pub const KEYEVENT_STATUSES: [&str; 6] = ["ok", "info", "warning", "error", "critical", "nodata"];
/// Keys a keyevent must carry, as a tag or as a field.
pub const KEYEVENT_REQUIRED: [&str; 4] = ["df_status", "df_event_id", "df_title", "df_source"];

/// How a point of `category` is treated; one place to read the category differences.
#[derive(Clone, Copy)]
struct CategoryRules {
    /// Replace `.` with `_` in keys (DataKit `WithDotInKey(false)`).
    no_dots: bool,
    /// Keys dropped because the backend derives them from the measurement.
    disabled_keys: &'static [&'static str],
}

impl CategoryRules {
    fn of(category: Category) -> CategoryRules {
        match category {
            // For logging the backend stores the measurement as `source`; for objects
            // as `class`. A key of that name would clash, so DataKit drops it.
            Category::Logging => CategoryRules {
                no_dots: true,
                disabled_keys: &["source", "date"],
            },
            Category::Object | Category::CustomObject => CategoryRules {
                no_dots: true,
                disabled_keys: &["class", "date"],
            },
            Category::Metric | Category::Keyevent | Category::Rum => CategoryRules {
                no_dots: false,
                disabled_keys: &[],
            },
        }
    }

    fn is_disabled(&self, key: &str) -> bool {
        self.disabled_keys.contains(&key)
    }
}

/// Applies every rule to `point` (whose `category` and `time_ns` are already set),
/// appending fixes to `fixes`.
pub(crate) fn apply(
    mut point: Point,
    ctx: &DecodeContext<'_>,
    fixes: &mut Vec<Fix>,
) -> Result<Point, Rejection> {
    let rules = CategoryRules::of(point.category);

    fix_measurement(&mut point.measurement, fixes)?;

    for (key, value) in ctx.extra_tags {
        // DataKit's AddTag never overrides: a key the point has (as tag or field) wins.
        if !point.tags.contains_key(key) && !point.fields.contains_key(key) {
            point.tags.insert(key.clone(), value.clone());
        }
    }

    fix_tags(&mut point.tags, &rules, fixes);
    let given_fields = point.fields.len();
    fix_fields(
        &mut point.fields,
        &point.tags,
        point.category,
        &rules,
        fixes,
    );

    trim_count(
        &mut point.tags,
        MAX_TAGS,
        "tag",
        FixReason::TooManyTags,
        fixes,
    );
    trim_count(
        &mut point.fields,
        MAX_FIELDS,
        "field",
        FixReason::TooManyFields,
        fixes,
    );

    if point.fields.is_empty() {
        let why = if given_fields == 0 {
            "it has no fields".to_owned()
        } else {
            format!("all {given_fields} of its fields were dropped (see the fixes logged with it)")
        };
        return Err(Rejection::new(
            RejectReason::NoFields,
            format!(
                "point {}: {why}; a point needs at least one field",
                name_of(&point)
            ),
        ));
    }

    // After the no-fields check on purpose: a log line or object with nothing but
    // tags is a script bug, and a lone default `status` field would hide it.
    add_defaults(&mut point, fixes);

    if point.category == Category::Keyevent {
        check_keyevent(&point)?;
    }
    Ok(point)
}

/// Whether a point of `category` with these parts passes every rule of [`apply`]
/// unchanged: no fix, no rejection. `tags` (the extra tags already added where the key
/// was free) and `fields` are sorted by key, keys unique. Keyevents are not judged
/// here (false): their required keys are checked by [`apply`] only.
///
/// This lets the line-protocol decoder keep a clean point borrowed from the body;
/// [`UnchangedCheck`] holds its parts, each one a condition under which a step of
/// [`apply`] fixes or refuses.
pub(crate) fn passes_unchanged(
    category: Category,
    measurement: &str,
    tags: &[Tag<'_>],
    fields: &[Field<'_>],
) -> bool {
    let check = UnchangedCheck::of(category);
    check.measurement(measurement)
        && tags.iter().all(|(key, value)| check.tag(key, value))
        && fields
            .iter()
            .all(|(key, value)| check.field(tags, key, value))
        && check.counts_and_defaults(tags, fields)
}

/// [`passes_unchanged`] in parts, for a decoder that checks what is the same for every
/// point of a request (the extra tags) once, and the rest point by point: a point
/// passes unchanged when its measurement, every tag, every field, and its counts and
/// defaults do.
#[derive(Clone, Copy)]
pub(crate) struct UnchangedCheck {
    category: Category,
    rules: CategoryRules,
}

impl UnchangedCheck {
    pub(crate) fn of(category: Category) -> UnchangedCheck {
        UnchangedCheck {
            category,
            rules: CategoryRules::of(category),
        }
    }

    /// False for keyevents, which only [`apply`] judges.
    pub(crate) fn judges(&self) -> bool {
        self.category != Category::Keyevent
    }

    /// Whether keys may hold a dot.
    pub(crate) fn dots_allowed(&self) -> bool {
        !self.rules.no_dots
    }

    /// [`UnchangedCheck::measurement`] for a name known to hold no newline, NUL,
    /// backslash nor byte-order mark: only its length is left to check.
    #[inline]
    pub(crate) fn plain_measurement(&self, measurement: &str) -> bool {
        !measurement.is_empty() && measurement.len() <= MAX_MEASUREMENT_LEN
    }

    /// [`UnchangedCheck::tag`] for a tag known to hold no newline nor backslash, and no
    /// dot in its key unless [`UnchangedCheck::dots_allowed`]: only the lengths and the
    /// reserved keys are left to check.
    #[inline]
    pub(crate) fn plain_tag(&self, key: &str, value: &str) -> bool {
        self.plain_key(key) && !value.is_empty() && value.len() <= MAX_TAG_VALUE_LEN
    }

    /// [`UnchangedCheck::field`] for a field whose key is as in
    /// [`UnchangedCheck::plain_tag`].
    #[inline]
    pub(crate) fn plain_field(&self, tags: &[Tag<'_>], key: &str, value: &FieldRef<'_>) -> bool {
        self.plain_key(key) && self.field_beside(tags, key, value)
    }

    #[inline]
    fn plain_key(&self, key: &str) -> bool {
        !key.is_empty() && key.len() <= MAX_KEY_LEN && !self.rules.is_disabled(key)
    }

    /// Step 1 leaves the measurement as it is.
    pub(crate) fn measurement(&self, measurement: &str) -> bool {
        // One pass for the common name: none of newline, NUL or the byte-order mark's
        // first byte (0xEF, which other characters start with too).
        let suspect = |b: &u8| matches!(b, b'\n' | 0 | 0xEF);
        !measurement.is_empty()
            && measurement.len() <= MAX_MEASUREMENT_LEN
            && (!measurement.as_bytes().iter().any(suspect)
                || (!measurement.bytes().any(|b| b == b'\n' || b == 0)
                    && !measurement.contains('\u{feff}')))
    }

    /// Step 3 leaves the key of a tag or field as it is.
    #[inline]
    fn key(&self, key: &str) -> bool {
        !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && !key.ends_with('\\')
            && !key
                .bytes()
                .any(|b| b == b'\n' || (self.rules.no_dots && b == b'.'))
            && !self.rules.is_disabled(key)
    }

    /// Step 3 leaves this tag as it is.
    #[inline]
    pub(crate) fn tag(&self, key: &str, value: &str) -> bool {
        self.key(key)
            && !value.is_empty()
            && value.len() <= MAX_TAG_VALUE_LEN
            && !value.ends_with('\\')
            && !value.contains('\n')
    }

    /// Step 4 leaves this field as it is, beside `tags` (sorted by key).
    pub(crate) fn field(&self, tags: &[Tag<'_>], key: &str, value: &FieldRef<'_>) -> bool {
        self.key(key) && self.field_beside(tags, key, value)
    }

    /// Step 4 leaves this field as it is but for its key: no tag has the key, and
    /// the value is allowed in the category.
    #[inline]
    fn field_beside(&self, tags: &[Tag<'_>], key: &str, value: &FieldRef<'_>) -> bool {
        tags.binary_search_by(|(k, _)| key_order(k, key)).is_err()
            && match value {
                FieldRef::Str(s) => {
                    self.category != Category::Metric && s.len() <= MAX_FIELD_VALUE_LEN
                }
                _ => true,
            }
    }

    /// Steps 5 to 7 leave the point as it is: not too many tags or fields, at least
    /// one field, and the category's defaults already there.
    pub(crate) fn counts_and_defaults(&self, tags: &[Tag<'_>], fields: &[Field<'_>]) -> bool {
        let has = |key: &str| {
            tags.binary_search_by(|(k, _)| key_order(k, key)).is_ok()
                || fields.binary_search_by(|(k, _)| key_order(k, key)).is_ok()
        };
        let defaults_ok = match self.category {
            Category::Logging => has("status"),
            Category::Object | Category::CustomObject => has("name"),
            Category::Keyevent => false,
            Category::Metric | Category::Rum => true,
        };
        tags.len() <= MAX_TAGS && !fields.is_empty() && fields.len() <= MAX_FIELDS && defaults_ok
    }
}

/// `"cpu"`, quoted and shortened, for messages.
pub(crate) fn name_of(point: &Point) -> String {
    preview(&point.measurement)
}

/// A name shown in messages as [`preview`] shows it, but formatted only when a message
/// is actually built: every point has a name, few points need a message.
#[derive(Clone, Copy)]
pub(crate) struct Preview<'a>(pub &'a str);

impl std::fmt::Display for Preview<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&preview(self.0))
    }
}

/// A string quoted for a message and cut to 64 bytes, so a 30 MiB value cannot flood
/// the logs.
pub(crate) fn preview(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        format!("{s:?}")
    } else {
        format!("{:?}…", &s[..floor_char_boundary(s, MAX)])
    }
}

/// The largest char boundary `<= index` (std's version is not stable on our MSRV).
pub(crate) fn floor_char_boundary(s: &str, index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    let mut i = index;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn fix_measurement(m: &mut String, fixes: &mut Vec<Fix>) -> Result<(), Rejection> {
    if m.is_empty() {
        // DataKit substitutes "__default"; an empty name is always a script bug, and a
        // series called "__default" hides it, so we reject instead.
        return Err(Rejection::new(
            RejectReason::MissingMeasurement,
            "point without a measurement: \"measurement\" is empty",
        ));
    }
    // A NUL ends the name in C-string backends and a BOM (U+FEFF, invisible) makes two
    // series that look the same: neither is a fixable typo, so the point is refused.
    if m.contains('\0') || m.contains('\u{feff}') {
        return Err(Rejection::new(
            RejectReason::InvalidMeasurement,
            format!(
                "measurement {} holds a NUL or a byte-order mark (U+FEFF); refused",
                preview(m)
            ),
        ));
    }
    if m.contains('\n') {
        fixes.push(Fix::new(
            FixReason::NewlineReplaced,
            format!("measurement {}: newline replaced with a space", preview(m)),
        ));
        *m = m.replace('\n', " ");
    }
    if m.len() > MAX_MEASUREMENT_LEN {
        fixes.push(Fix::new(
            FixReason::MeasurementTooLong,
            format!(
                "measurement {} is {} bytes, cut to {MAX_MEASUREMENT_LEN}",
                preview(m),
                m.len()
            ),
        ));
        m.truncate(floor_char_boundary(m, MAX_MEASUREMENT_LEN));
    }
    Ok(())
}

/// The key as it will be stored; borrowed when it needs no change (the common case).
fn fix_key<'k>(
    key: &'k str,
    kind: &str,
    rules: &CategoryRules,
    fixes: &mut Vec<Fix>,
) -> Cow<'k, str> {
    let mut out = Cow::Borrowed(key);
    if out.contains('\n') {
        fixes.push(Fix::new(
            FixReason::NewlineReplaced,
            format!("{kind} key {}: newline replaced with a space", preview(key)),
        ));
        out = Cow::Owned(out.replace('\n', " "));
    }
    if out.len() > MAX_KEY_LEN {
        fixes.push(Fix::new(
            FixReason::KeyTooLong,
            format!(
                "{kind} key {} is {} bytes, cut to {MAX_KEY_LEN}",
                preview(key),
                out.len()
            ),
        ));
        out = Cow::Owned(out[..floor_char_boundary(&out, MAX_KEY_LEN)].to_owned());
    }
    if out.ends_with('\\') {
        // A trailing backslash would escape the `=` after it in line protocol.
        fixes.push(Fix::new(
            FixReason::TrailingBackslash,
            format!("{kind} key {}: trailing backslashes removed", preview(key)),
        ));
        out = Cow::Owned(out.trim_end_matches('\\').to_owned());
    }
    if rules.no_dots && out.contains('.') {
        fixes.push(Fix::new(
            FixReason::DotInKey,
            format!("{kind} key {}: '.' replaced with '_'", preview(key)),
        ));
        out = Cow::Owned(out.replace('.', "_"));
    }
    out
}

/// Repairs a tag value in place; `false` means the tag must be dropped.
fn fix_tag_value(key: &str, value: &mut String, fixes: &mut Vec<Fix>) -> bool {
    if value.contains('\n') {
        fixes.push(Fix::new(
            FixReason::NewlineReplaced,
            format!(
                "tag {}: newline in value replaced with a space",
                preview(key)
            ),
        ));
        *value = value.replace('\n', " ");
    }
    if value.len() > MAX_TAG_VALUE_LEN {
        fixes.push(Fix::new(
            FixReason::TagValueTooLong,
            format!(
                "tag {}: value is {} bytes, cut to {MAX_TAG_VALUE_LEN}",
                preview(key),
                value.len()
            ),
        ));
        value.truncate(floor_char_boundary(value, MAX_TAG_VALUE_LEN));
    }
    if value.ends_with('\\') {
        fixes.push(Fix::new(
            FixReason::TrailingBackslash,
            format!(
                "tag {}: trailing backslashes removed from value",
                preview(key)
            ),
        ));
        value.truncate(value.trim_end_matches('\\').len());
    }
    if value.is_empty() {
        // Line protocol has no way to write `t=` (InfluxDB rejects the whole line).
        fixes.push(Fix::new(
            FixReason::EmptyTagValue,
            format!("tag {} dropped: empty value", preview(key)),
        ));
        return false;
    }
    true
}

/// A change to a tag or field map, collected while iterating and applied after.
enum Edit {
    Drop(String),
    Rename(String, String),
}

/// The edit a (possibly fixed) key needs: drop if empty or reserved by the category,
/// rename if a fix changed it, nothing otherwise.
fn key_edit(
    key: &str,
    new_key: Cow<'_, str>,
    kind: &str,
    rules: &CategoryRules,
    fixes: &mut Vec<Fix>,
) -> Option<Edit> {
    if new_key.is_empty() {
        fixes.push(Fix::new(
            FixReason::EmptyKey,
            format!("{kind} with empty key dropped (was {})", preview(key)),
        ));
        return Some(Edit::Drop(key.to_owned()));
    }
    if rules.is_disabled(&new_key) {
        fixes.push(Fix::new(
            FixReason::DisabledKey,
            format!(
                "{kind} {} dropped: this category reserves the key",
                preview(&new_key)
            ),
        ));
        return Some(Edit::Drop(key.to_owned()));
    }
    match new_key {
        Cow::Borrowed(_) => None,
        Cow::Owned(new_key) => Some(Edit::Rename(key.to_owned(), new_key)),
    }
}

/// Applies drops first, then renames (so a rename may take a key that was dropped);
/// a rename onto a key that exists loses, as in DataKit.
fn apply_edits<V>(
    map: &mut BTreeMap<String, V>,
    mut edits: Vec<Edit>,
    kind: &str,
    fixes: &mut Vec<Fix>,
) {
    edits.sort_by_key(|e| matches!(e, Edit::Rename(..)));
    for edit in edits {
        match edit {
            Edit::Drop(key) => {
                map.remove(&key);
            }
            Edit::Rename(old, new) => {
                let Some(value) = map.remove(&old) else {
                    continue;
                };
                match map.entry(new) {
                    Entry::Vacant(slot) => {
                        slot.insert(value);
                    }
                    Entry::Occupied(taken) => fixes.push(Fix::new(
                        FixReason::KeyConflict,
                        format!(
                            "{kind} {} dropped: it became {} after the fixes above, which already exists",
                            preview(&old),
                            preview(taken.key())
                        ),
                    )),
                }
            }
        }
    }
}

fn fix_tags(tags: &mut BTreeMap<String, String>, rules: &CategoryRules, fixes: &mut Vec<Fix>) {
    let mut edits = Vec::new();
    for (key, value) in tags.iter_mut() {
        let new_key = fix_key(key, "tag", rules, fixes);
        let key_ok = !new_key.is_empty() && !rules.is_disabled(&new_key);
        if key_ok && !fix_tag_value(&new_key, value, fixes) {
            edits.push(Edit::Drop(key.clone()));
            continue;
        }
        edits.extend(key_edit(key, new_key, "tag", rules, fixes));
    }
    if !edits.is_empty() {
        apply_edits(tags, edits, "tag", fixes);
    }
}

fn fix_fields(
    fields: &mut BTreeMap<String, FieldValue>,
    tags: &BTreeMap<String, String>,
    category: Category,
    rules: &CategoryRules,
    fixes: &mut Vec<Fix>,
) {
    let mut edits = Vec::new();
    for (key, value) in fields.iter_mut() {
        let new_key = fix_key(key, "field", rules, fixes);
        if new_key.is_empty() || rules.is_disabled(&new_key) {
            edits.extend(key_edit(key, new_key, "field", rules, fixes));
            continue;
        }
        if tags.contains_key(new_key.as_ref()) {
            // DataKit: the tag overrides the field of the same name.
            fixes.push(Fix::new(
                FixReason::KeyConflict,
                format!(
                    "field {} dropped: a tag has the same key",
                    preview(&new_key)
                ),
            ));
            edits.push(Edit::Drop(key.clone()));
            continue;
        }
        if let FieldValue::Str(s) = value {
            if category == Category::Metric {
                fixes.push(Fix::new(
                    FixReason::MetricStringField,
                    format!(
                        "field {} dropped: metric fields must be numbers or booleans",
                        preview(&new_key)
                    ),
                ));
                edits.push(Edit::Drop(key.clone()));
                continue;
            }
            if s.len() > MAX_FIELD_VALUE_LEN {
                fixes.push(Fix::new(
                    FixReason::FieldValueTooLong,
                    format!(
                        "field {}: value is {} bytes, cut to {MAX_FIELD_VALUE_LEN}",
                        preview(&new_key),
                        s.len()
                    ),
                ));
                s.truncate(floor_char_boundary(s, MAX_FIELD_VALUE_LEN));
            }
        }
        edits.extend(key_edit(key, new_key, "field", rules, fixes));
    }
    if !edits.is_empty() {
        apply_edits(fields, edits, "field", fixes);
    }
}

/// Keeps the first `max` entries in key order (deterministic, unlike DataKit's map
/// order) and drops the rest with one fix naming a few of them.
fn trim_count<V>(
    map: &mut BTreeMap<String, V>,
    max: usize,
    kind: &str,
    reason: FixReason,
    fixes: &mut Vec<Fix>,
) {
    if map.len() <= max {
        return;
    }
    let given = map.len();
    let Some(first_dropped) = map.keys().nth(max).cloned() else {
        return;
    };
    let dropped = map.split_off(&first_dropped);
    let mut names: Vec<String> = dropped.keys().take(5).map(|k| preview(k)).collect();
    if dropped.len() > names.len() {
        names.push("…".to_owned());
    }
    fixes.push(Fix::new(
        reason,
        format!(
            "{given} {kind}s, limit {max}: dropped the last {} in key order ({})",
            dropped.len(),
            names.join(", ")
        ),
    ));
}

fn add_defaults(point: &mut Point, fixes: &mut Vec<Fix>) {
    let has = |p: &Point, key: &str| p.tags.contains_key(key) || p.fields.contains_key(key);
    match point.category {
        Category::Logging if !has(point, "status") => {
            // A field, as DataKit's checker adds it and its log docs describe it.
            point
                .fields
                .insert("status".to_owned(), FieldValue::Str("info".to_owned()));
            fixes.push(Fix::new(
                FixReason::DefaultStatus,
                "no \"status\": added field status=\"info\"",
            ));
        }
        Category::Object | Category::CustomObject if !has(point, "name") => {
            point.tags.insert("name".to_owned(), "default".to_owned());
            fixes.push(Fix::new(
                FixReason::DefaultName,
                "no \"name\": added tag name=\"default\"",
            ));
        }
        _ => {}
    }
}

/// A required keyevent key, from the tags or (where the shim puts them) the fields.
enum Found<'p> {
    Missing,
    Str(&'p str),
    Other(&'p FieldValue),
}

fn lookup<'p>(point: &'p Point, key: &str) -> Found<'p> {
    if let Some(v) = point.tags.get(key) {
        return Found::Str(v);
    }
    match point.fields.get(key) {
        None => Found::Missing,
        Some(FieldValue::Str(s)) if s.is_empty() => Found::Missing,
        Some(FieldValue::Str(s)) => Found::Str(s),
        Some(other) => Found::Other(other),
    }
}

fn check_keyevent(point: &Point) -> Result<(), Rejection> {
    let missing: Vec<&str> = KEYEVENT_REQUIRED
        .iter()
        .copied()
        .filter(|k| matches!(lookup(point, k), Found::Missing))
        .collect();
    if !missing.is_empty() {
        return Err(Rejection::new(
            RejectReason::MissingEventKey,
            format!(
                "keyevent {}: missing {} (a keyevent needs {} as tags or fields)",
                name_of(point),
                missing.join(", "),
                KEYEVENT_REQUIRED.join(", ")
            ),
        ));
    }
    let bad = match lookup(point, "df_status") {
        Found::Str(s) if KEYEVENT_STATUSES.contains(&s) => return Ok(()),
        Found::Str(s) => preview(s),
        Found::Other(v) => format!("{v} (a {})", v.type_name()),
        // Reported as missing just above.
        Found::Missing => return Ok(()),
    };
    Err(Rejection::new(
        RejectReason::InvalidEventStatus,
        format!(
            "keyevent {}: df_status {bad} is not one of {}",
            name_of(point),
            KEYEVENT_STATUSES.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn point(category: Category, tags: &[(&str, &str)], fields: &[(&str, FieldValue)]) -> Point {
        Point {
            category,
            measurement: "m".to_owned(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            time_ns: NOW,
        }
    }

    fn run_with(
        p: Point,
        extra: &BTreeMap<String, String>,
    ) -> Result<(Point, Vec<Fix>), Rejection> {
        let ctx = DecodeContext {
            category: p.category,
            precision: None,
            now_ns: NOW,
            extra_tags: extra,
        };
        let mut fixes = Vec::new();
        apply(p, &ctx, &mut fixes).map(|p| (p, fixes))
    }

    fn run(p: Point) -> Result<(Point, Vec<Fix>), Rejection> {
        run_with(p, &BTreeMap::new())
    }

    fn reasons(fixes: &[Fix]) -> Vec<FixReason> {
        fixes.iter().map(|f| f.reason).collect()
    }

    fn int(i: i64) -> FieldValue {
        FieldValue::Int(i)
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::Str(v.to_owned())
    }

    #[test]
    fn clean_point_passes_untouched() {
        let p = point(
            Category::Metric,
            &[("host", "a")],
            &[("v", int(1)), ("f", FieldValue::Float(1.5))],
        );
        let (out, fixes) = run(p.clone()).unwrap();
        assert_eq!(out, p);
        assert!(fixes.is_empty());
    }

    #[test]
    fn empty_measurement_is_rejected() {
        let mut p = point(Category::Metric, &[], &[("v", int(1))]);
        p.measurement.clear();
        let err = run(p).unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingMeasurement);
    }

    #[test]
    fn nul_and_bom_in_a_measurement_are_refused() {
        for name in ["cpu\0x", "\u{feff}cpu", "c\u{feff}pu"] {
            let mut p = point(Category::Metric, &[], &[("v", int(1))]);
            p.measurement = name.to_owned();
            let err = run(p).unwrap_err();
            assert_eq!(err.reason, RejectReason::InvalidMeasurement, "{name:?}");
        }
    }

    #[test]
    fn measurement_newline_and_length_are_fixed() {
        let mut p = point(Category::Metric, &[], &[("v", int(1))]);
        p.measurement = "a\nb".to_owned();
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.measurement, "a b");
        assert_eq!(reasons(&fixes), [FixReason::NewlineReplaced]);

        let mut p = point(Category::Metric, &[], &[("v", int(1))]);
        p.measurement = "x".repeat(MAX_MEASUREMENT_LEN + 5);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.measurement.len(), MAX_MEASUREMENT_LEN);
        assert_eq!(reasons(&fixes), [FixReason::MeasurementTooLong]);
        assert!(
            fixes[0].message.contains("1029 bytes"),
            "{}",
            fixes[0].message
        );

        // Exactly at the limit is fine.
        let mut p = point(Category::Metric, &[], &[("v", int(1))]);
        p.measurement = "x".repeat(MAX_MEASUREMENT_LEN);
        assert!(run(p).unwrap().1.is_empty());
    }

    #[test]
    fn truncation_respects_utf8() {
        let mut p = point(Category::Metric, &[], &[("v", int(1))]);
        // 'é' is 2 bytes: 1023 ASCII bytes + 'é' straddles the 1024 limit.
        p.measurement = format!("{}é", "x".repeat(MAX_MEASUREMENT_LEN - 1));
        let (out, _) = run(p).unwrap();
        assert_eq!(out.measurement, "x".repeat(MAX_MEASUREMENT_LEN - 1));
    }

    #[test]
    fn extra_tags_fill_free_keys_only() {
        let extra: BTreeMap<String, String> = [("host", "agent"), ("env", "prod"), ("v", "tagv")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = point(Category::Metric, &[("host", "mine")], &[("v", int(1))]);
        let (out, fixes) = run_with(p, &extra).unwrap();
        assert_eq!(out.tags["host"], "mine", "the point's own tag wins");
        assert_eq!(out.tags["env"], "prod");
        assert!(!out.tags.contains_key("v"), "a field of that name wins too");
        assert_eq!(out.fields["v"], int(1));
        assert!(fixes.is_empty());
    }

    #[test]
    fn extra_tags_count_towards_the_tag_limit() {
        let extra: BTreeMap<String, String> = (0..10)
            .map(|i| (format!("zz{i}"), "x".to_owned()))
            .collect();
        let tags: Vec<(String, String)> = (0..MAX_TAGS)
            .map(|i| (format!("t{i:03}"), "v".to_owned()))
            .collect();
        let tag_refs: Vec<(&str, &str)> =
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = point(Category::Metric, &tag_refs, &[("v", int(1))]);
        let (out, fixes) = run_with(p, &extra).unwrap();
        assert_eq!(out.tags.len(), MAX_TAGS);
        assert!(!out.tags.contains_key("zz0"));
        assert_eq!(reasons(&fixes), [FixReason::TooManyTags]);
        assert!(
            fixes[0].message.contains("dropped the last 10"),
            "{}",
            fixes[0].message
        );
    }

    #[test]
    fn too_many_fields_keeps_first_in_key_order() {
        let fields: Vec<(String, FieldValue)> = (0..MAX_FIELDS + 3)
            .map(|i| (format!("f{i:04}"), int(i as i64)))
            .collect();
        let refs: Vec<(&str, FieldValue)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let p = point(Category::Metric, &[], &refs);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields.len(), MAX_FIELDS);
        assert!(out.fields.contains_key("f1023"));
        assert!(!out.fields.contains_key("f1024"));
        assert_eq!(reasons(&fixes), [FixReason::TooManyFields]);
        assert!(
            fixes[0].message.contains("\"f1024\""),
            "{}",
            fixes[0].message
        );
    }

    #[test]
    fn long_keys_are_cut_and_collisions_dropped() {
        let long = "k".repeat(MAX_KEY_LEN + 10);
        let p = point(Category::Metric, &[(&long, "v")], &[("v", int(1))]);
        let (out, fixes) = run(p).unwrap();
        assert!(out.tags.contains_key(&"k".repeat(MAX_KEY_LEN)));
        assert_eq!(reasons(&fixes), [FixReason::KeyTooLong]);

        // Two long field keys that share their first 256 bytes: the second loses.
        let a = format!("{}a", "k".repeat(MAX_KEY_LEN));
        let b = format!("{}b", "k".repeat(MAX_KEY_LEN));
        let p = point(Category::Metric, &[], &[(&a, int(1)), (&b, int(2))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields.len(), 1);
        assert_eq!(out.fields[&"k".repeat(MAX_KEY_LEN)], int(1));
        assert_eq!(
            reasons(&fixes),
            [
                FixReason::KeyTooLong,
                FixReason::KeyTooLong,
                FixReason::KeyConflict
            ]
        );
    }

    #[test]
    fn long_tag_values_are_cut() {
        let long = "v".repeat(MAX_TAG_VALUE_LEN + 1);
        let p = point(Category::Metric, &[("t", &long)], &[("v", int(1))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags["t"].len(), MAX_TAG_VALUE_LEN);
        assert_eq!(reasons(&fixes), [FixReason::TagValueTooLong]);
        assert!(fixes[0].message.contains("\"t\""));
    }

    #[test]
    fn long_string_fields_are_cut() {
        let big = "x".repeat(MAX_FIELD_VALUE_LEN + 2);
        let p = point(
            Category::Logging,
            &[],
            &[("message", s(&big)), ("status", s("ok"))],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(
            out.fields["message"].as_str().map(str::len),
            Some(MAX_FIELD_VALUE_LEN)
        );
        assert_eq!(reasons(&fixes), [FixReason::FieldValueTooLong]);
        assert!(
            fixes[0].message.len() < 200,
            "message must not carry the value"
        );
    }

    #[test]
    fn newlines_in_keys_and_tag_values_become_spaces() {
        let p = point(Category::Metric, &[("a\nb", "x\ny")], &[("f\n", int(1))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags["a b"], "x y");
        assert_eq!(out.fields["f "], int(1));
        assert_eq!(
            reasons(&fixes)
                .iter()
                .filter(|r| **r == FixReason::NewlineReplaced)
                .count(),
            3
        );
    }

    #[test]
    fn newlines_in_string_fields_are_kept() {
        let p = point(Category::Logging, &[], &[("message", s("line1\nline2"))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields["message"], s("line1\nline2"));
        assert_eq!(reasons(&fixes), [FixReason::DefaultStatus]);
    }

    #[test]
    fn trailing_backslashes_are_removed() {
        let p = point(
            Category::Metric,
            &[("k\\\\", "C:\\dir\\")],
            &[("f\\", int(1))],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags["k"], "C:\\dir");
        assert!(out.fields.contains_key("f"));
        assert_eq!(
            reasons(&fixes)
                .iter()
                .filter(|r| **r == FixReason::TrailingBackslash)
                .count(),
            3
        );
        // Inner backslashes are legitimate (Windows paths) and stay.
        let p = point(Category::Metric, &[("path", "C:\\a\\b")], &[("v", int(1))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags["path"], "C:\\a\\b");
        assert!(fixes.is_empty());
    }

    #[test]
    fn tag_value_of_only_backslashes_is_dropped() {
        let p = point(Category::Metric, &[("t", "\\\\")], &[("v", int(1))]);
        let (out, fixes) = run(p).unwrap();
        assert!(out.tags.is_empty());
        assert_eq!(
            reasons(&fixes),
            [FixReason::TrailingBackslash, FixReason::EmptyTagValue]
        );
    }

    #[test]
    fn empty_keys_and_values_are_dropped() {
        let p = point(
            Category::Metric,
            &[("", "x"), ("t", "")],
            &[("", int(1)), ("v", int(2))],
        );
        let (out, fixes) = run(p).unwrap();
        assert!(out.tags.is_empty());
        assert_eq!(out.fields.len(), 1);
        let r = reasons(&fixes);
        assert_eq!(r.iter().filter(|x| **x == FixReason::EmptyKey).count(), 2);
        assert_eq!(
            r.iter().filter(|x| **x == FixReason::EmptyTagValue).count(),
            1
        );
    }

    #[test]
    fn dots_in_keys_follow_the_category() {
        // Metric, keyevent and rum keep dots.
        for cat in [Category::Metric, Category::Keyevent, Category::Rum] {
            let mut p = point(cat, &[("a.b", "x")], &[("c.d", int(1))]);
            if cat == Category::Keyevent {
                for (k, v) in [
                    ("df_status", "ok"),
                    ("df_event_id", "1"),
                    ("df_title", "t"),
                    ("df_source", "user"),
                ] {
                    p.fields.insert(k.into(), s(v));
                }
            }
            let (out, fixes) = run(p).unwrap();
            assert!(out.tags.contains_key("a.b"), "{cat}");
            assert!(out.fields.contains_key("c.d"), "{cat}");
            assert!(fixes.is_empty(), "{cat}: {fixes:?}");
        }
        // Logging and objects replace them.
        for cat in [Category::Logging, Category::Object, Category::CustomObject] {
            let p = point(
                cat,
                &[("a.b", "x"), ("name", "n")],
                &[("c.d", int(1)), ("status", s("ok"))],
            );
            let (out, fixes) = run(p).unwrap();
            assert!(out.tags.contains_key("a_b"), "{cat}");
            assert!(out.fields.contains_key("c_d"), "{cat}");
            assert_eq!(
                reasons(&fixes),
                [FixReason::DotInKey, FixReason::DotInKey],
                "{cat}"
            );
        }
    }

    #[test]
    fn renamed_key_that_collides_is_dropped() {
        let p = point(Category::Logging, &[], &[("a.b", int(1)), ("a_b", int(2))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(
            out.fields["a_b"],
            int(2),
            "the original key keeps its value"
        );
        assert_eq!(
            reasons(&fixes),
            [
                FixReason::DotInKey,
                FixReason::KeyConflict,
                FixReason::DefaultStatus
            ]
        );
        assert!(fixes[1].message.contains("\"a.b\""), "{}", fixes[1].message);
    }

    #[test]
    fn rename_may_take_a_key_freed_by_a_drop() {
        // Tag "a_b" is dropped (empty value) and "a.b" may then become "a_b".
        let p = point(
            Category::Logging,
            &[("a.b", "x"), ("a_b", "")],
            &[("v", int(1))],
        );
        let (out, _) = run(p).unwrap();
        assert_eq!(out.tags.get("a_b").map(String::as_str), Some("x"));
    }

    #[test]
    fn reserved_keys_are_dropped_per_category() {
        let p = point(
            Category::Logging,
            &[("source", "s"), ("host", "h")],
            &[("date", int(1)), ("v", int(2))],
        );
        let (out, fixes) = run(p).unwrap();
        assert!(!out.tags.contains_key("source"));
        assert!(!out.fields.contains_key("date"));
        assert_eq!(out.tags["host"], "h");
        assert_eq!(
            reasons(&fixes),
            [
                FixReason::DisabledKey,
                FixReason::DisabledKey,
                FixReason::DefaultStatus
            ]
        );

        for cat in [Category::Object, Category::CustomObject] {
            let p = point(
                cat,
                &[("class", "c"), ("name", "n")],
                &[("date", int(1)), ("v", int(2))],
            );
            let (out, fixes) = run(p).unwrap();
            assert!(!out.tags.contains_key("class"), "{cat}");
            assert!(!out.fields.contains_key("date"), "{cat}");
            assert_eq!(
                reasons(&fixes),
                [FixReason::DisabledKey, FixReason::DisabledKey]
            );
        }

        // Metrics may use all of them.
        let p = point(
            Category::Metric,
            &[("source", "s"), ("class", "c")],
            &[("date", int(1))],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags.len(), 2);
        assert!(fixes.is_empty());
    }

    #[test]
    fn tag_wins_over_field_of_same_key() {
        let p = point(
            Category::Metric,
            &[("host", "a")],
            &[("host", int(1)), ("v", int(2))],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags["host"], "a");
        assert!(!out.fields.contains_key("host"));
        assert_eq!(reasons(&fixes), [FixReason::KeyConflict]);
        assert!(fixes[0].message.contains("\"host\""));
    }

    #[test]
    fn metric_drops_string_fields() {
        let p = point(
            Category::Metric,
            &[],
            &[
                ("msg", s("hi")),
                ("v", int(1)),
                ("ok", FieldValue::Bool(true)),
            ],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields.len(), 2);
        assert!(!out.fields.contains_key("msg"));
        assert_eq!(reasons(&fixes), [FixReason::MetricStringField]);
        assert!(fixes[0].message.contains("\"msg\""));
    }

    #[test]
    fn metric_with_only_strings_is_rejected() {
        let p = point(Category::Metric, &[], &[("a", s("x")), ("b", s("y"))]);
        let err = run(p).unwrap_err();
        assert_eq!(err.reason, RejectReason::NoFields);
        assert!(
            err.message.contains("all 2 of its fields were dropped"),
            "{}",
            err.message
        );
        assert!(err.message.contains("\"m\""), "{}", err.message);
    }

    #[test]
    fn point_without_fields_is_rejected() {
        let p = point(Category::Metric, &[("a", "b")], &[]);
        let err = run(p).unwrap_err();
        assert_eq!(err.reason, RejectReason::NoFields);
        assert!(err.message.contains("no fields"), "{}", err.message);
    }

    #[test]
    fn logging_gets_status_field_unless_present() {
        let p = point(Category::Logging, &[], &[("message", s("hello"))]);
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields["status"], s("info"));
        assert!(!out.tags.contains_key("status"));
        assert_eq!(reasons(&fixes), [FixReason::DefaultStatus]);

        let p = point(
            Category::Logging,
            &[],
            &[("message", s("x")), ("status", s("error"))],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields["status"], s("error"));
        assert!(fixes.is_empty());

        let p = point(
            Category::Logging,
            &[("status", "warning")],
            &[("message", s("x"))],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.tags["status"], "warning");
        assert!(!out.fields.contains_key("status"));
        assert!(fixes.is_empty());
    }

    #[test]
    fn defaults_do_not_rescue_a_point_without_fields() {
        // DataKit would keep this as a log line holding only status="unknown"; a point
        // with nothing but tags is a script bug, so it is rejected like any other.
        let p = point(Category::Logging, &[("a", "b")], &[]);
        let err = run(p).unwrap_err();
        assert_eq!(err.reason, RejectReason::NoFields);
        let p = point(Category::Object, &[("name", "web01")], &[]);
        assert_eq!(run(p).unwrap_err().reason, RejectReason::NoFields);
    }

    #[test]
    fn objects_get_name_tag_unless_present() {
        for cat in [Category::Object, Category::CustomObject] {
            let p = point(cat, &[], &[("v", int(1))]);
            let (out, fixes) = run(p).unwrap();
            assert_eq!(out.tags["name"], "default", "{cat}");
            assert!(!out.fields.contains_key("name"));
            assert_eq!(reasons(&fixes), [FixReason::DefaultName]);

            let p = point(cat, &[("name", "web01")], &[("v", int(1))]);
            let (out, fixes) = run(p).unwrap();
            assert_eq!(out.tags["name"], "web01");
            assert!(fixes.is_empty());

            let p = point(cat, &[], &[("name", s("web02"))]);
            let (out, fixes) = run(p).unwrap();
            assert_eq!(out.fields["name"], s("web02"));
            assert!(!out.tags.contains_key("name"));
            assert!(fixes.is_empty());
        }
        // Other categories get no name.
        let (out, _) = run(point(Category::Metric, &[], &[("v", int(1))])).unwrap();
        assert!(!out.tags.contains_key("name"));
        let (out, _) = run(point(Category::Rum, &[], &[("v", int(1))])).unwrap();
        assert!(out.tags.is_empty());
    }

    fn event(fields: &[(&str, FieldValue)], tags: &[(&str, &str)]) -> Point {
        let mut p = point(Category::Keyevent, tags, fields);
        p.measurement = "measurement".into();
        p
    }

    #[test]
    fn keyevent_with_required_fields_passes() {
        let p = event(
            &[
                ("df_status", s("critical")),
                ("df_event_id", s("e1")),
                ("df_title", s("disk full")),
                ("df_source", s("user")),
                ("df_date_range", int(10)),
            ],
            &[],
        );
        let (out, fixes) = run(p).unwrap();
        assert_eq!(out.fields.len(), 5);
        assert!(fixes.is_empty());
    }

    #[test]
    fn keyevent_keys_may_be_tags() {
        let p = event(
            &[("df_message", s("m"))],
            &[
                ("df_status", "ok"),
                ("df_event_id", "e1"),
                ("df_title", "t"),
                ("df_source", "system"),
            ],
        );
        assert!(run(p).is_ok());
    }

    #[test]
    fn keyevent_missing_keys_are_all_named() {
        let p = event(&[("df_status", s("ok")), ("df_title", s(""))], &[]);
        let err = run(p).unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingEventKey);
        assert!(
            err.message
                .contains("missing df_event_id, df_title, df_source"),
            "{}",
            err.message
        );
        assert!(err.message.contains("\"measurement\""), "{}", err.message);
    }

    #[test]
    fn keyevent_event_id_may_be_a_number() {
        let p = event(
            &[
                ("df_status", s("info")),
                ("df_event_id", int(42)),
                ("df_title", s("t")),
                ("df_source", s("user")),
            ],
            &[],
        );
        assert!(run(p).is_ok());
    }

    #[test]
    fn keyevent_status_must_be_known() {
        for status in KEYEVENT_STATUSES {
            let p = event(
                &[
                    ("df_status", s(status)),
                    ("df_event_id", s("e")),
                    ("df_title", s("t")),
                    ("df_source", s("user")),
                ],
                &[],
            );
            assert!(run(p).is_ok(), "{status}");
        }
        for bad in [s("warn"), s("OK"), s("fatal"), int(1)] {
            let p = event(
                &[
                    ("df_status", bad.clone()),
                    ("df_event_id", s("e")),
                    ("df_title", s("t")),
                    ("df_source", s("user")),
                ],
                &[],
            );
            let err = run(p).unwrap_err();
            assert_eq!(err.reason, RejectReason::InvalidEventStatus, "{bad:?}");
            assert!(
                err.message
                    .contains("ok, info, warning, error, critical, nodata"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn preview_shortens_and_quotes() {
        assert_eq!(preview("a\"b"), "\"a\\\"b\"");
        let long = "é".repeat(100);
        let p = preview(&long);
        assert!(p.ends_with('…'));
        assert!(p.len() < 80);
    }
}
