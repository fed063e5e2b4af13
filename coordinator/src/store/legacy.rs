//! Databases from before the migrator: their schema was created by code
//! and versioned in `schema_version` (1 to 7; PostgreSQL from 6 on). Such a
//! database is bridged once, inside the migration transaction, exactly as
//! that code upgraded it on open: the newest DDL (the baseline migration,
//! all `IF NOT EXISTS`) runs over it, then the data and column steps its
//! version still lacks, and the baseline is recorded as applied in the
//! migrator's table, with its checksum. From then on the migrator alone
//! decides. The steps below are history: frozen, never edited.
use std::ops::RangeInclusive;

use sqlx::AnyConnection;
use sqlx::migrate::{Migrate, Migrator};

use super::schema::MIGRATIONS_TABLE;
use super::{Backend, Result, StoreError};

/// The last version the code before the migrator wrote, and the migration
/// that stands for it.
const LAST_LEGACY_VERSION: i64 = 7;

/// Columns schema 2 added to `agents` (fleet health).
const MIGRATE_1_TO_2: &[&str] = &[
    "ALTER TABLE agents ADD COLUMN assignment_version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN clock_skew_ms INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN spool_depth INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN spool_bytes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN dropped_total INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN stored_total INTEGER NOT NULL DEFAULT 0",
];

/// Schema 4 (`minute_counts`, `minute_thresholds`, created by the
/// baseline): availability rows backfilled from the raw results (the
/// minute floored, also for negative times); latency rows follow on the
/// first `set_latency_thresholds`. (Schema 3's `alerts` table needs no
/// step: the baseline creates it.)
const MIGRATE_3_TO_4: &[&str] = &[
    "DELETE FROM minute_counts",
    "DELETE FROM minute_thresholds",
    "INSERT INTO minute_counts
        (probe_id, region, minute, threshold_us, good, total)
     SELECT probe_id, region, (started_ms - (((started_ms % 60000) + 60000) % 60000)) / 60000 AS m,
        0, SUM(CASE WHEN outcome = 1 THEN 1 ELSE 0 END), COUNT(*)
     FROM results WHERE true GROUP BY probe_id, region, m
     ON CONFLICT (probe_id, minute, threshold_us, region) DO UPDATE SET
        good = excluded.good, total = excluded.total",
];

/// Schema 6: when each `minute_counts` row last changed. (Schema 5 only
/// added `minute_sketches`, which the baseline creates.)
const MIGRATE_5_TO_6: &[&str] =
    &["ALTER TABLE minute_counts ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0"];

/// Schema 7: the escalations stored so far (their receive time is known).
const MIGRATE_6_TO_7: &[&str] = &[
    "INSERT INTO escalations (agent_id, seq, probe_id, started_ms, received_ms)
     SELECT agent_id, seq, probe_id, started_ms, received_ms FROM results
     WHERE failure_class = 11 OR steps_json LIKE '%\"failure_class\":11%'
     ON CONFLICT (agent_id, seq) DO NOTHING",
];

/// The steps a database at a version in the range still needs, in order.
/// `minute_counts` lacks `updated_ms` only where it existed before the
/// upgrade (versions 4 and 5); older files get the table from the baseline.
const STEPS: &[(RangeInclusive<i64>, &[&str])] = &[
    (1..=1, MIGRATE_1_TO_2),
    (1..=3, MIGRATE_3_TO_4),
    (4..=5, MIGRATE_5_TO_6),
    (1..=6, MIGRATE_6_TO_7),
];

/// Whether `table` exists (in the current schema, on PostgreSQL).
async fn table_exists(conn: &mut AnyConnection, backend: Backend, table: &str) -> Result<bool> {
    let sql = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let n: i64 = sqlx::query_scalar(sql)
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n > 0)
}

/// Brings a database from before the migrator to schema 7 and records the
/// baseline as applied; a no-op for a new database or one the migrator
/// already knows. Runs inside the migration transaction.
pub(super) async fn bridge(
    conn: &mut AnyConnection,
    backend: Backend,
    migrator: &Migrator,
) -> Result<()> {
    if table_exists(conn, backend, MIGRATIONS_TABLE).await?
        || !table_exists(conn, backend, "schema_version").await?
    {
        return Ok(());
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await?;
    // An empty `schema_version` was taken for a new database.
    let found = found.unwrap_or(LAST_LEGACY_VERSION);
    if found > LAST_LEGACY_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: LAST_LEGACY_VERSION,
        });
    }
    let baseline = migrator
        .iter()
        .find(|m| m.version == LAST_LEGACY_VERSION)
        .ok_or_else(|| StoreError::Invalid("no baseline migration".into()))?;
    sqlx::raw_sql(baseline.sql.clone())
        .execute(&mut *conn)
        .await?;
    for (_, steps) in STEPS.iter().filter(|(from, _)| from.contains(&found)) {
        for stmt in *steps {
            sqlx::query(*stmt).execute(&mut *conn).await?;
        }
    }
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    conn.skip(MIGRATIONS_TABLE, baseline).await?;
    tracing::info!(
        from_version = found,
        to_version = LAST_LEGACY_VERSION,
        "database from before the migrator upgraded; migrations take over"
    );
    Ok(())
}
