//! `authpulse`: the operator CLI. `validate` checks catalog files, `docs`
//! renders them as a Markdown runbook, `probe`
//! runs one probe once on this machine, `standalone` runs a coordinator and
//! an in-process agent in one process (the embedded default).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use authpulse_agent::probes::ProbeOutcome;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "authpulse",
    version,
    about = "Synthetic probes for identity systems: operator CLI."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a development CA and the mTLS certificates for the coordinator and agents.
    #[command(subcommand, after_help = CERTS_EXAMPLE)]
    Certs(CertsCommand),
    /// Check catalog files; prints every problem as FILE:LINE: `id`: path: message.
    #[command(
        after_help = "Example:\n  authpulse validate deploy/examples/quickstart.yaml catalogs/*.yaml\n\nExit status: 0 valid, 1 invalid."
    )]
    Validate {
        /// Catalog files (YAML or TOML); ids must be unique across them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Render catalog files as a Markdown runbook for the people on call.
    ///
    /// Every probe with its target and the SLOs and gates that read it, every SLO with its
    /// burn-rate alert table, gates, components and the secrets agents need (names only,
    /// never values).
    #[command(after_help = DOCS_EXAMPLE)]
    Docs {
        /// Catalog files (YAML or TOML), as for `validate`.
        #[arg(long, required = true, value_name = "FILE")]
        catalog: Vec<PathBuf>,
        /// Write the Markdown here instead of stdout.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Convert OpenSLO v1 `kind: SLO` documents (indicators with `metricSource.type: authpulse`)
    /// into catalog `slos:` entries, printed to stdout.
    #[command(
        name = "import-openslo",
        after_help = "Example:\n  authpulse import-openslo slos.openslo.yaml --catalog catalog.yaml > slos.yaml\n\n\
        With --catalog the result is validated against the probes it names.\nExit status: 0 converted, 1 a document can't be converted or the result is invalid."
    )]
    ImportOpenslo {
        /// OpenSLO file (multi-document YAML).
        file: PathBuf,
        /// Catalog files with the probes the SLOs name, to validate the result.
        #[arg(long)]
        catalog: Vec<PathBuf>,
    },
    /// Run one probe once, here, and print its outcome.
    #[command(
        after_help = "Example:\n  authpulse probe --catalog deploy/examples/quickstart.yaml google-discovery --json\n\n\
        Secrets are read from AUTHPULSE_SECRET_<NAME> or --secrets-dir/<name>.\nExit status: 0 success, 1 failure or invalid catalog."
    )]
    Probe {
        #[arg(long, required = true)]
        catalog: Vec<PathBuf>,
        /// Probe id.
        id: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "AUTHPULSE_SECRETS_DIR")]
        secrets_dir: Option<PathBuf>,
        /// Save every page of an interactive login (HTML, the form chosen, the
        /// fields sent with secrets as `<secret NAME>`, the answer's status) in DIR.
        #[arg(long, value_name = "DIR")]
        save_pages: Option<PathBuf>,
    },
    /// Coordinator + one in-process agent with SQLite under --data-dir.
    #[command(
        after_help = "Example:\n  authpulse standalone --catalog deploy/examples/quickstart.yaml\n  curl -s http://127.0.0.1:8080/api/v1/slos"
    )]
    Standalone {
        #[arg(long, required = true)]
        catalog: Vec<PathBuf>,
        #[arg(long, default_value = "./authpulse-data")]
        data_dir: PathBuf,
        /// HTTP API, dashboard, /metrics.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Region of the built-in agent; probes limited to other regions don't run.
        #[arg(long, default_value = "local")]
        region: String,
        #[arg(long, env = "AUTHPULSE_SECRETS_DIR")]
        secrets_dir: Option<PathBuf>,
        /// Serve SLOs, gates and admin endpoints without API tokens on a
        /// non-loopback --listen address (refused otherwise).
        #[arg(long)]
        insecure_open_api: bool,
    },
    /// Ask a coordinator whether deploy gate ID passes; prints the decision and reasons.
    #[command(after_help = GATE_EXAMPLE)]
    Gate {
        /// Gate id (from the catalog's `gates:`).
        id: String,
        /// Coordinator HTTP API base URL.
        #[arg(long, env = "AUTHPULSE_COORDINATOR_URL", value_name = "URL")]
        coordinator: String,
        /// Keep asking until the gate passes or this much time has passed
        /// (e.g. 10m): a pipeline step that waits for IAM to recover.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
        /// How often --wait asks.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
        poll_interval: std::time::Duration,
        /// Bearer token with scope `gate` (sent as `Authorization: Bearer …`).
        #[arg(long, env = "AUTHPULSE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the coordinator's JSON answer instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

const DOCS_EXAMPLE: &str = "\
Example:
  authpulse docs --catalog catalog.yaml --output docs/RUNBOOK.md
  authpulse docs --catalog probes.yaml --catalog slos.yaml > RUNBOOK.md

The same catalog gives the same bytes (no timestamps), so the runbook can live
in git next to the catalog. Exit status: 0 written, 1 invalid catalog (the
problems are printed as by `authpulse validate`) or the output can't be written.";

const GATE_EXAMPLE: &str = "\
Example:
  authpulse gate deploy --coordinator https://authpulse.internal:8080 --wait 10m
  AUTHPULSE_TOKEN=$(cat gate.token) authpulse gate deploy --coordinator $URL

Exit status: 0 the gate passes, 1 it fails (the reasons are printed),
2 unknown: coordinator unreachable, unknown gate (404), token refused
(401/403), or an answer that is not a gate decision. With --wait, a failing
or unreachable gate is asked again every --poll-interval until it passes or
the time is up; the exit status is then that of the last answer.";

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every entry's hash and the chain (and, with a key, every
    /// entry's MAC); names the first bad entry.
    #[command(
        after_help = "Example:\n  authpulse audit verify /var/lib/authpulse/audit.jsonl --key-file /etc/authpulse/audit.key\n\n\
        Without a key only the hash chain is checked: that finds accidental damage, but anyone\n\
        who can write the file can rewrite it and recompute the hashes. With the coordinator's\n\
        key (audit.hmac_key_file / AUTHPULSE_AUDIT_KEY) every MAC is checked too, so a rewrite\n\
        without the key fails. Removing entries from the end is found by neither: keep the head.\n\n\
        Exit status: 0 intact (prints \"ok: N entries\"), 1 an entry was edited, removed,\n\
        reordered or truncated, or its MAC is wrong (prints its line number and seq), 2 the\n\
        file or the key can't be read."
    )]
    Verify {
        /// The audit log (JSON lines), e.g. <data_dir>/audit.jsonl.
        file: PathBuf,
        /// A file holding the HMAC key (as audit.hmac_key_file); repeat for
        /// a log written with more than one key.
        #[arg(long, value_name = "FILE")]
        key_file: Vec<PathBuf>,
        /// An environment variable holding the key, e.g. AUTHPULSE_AUDIT_KEY.
        #[arg(long, value_name = "VAR")]
        key_env: Option<String>,
    },
}

