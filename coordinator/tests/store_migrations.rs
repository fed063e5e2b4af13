//! The schema comes from the migrations in `coordinator/migrations/`, and
//! databases created before them upgrade without losing anything:
//! - a new database gets exactly the schema the code before the migrator
//!   created (schema 7: same tables, columns, types, indexes), on SQLite
//!   and PostgreSQL, compared by dumping both, plus what later migrations
//!   added (8: `hour_counts`);
//! - a database created by that older code (its own DDL, replayed from
//!   `tests/fixtures/legacy/`, at version 7 and at older versions: 3 and 5
//!   on SQLite, 6 on PostgreSQL) with rows in every table opens: the rows
//!   are read back through the store, the steps its version lacked have
//!   run (minute backfill, escalations), writes work, the baseline is
//!   recorded once, and its schema is then the same as a new one's;
//! - two replicas bridging one PostgreSQL database at once both start;
//! - a database newer than the code is refused.
use std::path::Path;

use authpulse_coordinator::store::{
    AlertRow, Database, Incident, IncidentUpdate, SCHEMA_VERSION, Silence, Store, StoreError,
};
use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, Timings};
use authpulse_tests::postgres::PgDatabase;
use sqlx::{Connection, Row};

/// What the migrator records for a database at [`SCHEMA_VERSION`]: the
/// baseline (7, run or bridged) and every migration after it.
const APPLIED: [(i64, bool); 2] = [(7, true), (SCHEMA_VERSION, true)];

const SQLITE_V3: &str = include_str!("fixtures/legacy/sqlite-v3.sql");
const SQLITE_V5: &str = include_str!("fixtures/legacy/sqlite-v5.sql");
const SQLITE_V7: &str = include_str!("fixtures/legacy/sqlite-v7.sql");
const POSTGRES_V6: &str = include_str!("fixtures/legacy/postgres-v6.sql");
const POSTGRES_V7: &str = include_str!("fixtures/legacy/postgres-v7.sql");

/// Rows every old version has tables for (3 and later): an agent, three
/// results (one with an escalation in a journey step), the `latest`
/// pointers, the catalog version and a firing alert.
const SEED: &str = r#"
INSERT INTO agents (agent_id, region, version, labels_json, acked_seq, first_seen_ms,
    last_seen_ms, connected, assignment_version, clock_skew_ms, spool_depth, spool_bytes,
    dropped_total, stored_total)
VALUES ('a1', 'eu-west', '0.1.0', '{"zone":"b"}', 3, 1000, 2000, 1, 4, -15, 2, 300, 1, 3);
INSERT INTO results (agent_id, seq, probe_id, region, started_ms, duration_us, outcome,
    failure_class, dns_us, connect_us, tls_us, ttfb_us, total_us, steps_json, detail,
    assignment_version, received_ms)
VALUES
    ('a1', 1, 'p', 'eu-west', 60000, 1000, 1, 0, 10, NULL, NULL, 500, 1000, '[]', '', 4, 61000),
    ('a1', 2, 'p', 'eu-west', 60500, 2000, 2, 4, NULL, NULL, NULL, NULL, 2000, '[]',
        'timed out', 4, 61500),
    ('a1', 3, 'j', 'eu-west', 120000, 3000, 2, 9, NULL, NULL, NULL, NULL, 3000,
        '[{"name":"delete","kind":"permission","outcome":2,"failure_class":11,"timings":{"total_us":5},"detail":"allowed"}]',
        'escalation in a step', 4, 121000);
INSERT INTO latest (probe_id, region, agent_id, seq, started_ms)
VALUES ('p', 'eu-west', 'a1', 2, 60500), ('j', 'eu-west', 'a1', 3, 120000);
INSERT INTO meta (key, value)
VALUES ('catalog_version', '4'), ('catalog_text', 'canonical catalog');
INSERT INTO alerts (slo, severity, rule, burn_long, burn_short, factor, started_ms, last_sent_ms)
VALUES ('slo-a', 'page', '1h/5m', 20.5, 31.0, 14.4, 100000, 110000);
"#;

