//! PostgreSQL for the tests (Debian's `postgresql` package; tests/run
//! installs it). tests/run starts one server for the whole run and exports
//! `AUTHPULSE_TEST_POSTGRES_URL`; every test gets a database of its own on
//! it ([`PgDatabase::create`]). Without the variable (a test run by hand)
//! the fixture starts a private server in a temp dir. PostgreSQL refuses to
//! run as root, so as root the server runs as `nobody` (via `setpriv`).
//! Loopback only, trust authentication, `fsync=off`: a test server.
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

use crate::TempDir;

/// The directory with `initdb`, `postgres`: `AUTHPULSE_TEST_PG_BIN`, else the
/// newest /usr/lib/postgresql/<version>/bin.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AUTHPULSE_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install Debian's \
             `postgresql` package (tests/run does) or set AUTHPULSE_TEST_PG_BIN"
        )
    })
}

/// A private PostgreSQL server, stopped on drop.
pub struct PgServer {
    pub port: u16,
    child: Option<tokio::process::Child>,
    _dir: TempDir,
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `program args…`, as `nobody` when we are root.
fn command(program: PathBuf, args: &[&str]) -> tokio::process::Command {
    let mut cmd = if running_as_root() {
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        tokio::process::Command::new(program)
    };
    cmd.args(args);
    cmd
}

impl PgServer {
    pub async fn start() -> PgServer {
        let dir = TempDir::new("authpulse-pg");
        let data = dir.path().join("data");
        if running_as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL test dir failed");
        }
        let bin = bin_dir();
        let out = command(
            bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf8"),
                "-U",
                "authpulse",
                "--auth=trust",
                "--no-sync",
                "--locale=C",
                "-E",
                "UTF8",
            ],
        )
        .output()
        .await
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::fleet::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        let child = command(
            bin.join("postgres"),
            &[
                "-D",
                data.to_str().expect("utf8"),
                "-p",
                &port.to_string(),
                "-k",
                dir.path().to_str().expect("utf8"),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start postgres");
        let server = PgServer {
            port,
            child: Some(child),
            _dir: dir,
        };
        let url = server.admin_url();
        crate::wait_for(
            crate::PEER_START,
            "PostgreSQL to accept connections",
            || {
                let url = url.clone();
                async move { sqlx::PgConnection::connect(&url).await.ok().map(|_| ()) }
            },
        )
        .await;
        server
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://authpulse@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGKILL is fine for a throwaway server; kill_on_drop reaps it.
            let _ = child.start_kill();
        }
    }
}

/// A fresh database for one test, on the shared server or a private one.
pub struct PgDatabase {
    pub url: String,
    _server: Option<PgServer>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let (admin, server) = match std::env::var("AUTHPULSE_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let s = PgServer::start().await;
                (s.admin_url(), Some(s))
            }
        };
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL at {admin}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        PgDatabase {
            url: format!("{base}/{name}"),
            _server: server,
        }
    }
}
