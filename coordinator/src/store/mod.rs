//! Durable storage of probe results and agent state, in one SQLite file
//! (`<data_dir>/authpulse.db`, the embedded default) or in a PostgreSQL
//! database shared by several coordinator replicas. Callers see one
//! [`Store`]; the SQL is written once for both engines (numbered `$N`
//! parameters, which sqlx's SQLite driver accepts too) and the few spots
//! where the dialects differ are picked by [`Backend`] in here only.
//!
//! This file holds what every table group shares: the [`Store`] handle and
//! its pools, [`Database`] and [`Backend`], opening and connecting, errors,
//! the advisory lock keys, the `meta` catalog version and small helpers
//! ([`now_ms`], [`minute_of`], clamping, placeholder and id-list SQL). Each
//! table group has a file of its own: `schema.rs` (the migrations in
//! `coordinator/migrations/`, run on open) with `legacy.rs` (the bridge from
//! databases before them), `batch_write.rs` (ingest's insert), `results.rs`,
//! `agents.rs`, `minutes.rs` with `hours.rs`, `alerts.rs`,
//! `incidents.rs` and `leader.rs`. The store defines its own row types and
//! imports no feature module; features convert.
//!
//! SQLite allows one writer at a time: writes go through a pool of exactly
//! one connection so they queue in-process instead of failing with
//! `SQLITE_BUSY`; reads use a separate pool, which WAL mode lets run
//! concurrently. PostgreSQL gets small pools for both. The in-memory SLO
//! roll-ups follow other replicas' writes through [`Store::refresh_rollup`].
mod agents;
mod alerts;
mod batch_write;
mod hours;
mod incidents;
mod leader;
mod legacy;
mod minutes;
mod results;
mod schema;
#[cfg(test)]
mod tests;

pub use agents::{AgentHealth, AgentInfo, AgentRow};
pub use alerts::{AlertRow, EscalationAlertRow, Silence};
pub use batch_write::BatchWrite;
pub use incidents::{AffectedComponent, ComponentRef, ComponentState, Incident, IncidentUpdate};
pub use leader::{LOCK_LEADER, LeaderLock};
pub use minutes::{DEFAULT_MINUTE_RETENTION, LatencyThresholds, MINUTE_MS, MinuteRow, MinuteSums};
pub use results::{InsertStats, StoredResult, StoredStep, StoredTimings};
pub use schema::SCHEMA_VERSION;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Row};

use minutes::REFRESH_OVERLAP_MS;

/// File name inside the data directory.
pub const DB_FILE: &str = "authpulse.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "database schema version {found} is newer than this coordinator supports ({supported}); upgrade authpulse"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("corrupt stored JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which engine a [`Store`] runs on (for the few dialect differences, and
/// for callers that must know whether other replicas may share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the store keeps its data, from the coordinator's `database` setting.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// One SQLite file (the embedded default; one coordinator).
    Sqlite(PathBuf),
    /// A PostgreSQL database several coordinator replicas share. The
    /// password, if not in the URL, comes from `database_password_file`.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Database {
    /// `sqlite://PATH` / `sqlite:PATH` or `postgres://…` / `postgresql://…`.
    pub fn parse(url: &str) -> Result<Database> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(StoreError::Invalid(
                    "`database: sqlite://PATH` needs a file path".into(),
                ));
            }
            return Ok(Database::Sqlite(PathBuf::from(rest)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url).map_err(|e| {
                StoreError::Invalid(format!("`database` is not a valid PostgreSQL URL: {e}"))
            })?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(StoreError::Invalid(
                    "`database` PostgreSQL URL has no host".into(),
                ));
            }
            return Ok(Database::Postgres {
                url: url.to_string(),
                password: None,
            });
        }
        Err(StoreError::Invalid(format!(
            "`database` must start with sqlite:// or postgres://, got `{}`",
            redact_url(url)
        )))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Database::Sqlite(_) => Backend::Sqlite,
            Database::Postgres { .. } => Backend::Postgres,
        }
    }

    /// For logs and errors: the path, or the URL without any password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p) => format!("sqlite://{}", p.display()),
            Database::Postgres { url, .. } => redact_url(url),
        }
    }
}

/// A URL with its password (if any) replaced, for logs and errors.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            u.to_string()
        }
        Err(_) => url.split('@').next_back().unwrap_or_default().to_string(),
    }
}

