//! `authpulse`: the operator CLI. `validate` checks catalog files, `docs`
//! renders them as a Markdown runbook, `probe`
//! runs one probe once on this machine, `standalone` runs a coordinator and
//! an in-process agent in one process (the embedded default).
mod audit;
mod catalog;
mod certs;
mod gate;
mod health;
mod probe;
mod shell;
mod standalone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Log lines of `probe` and `standalone`: text on a terminal and JSON
    /// otherwise (auto), or always one of them.
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        env = "AUTHPULSE_LOG_FORMAT",
        value_parser = authpulse_process::log_format_parser(),
    )]
    log_format: Option<authpulse_process::LogFormat>,
}

/// `--log-format` as given, for the commands that log.
static LOG_FORMAT: std::sync::OnceLock<authpulse_process::LogFormat> = std::sync::OnceLock::new();

/// Installs logging with `--log-format` (or `AUTHPULSE_LOG_FORMAT`).
pub(crate) fn init_logging() {
    authpulse_process::init_logging_as(LOG_FORMAT.get().copied());
}

#[derive(Subcommand)]
enum Command {
    /// Make a development CA and the mTLS certificates for the coordinator and agents.
    #[command(subcommand, after_help = CERTS_EXAMPLE)]
    Certs(CertsCommand),
    /// Check catalog files; prints every problem as FILE:LINE: `id`: path: message.
    #[command(
        after_help = "Example:\n  authpulse validate deploy/examples/quickstart.yaml catalogs/\n  authpulse validate --catalog 'teams/*.yaml' --print\n\nExit status: 0 valid, 1 invalid, 2 usage error."
    )]
    Validate {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// Print the catalog as one YAML document, every file merged and
        /// every module use expanded (itself a valid catalog file).
        #[arg(long)]
        print: bool,
    },
    /// Render catalog files as a Markdown runbook for the people on call, or print the
    /// catalog format itself (--schema, --reference).
    ///
    /// Every probe with its target and the SLOs and gates that read it, every SLO with its
    /// burn-rate alert table, gates, components and the secrets agents need (names only,
    /// never values).
    #[command(after_help = DOCS_EXAMPLE)]
    Docs {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// Write the Markdown (or schema) here instead of stdout.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Print the JSON Schema of a catalog file (the committed
        /// proto/catalog.schema.json) instead of a runbook.
        #[arg(long, conflicts_with_all = ["catalog", "paths", "reference"])]
        schema: bool,
        /// Print the catalog reference: every probe kind and key with its type, default and
        /// meaning, as Markdown (the committed proto/CATALOG.md).
        #[arg(long, conflicts_with_all = ["catalog", "paths"])]
        reference: bool,
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
        /// Catalog files, directories or glob patterns with the probes the
        /// SLOs name, to validate the result.
        #[arg(long, value_name = "PATH")]
        catalog: Vec<PathBuf>,
    },
    /// Run one probe once, here, and print its outcome.
    #[command(
        after_help = "Example:\n  authpulse probe --catalog deploy/examples/quickstart.yaml google-discovery --json\n\n\
        Secrets are read from AUTHPULSE_SECRET_<NAME> or --secrets-dir/<name>.\nExit status: 0 success, 1 failure or invalid catalog."
    )]
    Probe {
        /// Catalog files, directories or glob patterns (repeatable), as for `validate`.
        #[arg(long, required = true, value_name = "PATH")]
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
        #[command(flatten)]
        catalog: CatalogArgs,
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
    /// Ask a coordinator's or agent's /healthz once (the container HEALTHCHECK).
    #[command(after_help = health::EXAMPLE)]
    Health(health::HealthArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = shell::COMPLETIONS_EXAMPLE)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the authpulse(1) man page, or write one per command into --out.
    #[command(after_help = shell::MAN_EXAMPLE)]
    Man {
        /// Write authpulse.1 and authpulse-<command>.1 here instead of printing.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Where a catalog comes from, the same for every command: `--catalog PATH`
/// (repeatable) or the paths given positionally, or both.
#[derive(clap::Args, Debug)]
struct CatalogArgs {
    /// A catalog file (YAML or TOML), a directory (every .yaml, .yml and
    /// .toml file under it) or a glob pattern (quote it: 'teams/*.yaml');
    /// repeatable. Ids must be unique across all of them.
    #[arg(long = "catalog", value_name = "PATH")]
    catalog: Vec<PathBuf>,
    /// The same as --catalog, positionally.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
}

impl CatalogArgs {
    /// Every path given, or a usage error (exit 2) naming the command.
    fn paths(&self, command: &str) -> Result<Vec<PathBuf>, ExitCode> {
        let all: Vec<PathBuf> = self.catalog.iter().chain(&self.paths).cloned().collect();
        if all.is_empty() {
            eprintln!(
                "authpulse {command}: no catalog given: pass --catalog PATH (a file, a directory or a glob), or the paths themselves"
            );
            return Err(ExitCode::from(2));
        }
        Ok(all)
    }
}

const DOCS_EXAMPLE: &str = "\
Example:
  authpulse docs --catalog catalog.yaml --output docs/RUNBOOK.md
  authpulse docs --catalog probes.yaml --catalog slos.yaml > RUNBOOK.md
  authpulse docs --schema --output catalog.schema.json
  authpulse docs --reference > CATALOG.md

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(f) = cli.log_format {
        let _ = LOG_FORMAT.set(f);
    }
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
            Command::Validate { catalog, print } => match catalog.paths("validate") {
                Ok(paths) => Ok(catalog::validate(&paths, print)),
                Err(code) => Ok(code),
            },
            Command::Docs {
                output,
                schema: true,
                ..
            } => catalog::format_docs(catalog::FormatDoc::Schema, output.as_deref()),
            Command::Docs {
                output,
                reference: true,
                ..
            } => catalog::format_docs(catalog::FormatDoc::Reference, output.as_deref()),
            Command::Docs {
                catalog, output, ..
            } => match catalog.paths("docs") {
                Ok(paths) => catalog::docs(&paths, output.as_deref()),
                Err(code) => Ok(code),
            },
            Command::ImportOpenslo { file, catalog } => catalog::import_openslo(&file, &catalog),
            Command::Probe {
                catalog,
                id,
                json,
                secrets_dir,
                save_pages,
            } => probe::probe(&catalog, &id, json, secrets_dir, save_pages).await,
            Command::Certs(command) => certs::certs(command),
            Command::Standalone {
                catalog,
                data_dir,
                listen,
                region,
                secrets_dir,
                insecure_open_api,
            } => {
                let catalog = match catalog.paths("standalone") {
                    Ok(paths) => paths,
                    Err(code) => return Ok(code),
                };
                standalone::standalone(
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
            }) => Ok(audit::audit_verify(&file, &key_file, key_env.as_deref())),
            Command::Health(args) => Ok(health::run(&args).await),
            Command::Completions { shell } => Ok(shell::completions::<Cli>(shell)),
            Command::Man { out } => shell::man::<Cli>(out.as_deref()),
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
