//! `payloom dev --split`: every registered service as its own `payloom serve` process on
//! this machine, as production deploys them: mutual TLS between every pair, a PostgreSQL
//! database per service, events through Kafka, counters in Redis. The data directory keeps
//! the certificates, the secrets, the demo merchant and the topic prefix, so a restart on
//! the same directory and database finds them again; ports are chosen afresh each start.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use payloom_channel_adapter::ChannelHttp;
use payloom_merchant_auth::{MerchantAuthApi, MerchantAuthHttp};
use payloom_platform::Db;
use payloom_platform::client::ServiceClient;
use payloom_platform::config::Config;
use payloom_platform::db::PoolOptions;
use payloom_platform::ids::random_hex;
use payloom_platform::registry::{Settings, write_private};
use payloom_platform::tls::ServiceIdentity;

use crate::app;
use crate::dev::{CREDENTIALS_FILE, DevAdmin, DevArgs, DevCredentials, ServiceUrls, new_merchant};

/// The servers the split runs on.
struct Backing {
    postgres: String,
    redis: String,
    kafka: String,
}

impl Backing {
    fn from(args: &DevArgs, config: &Config) -> anyhow::Result<Self> {
        let get = |key: &str| {
            config
                .get_str(key)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(Self {
            postgres: get("database.url")
                .filter(|url| url.starts_with("postgres"))
                .context("dev --split gives each service a PostgreSQL database of its own: set --database-url postgres://…")?,
            redis: get("redis.url")
                .context("dev --split keeps shared counters in Redis: set --redis-url redis://…")?,
            kafka: args
                .kafka_brokers
                .clone()
                .or_else(|| get("events.kafka_brokers"))
                .context("dev --split carries events through Kafka: set --kafka-brokers host:port")?,
        })
    }
}

/// `payloom dev --split`: starts the services, prints where they are, and runs until
/// interrupted or until one of them exits (then the others are stopped too).
pub async fn serve(args: DevArgs) -> anyhow::Result<()> {
    let config = app::load_config(
        args.config.as_deref(),
        args.database_url.as_deref(),
        args.redis_url.as_deref(),
    )?;
    let backing = Backing::from(&args, &config)?;
    let (children, credentials) = start(&args, &config, &backing).await?;
    println!("payloom dev listening on {}", credentials.base_url);
    println!("  admin API      {}/admin/v1", credentials.admin_url);
    for (name, urls) in &credentials.services {
        println!("  {name:<16} {} (internal: {})", urls.public, urls.internal);
    }
    println!(
        "  credentials    {}",
        args.data_dir.join(CREDENTIALS_FILE).display()
    );
    supervise(children).await
}

/// Starts every service (again on fresh ports if one was taken meanwhile) and makes sure
/// the demo merchant and the first operator exist.
async fn start(
    args: &DevArgs,
    config: &Config,
    backing: &Backing,
) -> anyhow::Result<(Children, DevCredentials)> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let certs = dir.join("certs");
    if !certs.join("ca.pem").exists() {
        crate::certs::run(crate::certs::CertsCommand::Init(crate::certs::InitArgs {
            dir: certs.clone(),
            force: false,
            days: 365,
            owner: None,
        }))?;
    }
    let created = create_databases(&backing.postgres).await?;
    let previous = crate::demo::load_credentials(dir).ok();
    // admin-bff makes its first operator from the bootstrap password, on a new database
    // only: the configured one, or one of ours.
    let configured = config
        .get_str("admin.bootstrap_password")
        .filter(|p| !p.is_empty());
    let admin = match configured {
        Some(password) => Some(DevAdmin {
            username: config
                .get_str("admin.bootstrap_username")
                .unwrap_or("admin")
                .into(),
            password: password.into(),
        }),
        None => created.contains("admin-bff").then(|| DevAdmin {
            username: "admin".into(),
            password: previous
                .as_ref()
                .map_or_else(|| random_hex(12), |p| p.admin.password.clone()),
        }),
    };
    let mut attempt = 0;
    let (children, services) = loop {
        attempt += 1;
        let layout = Layout::new(args, config, backing, admin.as_ref())?;
        match layout.spawn(dir, &backing.postgres) {
            Ok(started) => break started,
            Err(e) if attempt < 3 => eprintln!("starting the services again: {e:#}"),
            Err(e) => return Err(e),
        }
    };
    let credentials = demo(dir, previous, admin, services).await?;
    Ok((children, credentials))
}

