//! The registry's rows: blobs by digest, versions by (plugin, version), activations by
//! sequence. Portable SQL for PostgreSQL and SQLite.

use std::collections::HashMap;

use payloom_platform::db::is_unique_violation;
use payloom_platform::events::Outbox;
use payloom_platform::{ApiError, ApiResult, Db};
use payloom_plugin_registry_contract::{
    Activation, ActiveCanary, ActivePlugin, ActiveSet, ActiveShadow, Artifact, Binding, NodeReport,
    PluginEvent, PluginOut, PluginVersion, PushIn, VersionStatus,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::version_key;

/// A stored version and the manifest text it was pushed with.
pub struct Stored {
    pub version: PluginVersion,
    pub manifest: String,
}

const VERSION_COLUMNS: &str = "plugin_id, version, world, digest, publisher, uploaded_by, status, canary_percent, size_bytes, created_at_ms";

fn status_of(text: &str) -> VersionStatus {
    match text {
        "active" => VersionStatus::Active,
        "canary" => VersionStatus::Canary,
        "shadow" => VersionStatus::Shadow,
        "retired" => VersionStatus::Retired,
        _ => VersionStatus::Staged,
    }
}

fn status_text(status: VersionStatus) -> &'static str {
    match status {
        VersionStatus::Staged => "staged",
        VersionStatus::Active => "active",
        VersionStatus::Canary => "canary",
        VersionStatus::Shadow => "shadow",
        VersionStatus::Retired => "retired",
    }
}

fn version_of(row: &AnyRow) -> sqlx::Result<PluginVersion> {
    Ok(PluginVersion {
        plugin_id: row.try_get("plugin_id")?,
        version: row.try_get("version")?,
        world: row.try_get("world")?,
        digest: row.try_get("digest")?,
        publisher: row.try_get("publisher")?,
        uploaded_by: row.try_get("uploaded_by")?,
        status: status_of(&row.try_get::<String, _>("status")?),
        canary_percent: row.try_get("canary_percent")?,
        size_bytes: row.try_get("size_bytes")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn activation_of(row: &AnyRow) -> sqlx::Result<Activation> {
    Ok(Activation {
        seq: row.try_get("seq")?,
        plugin_id: row.try_get("plugin_id")?,
        version: row.try_get("version")?,
        previous: row.try_get("previous")?,
        action: row.try_get("action")?,
        percent: row.try_get("percent")?,
        merchant_id: row.try_get("merchant_id")?,
        actor: row.try_get("actor")?,
        reason: row.try_get("reason")?,
        at_ms: row.try_get("at_ms")?,
    })
}

pub async fn version(db: &Db, plugin_id: &str, version: &str) -> sqlx::Result<Option<Stored>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS}, manifest FROM plugin_versions WHERE plugin_id = $1 AND version = $2"
    );
    let row = sqlx::query(&sql)
        .bind(plugin_id)
        .bind(version)
        .fetch_optional(db.pool())
        .await?;
    row.map(|row| {
        Ok(Stored {
            version: version_of(&row)?,
            manifest: row.try_get("manifest")?,
        })
    })
    .transpose()
}

/// Stores the component (once per digest) and the staged version, together.
pub async fn insert_version(db: &Db, v: &PluginVersion, push: &PushIn) -> ApiResult<()> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("INSERT INTO plugin_blobs (digest, component_base64) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
        .bind(&v.digest)
        .bind(push.component_base64.trim())
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO plugin_versions (plugin_id, version, world, digest, manifest, signature, publisher, uploaded_by, status, size_bytes, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&v.plugin_id)
    .bind(&v.version)
    .bind(&v.world)
    .bind(&v.digest)
    .bind(&push.manifest)
    .bind(push.signature.as_deref())
    .bind(&v.publisher)
    .bind(&v.uploaded_by)
    .bind(status_text(v.status))
    .bind(v.size_bytes)
    .bind(v.created_at_ms)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(ApiError::conflict(
            "version_exists",
            format!(
                "{}@{} was pushed at the same moment; look at it before pushing again",
                v.plugin_id, v.version
            ),
        )),
        other => {
            other?;
            tx.commit().await?;
            Ok(())
        }
    }
}

