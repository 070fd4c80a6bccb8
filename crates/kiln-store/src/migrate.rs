//! A small migration runner that behaves the same on SQLite and PostgreSQL.
//!
//! sqlx's own migrator needs its proc macros to embed migrations, which would
//! compile the database drivers a second time; this runner embeds the files
//! with `include_str!` and records each applied migration with its BLAKE3, so
//! an edited migration is caught instead of silently skipped.

use sqlx::{AnyPool, Row};

use crate::{Result, StoreError};

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
    /// PostgreSQL's text, where it must differ (triggers, functions).
    pub postgres_sql: Option<&'static str>,
}

/// Every migration, in order. Name new files `<timestamp>_<what>.sql` and add them here.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 20261126120000,
        name: "initial",
        sql: include_str!("../migrations/20261126120000_initial.sql"),
        postgres_sql: None,
    },
    Migration {
        version: 20261126150000,
        name: "runs",
        sql: include_str!("../migrations/20261126150000_runs.sql"),
        postgres_sql: None,
    },
    Migration {
        version: 20261127090000,
        name: "tracking",
        sql: include_str!("../migrations/20261127090000_tracking.sql"),
        postgres_sql: None,
    },
    Migration {
        version: 20261127100000,
        name: "latest_metrics",
        sql: include_str!("../migrations/20261127100000_latest_metrics_sqlite.sql"),
        postgres_sql: Some(include_str!(
            "../migrations/20261127100000_latest_metrics_postgres.sql"
        )),
    },
    Migration {
        version: 20261205090000,
        name: "serving",
        sql: include_str!("../migrations/20261205090000_serving.sql"),
        postgres_sql: None,
    },
    Migration {
        version: 20261206090000,
        name: "monitoring",
        sql: include_str!("../migrations/20261206090000_monitoring.sql"),
        postgres_sql: None,
    },
    Migration {
        version: 20261207090000,
        name: "pipelines",
        sql: include_str!("../migrations/20261207090000_pipelines.sql"),
        postgres_sql: None,
    },
];

pub(crate) async fn run(pool: &AnyPool, postgres: bool) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS kiln_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL,
            checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(StoreError::query("creating the migrations table"))?;

    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let newest: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM kiln_migrations")
        .fetch_one(pool)
        .await
        .map_err(StoreError::query("reading applied migrations"))?
        .try_get("v")
        .map_err(StoreError::query("reading applied migrations"))?;
    if let Some(found) = newest.filter(|&v| v > known) {
        return Err(StoreError::SchemaTooNew { found, known });
    }

    for m in MIGRATIONS {
        let sql = match (postgres, m.postgres_sql) {
            (true, Some(pg)) => pg,
            _ => m.sql,
        };
        let checksum = blake3::hash(sql.as_bytes()).to_hex().to_string();
        let mut tx = pool
            .begin()
            .await
            .map_err(StoreError::query("starting a migration"))?;
        if postgres {
            // Serialise concurrent migrators (several workers starting at once).
            sqlx::query("SELECT pg_advisory_xact_lock(7461626)")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("locking for migration"))?;
        }
        let applied: Option<String> =
            sqlx::query("SELECT checksum FROM kiln_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("reading applied migrations"))?
                .map(|r| r.try_get("checksum"))
                .transpose()
                .map_err(StoreError::query("reading applied migrations"))?;
        match applied {
            Some(c) if c == checksum => continue,
            Some(_) => return Err(StoreError::MigrationChanged { version: m.version }),
            None => {}
        }
        let migrate_err = |source| StoreError::Migrate {
            version: m.version,
            name: m.name.to_string(),
            source,
        };
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(migrate_err)?;
        sqlx::query(
            "INSERT INTO kiln_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(&checksum)
        .bind(kiln_core::now_rfc3339())
        .execute(&mut *tx)
        .await
        .map_err(migrate_err)?;
        tx.commit().await.map_err(migrate_err)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}