/// Handle to the database; cheap to clone (pools are shared).
#[derive(Clone, Debug)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    /// What [`Database::describe`] said (never a password).
    location: String,
    /// Connect options, for the leader lock's own connection (PostgreSQL).
    options: AnyConnectOptions,
    /// Latency thresholds (µs) per probe that `minute_counts` is maintained
    /// for; swapped only while holding the single write connection.
    thresholds: Arc<RwLock<Arc<LatencyThresholds>>>,
    /// How long `minute_counts` rows are kept, in ms.
    minute_retention_ms: Arc<AtomicI64>,
    /// `minute_counts` rolled up in memory for evaluation. Writers of
    /// `minute_counts` take this lock before the write connection and hold
    /// it through commit, so the roll-ups never miss or double a batch.
    rollup: Arc<tokio::sync::Mutex<crate::rollup::Rollup>>,
    /// `updated_ms` from which the next [`Store::refresh_rollup`] reads.
    refreshed_from_ms: Arc<AtomicI64>,
    /// Bumped by every write that can change an SLO or gate answer
    /// (results, roll-up refreshes, alerts), so answers can be reused
    /// until it moves ([`Store::generation`]).
    generation: Arc<std::sync::atomic::AtomicU64>,
}

pub use crate::clock::{minute_of, now_ms};

/// Database integers are signed; durations beyond i64 are not real and are clamped.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Appends `rows` groups of `cols` placeholders: `($1, $2), ($3, $4)`, or
/// `(?, ?), (?, ?)` for SQLite: its lookup of a numbered parameter's name
/// walks a list, so binding thousands of `$N` costs O(n²) (measured: 63 %
/// of ingest CPU in `sqlite3_bind_parameter_name`); anonymous ones bind in
/// order at no cost.
fn push_placeholders(sql: &mut String, backend: Backend, rows: usize, cols: usize) {
    use std::fmt::Write as _;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 1..=cols {
            if c > 1 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${}", r * cols + c);
                }
            }
        }
        sql.push(')');
    }
}

/// SQLite per-connection settings. WAL lets readers run beside the writer;
/// NORMAL in WAL mode: a commit survives a process crash, only an OS crash
/// or power loss can lose the last transactions, and agents resend
/// anything unacked anyway. Temporary storage in memory: a multi-row
/// upsert inside a transaction needs a statement journal, which SQLite
/// otherwise creates (and deletes) as a file per statement; that was 15 %
/// of the writer thread under ingest load.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA busy_timeout = 10000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA temp_store = MEMORY",
];

/// The SQLite database file created with mode 0600 before SQLite opens it
/// (its `-wal` and `-shm` files take the mode of the database file), and
/// all three tightened to 0600 if an older version left them readable:
/// they hold every result and detail.
fn private_sqlite_files(path: &Path) -> Result<()> {
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let data_dir = |source| StoreError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        create.mode(0o600);
    }
    create.open(path).map_err(data_dir)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        crate::private_files::private_file(Path::new(&p)).map_err(data_dir)?;
    }
    Ok(())
}

