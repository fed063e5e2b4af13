//! The coordinator's own settings (not the catalog): where to listen, where
//! to keep data, which catalog files to serve. Read with the `config` crate
//! from one YAML or TOML file, then overridden by environment variables
//! `AUTHPULSE_COORDINATOR__<KEY>` (e.g. `AUTHPULSE_COORDINATOR__HTTP_LISTEN`),
//! so containers can change one setting without templating the file. Unknown
//! keys are errors in both places: a typo must not silently fall back to a
//! default.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Prefix of the environment overrides, without the `__` separator.
pub const ENV_PREFIX: &str = "AUTHPULSE_COORDINATOR";

/// Overrides `database` (what container platforms usually inject).
pub const DATABASE_URL_ENV: &str = "AUTHPULSE_DATABASE_URL";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Where agents connect (gRPC). Port 0 picks a free port; see `Running::grpc_addr`.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// HTTP API, `/metrics`, health. Port 0 picks a free port.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Holds `authpulse.db` (SQLite, unless `database` says otherwise) and
    /// the audit log; created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where results and state live: `sqlite://PATH` (default:
    /// `<data_dir>/authpulse.db`; one coordinator) or
    /// `postgres://USER@HOST:PORT/DB[?sslmode=verify-full&sslrootcert=…]`
    /// (several coordinator replicas may share it). `AUTHPULSE_DATABASE_URL`
    /// overrides it. Keep the password out of the URL: see
    /// `database_password_file`.
    #[serde(default)]
    pub database: Option<String>,
    /// A file whose content (trailing newline removed) is the PostgreSQL
    /// password, e.g. a mounted Kubernetes Secret.
    #[serde(default)]
    pub database_password_file: Option<PathBuf>,
    /// The catalog, merged from files (YAML/TOML), directories (every
    /// `.yaml`, `.yml`, `.toml` file under them; names starting with `.`
    /// skipped) and glob patterns (`/etc/authpulse/teams/*.yaml`). Files that
    /// appear, change or go away are picked up without a restart. Relative
    /// paths are relative to the working directory of the process.
    #[serde(default)]
    pub catalog: Vec<PathBuf>,
    /// How long raw results are kept before the hourly prune deletes them.
    #[serde(with = "humantime_serde", default = "default_raw_retention")]
    pub raw_retention: Duration,
    /// mTLS on the agent gRPC port: agents must present a client certificate
    /// signed by `client_ca` that names them (see `authpulse_proto::identity`).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Plaintext gRPC without client certificates (no agent authentication),
    /// for trusted networks and tests; logged as a warning. Exactly one of
    /// `tls` and `insecure` must be set.
    #[serde(default)]
    pub insecure: bool,
    /// Limits and health thresholds for the agent fleet.
    #[serde(default)]
    pub fleet: crate::fleet::FleetConfig,
    /// Where burn-rate alerts are sent (see `alerting`).
    #[serde(default)]
    pub alerting: crate::alerting::AlertingConfig,
    /// The public status feed's name and URL.
    #[serde(default)]
    pub status_page: crate::statuspage::StatusPageConfig,
    /// The append-only, hash-chained audit log (JSON lines); default
    /// `<data_dir>/audit.jsonl`.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// HTTP API access: bearer tokens and their scopes (see `api_access`).
    #[serde(default)]
    pub api: crate::api_access::ApiConfig,
    /// Limits of the HTTP server (see `http_server`).
    #[serde(default)]
    pub http: HttpConfig,
    /// Audit log integrity (the HMAC key; see `audit`).
    #[serde(default)]
    pub audit: AuditConfig,
}

/// `http:` in the coordinator config: what one caller can hold of the
/// HTTP server, and how long request paths wait for the database.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A connection that has not sent a complete request head (request
    /// line and headers) this long after it started one, or after its
    /// previous response, is closed.
    #[serde(with = "humantime_serde", default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// Open HTTP connections at most; more are closed right after accept
    /// (counted in `authpulse_coordinator_http_connections_refused_total`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a request (gate, `/readyz`, API reads) waits for the
    /// database before it answers 500 `unknown` / 503 not ready.
    #[serde(with = "humantime_serde", default = "default_storage_timeout")]
    pub storage_timeout: Duration,
    /// Without API tokens: host names (with or without port) that requests
    /// may carry in `Host` besides loopback ones (`localhost`, `127.0.0.1`,
    /// `[::1]`), e.g. the Service name Flagger calls. See `api_access`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> usize {
    1024
}
fn default_storage_timeout() -> Duration {
    Duration::from_millis(1500)
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: default_header_read_timeout(),
            max_connections: default_max_connections(),
            storage_timeout: default_storage_timeout(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// `audit:` in the coordinator config.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file holding the secret that keys every entry's HMAC (at least 32
    /// characters; keep it outside `data_dir` and away from the log). The
    /// environment variable `AUTHPULSE_AUDIT_KEY` (the secret itself) is
    /// used when this is not set.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
}

/// PEM files for the agent gRPC port. Relative paths are relative to the
/// working directory of the process.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The coordinator's certificate chain (leaf first).
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA(s) agent client certificates must chain to.
    pub client_ca: PathBuf,
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7070))
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./authpulse-data")
}
fn default_raw_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            grpc_listen: default_grpc_listen(),
            http_listen: default_http_listen(),
            data_dir: default_data_dir(),
            database: None,
            database_password_file: None,
            catalog: Vec::new(),
            raw_retention: default_raw_retention(),
            tls: None,
            insecure: false,
            fleet: crate::fleet::FleetConfig::default(),
            alerting: crate::alerting::AlertingConfig::default(),
            status_page: Default::default(),
            audit_log: None,
            api: crate::api_access::ApiConfig::default(),
            http: HttpConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error(
        "the agent gRPC port needs either `tls: {{ cert, key, client_ca }}` (mTLS: agents \
         authenticate with client certificates; `authpulse certs init` makes a dev CA and \
         certificates) or `insecure: true` (plaintext, agents not authenticated: trusted \
         networks only)"
    )]
    NoTransportSecurity,
    #[error(
        "`tls` and `insecure: true` are both set; choose one (remove `insecure` to require \
         agent client certificates)"
    )]
    TlsAndInsecure,
    #[error("database: {0}")]
    Database(String),
    #[error("raw_retention must be at least 1h, got {0}")]
    RetentionTooShort(String),
    #[error("http: {0}")]
    Http(String),
    #[error("{0}")]
    StatusPage(String),
}

