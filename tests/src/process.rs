//! The real binaries as child processes: start with arguments, wait for a
//! line on stdout (e.g. `listening on http://…`), keep stderr in a log file
//! shown when a test fails, kill on drop.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct Process {
    pub name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub log: PathBuf,
}

impl Process {
    /// `authpulse standalone` on `catalog` with its data under `dir/data`,
    /// HTTP on any loopback port: the process and its API base URL.
    pub async fn standalone(catalog: &str, dir: &Path) -> (Process, String) {
        let data = dir.join("data");
        let mut p = Process::start(
            "authpulse",
            &[
                "standalone",
                "--catalog",
                catalog,
                "--data-dir",
                data.to_str().expect("utf8 path"),
                "--listen",
                "127.0.0.1:0",
            ],
            &[],
            dir,
        )
        .await;
        let api = format!("http://{}", p.line_after("listening on http://").await);
        (p, api)
    }

    /// Starts `bin` (a workspace binary name) with `args`; stderr goes to `log_dir/<name>.log`.
    pub async fn start(bin: &str, args: &[&str], envs: &[(&str, &str)], log_dir: &Path) -> Process {
        let log = log_dir.join(format!(
            "{bin}-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0)
        ));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(crate::bin(bin));
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .env("AUTHPULSE_LOG", "info,authpulse_agent=debug");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            name: bin.to_string(),
            child,
            lines,
            log,
        }
    }

    /// The stdout lines received so far and not yet consumed.
    /// The OS process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn drain_stdout(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            out.push(line);
        }
        out
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest.
    pub async fn line_after(&mut self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match line {
                Ok(Some(l)) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Ok(None) => panic!(
                    "{} exited before printing {prefix:?}; log:\n{}",
                    self.name,
                    self.log_text()
                ),
                Err(_) => panic!(
                    "{} did not print {prefix:?} in 60s; log:\n{}",
                    self.name,
                    self.log_text()
                ),
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, not a clean shutdown.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM and wait for exit; returns the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        }
    }
}
