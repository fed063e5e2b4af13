-- Schema 7 for SQLite: the whole schema as the coordinator created it
-- before migrations were files (versions 1 to 6 predate this folder; see
-- coordinator/migrations/README.md). Every statement is IF NOT EXISTS: the
-- bridge from those older databases runs this file over them.

-- The schema version as coordinators before the migrator read it; kept at
-- the newest version so an older binary refuses a newer database.
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

-- Small key/value facts about the installation (the catalog version and
-- text, the status page id, firing escalation alerts).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);

-- Raw results, idempotent on (agent_id, seq).
CREATE TABLE IF NOT EXISTS results (
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
    );

-- SLO counts read (probe, time range) and only these columns, so the
-- index covers the query and the table itself is never touched.
CREATE INDEX IF NOT EXISTS results_probe_started
        ON results (probe_id, started_ms, outcome, total_us);

-- The hourly prune deletes by age in small chunks; without this each
-- chunk would scan the table.
CREATE INDEX IF NOT EXISTS results_started ON results (started_ms);

-- The newest result per (probe, region), maintained on insert, so the
-- status view doesn't scan all results on every request.
CREATE TABLE IF NOT EXISTS latest (
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        PRIMARY KEY (probe_id, region)
    );

-- Results that carried an escalation (the result's or a step's class), by
-- when the coordinator received them: gates block on an escalation
-- *received* within their window, so one that arrives late (an agent's
-- spool after an outage) still blocks, and this small table answers that
-- without scanning results by receive time.
CREATE TABLE IF NOT EXISTS escalations (
        agent_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        probe_id TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (agent_id, seq)
    );

CREATE INDEX IF NOT EXISTS escalations_probe_received ON escalations (probe_id, received_ms);

-- Agents: their hello, ack, health, assignment version and connection.
CREATE TABLE IF NOT EXISTS agents (
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
    );

-- Per-minute SLO aggregates: SLOs are evaluated from these and never by
-- rescanning raw results. `minute` is `started_ms` floored to the minute
-- (unix ms / 60000); `threshold_us` 0 is the availability row (good =
-- success), any other value a latency SLI's threshold (good = success and
-- `total_us <= threshold_us`). Rows cover newly inserted results only, so
-- resent duplicates never count twice. `updated_ms`: when the row last
-- changed, so replicas sharing a database pick up each other's writes.
CREATE TABLE IF NOT EXISTS minute_counts (
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        minute INTEGER NOT NULL,
        threshold_us INTEGER NOT NULL,
        good INTEGER NOT NULL,
        total INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (probe_id, minute, threshold_us, region)
    ) WITHOUT ROWID;

-- The latency thresholds `minute_counts` is maintained for, so a restart
-- knows which ones are complete and which need a backfill.
CREATE TABLE IF NOT EXISTS minute_thresholds (
        probe_id TEXT NOT NULL,
        threshold_us INTEGER NOT NULL,
        PRIMARY KEY (probe_id, threshold_us)
    ) WITHOUT ROWID;

-- Latency sketches per probe, region and minute: encoded latency sketches
-- of the runs' total time, merged on every batch; percentiles over any
-- window merge the minutes.
CREATE TABLE IF NOT EXISTS minute_sketches (
        probe_id TEXT NOT NULL,
        region TEXT NOT NULL,
        minute INTEGER NOT NULL,
        sketch BLOB NOT NULL,
        PRIMARY KEY (probe_id, minute, region)
    ) WITHOUT ROWID;

-- The firing burn-rate alerts, so a restart neither pages again nor
-- forgets to resolve.
CREATE TABLE IF NOT EXISTS alerts (
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        rule TEXT NOT NULL,
        burn_long REAL NOT NULL,
        burn_short REAL NOT NULL,
        factor REAL NOT NULL,
        started_ms INTEGER NOT NULL,
        last_sent_ms INTEGER NOT NULL,
        PRIMARY KEY (slo, severity)
    );

-- Silences and acknowledgements of alerts (admin actions): while one
-- holds, fire and re-send notifications for that SLO and severity are held
-- back (resolves still go out). A silence ends at `until_ms`; an
-- acknowledgement (`until_ms` NULL) ends when the alert resolves.
CREATE TABLE IF NOT EXISTS alert_silences (
        slo TEXT NOT NULL,
        severity TEXT NOT NULL,
        kind TEXT NOT NULL,
        until_ms INTEGER,
        created_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (slo, severity, kind)
    ) WITHOUT ROWID;

-- The status page's component statuses: the last status shown per
-- component, so a component without trustworthy data keeps it and
-- `updated_at` is when it last changed.
CREATE TABLE IF NOT EXISTS status_components (
        id TEXT PRIMARY KEY NOT NULL,
        status TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );

-- Incidents opened and resolved from alerts; at most one open
-- (unresolved) incident per SLO, enforced by `incidents_open_slo`.
CREATE TABLE IF NOT EXISTS incidents (
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
    );

CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_slo ON incidents (slo) WHERE resolved_ms IS NULL;

CREATE INDEX IF NOT EXISTS incidents_created ON incidents (created_ms);

-- The updates of each incident, the entries of `/history.atom` (ordered
-- by `created_ms`, then SQLite's implicit `rowid`).
CREATE TABLE IF NOT EXISTS incident_updates (
        id TEXT PRIMARY KEY NOT NULL,
        incident_id TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        affected_json TEXT NOT NULL
    );

CREATE INDEX IF NOT EXISTS incident_updates_incident ON incident_updates (incident_id, created_ms);