impl CoordinatorConfig {
    /// Reads `file` (if any) and the process environment.
    /// `insecure` is the `--insecure` flag: plaintext gRPC without client
    /// certificates, forced on top of the file and environment.
    pub fn load(file: Option<&Path>, insecure: bool) -> Result<CoordinatorConfig, ConfigError> {
        let mut cfg = Self::load_unchecked(file, None)?;
        if insecure {
            cfg.insecure = true;
        }
        cfg.check()?;
        Ok(cfg)
    }

    /// Like [`load`](Self::load), with the environment given as a map
    /// (`None` = the process environment). Tests use this because changing
    /// the process environment is `unsafe` in edition 2024.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<CoordinatorConfig, ConfigError> {
        let cfg = Self::load_unchecked(file, env)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn load_unchecked(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<CoordinatorConfig, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            // The format follows the extension (.yaml/.yml/.toml).
            builder = builder.add_source(config::File::from(file.to_path_buf()).required(true));
        }
        let url_override = match &env {
            Some(map) => map.get(DATABASE_URL_ENV).cloned(),
            None => std::env::var(DATABASE_URL_ENV).ok(),
        };
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("catalog")
            .with_list_parse_key("alerting.alertmanager")
            .with_list_parse_key("http.allowed_hosts")
            .source(env);
        let mut cfg: CoordinatorConfig = builder.add_source(env).build()?.try_deserialize()?;
        if let Some(url) = url_override.filter(|u| !u.is_empty()) {
            cfg.database = Some(url);
        }
        Ok(cfg)
    }

    /// The database to open: `database` (and its password file), else the
    /// SQLite file in `data_dir`.
    pub fn database(&self) -> Result<crate::store::Database, ConfigError> {
        let Some(url) = &self.database else {
            return Ok(crate::store::Database::Sqlite(
                self.data_dir.join(crate::store::DB_FILE),
            ));
        };
        let mut db =
            crate::store::Database::parse(url).map_err(|e| ConfigError::Database(e.to_string()))?;
        if let (Some(file), crate::store::Database::Postgres { password, .. }) =
            (&self.database_password_file, &mut db)
        {
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError::Database(format!("database_password_file {}: {e}", file.display()))
            })?;
            *password = Some(text.trim_end_matches(['\n', '\r']).to_string());
        }
        Ok(db)
    }

    /// Checks that types can't express. `start` calls it too, for
    /// configurations built in code.
    pub fn check(&self) -> Result<(), ConfigError> {
        match (&self.tls, self.insecure) {
            (None, false) => return Err(ConfigError::NoTransportSecurity),
            (Some(_), true) => return Err(ConfigError::TlsAndInsecure),
            _ => {}
        }
        if let Some(url) = &self.database {
            crate::store::Database::parse(url).map_err(|e| ConfigError::Database(e.to_string()))?;
        }
        if self.raw_retention < Duration::from_secs(3600) {
            return Err(ConfigError::RetentionTooShort(
                humantime::format_duration(self.raw_retention).to_string(),
            ));
        }
        let h = &self.http;
        if h.max_connections == 0 {
            return Err(ConfigError::Http(
                "max_connections must be at least 1".into(),
            ));
        }
        if h.header_read_timeout < Duration::from_millis(100) {
            return Err(ConfigError::Http(
                "header_read_timeout must be at least 100ms".into(),
            ));
        }
        if h.storage_timeout < Duration::from_millis(100) {
            return Err(ConfigError::Http(
                "storage_timeout must be at least 100ms".into(),
            ));
        }
        self.status_page.check().map_err(ConfigError::StatusPage)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write config");
        p
    }

    fn no_env() -> Option<HashMap<String, String>> {
        Some(HashMap::new())
    }

    #[test]
    fn yaml_with_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "c.yaml",
            "insecure: true\ncatalog: [a.yaml, b.toml]\nraw_retention: 3d\n",
        );
        let c = CoordinatorConfig::load_with_env(Some(&f), no_env()).expect("valid");
        assert_eq!(c.grpc_listen, "127.0.0.1:7070".parse().expect("addr"));
        assert_eq!(c.http_listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.data_dir, PathBuf::from("./authpulse-data"));
        assert_eq!(
            c.catalog,
            vec![PathBuf::from("a.yaml"), PathBuf::from("b.toml")]
        );
        assert_eq!(c.raw_retention, Duration::from_secs(3 * 86_400));
    }

    #[test]
    fn toml_and_env_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "c.toml",
            "insecure = true\nhttp_listen = \"127.0.0.1:9000\"\n",
        );
        let env = HashMap::from([
            (
                "AUTHPULSE_COORDINATOR__HTTP_LISTEN".to_string(),
                "0.0.0.0:9100".to_string(),
            ),
            (
                "AUTHPULSE_COORDINATOR__CATALOG".to_string(),
                "x.yaml,y.yaml".to_string(),
            ),
            (
                "AUTHPULSE_COORDINATOR__RAW_RETENTION".to_string(),
                "2d".to_string(),
            ),
            ("OTHER_THING".to_string(), "ignored".to_string()),
        ]);
        let c = CoordinatorConfig::load_with_env(Some(&f), Some(env)).expect("valid");
        assert_eq!(c.http_listen, "0.0.0.0:9100".parse().expect("addr"));
        assert_eq!(
            c.catalog,
            vec![PathBuf::from("x.yaml"), PathBuf::from("y.yaml")]
        );
        assert_eq!(c.raw_retention, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn env_alone_is_enough() {
        let env = HashMap::from([(
            "AUTHPULSE_COORDINATOR__INSECURE".to_string(),
            "true".to_string(),
        )]);
        let c = CoordinatorConfig::load_with_env(None, Some(env)).expect("valid");
        assert!(c.insecure);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "c.yaml",
            "insecure: true\ngrpc_listn: 127.0.0.1:1\n",
        );
        let err = CoordinatorConfig::load_with_env(Some(&f), no_env()).expect_err("typo");
        assert!(err.to_string().contains("grpc_listn"), "{err}");

        let env = HashMap::from([
            (
                "AUTHPULSE_COORDINATOR__INSECURE".to_string(),
                "true".to_string(),
            ),
            (
                "AUTHPULSE_COORDINATOR__DATADIR".to_string(),
                "/x".to_string(),
            ),
        ]);
        let err = CoordinatorConfig::load_with_env(None, Some(env)).expect_err("typo");
        assert!(err.to_string().contains("datadir"), "{err}");
    }

    #[test]
    fn neither_tls_nor_insecure_is_refused_with_advice() {
        let err = CoordinatorConfig::load_with_env(None, no_env()).expect_err("neither");
        let msg = err.to_string();
        assert!(
            msg.contains("tls: { cert, key, client_ca }") && msg.contains("insecure: true"),
            "{msg}"
        );
    }

    #[test]
    fn tls_from_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "c.yaml",
            "tls:\n  cert: /etc/ap/coordinator.pem\n  key: /etc/ap/coordinator.key\n  client_ca: /etc/ap/ca.pem\n",
        );
        let c = CoordinatorConfig::load_with_env(Some(&f), no_env()).expect("valid");
        let tls = c.tls.expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/ap/coordinator.pem"));
        assert_eq!(tls.client_ca, PathBuf::from("/etc/ap/ca.pem"));
        assert!(!c.insecure);

        let env = HashMap::from([
            (
                "AUTHPULSE_COORDINATOR__TLS__CERT".to_string(),
                "c.pem".to_string(),
            ),
            (
                "AUTHPULSE_COORDINATOR__TLS__KEY".to_string(),
                "c.key".to_string(),
            ),
            (
                "AUTHPULSE_COORDINATOR__TLS__CLIENT_CA".to_string(),
                "ca.pem".to_string(),
            ),
        ]);
        let c = CoordinatorConfig::load_with_env(None, Some(env)).expect("valid from env");
        assert_eq!(c.tls.expect("tls").key, PathBuf::from("c.key"));
    }

    #[test]
    fn tls_and_insecure_together_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "c.yaml",
            "insecure: true\ntls: { cert: a.pem, key: a.key, client_ca: ca.pem }\n",
        );
        let err = CoordinatorConfig::load_with_env(Some(&f), no_env()).expect_err("both");
        assert!(err.to_string().contains("both set"), "{err}");

        let f = write(
            dir.path(),
            "d.yaml",
            "tls: { cert: a.pem, key: a.key, ca: ca.pem }\n",
        );
        let err = CoordinatorConfig::load_with_env(Some(&f), no_env()).expect_err("typo");
        assert!(err.to_string().contains("`ca`"), "{err}");
    }
}