/// A built-in version rebuilt with other bytes: the binary is its source of truth.
pub async fn replace_built_in(db: &Db, v: &PluginVersion, push: &PushIn) -> ApiResult<()> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("INSERT INTO plugin_blobs (digest, component_base64) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
        .bind(&v.digest)
        .bind(&push.component_base64)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE plugin_versions SET digest = $3, manifest = $4, size_bytes = $5 \
         WHERE plugin_id = $1 AND version = $2 AND publisher = 'built-in'",
    )
    .bind(&v.plugin_id)
    .bind(&v.version)
    .bind(&v.digest)
    .bind(&push.manifest)
    .bind(v.size_bytes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The active version of `plugin_id`.
pub async fn active_version(db: &Db, plugin_id: &str) -> sqlx::Result<Option<PluginVersion>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1 AND status = 'active'"
    );
    let row = sqlx::query(&sql)
        .bind(plugin_id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(version_of).transpose()
}

/// Keeps a node's latest report.
pub async fn save_report(db: &Db, report: &NodeReport) -> sqlx::Result<()> {
    let text = serde_json::to_string(report).expect("a report serialises");
    sqlx::query(
        "INSERT INTO plugin_nodes (node, report, at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (node) DO UPDATE SET report = excluded.report, at_ms = excluded.at_ms",
    )
    .bind(&report.node)
    .bind(text)
    .bind(report.at_ms)
    .execute(db.pool())
    .await
    .map(drop)
}

/// The reports received since `since_ms`, by node.
pub async fn reports(db: &Db, since_ms: i64) -> sqlx::Result<Vec<NodeReport>> {
    let texts: Vec<String> =
        sqlx::query_scalar("SELECT report FROM plugin_nodes WHERE at_ms >= $1 ORDER BY node")
            .bind(since_ms)
            .fetch_all(db.pool())
            .await?;
    Ok(texts
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect())
}

pub async fn plugin_ids(db: &Db) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT DISTINCT plugin_id FROM plugin_versions ORDER BY plugin_id")
        .fetch_all(db.pool())
        .await
}

pub async fn plugin(db: &Db, plugin_id: &str) -> sqlx::Result<Option<PluginOut>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin_id = $1");
    let mut versions = sqlx::query(&sql)
        .bind(plugin_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(version_of)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let Some(first) = versions.first() else {
        return Ok(None);
    };
    let world = first.world.clone();
    versions.sort_by_key(|v| std::cmp::Reverse(version_key(&v.version)));
    let history =
        sqlx::query("SELECT * FROM plugin_activations WHERE plugin_id = $1 ORDER BY seq DESC")
            .bind(plugin_id)
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(activation_of)
            .collect::<sqlx::Result<Vec<_>>>()?;
    let active = versions
        .iter()
        .find(|v| v.status == VersionStatus::Active)
        .map(|v| v.version.clone());
    Ok(Some(PluginOut {
        plugin_id: plugin_id.to_owned(),
        world,
        active,
        versions,
        history,
        bindings: Vec::new(),
        nodes: Vec::new(),
    }))
}

/// One change of what serves a plugin, as the history records it.
pub struct Change<'a> {
    pub plugin_id: &'a str,
    pub version: &'a str,
    pub action: &'a str,
    pub percent: Option<i64>,
    pub merchant_id: Option<&'a str>,
    pub actor: &'a str,
    pub reason: &'a str,
    pub at_ms: i64,
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

async fn exists(tx: &mut Tx, plugin_id: &str, version: &str) -> ApiResult<()> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT status FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
    )
    .bind(plugin_id)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(
            "plugin version",
            &format!("{plugin_id}@{version}"),
        )),
    }
}

/// The version of `plugin_id` with `status`, if there is one.
async fn with_status(tx: &mut Tx, plugin_id: &str, status: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT version FROM plugin_versions WHERE plugin_id = $1 AND status = $2")
        .bind(plugin_id)
        .bind(status)
        .fetch_optional(&mut **tx)
        .await
}

