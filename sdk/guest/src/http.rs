//! A small request builder over the host's `http.send`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::KeyValue;
pub use crate::imports::payloom::plugin::http::{Error, Response};
use crate::imports::payloom::plugin::http::{Request as Wire, send};

/// An outbound request under construction.
pub struct Request(Wire);

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Self(Wire {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        })
    }
    /// `GET url`
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }
    /// `POST url`
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }
    /// Adds a header.
    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.0.headers.push(KeyValue {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.0.body = body.into();
        self
    }
    /// A JSON body (already serialized) with its content type.
    pub fn json(self, body: String) -> Self {
        self.header("content-type", "application/json").body(body)
    }
    /// Caps this request's time (the host's deadline still applies).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.0.timeout_ms = Some(ms);
        self
    }
    /// Sends it through the host.
    pub fn send(self) -> Result<Response, Error> {
        send(&self.0)
    }
}
