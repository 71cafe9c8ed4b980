//! `payloom serve <service>…`: the production topology. The chosen services run in this
//! process against PostgreSQL, each on two listeners: its public routes and `/health`,
//! `/ready`, `/metrics` over plain HTTP, its internal routes over mutual TLS for the
//! services allowed to call it. The services not chosen are reached at their configured
//! URLs, presenting a local service's certificate.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use payloom_platform::server;
use payloom_platform::tls::{MtlsListener, ServiceIdentity};

use payloom_platform::registry::Settings;

use crate::app;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The services to run here.
    #[arg(required = true, value_parser = crate::services::parse_name)]
    pub services: Vec<&'static str>,
    /// A config file layered over the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Plugins (unless `plugins.dir` is set) and the compile cache live here.
    #[arg(long, default_value = ".payloom")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL; overrides `database.url`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Redis URL for nonces, quota counters, velocity counters and rate limits; overrides `redis.url`.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The CA and service certificates from `payloom certs init`.
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// Stop (as on SIGTERM) when this process is no longer the parent: `dev --split`
    /// starts its services with it, so none outlives the command.
    #[arg(long, hide = true)]
    pub parent_pid: Option<u32>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    app::block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = app::load_config(
        args.config.as_deref(),
        args.database_url.as_deref(),
        args.redis_url.as_deref(),
    )?;
    anyhow::ensure!(
        config
            .get_str("database.url")
            .is_some_and(|u| u.starts_with("postgres")),
        "serve runs on PostgreSQL: set --database-url or PAYLOOM_DATABASE__URL"
    );
    // Services in production log JSON lines at info; their spans are named by the
    // services this process runs.
    let telemetry = app::telemetry(&config, &args.services.join("+"), true, "info")?;
    let settings = Settings {
        config,
        data_dir: args.data_dir.clone(),
        generate_secrets: false,
        certs: Some(args.certs.clone()),
    };
    // Every local service needs its identity before anything starts.
    let identities = args
        .services
        .iter()
        .map(|name| ServiceIdentity::load(&args.certs, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(parent) = args.parent_pid {
        tokio::spawn(stop_when_orphaned(parent));
    }
    let assembly = app::assemble(&settings, &args.services).await?;
    let services = crate::services::registered();
    let ops = server::ops_router(app::ops(&assembly));
    let mut servers = tokio::task::JoinSet::new();
    for (name, routes) in &assembly.routes {
        let endpoint = settings.endpoint(services.manifest(name)?)?;
        let identity = identities
            .iter()
            .find(|identity| identity.service == *name)
            .expect("an identity per local service");
        let internal = MtlsListener::new(
            bind(name, endpoint.internal_listen).await?,
            identity.server_config()?,
        )?;
        let callers: Arc<[String]> = services
            .callers(name)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let internal_routes = server::internal_only(routes.internal.clone(), callers);
        servers.spawn(server::serve_internal(internal, internal_routes));
        let public = bind(name, endpoint.listen).await?;
        println!(
            "payloom serve: {name} listening on http://{} (internal: https://{})",
            public.local_addr()?,
            endpoint.internal_listen,
        );
        let router = server::public_only(routes.public.clone()).merge(ops.clone());
        servers.spawn(server::serve(public, router));
    }
    let served = async {
        while let Some(done) = servers.join_next().await {
            done??;
        }
        anyhow::Ok(())
    }
    .await;
    assembly.stop().await;
    telemetry.shutdown();
    served
}

async fn bind(
    service: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{service}: binding {addr}"))
}

/// Sends this process SIGTERM once `parent` is gone (it was reparented), so the usual
/// graceful shutdown runs.
async fn stop_when_orphaned(parent: u32) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    while std::os::unix::process::parent_id() == parent {
        tick.tick().await;
    }
    tracing::warn!("the process that started this one is gone: stopping");
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
}