async fn set_status(
    tx: &mut Tx,
    plugin_id: &str,
    version: &str,
    status: &str,
    percent: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE plugin_versions SET status = $3, canary_percent = $4 WHERE plugin_id = $1 AND version = $2")
        .bind(plugin_id)
        .bind(version)
        .bind(status)
        .bind(percent)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Makes `change.version` active (retiring the active one, ending a canary it was),
/// records who and why, and queues the event: all or nothing.
pub async fn activate(
    db: &Db,
    outbox: &Outbox,
    change: Change<'_>,
    rollback: bool,
) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    exists(&mut tx, change.plugin_id, change.version).await?;
    let active = with_status(&mut tx, change.plugin_id, "active").await?;
    may_activate(
        change.plugin_id,
        active.as_deref(),
        change.version,
        rollback,
    )?;
    if let Some(active) = &active {
        set_status(&mut tx, change.plugin_id, active, "retired", None).await?;
    }
    set_status(&mut tx, change.plugin_id, change.version, "active", None).await?;
    record(tx, outbox, change, active).await
}

/// Runs `change.version` as the canary beside the active version, replacing any other.
pub async fn start_canary(db: &Db, outbox: &Outbox, change: Change<'_>) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    exists(&mut tx, change.plugin_id, change.version).await?;
    let Some(active) = with_status(&mut tx, change.plugin_id, "active").await? else {
        return Err(ApiError::conflict(
            "no_active_version",
            format!(
                "`{}` has no active version to run a canary beside",
                change.plugin_id
            ),
        ));
    };
    if version_key(change.version) <= version_key(&active) {
        return Err(ApiError::conflict(
            "canary_not_newer",
            format!(
                "a canary must be newer than the active {active}; roll back to an older version instead"
            ),
        ));
    }
    if let Some(old) = with_status(&mut tx, change.plugin_id, "canary").await? {
        set_status(&mut tx, change.plugin_id, &old, "staged", None).await?;
    }
    set_status(
        &mut tx,
        change.plugin_id,
        change.version,
        "canary",
        change.percent,
    )
    .await?;
    record(tx, outbox, change, Some(active)).await
}

/// Binds `merchant` to `change.version` of the plugin (replacing its binding).
pub async fn bind(
    db: &Db,
    outbox: &Outbox,
    change: Change<'_>,
    merchant: &str,
) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    exists(&mut tx, change.plugin_id, change.version).await?;
    let before = bound(&mut tx, change.plugin_id, merchant).await?;
    if before.as_deref() == Some(change.version) {
        return Err(ApiError::conflict(
            "already_bound",
            format!(
                "{merchant} is bound to {}@{}",
                change.plugin_id, change.version
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO plugin_bindings (plugin_id, merchant_id, version) VALUES ($1, $2, $3) \
         ON CONFLICT (plugin_id, merchant_id) DO UPDATE SET version = excluded.version",
    )
    .bind(change.plugin_id)
    .bind(merchant)
    .bind(change.version)
    .execute(&mut *tx)
    .await?;
    record(tx, outbox, change, before).await
}

/// Removes `merchant`'s binding of the plugin; `change.version` is filled from it.
pub async fn unbind(
    db: &Db,
    outbox: &Outbox,
    mut change: Change<'_>,
    merchant: &str,
) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    let Some(before) = bound(&mut tx, change.plugin_id, merchant).await? else {
        return Err(ApiError::conflict(
            "not_bound",
            format!("{merchant} has no binding of `{}`", change.plugin_id),
        ));
    };
    sqlx::query("DELETE FROM plugin_bindings WHERE plugin_id = $1 AND merchant_id = $2")
        .bind(change.plugin_id)
        .bind(merchant)
        .execute(&mut *tx)
        .await?;
    let version = before.clone();
    change.version = &version;
    record(tx, outbox, change, Some(before)).await
}

async fn bound(tx: &mut Tx, plugin_id: &str, merchant: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT version FROM plugin_bindings WHERE plugin_id = $1 AND merchant_id = $2",
    )
    .bind(plugin_id)
    .bind(merchant)
    .fetch_optional(&mut **tx)
    .await
}