/// `minute_counts` as schema 4 and 5 had it (no `updated_ms`).
const SEED_MINUTES_V5: &str = "INSERT INTO minute_counts
    (probe_id, region, minute, threshold_us, good, total)
    VALUES ('p', 'eu-west', 1, 0, 1, 2), ('j', 'eu-west', 2, 0, 0, 1);";

/// `minute_counts` from schema 6 on.
const SEED_MINUTES_V6: &str = "INSERT INTO minute_counts
    (probe_id, region, minute, threshold_us, good, total, updated_ms)
    VALUES ('p', 'eu-west', 1, 0, 1, 2, 61500), ('j', 'eu-west', 2, 0, 0, 1, 121000);";

/// The status page, silences and an escalation page (schema 5 since the
/// status page, 6 and 7).
const SEED_STATUS: &str = r#"
INSERT INTO status_components (id, status, created_ms, updated_ms)
VALUES ('login', 'major_outage', 1000, 121500);
INSERT INTO incidents (id, slo, name, status, impact, severities_json, components_json,
    started_ms, created_ms, updated_ms, monitoring_ms, resolved_ms)
VALUES ('inc1', 'slo-a', 'Login is failing', 'investigating', 'critical', '["page"]',
    '[{"id":"login","name":"Login"}]', 100000, 100500, 100500, NULL, NULL);
INSERT INTO incident_updates (id, incident_id, status, body, created_ms, affected_json)
VALUES ('upd1', 'inc1', 'investigating', 'Login is failing.', 100500,
    '[{"code":"login","name":"Login","old_status":"operational","new_status":"major_outage"}]');
INSERT INTO alert_silences (slo, severity, kind, until_ms, created_by, reason, created_ms)
VALUES ('slo-a', 'page', 'ack', NULL, 'alice', 'looking', 101000);
INSERT INTO meta (key, value)
VALUES ('statuspage_id', 'abcdef123456'), ('escalation_alert:slo-e', '[120000,121000,121000]');
"#;

/// The escalations table's row for result 3 (schema 7).
const SEED_ESCALATIONS: &str = "INSERT INTO escalations
    (agent_id, seq, probe_id, started_ms, received_ms) VALUES ('a1', 3, 'j', 120000, 121000);";

async fn sqlite_dump(path: &std::path::Path) -> String {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    let mut out = String::new();
    let rows =
        sqlx::query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            .fetch_all(&mut c)
            .await
            .expect("master");
    let mut tables = Vec::new();
    for r in &rows {
        let ty: String = r.get(0);
        let name: String = r.get(1);
        let sql: Option<String> = r.get(3);
        let sql = sql
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "{ty} {name} on {}: {sql}\n",
            r.get::<String, _>(2)
        ));
        if ty == "table" {
            tables.push(name);
        }
    }
    for t in &tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_list({t})")))
            .fetch_all(&mut c)
            .await
            .expect("table_list");
        for r in &rows {
            out.push_str(&format!(
                "table_list {t}: type={} ncol={} wr={} strict={}\n",
                r.get::<String, _>("type"),
                r.get::<i64, _>("ncol"),
                r.get::<i64, _>("wr"),
                r.get::<i64, _>("strict")
            ));
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info({t})")))
            .fetch_all(&mut c)
            .await
            .expect("table_info");
        for r in &rows {
            out.push_str(&format!(
                "column {t}.{} #{} {} notnull={} default={:?} pk={}\n",
                r.get::<String, _>("name"),
                r.get::<i64, _>("cid"),
                r.get::<String, _>("type"),
                r.get::<i64, _>("notnull"),
                r.get::<Option<String>, _>("dflt_value"),
                r.get::<i64, _>("pk")
            ));
        }
        let idx = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA index_list({t})")))
            .fetch_all(&mut c)
            .await
            .expect("index_list");
        let mut names: Vec<(String, i64, String, i64)> = idx
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>("name"),
                    r.get::<i64, _>("unique"),
                    r.get::<String, _>("origin"),
                    r.get::<i64, _>("partial"),
                )
            })
            .collect();
        names.sort();
        for (name, unique, origin, partial) in names {
            let cols = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA index_xinfo({name})")))
                .fetch_all(&mut c)
                .await
                .expect("index_xinfo");
            let cols: Vec<String> = cols
                .iter()
                .filter(|r| r.get::<i64, _>("key") == 1)
                .map(|r| {
                    format!(
                        "{}{} {}",
                        r.get::<Option<String>, _>("name").unwrap_or_default(),
                        if r.get::<i64, _>("desc") == 1 {
                            " desc"
                        } else {
                            ""
                        },
                        r.get::<String, _>("coll")
                    )
                })
                .collect();
            out.push_str(&format!(
                "index {t}.{name} unique={unique} origin={origin} partial={partial} ({})\n",
                cols.join(", ")
            ));
        }
    }
    out
}

