//! Durable storage of probe results and agent state, in one SQLite file
//! (`<data_dir>/authpulse.db`, the embedded default) or in a PostgreSQL
//! database shared by several coordinator replicas. Callers see one
//! [`Store`]; the SQL is written once for both engines (numbered `$N`
//! parameters, which sqlx's SQLite driver accepts too) and the few spots
//! where the dialects differ are picked by [`Backend`] in here only.
//!
//! Ingest is idempotent on `(agent_id, seq)` at the database: agents resend
//! whatever was not acknowledged, so storing a result twice is a no-op, and
//! a batch is one transaction so an ack never covers a half-written batch.
//!
//! SQLite allows one writer at a time: writes go through a pool of exactly
//! one connection so they queue in-process instead of failing with
//! `SQLITE_BUSY`; reads use a separate pool, which WAL mode lets run
//! concurrently. PostgreSQL gets small pools for both. The schema is created
//! by code and versioned in `schema_version`; with PostgreSQL the
//! migration runs under an advisory lock so replicas starting together
//! don't race. The in-memory SLO roll-ups follow other replicas' writes
//! through [`Store::refresh_rollup`].
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authpulse_proto::v1::{ProbeResult, StepResult, Timings};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions, Row};

/// The schema this code writes. Bump it together with a migration step in
/// [`Store::migrate`] when tables change.
pub const SCHEMA_VERSION: i64 = 7;

/// File name inside the data directory.
pub const DB_FILE: &str = "authpulse.db";

/// Columns schema 2 added to `agents` (fleet health), for version-1 files.
const MIGRATE_1_TO_2: &[&str] = &[
    "ALTER TABLE agents ADD COLUMN assignment_version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN clock_skew_ms INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN spool_depth INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN spool_bytes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN dropped_total INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE agents ADD COLUMN stored_total INTEGER NOT NULL DEFAULT 0",
];

/// The firing burn-rate alerts (schema 3), so a restart neither pages again
/// nor forgets to resolve.
const CREATE_ALERTS: &str = "CREATE TABLE IF NOT EXISTS alerts (
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        rule TEXT NOT NULL,
        burn_long REAL NOT NULL,
        burn_short REAL NOT NULL,
        factor REAL NOT NULL,
        started_ms INTEGER NOT NULL,
        last_sent_ms INTEGER NOT NULL,
        PRIMARY KEY (slo, severity)
    )";

/// Tables schema 3 added, for version-2 files.
const MIGRATE_2_TO_3: &[&str] = &[CREATE_ALERTS];

/// Per-minute SLO aggregates (schema 4): SLOs are evaluated from these and
/// never by rescanning raw results. `minute` is `started_ms` floored to the
/// minute (unix ms / 60000); `threshold_us` 0 is the availability row
/// (good = success), any other value a latency SLI's threshold (good =
/// success and `total_us <= threshold_us`). Rows cover newly inserted
/// results only, so resent duplicates never count twice.
const CREATE_MINUTE_COUNTS: &str = "CREATE TABLE IF NOT EXISTS minute_counts (
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        minute INTEGER NOT NULL,
        threshold_us INTEGER NOT NULL,
        good INTEGER NOT NULL,
        total INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (probe_id, minute, threshold_us, region)
    ) WITHOUT ROWID";

/// Schema 6: when each `minute_counts` row last changed, so replicas
/// sharing a PostgreSQL database pick up each other's writes
/// ([`Store::refresh_rollup`]).
const MIGRATE_5_TO_6: &[&str] =
    &["ALTER TABLE minute_counts ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0"];

/// Results that carried an escalation (the result's or a step's class), by
/// when the coordinator received them (schema 7): gates block on an
/// escalation *received* within their window, so one that arrives late
/// (an agent's spool after an outage) still blocks, and this small table
/// answers that without scanning results by receive time.
const CREATE_ESCALATIONS: &str = "CREATE TABLE IF NOT EXISTS escalations (
        agent_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        probe_id TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (agent_id, seq)
    )";

/// Schema 7: the escalations stored so far (their receive time is known).
const MIGRATE_6_TO_7: &[&str] = &[
    "INSERT INTO escalations (agent_id, seq, probe_id, started_ms, received_ms)
     SELECT agent_id, seq, probe_id, started_ms, received_ms FROM results
     WHERE failure_class = 11 OR steps_json LIKE '%\"failure_class\":11%'
     ON CONFLICT (agent_id, seq) DO NOTHING",
];

/// PostgreSQL only: what SQLite has implicitly (`rowid` orders incident
/// updates) or doesn't need (one process, so no change feed to index).
const POSTGRES_EXTRA: &[&str] = &[
    "ALTER TABLE incident_updates ADD COLUMN IF NOT EXISTS rowid BIGSERIAL",
    "CREATE INDEX IF NOT EXISTS minute_counts_updated ON minute_counts (updated_ms)",
];

/// Silences and acknowledgements of alerts (admin actions): while one holds,
/// fire and re-send notifications for that SLO and severity are held back
/// (resolves still go out). A silence ends at `until_ms`; an
/// acknowledgement (`until_ms` NULL) ends when the alert resolves.
const CREATE_ALERT_SILENCES: &str = "CREATE TABLE IF NOT EXISTS alert_silences (
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        kind TEXT NOT NULL,
        until_ms INTEGER,
        created_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (slo, severity, kind)
    ) WITHOUT ROWID";

/// Latency sketches per probe, region and minute (schema 5): encoded
/// [`crate::latency_sketch::LatencySketch`]es of the runs' total time, merged
/// on every batch; percentiles over any window merge the minutes.
const CREATE_MINUTE_SKETCHES: &str = "CREATE TABLE IF NOT EXISTS minute_sketches (
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        minute INTEGER NOT NULL,
        sketch BLOB NOT NULL,
        PRIMARY KEY (probe_id, minute, region)
    ) WITHOUT ROWID";

/// The latency thresholds `minute_counts` is maintained for (schema 4), so a
/// restart knows which ones are complete and which need a backfill.
const CREATE_MINUTE_THRESHOLDS: &str = "CREATE TABLE IF NOT EXISTS minute_thresholds (
        probe_id TEXT NOT NULL,
        threshold_us INTEGER NOT NULL,
        PRIMARY KEY (probe_id, threshold_us)
    ) WITHOUT ROWID";

/// Milliseconds per `minute_counts.minute`.
pub const MINUTE_MS: i64 = 60_000;

/// `minute_counts` rows for availability, rebuilt from the raw results (the
/// minute is floored, also for negative times, like `i64::div_euclid`).
const BACKFILL_AVAILABILITY: &str = "INSERT INTO minute_counts
        (probe_id, region, minute, threshold_us, good, total)
     SELECT probe_id, region, (started_ms - (((started_ms % 60000) + 60000) % 60000)) / 60000 AS m,
        0, SUM(CASE WHEN outcome = 1 THEN 1 ELSE 0 END), COUNT(*)
     FROM results WHERE true GROUP BY probe_id, region, m
     ON CONFLICT (probe_id, minute, threshold_us, region) DO UPDATE SET
        good = excluded.good, total = excluded.total";

/// Tables schema 4 added, for version-3 (and older) files; the
/// availability rows are backfilled from the raw results, latency rows on
/// the first [`Store::set_latency_thresholds`].
const MIGRATE_3_TO_4: &[&str] = &[
    CREATE_MINUTE_COUNTS,
    CREATE_MINUTE_THRESHOLDS,
    "DELETE FROM minute_counts",
    "DELETE FROM minute_thresholds",
    BACKFILL_AVAILABILITY,
];

/// How long minute rows are kept until [`Store::set_minute_retention`] says
/// otherwise: the longest SLO window the catalog allows plus a day.
pub const DEFAULT_MINUTE_RETENTION: Duration = Duration::from_secs(32 * 86_400);

/// The status page's component statuses (statuspage.rs): the last status
/// shown per component, so a component without trustworthy data keeps it
/// and `updated_at` is when it last changed. Created on open like every
/// table (no schema version change).
const CREATE_STATUS_COMPONENTS: &str = "CREATE TABLE IF NOT EXISTS status_components (
        id TEXT PRIMARY KEY NOT NULL,
        status TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    )";

/// Incidents opened and resolved from alerts (statuspage.rs); at most one
/// open (unresolved) incident per SLO, enforced by `incidents_open_slo`.
const CREATE_INCIDENTS: &str = "CREATE TABLE IF NOT EXISTS incidents (
        id TEXT PRIMARY KEY NOT NULL,
        slo TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        impact TEXT NOT NULL,
        severities_json TEXT NOT NULL,
        components_json TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        monitoring_ms INTEGER,
        resolved_ms INTEGER
    )";

/// The updates of each incident, the entries of `/history.atom`.
const CREATE_INCIDENT_UPDATES: &str = "CREATE TABLE IF NOT EXISTS incident_updates (
        id TEXT PRIMARY KEY NOT NULL,
        incident_id TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        affected_json TEXT NOT NULL
    )";

