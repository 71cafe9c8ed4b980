//! `payloom dev`: the plugin host on embedded defaults.
//!
//! Writes the reference plugins into `<data-dir>/plugins` (once), loads and watches that
//! folder (drop in a new `.wasm` + `.toml` and it goes live, a bad one is refused and
//! reported), and serves `/health`, `/ready`, `/metrics` and `/v1/plugins`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::http::HttpClient;
use payloom_host::watch::Watcher;
use payloom_host::{HostConfig, Registry, Runtime};
use prometheus_client::registry::Registry as Metrics;

/// `payloom dev` options.
#[derive(clap::Args)]
pub struct DevArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:40080")]
    pub listen: SocketAddr,
    /// Where plugins, the compile cache and state live.
    #[arg(long, default_value = ".payloom")]
    pub data_dir: PathBuf,
}

struct App {
    registry: Arc<Registry>,
    metrics: Metrics,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

/// Writes the reference plugins that are not there yet; an operator's edits stay.
fn seed_plugins(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for plugin in payloom_reference_plugins::ALL {
        if !dir.join(format!("{}.wasm", plugin.name)).exists() {
            plugin.write_to(dir)?;
        }
    }
    Ok(())
}

async fn serve(args: DevArgs) -> anyhow::Result<()> {
    let plugins_dir = args.data_dir.join("plugins");
    seed_plugins(&plugins_dir)?;
    let config = HostConfig {
        // Development: the reference plugins are built locally and not signed.
        allow_unsigned: true,
        cache_dir: Some(args.data_dir.join("cache")),
        ..HostConfig::default()
    };
    let http = HttpClient::from_config(&config)?;
    let mut metrics = Metrics::default();
    let runtime = Runtime::new(
        config,
        HostServices::in_memory(Arc::new(http)),
        &mut metrics,
    )?;
    let registry = Registry::new(runtime);
    let _watcher = Watcher::start(registry.clone(), &plugins_dir).await?;
    let app = Arc::new(App { registry, metrics });
    let router = Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/plugins", get(list_plugins))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("payloom dev listening on http://{addr}");
    println!(
        "  plugins: {} (watched; drop a .wasm + .toml pair in to hot-swap)",
        plugins_dir.display()
    );
    for row in app.registry.list() {
        println!("  loaded {}@{} ({})", row.id, row.version, row.kind);
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn ready(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.registry.list().is_empty() {
        true => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "no plugins loaded"})),
        ),
        false => (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.metrics) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn list_plugins(State(app): State<Arc<App>>) -> impl IntoResponse {
    Json(serde_json::json!({ "data": app.registry.list() }))
}
