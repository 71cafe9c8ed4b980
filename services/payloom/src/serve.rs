//! `payloom serve <service>…`: the production topology. The chosen services run in this
//! process against PostgreSQL, each on its own listener (the seed ports by default); the
//! services not chosen are reached over HTTP at their configured URLs.

use std::path::PathBuf;

use anyhow::Context;

use crate::app::{self, Role, Settings};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The services to run here.
    #[arg(required = true, value_enum)]
    pub services: Vec<Role>,
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
    let settings = Settings {
        config,
        data_dir: args.data_dir.clone(),
        generate_secrets: false,
    };
    let assembly = app::assemble(&settings, &args.services).await?;
    let ops = payloom_platform::server::ops_router(app::ops(&assembly));
    let mut servers = tokio::task::JoinSet::new();
    for (role, routes) in &assembly.routers {
        let endpoint = settings.endpoint(*role)?;
        let listener = tokio::net::TcpListener::bind(endpoint.listen)
            .await
            .with_context(|| format!("{}: binding {}", role.name(), endpoint.listen))?;
        println!(
            "payloom serve: {} listening on http://{}",
            role.name(),
            listener.local_addr()?
        );
        let router = routes.clone().merge(ops.clone());
        servers.spawn(payloom_platform::server::serve(listener, router));
    }
    while let Some(done) = servers.join_next().await {
        done??;
    }
    Ok(())
}