/// Each service's database: the `--database-url` database's name and the service's,
/// on the same server. Returns the services whose database was created now.
async fn create_databases(postgres: &str) -> anyhow::Result<BTreeSet<&'static str>> {
    let server = Db::connect(postgres, &PoolOptions::default())
        .await
        .context("connecting to the --database-url PostgreSQL")?;
    let mut created = BTreeSet::new();
    for name in crate::services::registered().names() {
        let (database, _) = service_database(postgres, name)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(&database)
                .fetch_optional(server.pool())
                .await?;
        if exists.is_none() {
            sqlx::query(&format!("CREATE DATABASE {database}"))
                .execute(server.pool())
                .await
                .with_context(|| format!("creating the database {database}"))?;
            created.insert(name);
        }
    }
    server.pool().close().await;
    Ok(created)
}

/// The name and URL of `service`'s database beside the one `postgres` names.
pub fn service_database(postgres: &str, service: &str) -> anyhow::Result<(String, String)> {
    let mut url = url::Url::parse(postgres).context("parsing the PostgreSQL URL")?;
    let base = url.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(
        !base.is_empty() && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "the PostgreSQL URL must name a database of letters, digits and '_' (each service's is named after it)"
    );
    let name = format!("{base}_{}", service.replace('-', "_"));
    url.set_path(&name);
    Ok((name, url.to_string()))
}

/// The ports and configuration of one start.
struct Layout {
    config: toml::Table,
    /// Each service's public listener (port 0 but the gateway's) and internal one.
    listeners: Vec<(&'static str, SocketAddr, SocketAddr)>,
}

impl Layout {
    /// The `--config` file with what the split decides laid over it: listeners, URLs,
    /// databases, secrets, brokers, and the development settings `dev` always has.
    fn new(
        args: &DevArgs,
        config: &Config,
        backing: &Backing,
        admin: Option<&DevAdmin>,
    ) -> anyhow::Result<Self> {
        let mut table = match &args.config {
            Some(file) => toml::from_str(
                &std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?,
            )?,
            None => toml::Table::new(),
        };
        let dir = &args.data_dir;
        let mut gateway = args.listen;
        if gateway.port() == 0 {
            gateway = free_port(gateway.ip())?;
        }
        set(
            &mut table,
            "gateway.public_base_url",
            format!("http://{gateway}"),
        );
        shared_settings(&mut table, config, dir, backing)?;
        if let Some(admin) = admin {
            set(
                &mut table,
                "admin.bootstrap_username",
                admin.username.clone(),
            );
            set(
                &mut table,
                "admin.bootstrap_password",
                admin.password.clone(),
            );
        }
        let mut listeners = Vec::new();
        for name in crate::services::registered().names() {
            let public = match name {
                "payment-gateway" => gateway,
                _ => SocketAddr::from(([127, 0, 0, 1], 0)),
            };
            let internal = free_port([127, 0, 0, 1].into())?;
            let section = format!("services.{name}");
            set(&mut table, &format!("{section}.listen"), public.to_string());
            set(
                &mut table,
                &format!("{section}.internal_listen"),
                internal.to_string(),
            );
            set(
                &mut table,
                &format!("{section}.url"),
                format!("https://{internal}"),
            );
            let (_, database) = service_database(&backing.postgres, name)?;
            set(&mut table, &format!("{section}.database_url"), database);
            listeners.push((name, public, internal));
        }
        Ok(Self {
            config: table,
            listeners,
        })
    }