const SCHEMA: &[&str] = &[
    CREATE_ALERTS,
    CREATE_ALERT_SILENCES,
    CREATE_MINUTE_SKETCHES,
    CREATE_MINUTE_COUNTS,
    CREATE_MINUTE_THRESHOLDS,
    CREATE_ESCALATIONS,
    "CREATE INDEX IF NOT EXISTS escalations_probe_received ON escalations (probe_id, received_ms)",
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS results (
        agent_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        outcome INTEGER NOT NULL,
        failure_class INTEGER NOT NULL,
        dns_us INTEGER,
        connect_us INTEGER,
        tls_us INTEGER,
        ttfb_us INTEGER,
        total_us INTEGER NOT NULL,
        steps_json TEXT NOT NULL,
        detail TEXT NOT NULL,
        assignment_version INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (agent_id, seq)
    )",
    // SLO counts read (probe, time range) and only these columns, so the
    // index covers the query and the table itself is never touched.
    "CREATE INDEX IF NOT EXISTS results_probe_started
        ON results (probe_id, started_ms, outcome, total_us)",
    // The hourly prune deletes by age in small chunks; without this each
    // chunk would scan the table.
    "CREATE INDEX IF NOT EXISTS results_started ON results (started_ms)",
    // The newest result per (probe, region), maintained on insert, so the
    // status view doesn't scan all results on every request.
    "CREATE TABLE IF NOT EXISTS latest (
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        PRIMARY KEY (probe_id, region)
    )",
    "CREATE TABLE IF NOT EXISTS agents (
        agent_id TEXT PRIMARY KEY NOT NULL,
        region TEXT NOT NULL,
        version TEXT NOT NULL,
        labels_json TEXT NOT NULL,
        acked_seq INTEGER NOT NULL DEFAULT 0,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        connected INTEGER NOT NULL DEFAULT 0,
        assignment_version INTEGER NOT NULL DEFAULT 0,
        clock_skew_ms INTEGER NOT NULL DEFAULT 0,
        spool_depth INTEGER NOT NULL DEFAULT 0,
        spool_bytes INTEGER NOT NULL DEFAULT 0,
        dropped_total INTEGER NOT NULL DEFAULT 0,
        stored_total INTEGER NOT NULL DEFAULT 0
    )",
    // Small key/value facts about the installation (the catalog version).
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    CREATE_STATUS_COMPONENTS,
    CREATE_INCIDENTS,
    "CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_slo ON incidents (slo) WHERE resolved_ms IS NULL",
    "CREATE INDEX IF NOT EXISTS incidents_created ON incidents (created_ms)",
    CREATE_INCIDENT_UPDATES,
    "CREATE INDEX IF NOT EXISTS incident_updates_incident ON incident_updates (incident_id, created_ms)",
];

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
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("corrupt stored JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertStats {
    pub inserted: u64,
    pub duplicates: u64,
}

/// What an agent says about itself in its hello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub region: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRow {
    pub info: AgentInfo,
    pub acked_seq: u64,
    /// Results stored for this agent since it was first seen (duplicates excluded).
    pub stored_total: u64,
    /// The assignment version last sent to (or reported by) the agent.
    pub assignment_version: u64,
    pub health: crate::fleet::AgentHealth,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub connected: bool,
}

/// Phase timings in microseconds, `None` where the phase did not happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTimings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_us: Option<u64>,
    pub total_us: u64,
}

impl From<Option<&Timings>> for StoredTimings {
    fn from(t: Option<&Timings>) -> Self {
        match t {
            Some(t) => StoredTimings {
                dns_us: t.dns_us,
                connect_us: t.connect_us,
                tls_us: t.tls_us,
                ttfb_us: t.ttfb_us,
                total_us: t.total_us,
            },
            None => StoredTimings::default(),
        }
    }
}

/// One journey step as kept in `results.steps_json`. Enum fields are the
/// proto's integer values, like the `results` columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStep {
    pub name: String,
    pub kind: String,
    pub outcome: i32,
    pub failure_class: i32,
    pub timings: StoredTimings,
    #[serde(default)]
    pub detail: String,
}

impl From<&StepResult> for StoredStep {
    fn from(s: &StepResult) -> Self {
        StoredStep {
            name: s.name.clone(),
            kind: s.kind.clone(),
            outcome: s.outcome,
            failure_class: s.failure_class,
            timings: s.timings.as_ref().into(),
            detail: s.detail.clone(),
        }
    }
}

/// A result as read back from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResult {
    pub agent_id: String,
    pub seq: u64,
    pub probe_id: String,
    pub region: String,
    pub started_ms: i64,
    pub duration_us: u64,
    pub outcome: i32,
    pub failure_class: i32,
    pub timings: StoredTimings,
    pub steps: Vec<StoredStep>,
    pub detail: String,
    pub assignment_version: u64,
    pub received_ms: i64,
}

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

/// Latency thresholds in microseconds per probe id.
pub type LatencyThresholds = HashMap<String, Vec<u64>>;

/// The minute (unix ms / 60000, floored) a timestamp falls in.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

/// Per `(probe_id, threshold_us, region)` the (good, total) sums of
/// [`Store::minute_sums`], one per requested start minute.
pub type MinuteSums = HashMap<(String, u64, String), Vec<(u64, u64)>>;

/// (series, region, minute, threshold µs) of a batch's minute deltas.
type MinuteKey<'a> = (Cow<'a, str>, &'a str, i64, u64);

/// A silence (`until_ms` set) or acknowledgement of one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    pub slo: String,
    /// `page`, `ticket`.
    pub severity: String,
    pub until_ms: Option<i64>,
    pub created_by: String,
    pub reason: String,
    pub created_ms: i64,
}

/// One `minute_counts` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteRow {
    pub probe_id: String,
    pub region: String,
    pub minute: i64,
    pub threshold_us: u64,
    pub good: u64,
    pub total: u64,
}

/// Milliseconds since the Unix epoch, the unit of every `*_ms` column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Database integers are signed; durations beyond i64 are not real and are clamped.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The PostgreSQL form of the (SQLite) DDL: 64-bit integers, doubles,
/// bytea, byte-order text comparison (so ordering matches SQLite's whatever
/// the database's locale), no `WITHOUT ROWID`.
fn postgres_ddl(sqlite: &str) -> String {
    let mut out = String::with_capacity(sqlite.len() + 64);
    for (i, word) in sqlite.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        // Words keep their trailing punctuation (`INTEGER,`).
        let core = word.trim_end_matches([',', ')', '\n']);
        let tail = &word[core.len()..];
        match core {
            "INTEGER" => out.push_str("BIGINT"),
            "REAL" => out.push_str("DOUBLE PRECISION"),
            "BLOB" => out.push_str("BYTEA"),
            "TEXT" => out.push_str("TEXT COLLATE \"C\""),
            _ => {
                out.push_str(word);
                continue;
            }
        }
        out.push_str(tail);
    }
    out.replace(") WITHOUT ROWID", ")")
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
/// anything unacked anyway.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA busy_timeout = 10000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
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
        crate::audit::private_file(Path::new(&p)).map_err(data_dir)?;
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
/// The leader lock ([`Store::try_leader_lock`]).
pub const LOCK_LEADER: i64 = 0x6175_7468_0003;

/// How far back [`Store::refresh_rollup`] re-reads before its last read:
/// a transaction stamps `updated_ms` when it writes and becomes visible
/// when it commits, and replicas' clocks differ a little.
const REFRESH_OVERLAP_MS: i64 = 60_000;

