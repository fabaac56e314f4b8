//! The line-protocol sink types, `datakit` and `influxdb`: points are buffered as
//! line protocol, ready to send, and POSTed gzipped.
//!
//! DataKit (and Dataway) take one request per category at
//! `<url>/v1/write/<category>`, the URL's query (`?token=...`) kept; InfluxDB and
//! VictoriaMetrics take every category at one write URL (v1 `/write?db=`, v2
//! `/api/v2/write?bucket=`), with `Authorization: Token` for v2.

use std::io;

use reqwest::header::HeaderMap;

use super::buffer::Record;
use super::protocol::{self, DeadLetterBody, Protocol, Request, Skipped};
use super::read_context::ReadContext;
use crate::config::network_sink::{self, INFLUX_API_KEYS, NETWORK_KEYS};
use crate::config::tree::Section;
use crate::config::{InfluxApi, NetworkSinkConfig};
use crate::point::{Category, PointRef};

/// The `type` value of DataKit's (and Dataway's) write API.
pub const DATAKIT_NAME: &str = "datakit";

/// Keys of `type = "datakit"`: those every network sink has (docs/CONFIG.md).
pub const DATAKIT_KEYS: &[&[&str]] = &[NETWORK_KEYS];

/// The `type` value of InfluxDB's (and VictoriaMetrics') write API.
pub const INFLUXDB_NAME: &str = "influxdb";

/// Keys of `type = "influxdb"`: the network keys plus `db` (v1) or `bucket`, `org`,
/// `token` (v2).
pub const INFLUXDB_KEYS: &[&[&str]] = &[NETWORK_KEYS, INFLUX_API_KEYS];

/// Reads a `datakit` sink's settings.
pub(crate) fn read_datakit(
    section: &mut Section<'_, '_>,
    context: &ReadContext<'_>,
) -> Option<NetworkSinkConfig> {
    network_sink::read_network(section, DATAKIT_NAME, "", context.base)
}

/// Reads an `influxdb` sink's settings and write API.
pub(crate) fn read_influxdb(
    section: &mut Section<'_, '_>,
    context: &ReadContext<'_>,
) -> Option<(NetworkSinkConfig, InfluxApi)> {
    let api = network_sink::read_influx_api(section);
    let destination = api.as_ref().map_or("", InfluxApi::destination).to_owned();
    let net = network_sink::read_network(section, INFLUXDB_NAME, &destination, context.base);
    net.zip(api)
}

/// Where a line-protocol sink POSTs.
#[derive(Clone, Debug)]
enum Target {
    /// `<base>/v1/write/<category>?<query>`; one request per category.
    Datakit { base: String, query: Option<String> },
    /// One URL for every category.
    Influx { url: String },
}

/// A line-protocol endpoint (DataKit or InfluxDB).
pub struct LineProtocol {
    target: Target,
    headers: HeaderMap,
}

impl LineProtocol {
    /// DataKit's (or Dataway's) write API under `url` (a `?token=` query is kept).
    pub fn datakit(url: &str) -> Result<Self, String> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query.to_string())),
            None => (url, None),
        };
        Ok(Self {
            target: Target::Datakit {
                base: base.trim_end_matches('/').to_string(),
                query: query.filter(|q| !q.is_empty()),
            },
            headers: lp_headers(None)?,
        })
    }

    /// InfluxDB's (or VictoriaMetrics') v1 or v2 write API under `url`.
    pub fn influx(url: &str, api: &InfluxApi) -> Result<Self, String> {
        let base = url.trim_end_matches('/');
        let (url, token) = match api {
            InfluxApi::V1 { db } => (
                format!("{base}/write?db={}&precision=ns", encode_query(db)),
                None,
            ),
            InfluxApi::V2 { org, bucket, token } => {
                let mut url = format!("{base}/api/v2/write?bucket={}", encode_query(bucket));
                if let Some(org) = org {
                    url.push_str(&format!("&org={}", encode_query(org)));
                }
                url.push_str("&precision=ns");
                (url, token.as_deref())
            }
        };
        Ok(Self {
            target: Target::Influx { url },
            headers: lp_headers(token)?,
        })
    }

    #[cfg(test)]
    fn url(&self) -> &str {
        match &self.target {
            Target::Influx { url } => url,
            Target::Datakit { base, .. } => base,
        }
    }
}

