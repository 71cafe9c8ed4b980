//! `http.send` answered from recorded exchanges instead of the network.
//!
//! ```json
//! [{"request": {"method": "POST", "url": "https://api.psp.example/v1/charges"},
//!   "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": "{\"id\":\"ch_1\"}"}}]
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use payloom_host::bindings::imports::payloom::plugin::http::{Error, Request, Response};
use payloom_host::bindings::types::KeyValue;
use payloom_host::capabilities::http::Outbound;
use serde::Deserialize;

/// One recorded request/response pair.
#[derive(Debug, Clone, Deserialize)]
pub struct Exchange {
    /// What the plugin must send.
    pub request: RecordedRequest,
    /// What it gets back.
    pub response: RecordedResponse,
}

/// The request side: matched on method and exact URL.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
}

/// The response side.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: String,
}

/// Serves recorded exchanges and keeps what the plugin sent.
#[derive(Default)]
pub struct Recorded {
    exchanges: Vec<Exchange>,
    /// Requests the plugin made, in order (method, url, body).
    pub sent: Mutex<Vec<(String, String, Vec<u8>)>>,
}

impl Recorded {
    /// A transport answering from `exchanges`.
    pub fn new(exchanges: Vec<Exchange>) -> Self {
        Self {
            exchanges,
            sent: Mutex::default(),
        }
    }
}

#[async_trait::async_trait]
impl Outbound for Recorded {
    async fn send(&self, req: Request, _deadline: tokio::time::Instant) -> Result<Response, Error> {
        self.sent.lock().expect("recorded lock").push((
            req.method.clone(),
            req.url.clone(),
            req.body.clone(),
        ));
        let found = self.exchanges.iter().find(|e| {
            e.request.method.eq_ignore_ascii_case(&req.method) && e.request.url == req.url
        });
        let Some(exchange) = found else {
            return Err(Error::Transport(format!(
                "no recorded exchange for {} {}",
                req.method, req.url
            )));
        };
        let response = &exchange.response;
        Ok(Response {
            status: response.status,
            headers: response
                .headers
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            body: response.body.clone().into_bytes(),
        })
    }
}
