//! The HTTP bootstrap every role shares: `/health`, `/ready`, `/metrics`, request ids,
//! per-route request metrics, JSON logs, graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Something `/ready` checks: a database, a cache, a loaded plugin set.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

/// Request counts and latencies by route.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ])
        });
        registry.register(
            "payloom_http_requests",
            "HTTP requests by route",
            requests.clone(),
        );
        registry.register(
            "payloom_http_request_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        Self { requests, latency }
    }
}

/// Everything the shared routes need.
#[derive(Clone)]
pub struct Ops {
    pub metrics: Arc<Registry>,
    pub checks: Vec<(String, ReadyCheck)>,
}

/// `/health` (the process answers), `/ready` (every dependency answers), `/metrics`.
pub fn ops_router(ops: Ops) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(ops))
}

async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    let mut failing = serde_json::Map::new();
    for (name, check) in &ops.checks {
        if let Err(reason) = check().await {
            failing.insert(name.clone(), reason.into());
        }
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        let body = serde_json::json!({"status": "not ready", "failing": failing});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// OpenMetrics for a scraper that asks for it (Prometheus does); the classic text format
/// otherwise, which `promtool check metrics`, curl and older scrapers read.
async fn metrics_text(State(ops): State<Arc<Ops>>, headers: axum::http::HeaderMap) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &ops.metrics).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open_metrics {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], text).into_response()
    } else {
        let kind = "text/plain; version=0.0.4; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], classic_text(&text)).into_response()
    }
}

/// OpenMetrics text as the classic Prometheus format: a counter's HELP and TYPE name its
/// samples (`x_total`), and the lines the classic format lacks (`# UNIT`, `# EOF`) go.
pub fn classic_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Header carrying the request id in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Wraps `router` with request ids, a tracing span per request and route metrics.
pub fn instrument(router: Router, metrics: HttpMetrics) -> Router {
    router.layer(axum::middleware::from_fn(move |req, next| {
        let metrics = metrics.clone();
        track(metrics, req, next)
    }))
}

async fn track(metrics: HttpMetrics, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            crate::ids::new_id("req", crate::clock::Clock::now_ms(&crate::SystemClock))
        });
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    if let Ok(value) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, value);
    }
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        %method,
        %route,
        trace_id = tracing::field::Empty
    );
    crate::telemetry::continue_trace(&span, req.headers());
    let mut response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed * 1e3, "answered"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let labels = RouteLabels {
        method,
        route,
        status,
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics.latency.get_or_create(&labels).observe(elapsed);
    response
}

/// Serves until Ctrl-C or SIGTERM, then lets in-flight requests finish. Handlers may read
/// the peer's address (`ConnectInfo<SocketAddr>`), e.g. for per-source rate limits.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

/// Where the routes only other services may call live.
pub const INTERNAL_PREFIX: &str = "/internal/";

/// The routes of `router` a merchant, PSP or operator may reach: everything but the
/// internal ones, which answer 404 here as if they did not exist.
pub fn public_only(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(
        |req: Request, next: Next| async move {
            match req.uri().path().starts_with(INTERNAL_PREFIX) {
                true => no_route(),
                false => next.run(req).await,
            }
        },
    ))
}

/// The internal routes of `router`, for the services in `callers` only: the caller is the
/// service its verified client certificate names (see [`crate::tls::MtlsListener`]).
pub fn internal_only(router: Router, callers: Arc<[String]>) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let callers = callers.clone();
            async move {
                let caller = req
                    .extensions()
                    .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
                    .and_then(|info| info.0.service.clone());
                if !req.uri().path().starts_with(INTERNAL_PREFIX) {
                    return no_route();
                }
                match caller {
                    Some(service) if callers.contains(&service) => next.run(req).await,
                    caller => {
                        tracing::warn!(?caller, path = %req.uri().path(), "internal call refused");
                        crate::error::ApiError::new(
                            403,
                            "permission_error",
                            "caller_not_allowed",
                            "this service does not accept calls from the caller's identity",
                        )
                        .into_response()
                    }
                }
            }
        },
    ))
}

fn no_route() -> Response {
    crate::error::ApiError::new(
        404,
        "invalid_request_error",
        "resource_missing",
        "no such route",
    )
    .into_response()
}

/// Serves internal routes over mutual TLS until Ctrl-C or SIGTERM.
pub async fn serve_internal(
    listener: crate::tls::MtlsListener,
    router: Router,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<crate::tls::Peer>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

/// The address a request came from, when the server recorded it (see [`serve`]).
pub fn peer_ip(req: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
    req.extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_by_their_samples_and_drops_eof() {
        let mut registry = Registry::default();
        let calls = Counter::<u64>::default();
        calls.inc();
        registry.register("demo_calls", "Calls", calls);
        let latency = Histogram::new([0.1]);
        latency.observe(0.05);
        registry.register("demo_seconds", "Latency", latency);
        let mut open = String::new();
        prometheus_client::encoding::text::encode(&mut open, &registry).unwrap();
        assert!(open.contains("# TYPE demo_calls counter"), "{open}");

        let classic = classic_text(&open);
        assert!(
            classic.contains("# HELP demo_calls_total Calls."),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE demo_calls_total counter"),
            "{classic}"
        );
        assert!(classic.contains("demo_calls_total 1"), "{classic}");
        assert!(
            classic.contains("# TYPE demo_seconds histogram"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }
}
