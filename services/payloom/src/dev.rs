//! `payloom dev`: every service in this process on embedded defaults: one SQLite file per
//! service in `--data-dir` (or PostgreSQL with `--database-url`), in-memory nonces, the
//! reference plugins loaded and watched. Creates a demo merchant and an admin user and
//! writes their credentials to `<data-dir>/dev-credentials.json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use payloom_host::Registry;
use payloom_merchant_auth::MerchantIn;
use serde::{Deserialize, Serialize};

use payloom_admin_bff::Admin;
use payloom_channel_adapter::ChannelApi;
use payloom_merchant_auth::MerchantAuthApi;
use payloom_platform::registry::{Settings, write_private};

use crate::app::{self, Assembly};

/// `payloom dev` options.
#[derive(clap::Args)]
pub struct DevArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:40080")]
    pub listen: SocketAddr,
    /// Where databases, plugins, the compile cache, secrets and credentials live.
    #[arg(long, default_value = ".payloom")]
    pub data_dir: PathBuf,
    /// Run on PostgreSQL instead of SQLite files (`postgres://…`).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep nonces, quota counters, velocity counters and rate limits in Redis (`redis://…`).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// A config file layered over the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run every service as its own `serve` process, as production does: mutual TLS
    /// between them, a database each on the `--database-url` server, events through
    /// Kafka, counters in Redis.
    #[arg(long)]
    pub split: bool,
    /// The Kafka bootstrap servers of `--split` (or `[events] kafka_brokers`).
    #[arg(long, requires = "split")]
    pub kafka_brokers: Option<String>,
}

/// `<data-dir>/dev-credentials.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    pub merchant: DevMerchant,
    pub admin: DevAdmin,
    /// The merchant API.
    pub base_url: String,
    /// The admin API (the same listener under `dev`, admin-bff's under `--split`).
    #[serde(default)]
    pub admin_url: String,
    /// Under `--split`, each service's listeners.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceUrls>,
}

/// Where one service of the split answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceUrls {
    /// Its public routes and `/health`, `/ready`, `/metrics`.
    pub public: String,
    /// Its internal routes, over mutual TLS.
    pub internal: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevMerchant {
    pub id: String,
    pub api_key: DevApiKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevApiKey {
    pub key_id: String,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevAdmin {
    pub username: String,
    pub password: String,
}

pub const CREDENTIALS_FILE: &str = "dev-credentials.json";

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    match args.split {
        true => app::block_on(crate::split::serve(args)),
        false => app::block_on(serve(args)),
    }
}

async fn serve(args: DevArgs) -> anyhow::Result<()> {
    let mut config = app::load_config(
        args.config.as_deref(),
        args.database_url.as_deref(),
        args.redis_url.as_deref(),
    )?;
    // People at a terminal read plain text, warnings and up.
    let telemetry = app::telemetry(&config, "payloom", false, "warn")?;
    // The built-in plugins need no signature; what a developer drops into the folder is
    // built on their machine and not signed. `serve` refuses it unless told otherwise.
    config.set("plugins.allow_unsigned", toml::Value::Boolean(true));
    // A component dropped into the folder goes through the plugin registry, as a push.
    config.set("plugins.dir_publishes", toml::Value::Boolean(true));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    config.set(
        "gateway.public_base_url",
        toml::Value::String(base_url.clone()),
    );
    // A merchant developing against `dev` receives webhooks on their own machine.
    config.set("notification.allow_loopback", toml::Value::Boolean(true));
    if config.get_str("email.file").is_none_or(str::is_empty) {
        let file = args.data_dir.join("emails.jsonl");
        config.set(
            "email.file",
            toml::Value::String(file.display().to_string()),
        );
    }

    let settings = Settings {
        config,
        data_dir: args.data_dir.clone(),
        generate_secrets: true,
        certs: None,
    };
    let assembly = app::assemble(&settings, &crate::services::registered().names()).await?;
    let credentials = ensure_demo(&assembly, &args.data_dir, &base_url).await?;
    let router = public_router(&assembly);
    println!("payloom dev listening on {base_url}");
    println!("  merchant API   {base_url}/v1  (OpenAPI: {base_url}/v1/openapi.json)");
    println!("  admin API      {base_url}/admin/v1");
    println!("  health         {base_url}/health  {base_url}/ready  {base_url}/metrics");
    println!("  database       {}", assembly.database_url);
    println!(
        "  plugins        {} (watched; drop a .wasm + .toml pair in to hot-swap; unsigned allowed under dev)",
        args.data_dir.join("plugins").display()
    );
    if let Some(registry) = &assembly.registry {
        for row in registry.list() {
            let (id, version, kind, publisher) = (row.id, row.version, row.kind, row.publisher);
            println!("    loaded {id}@{version} ({kind}, {publisher})");
        }
    }
    println!(
        "  demo merchant  {} (key {})",
        credentials.merchant.id, credentials.merchant.api_key.key_id
    );
    println!(
        "  credentials    {}",
        args.data_dir.join(CREDENTIALS_FILE).display()
    );
    println!(
        "  try it         cargo run -p payloom -- demo pay --data-dir {}",
        args.data_dir.display()
    );
    let served = payloom_platform::server::serve(listener, router).await;
    assembly.stop().await;
    telemetry.shutdown();
    served
}

/// The one listener of `dev`: the merchant and admin APIs, ops routes, the plugin list.
fn public_router(assembly: &Assembly) -> Router {
    let mut router = payloom_platform::server::ops_router(app::ops(assembly));
    for (_, routes) in &assembly.routes {
        router = router.merge(routes.public.clone());
    }
    if let Some(registry) = &assembly.registry {
        router = router.merge(
            Router::new()
                .route("/v1/plugins", get(list_plugins))
                .with_state(registry.clone()),
        );
    }
    router
}

async fn list_plugins(State(registry): State<Arc<Registry>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "data": registry.list() }))
}

