//! Logs and traces. Every process logs JSON lines (or text at a terminal) and keeps an
//! OpenTelemetry trace per request: the W3C `traceparent` of the caller continues in the
//! callee, over HTTP ([`inject`], [`continue_trace`]) and through the outbox and Kafka
//! ([`current_traceparent`]), and each request's log lines carry its `trace_id`. With an
//! OTLP endpoint configured the spans are exported over OTLP/HTTP, named by the service
//! that made them.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The W3C header that carries a trace from caller to callee.
pub const TRACEPARENT: &str = "traceparent";

/// Keeps the span exporter running; [`Telemetry::shutdown`] sends what is still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes and stops the exporter (a process about to exit calls this).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry: {e}");
        }
    }
}

/// Installs logging and tracing for this process, named `service` in exported spans.
/// Logs are filtered by `PAYLOOM_LOG` (`default_filter` when unset); spans are kept at
/// info and above whatever the log level, so quiet logs still give whole traces. Spans go
/// to `otlp_endpoint` (`http://host:4318`) when given; otherwise they only number the
/// logs and the calls. Called from inside the Tokio runtime that will run the exporter.
pub fn init(
    service: &str,
    json: bool,
    default_filter: &str,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    );
    if let Some(endpoint) = otlp_endpoint {
        builder = builder.with_span_processor(otlp_processor(endpoint)?);
    }
    let provider = builder.build();
    let filter = log_filter(default_filter);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(span_layer(&provider));
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        registry.with(logs.json().with_filter(filter)).try_init()
    } else {
        registry.with(logs.with_filter(filter)).try_init()
    };
    Ok(Telemetry { provider })
}

/// Spans at info and above become OpenTelemetry spans of `provider`. A request's future
/// enters and leaves its span at every poll, so the layer does nothing there: no busy and
/// idle clocks, no OpenTelemetry context activation (propagation reads the span itself),
/// no thread or source-location attributes.
fn span_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("payloom"))
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(LevelFilter::INFO)
}

/// `PAYLOOM_LOG`, or `default_filter` when it is unset.
fn log_filter(default_filter: &str) -> EnvFilter {
    EnvFilter::try_from_env("PAYLOOM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter))
}

/// Logging only, for the commands that are not services (demo, bench, plugin tooling).
pub fn init_logs(json: bool, default_filter: &str) {
    let filter = log_filter(default_filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn otlp_processor(
    endpoint: &str,
) -> anyhow::Result<BatchSpanProcessor<opentelemetry_sdk::runtime::Tokio>> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_http_client(OtlpClient(reqwest::Client::new()))
        .build()?;
    Ok(BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build())
}

/// The exporter's HTTP client: the reqwest the platform already uses, so tracing brings
/// no second HTTP stack.
#[derive(Debug)]
struct OtlpClient(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let response = self.0.execute(request).await?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        Ok(answer.body(response.bytes().await?)?)
    }
}

/// Adds the current span's trace context to an outgoing request's headers.
pub fn inject(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Makes `span` continue the caller's trace when `headers` carry one, and records the
/// trace id on it so every log line inside it names the trace.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    adopt(span, parent);
}

/// The same for a `traceparent` carried some other way (an event from the outbox).
pub fn continue_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    let mut carrier = HashMap::new();
    if let Some(value) = traceparent {
        carrier.insert(TRACEPARENT.to_owned(), value.to_owned());
    }
    adopt(span, TraceContextPropagator::new().extract(&carrier));
}

fn adopt(span: &tracing::Span, parent: opentelemetry::Context) {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// The current span's `traceparent`, for an event that leaves this process later (the
/// outbox keeps it beside the event, the relay sends it as a Kafka header).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// Log lines written into memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_handlers_log_lines_carry_the_callers_trace_id() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let writer = lines.clone();
        let logs = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || writer.clone())
            .with_filter(EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry()
            .with(span_layer(&provider))
            .with(logs);
        let _guard = tracing::subscriber::set_default(subscriber);

        let metrics = crate::server::HttpMetrics::register(&mut Default::default());
        let handler = || async {
            tracing::info!("handling");
            "done"
        };
        let router = crate::server::instrument(Router::new().route("/x", get(handler)), metrics);
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let request = axum::http::Request::get("/x")
            .header(TRACEPARENT, format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .body(axum::body::Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap();

        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("handling"))
            .expect("the handler logged");
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
    }

    #[test]
    fn a_callee_continues_the_callers_trace() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let caller = tracing::info_span!("caller", trace_id = tracing::field::Empty);
            let mut headers = http::HeaderMap::new();
            caller.in_scope(|| inject(&mut headers));
            let sent = headers[TRACEPARENT].to_str().unwrap().to_owned();
            let caller_trace = caller.context().span().span_context().trace_id();
            assert!(sent.contains(&caller_trace.to_string()), "{sent}");

            let callee = tracing::info_span!("callee", trace_id = tracing::field::Empty);
            continue_trace(&callee, &headers);
            let callee_trace = callee.context().span().span_context().trace_id();
            assert_eq!(callee_trace, caller_trace);

            let by_event = tracing::info_span!("event", trace_id = tracing::field::Empty);
            let kept = caller.in_scope(current_traceparent);
            continue_traceparent(&by_event, kept.as_deref());
            assert_eq!(
                by_event.context().span().span_context().trace_id(),
                caller_trace
            );

            let fresh = tracing::info_span!("fresh", trace_id = tracing::field::Empty);
            continue_trace(&fresh, &http::HeaderMap::new());
            assert_ne!(
                fresh.context().span().span_context().trace_id(),
                caller_trace
            );
        });
    }
}
