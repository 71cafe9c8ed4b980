//! The service registry: what each service declares about itself (its name, port, config
//! section, migrations, the services it calls and the topics it produces and consumes),
//! and how a process starts the services it runs and reaches the others. `payloom dev` and
//! `payloom serve` compose whatever is registered; adding a service is its crate and one
//! line in the binary's list.

mod settings;
mod wiring;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;

use crate::db::Migration;

pub use settings::{Databases, Endpoint, Settings, redact, write_private};
pub use wiring::{Provided, Wiring};

/// What a service declares about itself.
#[derive(Debug)]
pub struct Manifest {
    /// Its name: the `[services.<name>]` section, the certificate's identity, the CLI word.
    pub name: &'static str,
    /// Its default public port; the internal (mutual TLS) listener defaults to
    /// `port + INTERNAL_PORT_OFFSET`.
    pub port: u16,
    /// Its own configuration section, if it has one.
    pub config_section: Option<&'static str>,
    /// The tables it owns.
    pub migrations: &'static [Migration],
    /// The services it calls over HTTP when they run elsewhere. Each accepts internal
    /// calls only from the services that list it here.
    pub calls: &'static [&'static str],
    /// The topics its outbox publishes; under Kafka a consumer believes an event of one of
    /// them only when this service signed it.
    pub produces: &'static [&'static str],
    /// The topics it consumes.
    pub consumes: &'static [&'static str],
    /// Whether it runs plugins (the process then starts the plugin host).
    pub uses_plugins: bool,
    /// The path prefixes of its public routes, which an API gateway in front (Kong)
    /// sends to it. Empty: it serves nothing public but `/health`, `/ready`, `/metrics`.
    pub public_paths: &'static [&'static str],
    /// A backend for a front end (a console's API) rather than a core service: deployed
    /// apart, after the core.
    pub bff: bool,
}

/// Where an internal listener sits relative to its service's public port.
pub const INTERNAL_PORT_OFFSET: u16 = 1000;

/// What a started service serves.
#[derive(Default)]
pub struct Routes {
    /// The merchant API, PSP notifications, the admin API: for Kong (or `dev`) to front.
    pub public: Router,
    /// The routes under `/internal/`, for the services allowed to call this one.
    pub internal: Router,
}