/// A merchant named `name` with an API key and sandbox credentials, through the
/// services' APIs (in process under `dev`, over mutual TLS from `bench topology`).
pub async fn new_merchant(
    auth: &dyn MerchantAuthApi,
    channels: &dyn ChannelApi,
    name: &str,
) -> anyhow::Result<DevMerchant> {
    let merchant = auth
        .create_merchant(MerchantIn {
            name: name.into(),
            tier: None,
        })
        .await?;
    let key = auth.create_api_key(&merchant.id).await?;
    let notify_secret = payloom_platform::ids::random_hex(32);
    let sandbox = [("notify_secret".to_owned(), notify_secret)].into();
    channels
        .set_credentials(&merchant.id, "sandbox", sandbox)
        .await?;
    Ok(DevMerchant {
        id: merchant.id,
        api_key: DevApiKey {
            key_id: key.key_id,
            secret: key.secret,
        },
    })
}

/// Reuses the demo merchant in the credentials file if the database still has it;
/// otherwise creates a merchant, an API key, sandbox credentials and the admin user.
async fn ensure_demo(
    assembly: &Assembly,
    data_dir: &std::path::Path,
    base_url: &str,
) -> anyhow::Result<DevCredentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let admin: Arc<Admin> = assembly.provided.get()?;
    let auth: Arc<dyn MerchantAuthApi> = assembly.provided.get()?;
    let channels: Arc<dyn ChannelApi> = assembly.provided.get()?;
    if let Some(mut existing) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<DevCredentials>(&b).ok())
        && auth.get_merchant(&existing.merchant.id).await.is_ok()
    {
        admin
            .upsert_admin(
                &existing.admin.username,
                &existing.admin.password,
                "super_admin",
            )
            .await?;
        existing.base_url = base_url.to_owned();
        existing.admin_url = base_url.to_owned();
        write_private(&path, &serde_json::to_string_pretty(&existing)?)?;
        return Ok(existing);
    }
    let merchant = new_merchant(auth.as_ref(), channels.as_ref(), "Demo Store").await?;
    let password = payloom_platform::ids::random_hex(12);
    admin
        .upsert_admin("admin", &password, "super_admin")
        .await?;
    let credentials = DevCredentials {
        merchant,
        admin: DevAdmin {
            username: "admin".into(),
            password,
        },
        base_url: base_url.to_owned(),
        admin_url: base_url.to_owned(),
        services: BTreeMap::new(),
    };
    std::fs::create_dir_all(data_dir)?;
    write_private(&path, &serde_json::to_string_pretty(&credentials)?)?;
    Ok(credentials)
}
