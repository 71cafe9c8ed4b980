//! The registry's rows: blobs by digest, versions by (plugin, version), activations by
//! sequence. Portable SQL for PostgreSQL and SQLite.

use payloom_platform::db::is_unique_violation;
use payloom_platform::events::Outbox;
use payloom_platform::{ApiError, ApiResult, Db};
use payloom_plugin_registry_contract::{
    ActivateIn, Activation, ActivePlugin, ActiveSet, Artifact, PluginEvent, PluginOut,
    PluginVersion, PushIn, VersionStatus,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::version_key;

/// A stored version and the manifest text it was pushed with.
pub struct Stored {
    pub version: PluginVersion,
    pub manifest: String,
}

const VERSION_COLUMNS: &str =
    "plugin_id, version, world, digest, publisher, uploaded_by, status, size_bytes, created_at_ms";

fn status_of(text: &str) -> VersionStatus {
    match text {
        "active" => VersionStatus::Active,
        "retired" => VersionStatus::Retired,
        _ => VersionStatus::Staged,
    }
}

fn status_text(status: VersionStatus) -> &'static str {
    match status {
        VersionStatus::Staged => "staged",
        VersionStatus::Active => "active",
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
    }))
}

/// Moves the active mark, records who and why, and queues the event: all or nothing.
pub async fn activate(
    db: &Db,
    outbox: &Outbox,
    plugin_id: &str,
    input: &ActivateIn,
    action: &str,
    now_ms: i64,
) -> ApiResult<Activation> {
    let mut tx = db.pool().begin().await?;
    let target: Option<String> = sqlx::query_scalar(
        "SELECT status FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
    )
    .bind(plugin_id)
    .bind(&input.version)
    .fetch_optional(&mut *tx)
    .await?;
    if target.is_none() {
        return Err(ApiError::not_found(
            "plugin version",
            &format!("{plugin_id}@{}", input.version),
        ));
    }
    let active: Option<String> = sqlx::query_scalar(
        "SELECT version FROM plugin_versions WHERE plugin_id = $1 AND status = 'active'",
    )
    .bind(plugin_id)
    .fetch_optional(&mut *tx)
    .await?;
    may_activate(plugin_id, active.as_deref(), input)?;
    sqlx::query(
        "UPDATE plugin_versions SET status = 'retired' WHERE plugin_id = $1 AND status = 'active'",
    )
    .bind(plugin_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE plugin_versions SET status = 'active' WHERE plugin_id = $1 AND version = $2",
    )
    .bind(plugin_id)
    .bind(&input.version)
    .execute(&mut *tx)
    .await?;
    let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM plugin_activations")
        .fetch_one(&mut *tx)
        .await?;
    let activation = Activation {
        seq,
        plugin_id: plugin_id.to_owned(),
        version: input.version.clone(),
        previous: active,
        action: action.to_owned(),
        actor: input.actor.clone(),
        reason: input.reason.clone(),
        at_ms: now_ms,
    };
    insert_activation(&mut tx, &activation).await?;
    let event = PluginEvent::Activated(activation.clone());
    outbox
        .append(&mut tx, &event.envelope(), event.key())
        .await?;
    tx.commit().await?;
    Ok(activation)
}

/// Whether `input.version` may replace `active`: not the same, and not older unless this
/// is a rollback.
fn may_activate(plugin_id: &str, active: Option<&str>, input: &ActivateIn) -> ApiResult<()> {
    let Some(active) = active else {
        return Ok(());
    };
    if active == input.version {
        return Err(ApiError::conflict(
            "already_active",
            format!("{plugin_id}@{active} is already active"),
        ));
    }
    if !input.rollback && version_key(&input.version) < version_key(active) {
        return Err(ApiError::conflict(
            "downgrade_needs_rollback",
            format!(
                "{plugin_id}@{} is older than the active {active}: roll back to it explicitly",
                input.version
            ),
        ));
    }
    Ok(())
}

async fn insert_activation(tx: &mut sqlx::AnyConnection, a: &Activation) -> ApiResult<()> {
    let inserted = sqlx::query(
        "INSERT INTO plugin_activations (seq, plugin_id, version, previous, action, actor, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.seq)
    .bind(&a.plugin_id)
    .bind(&a.version)
    .bind(a.previous.as_deref())
    .bind(&a.action)
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
    let plugins = sqlx::query("SELECT plugin_id, version, digest FROM plugin_versions WHERE status = 'active' ORDER BY plugin_id")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(ActivePlugin {
                plugin_id: row.try_get("plugin_id")?,
                version: row.try_get("version")?,
                digest: row.try_get("digest")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
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