/// A service the binary can run.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    fn manifest(&self) -> &'static Manifest;

    /// The service runs in another process: leave a client of it in `w` for the local
    /// services that call it (and, for a consumer, a way to its dead letters).
    fn connect(&self, w: &mut Wiring<'_>) -> anyhow::Result<()>;

    /// The service runs here: open its database, start its background work, leave its API
    /// in `w` for its local callers, and hand back its routes. Everything it must keep is
    /// durable before it answers.
    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes>;

    /// The process is stopping and its listeners are closed: finish the background work
    /// under way, within `grace`, from what `start` provided. What was acknowledged is
    /// durable already, so this only spares the next start a retry. Nothing by default.
    async fn stop(&self, _provided: &Provided, _grace: Duration) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The registered services, checked to be consistent.
pub struct Services {
    all: Vec<&'static dyn Service>,
}

impl Services {
    /// Refuses duplicate names, a call to or a topic from nobody, a topic with two
    /// producers, and calls that go round in a circle (no start order would exist).
    pub fn new(all: Vec<&'static dyn Service>) -> anyhow::Result<Self> {
        let services = Self { all };
        services.check()?;
        Ok(services)
    }

    fn check(&self) -> anyhow::Result<()> {
        let mut names = BTreeSet::new();
        for manifest in self.manifests() {
            anyhow::ensure!(
                names.insert(manifest.name),
                "{} is registered twice",
                manifest.name
            );
        }
        let producers = self.producer_map()?;
        for manifest in self.manifests() {
            for callee in manifest.calls {
                anyhow::ensure!(
                    names.contains(callee),
                    "{} calls {callee}, which is not registered",
                    manifest.name
                );
            }
            for topic in manifest.consumes {
                anyhow::ensure!(
                    producers.contains_key(topic),
                    "{} consumes {topic}, which no registered service produces",
                    manifest.name
                );
            }
        }
        self.start_order(&self.names())?;
        Ok(())
    }

    fn producer_map(&self) -> anyhow::Result<BTreeMap<&'static str, &'static str>> {
        let mut producers = BTreeMap::new();
        for manifest in self.manifests() {
            for topic in manifest.produces {
                if let Some(other) = producers.insert(*topic, manifest.name) {
                    anyhow::bail!("{topic} is produced by both {other} and {}", manifest.name);
                }
            }
        }
        Ok(producers)
    }

    pub fn manifests(&self) -> impl Iterator<Item = &'static Manifest> + '_ {
        self.all.iter().map(|service| service.manifest())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.manifests().map(|m| m.name).collect()
    }

    pub fn get(&self, name: &str) -> Option<&'static dyn Service> {
        self.all
            .iter()
            .copied()
            .find(|service| service.manifest().name == name)
    }

    pub fn manifest(&self, name: &str) -> anyhow::Result<&'static Manifest> {
        self.get(name).map(|s| s.manifest()).ok_or_else(|| {
            anyhow::anyhow!(
                "no service named {name:?}; the services are {}",
                self.names().join(", ")
            )
        })
    }

    /// The services allowed to call `name`'s internal routes.
    pub fn callers(&self, name: &str) -> Vec<&'static str> {
        self.manifests()
            .filter(|m| m.calls.contains(&name))
            .map(|m| m.name)
            .collect()
    }

    /// Every (topic, producing service) pair.
    pub fn producers(&self) -> Vec<(&'static str, &'static str)> {
        self.producer_map()
            .expect("checked when registered")
            .into_iter()
            .collect()
    }

    /// The services that consume anything.
    pub fn consumers(&self) -> impl Iterator<Item = &'static Manifest> + '_ {
        self.manifests().filter(|m| !m.consumes.is_empty())
    }

    /// `local`, callees before their callers, so each service finds the APIs it calls.
    pub fn start_order(&self, local: &[&str]) -> anyhow::Result<Vec<&'static dyn Service>> {
        let mut order = Vec::new();
        let mut visiting = Vec::new();
        for name in local {
            self.visit(name, &mut visiting, &mut order)?;
        }
        Ok(order
            .into_iter()
            .filter(|s: &&dyn Service| local.contains(&s.manifest().name))
            .collect())
    }

    fn visit(
        &self,
        name: &str,
        visiting: &mut Vec<&'static str>,
        order: &mut Vec<&'static dyn Service>,
    ) -> anyhow::Result<()> {
        let service = self
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no service {name}"))?;
        let manifest = service.manifest();
        if order.iter().any(|s| s.manifest().name == name) {
            return Ok(());
        }
        if visiting.contains(&manifest.name) {
            anyhow::bail!(
                "services call each other in a circle: {} -> {name}",
                visiting.join(" -> ")
            );
        }
        visiting.push(manifest.name);
        for callee in manifest.calls {
            self.visit(callee, visiting, order)?;
        }
        visiting.pop();
        order.push(service);
        Ok(())
    }

    /// Starts the services of `w` that run here, after a client of every other service
    /// that one of them calls. Returns each local service's routes.
    pub async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Vec<(&'static str, Routes)>> {
        let local = w.local().to_vec();
        let called: BTreeSet<&str> = local
            .iter()
            .flat_map(|name| self.get(name).map(|s| s.manifest().calls).unwrap_or(&[]))
            .copied()
            .collect();
        for service in &self.all {
            let name = service.manifest().name;
            if !local.contains(&name) && called.contains(name) {
                service.connect(w)?;
            }
        }
        let mut routes = Vec::new();
        for service in self.start_order(&local)? {
            let name = service.manifest().name;
            let started = service
                .start(w)
                .await
                .with_context(|| format!("starting {name}"))?;
            routes.push((name, started));
        }
        Ok(routes)
    }

    /// Stops the `local` services, callers before their callees (the reverse of the start),
    /// each given `grace`; a failure is logged and the others still stop.
    pub async fn stop(&self, local: &[&str], provided: &Provided, grace: Duration) {
        let Ok(order) = self.start_order(local) else {
            return;
        };
        for service in order.into_iter().rev() {
            let name = service.manifest().name;
            if let Err(e) = service.stop(provided, grace).await {
                tracing::warn!(service = name, "stopping: {e:#}");
            }
        }
    }
}
