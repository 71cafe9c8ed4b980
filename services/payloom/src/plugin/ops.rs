//! `payloom plugin push | list | status | activate | canary | promote | rollback`: plugin
//! operations through the admin API, as an operator. The admin URL and login come from
//! flags or `PAYLOOM_ADMIN_URL`, `PAYLOOM_ADMIN_USERNAME`, `PAYLOOM_ADMIN_PASSWORD`; with
//! none given, from the credentials `payloom dev` wrote into `--data-dir`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the admin API is and who logs in.
#[derive(Args, Clone)]
pub struct Admin {
    /// The admin API's base URL (default: the one `payloom dev` wrote).
    #[arg(long, env = "PAYLOOM_ADMIN_URL")]
    pub admin_url: Option<String>,
    #[arg(long, env = "PAYLOOM_ADMIN_USERNAME")]
    pub username: Option<String>,
    #[arg(long, env = "PAYLOOM_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Where `payloom dev` wrote its credentials, for what is not given.
    #[arg(long, default_value = ".payloom")]
    pub data_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum OpsCommand {
    /// Upload a component (with `<component>.toml` and `<component>.sig` beside it): it is
    /// checked and staged, or refused with the reason.
    Push {
        #[command(flatten)]
        admin: Admin,
        component: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Every plugin: its active version, canary and versions.
    List {
        #[command(flatten)]
        admin: Admin,
    },
    /// One plugin's versions and activation history.
    Status {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
    },
    /// Make a version active; an older one needs --rollback.
    Activate {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        version: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        rollback: bool,
    },
    /// Send a share of payments, by payment id, to a newer version.
    Canary {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        version: String,
        #[arg(long)]
        percent: i64,
        #[arg(long)]
        reason: String,
    },
    /// Run a channel version beside the active one on every call, answered from the live
    /// call's recorded HTTP: it serves nobody; `status` shows where it differs.
    Shadow {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        version: String,
        #[arg(long)]
        reason: String,
    },
    /// Bind a merchant to a version: its payments reach it whatever is active.
    Bind {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        version: String,
        #[arg(long)]
        merchant: String,
        #[arg(long)]
        reason: String,
    },
    /// Remove a merchant's binding: it follows the active version again.
    Unbind {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        #[arg(long)]
        merchant: String,
        #[arg(long)]
        reason: String,
    },
    /// Make the canary the active version.
    Promote {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        #[arg(long)]
        reason: String,
    },
    /// End the canary, else the shadow run, else put back the version active before the
    /// current one.
    Rollback {
        #[command(flatten)]
        admin: Admin,
        plugin: String,
        #[arg(long)]
        reason: String,
    },
}

impl OpsCommand {
    fn admin(&self) -> &Admin {
        match self {
            Self::Push { admin, .. }
            | Self::List { admin }
            | Self::Status { admin, .. }
            | Self::Activate { admin, .. }
            | Self::Canary { admin, .. }
            | Self::Shadow { admin, .. }
            | Self::Bind { admin, .. }
            | Self::Unbind { admin, .. }
            | Self::Promote { admin, .. }
            | Self::Rollback { admin, .. } => admin,
        }
    }
}

/// Runs `command`; prints the answer as JSON. Exit 1 with the API's reason when refused.
pub async fn run(command: OpsCommand) -> anyhow::Result<ExitCode> {
    let session = Session::login(command.admin()).await?;
    let (path, body) = match command {
        OpsCommand::Push {
            component,
            manifest,
            signature,
            ..
        } => (String::new(), push_body(&component, manifest, signature)?),
        OpsCommand::List { .. } => return session.show("GET", "", Value::Null).await,
        OpsCommand::Status { plugin, .. } => {
            return session
                .show("GET", &format!("/{plugin}"), Value::Null)
                .await;
        }
        OpsCommand::Activate {
            plugin,
            version,
            reason,
            rollback,
            ..
        } => (
            format!("/{plugin}/activate"),
            json!({"version": version, "reason": reason, "rollback": rollback}),
        ),
        OpsCommand::Canary {
            plugin,
            version,
            percent,
            reason,
            ..
        } => (
            format!("/{plugin}/canary"),
            json!({"version": version, "percent": percent, "reason": reason}),
        ),
        OpsCommand::Shadow {
            plugin,
            version,
            reason,
            ..
        } => (
            format!("/{plugin}/shadow"),
            json!({"version": version, "reason": reason}),
        ),
        OpsCommand::Bind {
            plugin,
            version,
            merchant,
            reason,
            ..
        } => (
            format!("/{plugin}/bindings"),
            json!({"version": version, "merchant_id": merchant, "reason": reason}),
        ),
        OpsCommand::Unbind {
            plugin,
            merchant,
            reason,
            ..
        } => (
            format!("/{plugin}/unbind"),
            json!({"merchant_id": merchant, "reason": reason}),
        ),
        OpsCommand::Promote { plugin, reason, .. } => {
            (format!("/{plugin}/promote"), json!({"reason": reason}))
        }
        OpsCommand::Rollback { plugin, reason, .. } => {
            (format!("/{plugin}/rollback"), json!({"reason": reason}))
        }
    };
    session.show("POST", &path, body).await
}

fn push_body(
    component: &Path,
    manifest: Option<PathBuf>,
    signature: Option<PathBuf>,
) -> anyhow::Result<Value> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let wasm = read(component)?;
    let manifest = String::from_utf8(read(
        &manifest.unwrap_or_else(|| component.with_extension("toml")),
    )?)?;
    let beside = component.with_extension("sig");
    let signature = match signature.or_else(|| beside.exists().then_some(beside)) {
        Some(path) => Some(String::from_utf8(read(&path)?)?),
        None => None,
    };
    Ok(json!({
        "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "manifest": manifest,
        "signature": signature,
    }))
}

struct Session {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Session {
    async fn login(admin: &Admin) -> anyhow::Result<Self> {
        let dev = crate::demo::load_credentials(&admin.data_dir).ok();
        let pick = |given: &Option<String>, from_dev: Option<String>, what: &str| {
            given.clone().or(from_dev).with_context(|| {
                format!("no admin {what}: pass it, set its PAYLOOM_ADMIN_ variable, or run `payloom dev` with this --data-dir")
            })
        };
        let base = pick(
            &admin.admin_url,
            dev.as_ref().map(|d| d.admin_url.clone()),
            "URL",
        )?;
        let username = pick(
            &admin.username,
            dev.as_ref().map(|d| d.admin.username.clone()),
            "username",
        )?;
        let password = pick(
            &admin.password,
            dev.as_ref().map(|d| d.admin.password.clone()),
            "password",
        )?;
        let http = reqwest::Client::new();
        let base = base.trim_end_matches('/').to_owned();
        let answer = http
            .post(format!("{base}/admin/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let token = body["token"]
            .as_str()
            .with_context(|| format!("logging in at {base}: {status} {body}"))?
            .to_owned();
        Ok(Self { http, base, token })
    }

    /// Sends one request to `/admin/v1/plugins{path}`; prints the answer.
    async fn show(&self, method: &str, path: &str, body: Value) -> anyhow::Result<ExitCode> {
        let mut request = self
            .http
            .request(
                method.parse()?,
                format!("{}/admin/v1/plugins{path}", self.base),
            )
            .bearer_auth(&self.token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        println!("{}", serde_json::to_string_pretty(&body)?);
        if status.is_success() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "refused: {status} {}",
            body["error"]["message"].as_str().unwrap_or("")
        );
        Ok(ExitCode::FAILURE)
    }
}
