//! How one service reaches another over HTTP: JSON in, JSON or our error shape out.
//! The remote half of every service's client trait is a thin layer over this.
//!
//! Paths that carry a value (an id, a name) are built with [`ServicePath`], never with
//! `format!`: an id such as `../../mch_x/webhook_endpoints/we_y` would otherwise be
//! resolved by URL parsing into another merchant's resource.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// A service at a base URL.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    base_url: String,
    /// The base URL's own path (`""` for a bare host), which every request path extends.
    base_path: String,
    http: reqwest::Client,
}

/// A request path built from segments, each percent-encoded on its own, so a value always
/// stays one segment: `/`, `%2F`, `\`, `?` and `#` inside it are data, not structure.
/// A value of `.` or `..` cannot be carried by any URL; [`ServiceClient`] answers 404
/// for it without sending anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePath {
    encoded: String,
    has_query: bool,
}

impl ServicePath {
    /// `/seg1/seg2/…`, every segment encoded: `["internal", "v1", "orders", id]`.
    pub fn new<'a>(segments: impl IntoIterator<Item = &'a str>) -> Self {
        let mut encoded = String::new();
        for segment in segments {
            encoded.push('/');
            encode_into(&mut encoded, segment);
        }
        Self {
            encoded,
            has_query: false,
        }
    }

    /// Appends `key=value` to the query string, both encoded.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.encoded.push(if self.has_query { '&' } else { '?' });
        encode_into(&mut self.encoded, key);
        self.encoded.push('=');
        encode_into(&mut self.encoded, value);
        self.has_query = true;
        self
    }

    pub fn as_str(&self) -> &str {
        &self.encoded
    }
}

impl AsRef<str> for ServicePath {
    fn as_ref(&self) -> &str {
        &self.encoded
    }
}

impl std::fmt::Display for ServicePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encoded)
    }
}

/// Percent-encodes every byte but RFC 3986's unreserved characters, which is right for a
/// path segment and for a query key or value alike.
fn encode_into(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// What a path answers when no URL can carry it as given.
fn unaddressable() -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "resource_missing",
        "no such resource",
    )
}