const CERTS_EXAMPLE: &str = "\
Example:
  authpulse certs init --out ./pki --san coordinator.internal
  authpulse certs agent --out ./pki --ca ./pki/ca.pem --ca-key ./pki/ca.key \\
      --agent-id eu-west-1a --region eu-west

coordinator.yaml:  tls: { cert: pki/coordinator.pem, key: pki/coordinator.key, client_ca: pki/ca.pem }
agent.yaml:        coordinator: https://coordinator.internal:7070
                   tls: { cert: pki/eu-west-1a.pem, key: pki/eu-west-1a.key, ca: pki/ca.pem }

Agent certificates name the agent in a URI SAN
spiffe://authpulse/region/<region>/agent/<agent-id>; the coordinator serves an
agent only for that id and region. Key files are written with mode 0600.
The CA is for development and small fleets; keep ca.key offline.";

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a CA (ca.pem, ca.key) and a coordinator server certificate
    /// (coordinator.pem, coordinator.key) for localhost, 127.0.0.1 and every --san.
    #[command(
        after_help = "Example:\n  authpulse certs init --out ./pki --san coordinator.internal --san 10.0.0.5"
    )]
    Init {
        /// Directory for the files (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Extra DNS name or IP address for the coordinator certificate (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Lifetime of the coordinator certificate (the CA gets 10 years).
        #[arg(long, default_value_t = authpulse_coordinator::certs::LEAF_DAYS)]
        days: u32,
        /// Replace existing files (a new CA invalidates every certificate the old one signed).
        #[arg(long)]
        force: bool,
    },
    /// Create an agent client certificate <agent-id>.pem / <agent-id>.key signed by the CA.
    #[command(
        after_help = "Example:\n  authpulse certs agent --out ./pki --ca ./pki/ca.pem --ca-key ./pki/ca.key --agent-id eu-west-1a --region eu-west --days 90"
    )]
    Agent {
        /// Directory for the files (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The CA certificate (`certs init` wrote it as ca.pem).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The CA private key (ca.key).
        #[arg(long, value_name = "FILE")]
        ca_key: PathBuf,
        /// The agent's `agent_id` ([a-z0-9-]).
        #[arg(long)]
        agent_id: String,
        /// The agent's `region` ([a-z0-9-]).
        #[arg(long)]
        region: String,
        /// Lifetime of the certificate.
        #[arg(long, default_value_t = authpulse_coordinator::certs::LEAF_DAYS)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

fn certs(command: CertsCommand) -> anyhow::Result<ExitCode> {
    use authpulse_coordinator::certs;
    match command {
        CertsCommand::Init {
            out,
            san,
            days,
            force,
        } => {
            let w = certs::init(&out, &san, days, force)?;
            println!(
                "wrote {} and {} (CA)",
                w.ca_cert.display(),
                w.ca_key.display()
            );
            println!(
                "wrote {} and {} (coordinator, valid for {})",
                w.server_cert.display(),
                w.server_key.display(),
                w.server_names.join(", ")
            );
            println!(
                "coordinator config:\n  tls: {{ cert: {}, key: {}, client_ca: {} }}",
                w.server_cert.display(),
                w.server_key.display(),
                w.ca_cert.display()
            );
        }
        CertsCommand::Agent {
            out,
            ca,
            ca_key,
            agent_id,
            region,
            days,
            force,
        } => {
            let identity = authpulse_proto::identity::AgentIdentity::new(agent_id, region)?;
            let (cert, key) = certs::agent(&out, &ca, &ca_key, &identity, days, force)?;
            println!(
                "wrote {} and {} ({}, {})",
                cert.display(),
                key.display(),
                identity.uri(),
                identity
            );
            println!(
                "agent config:\n  agent_id: {}\n  region: {}\n  tls: {{ cert: {}, key: {}, ca: {} }}",
                identity.agent_id,
                identity.region,
                cert.display(),
                key.display(),
                ca.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authpulse: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Validate { files } => Ok(validate(&files)),
            Command::Docs { catalog, output } => docs(&catalog, output.as_deref()),
            Command::ImportOpenslo { file, catalog } => import_openslo(&file, &catalog),
            Command::Probe {
                catalog,
                id,
                json,
                secrets_dir,
                save_pages,
            } => probe(&catalog, &id, json, secrets_dir, save_pages).await,
            Command::Certs(command) => certs(command),
            Command::Standalone {
                catalog,
                data_dir,
                listen,
                region,
                secrets_dir,
                insecure_open_api,
            } => {
                standalone(
                    catalog,
                    data_dir,
                    listen,
                    region,
                    secrets_dir,
                    insecure_open_api,
                )
                .await
            }
            Command::Gate {
                id,
                coordinator,
                wait,
                poll_interval,
                token,
                json,
            } => Ok(gate::run(
                &id,
                &coordinator,
                wait,
                poll_interval,
                token.as_deref(),
                json,
            )
            .await),
            Command::Audit(AuditCommand::Verify {
                file,
                key_file,
                key_env,
            }) => Ok(audit_verify(&file, &key_file, key_env.as_deref())),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authpulse: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn audit_verify(file: &std::path::Path, key_files: &[PathBuf], key_env: Option<&str>) -> ExitCode {
    use authpulse_coordinator::audit::{AuditKey, VerifyError, verify_with};
    let mut keys = Vec::new();
    for f in key_files {
        match AuditKey::from_file(f) {
            Ok(k) => keys.push(k),
            Err(e) => {
                eprintln!("authpulse: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(var) = key_env {
        match AuditKey::from_env(var) {
            Ok(Some(k)) => keys.push(k),
            Ok(None) => {
                eprintln!("authpulse: --key-env {var}: the variable is not set");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("authpulse: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match verify_with(file, &keys) {
        Ok(v) if keys.is_empty() => {
            println!("ok: {} entries (head {})", v.entries, v.head);
            println!(
                "hash chain only (no key given): this finds accidental damage, not a rewrite by \
                 someone who recomputed the hashes{}",
                if v.macs > 0 {
                    format!(
                        "; {} entries carry MACs: pass --key-file to check them",
                        v.macs
                    )
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!(
                "ok: {} entries (head {}), MACs checked with the key",
                v.entries, v.head
            );
            if let Some(first) = v.first_mac_seq.filter(|s| *s > 1) {
                println!(
                    "entries 1 to {} were written without a key; the MAC of seq {first} vouches \
                     for them through the hash chain",
                    first - 1
                );
            }
            ExitCode::SUCCESS
        }
        Err(VerifyError::Bad(bad)) => {
            eprintln!("{}: {bad}", file.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("authpulse: {e}");
            ExitCode::from(2)
        }
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    match authpulse_proto::catalog::load_files(files) {
        Ok(c) => {
            println!(
                "ok: {} probe(s), {} SLO(s), {} gate(s) in {} file(s)",
                c.probes.len(),
                c.slos.len(),
                c.gates.len(),
                files.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_catalog_errors(&errors);
            ExitCode::from(1)
        }
    }
}

/// One problem per line (`FILE:LINE: `id`: path: message`), then the count.
fn print_catalog_errors(errors: &authpulse_proto::catalog::CatalogErrors) {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    eprintln!("{} problem(s) found", errors.0.len());
}

fn docs(files: &[PathBuf], output: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let catalog = match authpulse_proto::catalog::load_files(files) {
        Ok(c) => c,
        Err(errors) => {
            print_catalog_errors(&errors);
            return Ok(ExitCode::from(1));
        }
    };
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let markdown = authpulse_coordinator::catalog_docs::render(&catalog, &sources);
    match output {
        Some(path) => {
            std::fs::write(path, &markdown)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote {} ({} probe(s), {} SLO(s), {} gate(s))",
                path.display(),
                catalog.probes.len(),
                catalog.slos.len(),
                catalog.gates.len()
            );
        }
        None => print!("{markdown}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn import_openslo(file: &std::path::Path, catalog: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let slos = match authpulse_coordinator::openslo::convert(&text) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("{}: {e}", file.display());
            }
            return Ok(ExitCode::from(1));
        }
    };
    let yaml = authpulse_coordinator::openslo::to_yaml(&slos, &file.display().to_string());
    if !catalog.is_empty() {
        // Validate the SLOs next to the probes they name, as one catalog.
        let dir = tempfile::tempdir().context("temp dir")?;
        let out = dir.path().join("imported-slos.yaml");
        std::fs::write(&out, &yaml).context("write temp file")?;
        let mut files = catalog.to_vec();
        files.push(out);
        if let Err(e) = authpulse_proto::catalog::load_files(&files) {
            eprintln!("the converted SLOs do not validate against the catalog:\n{e}");
            return Ok(ExitCode::from(1));
        }
    }
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}

async fn probe(
    catalog: &[PathBuf],
    id: &str,
    json: bool,
    secrets_dir: Option<PathBuf>,
    save_pages: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // AUTHPULSE_LOG, as for the other binaries (JSON lines on stderr).
    authpulse_agent::process::init_logging();
    let catalog = authpulse_proto::catalog::load_files(catalog)
        .map_err(|e| anyhow::anyhow!("invalid catalog:\n{e}"))?;
    let Some(def) = catalog.probe(id) else {
        let ids: Vec<&str> = catalog.probes.iter().map(|p| p.id.as_str()).collect();
        anyhow::bail!("no probe `{id}` in the catalog (have: {})", ids.join(", "));
    };
    let net = authpulse_agent::http::NetContext::new().context("network setup")?;
    let secrets = authpulse_agent::secrets::SecretStore::new(secrets_dir);
    let outcome = authpulse_agent::probes::run_saving_pages(
        def,
        &net,
        &secrets,
        &Default::default(),
        save_pages,
    )
    .await;
    if json {
        println!("{}", outcome_json(id, def.kind(), &outcome));
    } else {
        print_outcome(id, def.kind(), &outcome);
    }
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn ms(d: Option<std::time::Duration>) -> serde_json::Value {
    d.map(|d| serde_json::json!((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0))
        .unwrap_or(serde_json::Value::Null)
}

fn timings_json(t: &authpulse_agent::http::Timings) -> serde_json::Value {
    serde_json::json!({
        "dns_ms": ms(t.dns), "connect_ms": ms(t.connect), "tls_ms": ms(t.tls),
        "ttfb_ms": ms(t.ttfb), "total_ms": ms(Some(t.total)),
    })
}

fn outcome_json(id: &str, kind: &str, o: &ProbeOutcome) -> serde_json::Value {
    let class = |f: &Option<authpulse_agent::probes::Failure>| {
        f.as_ref().map(|f| authpulse_agent::class_name(f.class))
    };
    serde_json::json!({
        "probe_id": id,
        "kind": kind,
        "outcome": if o.success() { "success" } else { "failure" },
        "failure_class": class(&o.failure),
        "detail": o.detail,
        "timings": timings_json(&o.timings),
        "steps": o.steps.iter().map(|s| serde_json::json!({
            "name": s.name, "kind": s.kind,
            "outcome": if s.failure.is_none() { "success" } else { "failure" },
            "failure_class": class(&s.failure),
            "detail": s.failure.as_ref().map(|f| f.message.clone()).unwrap_or_else(|| s.detail.clone()),
            "timings": timings_json(&s.timings),
        })).collect::<Vec<_>>(),
    })
}

fn print_outcome(id: &str, kind: &str, o: &ProbeOutcome) {
    let fmt = |d: Option<std::time::Duration>| match d {
        Some(d) => format!("{:.1}ms", d.as_secs_f64() * 1000.0),
        None => "-".into(),
    };
    match &o.failure {
        None => println!("{id} ({kind}): ok"),
        Some(f) => println!(
            "{id} ({kind}): FAILED [{}] {}",
            authpulse_agent::class_name(f.class),
            f.message
        ),
    }
    let t = &o.timings;
    println!(
        "  dns {}  connect {}  tls {}  ttfb {}  total {}",
        fmt(t.dns),
        fmt(t.connect),
        fmt(t.tls),
        fmt(t.ttfb),
        fmt(Some(t.total))
    );
    for s in &o.steps {
        match &s.failure {
            None => println!("  step {}: ok — {}", s.name, s.detail),
            Some(f) => println!(
                "  step {}: FAILED [{}] {}",
                s.name,
                authpulse_agent::class_name(f.class),
                f.message
            ),
        }
    }
}

async fn standalone(
    catalog: Vec<PathBuf>,
    data_dir: PathBuf,
    listen: SocketAddr,
    region: String,
    secrets_dir: Option<PathBuf>,
    insecure_open_api: bool,
) -> anyhow::Result<ExitCode> {
    authpulse_agent::process::init_logging();
    let agent_data_dir = data_dir.join("agent");
    let config = authpulse_coordinator::config::CoordinatorConfig {
        http_listen: listen,
        data_dir,
        catalog,
        api: authpulse_coordinator::api_access::ApiConfig {
            insecure_open: insecure_open_api,
            ..Default::default()
        },
        ..Default::default()
    };
    // The agent is in this process and reaches the coordinator over
    // in-memory connections: no gRPC port, so no other local process can
    // pose as the agent (or as anything else) to the coordinator.
    let (coordinator, connections) = authpulse_coordinator::start_in_process(config).await?;
    let agent_config = authpulse_agent::AgentConfig {
        agent_id: "standalone".into(),
        region,
        labels: Default::default(),
        coordinator: authpulse_agent::config::Coordinators::new(Vec::new()),
        tls: None,
        insecure: false,
        listen: None,
        data_dir: agent_data_dir,
        secrets_dir,
        max_concurrency: 64,
        spool_max_bytes: authpulse_agent::spool::DEFAULT_MAX_BYTES,
        in_process: Some(authpulse_agent::in_process::InProcessConnector::new(
            connections,
        )),
    };
    let agent =
        authpulse_agent::Agent::start(agent_config, authpulse_coordinator::metrics_handle())
            .await?;
    // Handlers first, then the announcement (a signal right after it must
    // find them in place).
    let mut stop = authpulse_agent::process::ShutdownSignal::install();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    println!("listening on http://{}", coordinator.http_addr());
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = hup.recv() => {
                if let Err(e) = coordinator.reload_catalog().await {
                    tracing::error!(errors = %e, "catalog reload refused; keeping the running catalog");
                }
            }
        }
    }
    agent.shutdown().await;
    coordinator.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `authpulse gate`: one question to the coordinator's gate endpoint (or
/// several with --wait), answered for a person and as an exit status.
mod gate {
    use std::process::ExitCode;
    use std::time::Duration;

    use serde_json::Value;

    /// What one request came back with.
    enum Answer {
        /// A decision: `pass` or `fail`, with the JSON it came in.
        Decision { pass: bool, body: Value },
        /// Anything else: unreachable, refused, not a decision. `permanent`
        /// answers (unknown gate, bad token) are not worth asking again.
        Unknown { why: String, permanent: bool },
    }

    impl Answer {
        fn code(&self) -> ExitCode {
            match self {
                Answer::Decision { pass: true, .. } => ExitCode::SUCCESS,
                Answer::Decision { pass: false, .. } => ExitCode::from(1),
                Answer::Unknown { .. } => ExitCode::from(2),
            }
        }
    }

    pub async fn run(
        id: &str,
        coordinator: &str,
        wait: Option<Duration>,
        poll: Duration,
        token: Option<&str>,
        json: bool,
    ) -> ExitCode {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("authpulse-cli/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("authpulse: cannot build an HTTP client: {e}");
                return ExitCode::from(2);
            }
        };
        let url = format!(
            "{}/api/v1/gates/{}",
            coordinator.trim_end_matches('/'),
            percent_encode(id)
        );
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut last_shown = String::new();
        loop {
            let answer = ask(&client, &url, token).await;
            let done = match &answer {
                Answer::Decision { pass: true, .. } => true,
                Answer::Unknown {
                    permanent: true, ..
                } => true,
                _ => deadline.is_none_or(|d| tokio::time::Instant::now() + poll > d),
            };
            if done {
                show(id, &answer, json);
                return answer.code();
            }
            // Waiting: say what blocks, once per change, on stderr.
            let now = summary(id, &answer);
            if now != last_shown {
                eprintln!("waiting: {now}");
                last_shown = now;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Path segments are catalog ids ([a-z0-9-]); anything else is escaped
    /// so it can't change the path.
    fn percent_encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    async fn ask(client: &reqwest::Client, url: &str, token: Option<&str>) -> Answer {
        let mut req = client.get(url).header("accept", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t.trim());
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Answer::Unknown {
                    why: format!("coordinator unreachable: {}", error_chain(&e)),
                    permanent: false,
                };
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let message = body
            .as_ref()
            .and_then(|b| b["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        match (status, body.as_ref().and_then(|b| b["decision"].as_str())) {
            (200, Some("pass")) => Answer::Decision {
                pass: true,
                body: body.unwrap_or_default(),
            },
            (200 | 503, Some("fail")) => Answer::Decision {
                pass: false,
                body: body.unwrap_or_default(),
            },
            (401 | 403, _) => Answer::Unknown {
                why: format!(
                    "HTTP {status}: token refused: {message} (pass --token or AUTHPULSE_TOKEN with scope `gate`)"
                ),
                permanent: true,
            },
            (404, _) => Answer::Unknown {
                why: format!("HTTP 404: {message}"),
                permanent: true,
            },
            _ => Answer::Unknown {
                why: format!("HTTP {status}: not a gate decision: {message}"),
                permanent: false,
            },
        }
    }

    fn error_chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    fn summary(id: &str, answer: &Answer) -> String {
        match answer {
            Answer::Decision { pass, body } => {
                let reasons: Vec<&str> = body["reasons"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                format!(
                    "gate {id}: {}{}",
                    if *pass { "PASS" } else { "FAIL" },
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", reasons.join("; "))
                    }
                )
            }
            Answer::Unknown { why, .. } => format!("gate {id}: UNKNOWN — {why}"),
        }
    }

    fn show(id: &str, answer: &Answer, json: bool) {
        match answer {
            Answer::Decision { body, .. } if json => println!("{body}"),
            Answer::Decision { pass, body } => {
                println!(
                    "gate {id}: {} (evaluated {})",
                    if *pass { "PASS" } else { "FAIL" },
                    body["evaluated_at"].as_str().unwrap_or("?")
                );
                for r in body["reasons"].as_array().into_iter().flatten() {
                    println!("  - {}", r.as_str().unwrap_or_default());
                }
                for n in body["notes"].as_array().into_iter().flatten() {
                    println!("  note: {}", n.as_str().unwrap_or_default());
                }
                for s in body["slos"].as_array().into_iter().flatten() {
                    let n = |k: &str| {
                        s[k].as_f64()
                            .map(|x| format!("{x:.4}"))
                            .unwrap_or_else(|| "-".into())
                    };
                    println!(
                        "  {}: {} sli {} budget remaining {} burn 1h {}",
                        s["id"].as_str().unwrap_or("?"),
                        s["state"].as_str().unwrap_or("?"),
                        n("sli_value"),
                        n("error_budget_remaining"),
                        s["burn_rates"]["1h"]
                            .as_f64()
                            .map(|x| format!("{x:.2}"))
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
            Answer::Unknown { why, .. } => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"gate": id, "decision": "unknown", "error": why})
                    );
                }
                eprintln!("gate {id}: UNKNOWN — {why}");
            }
        }
    }
}
