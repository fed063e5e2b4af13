//! `authpulse probe`: one probe of a catalog run once on this machine, with
//! its outcome for a person or as JSON (and the login pages saved with
//! `--save-pages`).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use authpulse_agent::probes::ProbeOutcome;

pub(crate) async fn probe(
    catalog: &[PathBuf],
    id: &str,
    json: bool,
    secrets_dir: Option<PathBuf>,
    save_pages: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // AUTHPULSE_LOG, as for the other binaries (JSON lines on stderr).
    crate::init_logging();
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

pub(crate) fn ms(d: Option<std::time::Duration>) -> serde_json::Value {
    d.map(|d| serde_json::json!((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0))
        .unwrap_or(serde_json::Value::Null)
}

pub(crate) fn timings_json(t: &authpulse_agent::http::Timings) -> serde_json::Value {
    serde_json::json!({
        "dns_ms": ms(t.dns), "connect_ms": ms(t.connect), "tls_ms": ms(t.tls),
        "ttfb_ms": ms(t.ttfb), "total_ms": ms(Some(t.total)),
    })
}

pub(crate) fn outcome_json(id: &str, kind: &str, o: &ProbeOutcome) -> serde_json::Value {
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

pub(crate) fn print_outcome(id: &str, kind: &str, o: &ProbeOutcome) {
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