async fn pg_dump(url: &str) -> String {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    let mut out = String::new();
    let rows = sqlx::query(
        "SELECT table_name::text, column_name::text, ordinal_position::int8, data_type::text,
                is_nullable::text, column_default::text, collation_name::text
         FROM information_schema.columns WHERE table_schema = current_schema()
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut c)
    .await
    .expect("columns");
    for r in &rows {
        out.push_str(&format!(
            "column {}.{} #{} {} nullable={} default={:?} collation={:?}\n",
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<i64, _>(2),
            r.get::<String, _>(3),
            r.get::<String, _>(4),
            r.get::<Option<String>, _>(5),
            r.get::<Option<String>, _>(6),
        ));
    }
    let rows = sqlx::query(
        "SELECT tablename::text, indexname::text, indexdef::text FROM pg_indexes
         WHERE schemaname = current_schema() ORDER BY tablename, indexname",
    )
    .fetch_all(&mut c)
    .await
    .expect("indexes");
    for r in &rows {
        out.push_str(&format!(
            "index {}.{}: {}\n",
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2)
        ));
    }
    let rows = sqlx::query(
        "SELECT c.relname::text, c.relkind::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() ORDER BY c.relname",
    )
    .fetch_all(&mut c)
    .await
    .expect("relations");
    for r in &rows {
        out.push_str(&format!(
            "relation {} kind={}\n",
            r.get::<String, _>(0),
            r.get::<String, _>(1)
        ));
    }
    let rows = sqlx::query(
        "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
         FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
         ORDER BY 1, 2",
    )
    .fetch_all(&mut c)
    .await
    .expect("constraints");
    for r in &rows {
        out.push_str(&format!(
            "constraint {}.{}: {}\n",
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2)
        ));
    }
    out
}

