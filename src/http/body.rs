//! Reading a request body within `[http] max_body`, before and after gzip.
//!
//! The limit is enforced while the body streams in, so an oversized upload never sits
//! in memory; the rest of it is read and thrown away (within the request timeout) so
//! the client gets its 413 instead of a reset connection. A gzip body is inflated with
//! the same limit on its *output*, so a small "gzip bomb" gets 413 too.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::StreamExt;

use super::error::ApiError;

/// The body of a request, read and decompressed, at most `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Vec<u8>, ApiError> {
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
            drain(body).await;
        }
        return Err(ApiError::too_large(message));
    }
    let raw = read_limited(body, limit).await?;
    if !gzip {
        return Ok(raw);
    }
    tokio::task::spawn_blocking(move || gunzip(&raw, limit))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "datakit.internal",
                format!("decompression failed: {e}"),
            )
        })?
}

async fn read_limited(body: Body, limit: u64) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("datakit.badBody", format!("cannot read the body: {e}"))
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            let mut seen = (out.len() + chunk.len()) as u64;
            drop(out);
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len() as u64;
            }
            return Err(ApiError::too_large(format!(
                "body of {seen} bytes is over the limit of {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads and discards the rest of a body.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
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