fn pool_options(backend: Backend, max: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30));
    match backend {
        Backend::Sqlite => options.after_connect(|conn, _meta| {
            Box::pin(async move {
                for pragma in SQLITE_PRAGMAS {
                    sqlx::query(*pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        }),
        Backend::Postgres => options,
    }
}

/// Advisory lock keys (PostgreSQL), one per purpose.
const LOCK_MIGRATE: i64 = 0x6175_7468_0001;
const LOCK_CATALOG: i64 = 0x6175_7468_0002;
const LOCK_THRESHOLDS: i64 = 0x6175_7468_0004;

impl Store {
    /// Opens (creating if needed) `<dir>/authpulse.db` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<Store> {
        crate::private_files::private_dir(dir, false).map_err(|source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Store::connect(&Database::Sqlite(dir.join(DB_FILE))).await
    }

    /// Opens the configured database, creating the schema or migrating it.
    pub async fn connect(db: &Database) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = db.backend();
        let (options, write_conns, read_conns) = match db {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::private_files::private_dir(dir, false).map_err(|source| {
                        StoreError::DataDir {
                            path: dir.to_path_buf(),
                            source,
                        }
                    })?;
                }
                private_sqlite_files(path)?;
                let url = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .to_url_lossy();
                (AnyConnectOptions::from_url(&url)?, 1, 4)
            }
            Database::Postgres { url, password } => {
                let mut u = url::Url::parse(url)
                    .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
                if let Some(p) = password {
                    u.set_password(Some(p)).map_err(|()| {
                        StoreError::Invalid("database URL cannot carry a password".into())
                    })?;
                }
                (AnyConnectOptions::from_url(&u)?, 8, 8)
            }
        };
        let options = options.disable_statement_logging();
        let write = pool_options(backend, write_conns)
            .connect_with(options.clone())
            .await?;
        let read = pool_options(backend, read_conns)
            .connect_with(options.clone())
            .await?;
        let store = Store {
            write,
            read,
            backend,
            location: db.describe(),
            options,
            thresholds: Arc::new(RwLock::new(Arc::new(LatencyThresholds::new()))),
            minute_retention_ms: Arc::new(AtomicI64::new(
                i64::try_from(DEFAULT_MINUTE_RETENTION.as_millis()).unwrap_or(i64::MAX),
            )),
            rollup: Arc::new(tokio::sync::Mutex::new(crate::rollup::Rollup::default())),
            refreshed_from_ms: Arc::new(AtomicI64::new(0)),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        store.migrate().await?;
        {
            let mut r = store.rollup.lock().await;
            // Rows stamped from here on are read by the first refresh.
            store
                .refreshed_from_ms
                .store(now_ms() - REFRESH_OVERLAP_MS, Ordering::Relaxed);
            *r = store.load_rollup().await?;
        }
        store.spawn_ring_fill();
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Changes whenever stored results, roll-ups, alerts, status components
    /// or incidents change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Where the data is: the SQLite path or the PostgreSQL URL (no password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `(SELECT …)` of the strings in the JSON array bound as `$n`: the id
    /// lists travel as one parameter so the SQL text stays static.
    fn text_list(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
            Backend::Postgres => format!("(SELECT json_array_elements_text(${n}::json))"),
        }
    }

    /// Like [`text_list`](Self::text_list) for a JSON array of integers.
    fn int_list(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
            Backend::Postgres => {
                format!("(SELECT CAST(json_array_elements_text(${n}::json) AS BIGINT))")
            }
        }
    }

    /// `SELECT 1 FROM` the steps of the `results` row in scope whose failure
    /// class is the integer bound as `$n` (for `EXISTS (…)`).
    fn step_with_class(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => format!(
                "SELECT 1 FROM json_each(results.steps_json) s
                 WHERE json_extract(s.value, '$.failure_class') = ${n}"
            ),
            Backend::Postgres => format!(
                "SELECT 1 FROM json_array_elements(CAST(results.steps_json AS json)) AS s(value)
                 WHERE CAST(s.value ->> 'failure_class' AS BIGINT) = ${n}"
            ),
        }
    }

    /// Takes a transaction-scoped advisory lock (PostgreSQL; SQLite's single
    /// writer already serializes).
    async fn xact_lock(&self, tx: &mut sqlx::AnyConnection, key: i64) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT COUNT(*) AS n FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Answers when the database does (`SELECT 1`), for readiness.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// The assignment version for a catalog, given its canonical text: the
    /// stored version if the text is unchanged, else the next one. Kept in
    /// the database so versions keep increasing across restarts and an
    /// unchanged catalog keeps its version.
    pub async fn catalog_version(&self, canonical: &str) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        // Replicas loading the same catalog at once agree on one version.
        self.xact_lock(&mut tx, LOCK_CATALOG).await?;
        let rows = sqlx::query(
            "SELECT key, value FROM meta WHERE key IN ('catalog_version', 'catalog_text')",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut version = 0u64;
        let mut text = None;
        for row in &rows {
            let key: String = row.try_get("key")?;
            let value: String = row.try_get("value")?;
            match key.as_str() {
                "catalog_version" => version = value.parse().unwrap_or(0),
                _ => text = Some(value),
            }
        }
        if version > 0 && text.as_deref() == Some(canonical) {
            return Ok(version);
        }
        let next = version + 1;
        for (key, value) in [
            ("catalog_version", next.to_string()),
            ("catalog_text", canonical.to_string()),
        ] {
            sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    /// Closes both pools (waits for running queries).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