/// How long one inter-service call may take, end to end. Channel calls are bounded by
/// the plugin deadline inside this.
pub const SERVICE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl ServiceClient {
    pub fn new(base_url: &str) -> Self {
        Self::from_builder(base_url, reqwest::Client::builder())
            .expect("an HTTP client with default TLS settings")
    }

    /// The service at `base_url` over mutual TLS: this side presents `identity` and
    /// trusts only its deployment's CA.
    pub fn with_identity(
        base_url: &str,
        identity: &crate::tls::ServiceIdentity,
    ) -> anyhow::Result<Self> {
        Ok(Self::from_builder(base_url, identity.client_builder()?)?)
    }

    fn from_builder(base_url: &str, builder: reqwest::ClientBuilder) -> reqwest::Result<Self> {
        let http = builder
            .timeout(SERVICE_CALL_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()?;
        let base_url = base_url.trim_end_matches('/').to_owned();
        let base_path = reqwest::Url::parse(&base_url)
            .map(|url| url.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(Self {
            base_url,
            base_path,
            http,
        })
    }

    /// `POST path` with a JSON body. `path` is a fixed path or a [`ServicePath`].
    pub async fn post<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        path: impl AsRef<str>,
        body: &I,
    ) -> ApiResult<O> {
        let request = self.http.post(self.url(path.as_ref())?).json(body);
        self.send(request).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        path: impl AsRef<str>,
        body: &I,
    ) -> ApiResult<O> {
        let request = self.http.put(self.url(path.as_ref())?).json(body);
        self.send(request).await
    }

    /// `GET path`.
    pub async fn get<O: DeserializeOwned>(&self, path: impl AsRef<str>) -> ApiResult<O> {
        self.send(self.http.get(self.url(path.as_ref())?)).await
    }

    /// `DELETE path`.
    pub async fn delete<O: DeserializeOwned>(&self, path: impl AsRef<str>) -> ApiResult<O> {
        self.send(self.http.delete(self.url(path.as_ref())?)).await
    }

    /// The URL of `path`, refused (404) unless URL parsing keeps the path exactly as
    /// given: a `.` or `..` segment would be resolved away, reaching a resource the
    /// caller never named, and an empty segment names nothing.
    pub fn url(&self, path: &str) -> ApiResult<reqwest::Url> {
        if !path.starts_with('/') {
            return Err(ApiError::internal(format!(
                "service path {path:?} must start with '/'"
            )));
        }
        let url = reqwest::Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| ApiError::unavailable(format!("{}: {e}", self.base_url)))?;
        let kept = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let segments = path.split(['?', '#']).next().unwrap_or_default();
        let has_empty_segment = segments.split('/').skip(1).any(str::is_empty);
        if has_empty_segment || kept != format!("{}{path}", self.base_path) {
            return Err(unaddressable());
        }
        Ok(url)
    }

    async fn send<O: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> ApiResult<O> {
        // The callee continues this request's trace.
        let mut trace = reqwest::header::HeaderMap::new();
        crate::telemetry::inject(&mut trace);
        let response = request
            .headers(trace)
            .send()
            .await
            .map_err(|e| ApiError::unavailable(format!("{}: {e}", self.base_url)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::unavailable(format!("{}: {e}", self.base_url)))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(ApiError::internal);
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: ApiError,
        }
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(Envelope { mut error }) => {
                error.status = status;
                Err(error)
            }
            Err(_) => Err(ApiError::unavailable(format!(
                "{} answered {status}",
                self.base_url
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAVERSAL: &str = "../../mch_x/webhook_endpoints/we_y";

    fn endpoint_path(merchant: &str, id: &str) -> ServicePath {
        ServicePath::new([
            "internal",
            "v1",
            "merchants",
            merchant,
            "webhook_endpoints",
            id,
        ])
    }

    fn segments(url: &reqwest::Url) -> Vec<String> {
        url.path_segments()
            .unwrap()
            .map(|s| String::from_utf8(percent_decode(s)).unwrap())
            .collect()
    }

    fn percent_decode(s: &str) -> Vec<u8> {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn a_value_stays_one_segment() {
        let client = ServiceClient::new("http://127.0.0.1:40008/");
        for id in [
            TRAVERSAL,
            "a%2Fb",
            "a/b",
            "a\\b",
            "we_1?x=1#f",
            "..a",
            "é ü",
        ] {
            let url = client.url(endpoint_path("mch_a", id).as_str()).unwrap();
            assert_eq!(
                segments(&url),
                [
                    "internal",
                    "v1",
                    "merchants",
                    "mch_a",
                    "webhook_endpoints",
                    id
                ],
                "{id:?} as {url}"
            );
            assert_eq!(url.query(), None, "{id:?}");
        }
    }

    #[test]
    fn dot_and_empty_segments_are_refused_not_resolved() {
        let client = ServiceClient::new("http://127.0.0.1:40008");
        for id in ["..", ".", ""] {
            let refused = client.url(endpoint_path("mch_a", id).as_str()).unwrap_err();
            assert_eq!(
                (refused.status, refused.code.as_str()),
                (404, "resource_missing")
            );
        }
        // A path spliced together with `format!` is checked the same way: sent as it
        // is, URL parsing would have taken it to another merchant's endpoint.
        let spliced = format!("/internal/v1/merchants/mch_a/webhook_endpoints/{TRAVERSAL}");
        let resolved = reqwest::Url::parse(&format!("http://127.0.0.1:40008{spliced}")).unwrap();
        assert_eq!(
            resolved.path(),
            "/internal/v1/merchants/mch_x/webhook_endpoints/we_y"
        );
        assert_eq!(client.url(&spliced).unwrap_err().status, 404);
    }

    #[test]
    fn query_values_stay_one_value_and_a_base_path_is_kept() {
        let client = ServiceClient::new("http://127.0.0.1:40008/api/");
        let path = ServicePath::new(["internal", "v1", "webhook_deliveries"])
            .query("endpoint_id", "we_1&event_id=ev_2")
            .query("limit", "a b+c");
        let url = client.url(path.as_str()).unwrap();
        assert_eq!(url.path(), "/api/internal/v1/webhook_deliveries");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("endpoint_id".into(), "we_1&event_id=ev_2".into()),
                ("limit".into(), "a b+c".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_service_receives_the_value_as_one_path_parameter() {
        use axum::extract::Path;
        let app = axum::Router::new().route(
            "/internal/v1/merchants/{merchant}/webhook_endpoints/{id}",
            axum::routing::delete(|Path((m, id)): Path<(String, String)>| async move {
                axum::Json(serde_json::json!({"merchant": m, "id": id}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = ServiceClient::new(&base);
        for id in [TRAVERSAL, "a%2Fb"] {
            let seen: serde_json::Value = client.delete(endpoint_path("mch_a", id)).await.unwrap();
            assert_eq!(seen, serde_json::json!({"merchant": "mch_a", "id": id}));
        }
    }
}