/// Every binding, with the digest of its version, by plugin.
pub async fn bindings(db: &Db) -> sqlx::Result<HashMap<String, Vec<Binding>>> {
    let rows = sqlx::query(
        "SELECT b.plugin_id, b.merchant_id, b.version, v.digest FROM plugin_bindings b \
         JOIN plugin_versions v ON v.plugin_id = b.plugin_id AND v.version = b.version \
         ORDER BY b.plugin_id, b.merchant_id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out: HashMap<String, Vec<Binding>> = HashMap::new();
    for row in rows {
        out.entry(row.try_get("plugin_id")?)
            .or_default()
            .push(Binding {
                merchant_id: row.try_get("merchant_id")?,
                version: row.try_get("version")?,
                digest: row.try_get("digest")?,
            });
    }
    Ok(out)
}

/// The canary's version, if one runs.
pub async fn canary(db: &Db, plugin_id: &str) -> sqlx::Result<Option<String>> {
    running(db, plugin_id, "canary").await
}

/// The version of `plugin_id` with `status` (`canary`, `shadow`), if there is one.
pub async fn running(db: &Db, plugin_id: &str, status: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT version FROM plugin_versions WHERE plugin_id = $1 AND status = $2")
        .bind(plugin_id)
        .bind(status)
        .fetch_optional(db.pool())
        .await
}

/// Runs channel `change.version` in shadow beside the active version, replacing any other.
pub async fn start_shadow(db: &Db, outbox: &Outbox, change: Change<'_>) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    let world: Option<String> = sqlx::query_scalar(
        "SELECT world FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
    )
    .bind(change.plugin_id)
    .bind(change.version)
    .fetch_optional(&mut *tx)
    .await?;
    match world.as_deref() {
        None => {
            return Err(ApiError::not_found(
                "plugin version",
                &format!("{}@{}", change.plugin_id, change.version),
            ));
        }
        Some("channel-adapter") => {}
        Some(other) => {
            return Err(ApiError::conflict(
                "shadow_needs_channel",
                format!("only channel components run in shadow; this is a {other}"),
            ));
        }
    }
    let Some(active) = with_status(&mut tx, change.plugin_id, "active").await? else {
        return Err(ApiError::conflict(
            "no_active_version",
            format!("`{}` has no active version to shadow", change.plugin_id),
        ));
    };
    if active == change.version {
        return Err(ApiError::conflict(
            "already_active",
            format!("{}@{active} is the active version", change.plugin_id),
        ));
    }
    if let Some(old) = with_status(&mut tx, change.plugin_id, "shadow").await? {
        set_status(&mut tx, change.plugin_id, &old, "staged", None).await?;
    }
    set_status(&mut tx, change.plugin_id, change.version, "shadow", None).await?;
    record(tx, outbox, change, Some(active)).await
}

/// Ends the canary `change.version`: every call goes to the active version again.
pub async fn end_canary(db: &Db, outbox: &Outbox, change: Change<'_>) -> ApiResult<Activation> {
    end_running(db, outbox, change, "canary").await
}

/// Ends what runs beside the active version with `status` (`canary` or `shadow`).
pub async fn end_running(
    db: &Db,
    outbox: &Outbox,
    change: Change<'_>,
    status: &str,
) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    if with_status(&mut tx, change.plugin_id, status)
        .await?
        .as_deref()
        != Some(change.version)
    {
        return Err(ApiError::conflict(
            &format!("no_{status}"),
            format!(
                "{}@{} is not the {status}",
                change.plugin_id, change.version
            ),
        ));
    }
    set_status(&mut tx, change.plugin_id, change.version, "staged", None).await?;
    let active = with_status(&mut tx, change.plugin_id, "active").await?;
    record(tx, outbox, change, active).await
}

/// Appends the history row and the event, then commits.
async fn record(
    mut tx: Tx,
    outbox: &Outbox,
    change: Change<'_>,
    previous: Option<String>,
) -> ApiResult<Activation> {
    let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM plugin_activations")
        .fetch_one(&mut *tx)
        .await?;
    let activation = Activation {
        seq,
        plugin_id: change.plugin_id.to_owned(),
        version: change.version.to_owned(),
        previous,
        action: change.action.to_owned(),
        percent: change.percent,
        merchant_id: change.merchant_id.map(str::to_owned),
        actor: change.actor.to_owned(),
        reason: change.reason.to_owned(),
        at_ms: change.at_ms,
    };
    insert_activation(&mut tx, &activation).await?;
    let event = PluginEvent::Activated(activation.clone());
    outbox
        .append(&mut tx, &event.envelope(), event.key())
        .await?;
    tx.commit().await?;
    Ok(activation)
}