    /// Writes the configuration and starts a `serve` process per service, all at once;
    /// each service's public and internal URL once every one is listening.
    fn spawn(
        &self,
        dir: &Path,
        postgres: &str,
    ) -> anyhow::Result<(Children, BTreeMap<String, ServiceUrls>)> {
        let path = dir.join("split.toml");
        write_private(&path, &toml::to_string(&self.config)?)?;
        let exe = std::env::current_exe()?;
        let mut children = Children(Vec::new());
        for (name, _, _) in &self.listeners {
            let mut command = Command::new(&exe);
            command
                .args(["serve", name, "--certs"])
                .arg(dir.join("certs"))
                .arg("--config")
                .arg(&path)
                .arg("--data-dir")
                .arg(dir.join(name))
                .args(["--database-url", postgres])
                .args(["--parent-pid", &std::process::id().to_string()])
                .stdout(Stdio::piped());
            if std::env::var_os("PAYLOOM_LOG").is_none() {
                command.env("PAYLOOM_LOG", "warn");
            }
            let child = command.spawn().context("starting payloom serve")?;
            children.0.push((name, child));
        }
        let mut urls = BTreeMap::new();
        for ((name, child), (_, _, internal)) in children.0.iter_mut().zip(&self.listeners) {
            let public = wait_until_listening(child, name)?;
            urls.insert(
                (*name).to_owned(),
                ServiceUrls {
                    public,
                    internal: format!("https://{internal}"),
                },
            );
        }
        Ok((children, urls))
    }
}

/// What every service of the split shares: secrets (from the configuration, or generated
/// once into the data directory as `dev` does), Redis, Kafka under this data directory's
/// topic prefix, the plugins folder, and `dev`'s development settings.
fn shared_settings(
    table: &mut toml::Table,
    config: &Config,
    dir: &Path,
    backing: &Backing,
) -> anyhow::Result<()> {
    let secrets = Settings {
        config: config.clone(),
        data_dir: dir.to_owned(),
        generate_secrets: true,
        certs: None,
    };
    let master = secrets.secret("master_key", "master.key", || random_hex(32))?;
    let jwt = secrets.secret("admin_jwt_secret", "admin-jwt.secret", || random_hex(32))?;
    set(table, "security.master_key", master);
    set(table, "security.admin_jwt_secret", jwt);
    set(table, "redis.url", backing.redis.clone());
    set(table, "events.kafka_brokers", backing.kafka.clone());
    // Topics and consumer groups of this data directory's own: another split on the same
    // broker neither reads its events nor joins (and stalls) its groups.
    let id = kept_or_made(&dir.join("split-id"), || random_hex(4))?;
    set_default(table, "events.topic_prefix", format!("dev-{id}."));
    set_default(table, "events.consumer_group", format!("payloom-{id}"));
    // One process runs each consumer.
    set_default(table, "events.sole_consumers", true);
    let plugins = dir.join("plugins").display().to_string();
    set_default(table, "plugins.dir", plugins);
    set(table, "plugins.allow_unsigned", true);
    set(table, "plugins.dir_publishes", true);
    set(table, "notification.allow_loopback", true);
    let emails = dir.join("emails.jsonl").display().to_string();
    set_default(table, "email.file", emails);
    // Ten processes share the server's connections (100 by default).
    set_default(table, "database.max_connections", 9_i64);
    Ok(())
}

/// The contents of `path`, or `make()` written there first.
fn kept_or_made(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(kept) = std::fs::read_to_string(path) {
        return Ok(kept.trim().to_owned());
    }
    let made = make();
    std::fs::write(path, &made).with_context(|| format!("writing {}", path.display()))?;
    Ok(made)
}

/// Sets `key` (dotted) in `table`, making the tables on the way.
fn set(table: &mut toml::Table, key: &str, value: impl Into<toml::Value>) {
    let (path, last) = key.rsplit_once('.').unwrap_or(("", key));
    let mut table = table;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let entry = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("made a table");
    }
    table.insert(last.to_owned(), value.into());
}