impl Store {
    /// Opens (creating if needed) `<dir>/authpulse.db` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<Store> {
        crate::audit::private_dir(dir, false).map_err(|source| StoreError::DataDir {
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
                    crate::audit::private_dir(dir, false).map_err(|source| {
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
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Changes whenever stored results, roll-ups or alerts change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Builds the roll-ups from `minute_counts`.
    async fn load_rollup(&self) -> Result<crate::rollup::Rollup> {
        let started = std::time::Instant::now();
        let mut r = crate::rollup::Rollup::default();
        let mut rows = sqlx::query(
            "SELECT probe_id, region, minute, threshold_us, good, total FROM minute_counts",
        )
        .fetch(&self.read);
        let mut n = 0u64;
        while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            r.add(
                &row.try_get::<String, _>("probe_id")?,
                &row.try_get::<String, _>("region")?,
                row.try_get("minute")?,
                unsigned(row.try_get("threshold_us")?),
                unsigned(row.try_get("good")?),
                unsigned(row.try_get("total")?),
            );
            n += 1;
        }
        tracing::info!(
            rows = n,
            series = r.series_count(),
            ms = started.elapsed().as_millis() as u64,
            "minute aggregates rolled up"
        );
        Ok(r)
    }

    /// Brings the in-memory roll-ups up to date with `minute_counts` rows
    /// other coordinators wrote (PostgreSQL; a no-op on SQLite, where this
    /// process is the only writer). Rows changed since the last refresh
    /// (with an overlap) are applied as absolute values, so reading one
    /// twice is harmless. A changed row older than the minute ring (a
    /// threshold backfill, very late data) rebuilds the roll-ups whole.
    /// Returns how many rows were read.
    pub async fn refresh_rollup(&self) -> Result<u64> {
        if self.backend == Backend::Sqlite {
            return Ok(0);
        }
        let mut rollup = self.rollup.lock().await;
        let from = self.refreshed_from_ms.load(Ordering::Relaxed);
        let next_from = now_ms() - REFRESH_OVERLAP_MS;
        let rows = sqlx::query(
            "SELECT probe_id, region, minute, threshold_us, good, total FROM minute_counts
             WHERE updated_ms >= $1",
        )
        .bind(from)
        .fetch_all(&self.read)
        .await?;
        let now_minute = minute_of(now_ms());
        let mut rebuild = false;
        for row in &rows {
            let applied = rollup.set(
                &row.try_get::<String, _>("probe_id")?,
                &row.try_get::<String, _>("region")?,
                row.try_get("minute")?,
                unsigned(row.try_get("threshold_us")?),
                unsigned(row.try_get("good")?),
                unsigned(row.try_get("total")?),
                now_minute,
            );
            if !applied {
                rebuild = true;
            }
        }
        if rebuild {
            *rollup = self.load_rollup().await?;
        }
        self.refreshed_from_ms.store(next_from, Ordering::Relaxed);
        if !rows.is_empty() {
            self.bump();
        }
        metrics::counter!("authpulse_coordinator_rollup_refresh_rows_total")
            .increment(rows.len() as u64);
        Ok(rows.len() as u64)
    }

    /// Per series of `probe_ids`, the sums over minutes `>= since_minutes[i]`
    /// from the in-memory roll-ups (same result as [`Store::minute_sums`]).
    pub async fn rollup_sums(
        &self,
        probe_ids: &[String],
        since_minutes: &[i64],
        now_minute: i64,
    ) -> Result<MinuteSums> {
        let needed = self
            .rollup
            .lock()
            .await
            .edges_needed(since_minutes, now_minute);
        // A window older than the minute ring: its first partial hour from
        // the table (at most 59 minutes per series).
        let mut edges = HashMap::new();
        for start in needed {
            let end = (start.div_euclid(60) + 1) * 60;
            let sql = format!(
                "SELECT probe_id, threshold_us, region, CAST(SUM(good) AS BIGINT) AS g,
                    CAST(SUM(total) AS BIGINT) AS t FROM minute_counts
                 WHERE probe_id IN {} AND minute >= $2 AND minute < $3
                 GROUP BY probe_id, threshold_us, region",
                self.text_list(1)
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(serde_json::to_string(probe_ids)?)
                .bind(start)
                .bind(end)
                .fetch_all(&self.read)
                .await?;
            let mut m = HashMap::new();
            for row in &rows {
                m.insert(
                    (
                        row.try_get::<String, _>("probe_id")?,
                        unsigned(row.try_get("threshold_us")?),
                        row.try_get::<String, _>("region")?,
                    ),
                    (unsigned(row.try_get("g")?), unsigned(row.try_get("t")?)),
                );
            }
            edges.insert(start, m);
        }
        Ok(self
            .rollup
            .lock()
            .await
            .sums(probe_ids, since_minutes, now_minute, &edges))
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

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.write.begin().await?;
        self.xact_lock(&mut tx, LOCK_MIGRATE).await?;
        for stmt in SCHEMA {
            match self.backend {
                Backend::Sqlite => sqlx::query(*stmt).execute(&mut *tx).await?,
                Backend::Postgres => {
                    sqlx::query(sqlx::AssertSqlSafe(postgres_ddl(stmt)))
                        .execute(&mut *tx)
                        .await?
                }
            };
        }
        if self.backend == Backend::Postgres {
            for stmt in POSTGRES_EXTRA {
                sqlx::query(*stmt).execute(&mut *tx).await?;
            }
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        let steps: &[&[&str]] = match found {
            None => &[],
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            // 4 -> 5 only added `minute_sketches` (created above);
            // percentiles start with the results stored from then on.
            Some(4 | 5) => &[MIGRATE_5_TO_6, MIGRATE_6_TO_7],
            Some(6) => &[MIGRATE_6_TO_7],
            // SCHEMA created `minute_counts` (with `updated_ms`) above.
            Some(1) => &[
                MIGRATE_1_TO_2,
                MIGRATE_2_TO_3,
                MIGRATE_3_TO_4,
                MIGRATE_6_TO_7,
            ],
            Some(2) => &[MIGRATE_2_TO_3, MIGRATE_3_TO_4, MIGRATE_6_TO_7],
            Some(3) => &[MIGRATE_3_TO_4, MIGRATE_6_TO_7],
            Some(_) => {
                tx.commit().await?;
                return Ok(());
            }
        };
        for stmt in steps.iter().copied().flatten() {
            sqlx::query(*stmt).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(SCHEMA_VERSION)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Answers when the database does (`SELECT 1`), for readiness.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Stores a batch in one transaction; results already stored (same agent
    /// and seq) are counted as duplicates and left untouched. Rows go in as
    /// multi-row statements (results, then one `latest` upsert per probe and
    /// region, one `minute_counts` upsert per series and minute), in key
    /// order, so concurrent replicas lock rows in the same order.
    pub async fn insert_batch(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
    ) -> Result<InsertStats> {
        self.insert_batch_acked(agent_id, results, None).await
    }

    /// [`insert_batch`](Self::insert_batch) that also records the agent's
    /// new ack (never moving it back) and last-seen time in the same
    /// transaction: ingest then commits once per batch, and the ack can
    /// never be recorded without the results it covers.
    pub async fn insert_batch_acked(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
        acked_seq: Option<u64>,
    ) -> Result<InsertStats> {
        self.insert_batch_received(agent_id, results, acked_seq, now_ms())
            .await
    }

    /// [`insert_batch_acked`](Self::insert_batch_acked) as if the batch had
    /// arrived at `received` (ms since the epoch): staleness and escalation
    /// windows are judged on it. Ingest passes the current time; tests and
    /// imports may pass another.
    pub async fn insert_batch_received(
        &self,
        agent_id: &str,
        results: &[ProbeResult],
        acked_seq: Option<u64>,
        received: i64,
    ) -> Result<InsertStats> {
        // Rows per multi-row INSERT: far below both engines' parameter limits.
        const CHUNK: usize = 200;
        // Checked first: nothing of an invalid batch is written.
        let mut seqs = Vec::with_capacity(results.len());
        let mut prepared = Vec::with_capacity(results.len());
        for r in results {
            let seq = i64::try_from(r.seq)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| StoreError::Invalid(format!("seq {} out of range", r.seq)))?;
            seqs.push(seq);
            let steps: Vec<StoredStep> = r.steps.iter().map(StoredStep::from).collect();
            let steps_json = serde_json::to_string(&steps)?;
            prepared.push((StoredTimings::from(r.timings.as_ref()), steps, steps_json));
        }
        let mut stats = InsertStats::default();
        let mut rollup = self.rollup.lock().await;
        let mut tx = self.write.begin().await?;
        // Read while holding the write connection: thresholds only change
        // under it too, so a batch and a threshold backfill never interleave.
        let thresholds = self.latency_thresholds();

        let mut inserted: std::collections::HashSet<i64> = std::collections::HashSet::new();
        let indices: Vec<usize> = (0..results.len()).collect();
        for chunk in indices.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO results (agent_id, seq, probe_id, region, started_ms, duration_us, outcome,
                    failure_class, dns_us, connect_us, tls_us, ttfb_us, total_us, steps_json, detail,
                    assignment_version, received_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 17);
            sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING RETURNING seq");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in chunk {
                let (r, (t, _, steps_json)) = (&results[i], &prepared[i]);
                q = q
                    .bind(agent_id)
                    .bind(seqs[i])
                    .bind(&r.probe_id)
                    .bind(&r.region)
                    .bind(r.started_unix_ms)
                    .bind(clamp(r.duration_us))
                    .bind(r.outcome)
                    .bind(r.failure_class)
                    .bind(t.dns_us.map(clamp))
                    .bind(t.connect_us.map(clamp))
                    .bind(t.tls_us.map(clamp))
                    .bind(t.ttfb_us.map(clamp))
                    .bind(clamp(t.total_us))
                    .bind(steps_json.as_str())
                    .bind(&r.detail)
                    .bind(clamp(r.assignment_version))
                    .bind(received);
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<i64, _>(0)?);
            }
        }

        // (probe, region, minute, threshold) -> (good, total) of this batch.
        // Series ids are probe ids, or `probe/step` for the journey steps
        // an SLO names.
        let mut minutes: BTreeMap<MinuteKey<'_>, (i64, i64)> = BTreeMap::new();
        let mut sketches: BTreeMap<(&str, &str, i64), crate::latency_sketch::LatencySketch> =
            BTreeMap::new();
        // (probe, region) -> (started, seq) of the newest result.
        let mut latest: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        // Indices of newly stored results that carry an escalation.
        let mut escalated: Vec<usize> = Vec::new();
        let escalation = authpulse_proto::v1::FailureClass::Escalation as i32;
        for (i, r) in results.iter().enumerate() {
            // `remove`: a seq sent twice in one batch is stored once.
            if !inserted.remove(&seqs[i]) {
                stats.duplicates += 1;
                continue;
            }
            stats.inserted += 1;
            let (t, steps, _) = &prepared[i];
            if r.failure_class == escalation || steps.iter().any(|s| s.failure_class == escalation)
            {
                escalated.push(i);
            }
            let ok = r.outcome == authpulse_proto::v1::Outcome::Success as i32;
            let minute = minute_of(r.started_unix_ms);
            let key = (r.probe_id.as_str(), r.region.as_str(), minute);
            sketches.entry(key).or_default().add(t.total_us);
            let e = minutes
                .entry((Cow::Borrowed(key.0), key.1, key.2, 0))
                .or_default();
            e.0 += i64::from(ok);
            e.1 += 1;
            for &th in thresholds.get(&r.probe_id).into_iter().flatten() {
                let e = minutes
                    .entry((Cow::Borrowed(key.0), key.1, key.2, th))
                    .or_default();
                e.0 += i64::from(ok && t.total_us <= th);
                e.1 += 1;
            }
            for step in steps {
                let series = format!("{}/{}", r.probe_id, step.name);
                let step_ok = step.outcome == authpulse_proto::v1::Outcome::Success as i32;
                // Step series are kept only for the steps SLOs name; 0 is
                // the step's availability.
                for &th in thresholds.get(&series).into_iter().flatten() {
                    let e = minutes
                        .entry((Cow::Owned(series.clone()), key.1, key.2, th))
                        .or_default();
                    e.0 += i64::from(step_ok && (th == 0 || step.timings.total_us <= th));
                    e.1 += 1;
                }
            }
            // `>=`: of two results started in the same millisecond the one
            // stored last is shown.
            let newest = latest.entry((key.0, key.1)).or_insert((i64::MIN, 0));
            if r.started_unix_ms >= newest.0 {
                *newest = (r.started_unix_ms, seqs[i]);
            }
        }

        let latest: Vec<_> = latest.into_iter().collect();
        for chunk in latest.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO latest (probe_id, region, agent_id, seq, started_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 5);
            sql.push_str(
                " ON CONFLICT (probe_id, region) DO UPDATE SET
                    agent_id = excluded.agent_id, seq = excluded.seq, started_ms = excluded.started_ms
                 WHERE excluded.started_ms >= latest.started_ms",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region), (started, seq)) in chunk {
                q = q
                    .bind(*probe)
                    .bind(*region)
                    .bind(agent_id)
                    .bind(*seq)
                    .bind(*started);
            }
            q.execute(&mut *tx).await?;
        }

        if !escalated.is_empty() {
            let mut sql = String::from(
                "INSERT INTO escalations (agent_id, seq, probe_id, started_ms, received_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, escalated.len(), 5);
            sql.push_str(" ON CONFLICT (agent_id, seq) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in &escalated {
                q = q
                    .bind(agent_id)
                    .bind(seqs[i])
                    .bind(&results[i].probe_id)
                    .bind(results[i].started_unix_ms)
                    .bind(received);
            }
            q.execute(&mut *tx).await?;
        }

        let minute_rows: Vec<_> = minutes.iter().collect();
        for chunk in minute_rows.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total, updated_ms) VALUES ",
            );
            push_placeholders(&mut sql, self.backend, chunk.len(), 7);
            sql.push_str(
                " ON CONFLICT (probe_id, minute, threshold_us, region) DO UPDATE SET
                    good = minute_counts.good + excluded.good,
                    total = minute_counts.total + excluded.total,
                    updated_ms = excluded.updated_ms",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((probe, region, minute, th), (good, total)) in chunk {
                q = q
                    .bind(probe.as_ref())
                    .bind(*region)
                    .bind(*minute)
                    .bind(clamp(*th))
                    .bind(*good)
                    .bind(*total)
                    .bind(received);
            }
            q.execute(&mut *tx).await?;
        }

        // Sketches merge in Rust: insert ours if the minute has none yet,
        // else lock the stored one (PostgreSQL: other replicas merge into
        // it too), merge and write back.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        for ((probe, region, minute), sketch) in &sketches {
            let fresh = sqlx::query(
                "INSERT INTO minute_sketches (probe_id, region, minute, sketch) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (probe_id, minute, region) DO NOTHING",
            )
            .bind(*probe)
            .bind(*region)
            .bind(*minute)
            .bind(sketch.encode())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if fresh {
                continue;
            }
            let sql = format!(
                "SELECT sketch FROM minute_sketches WHERE probe_id = $1 AND minute = $2 AND region = $3{lock}"
            );
            let existing: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(*probe)
                .bind(*minute)
                .bind(*region)
                .fetch_optional(&mut *tx)
                .await?;
            let mut merged = sketch.clone();
            if let Some(old) =
                existing.and_then(|b| crate::latency_sketch::LatencySketch::decode(&b))
            {
                merged.merge(&old);
            }
            sqlx::query(
                "UPDATE minute_sketches SET sketch = $4 WHERE probe_id = $1 AND minute = $2 AND region = $3",
            )
            .bind(*probe)
            .bind(*minute)
            .bind(*region)
            .bind(merged.encode())
            .execute(&mut *tx)
            .await?;
        }
        // In the same transaction, so the count is exact across crashes.
        if let Some(acked) = acked_seq {
            sqlx::query(
                "UPDATE agents SET stored_total = stored_total + $1,
                    acked_seq = CASE WHEN acked_seq > $2 THEN acked_seq ELSE $2 END,
                    last_seen_ms = $3 WHERE agent_id = $4",
            )
            .bind(clamp(stats.inserted))
            .bind(clamp(acked))
            .bind(received)
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        } else if stats.inserted > 0 {
            sqlx::query("UPDATE agents SET stored_total = stored_total + $1 WHERE agent_id = $2")
                .bind(clamp(stats.inserted))
                .bind(agent_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.bump();
        for ((probe, region, minute, th), (good, total)) in &minutes {
            rollup.add(
                probe,
                region,
                *minute,
                *th,
                unsigned(*good),
                unsigned(*total),
            );
        }
        Ok(stats)
    }

    /// The highest contiguous seq acknowledged to this agent (0 = none or unknown agent).
    pub async fn acked_seq(&self, agent_id: &str) -> Result<u64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT acked_seq FROM agents WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(v.map(unsigned).unwrap_or(0))
    }

    /// The highest seq stored for this agent, contiguous or not (0 = none).
    pub async fn highest_stored_seq(&self, agent_id: &str) -> Result<u64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM results WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_one(&self.read)
            .await?;
        Ok(v.map(unsigned).unwrap_or(0))
    }