/// Whether `version` may replace `active`: not the same, and not older unless this is a
/// rollback.
fn may_activate(
    plugin_id: &str,
    active: Option<&str>,
    version: &str,
    rollback: bool,
) -> ApiResult<()> {
    let Some(active) = active else {
        return Ok(());
    };
    if active == version {
        return Err(ApiError::conflict(
            "already_active",
            format!("{plugin_id}@{active} is already active"),
        ));
    }
    if !rollback && version_key(version) < version_key(active) {
        return Err(ApiError::conflict(
            "downgrade_needs_rollback",
            format!(
                "{plugin_id}@{version} is older than the active {active}: roll back to it explicitly"
            ),
        ));
    }
    Ok(())
}

async fn insert_activation(tx: &mut sqlx::AnyConnection, a: &Activation) -> ApiResult<()> {
    let inserted = sqlx::query(
        "INSERT INTO plugin_activations (seq, plugin_id, version, previous, action, percent, merchant_id, actor, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(a.seq)
    .bind(&a.plugin_id)
    .bind(&a.version)
    .bind(a.previous.as_deref())
    .bind(&a.action)
    .bind(a.percent)
    .bind(a.merchant_id.as_deref())
    .bind(&a.actor)
    .bind(&a.reason)
    .bind(a.at_ms)
    .execute(tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(ApiError::conflict(
            "concurrent_activation",
            "another activation committed first; look at the plugin and try again",
        )),
        other => other.map(drop).map_err(Into::into),
    }
}

pub async fn active_set(db: &Db) -> sqlx::Result<ActiveSet> {
    let generation: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM plugin_activations")
            .fetch_one(db.pool())
            .await?;
    let rows = sqlx::query(
        "SELECT a.plugin_id, a.version, a.digest, c.version AS canary_version, c.digest AS canary_digest, c.canary_percent, \
         s.version AS shadow_version, s.digest AS shadow_digest \
         FROM plugin_versions a LEFT JOIN plugin_versions c ON c.plugin_id = a.plugin_id AND c.status = 'canary' \
         LEFT JOIN plugin_versions s ON s.plugin_id = a.plugin_id AND s.status = 'shadow' \
         WHERE a.status = 'active' ORDER BY a.plugin_id",
    )
    .fetch_all(db.pool())
    .await?;
    let plugins = rows
        .iter()
        .map(|row| {
            let canary_version: Option<String> = row.try_get("canary_version")?;
            let canary = match canary_version {
                Some(version) => Some(ActiveCanary {
                    version,
                    digest: row.try_get("canary_digest")?,
                    percent: row
                        .try_get::<Option<i64>, _>("canary_percent")?
                        .unwrap_or(0),
                }),
                None => None,
            };
            let shadow = match row.try_get::<Option<String>, _>("shadow_version")? {
                Some(version) => Some(ActiveShadow {
                    version,
                    digest: row.try_get("shadow_digest")?,
                }),
                None => None,
            };
            Ok(ActivePlugin {
                plugin_id: row.try_get("plugin_id")?,
                version: row.try_get("version")?,
                digest: row.try_get("digest")?,
                canary,
                shadow,
                bindings: Vec::new(),
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    let mut bound = bindings(db).await?;
    let plugins = plugins
        .into_iter()
        .map(|mut p: ActivePlugin| {
            p.bindings = bound.remove(&p.plugin_id).unwrap_or_default();
            p
        })
        .collect();
    Ok(ActiveSet {
        generation,
        plugins,
    })
}

pub async fn artifact(db: &Db, plugin_id: &str, version: &str) -> sqlx::Result<Option<Artifact>> {
    let row = sqlx::query(
        "SELECT b.component_base64, v.manifest, v.signature FROM plugin_versions v \
         JOIN plugin_blobs b ON b.digest = v.digest WHERE v.plugin_id = $1 AND v.version = $2",
    )
    .bind(plugin_id)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok(Artifact {
            component_base64: row.try_get("component_base64")?,
            manifest: row.try_get("manifest")?,
            signature: row.try_get("signature")?,
        })
    })
    .transpose()
}
