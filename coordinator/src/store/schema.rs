//! How a database gets its schema: the migrations in
//! `coordinator/migrations/<engine>/`, compiled in and run by sqlx's
//! migrator when a [`Store`] opens. Everything happens in one transaction
//! (on PostgreSQL under the advisory lock `LOCK_MIGRATE`, so replicas
//! starting together don't race): the bridge for databases from before the
//! migrator (`legacy.rs`), the pending migrations, and the `schema_version`
//! row that coordinators from before the migrator check. A database that a
//! newer coordinator migrated further is refused, never downgraded.
use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

use super::{Backend, LOCK_MIGRATE, Result, Store, StoreError, legacy};

/// The newest schema version: the last migration's.
pub const SCHEMA_VERSION: i64 = 8;

/// Where sqlx's migrator records what it applied.
pub(super) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One migration file: version, description, SQL.
type MigrationFile = (i64, &'static str, &'static str);

/// The SQLite migrations, oldest first: `coordinator/migrations/sqlite/`
/// (a test checks this list against the folder).
const SQLITE: &[MigrationFile] = &[
    (
        7,
        "baseline",
        include_str!("../../migrations/sqlite/0007_baseline.sql"),
    ),
    (
        8,
        "hour_counts",
        include_str!("../../migrations/sqlite/0008_hour_counts.sql"),
    ),
];

/// The PostgreSQL migrations, the same versions as SQLite's:
/// `coordinator/migrations/postgres/`.
const POSTGRES: &[MigrationFile] = &[
    (
        7,
        "baseline",
        include_str!("../../migrations/postgres/0007_baseline.sql"),
    ),
    (
        8,
        "hour_counts",
        include_str!("../../migrations/postgres/0008_hour_counts.sql"),
    ),
];

/// The migration files of `backend`.
pub(super) fn files(backend: Backend) -> &'static [MigrationFile] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// The migrator for `backend`. Its own lock is off: [`Store::migrate`]
/// holds `LOCK_MIGRATE` around the bridge and the migrations together.
pub(super) fn migrator(backend: Backend) -> Migrator {
    let mut m = Migrator::with_migrations(
        files(backend)
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    m.set_locking(false);
    m
}

impl Store {
    /// Creates the schema on a new database or brings an older one up to
    /// [`SCHEMA_VERSION`], all or nothing.
    pub(super) async fn migrate(&self) -> Result<()> {
        let migrator = migrator(self.backend);
        let mut tx = self.write.begin().await?;
        self.xact_lock(&mut tx, LOCK_MIGRATE).await?;
        legacy::bridge(&mut tx, self.backend, &migrator).await?;
        // Each migration runs in a savepoint of this transaction.
        migrator.run(&mut *tx).await.map_err(|e| match e {
            MigrateError::VersionMissing(found) => StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            },
            e => StoreError::Migrate(e),
        })?;
        // Coordinators from before the migrator refuse a database whose
        // `schema_version` is above theirs: keep it at the newest.
        let recorded: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        if recorded.is_none_or(|v| v < SCHEMA_VERSION) {
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(SCHEMA_VERSION)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the migration folders is compiled in, with the same
    /// versions for both engines, and [`SCHEMA_VERSION`] is the last one.
    #[test]
    fn migration_lists_match_the_folders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut versions = Vec::new();
        for (engine, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
            let mut on_disk: Vec<String> = std::fs::read_dir(dir.join(engine))
                .expect("migrations folder")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let listed: Vec<String> = files(backend)
                .iter()
                .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
                .collect();
            assert_eq!(on_disk, listed, "coordinator/migrations/{engine}");
            versions.push(files(backend).iter().map(|f| f.0).collect::<Vec<_>>());
        }
        assert_eq!(versions[0], versions[1], "both engines, the same versions");
        assert_eq!(versions[0].last(), Some(&SCHEMA_VERSION));
        assert!(versions[0].windows(2).all(|w| w[0] < w[1]));
    }
}