    /// Records a new ack. Never moves it backwards: a late write from a
    /// superseded stream must not undo a newer stream's progress.
    /// Also counts as a sign of life (updates last_seen).
    pub async fn set_acked_seq(&self, agent_id: &str, acked_seq: u64) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET acked_seq = CASE WHEN acked_seq > $1 THEN acked_seq ELSE $1 END,
                last_seen_ms = $2 WHERE agent_id = $3",
        )
        .bind(clamp(acked_seq))
        .bind(now_ms())
        .bind(agent_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Inserts or refreshes an agent from its hello and marks it connected.
    /// The stored ack is kept: it is what the agent continues from.
    pub async fn upsert_agent(&self, info: &AgentInfo) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (agent_id, region, version, labels_json, acked_seq, first_seen_ms, last_seen_ms, connected)
             VALUES ($1, $2, $3, $4, 0, $5, $6, 1)
             ON CONFLICT (agent_id) DO UPDATE SET
                region = excluded.region, version = excluded.version, labels_json = excluded.labels_json,
                last_seen_ms = excluded.last_seen_ms, connected = 1",
        )
        .bind(&info.agent_id)
        .bind(&info.region)
        .bind(&info.version)
        .bind(serde_json::to_string(&info.labels)?)
        .bind(now)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records what an agent said about itself (hello, heartbeat); also a sign of life.
    pub async fn record_health(&self, agent_id: &str, h: &crate::fleet::AgentHealth) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET clock_skew_ms = $1, spool_depth = $2, spool_bytes = $3, dropped_total = $4,
                last_seen_ms = $5 WHERE agent_id = $6",
        )
        .bind(h.clock_skew_ms)
        .bind(clamp(h.spool_depth))
        .bind(clamp(h.spool_bytes))
        .bind(clamp(h.dropped_total))
        .bind(now_ms())
        .bind(agent_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn set_assignment_version(&self, agent_id: &str, version: u64) -> Result<()> {
        sqlx::query("UPDATE agents SET assignment_version = $1 WHERE agent_id = $2")
            .bind(clamp(version))
            .bind(agent_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Updates last_seen (heartbeats, batches).
    pub async fn touch_agent(&self, agent_id: &str) -> Result<()> {
        sqlx::query("UPDATE agents SET last_seen_ms = $1 WHERE agent_id = $2")
            .bind(now_ms())
            .bind(agent_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn set_connected(&self, agent_id: &str, connected: bool) -> Result<()> {
        sqlx::query("UPDATE agents SET connected = $1, last_seen_ms = $2 WHERE agent_id = $3")
            .bind(i64::from(connected))
            .bind(now_ms())
            .bind(agent_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// At start no stream exists yet, whatever a crashed predecessor left behind.
    pub async fn mark_all_disconnected(&self) -> Result<()> {
        sqlx::query("UPDATE agents SET connected = 0 WHERE connected != 0")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn agents(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(
            "SELECT agent_id, region, version, labels_json, acked_seq, first_seen_ms, last_seen_ms, connected,
                    assignment_version, clock_skew_ms, spool_depth, spool_bytes, dropped_total, stored_total
             FROM agents ORDER BY agent_id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let labels: String = row.try_get("labels_json")?;
                Ok(AgentRow {
                    info: AgentInfo {
                        agent_id: row.try_get("agent_id")?,
                        region: row.try_get("region")?,
                        version: row.try_get("version")?,
                        labels: serde_json::from_str(&labels)?,
                    },
                    acked_seq: unsigned(row.try_get("acked_seq")?),
                    assignment_version: unsigned(row.try_get("assignment_version")?),
                    stored_total: unsigned(row.try_get("stored_total")?),
                    health: crate::fleet::AgentHealth {
                        clock_skew_ms: row.try_get("clock_skew_ms")?,
                        spool_depth: unsigned(row.try_get("spool_depth")?),
                        spool_bytes: unsigned(row.try_get("spool_bytes")?),
                        dropped_total: unsigned(row.try_get("dropped_total")?),
                    },
                    first_seen_ms: row.try_get("first_seen_ms")?,
                    last_seen_ms: row.try_get("last_seen_ms")?,
                    connected: row.try_get::<i64, _>("connected")? != 0,
                })
            })
            .collect()
    }

    /// The newest stored result of every (probe, region), ordered by probe then region.
    pub async fn latest_per_probe_region(&self) -> Result<Vec<StoredResult>> {
        let rows = sqlx::query(
            "SELECT r.* FROM latest l JOIN results r ON r.agent_id = l.agent_id AND r.seq = l.seq
             ORDER BY l.probe_id, l.region",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(result_from_row).collect()
    }

    /// The newest `per_series` results of every (probe, region) started at
    /// or after `since_ms`, oldest first within each, ordered by probe then
    /// region (the dashboard's grid of recent runs).
    pub async fn recent_results(
        &self,
        since_ms: i64,
        per_series: u32,
    ) -> Result<Vec<StoredResult>> {
        let rows = sqlx::query(
            "SELECT * FROM (
                SELECT r.*, ROW_NUMBER() OVER (
                    PARTITION BY probe_id, region ORDER BY started_ms DESC, seq DESC) AS rn
                FROM results r WHERE started_ms >= $1) AS ranked
             WHERE rn <= $2 ORDER BY probe_id, region, started_ms, seq",
        )
        .bind(since_ms)
        .bind(i64::from(per_series))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(result_from_row).collect()
    }

    /// `(good, total)` over results of `probe_ids` (all regions) started at or
    /// after `since_ms`. Good = success, and with a threshold also
    /// `total_us <= threshold`.
    pub async fn slo_counts(
        &self,
        probe_ids: &[String],
        since_ms: i64,
        latency_threshold_us: Option<u64>,
    ) -> Result<(u64, u64)> {
        // The id list travels as one JSON parameter so the SQL text stays static.
        let ids = serde_json::to_string(probe_ids)?;
        let sql = format!(
            "SELECT
                COALESCE(SUM(CASE WHEN outcome = 1 AND ($1 IS NULL OR total_us <= $1) THEN 1 ELSE 0 END), 0) AS good,
                COUNT(*) AS total
             FROM results
             WHERE probe_id IN {} AND started_ms >= $3",
            self.text_list(2)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(latency_threshold_us.map(clamp))
            .bind(ids)
            .bind(since_ms)
            .fetch_one(&self.read)
            .await?;
        Ok((
            unsigned(row.try_get("good")?),
            unsigned(row.try_get("total")?),
        ))
    }

    /// Like [`slo_counts`](Self::slo_counts) for several start points at once
    /// (the SLO window and every burn-rate window) in one pass over the
    /// oldest range; returns (good, total) per entry of `since_ms`.
    pub async fn slo_counts_since(
        &self,
        probe_ids: &[String],
        since_ms: &[i64],
        latency_threshold_us: Option<u64>,
    ) -> Result<Vec<(u64, u64)>> {
        let Some(&oldest) = since_ms.iter().min() else {
            return Ok(Vec::new());
        };
        let ids = serde_json::to_string(probe_ids)?;
        // One conditional sum pair per start point; the SQL is built from a
        // fixed template and only the count varies, values are bound.
        let mut sql = String::from("SELECT ");
        for i in 0..since_ms.len() {
            let p = i + 4;
            sql.push_str(&format!(
                "COALESCE(SUM(CASE WHEN started_ms >= ${p} AND outcome = 1 AND ($1 IS NULL OR total_us <= $1) THEN 1 ELSE 0 END), 0) AS g{i}, \
                 COALESCE(SUM(CASE WHEN started_ms >= ${p} THEN 1 ELSE 0 END), 0) AS t{i}, "
            ));
        }
        sql.push_str(&format!(
            "0 AS unused FROM results WHERE probe_id IN {} AND started_ms >= $3",
            self.text_list(2)
        ));
        // Safe: built only from integer placeholders, never from input.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(latency_threshold_us.map(clamp))
            .bind(ids)
            .bind(oldest);
        for since in since_ms {
            q = q.bind(*since);
        }
        let row = q.fetch_one(&self.read).await?;
        (0..since_ms.len())
            .map(|i| {
                Ok((
                    unsigned(row.try_get(format!("g{i}").as_str())?),
                    unsigned(row.try_get(format!("t{i}").as_str())?),
                ))
            })
            .collect()
    }

    /// Deletes results started before `older_than_ms`; returns how many.
    /// Works in chunks so ingest (same single writer) is never blocked for long.
    pub async fn prune(&self, older_than_ms: i64) -> Result<u64> {
        const CHUNK: i64 = 5000;
        let mut deleted = 0;
        loop {
            let row_id = match self.backend {
                Backend::Sqlite => "rowid",
                Backend::Postgres => "ctid",
            };
            let sql = format!(
                "DELETE FROM results WHERE {row_id} IN
                    (SELECT {row_id} FROM results WHERE started_ms < $1 LIMIT $2)"
            );
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(older_than_ms)
                .bind(CHUNK)
                .execute(&self.write)
                .await?
                .rows_affected();
            deleted += n;
            if n < CHUNK as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        sqlx::query("DELETE FROM latest WHERE started_ms < $1")
            .bind(older_than_ms)
            .execute(&self.write)
            .await?;
        sqlx::query("DELETE FROM escalations WHERE received_ms < $1")
            .bind(older_than_ms)
            .execute(&self.write)
            .await?;
        self.prune_minutes(now_ms()).await?;
        self.bump();
        Ok(deleted)
    }

    /// Deletes `minute_counts` rows older than the minute retention
    /// ([`set_minute_retention`](Self::set_minute_retention)) before `now_ms`;
    /// returns how many.
    pub async fn prune_minutes(&self, now_ms: i64) -> Result<u64> {
        let keep = self.minute_retention_ms.load(Ordering::Relaxed);
        let cutoff = minute_of(now_ms.saturating_sub(keep));
        let n = sqlx::query("DELETE FROM minute_counts WHERE minute < $1")
            .bind(cutoff)
            .execute(&self.write)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM minute_sketches WHERE minute < $1")
            .bind(cutoff)
            .execute(&self.write)
            .await?;
        self.rollup.lock().await.prune(cutoff);
        Ok(n)
    }

    /// How long `minute_counts` rows are kept: the longest SLO window plus a
    /// day (set by the coordinator from the catalog).
    pub fn set_minute_retention(&self, keep: Duration) {
        self.minute_retention_ms.store(
            i64::try_from(keep.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The latency thresholds `minute_counts` is currently maintained for.
    pub fn latency_thresholds(&self) -> Arc<LatencyThresholds> {
        match self.thresholds.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sets the latency thresholds (µs, per probe) `minute_counts` keeps
    /// rows for; the coordinator calls it at start and on every catalog
    /// reload. A threshold not maintained before (persisted in
    /// `minute_thresholds`, so a restart is not a change) is backfilled from
    /// the raw results still retained, in the same transaction: its numbers
    /// are exact within raw retention. A dropped threshold stops being
    /// maintained; its rows age out. Zero (availability) is ignored.
    /// Returns how many (probe, threshold) pairs were backfilled.
    pub async fn set_latency_thresholds(&self, map: LatencyThresholds) -> Result<u64> {
        let mut map = map;
        for (series, v) in map.iter_mut() {
            // Probes always have availability rows; a `probe/step` series
            // keeps 0 as its step availability.
            let is_step = series.contains('/');
            v.retain(|t| *t > 0 || is_step);
            v.sort_unstable();
            v.dedup();
        }
        map.retain(|_, v| !v.is_empty());
        let wanted: BTreeSet<(String, u64)> = map
            .iter()
            .flat_map(|(p, ts)| ts.iter().map(move |t| (p.clone(), *t)))
            .collect();
        // The write connection serializes this against insert_batch; the
        // roll-up lock (taken first, as there) keeps the reload below exact.
        let mut rollup = self.rollup.lock().await;
        let mut tx = self.write.begin().await?;
        // Replicas starting together: one backfills, the others then see
        // the threshold tracked.
        self.xact_lock(&mut tx, LOCK_THRESHOLDS).await?;
        let rows = sqlx::query("SELECT probe_id, threshold_us FROM minute_thresholds")
            .fetch_all(&mut *tx)
            .await?;
        let mut tracked = BTreeSet::new();
        for row in &rows {
            tracked.insert((
                row.try_get::<String, _>("probe_id")?,
                unsigned(row.try_get("threshold_us")?),
            ));
        }
        for (probe, th) in tracked.difference(&wanted) {
            sqlx::query("DELETE FROM minute_thresholds WHERE probe_id = $1 AND threshold_us = $2")
                .bind(probe)
                .bind(clamp(*th))
                .execute(&mut *tx)
                .await?;
        }
        let mut backfilled = 0;
        for (probe, th) in wanted.difference(&tracked) {
            // Rows left from an earlier period with this threshold have a
            // gap; rebuild them whole from what raw retention still has.
            sqlx::query("DELETE FROM minute_counts WHERE probe_id = $1 AND threshold_us = $2")
                .bind(probe)
                .bind(clamp(*th))
                .execute(&mut *tx)
                .await?;
            match probe.split_once('/') {
                None => {
                    sqlx::query(
                        "INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total, updated_ms)
                         SELECT probe_id, region,
                            (started_ms - (((started_ms % 60000) + 60000) % 60000)) / 60000 AS m, $1,
                            SUM(CASE WHEN outcome = 1 AND total_us <= $1 THEN 1 ELSE 0 END), COUNT(*), $3
                         FROM results WHERE probe_id = $2 GROUP BY probe_id, region, m",
                    )
                    .bind(clamp(*th))
                    .bind(probe)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                }
                Some((probe_id, step)) => {
                    // A journey step: from the steps kept with each result.
                    let (outcome, total_us, name, steps) = match self.backend {
                        Backend::Sqlite => (
                            "json_extract(s.value, '$.outcome')",
                            "json_extract(s.value, '$.timings.total_us')",
                            "json_extract(s.value, '$.name')",
                            "json_each(r.steps_json) s",
                        ),
                        Backend::Postgres => (
                            "CAST(s.value ->> 'outcome' AS BIGINT)",
                            "CAST(s.value -> 'timings' ->> 'total_us' AS BIGINT)",
                            "(s.value ->> 'name')",
                            "json_array_elements(CAST(r.steps_json AS json)) AS s(value)",
                        ),
                    };
                    let sql = format!(
                        "INSERT INTO minute_counts (probe_id, region, minute, threshold_us, good, total, updated_ms)
                         SELECT $4, r.region,
                            (r.started_ms - (((r.started_ms % 60000) + 60000) % 60000)) / 60000 AS m, $1,
                            SUM(CASE WHEN {outcome} = 1 AND ($1 = 0 OR {total_us} <= $1)
                                 THEN 1 ELSE 0 END),
                            COUNT(*), $5
                         FROM results r CROSS JOIN {steps}
                         WHERE r.probe_id = $2 AND {name} = $3
                         GROUP BY r.region, m"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(clamp(*th))
                        .bind(probe_id)
                        .bind(step)
                        .bind(probe)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query("INSERT INTO minute_thresholds (probe_id, threshold_us) VALUES ($1, $2)")
                .bind(probe)
                .bind(clamp(*th))
                .execute(&mut *tx)
                .await?;
            backfilled += 1;
        }
        {
            let mut g = match self.thresholds.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            *g = Arc::new(map);
        }
        tx.commit().await?;
        if backfilled > 0 {
            *rollup = self.load_rollup().await?;
        }
        self.bump();
        Ok(backfilled)
    }

    /// `(good, total)` from `minute_counts` over `probe_ids` (all regions),
    /// per entry of `since_ms`: every minute at or after the minute
    /// containing it (windows are minute-aligned; the partial first minute
    /// counts whole). `None` = availability.
    pub async fn minute_counts_since(
        &self,
        probe_ids: &[String],
        since_ms: &[i64],
        latency_threshold_us: Option<u64>,
    ) -> Result<Vec<(u64, u64)>> {
        let since: Vec<i64> = since_ms.iter().map(|s| minute_of(*s)).collect();
        let sums = self.minute_sums(probe_ids, &since).await?;
        let th = latency_threshold_us.unwrap_or(0);
        let mut out = vec![(0u64, 0u64); since.len()];
        for ((p, t, _), v) in &sums {
            if *t == th && probe_ids.contains(p) {
                for (o, (g, t)) in out.iter_mut().zip(v) {
                    o.0 += g;
                    o.1 += t;
                }
            }
        }
        Ok(out)
    }

    /// The latency sketch of `probe_id` per region over minutes `>= since_minute`.
    pub async fn latency_sketches(
        &self,
        probe_id: &str,
        since_minute: i64,
    ) -> Result<BTreeMap<String, crate::latency_sketch::LatencySketch>> {
        let rows = sqlx::query(
            "SELECT region, sketch FROM minute_sketches WHERE probe_id = $1 AND minute >= $2",
        )
        .bind(probe_id)
        .bind(since_minute)
        .fetch_all(&self.read)
        .await?;
        let mut out: BTreeMap<String, crate::latency_sketch::LatencySketch> = BTreeMap::new();
        for row in &rows {
            let blob: Vec<u8> = row.try_get("sketch")?;
            let Some(s) = crate::latency_sketch::LatencySketch::decode(&blob) else {
                continue;
            };
            out.entry(row.try_get("region")?).or_default().merge(&s);
        }
        Ok(out)
    }

    /// Every `minute_counts` row of `probe_ids` at or after `since_minute`
    /// (for SLOs that judge each minute: timeslices, region quorum).
    pub async fn minute_rows(
        &self,
        probe_ids: &[String],
        since_minute: i64,
    ) -> Result<Vec<MinuteRow>> {
        let sql = format!(
            "SELECT probe_id, region, minute, threshold_us, good, total FROM minute_counts
             WHERE probe_id IN {} AND minute >= $2",
            self.text_list(1)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(since_minute)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(MinuteRow {
                    probe_id: row.try_get("probe_id")?,
                    region: row.try_get("region")?,
                    minute: row.try_get("minute")?,
                    threshold_us: unsigned(row.try_get("threshold_us")?),
                    good: unsigned(row.try_get("good")?),
                    total: unsigned(row.try_get("total")?),
                })
            })
            .collect()
    }

    /// One grouped pass over `minute_counts` for many SLOs at once: per
    /// `(probe_id, threshold_us, region)` of `probe_ids`, the (good, total)
    /// sums over minutes `>= since_minutes[i]`, for every `i`.
    pub async fn minute_sums(
        &self,
        probe_ids: &[String],
        since_minutes: &[i64],
    ) -> Result<MinuteSums> {
        let Some(&oldest) = since_minutes.iter().min() else {
            return Ok(MinuteSums::new());
        };
        // Nested windows: sum each band between consecutive start minutes
        // once (one CASE per row instead of two SUMs per window), then add
        // the bands up in Rust.
        let mut starts: Vec<i64> = since_minutes.to_vec();
        starts.sort_unstable();
        starts.dedup();
        let mut band = String::from("CASE");
        for i in (1..starts.len()).rev() {
            let p = i + 2;
            band.push_str(&format!(" WHEN minute >= ${p} THEN {i}"));
        }
        band.push_str(" ELSE 0 END");
        if starts.len() == 1 {
            band = String::from("0");
        }
        let sql = format!(
            "SELECT probe_id, threshold_us, region, {band} AS band, CAST(SUM(good) AS BIGINT) AS g,
                CAST(SUM(total) AS BIGINT) AS t
             FROM minute_counts
             WHERE probe_id IN {ids} AND minute >= $2
             GROUP BY probe_id, threshold_us, region, band",
            ids = self.text_list(1)
        );
        // Safe: built only from integer placeholders, never from input.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(oldest);
        for s in starts.iter().skip(1) {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.read).await?;
        // Per key, (good, total) per band.
        let mut bands: HashMap<(String, u64, String), Vec<(u64, u64)>> = HashMap::new();
        for row in &rows {
            let key = (
                row.try_get::<String, _>("probe_id")?,
                unsigned(row.try_get("threshold_us")?),
                row.try_get::<String, _>("region")?,
            );
            let b = usize::try_from(row.try_get::<i64, _>("band")?).unwrap_or(0);
            let v = bands
                .entry(key)
                .or_insert_with(|| vec![(0, 0); starts.len()]);
            if let Some(slot) = v.get_mut(b) {
                slot.0 += unsigned(row.try_get("g")?);
                slot.1 += unsigned(row.try_get("t")?);
            }
        }
        Ok(bands
            .into_iter()
            .map(|(key, v)| {
                // Suffix sums: band i and every later (newer) band.
                let mut acc = vec![(0u64, 0u64); v.len()];
                let mut run = (0u64, 0u64);
                for i in (0..v.len()).rev() {
                    run.0 += v[i].0;
                    run.1 += v[i].1;
                    acc[i] = run;
                }
                let per_since = since_minutes
                    .iter()
                    .map(|s| {
                        let i = starts.partition_point(|x| x < s);
                        acc.get(i).copied().unwrap_or((0, 0))
                    })
                    .collect();
                (key, per_since)
            })
            .collect())
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

    /// The firing alerts, ordered by SLO and severity.
    pub async fn firing_alerts(&self) -> Result<Vec<crate::alerting::Firing>> {
        let rows = sqlx::query(
            "SELECT slo, severity, rule, burn_long, burn_short, factor, started_ms, last_sent_ms
             FROM alerts ORDER BY slo, severity",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let severity: String = row.try_get("severity")?;
                let rule: String = row.try_get("rule")?;
                Ok(crate::alerting::Firing {
                    alert: crate::alerting::Alert {
                        slo: row.try_get("slo")?,
                        severity: severity.parse().map_err(StoreError::Invalid)?,
                        rule: crate::alerting::rule_label(&rule).ok_or_else(|| {
                            StoreError::Invalid(format!("unknown alert rule `{rule}`"))
                        })?,
                        burn_long: row.try_get("burn_long")?,
                        burn_short: row.try_get("burn_short")?,
                        factor: row.try_get("factor")?,
                    },
                    started_ms: row.try_get("started_ms")?,
                    last_sent_ms: row.try_get("last_sent_ms")?,
                })
            })
            .collect()
    }

    /// Inserts or updates a firing alert.
    pub async fn save_alert(&self, f: &crate::alerting::Firing) -> Result<()> {
        sqlx::query(
            "INSERT INTO alerts (slo, severity, rule, burn_long, burn_short, factor, started_ms, last_sent_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (slo, severity) DO UPDATE SET rule = excluded.rule,
               burn_long = excluded.burn_long, burn_short = excluded.burn_short,
               factor = excluded.factor, started_ms = excluded.started_ms,
               last_sent_ms = excluded.last_sent_ms",
        )
        .bind(&f.alert.slo)
        .bind(f.alert.severity.as_str())
        .bind(f.alert.rule)
        .bind(f.alert.burn_long)
        .bind(f.alert.burn_short)
        .bind(f.alert.factor)
        .bind(f.started_ms)
        .bind(f.last_sent_ms)
        .execute(&self.write)
        .await?;
        self.bump();
        Ok(())
    }

    /// Forgets a resolved alert.
    pub async fn delete_alert(&self, slo: &str, severity: crate::alerting::Severity) -> Result<()> {
        sqlx::query("DELETE FROM alerts WHERE slo = $1 AND severity = $2")
            .bind(slo)
            .bind(severity.as_str())
            .execute(&self.write)
            .await?;
        self.bump();
        Ok(())
    }

    /// When a result of `probe_ids` (or one of its steps) last had failure
    /// class `class`, at or after `since_ms`.
    pub async fn last_failure_class_since(
        &self,
        probe_ids: &[String],
        class: i32,
        since_ms: i64,
    ) -> Result<Option<i64>> {
        let step_class = self.step_with_class(3);
        let sql = format!(
            "SELECT MAX(started_ms) FROM results
             WHERE probe_id IN {} AND started_ms >= $2
               AND (failure_class = $3 OR EXISTS ({step_class}))",
            self.text_list(1)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(since_ms)
            .bind(class)
            .fetch_one(&self.read)
            .await?)
    }

    /// When the coordinator last received a result of `probe_ids` carrying an
    /// escalation, if at or after `since_ms` (its receive time, not the
    /// agent's start time: a late escalation still counts as recent).
    pub async fn last_escalation_received_since(
        &self,
        probe_ids: &[String],
        since_ms: i64,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT MAX(received_ms) FROM escalations
             WHERE probe_id IN {} AND received_ms >= $2",
            self.text_list(1)
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(probe_ids)?)
            .bind(since_ms)
            .fetch_one(&self.read)
            .await?)
    }

    /// Records a silence (`until_ms` set) or an acknowledgement (`None`).
    pub async fn put_silence(&self, s: &Silence) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_silences (slo, severity, kind, until_ms, created_by, reason, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (slo, severity, kind) DO UPDATE SET until_ms = excluded.until_ms,
                created_by = excluded.created_by, reason = excluded.reason, created_ms = excluded.created_ms",
        )
        .bind(&s.slo)
        .bind(&s.severity)
        .bind(if s.until_ms.is_some() { "silence" } else { "ack" })
        .bind(s.until_ms)
        .bind(&s.created_by)
        .bind(&s.reason)
        .bind(s.created_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Silences still in force at `now_ms` and every acknowledgement.
    pub async fn silences(&self, now_ms: i64) -> Result<Vec<Silence>> {
        let rows = sqlx::query(
            "SELECT slo, severity, until_ms, created_by, reason, created_ms FROM alert_silences
             WHERE until_ms IS NULL OR until_ms > $1",
        )
        .bind(now_ms)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Silence {
                    slo: r.try_get("slo")?,
                    severity: r.try_get("severity")?,
                    until_ms: r.try_get("until_ms")?,
                    created_by: r.try_get("created_by")?,
                    reason: r.try_get("reason")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// An alert resolved: its acknowledgement ends with it.
    pub async fn clear_ack(&self, slo: &str, severity: &str) -> Result<()> {
        sqlx::query("DELETE FROM alert_silences WHERE slo = $1 AND severity = $2 AND kind = 'ack'")
            .bind(slo)
            .bind(severity)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Closes both pools (waits for running queries).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Of `seqs`, those already stored for `agent_id` (ingest uses it to
    /// tell newly stored results from resends before a batch is inserted).
    pub async fn stored_seqs(
        &self,
        agent_id: &str,
        seqs: &[u64],
    ) -> Result<std::collections::BTreeSet<u64>> {
        let wanted: Vec<i64> = seqs.iter().map(|s| clamp(*s)).collect();
        let sql = format!(
            "SELECT seq FROM results WHERE agent_id = $1 AND seq IN {}",
            self.int_list(2)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(agent_id)
            .bind(serde_json::to_string(&wanted)?)
            .fetch_all(&self.write)
            .await?;
        let mut out = std::collections::BTreeSet::new();
        for row in &rows {
            out.insert(unsigned(row.try_get::<i64, _>("seq")?));
        }
        Ok(out)
    }

    /// The firing escalation alerts with when an escalation was last seen,
    /// kept in `meta` under `escalation_alert:<slo>` (no schema change).
    pub async fn escalation_alerts(&self) -> Result<Vec<(crate::alerting::Firing, i64)>> {
        let rows = sqlx::query(
            "SELECT key, value FROM meta WHERE key LIKE 'escalation_alert:%' ORDER BY key",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let key: String = row.try_get("key")?;
            let value: String = row.try_get("value")?;
            let slo = key.trim_start_matches("escalation_alert:");
            // `[started_ms, last_sent_ms, last_seen_ms]`.
            let (started_ms, last_sent_ms, last_seen_ms): (i64, i64, i64) =
                serde_json::from_str(&value)?;
            out.push((
                crate::alerting::Firing {
                    alert: crate::alerting::escalation_alert(slo),
                    started_ms,
                    last_sent_ms,
                },
                last_seen_ms,
            ));
        }
        Ok(out)
    }

    /// Inserts or updates a firing escalation alert.
    pub async fn save_escalation_alert(
        &self,
        f: &crate::alerting::Firing,
        last_seen_ms: i64,
    ) -> Result<()> {
        let value = serde_json::to_string(&(f.started_ms, f.last_sent_ms, last_seen_ms))?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(format!("escalation_alert:{}", f.alert.slo))
            .bind(value)
            .execute(&self.write)
            .await?;
        self.bump();
        Ok(())
    }

    /// Forgets a resolved escalation alert.
    pub async fn delete_escalation_alert(&self, slo: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(format!("escalation_alert:{slo}"))
            .execute(&self.write)
            .await?;
        self.bump();
        Ok(())
    }
}

/// The status page's state (see [`crate::statuspage`]): component statuses,
/// incidents with their updates, the page id.
impl Store {
    /// The last status shown per component.
    pub async fn status_components(&self) -> Result<Vec<crate::statuspage::ComponentState>> {
        let rows = sqlx::query("SELECT id, status, created_ms, updated_ms FROM status_components")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::statuspage::ComponentState {
                    id: r.try_get("id")?,
                    status: r.try_get("status")?,
                    created_ms: r.try_get("created_ms")?,
                    updated_ms: r.try_get("updated_ms")?,
                })
            })
            .collect()
    }

    /// Inserts or replaces component statuses, all in one transaction.
    pub async fn save_status_components(
        &self,
        states: &[crate::statuspage::ComponentState],
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for s in states {
            sqlx::query(
                "INSERT INTO status_components (id, status, created_ms, updated_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                   created_ms = excluded.created_ms, updated_ms = excluded.updated_ms",
            )
            .bind(&s.id)
            .bind(&s.status)
            .bind(s.created_ms)
            .bind(s.updated_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new incident with its first update (one transaction). Fails
    /// if its SLO already has an unresolved incident.
    pub async fn open_incident(
        &self,
        incident: &crate::statuspage::Incident,
        first: &crate::statuspage::IncidentUpdate,
    ) -> Result<()> {
        self.write_incident(incident, first, true).await
    }

    /// Stores an incident's new state with the update that explains it (one
    /// transaction); resolving is an update with status `resolved` and
    /// `resolved_ms` set.
    pub async fn update_incident(
        &self,
        incident: &crate::statuspage::Incident,
        update: &crate::statuspage::IncidentUpdate,
    ) -> Result<()> {
        self.write_incident(incident, update, false).await
    }

    async fn write_incident(
        &self,
        i: &crate::statuspage::Incident,
        u: &crate::statuspage::IncidentUpdate,
        new: bool,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let sql = if new {
            "INSERT INTO incidents (id, slo, name, status, impact, severities_json, components_json,
                started_ms, created_ms, updated_ms, monitoring_ms, resolved_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        } else {
            "UPDATE incidents SET slo = $2, name = $3, status = $4, impact = $5,
                severities_json = $6, components_json = $7, started_ms = $8, created_ms = $9,
                updated_ms = $10, monitoring_ms = $11, resolved_ms = $12
             WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(&i.id)
            .bind(&i.slo)
            .bind(&i.name)
            .bind(&i.status)
            .bind(&i.impact)
            .bind(serde_json::to_string(&i.severities)?)
            .bind(serde_json::to_string(&i.components)?)
            .bind(i.started_ms)
            .bind(i.created_ms)
            .bind(i.updated_ms)
            .bind(i.monitoring_ms)
            .bind(i.resolved_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO incident_updates (id, incident_id, status, body, created_ms, affected_json)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.id)
        .bind(&i.id)
        .bind(&u.status)
        .bind(&u.body)
        .bind(u.created_ms)
        .bind(serde_json::to_string(&u.affected)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unresolved incidents, oldest first, with their updates.
    pub async fn open_incidents(&self) -> Result<Vec<crate::statuspage::Incident>> {
        let rows = sqlx::query(
            "SELECT * FROM incidents WHERE resolved_ms IS NULL ORDER BY created_ms, id",
        )
        .fetch_all(&self.read)
        .await?;
        self.incidents_from_rows(&rows).await
    }

    /// The `limit` most recently created incidents, newest first, with
    /// their updates.
    pub async fn recent_incidents(&self, limit: u32) -> Result<Vec<crate::statuspage::Incident>> {
        let rows =
            sqlx::query("SELECT * FROM incidents ORDER BY created_ms DESC, id DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
        self.incidents_from_rows(&rows).await
    }

    /// When any incident last changed (opened, updated, resolved).
    pub async fn incidents_updated_ms(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(updated_ms) FROM incidents")
            .fetch_one(&self.read)
            .await?)
    }

    /// One incident by id, with its updates.
    pub async fn incident(&self, id: &str) -> Result<Option<crate::statuspage::Incident>> {
        let rows = sqlx::query("SELECT * FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        Ok(self.incidents_from_rows(&rows).await?.pop())
    }

    /// Incidents from `incidents` rows, each with its updates newest first.
    async fn incidents_from_rows(
        &self,
        rows: &[AnyRow],
    ) -> Result<Vec<crate::statuspage::Incident>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let severities: String = r.try_get("severities_json")?;
            let components: String = r.try_get("components_json")?;
            out.push(crate::statuspage::Incident {
                id: r.try_get("id")?,
                slo: r.try_get("slo")?,
                name: r.try_get("name")?,
                status: r.try_get("status")?,
                impact: r.try_get("impact")?,
                severities: serde_json::from_str(&severities)?,
                components: serde_json::from_str(&components)?,
                started_ms: r.try_get("started_ms")?,
                created_ms: r.try_get("created_ms")?,
                updated_ms: r.try_get("updated_ms")?,
                monitoring_ms: r.try_get("monitoring_ms")?,
                resolved_ms: r.try_get("resolved_ms")?,
                updates: Vec::new(),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        let ids: Vec<&str> = out.iter().map(|i| i.id.as_str()).collect();
        let sql = format!(
            "SELECT id, incident_id, status, body, created_ms, affected_json FROM incident_updates
             WHERE incident_id IN {}
             ORDER BY created_ms DESC, rowid DESC",
            self.text_list(1)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(&ids)?)
            .fetch_all(&self.read)
            .await?;
        let mut updates: HashMap<String, Vec<crate::statuspage::IncidentUpdate>> = HashMap::new();
        for r in &rows {
            let affected: String = r.try_get("affected_json")?;
            let u = crate::statuspage::IncidentUpdate {
                id: r.try_get("id")?,
                incident_id: r.try_get("incident_id")?,
                status: r.try_get("status")?,
                body: r.try_get("body")?,
                created_ms: r.try_get("created_ms")?,
                affected: serde_json::from_str(&affected)?,
            };
            updates.entry(u.incident_id.clone()).or_default().push(u);
        }
        for i in &mut out {
            i.updates = updates.remove(&i.id).unwrap_or_default();
        }
        Ok(out)
    }

    /// This installation's status page id (12 hex characters), made up on
    /// first use and kept in `meta`, so feed and incident ids stay stable.
    pub async fn statuspage_id(&self) -> Result<String> {
        use sha2::Digest;
        let known: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'statuspage_id'")
                .fetch_optional(&self.read)
                .await?;
        if let Some(id) = known {
            return Ok(id);
        }
        let seed = format!(
            "{}:{}:{}",
            self.location,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        );
        let fresh = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
        sqlx::query("INSERT INTO meta (key, value) VALUES ('statuspage_id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(&fresh[..12])
            .execute(&self.write)
            .await?;
        let id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'statuspage_id'")
            .fetch_one(&self.write)
            .await?;
        Ok(id)
    }
}

/// The leader lock held on a connection of its own (PostgreSQL); dropping
/// or releasing it frees the lock for another replica.
pub struct LeaderLock {
    conn: sqlx::AnyConnection,
}

impl LeaderLock {
    /// Whether the connection (and so the lock) is still there.
    pub async fn check(&mut self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await?;
        Ok(())
    }

    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_LEADER)
            .fetch_optional(&mut self.conn)
            .await;
        let _ = sqlx::Connection::close(self.conn).await;
    }
}

impl Store {
    /// Tries to take the leader lock (PostgreSQL only; `None` when another
    /// replica holds it, or on SQLite where no lock is needed).
    pub async fn try_leader_lock(&self) -> Result<Option<LeaderLock>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut conn = self.options.connect().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_LEADER)
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(LeaderLock { conn }))
        } else {
            let _ = sqlx::Connection::close(conn).await;
            Ok(None)
        }
    }

    /// Probes with a result (or a step) of failure class `class` started at
    /// or after `since_ms`: how the leader learns of escalations another
    /// replica ingested.
    pub async fn probes_with_class_since(
        &self,
        class: i32,
        since_ms: i64,
    ) -> Result<BTreeSet<String>> {
        let step_class = self.step_with_class(1);
        let sql = format!(
            "SELECT DISTINCT probe_id FROM results
             WHERE started_ms >= $2 AND (failure_class = $1 OR EXISTS ({step_class}))"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(class)
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("probe_id")?))
            .collect()
    }
}

fn result_from_row(row: &AnyRow) -> Result<StoredResult> {
    let opt = |name: &str| -> Result<Option<u64>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(unsigned))
    };
    let steps: String = row.try_get("steps_json")?;
    Ok(StoredResult {
        agent_id: row.try_get("agent_id")?,
        seq: unsigned(row.try_get("seq")?),
        probe_id: row.try_get("probe_id")?,
        region: row.try_get("region")?,
        started_ms: row.try_get("started_ms")?,
        duration_us: unsigned(row.try_get("duration_us")?),
        outcome: row.try_get("outcome")?,
        failure_class: row.try_get("failure_class")?,
        timings: StoredTimings {
            dns_us: opt("dns_us")?,
            connect_us: opt("connect_us")?,
            tls_us: opt("tls_us")?,
            ttfb_us: opt("ttfb_us")?,
            total_us: unsigned(row.try_get("total_us")?),
        },
        steps: serde_json::from_str(&steps)?,
        detail: row.try_get("detail")?,
        assignment_version: unsigned(row.try_get("assignment_version")?),
        received_ms: row.try_get("received_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_proto::v1::{FailureClass, Outcome};

    fn result(seq: u64, probe: &str, started: i64, ok: bool, total_us: u64) -> ProbeResult {
        ProbeResult {
            agent_id: "a1".into(),
            seq,
            probe_id: probe.into(),
            region: "eu-west".into(),
            started_unix_ms: started,
            duration_us: total_us,
            outcome: if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            } as i32,
            failure_class: if ok {
                FailureClass::Unspecified
            } else {
                FailureClass::Timeout
            } as i32,
            timings: Some(Timings {
                dns_us: Some(10),
                connect_us: None,
                tls_us: None,
                ttfb_us: Some(500),
                total_us,
            }),
            steps: vec![],
            detail: String::new(),
            assignment_version: 1,
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn insert_is_idempotent_and_latest_tracks_newest() {
        let (_dir, s) = store().await;
        s.upsert_agent(&AgentInfo {
            agent_id: "a1".into(),
            region: "eu-west".into(),
            ..Default::default()
        })
        .await
        .expect("agent");
        let batch = vec![
            result(1, "p", 1000, true, 100),
            result(2, "p", 2000, false, 200),
        ];
        assert_eq!(
            s.insert_batch("a1", &batch).await.expect("insert").inserted,
            2
        );
        let again = s.insert_batch("a1", &batch).await.expect("insert");
        assert_eq!(
            again,
            InsertStats {
                inserted: 0,
                duplicates: 2
            }
        );
        // An older result arriving late does not replace the newest.
        s.insert_batch("a1", &[result(3, "p", 500, true, 1)])
            .await
            .expect("insert");
        let latest = s.latest_per_probe_region().await.expect("latest");
        assert_eq!(latest.len(), 1);
        assert_eq!(
            (latest[0].seq, latest[0].outcome),
            (2, Outcome::Failure as i32)
        );
        assert_eq!(latest[0].timings.dns_us, Some(10));
        assert_eq!(latest[0].timings.connect_us, None);
    }

    #[tokio::test]
    async fn counts_and_prune() {
        let (_dir, s) = store().await;
        let batch = vec![
            result(1, "p", 1000, true, 100),
            result(2, "p", 2000, true, 900),
            result(3, "p", 3000, false, 100),
            result(4, "q", 3000, true, 100),
            result(5, "other", 3000, false, 100),
        ];
        s.insert_batch("a1", &batch).await.expect("insert");
        let ids = vec!["p".to_string(), "q".to_string()];
        assert_eq!(s.slo_counts(&ids, 0, None).await.expect("counts"), (3, 4));
        assert_eq!(
            s.slo_counts(&ids, 0, Some(500)).await.expect("counts"),
            (2, 4)
        );
        assert_eq!(
            s.slo_counts(&ids, 2000, None).await.expect("counts"),
            (2, 3)
        );
        assert_eq!(s.prune(2500).await.expect("prune"), 2);
        assert_eq!(s.slo_counts(&ids, 0, None).await.expect("counts"), (1, 2));
    }

    #[tokio::test]
    async fn minute_counts_skip_duplicates_and_backfill_new_thresholds() {
        let (_dir, s) = store().await;
        let mut map = LatencyThresholds::new();
        map.insert("p".to_string(), vec![500]);
        s.set_latency_thresholds(map.clone())
            .await
            .expect("thresholds");
        // Two minutes; latencies on both sides of 500 and 300 µs.
        let batch = vec![
            result(1, "p", 60_000, true, 100),
            result(2, "p", 60_500, true, 400),
            result(3, "p", 119_999, true, 900),
            result(4, "p", 120_000, false, 100),
            result(5, "p", 125_000, true, 250),
            result(6, "q", 125_000, true, 250),
        ];
        s.insert_batch("a1", &batch).await.expect("insert");
        // Resent (a duplicate) together with one new result.
        let mut again = batch.clone();
        again.push(result(7, "p", 130_000, true, 600));
        let stats = s.insert_batch("a1", &again).await.expect("insert");
        assert_eq!((stats.inserted, stats.duplicates), (1, 6));
        let p = vec!["p".to_string()];
        let since = [0, 120_000, 179_999];
        assert_eq!(
            s.minute_counts_since(&p, &since, None)
                .await
                .expect("counts"),
            vec![(5, 6), (2, 3), (2, 3)]
        );
        assert_eq!(
            s.minute_counts_since(&p, &since, Some(500))
                .await
                .expect("counts"),
            vec![(3, 6), (1, 3), (1, 3)]
        );
        // A threshold never maintained has no rows until it is set; then it
        // is backfilled exactly from the raw results.
        assert_eq!(
            s.minute_counts_since(&p, &since, Some(300))
                .await
                .expect("counts"),
            vec![(0, 0); 3]
        );
        map.insert("p".to_string(), vec![500, 300]);
        assert_eq!(s.set_latency_thresholds(map.clone()).await.expect("set"), 1);
        // Unchanged thresholds (as after a restart) backfill nothing.
        assert_eq!(s.set_latency_thresholds(map).await.expect("set"), 0);
        let want: Vec<(u64, u64)> = since
            .iter()
            .map(|&since| {
                let mut c = (0, 0);
                for r in again.iter().filter(|r| r.probe_id == "p") {
                    if r.started_unix_ms.div_euclid(MINUTE_MS) >= since.div_euclid(MINUTE_MS) {
                        c.1 += 1;
                        let total = r.timings.as_ref().map_or(0, |t| t.total_us);
                        if r.outcome == Outcome::Success as i32 && total <= 300 {
                            c.0 += 1;
                        }
                    }
                }
                c
            })
            .collect();
        assert_eq!(want, vec![(2, 6), (1, 3), (1, 3)]);
        assert_eq!(
            s.minute_counts_since(&p, &since, Some(300))
                .await
                .expect("counts"),
            want
        );
        // New results keep the backfilled threshold up to date.
        s.insert_batch("a1", &[result(8, "p", 130_001, true, 299)])
            .await
            .expect("insert");
        assert_eq!(
            s.minute_counts_since(&p, &[0], Some(300))
                .await
                .expect("counts"),
            vec![(3, 7)]
        );
        // Minute rows past the minute retention are pruned.
        s.set_minute_retention(Duration::from_secs(60));
        assert_eq!(s.prune_minutes(180_000).await.expect("prune"), 3);
        assert_eq!(
            s.minute_counts_since(&p, &[0], None).await.expect("counts"),
            vec![(3, 4)]
        );
    }

    #[tokio::test]
    async fn acks_never_go_back_and_versions_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).await.expect("open");
            s.upsert_agent(&AgentInfo {
                agent_id: "a1".into(),
                region: "r".into(),
                ..Default::default()
            })
            .await
            .expect("agent");
            s.set_acked_seq("a1", 7).await.expect("ack");
            s.set_acked_seq("a1", 3).await.expect("ack");
            assert_eq!(s.catalog_version("one").await.expect("v"), 1);
            assert_eq!(s.catalog_version("one").await.expect("v"), 1);
            assert_eq!(s.catalog_version("two").await.expect("v"), 2);
            s.close().await;
        }
        let s = Store::open(dir.path()).await.expect("reopen");
        assert_eq!(s.acked_seq("a1").await.expect("ack"), 7);
        assert_eq!(s.acked_seq("nobody").await.expect("ack"), 0);
        assert_eq!(s.catalog_version("two").await.expect("v"), 2);
        assert_eq!(s.catalog_version("one").await.expect("v"), 3);
    }
}
