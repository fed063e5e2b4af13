//! Fixtures for the deploy/ artifact tests (tests/tests/deploy_artifacts.rs,
//! tests/tests/deploy_kubernetes.rs): Python checkers run by the test venv
//! (`AUTHPULSE_TEST_PYTHON`) that parse each artifact with a real parser —
//! BuildKit's Dockerfile parser (`dockerfile`), PyYAML, `kubectl kustomize`,
//! `kubernetes-validate` (the Kubernetes OpenAPI schemas), JSON Schemas for
//! the prometheus-operator and cert-manager CRDs, and `promql-parser` — and
//! lay out the files a container would see so the real binaries can start on
//! the shipped configs; starting those binaries on them and asking them what
//! they see (ready, connected agents, the leader); the paths of the tools the
//! tests run (`kubectl`, `promtool`, `systemd-analyze`, Prometheus); the
//! workspace's binary names from `cargo metadata`; metric names and labels
//! from Prometheus text; and a Prometheus that loads deploy/prometheus/rules.yml.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::process::Process;

/// How long a shipped workload may take to become ready or connect.
pub const WAIT: Duration = Duration::from_secs(60);

/// Runs tests/python/deploy_check.py (Dockerfile, compose, PromQL) with
/// `args` and returns its JSON report.
pub fn check(args: &[&str]) -> Value {
    run_checker("deploy_check.py", args)
}

/// Runs tests/python/k8s_check.py (deploy/k8s, rendered by `kubectl
/// kustomize`) with `args` and returns its JSON report.
pub fn check_k8s(args: &[&str]) -> Value {
    run_checker("k8s_check.py", args)
}

/// Runs a checker of tests/python (see its docstring for the arguments);
/// panics with its stderr when it fails (a missing Python package names the
/// fix).
fn run_checker(script: &str, args: &[&str]) -> Value {
    let python = crate::feed_check::python();
    let script = crate::repo_root().join("tests/python").join(script);
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stderr}\n(a ModuleNotFoundError means target/test-venv \
         is older than tests/python/requirements.txt: run tests/run once)",
        script.display(),
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} {args:?}: not JSON ({e}):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Panics listing every entry of the report's `problems`.
pub fn assert_no_problems(what: &str, report: &Value) {
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// A tool from a Debian package: `env` when set, else `default`; panics with
/// the package to install when it is missing.
pub fn tool(env: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: install the Debian package `{package}` (or set {env})",
        path.display()
    );
    path
}

pub fn kubectl() -> PathBuf {
    // `kubectl kustomize` renders the overlays; tests/run installs it.
    tool("AUTHPULSE_TEST_KUBECTL", "/usr/bin/kubectl", "kubectl")
}

pub fn promtool() -> PathBuf {
    // The prometheus package ships promtool; tests/run installs it.
    tool("AUTHPULSE_TEST_PROMTOOL", "/usr/bin/promtool", "prometheus")
}

pub fn systemd_analyze() -> PathBuf {
    tool(
        "AUTHPULSE_TEST_SYSTEMD_ANALYZE",
        "/usr/bin/systemd-analyze",
        "systemd",
    )
}

/// Runs a command to completion: (exit success, stdout, stderr).
pub fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names of the workspace's binaries, as cargo sees them.
pub fn workspace_bins() -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(crate::repo_root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut bins: Vec<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    bins.sort();
    bins
}

/// The strings of a JSON array (anything else in it skipped).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `authpulse validate` on each catalog file: exit 0.
pub fn validate_catalogs(files: &[String]) {
    assert!(!files.is_empty(), "no catalog to validate");
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (ok, out, err) = run(&crate::bin("authpulse"), &args);
    assert!(ok, "authpulse validate {files:?}:\n{out}{err}");
}

