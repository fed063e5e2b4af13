//! The SLO numbers against a brute-force reference: a seeded random stream
//! of results (several probes, one that no SLO names, latencies around the
//! threshold, timestamps on both sides of every window edge), evaluated at a
//! fixed clock. Counts must match exactly; ratios to float precision.
//!
//! Windows are minute-aligned (the store keeps per-minute aggregates): a
//! window `w` at `now` covers every result started at or after the start of
//! the minute containing `now - w`. The reference applies that rule to the
//! raw rows itself.
mod common;

use authpulse_coordinator::slo::{self, BURN_WINDOWS};
use common::*;
use rand::{RngExt, SeedableRng};

const CATALOG_REF: &str = r#"
probes:
  - id: p-a
    kind: http
    url: https://a.example/
  - id: p-b
    kind: http
    url: https://b.example/
  - id: other
    kind: http
    url: https://c.example/
slos:
  - id: avail
    probes: [p-a, p-b]
    objective: 99.0
    window: 7d
  - id: fast
    probes: [p-a]
    objective: 95
    window: 1d
    sli: { latency: { threshold: 300ms } }
"#;

struct Row {
    probe: &'static str,
    ok: bool,
    started_ms: i64,
    total_us: u64,
}

/// Start of the minute containing `ms`.
fn minute_start(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60_000
}

fn reference(rows: &[Row], probes: &[&str], since: i64, threshold_us: Option<u64>) -> (u64, u64) {
    let since = minute_start(since);
    let mut good = 0;
    let mut total = 0;
    for r in rows
        .iter()
        .filter(|r| probes.contains(&r.probe) && r.started_ms >= since)
    {
        total += 1;
        if r.ok && threshold_us.is_none_or(|t| r.total_us <= t) {
            good += 1;
        }
    }
    (good, total)
}

#[tokio::test]
async fn slo_math_matches_a_brute_force_reference() {
    let h = start_with(CATALOG_REF).await;
    let now = now_ms();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_a11ce);
    let probes = ["p-a", "p-b", "other"];
    let mut rows = Vec::new();
    let eight_days = 8 * 86_400_000i64;
    for _ in 0..4000 {
        rows.push(Row {
            probe: probes[rng.random_range(0..probes.len())],
            ok: rng.random_range(0..100) < 93,
            started_ms: now - rng.random_range(0..eight_days),
            total_us: rng.random_range(50_000..600_000),
        });
    }
    // Exactly on the edges: a window includes its start instant, the whole
    // minute containing it, and nothing before that minute.
    for (_, w) in BURN_WINDOWS {
        let edge = now - w.as_millis() as i64;
        for started_ms in [edge, edge - 1, minute_start(edge), minute_start(edge) - 1] {
            rows.push(Row {
                probe: "p-a",
                ok: false,
                started_ms,
                total_us: 1,
            });
        }
    }
    let results: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            result_at(
                "ref",
                "eu-west",
                i as u64 + 1,
                r.probe,
                r.ok,
                r.started_ms,
                r.total_us,
            )
        })
        .collect();
    for chunk in results.chunks(500) {
        h.running
            .store()
            .insert_batch("ref", chunk)
            .await
            .expect("insert");
    }

    let catalog = h.running.catalog();
    let statuses = slo::evaluate(h.running.store(), &catalog, now)
        .await
        .expect("evaluate");
    assert_eq!(statuses.len(), 2);
    for (status, def) in statuses.iter().zip(&catalog.slos) {
        let names: Vec<&str> = def.probes.iter().map(String::as_str).collect();
        let threshold = match def.sli {
            authpulse_proto::catalog::Sli::Latency { threshold } => {
                Some(threshold.as_micros() as u64)
            }
            _ => None,
        };
        let allowed = 1.0 - def.objective / 100.0;
        let (good, total) = reference(
            &rows,
            &names,
            now - status.window.as_millis() as i64,
            threshold,
        );
        assert_eq!((status.good, status.total), (good, total), "{}", def.id);
        assert!(total > 100, "the stream covers the window: {total}");
        let bad_frac = (total - good) as f64 / total as f64;
        assert!((status.error_budget_remaining - (1.0 - bad_frac / allowed)).abs() < 1e-12);
        assert!((status.error_budget_events - total as f64 * allowed).abs() < 1e-9);
        for ((label, w), (got_label, got)) in BURN_WINDOWS.iter().zip(&status.burn_rates) {
            assert_eq!(label, got_label);
            let (g, t) = reference(&rows, &names, now - w.as_millis() as i64, threshold);
            let want = (t > 0).then(|| (t - g) as f64 / t as f64 / allowed);
            match (got, want) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() < 1e-12, "{} {label}: {a} vs {b}", def.id)
                }
                (a, b) => assert_eq!(*a, b, "{} {label}", def.id),
            }
        }
        let burn_1h = status.burn_rates[2].1;
        assert_eq!(status.burn_rate_1h, burn_1h);
        assert_eq!(
            status.time_to_exhaustion,
            slo::time_to_exhaustion(status.error_budget_remaining, burn_1h, status.window)
        );
    }
}