fn lp_headers(influx_token: Option<&str>) -> Result<HeaderMap, String> {
    let mut fixed = vec![
        ("content-type", "text/plain; charset=utf-8".to_string()),
        ("content-encoding", "gzip".to_string()),
    ];
    if let Some(token) = influx_token {
        fixed.push(("authorization", format!("Token {token}")));
    }
    protocol::header_map(&fixed, None)
}

impl Protocol for LineProtocol {
    fn encode(
        &self,
        _: Category,
        points: &[PointRef<'_>],
        body: &mut Vec<u8>,
        _: &mut Skipped,
    ) -> u32 {
        let mut text = String::with_capacity(points.len() * 64);
        for point in points {
            point.write_line_protocol(&mut text);
        }
        if body.is_empty() {
            *body = text.into_bytes();
        } else {
            body.extend_from_slice(text.as_bytes());
        }
        points.len() as u32
    }

    fn requests(&self, records: &[Record]) -> Vec<Request> {
        match &self.target {
            Target::Influx { url } => {
                let all: Vec<&Record> = records.iter().collect();
                protocol::concatenate(&all, url, None)
            }
            Target::Datakit { base, query } => protocol::per_category(records, |category| {
                let mut url = format!("{base}/v1/write/{}", category.name());
                match query {
                    Some(q) => url.push_str(&format!("?{q}&precision=n")),
                    None => url.push_str("?precision=n"),
                }
                url
            }),
        }
    }

    fn wire(&self, body: &[u8]) -> io::Result<Vec<u8>> {
        protocol::gzip(body)
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn dead_letter_body(&self) -> DeadLetterBody {
        DeadLetterBody::Text
    }

    fn body_format(&self) -> crate::sink::body_format::BodyFormat {
        crate::sink::body_format::BodyFormat::LineProtocol
    }
}

/// Percent-encodes a query value (database, bucket and org names are usually plain).
fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(category: Category, line: &str) -> Record {
        Record {
            category,
            points: 1,
            enqueued_ms: 0,
            body: format!("{line}\n").into_bytes(),
        }
    }

    #[test]
    fn datakit_requests_go_per_category_and_keep_the_token() {
        let endpoint =
            LineProtocol::datakit("http://127.0.0.1:9529/?token=tkn_x").expect("endpoint");
        let records = [
            record(Category::Metric, "cpu v=1i 1"),
            record(Category::Logging, "log message=\"a\" 2"),
            record(Category::Metric, "cpu v=2i 3"),
        ];
        let requests = endpoint.requests(&records);
        let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9529/v1/write/metric?token=tkn_x&precision=n",
                "http://127.0.0.1:9529/v1/write/logging?token=tkn_x&precision=n"
            ]
        );
        assert_eq!(requests[0].body, b"cpu v=1i 1\ncpu v=2i 3\n");
        assert_eq!(requests[0].points, 2);
    }

    #[test]
    fn influx_urls_for_both_apis() {
        let v1 = LineProtocol::influx("http://h:8086/", &InfluxApi::V1 { db: "my db".into() })
            .expect("endpoint");
        assert_eq!(v1.url(), "http://h:8086/write?db=my%20db&precision=ns");
        assert_eq!(v1.headers().get("authorization"), None);
        let v2 = LineProtocol::influx(
            "http://h:8086",
            &InfluxApi::V2 {
                org: Some("o".into()),
                bucket: "b".into(),
                token: Some("t".into()),
            },
        )
        .expect("endpoint");
        assert_eq!(
            v2.url(),
            "http://h:8086/api/v2/write?bucket=b&org=o&precision=ns"
        );
        assert_eq!(
            v2.headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default()),
            Some("Token t")
        );
    }
}
