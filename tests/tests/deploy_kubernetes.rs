//! deploy/k8s really deploys: every region's Kustomize overlay is rendered by
//! `kubectl kustomize` (as shipped, with the components it offers, and its
//! agent alone) and checked by tests/python/k8s_check.py with real parsers
//! (`kubernetes-validate --strict`, JSON Schemas of the prometheus-operator
//! and cert-manager fields used); this file asserts what the rendered
//! objects mean — each region's agent runs in its region, state sits on
//! PersistentVolumeClaims, the NetworkPolicies admit exactly the intended
//! peers on ports the pods have, the cert-manager Certificates name the
//! identities the coordinator accepts (parsed by the coordinator's own SPIFFE
//! parser) — and then runs the rendered coordinators (both replicas, one real
//! PostgreSQL) and every region's agent over mTLS with Secrets made by
//! `authpulse certs`, laid out as the pods would mount them.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use authpulse_proto::identity::AgentIdentity;
use authpulse_tests::deploy_check::{
    WAIT, assert_no_problems, check_k8s, connected_agents, kubectl, one_leader, run,
    start_workload, strings, validate_catalogs, wait_ready,
};
use authpulse_tests::postgres::PgDatabase;
use authpulse_tests::{TempDir, bin, repo_root, wait_for};
use serde_json::{Value, json};

const EMPTY_CATALOG: &str = "probes: []\n";

/// Renders and checks every overlay; `material` is where the Secrets' files
/// are (`None`: a first pass that only reads which ones the pods mount).
fn render(out: &Path, material: Option<&Path>) -> Value {
    let kubectl = kubectl();
    check_k8s(&[
        "k8s",
        &repo_root().display().to_string(),
        out.to_str().expect("utf8"),
        material.map_or("-", |m| m.to_str().expect("utf8")),
        kubectl.to_str().expect("utf8"),
    ])
}

fn workloads<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .filter(|w| w["kind"] == kind)
        .collect()
}

