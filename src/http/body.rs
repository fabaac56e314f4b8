//! Reading a request body within `[http] max_body`, before and after gzip.
//!
//! The limit is enforced while the body streams in, so an oversized upload never sits
//! in memory; the rest of it is read and thrown away (within the request timeout) so
//! the client gets its 413 instead of a reset connection. A gzip body is inflated with
//! the same limit on its *output*, so a small "gzip bomb" gets 413 too.
//!
//! A body must also arrive in time: before the request's deadline (`request_timeout`)
//! and, after the first [`BODY_RATE_GRACE`], at `[http] min_body_rate` on average, so
//! a client trickling its upload gives its slot back within seconds (408).

use std::time::Duration;

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::error::ApiError;

/// How long a body may take before `min_body_rate` applies (docs/HTTP.md).
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// What bounds the reading of one body.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// `[http] max_body`, before and after gzip.
    pub max: u64,
    /// `[http] min_body_rate`, bytes per second; 0: no minimum.
    pub min_rate: u64,
    /// When the request's `request_timeout` runs out.
    pub deadline: Instant,
}

/// The body of a request, read and decompressed, at most `limits.max` bytes.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
) -> Result<Vec<u8>, ApiError> {
    let raw = read_raw_body(headers, body, limits).await?;
    if !raw.gzip {
        return Ok(raw.bytes);
    }
    tokio::task::spawn_blocking(move || raw.inflate())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "datakit.internal",
                format!("decompression failed: {e}"),
            )
        })?
}

/// A body as it arrived, at most `[http] max_body` bytes, not yet decompressed: a
/// handler that goes to a blocking thread anyway inflates it there
/// ([`RawBody::inflate`]) instead of taking one more thread hop for it.
pub struct RawBody {
    bytes: Vec<u8>,
    gzip: bool,
    limit: u64,
}

impl RawBody {
    /// The body decompressed, within the same limit (413 beyond, 400 for bad gzip).
    /// Inflating gzip takes a while: call it off the runtime's threads.
    pub fn inflate(self) -> Result<Vec<u8>, ApiError> {
        if self.gzip {
            gunzip(&self.bytes, self.limit)
        } else {
            Ok(self.bytes)
        }
    }
}

/// Reads a body within `limits` (see [`read_body`]), leaving gzip to
/// [`RawBody::inflate`].
pub async fn read_raw_body(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
) -> Result<RawBody, ApiError> {
    let limit = limits.max;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" || e == "x-gzip" => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "datakit.unsupportedEncoding",
                format!("Content-Encoding {other:?} is not supported (send gzip or no encoding)"),
            ))
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit) {
        let message = format!("body of {declared} bytes is over the limit of {limit} bytes");
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // A client waiting for "100 Continue" has not sent the body: answer now.
        if !expects_continue {
            let _ = pump(body, limits, None).await;
        }
        return Err(ApiError::too_large(message));
    }
    // Sized once from Content-Length (within the limit) instead of doubling as the
    // body streams in.
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    pump(body, limits, Some(&mut bytes)).await?;
    Ok(RawBody { bytes, gzip, limit })
}

/// Reads the body into `keep` (or discards it when `None`), enforcing the size limit,
/// the deadline and the minimum rate. Past the size limit the rest is still read (and
/// discarded) so the client receives its 413.
async fn pump(
    body: Body,
    limits: &BodyLimits,
    mut keep: Option<&mut Vec<u8>>,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let mut stream = body.into_data_stream();
    let mut seen: u64 = 0;
    let mut over = false;
    loop {
        // The next bytes must come before the deadline and, once the grace period is
        // over, before the average rate drops under the minimum.
        let mut wait_until = limits.deadline;
        let mut by_rate = false;
        if limits.min_rate > 0 {
            let allowed =
                BODY_RATE_GRACE + Duration::from_secs_f64(seen as f64 / limits.min_rate as f64);
            let rate_deadline = started + allowed;
            if rate_deadline < wait_until {
                wait_until = rate_deadline;
                by_rate = true;
            }
        }
        let chunk = match tokio::time::timeout_at(wait_until, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) if by_rate => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "datakit.bodyTooSlow",
                    format!(
                        "body arrived slower than [http] min_body_rate ({} bytes/s after the first {:?}): {seen} bytes in {:.1?}",
                        limits.min_rate,
                        BODY_RATE_GRACE,
                        started.elapsed()
                    ),
                ))
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "datakit.requestTimeout",
                    format!("body not received within [http] request_timeout ({seen} bytes read)"),
                ))
            }
        };
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("datakit.badBody", format!("cannot read the body: {e}"))
        })?;
        seen += chunk.len() as u64;
        if seen > limits.max && !over {
            over = true;
            if let Some(keep) = keep.as_deref_mut() {
                *keep = Vec::new();
            }
        }
        if !over {
            if let Some(keep) = keep.as_deref_mut() {
                keep.extend_from_slice(&chunk);
            }
        }
    }
    if over && keep.is_some() {
        return Err(ApiError::too_large(format!(
            "body of {seen} bytes is over the limit of {} bytes",
            limits.max
        )));
    }
    Ok(())
}

fn gunzip(raw: &[u8], limit: u64) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request(
                "datakit.badBody",
                format!("body is not valid gzip (Content-Encoding: gzip): {e}"),
            )
        })?;
    if out.len() as u64 > limit {
        return Err(ApiError::too_large(format!(
            "gzip body inflates to more than the limit of {limit} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::gunzip;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("gzip in memory");
        enc.finish().expect("gzip in memory")
    }

    #[test]
    fn inflates_within_the_limit_and_refuses_beyond() {
        assert_eq!(gunzip(&gz(b"abc"), 3).expect("fits"), b"abc");
        let bomb = gz(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 10_000);
        let error = gunzip(&bomb, 1000).expect_err("too large");
        assert_eq!(error.status.as_u16(), 413);
        let error = gunzip(b"not gzip", 1000).expect_err("bad gzip");
        assert_eq!(error.status.as_u16(), 400);
    }
}
