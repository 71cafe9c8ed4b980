//! Shadow runs of channel candidates: the candidate runs beside the live version on real
//! calls, off the request path, and never reaches the PSP. The live call's outbound HTTP
//! is recorded; the candidate's n-th request is answered with the live call's n-th
//! response, and what the candidate asked and answered is compared with what the live
//! version did. Differences are counted and the latest kept, per candidate, for reports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bindings::imports::payloom::plugin::http::{Error, Request, Response};
use crate::capabilities::http::Outbound;

/// Differences kept per candidate for reports.
const DIFFS_KEPT: usize = 20;
/// Bytes of a body quoted in a difference.
const QUOTE_BYTES_MAX: usize = 200;

type Exchange = (Request, Result<Response, Error>);

/// Sends through `inner` and keeps every exchange, in order.
pub struct Recording {
    inner: Arc<dyn Outbound>,
    exchanges: Mutex<Vec<Exchange>>,
}

impl Recording {
    pub fn new(inner: Arc<dyn Outbound>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            exchanges: Mutex::default(),
        })
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("recording lock").clone()
    }
}

#[async_trait::async_trait]
impl Outbound for Recording {
    async fn send(&self, req: Request, deadline: tokio::time::Instant) -> Result<Response, Error> {
        let answer = self.inner.send(req.clone(), deadline).await;
        let mut exchanges = self.exchanges.lock().expect("recording lock");
        exchanges.push((req, answer.clone()));
        answer
    }
}

/// Answers the n-th request with the n-th recorded answer, and keeps what was asked.
pub struct Replay {
    recorded: Vec<Exchange>,
    asked: Mutex<Vec<Request>>,
}

impl Replay {
    pub fn new(recorded: Vec<Exchange>) -> Arc<Self> {
        Arc::new(Self {
            recorded,
            asked: Mutex::default(),
        })
    }

    pub fn asked(&self) -> Vec<Request> {
        self.asked.lock().expect("replay lock").clone()
    }
}

#[async_trait::async_trait]
impl Outbound for Replay {
    async fn send(&self, req: Request, _: tokio::time::Instant) -> Result<Response, Error> {
        let mut asked = self.asked.lock().expect("replay lock");
        let n = asked.len();
        asked.push(req);
        match self.recorded.get(n) {
            Some((_, answer)) => answer.clone(),
            None => Err(Error::Transport(format!(
                "shadow: the live version made no request #{}",
                n + 1
            ))),
        }
    }
}

/// Where a candidate's requests and answer differ from the live version's, one line each.
pub fn differences(
    live: &[Request],
    candidate: &[Request],
    live_reply: &str,
    candidate_reply: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if live.len() != candidate.len() {
        out.push(format!(
            "the live version made {} requests, the candidate {}",
            live.len(),
            candidate.len()
        ));
    }
    for (n, (a, b)) in live.iter().zip(candidate).enumerate() {
        let n = n + 1;
        if a.method != b.method || a.url != b.url {
            out.push(format!(
                "request {n}: {} {} became {} {}",
                a.method, a.url, b.method, b.url
            ));
        }
        if a.headers != b.headers {
            let show = |r: &Request| {
                r.headers
                    .iter()
                    .map(|h| format!("{}: {}", h.key, h.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "request {n}: headers [{}] became [{}]",
                show(a),
                show(b)
            ));
        }
        if a.body != b.body {
            out.push(format!(
                "request {n}: body {} became {}",
                quote(&a.body),
                quote(&b.body)
            ));
        }
    }
    if live_reply != candidate_reply {
        out.push(format!("outcome {live_reply} became {candidate_reply}"));
    }
    out
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTE_BYTES_MAX)]);
    format!("{text:?}")
}

/// One candidate's shadow results on this node.
#[derive(Debug, Default)]
pub struct ShadowStats {
    inner: Mutex<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    compared: u64,
    differing: u64,
    latest: VecDeque<String>,
}

/// A snapshot of [`ShadowStats`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShadowSummary {
    pub plugin: String,
    pub version: String,
    /// Live calls the candidate ran beside.
    pub compared: u64,
    /// Of those, the ones where it asked or answered differently.
    pub differing: u64,
    /// The latest differences, newest last.
    pub differences: Vec<String>,
}

impl ShadowStats {
    pub fn record(&self, call: &str, differences: Vec<String>) {
        let mut inner = self.inner.lock().expect("shadow stats lock");
        inner.compared += 1;
        if differences.is_empty() {
            return;
        }
        inner.differing += 1;
        for difference in differences {
            if inner.latest.len() == DIFFS_KEPT {
                inner.latest.pop_front();
            }
            inner.latest.push_back(format!("{call}: {difference}"));
        }
    }

    pub fn summary(&self, plugin: &str, version: &str) -> ShadowSummary {
        let inner = self.inner.lock().expect("shadow stats lock");
        ShadowSummary {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            compared: inner.compared,
            differing: inner.differing,
            differences: inner.latest.iter().cloned().collect(),
        }
    }
}
