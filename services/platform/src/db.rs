//! Database access for every service: one `sqlx::Any` pool that is SQLite (embedded
//! default) or PostgreSQL (production), and per-service migrations in portable SQL.
//!
//! Portable means: `$1`-style placeholders (both drivers take them), `BIGINT` for money and
//! millisecond timestamps, `TEXT` for ids and JSON, `ON CONFLICT … DO NOTHING`, and
//! `RETURNING`. Where the dialects must differ, [`Dialect`] is the one switch.

use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One migration of one service. Versions only ever grow; applied ones never change:
/// each is recorded with the SHA-256 of its SQL, and a start that finds an applied
/// migration's SQL changed refuses to run rather than leave the schema in doubt.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Statements separated by `;` (no `;` inside literals).
    pub sql: &'static str,
}

impl Migration {
    /// The hex SHA-256 of the SQL as written.
    pub fn checksum(&self) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(self.sql.as_bytes()))
    }
}

/// A service's database handle.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
}

/// Options a service passes explicitly, never implied.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// PostgreSQL connections per pool. SQLite always uses one (see below).
    pub max_connections: u32,
    /// How long a request may wait for a connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`).
    pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            anyhow::bail!("database url must start with sqlite: or postgres:");
        };
        let connect: AnyConnectOptions = url.parse().context("parsing the database url")?;
        let pool = match dialect {
            // SQLite has one writer. A single connection per service file serialises
            // writes in-process, so a transaction never fails upgrading a read lock
            // (SQLITE_BUSY) under concurrent requests.
            Dialect::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                })
                .connect_with(connect)
                .await
                .context("opening the SQLite database")?,
            Dialect::Postgres => AnyPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                // A ping on every checkout doubles the round trips of short queries; a
                // broken connection fails its query instead and is replaced.
                .test_before_acquire(false)
                .connect_with(connect)
                .await
                .context("connecting to PostgreSQL")?,
        };
        Ok(Self { pool, dialect })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies `service`'s migrations that are not applied yet, each in a transaction.
    /// Concurrent starters on PostgreSQL wait on an advisory lock, so one applies them.
    pub async fn migrate(&self, service: &str, migrations: &[Migration]) -> anyhow::Result<()> {
        assert!(
            migrations.windows(2).all(|w| w[0].version < w[1].version),
            "{service}: migration versions must increase"
        );
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7424100)")
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_locked(&mut conn, service, migrations).await;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7424100)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_locked(
        &self,
        conn: &mut sqlx::AnyConnection,
        service: &str,
        migrations: &[Migration],
    ) -> anyhow::Result<()> {
        let applied = applied_checksums(conn, service).await?;
        for migration in migrations {
            match applied.get(&migration.version) {
                None => {}
                Some(Some(recorded)) if *recorded == migration.checksum() => continue,
                Some(Some(recorded)) => anyhow::bail!(
                    "{service} migration {} ({}) changed after it was applied: its SQL hashes \
                     to {}, the database recorded {recorded}; add a new migration instead",
                    migration.version,
                    migration.name,
                    migration.checksum()
                ),
                // Applied before checksums were kept: adopt the SQL as it is now.
                Some(None) => {
                    sqlx::query("UPDATE payloom_migrations SET checksum = $1 WHERE service = $2 AND version = $3")
                        .bind(migration.checksum())
                        .bind(service)
                        .bind(migration.version)
                        .execute(&mut *conn)
                        .await?;
                    continue;
                }
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for statement in migration
                .sql
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                tx.execute(statement).await.with_context(|| {
                    format!(
                        "{service} migration {} ({})",
                        migration.version, migration.name
                    )
                })?;
            }
            sqlx::query(
                "INSERT INTO payloom_migrations (service, version, name, applied_at_ms, checksum) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(service)
            .bind(migration.version)
            .bind(migration.name)
            .bind(crate::clock::Clock::now_ms(&crate::SystemClock))
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Answers when the database takes a query.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The versions of `service` applied in this database, each with its recorded checksum
/// (`None` for one applied before checksums were kept).
async fn applied_checksums(
    conn: &mut sqlx::AnyConnection,
    service: &str,
) -> anyhow::Result<std::collections::HashMap<i64, Option<String>>> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS payloom_migrations (
            service TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL, checksum TEXT, PRIMARY KEY (service, version))",
    )
    .await?;
    // A table from before checksums has no such column yet.
    let probe = sqlx::query("SELECT checksum FROM payloom_migrations WHERE 1 = 0");
    if probe.execute(&mut *conn).await.is_err() {
        conn.execute("ALTER TABLE payloom_migrations ADD COLUMN checksum TEXT")
            .await?;
    }
    let rows: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT version, checksum FROM payloom_migrations WHERE service = $1")
            .bind(service)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Whether `err` is a unique-constraint violation (a duplicate insert).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

/// The database URL of one service's SQLite file under `dir`.
pub fn sqlite_url(dir: &std::path::Path, service: &str) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.join(format!("{service}.sqlite")).display()
    )
}