/// Lines of a dump that are about the migrator's own table.
fn without_migrator(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.contains("_sqlx_migrations"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A new database's dump as schema 7 had it: without the migrator's table
/// and without what later migrations added (8: `hour_counts`).
fn schema_7(dump: &str) -> String {
    without_migrator(dump)
        .lines()
        .filter(|l| !l.contains("hour_counts"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A SQLite dump without the `CREATE TABLE` texts: columns, types,
/// defaults, keys and indexes only (a column added by `ALTER TABLE` sits
/// elsewhere in the text but is the same column).
fn structure(dump: &str) -> String {
    without_migrator(dump)
        .lines()
        .filter(|l| !l.starts_with("table "))
        .map(|l| format!("{l}\n"))
        .collect()
}

async fn sqlite_exec(path: &Path, sql: &str) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut c = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    c.close().await.expect("close");
}

async fn pg_exec(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    c.close().await.expect("close");
}

/// The migrator's records: (version, success).
async fn applied(store_url: &str, pg: bool) -> Vec<(i64, bool)> {
    let sql = "SELECT version, success FROM _sqlx_migrations ORDER BY version";
    if pg {
        let mut c = sqlx::PgConnection::connect(store_url)
            .await
            .expect("connect");
        sqlx::query(sql)
            .fetch_all(&mut c)
            .await
            .expect("applied")
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect()
    } else {
        let mut c = sqlx::SqliteConnection::connect(store_url)
            .await
            .expect("connect");
        sqlx::query(sql)
            .fetch_all(&mut c)
            .await
            .expect("applied")
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect()
    }
}

/// What `schema_version` says (what a coordinator before the migrator reads).
async fn legacy_version(url: &str, pg: bool) -> i64 {
    let sql = "SELECT MAX(version) FROM schema_version";
    if pg {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("version")
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("version")
    }
}

fn result(seq: u64, probe: &str, started: i64, ok: bool) -> ProbeResult {
    ProbeResult {
        agent_id: "a1".into(),
        seq,
        probe_id: probe.into(),
        region: "eu-west".into(),
        started_unix_ms: started,
        duration_us: 700,
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
            total_us: 700,
            ..Default::default()
        }),
        steps: vec![],
        detail: String::new(),
        assignment_version: 5,
    }
}

/// The seeded rows read back through the store, then writes of every kind.
async fn check_seeded_and_write(s: &Store) {
    let agents = s.agents().await.expect("agents");
    assert_eq!(agents.len(), 1);
    let a = &agents[0];
    assert_eq!(
        (
            a.info.agent_id.as_str(),
            a.info.region.as_str(),
            a.info.version.as_str()
        ),
        ("a1", "eu-west", "0.1.0")
    );
    assert_eq!(a.info.labels.get("zone").map(String::as_str), Some("b"));
    assert_eq!(
        (a.acked_seq, a.stored_total, a.assignment_version),
        (3, 3, 4)
    );
    assert_eq!((a.health.clock_skew_ms, a.health.spool_depth), (-15, 2));
    assert_eq!(
        (a.first_seen_ms, a.last_seen_ms, a.connected),
        (1000, 2000, true)
    );

    let latest = s.latest_per_probe_region().await.expect("latest");
    let seen: Vec<(&str, u64, &str)> = latest
        .iter()
        .map(|r| (r.probe_id.as_str(), r.seq, r.detail.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("j", 3, "escalation in a step"), ("p", 2, "timed out")]
    );
    assert_eq!(latest[0].steps.len(), 1);
    assert_eq!(
        latest[0].steps[0].failure_class,
        FailureClass::Escalation as i32
    );
    assert_eq!(s.highest_stored_seq("a1").await.expect("highest"), 3);
    assert_eq!(s.acked_seq("a1").await.expect("acked"), 3);
    // The stored catalog text keeps its version.
    assert_eq!(s.catalog_version("canonical catalog").await.expect("v"), 4);
    let alerts = s.alert_rows().await.expect("alerts");
    assert_eq!(
        alerts,
        [AlertRow {
            slo: "slo-a".into(),
            severity: "page".into(),
            rule: "1h/5m".into(),
            burn_long: 20.5,
            burn_short: 31.0,
            factor: 14.4,
            started_ms: 100_000,
            last_sent_ms: 110_000,
        }]
    );
    // Minute counts: stored, or backfilled from the raw results.
    let p = ["p".to_string()];
    let j = ["j".to_string()];
    assert_eq!(
        s.minute_counts_since(&p, &[0], None).await.expect("p"),
        [(1, 2)]
    );
    assert_eq!(
        s.minute_counts_since(&j, &[0], None).await.expect("j"),
        [(0, 1)]
    );
    // The escalation in result 3's step: stored, or backfilled.
    assert_eq!(
        s.last_escalation_received_since(&j, 0)
            .await
            .expect("escalation"),
        Some(121_000)
    );

    // Writes: new results go in, resends of old ones stay duplicates.
    let stats = s
        .insert_batch_acked(
            "a1",
            &[result(4, "p", 180_000, true), result(1, "p", 60_000, true)],
            Some(4),
        )
        .await
        .expect("insert");
    assert_eq!((stats.inserted, stats.duplicates), (1, 1));
    assert_eq!(s.acked_seq("a1").await.expect("acked"), 4);
    assert_eq!(
        s.minute_counts_since(&p, &[0], None).await.expect("p"),
        [(2, 3)]
    );
    s.upsert_agent(&authpulse_coordinator::store::AgentInfo {
        agent_id: "a2".into(),
        region: "us-east".into(),
        ..Default::default()
    })
    .await
    .expect("agent");
    s.save_alert_row(&AlertRow {
        slo: "slo-b".into(),
        severity: "ticket".into(),
        rule: "1d/2h".into(),
        burn_long: 3.5,
        burn_short: 4.0,
        factor: 3.0,
        started_ms: 200_000,
        last_sent_ms: 200_000,
    })
    .await
    .expect("alert");
    s.put_silence(&Silence {
        slo: "slo-b".into(),
        severity: "ticket".into(),
        until_ms: Some(i64::MAX),
        created_by: "bob".into(),
        reason: "maintenance".into(),
        created_ms: 200_000,
    })
    .await
    .expect("silence");
    let incident = Incident {
        id: "inc2".into(),
        slo: "slo-b".into(),
        name: "Tokens are slow".into(),
        status: "investigating".into(),
        impact: "minor".into(),
        severities: vec!["ticket".into()],
        components: vec![],
        started_ms: 200_000,
        created_ms: 200_000,
        updated_ms: 200_000,
        monitoring_ms: None,
        resolved_ms: None,
        updates: vec![],
    };
    let update = IncidentUpdate {
        id: "upd2".into(),
        incident_id: "inc2".into(),
        status: "investigating".into(),
        body: "Tokens are slow.".into(),
        created_ms: 200_000,
        affected: vec![],
    };
    s.open_incident(&incident, &update).await.expect("incident");
    assert!(s.incident("inc2").await.expect("read").is_some());
    assert_eq!(s.statuspage_id().await.expect("id").len(), 12);
}

/// What only databases with the status page's tables had.
async fn check_status_rows(s: &Store) {
    assert_eq!(s.statuspage_id().await.expect("id"), "abcdef123456");
    let components = s.status_components().await.expect("components");
    assert_eq!(components.len(), 1);
    assert_eq!(components[0].status, "major_outage");
    let open = s.open_incidents().await.expect("incidents");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].components[0].name, "Login");
    assert_eq!(open[0].updates.len(), 1);
    assert_eq!(open[0].updates[0].affected[0].new_status, "major_outage");
    let silences = s.silences(0).await.expect("silences");
    assert_eq!(silences.len(), 1);
    assert_eq!(
        (silences[0].created_by.as_str(), silences[0].until_ms),
        ("alice", None)
    );
    let esc = s.escalation_alert_rows().await.expect("escalation alerts");
    assert_eq!(esc.len(), 1);
    assert_eq!(
        (esc[0].slo.as_str(), esc[0].last_seen_ms),
        ("slo-e", 121_000)
    );
}

