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

/// One migration of one service. Versions only ever grow; applied ones never change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Statements separated by `;` (no `;` inside literals).
    pub sql: &'static str,
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
        conn.execute(
            "CREATE TABLE IF NOT EXISTS payloom_migrations (
                service TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL,
                applied_at_ms BIGINT NOT NULL, PRIMARY KEY (service, version))",
        )
        .await?;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM payloom_migrations WHERE service = $1")
                .bind(service)
                .fetch_all(&mut *conn)
                .await?;
        for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
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
                "INSERT INTO payloom_migrations (service, version, name, applied_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(service)
            .bind(migration.version)
            .bind(migration.name)
            .bind(crate::clock::Clock::now_ms(&crate::SystemClock))
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
