//! CPU time per probe run, against the real oidc-provider test peer on
//! 127.0.0.1: `client_credentials` (discovery + token request + checks) and
//! `authorization_code` (discovery, authorize, login form, consent, code
//! exchange, ID token validation against the JWKS). Each run starts with
//! no connections, as the agent's runs do.
//!
//! Reference, measured in the same run: curl making the same token request
//! (one curl process doing all requests, each on a new connection), so the
//! ratio compares our whole run with the bare HTTP exchange it wraps.
//! CPU is this process's (or curl's) user + system time from /proc.
//!
//! Run: `cargo bench -p authpulse-agent --bench probe_cpu`
//! (`AUTHPULSE_BENCH_SMOKE=1` runs a few iterations only, as a smoke test).
mod common;

use std::time::{Duration, Instant};

use authpulse_agent::http::NetContext;
use authpulse_agent::probes::{self, ProbeMemory};
use authpulse_agent::secrets::SecretStore;
use authpulse_tests::peers::OidcPeer;

/// (self user+system, waited-for children user+system), from /proc/self/stat.
fn cpu() -> (Duration, Duration) {
    use authpulse_tests::proc_stats::{children_cpu_secs, cpu_secs};
    (
        Duration::from_secs_f64(cpu_secs("self")),
        Duration::from_secs_f64(children_cpu_secs("self")),
    )
}

async fn per_run(
    def: &authpulse_proto::catalog::ProbeDef,
    net: &NetContext,
    secrets: &SecretStore,
    memory: &ProbeMemory,
    n: usize,
) -> (Duration, Duration) {
    for _ in 0..n.min(10) {
        let o = probes::run(def, net, secrets, memory).await;
        assert!(o.success(), "{}: {}", def.id, o.detail);
    }
    let (before, _) = cpu();
    let t = Instant::now();
    for _ in 0..n {
        let o = probes::run(def, net, secrets, memory).await;
        assert!(o.success(), "{}: {}", def.id, o.detail);
    }
    let wall = t.elapsed();
    let (after, _) = cpu();
    ((after - before) / n as u32, wall / n as u32)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = if common::smoke() { 5 } else { 400 };
    let peer = OidcPeer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cc_secret"), "probe-cc-secret").expect("secret");
    std::fs::write(dir.path().join("web_secret"), "probe-web-secret").expect("secret");
    std::fs::write(dir.path().join("alice_password"), "alice-password").expect("secret");
    let catalog = authpulse_proto::catalog::load_str(
        "bench.yaml",
        &format!(
            "probes:
  - id: cc
    kind: client_credentials
    issuer: {issuer}
    client_id: probe-cc
    client_secret: {{ secret: cc_secret }}
    scope: [api:read]
  - id: login
    kind: authorization_code
    issuer: {issuer}
    client_id: probe-web
    client_secret: {{ secret: web_secret }}
    redirect_uri: https://probe.invalid/cb
    username: alice
    password: {{ secret: alice_password }}
",
            issuer = peer.issuer
        ),
    )
    .expect("catalog");
    let net = NetContext::new().expect("net");
    let secrets = SecretStore::new(Some(dir.path().to_path_buf()));
    let memory = ProbeMemory::default();

    let (cc_cpu, cc_wall) = per_run(&catalog.probes[0], &net, &secrets, &memory, n).await;
    let (ac_cpu, ac_wall) = per_run(&catalog.probes[1], &net, &secrets, &memory, n / 4 + 1).await;

    // curl: the same token request, n times in one process, new connection each.
    let token_url = format!("{}/token", peer.issuer);
    let mut config = String::new();
    for i in 0..n {
        if i > 0 {
            config.push_str("next\n");
        }
        config.push_str(&format!(
            "url = \"{token_url}\"\nuser = \"probe-cc:probe-cc-secret\"\ndata = \"grant_type=client_credentials&scope=api:read\"\nheader = \"Connection: close\"\noutput = \"/dev/null\"\nsilent\n"
        ));
    }
    let cfg = dir.path().join("curl.cfg");
    std::fs::write(&cfg, config).expect("curl config");
    let (_, children_before) = cpu();
    let t = Instant::now();
    let status = std::process::Command::new("curl")
        .arg("-K")
        .arg(&cfg)
        .status()
        .expect("curl runs");
    assert!(status.success(), "curl failed");
    let curl_wall = t.elapsed() / n as u32;
    let (_, children_after) = cpu();
    let curl_cpu = (children_after - children_before) / n as u32;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = |d: Duration| {
        if curl_cpu.is_zero() {
            f64::NAN
        } else {
            d.as_secs_f64() / curl_cpu.as_secs_f64()
        }
    };
    println!(
        "probe CPU per run against oidc-provider on 127.0.0.1 ({n} client_credentials runs, {} logins)",
        n / 4 + 1
    );
    common::row(
        "client_credentials probe CPU",
        format!("{:.3}", ms(cc_cpu)),
        "ms/run",
        format!(
            "{:.2}x curl's token request; {:.2} ms wall/run",
            ratio(cc_cpu),
            ms(cc_wall)
        ),
    );
    common::row(
        "authorization_code probe CPU",
        format!("{:.3}", ms(ac_cpu)),
        "ms/run",
        format!(
            "{:.2}x curl's token request; {:.2} ms wall/run",
            ratio(ac_cpu),
            ms(ac_wall)
        ),
    );
    common::row(
        "curl token request CPU",
        format!("{:.3}", ms(curl_cpu)),
        "ms/request",
        format!("reference; {:.2} ms wall/request", ms(curl_wall)),
    );
    drop(peer);
}