/// A fresh SQLite store's schema dump (and its directory).
async fn fresh_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).await.expect("open");
    s.close().await;
    let dump = sqlite_dump(&dir.path().join("authpulse.db")).await;
    (dir, dump)
}

#[tokio::test]
async fn sqlite_new_database_gets_schema_7_as_before() {
    let (_fresh, fresh) = fresh_sqlite().await;
    let old = tempfile::tempdir().expect("tempdir");
    let path = old.path().join("authpulse.db");
    sqlite_exec(&path, SQLITE_V7).await;
    // Text, columns, types, defaults, keys, indexes: all the same.
    assert_eq!(schema_7(&fresh), sqlite_dump(&path).await);
    assert!(fresh.contains("_sqlx_migrations"), "{fresh}");
}

/// Opens a SQLite database created by the code before the migrator at
/// `version`, checks it as the current code sees it, and reopens it.
async fn upgrade_sqlite(ddl: &str, version: i64, seed: &[&str], status_rows: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("authpulse.db");
    sqlite_exec(&path, ddl).await;
    let mut rows = seed.concat();
    rows.push_str(&format!(
        "INSERT INTO schema_version (version) VALUES ({version});"
    ));
    sqlite_exec(&path, &rows).await;
    let url = format!("sqlite://{}", path.display());

    let s = Store::open(dir.path())
        .await
        .expect("open the old database");
    if status_rows {
        check_status_rows(&s).await;
    }
    check_seeded_and_write(&s).await;
    s.close().await;
    assert_eq!(applied(&url, false).await, APPLIED);
    assert_eq!(legacy_version(&url, false).await, SCHEMA_VERSION);

    // Reopened: nothing runs again, everything is still there.
    let s = Store::open(dir.path()).await.expect("reopen");
    assert_eq!(s.highest_stored_seq("a1").await.expect("highest"), 4);
    assert_eq!(s.agents().await.expect("agents").len(), 2);
    s.close().await;
    assert_eq!(applied(&url, false).await, APPLIED);

    let (_fresh, fresh) = fresh_sqlite().await;
    assert_eq!(
        structure(&sqlite_dump(&path).await),
        structure(&fresh),
        "from version {version}"
    );
}

