-- Schema 7 for PostgreSQL: the whole schema as the coordinator created it
-- before migrations were files (PostgreSQL support started at version 6;
-- see coordinator/migrations/README.md). Every statement is IF NOT EXISTS:
-- the bridge from those older databases runs this file over them.
--
-- The same tables as for SQLite, with 64-bit integers, doubles and bytea,
-- and byte-order text comparison (COLLATE "C") so ordering matches
-- SQLite's whatever the database's locale.

-- The schema version as coordinators before the migrator read it; kept at
-- the newest version so an older binary refuses a newer database.
CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);

-- Small key/value facts about the installation (the catalog version and
-- text, the status page id, firing escalation alerts).
CREATE TABLE IF NOT EXISTS meta (key TEXT COLLATE "C" PRIMARY KEY NOT NULL, value TEXT COLLATE "C" NOT NULL);

-- Raw results, idempotent on (agent_id, seq).
CREATE TABLE IF NOT EXISTS results (
        agent_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        probe_id TEXT COLLATE "C" NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        started_ms BIGINT NOT NULL,
        duration_us BIGINT NOT NULL,
        outcome BIGINT NOT NULL,
        failure_class BIGINT NOT NULL,
        dns_us BIGINT,
        connect_us BIGINT,
        tls_us BIGINT,
        ttfb_us BIGINT,
        total_us BIGINT NOT NULL,
        steps_json TEXT COLLATE "C" NOT NULL,
        detail TEXT COLLATE "C" NOT NULL,
        assignment_version BIGINT NOT NULL,
        received_ms BIGINT NOT NULL,
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
        probe_id TEXT COLLATE "C" NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        agent_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        started_ms BIGINT NOT NULL,
        PRIMARY KEY (probe_id, region)
    );

-- Results that carried an escalation (the result's or a step's class), by
-- when the coordinator received them: gates block on an escalation
-- *received* within their window, so one that arrives late (an agent's
-- spool after an outage) still blocks, and this small table answers that
-- without scanning results by receive time.
CREATE TABLE IF NOT EXISTS escalations (
        agent_id TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        probe_id TEXT COLLATE "C" NOT NULL,
        started_ms BIGINT NOT NULL,
        received_ms BIGINT NOT NULL,
        PRIMARY KEY (agent_id, seq)
    );

CREATE INDEX IF NOT EXISTS escalations_probe_received ON escalations (probe_id, received_ms);

-- Agents: their hello, ack, health, assignment version and connection.
CREATE TABLE IF NOT EXISTS agents (
        agent_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        labels_json TEXT COLLATE "C" NOT NULL,
        acked_seq BIGINT NOT NULL DEFAULT 0,
        first_seen_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL,
        connected BIGINT NOT NULL DEFAULT 0,
        assignment_version BIGINT NOT NULL DEFAULT 0,
        clock_skew_ms BIGINT NOT NULL DEFAULT 0,
        spool_depth BIGINT NOT NULL DEFAULT 0,
        spool_bytes BIGINT NOT NULL DEFAULT 0,
        dropped_total BIGINT NOT NULL DEFAULT 0,
        stored_total BIGINT NOT NULL DEFAULT 0
    );

-- Per-minute SLO aggregates: SLOs are evaluated from these and never by
-- rescanning raw results. `minute` is `started_ms` floored to the minute
-- (unix ms / 60000); `threshold_us` 0 is the availability row (good =
-- success), any other value a latency SLI's threshold (good = success and
-- `total_us <= threshold_us`). Rows cover newly inserted results only, so
-- resent duplicates never count twice. `updated_ms`: when the row last
-- changed, so replicas sharing a database pick up each other's writes.
CREATE TABLE IF NOT EXISTS minute_counts (
        probe_id TEXT COLLATE "C" NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        minute BIGINT NOT NULL,
        threshold_us BIGINT NOT NULL,
        good BIGINT NOT NULL,
        total BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (probe_id, minute, threshold_us, region)
    );

-- Other replicas' writes since the last refresh of the roll-ups (the
-- change feed a single SQLite process doesn't need).
CREATE INDEX IF NOT EXISTS minute_counts_updated ON minute_counts (updated_ms);

-- The latency thresholds `minute_counts` is maintained for, so a restart
-- knows which ones are complete and which need a backfill.
CREATE TABLE IF NOT EXISTS minute_thresholds (
        probe_id TEXT COLLATE "C" NOT NULL,
        threshold_us BIGINT NOT NULL,
        PRIMARY KEY (probe_id, threshold_us)
    );

-- Latency sketches per probe, region and minute: encoded latency sketches
-- of the runs' total time, merged on every batch; percentiles over any
-- window merge the minutes.
CREATE TABLE IF NOT EXISTS minute_sketches (
        probe_id TEXT COLLATE "C" NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        minute BIGINT NOT NULL,
        sketch BYTEA NOT NULL,
        PRIMARY KEY (probe_id, minute, region)
    );

-- The firing burn-rate alerts, so a restart neither pages again nor
-- forgets to resolve.
CREATE TABLE IF NOT EXISTS alerts (
        slo TEXT COLLATE "C" NOT NULL,
        severity TEXT COLLATE "C" NOT NULL,
        rule TEXT COLLATE "C" NOT NULL,
        burn_long DOUBLE PRECISION NOT NULL,
        burn_short DOUBLE PRECISION NOT NULL,
        factor DOUBLE PRECISION NOT NULL,
        started_ms BIGINT NOT NULL,
        last_sent_ms BIGINT NOT NULL,
        PRIMARY KEY (slo, severity)
    );

-- Silences and acknowledgements of alerts (admin actions): while one
-- holds, fire and re-send notifications for that SLO and severity are held
-- back (resolves still go out). A silence ends at `until_ms`; an
-- acknowledgement (`until_ms` NULL) ends when the alert resolves.
CREATE TABLE IF NOT EXISTS alert_silences (
        slo TEXT COLLATE "C" NOT NULL,
        severity TEXT COLLATE "C" NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        until_ms BIGINT,
        created_by TEXT COLLATE "C" NOT NULL,
        reason TEXT COLLATE "C" NOT NULL,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (slo, severity, kind)
    );

-- The status page's component statuses: the last status shown per
-- component, so a component without trustworthy data keeps it and
-- `updated_at` is when it last changed.
CREATE TABLE IF NOT EXISTS status_components (
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );

-- Incidents opened and resolved from alerts; at most one open
-- (unresolved) incident per SLO, enforced by `incidents_open_slo`.
CREATE TABLE IF NOT EXISTS incidents (
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        slo TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        impact TEXT COLLATE "C" NOT NULL,
        severities_json TEXT COLLATE "C" NOT NULL,
        components_json TEXT COLLATE "C" NOT NULL,
        started_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        monitoring_ms BIGINT,
        resolved_ms BIGINT
    );

CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_slo ON incidents (slo) WHERE resolved_ms IS NULL;

CREATE INDEX IF NOT EXISTS incidents_created ON incidents (created_ms);

-- The updates of each incident, the entries of `/history.atom` (ordered
-- by `created_ms`, then `rowid`: what SQLite has implicitly).
CREATE TABLE IF NOT EXISTS incident_updates (
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        incident_id TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        body TEXT COLLATE "C" NOT NULL,
        created_ms BIGINT NOT NULL,
        affected_json TEXT COLLATE "C" NOT NULL,
        rowid BIGSERIAL
    );

CREATE INDEX IF NOT EXISTS incident_updates_incident ON incident_updates (incident_id, created_ms);
