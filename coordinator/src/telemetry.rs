//! The coordinator's `/metrics` bookkeeping that belongs to no one module:
//! `authpulse_build_info`, and the HELP text of the counters and gauges that
//! modules bump in passing (gate decisions, catalog reloads, API refusals,
//! the SLO evaluation cache, the rollup refresh). `promtool check metrics`
//! flags a family without HELP, and the exporter only prints HELP that was
//! registered, so every family is described here or next to the code that
//! owns it (`slo`, `alerting`, `fleet`, `ingest`, `leadership`, `agent_tls`,
//! `audit`, `http_server`), once, when the coordinator starts.

/// Describes the families listed above and sets `authpulse_build_info`.
pub fn describe_metrics() {
    use authpulse_proto::build_info;
    metrics::describe_gauge!(build_info::METRIC, build_info::HELP);
    metrics::gauge!(
        build_info::METRIC,
        "version" => build_info::VERSION,
        "revision" => build_info::revision()
    )
    .set(1.0);
    metrics::describe_counter!(
        "authpulse_coordinator_gate_decisions_total",
        "Gate decisions answered (and written to the audit log), by gate and decision (pass, fail)"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_catalog_reloads_total",
        "Catalog reloads by result: applied, or invalid (refused; the previous catalog stays)"
    );
    metrics::describe_gauge!(
        "authpulse_coordinator_catalog_version",
        "Version number of the catalog this replica serves (from the store; equal on every replica serving the same catalog)"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_api_refused_total",
        "HTTP API requests refused, by reason (bad_token, scope, or an open-API guard reason)"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_oidc_jwks_errors_total",
        "Failed fetches of the API's OIDC signing keys (the last good key set stays in use)"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_slo_evaluations_total",
        "SLO evaluations served, by whether a recent one was reused (cached true/false)"
    );
    metrics::describe_counter!(
        "authpulse_coordinator_rollup_refresh_rows_total",
        "Minute rows other replicas wrote that this replica read into its rollup"
    );
}
