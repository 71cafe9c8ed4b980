//! admin-bff in the service registry.

use payloom_platform::registry::{Manifest, Routes, Service, Wiring};
use serde::Deserialize;

use crate::{Admin, AdminClients, LoginConfig, MIGRATIONS};

pub const SERVICE: &str = "admin-bff";

/// The operators' API.
pub struct AdminService;

static MANIFEST: Manifest = Manifest {
    name: SERVICE,
    port: 40001,
    config_section: Some("admin"),
    migrations: MIGRATIONS,
    calls: &[
        "merchant-auth",
        "channel-adapter",
        "merchant-policy",
        "accounting",
        "notification",
        "plugin-registry",
    ],
    produces: &[],
    consumes: &[],
    uses_plugins: false,
    public_paths: &["/admin"],
    bff: true,
};

/// `[admin]`: the first operator of a new deployment.
#[derive(Debug, Clone, Deserialize)]
struct AdminBootstrap {
    bootstrap_username: String,
    bootstrap_password: Option<String>,
}

#[async_trait::async_trait]
impl Service for AdminService {
    fn manifest(&self) -> &'static Manifest {
        &MANIFEST
    }

    /// Nothing calls the admin API's internal routes; operators reach its public ones.
    fn connect(&self, _: &mut Wiring<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    async fn start(&self, w: &mut Wiring<'_>) -> anyhow::Result<Routes> {
        let secret = w
            .settings
            .secret("admin_jwt_secret", "admin-jwt.secret", || {
                payloom_platform::ids::random_hex(32)
            })?;
        let login: LoginConfig = w.section("admin")?;
        let clients = AdminClients {
            auth: w.get()?,
            channels: w.get()?,
            policy: w.get()?,
            accounting: w.get()?,
            notifications: w.get()?,
            plugins: w.get()?,
            dead_letters: w.take_dead_letters(),
        };
        let attempts = w.key_store("payloom:admin:");
        let db = w.db(SERVICE).await?;
        let admin = Admin::new(
            db,
            w.clock.clone(),
            secret.as_bytes(),
            &login,
            attempts,
            clients,
        )
        .await?;
        bootstrap(&admin, w.section("admin")?).await?;
        w.provide(admin.clone());
        Ok(Routes {
            public: crate::router(admin),
            ..Routes::default()
        })
    }
}

/// Creates the first operator from `[admin] bootstrap_password`, once: only while there is
/// no operator at all, so the password is never re-applied to an existing account.
async fn bootstrap(admin: &Admin, bootstrap: AdminBootstrap) -> anyhow::Result<()> {
    let Some(password) = bootstrap.bootstrap_password.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let username = &bootstrap.bootstrap_username;
    if admin.bootstrap_admin(username, &password).await? {
        tracing::info!(
            username,
            "created the first operator from [admin] bootstrap_password"
        );
    } else {
        tracing::warn!(
            "operators exist, so [admin] bootstrap_password was not applied; remove it from the configuration"
        );
    }
    Ok(())
}
