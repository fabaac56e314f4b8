//! What makes one network sink type different from another: how points become the
//! bodies stored in its disk buffer ([`Protocol::encode`]), and how buffered records
//! become HTTP requests ([`Protocol::requests`], [`Protocol::wire`],
//! [`Protocol::headers`]).
//!
//! Everything else — batching, the disk buffer, retries with backoff, `Retry-After`,
//! the dead-letter file and the counters — is shared by every network sink in
//! [`super::network`]. A type's encoding is chosen so that record bodies can be
//! concatenated into a request unchanged: line protocol lines, or protobuf messages
//! whose only field is a repeated message (concatenated protobuf encodings of such a
//! message are the encoding of the merged message). Remote write records are stored
//! snappy-compressed and spliced into a request as they are
//! ([`super::snappy_block`]).

use std::io;

use reqwest::header::HeaderMap;

use super::body_format::BodyFormat;
use super::buffer::Record;
use crate::config::{HttpAuth, RequestOptions};
use crate::point::{Category, PointRef};

/// Largest uncompressed body per request, whatever `batch_points` says.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// Points and fields an encoder left out because its backend cannot hold them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Points not sent at all (a category the backend has no place for, or a metric
    /// point without a numeric field).
    pub points: u64,
    /// Fields left out of points that were sent (string fields in a metric).
    pub fields: u64,
}

/// One request: where it goes, its body, and what it carries.
pub struct Request {
    pub url: String,
    pub category: Option<Category>,
    /// As [`Protocol::requests`] built it: before compression, or already compressed
    /// for a type that stores its records compressed (then [`Protocol::wire`] sends
    /// it as it is and [`BodyFormat::plain_body`] undoes it for the dead-letter file).
    pub body: Vec<u8>,
    pub points: u64,
}

/// How a dead-letter line keeps a refused request's body.
pub enum DeadLetterBody {
    /// Text (line protocol): kept as `"lines"`.
    Text,
    /// Binary (protobuf): kept base64-encoded as `"body_base64"`, uncompressed.
    Binary,
}

/// Points a backend refused inside a successful answer (OTLP's `partial_success`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartlyRejected {
    pub points: u64,
    pub message: String,
}

/// A network sink type's encoder and endpoint.
pub trait Protocol: Send + Sync + 'static {
    /// Writes `points` (all of one category) into an empty record body; returns how
    /// many points the body holds and adds what was left out to `skipped`.
    fn encode(
        &self,
        category: Category,
        points: &[PointRef<'_>],
        body: &mut Vec<u8>,
        skipped: &mut Skipped,
    ) -> u32;

    /// The requests that deliver `records`, in order; each at most
    /// [`MAX_REQUEST_BYTES`] uncompressed (unless one record alone is larger).
    fn requests(&self, records: &[Record]) -> Vec<Request>;

    /// A request's body as sent: compressed as [`Protocol::headers`] announce.
    fn wire(&self, body: &[u8]) -> io::Result<Vec<u8>>;

    /// Headers of every request (content type and encoding, authorization, extras).
    fn headers(&self) -> &HeaderMap;

    /// How a refused body is written to the dead-letter file.
    fn dead_letter_body(&self) -> DeadLetterBody;

    /// The encoding of the bodies [`Protocol::encode`] writes: recorded with each
    /// buffered record, so that a sink of another type under the same name never
    /// sends them (docs/BUFFER.md).
    fn body_format(&self) -> BodyFormat;

    /// Whether a successful answer's body can say that points were refused (then
    /// [`Protocol::rejected_in_success`] reads it).
    fn reads_success_body(&self) -> bool {
        false
    }

    /// What a successful answer to `request` says was refused, if anything.
    fn rejected_in_success(&self, _request: &Request, _body: &[u8]) -> Option<PartlyRejected> {
        None
    }
}

/// Concatenates records into requests to `url` of at most [`MAX_REQUEST_BYTES`].
pub fn concatenate(records: &[&Record], url: &str, category: Option<Category>) -> Vec<Request> {
    let mut requests = Vec::new();
    // Sized up front: a body that grows by doubling is copied about twice over.
    let mut left: usize = records.iter().map(|r| r.body.len()).sum();
    let fresh = |left: usize| Request {
        url: url.to_string(),
        category,
        body: Vec::with_capacity(left.min(MAX_REQUEST_BYTES)),
        points: 0,
    };
    let mut current = fresh(left);
    for record in records {
        if !current.body.is_empty() && current.body.len() + record.body.len() > MAX_REQUEST_BYTES {
            requests.push(std::mem::replace(&mut current, fresh(left)));
        }
        left -= record.body.len();
        current.body.extend_from_slice(&record.body);
        current.points += u64::from(record.points);
    }
    if !current.body.is_empty() {
        requests.push(current);
    }
    requests
}

/// Groups records by category, categories in order of first appearance, and
/// concatenates each group into requests to `url_of(category)`.
pub fn per_category(records: &[Record], url_of: impl Fn(Category) -> String) -> Vec<Request> {
    let mut order: Vec<Category> = Vec::new();
    for record in records {
        if !order.contains(&record.category) {
            order.push(record.category);
        }
    }
    order
        .into_iter()
        .flat_map(|category| {
            let same: Vec<&Record> = records.iter().filter(|r| r.category == category).collect();
            concatenate(&same, &url_of(category), Some(category))
        })
        .collect()
}

/// Gzips a body (fast level: the network is rarely the bottleneck on a host).
pub fn gzip(body: &[u8]) -> io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// A header map from fixed `(name, value)` pairs plus the sink's request options.
/// The names and values were validated when the configuration was read.
pub fn header_map(
    fixed: &[(&'static str, String)],
    options: Option<&RequestOptions>,
) -> Result<HeaderMap, String> {
    use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
    let mut headers = HeaderMap::new();
    let value = |text: &str| HeaderValue::from_str(text).map_err(|e| format!("header value: {e}"));
    for (name, text) in fixed {
        headers.insert(HeaderName::from_static(name), value(text)?);
    }
    let Some(options) = options else {
        return Ok(headers);
    };
    for (name, text) in &options.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name:?}: {e}"))?;
        headers.insert(name, value(text)?);
    }
    let authorization = match &options.auth {
        HttpAuth::None => None,
        HttpAuth::Bearer(token) => Some(format!("Bearer {token}")),
        HttpAuth::Basic { username, password } => {
            use base64::Engine;
            let pair = format!("{username}:{password}");
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
    };
    if let Some(authorization) = authorization {
        let mut value = value(&authorization)?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}