#[tokio::test]
async fn sqlite_version_7_database_opens_with_its_rows() {
    upgrade_sqlite(
        SQLITE_V7,
        7,
        &[SEED, SEED_MINUTES_V6, SEED_STATUS, SEED_ESCALATIONS],
        true,
    )
    .await;
}

#[tokio::test]
async fn sqlite_version_5_database_upgrades() {
    // Before the status page's tables existed: they are created.
    upgrade_sqlite(SQLITE_V5, 5, &[SEED, SEED_MINUTES_V5], false).await;
}

#[tokio::test]
async fn sqlite_version_3_database_upgrades() {
    // No minute tables yet: minute counts are backfilled from the results.
    upgrade_sqlite(SQLITE_V3, 3, &[SEED], false).await;
}

#[tokio::test]
async fn sqlite_newer_databases_are_refused() {
    // A migration this code doesn't know.
    let dir = tempfile::tempdir().expect("tempdir");
    Store::open(dir.path()).await.expect("open").close().await;
    sqlite_exec(
        &dir.path().join("authpulse.db"),
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99, 'future', TRUE, X'00', 0)",
    )
    .await;
    match Store::open(dir.path()).await {
        Err(StoreError::SchemaTooNew {
            found: 99,
            supported,
        }) => {
            assert_eq!(supported, SCHEMA_VERSION)
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    // A `schema_version` above what the code before the migrator wrote.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("authpulse.db");
    sqlite_exec(&path, SQLITE_V7).await;
    sqlite_exec(&path, "INSERT INTO schema_version (version) VALUES (8)").await;
    assert!(matches!(
        Store::open(dir.path()).await,
        Err(StoreError::SchemaTooNew { found: 8, .. })
    ));
}

#[tokio::test]
async fn postgres_new_database_gets_schema_7_as_before_and_old_ones_upgrade() {
    let fresh_db = PgDatabase::create().await;
    let s = Store::connect(&Database::parse(&fresh_db.url).expect("url"))
        .await
        .expect("fresh");
    s.close().await;
    let fresh = pg_dump(&fresh_db.url).await;
    assert!(fresh.contains("_sqlx_migrations"), "{fresh}");
    assert_eq!(applied(&fresh_db.url, true).await, APPLIED);
    assert_eq!(legacy_version(&fresh_db.url, true).await, SCHEMA_VERSION);

    let old = PgDatabase::create().await;
    pg_exec(&old.url, POSTGRES_V7).await;
    assert_eq!(schema_7(&fresh), pg_dump(&old.url).await);

    for (ddl, version, seed) in [
        (
            POSTGRES_V7,
            7,
            [SEED, SEED_MINUTES_V6, SEED_STATUS, SEED_ESCALATIONS].concat(),
        ),
        (
            POSTGRES_V6,
            6,
            [SEED, SEED_MINUTES_V6, SEED_STATUS].concat(),
        ),
    ] {
        let db = PgDatabase::create().await;
        pg_exec(&db.url, ddl).await;
        pg_exec(
            &db.url,
            &format!("{seed} INSERT INTO schema_version (version) VALUES ({version});"),
        )
        .await;
        // Two replicas starting at once: one bridges, the other waits for
        // the migration lock and finds the work done.
        let database = Database::parse(&db.url).expect("url");
        let (a, b) = tokio::join!(Store::connect(&database), Store::connect(&database));
        let (a, b) = (a.expect("replica a"), b.expect("replica b"));
        check_status_rows(&a).await;
        check_seeded_and_write(&a).await;
        assert_eq!(b.highest_stored_seq("a1").await.expect("highest"), 4);
        a.close().await;
        b.close().await;
        assert_eq!(applied(&db.url, true).await, APPLIED);
        assert_eq!(legacy_version(&db.url, true).await, SCHEMA_VERSION);
        assert_eq!(
            without_migrator(&pg_dump(&db.url).await),
            without_migrator(&fresh),
            "from version {version}"
        );
        let s = Store::connect(&database).await.expect("reopen");
        assert_eq!(s.agents().await.expect("agents").len(), 2);
        s.close().await;
        assert_eq!(applied(&db.url, true).await, APPLIED);
    }
}