/// Sets `key` unless the file already does.
fn set_default(table: &mut toml::Table, key: &str, value: impl Into<toml::Value>) {
    let (path, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let exists = path
        .split('.')
        .filter(|p| !p.is_empty())
        .try_fold(&*table, |t, part| t.get(part)?.as_table())
        .is_some_and(|t| t.contains_key(leaf));
    if !exists {
        set(table, key, value);
    }
}

fn free_port(ip: std::net::IpAddr) -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?)
}

/// Reads `child`'s output until it says it listens; its public URL. The rest of its output
/// is drained in the background so it never blocks on a full pipe.
fn wait_until_listening(child: &mut Child, name: &str) -> anyhow::Result<String> {
    let marker = format!("payloom serve: {name} listening on ");
    let mut lines = BufReader::new(child.stdout.take().context("piped")?).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix(&marker) {
                    break rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
            }
            _ => anyhow::bail!("{name} exited before listening (its errors are above)"),
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(url)
}

/// The merchant and operator of the credentials file when the databases still have them;
/// otherwise a new merchant through the services' internal APIs, with the admin
/// console's certificate (the service allowed to make one).
async fn demo(
    dir: &Path,
    previous: Option<DevCredentials>,
    admin: Option<DevAdmin>,
    services: BTreeMap<String, ServiceUrls>,
) -> anyhow::Result<DevCredentials> {
    let identity = ServiceIdentity::load(&dir.join("certs"), "admin-bff")?;
    let client = |name: &str| ServiceClient::with_identity(&services[name].internal, &identity);
    let auth = MerchantAuthHttp(client("merchant-auth")?);
    let channels = ChannelHttp(client("channel-adapter")?);
    let kept = match previous {
        Some(p) if auth.get_merchant(&p.merchant.id).await.is_ok() => Some(p),
        _ => None,
    };
    let merchant = match &kept {
        Some(p) => p.merchant.clone(),
        None => new_merchant(&auth, &channels, "Demo Store").await?,
    };
    let admin = admin.or(kept.map(|p| p.admin)).unwrap_or_else(|| DevAdmin {
        username: String::new(),
        password: String::new(),
    });
    let credentials = DevCredentials {
        merchant,
        admin,
        base_url: services["payment-gateway"].public.clone(),
        admin_url: services["admin-bff"].public.clone(),
        services,
    };
    write_private(
        &dir.join(CREDENTIALS_FILE),
        &serde_json::to_string_pretty(&credentials)?,
    )?;
    Ok(credentials)
}

/// The services' processes, by name. Dropped, they are killed.
pub struct Children(Vec<(&'static str, Child)>);

impl Children {
    /// The first that has exited, if any.
    fn exited(&mut self) -> Option<&'static str> {
        self.0
            .iter_mut()
            .find_map(|(name, child)| (!matches!(child.try_wait(), Ok(None))).then_some(*name))
    }

    /// Asks each to stop (SIGTERM: it finishes what it is doing), and kills any still
    /// running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for (_, child) in &self.0 {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline
            && self
                .0
                .iter_mut()
                .any(|(_, c)| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs until Ctrl-C or SIGTERM, or until a service exits; then stops the others.
async fn supervise(mut children: Children) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let exited = loop {
        tokio::select! {
            _ = &mut interrupt => break None,
            _ = terminate.recv() => break None,
            _ = tick.tick() => {
                if let Some(name) = children.exited() {
                    break Some(name);
                }
            }
        }
    };
    tokio::task::spawn_blocking(move || children.stop(Duration::from_secs(10))).await?;
    match exited {
        Some(name) => anyhow::bail!("{name} exited, so the other services were stopped"),
        None => Ok(()),
    }
}