/// The host of an `https://host:port` URL.
fn host(url: &str) -> String {
    url.trim_start_matches("https://")
        .split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn kubernetes_overlays_render_one_region_each_on_claims_behind_policies_with_spiffe_certificates() {
    let dir = TempDir::new("ap-k8s-render");
    let report = render(dir.path(), None);
    assert_no_problems("deploy/k8s", &report);
    let validated = strings(&report["validated"]);
    assert!(
        validated.len() >= 10,
        "kubernetes-validate checked only {validated:?}"
    );
    let crd_kinds: BTreeSet<String> = strings(&report["crd_validated"])
        .iter()
        .filter_map(|w| w.split(' ').nth(1)?.split('/').next().map(str::to_string))
        .collect();
    assert_eq!(
        crd_kinds,
        BTreeSet::from(
            ["Certificate", "Issuer", "PrometheusRule", "ServiceMonitor"].map(str::to_string)
        ),
        "the components' custom resources were not all checked against their schema"
    );

    // Each overlay (named after its region) runs the shared coordinators and
    // exactly one agent, of that region.
    let overlays = report["overlays"].as_object().expect("overlays");
    assert!(overlays.len() >= 2, "one overlay per region: {overlays:?}");
    let coordinator = workloads(&report, "coordinator");
    assert_eq!(coordinator.len(), 1, "one coordinator StatefulSet");
    let coordinator = coordinator[0];
    let agents = workloads(&report, "agent");
    for region in overlays.keys() {
        let mine: Vec<&&Value> = agents
            .iter()
            .filter(|a| strings(&a["overlays"]).contains(region))
            .collect();
        assert_eq!(mine.len(), 1, "overlay {region}: agents {mine:?}");
        assert_eq!(mine[0]["region"], region.as_str(), "overlay {region}");
        assert_eq!(mine[0]["labels"]["region"], region.as_str());
        assert!(strings(&coordinator["overlays"]).contains(region));
    }

    // The spool and the audit log outlive the pod: PersistentVolumeClaims
    // from volumeClaimTemplates, not emptyDir.
    for w in report["workloads"].as_array().expect("workloads") {
        assert_eq!(w["data_volume"], "persistentVolumeClaim", "{}", w["name"]);
    }
    assert_eq!(coordinator["audit_volume"], "persistentVolumeClaim");

    // NetworkPolicies: every port of every pod is behind a policy; gRPC only
    // from the agents (every region's), HTTP from Prometheus and the API
    // namespaces, the agents' metrics from that same Prometheus only.
    let ingress = &report["ingress"];
    let prometheus = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    });
    let api_callers =
        json!({"namespaceSelector": {"matchLabels": {"authpulse.io/api-access": "true"}}});
    let coordinator_name = coordinator["name"].as_str().expect("name");
    let grpc = ingress[coordinator_name]["grpc"]
        .as_array()
        .expect("grpc peers");
    let agent_names: BTreeSet<String> = agents
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_string))
        .collect();
    let grpc_pods: BTreeSet<String> = grpc.iter().flat_map(|p| strings(&p["pods"])).collect();
    assert!(
        grpc.iter().all(|p| p["pods"].is_array()),
        "gRPC admits peers outside the namespace's pods: {grpc:?}"
    );
    assert_eq!(grpc_pods, agent_names, "gRPC peers");
    assert_eq!(
        ingress[coordinator_name]["http"],
        json!([prometheus, api_callers])
    );
    for a in &agents {
        let name = a["name"].as_str().expect("name");
        assert_eq!(ingress[name]["metrics"], json!([prometheus]), "{name}");
    }
    for (name, ports) in ingress.as_object().expect("ingress") {
        for (port, peers) in ports.as_object().expect("ports") {
            assert_ne!(peers, &json!(["anyone"]), "{name} port {port} is open");
        }
    }

    // cert-manager: each region's agent Certificate fills the Secret its pod
    // mounts and names that agent the way the coordinator parses it; the
    // coordinator's covers the name agents dial; one Issuer signs both sides.
    for (region, o) in overlays {
        let certs = o["certificates"].as_array().expect("certificates");
        let by_secret = |secret: &Value| -> &Value {
            certs
                .iter()
                .find(|c| c["secretName"] == *secret)
                .unwrap_or_else(|| panic!("{region}: no Certificate fills Secret {secret}"))
        };
        let agent = agents
            .iter()
            .find(|a| strings(&a["overlays"]).contains(region))
            .expect("agent");
        let cert = by_secret(&agent["pki_secret"]);
        let uris = strings(&cert["uris"]);
        assert_eq!(uris.len(), 1, "{region}: {uris:?}");
        let identity = AgentIdentity::from_uri(&uris[0])
            .unwrap_or_else(|e| panic!("{region}: the coordinator would refuse it: {e}"));
        assert_eq!(identity.region, region.as_str());
        assert_eq!(identity.agent_id, agent["agent_id"].as_str().unwrap_or(""));
        assert!(strings(&cert["usages"]).contains(&"client auth".to_string()));
        let server = by_secret(&coordinator["pki_secret"]);
        assert!(strings(&server["usages"]).contains(&"server auth".to_string()));
        for url in strings(&agent["coordinator_urls"]) {
            assert!(
                strings(&server["dnsNames"]).contains(&host(&url)),
                "{region}: the coordinator certificate lacks {url}'s host"
            );
        }
        assert_eq!(cert["issuer"], server["issuer"], "{region}: two CAs");
    }
    println!(
        "k8s: overlays {:?} render {} built-in objects valid for Kubernetes {} and custom resources {crd_kinds:?}; agents {agent_names:?} on claims, behind policies, with SPIFFE certificates",
        overlays.keys().collect::<Vec<_>>(),
        validated.len(),
        report["kubernetes_version"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_overlays_run_with_secrets_from_authpulse_certs() {
    let dir = TempDir::new("ap-k8s-run");
    // A first pass reads which Secrets the pods mount and whose identity
    // each TLS Secret carries; the material is then made the way
    // secrets.yaml says, one directory per Secret, one file per key.
    let scout = dir.path().join("scout");
    std::fs::create_dir_all(&scout).expect("dir");
    let first = render(&scout, None);
    let pki = dir.path().join("pki");
    let p = pki.to_str().expect("utf8");
    let authpulse = bin("authpulse");
    let (ok, out, err) = run(
        &authpulse,
        &[
            "certs",
            "init",
            "--out",
            p,
            "--san",
            "authpulse-coordinator",
        ],
    );
    assert!(ok, "authpulse certs init:\n{out}{err}");
    // Secret name -> (certificate, key) files from `authpulse certs`.
    let mut tls: BTreeMap<String, (String, String)> = BTreeMap::new();
    for w in first["workloads"].as_array().expect("workloads") {
        let secret = w["pki_secret"].as_str().expect("pki secret").to_string();
        let stem = if w["kind"] == "agent" {
            let (id, region) = (
                w["agent_id"].as_str().expect("id"),
                w["region"].as_str().expect("region"),
            );
            let ca = format!("{p}/ca.pem");
            let ca_key = format!("{p}/ca.key");
            let (ok, out, err) = run(
                &authpulse,
                &[
                    "certs",
                    "agent",
                    "--out",
                    p,
                    "--ca",
                    &ca,
                    "--ca-key",
                    &ca_key,
                    "--agent-id",
                    id,
                    "--region",
                    region,
                ],
            );
            assert!(ok, "authpulse certs agent {id}:\n{out}{err}");
            id.to_string()
        } else {
            "coordinator".to_string()
        };
        tls.insert(secret, (format!("{stem}.pem"), format!("{stem}.key")));
    }
    let material = dir.path().join("material");
    for (secret, keys) in first["secrets"].as_object().expect("secrets") {
        let to = material.join(secret);
        std::fs::create_dir_all(&to).expect("dir");
        for key in strings(keys) {
            let text = match (tls.get(secret), key.as_str()) {
                (Some((cert, _)), "tls.crt") => std::fs::read_to_string(pki.join(cert)),
                (Some((_, k)), "tls.key") => std::fs::read_to_string(pki.join(k)),
                (Some(_), "ca.crt") => std::fs::read_to_string(pki.join("ca.pem")),
                (Some(_), other) => panic!("TLS Secret {secret} has key {other}"),
                // Database password, API tokens: a random value.
                (None, _) => Ok(format!("test-{key}-{}\n", std::process::id())),
            }
            .expect("material");
            std::fs::write(to.join(&key), text).expect("write material");
        }
    }

    let rendered = dir.path().join("rendered");
    std::fs::create_dir_all(&rendered).expect("dir");
    let report = render(&rendered, Some(&material));
    assert_no_problems("deploy/k8s", &report);
    validate_catalogs(&strings(&report["catalogs"]));

    // Both coordinator replicas on the ConfigMap's config with the mounted
    // Secrets (real certificates, the password file), sharing one real
    // PostgreSQL database (the test server's) in place of `database`, each
    // with its own data directory as its claim would be.
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, EMPTY_CATALOG).expect("catalog");
    let client = reqwest::Client::new();
    let coordinator = workloads(&report, "coordinator")[0];
    let database = PgDatabase::create().await;
    let mut replicas = Vec::new();
    for i in 0..coordinator["replicas"].as_u64().expect("replicas") {
        let data = dir.path().join(format!("replica-{i}"));
        let env = vec![
            ("AUTHPULSE_DATABASE_URL".to_string(), database.url.clone()),
            (
                "AUTHPULSE_COORDINATOR__DATA_DIR".into(),
                data.display().to_string(),
            ),
            (
                "AUTHPULSE_COORDINATOR__GRPC_LISTEN".into(),
                "127.0.0.1:0".into(),
            ),
            (
                "AUTHPULSE_COORDINATOR__HTTP_LISTEN".into(),
                "127.0.0.1:0".into(),
            ),
            (
                "AUTHPULSE_COORDINATOR__CATALOG".into(),
                empty.display().to_string(),
            ),
        ];
        let (mut p, http) = start_workload(coordinator, &env, dir.path()).await;
        let grpc = p.line_after("grpc on ").await;
        wait_ready(&client, &http, "coordinator replica").await;
        replicas.push((p, http, grpc));
    }

    // Every region's agent, over mTLS with the certificates from `authpulse
    // certs`, checking the coordinator's certificate for the Service name
    // its config uses (the replicas stand in for the Service's endpoints).
    let urls: Vec<String> = replicas
        .iter()
        .map(|(_, _, grpc)| format!("https://{grpc}"))
        .collect();
    let mut agents = Vec::new();
    for w in workloads(&report, "agent") {
        let url = strings(&w["coordinator_urls"]).remove(0);
        let env = vec![
            (
                "AUTHPULSE_AGENT__LISTEN".to_string(),
                "127.0.0.1:0".to_string(),
            ),
            ("AUTHPULSE_AGENT__COORDINATOR".into(), urls.join(",")),
            ("AUTHPULSE_AGENT__TLS__SERVER_NAME".into(), host(&url)),
        ];
        let (p, http) = start_workload(w, &env, dir.path()).await;
        wait_ready(&client, &http, w["name"].as_str().unwrap_or("agent")).await;
        agents.push((w, p));
    }
    let https: Vec<String> = replicas.iter().map(|(_, http, _)| http.clone()).collect();
    one_leader(&client, &https).await;
    let read =
        std::fs::read_to_string(material.join("authpulse-api-tokens/read")).expect("read token");
    let http = replicas[0].1.clone();
    let want: BTreeMap<String, String> = agents
        .iter()
        .map(|(w, _)| {
            (
                w["agent_id"].as_str().unwrap_or_default().to_string(),
                w["region"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let got = wait_for(
        WAIT,
        "every region's agent on the first replica over mTLS",
        || async {
            let got = connected_agents(&client, &http, read.trim()).await?;
            (got == want).then_some(got)
        },
    )
    .await;
    println!(
        "k8s: {} coordinator replicas (one leader, one PostgreSQL) and agents {got:?} ran over mTLS from the rendered overlays",
        replicas.len()
    );
}
