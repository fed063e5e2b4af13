//! The schema: the DDL of every table, and [`Store::migrate`], which
//! creates it on a new database and upgrades an older one. The DDL is
//! written in SQLite's dialect; [`postgres_ddl`] rewrites it for
//! PostgreSQL. The version lives in `schema_version`.
use super::{Backend, LOCK_MIGRATE, Result, Store, StoreError};

/// The schema this code writes. Bump it together with a migration step in
/// [`Store::migrate`] when tables change.
pub const SCHEMA_VERSION: i64 = 7;

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

impl Store {
    pub(super) async fn migrate(&self) -> Result<()> {
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
}
