//! How one service reaches another over HTTP: JSON in, JSON or our error shape out.
//! The remote half of every service's client trait is a thin layer over this.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// A service at a base URL.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    base_url: String,
    http: reqwest::Client,
}

/// How long one inter-service call may take, end to end. Channel calls are bounded by
/// the plugin deadline inside this.
pub const SERVICE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl ServiceClient {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(SERVICE_CALL_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client with default TLS settings");
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        path: &str,
        body: &I,
    ) -> ApiResult<O> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body);
        self.send(request).await
    }

    /// `GET path`.
    pub async fn get<O: DeserializeOwned>(&self, path: &str) -> ApiResult<O> {
        self.send(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    /// `DELETE path`.
    pub async fn delete<O: DeserializeOwned>(&self, path: &str) -> ApiResult<O> {
        self.send(self.http.delete(format!("{}{path}", self.base_url)))
            .await
    }

    async fn send<O: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> ApiResult<O> {
        let response = request
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