/// A fresh database for a test: SQLite files in a folder, or a new PostgreSQL database on
/// the local server, dropped by [`Scratch::drop`].
pub struct Scratch {
    pub db: Db,
    postgres: Option<String>,
}

impl Scratch {
    const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// SQLite always, and PostgreSQL when it answers at 127.0.0.1:5432 (required when
    /// `PAYLOOM_REQUIRE_POSTGRES=1`): a test of both dialects runs against each.
    pub async fn each_dialect(dir: &std::path::Path) -> Vec<Scratch> {
        let options = PoolOptions::default();
        let sqlite = Db::connect(&sqlite_url(dir, "scratch"), &options).await;
        let mut dbs = vec![Scratch {
            db: sqlite.expect("a SQLite file in the folder"),
            postgres: None,
        }];
        match Db::connect(Self::POSTGRES_ADMIN, &options).await {
            Ok(admin) => {
                let name = format!("payloom_scratch_{}", crate::ids::random_hex(6));
                let create = format!("CREATE DATABASE {name}");
                admin
                    .pool
                    .execute(&*create)
                    .await
                    .expect("creating a database");
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                let db = Db::connect(&url, &options).await.expect("the new database");
                dbs.push(Scratch {
                    db,
                    postgres: Some(name),
                });
            }
            Err(e) if std::env::var("PAYLOOM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
                panic!("PostgreSQL is required (PAYLOOM_REQUIRE_POSTGRES=1) but unreachable: {e}")
            }
            Err(_) => {}
        }
        dbs
    }

    /// Closes the pool and drops the PostgreSQL database.
    pub async fn drop(self) {
        self.db.pool.close().await;
        let Some(name) = self.postgres else { return };
        let admin = Db::connect(Self::POSTGRES_ADMIN, &PoolOptions::default())
            .await
            .expect("the PostgreSQL server");
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        admin
            .pool
            .execute(&*drop)
            .await
            .expect("dropping a database");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: Migration = Migration {
        version: 1,
        name: "widgets",
        sql: "CREATE TABLE widgets (id TEXT PRIMARY KEY)",
    };
    const V1_EDITED: Migration = Migration {
        sql: "CREATE TABLE widgets (id TEXT PRIMARY KEY, colour TEXT)",
        ..V1
    };

    #[tokio::test]
    async fn an_applied_migration_whose_sql_changed_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        for scratch in Scratch::each_dialect(dir.path()).await {
            let db = scratch.db.clone();
            db.migrate("shop", &[V1]).await.unwrap();
            db.migrate("shop", &[V1]).await.unwrap();
            let err = db
                .migrate("shop", &[V1_EDITED])
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("shop migration 1 (widgets) changed"), "{err}");
            // Nothing ran: the table still has its first shape.
            let probe = db.pool.execute("SELECT colour FROM widgets").await;
            assert!(probe.is_err());
            db.pool.close().await;
            scratch.drop().await;
        }
    }

    #[tokio::test]
    async fn a_migration_applied_before_checksums_is_adopted_then_guarded() {
        let dir = tempfile::tempdir().unwrap();
        for scratch in Scratch::each_dialect(dir.path()).await {
            let db = scratch.db.clone();
            // The bookkeeping table as it was before checksums.
            db.pool
                .execute(
                    "CREATE TABLE payloom_migrations (service TEXT NOT NULL, version BIGINT \
                     NOT NULL, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL, \
                     PRIMARY KEY (service, version))",
                )
                .await
                .unwrap();
            db.pool.execute(V1.sql).await.unwrap();
            db.pool
                .execute("INSERT INTO payloom_migrations VALUES ('shop', 1, 'widgets', 0)")
                .await
                .unwrap();
            db.migrate("shop", &[V1]).await.unwrap();
            let recorded: Option<String> =
                sqlx::query_scalar("SELECT checksum FROM payloom_migrations")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            assert_eq!(recorded, Some(V1.checksum()));
            assert!(db.migrate("shop", &[V1_EDITED]).await.is_err());
            db.pool.close().await;
            scratch.drop().await;
        }
    }
}