/// Starts `binary` with the shipped arguments, `--config` pointing at the
/// laid-out copy, and `env` (the container's environment plus the test's
/// overrides); returns the process and its HTTP address.
pub async fn start_workload(w: &Value, env: &[(String, String)], dir: &Path) -> (Process, String) {
    let binary = w["binary"].as_str().expect("binary");
    let mut args = strings(&w["args"]);
    let at = args.iter().position(|a| a == "--config").expect("--config") + 1;
    args[at] = w["config"].as_str().expect("config").to_string();
    let mut envs: Vec<(String, String)> = w["env"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    envs.extend(env.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut p = Process::start(binary, &args, &envs, dir).await;
    let http = p.line_after("listening on http://").await;
    (p, format!("http://{http}"))
}

pub async fn wait_ready(client: &reqwest::Client, http: &str, what: &str) {
    crate::wait_for(WAIT, &format!("{what} /readyz 200"), || async {
        let r = client.get(format!("{http}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// The agents a coordinator lists as connected, by id → region.
pub async fn connected_agents(
    client: &reqwest::Client,
    http: &str,
    token: &str,
) -> Option<BTreeMap<String, String>> {
    let v: Value = client
        .get(format!("{http}/api/v1/agents"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["agents"]
            .as_array()?
            .iter()
            .filter(|a| a["connected"] == true)
            .filter_map(|a| {
                Some((
                    a["agent_id"].as_str()?.to_string(),
                    a["region"].as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

/// `authpulse_coordinator_leader` of each coordinator (None while one is
/// unreachable or doesn't export it yet).
pub async fn leaders(client: &reqwest::Client, https: &[String]) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    for http in https {
        let text = client
            .get(format!("{http}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .any(|l| l.starts_with("authpulse_coordinator_leader "))
            .then_some(())?;
        out.push(crate::fleet::metric(&text, "authpulse_coordinator_leader"));
    }
    Some(out)
}

/// Waits until exactly one of `https` leads; returns its index.
pub async fn one_leader(client: &reqwest::Client, https: &[String]) -> usize {
    crate::wait_for(
        WAIT,
        "exactly one coordinator to hold the leader lock",
        || async {
            let l = leaders(client, https).await?;
            (l.iter().sum::<f64>() == 1.0).then(|| l.iter().position(|v| *v == 1.0))?
        },
    )
    .await
}

/// Metric names in Prometheus text with the label names seen on them
/// (histograms appear as their `_bucket`, `_sum` and `_count` series).
pub fn exported_metrics(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            labels.extend(label_names(&line[name_end + 1..]));
        }
    }
    out
}

/// Label names of `a="x",b="y\"z"} 1`: quoted values may hold `,`, `}` and
/// escaped quotes.
fn label_names(rest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = rest.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').trim();
        if name.is_empty() || name.starts_with('}') {
            break;
        }
        names.push(name.to_string());
        if chars.next() != Some('"') {
            break;
        }
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => {}
            }
        }
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    names
}

/// A real Prometheus (`AUTHPULSE_TEST_PROMETHEUS`, default /usr/bin/prometheus)
/// with deploy/prometheus/rules.yml, scraping coordinators and agents every
/// second under the job names the rules expect, evaluating every second.
pub struct RulesPrometheus {
    _prometheus: crate::peers::Prometheus,
    pub url: String,
}

impl RulesPrometheus {
    /// `agents`: (`host:port`, region) — the region becomes a target label,
    /// as deploy/prometheus/prometheus.yml and the agents' ServiceMonitor add it.
    /// `slo_rules`: rule files `authpulse rules` wrote for the test's own
    /// catalog, loaded next to rules.yml (whose per-SLO groups are the
    /// quickstart catalog's).
    pub async fn start(
        dir: &Path,
        coordinators: &[String],
        agents: &[(String, String)],
        slo_rules: &[PathBuf],
    ) -> RulesPrometheus {
        let bin = tool(
            "AUTHPULSE_TEST_PROMETHEUS",
            "/usr/bin/prometheus",
            "prometheus",
        );
        let rules = crate::repo_root().join("deploy/prometheus/rules.yml");
        let rule_files: Vec<String> = std::iter::once(&rules)
            .chain(slo_rules)
            .map(|p| format!("'{}'", p.display()))
            .collect();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\n\
             scrape_configs:\n  - job_name: authpulse-coordinator\n    static_configs:\n      - targets: [{}]\n\
             \x20 - job_name: authpulse-agent\n    static_configs:\n",
            rule_files.join(", "),
            coordinators
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (target, region) in agents {
            config.push_str(&format!(
                "      - targets: ['{target}']\n        labels: {{ region: '{region}' }}\n"
            ));
        }
        let path = dir.join("prometheus-rules.yml");
        std::fs::write(&path, config).expect("prometheus config");
        let prometheus = crate::peers::Prometheus::run(&bin, &path, dir, "prometheus-rules").await;
        RulesPrometheus {
            url: prometheus.url.clone(),
            _prometheus: prometheus,
        }
    }

    /// Active alerts (pending or firing): `[{labels, state, ...}]`.
    pub async fn alerts(&self, client: &reqwest::Client) -> Option<Vec<Value>> {
        let v: Value = client
            .get(format!("{}/api/v1/alerts", self.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"]["alerts"].as_array().cloned()
    }

    /// The result vector of an instant query.
    pub async fn query(&self, client: &reqwest::Client, promql: &str) -> Option<Vec<Value>> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", promql)],
        )
        .ok()?;
        let v: Value = client.get(url).send().await.ok()?.json().await.ok()?;
        v["data"]["result"].as_array().cloned()
    }

    /// Rule groups as Prometheus loaded them, with each rule's health.
    pub async fn rules(&self, client: &reqwest::Client) -> Option<Vec<Value>> {
        let v: Value = client
            .get(format!("{}/api/v1/rules", self.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"]["groups"].as_array().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_survive_quotes_and_commas() {
        let m = exported_metrics(
            "# HELP x y\nx_total{a=\"1,2\",b=\"q\\\"}\"} 3\ny 1\nz_bucket{le=\"+Inf\"} 2\n",
        );
        assert_eq!(
            m["x_total"],
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
        assert!(m["y"].is_empty());
        assert_eq!(m["z_bucket"], BTreeSet::from(["le".to_string()]));
    }
}
