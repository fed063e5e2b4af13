//! The one builder of wire `ProbeResult`s that tests and benchmarks share:
//! a result as a real agent sends it (success, started a second ago,
//! 120 ms long with DNS/connect/TTFB phases, assignment version 1), changed
//! only where a test cares. One shape everywhere, so a field added to the
//! wire is filled in one place.
use std::time::SystemTime;

use authpulse_proto::v1::{FailureClass, Outcome, ProbeResult, StepResult, Timings};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A result being built; [`ResultBuilder::build`] gives the wire message.
#[derive(Clone, Debug)]
pub struct ResultBuilder(ProbeResult);

/// Result `seq` of `probe` from `agent` in `region`: a success started a
/// second ago, 120 ms long.
pub fn probe_result(agent: &str, region: &str, seq: u64, probe: &str) -> ResultBuilder {
    ResultBuilder(ProbeResult {
        agent_id: agent.into(),
        seq,
        probe_id: probe.into(),
        region: region.into(),
        started_unix_ms: now_ms() - 1_000,
        outcome: Outcome::Success as i32,
        assignment_version: 1,
        ..Default::default()
    })
    .total_us(120_000)
}

impl ResultBuilder {
    /// When the run started (unix ms).
    pub fn started(mut self, unix_ms: i64) -> Self {
        self.0.started_unix_ms = unix_ms;
        self
    }

    /// The run's length: the duration and the timings' total, with DNS
    /// 1.5 ms, connect 2 ms and time to first byte half the total.
    pub fn total_us(mut self, total_us: u64) -> Self {
        self.0.duration_us = total_us;
        self.0.timings = Some(Timings {
            dns_us: Some(1_500),
            connect_us: Some(2_000),
            tls_us: None,
            ttfb_us: Some(total_us / 2),
            total_us,
        });
        self
    }

    /// Replaces the phase timings (the duration follows their total).
    pub fn timings(mut self, timings: Timings) -> Self {
        self.0.duration_us = timings.total_us;
        self.0.timings = Some(timings);
        self
    }

    /// A failure of `class` with `detail`.
    pub fn failed(mut self, class: FailureClass, detail: &str) -> Self {
        self.0.outcome = Outcome::Failure as i32;
        self.0.failure_class = class as i32;
        self.0.detail = detail.into();
        self
    }

    /// A success when `ok`, else an `http_status` failure "HTTP 503".
    pub fn ok(self, ok: bool) -> Self {
        if ok {
            self
        } else {
            self.failed(FailureClass::HttpStatus, "HTTP 503")
        }
    }

    /// Adds a failed step `name` of `kind` with `class` and `detail`.
    pub fn failed_step(
        mut self,
        name: &str,
        kind: &str,
        class: FailureClass,
        detail: &str,
    ) -> Self {
        self.0.steps.push(StepResult {
            name: name.into(),
            kind: kind.into(),
            outcome: Outcome::Failure as i32,
            failure_class: class as i32,
            detail: detail.into(),
            ..Default::default()
        });
        self
    }

    /// The catalog assignment version the agent ran it under.
    pub fn assignment_version(mut self, version: u64) -> Self {
        self.0.assignment_version = version;
        self
    }

    pub fn build(self) -> ProbeResult {
        self.0
    }
}

/// Result `i` as an agent's spool typically holds it: a two-step OIDC
/// journey (discovery, token) with phase timings and a detail line, about
/// 300 bytes encoded; `seq` 0 (the spool numbers records).
pub fn spool_record(i: u64) -> ProbeResult {
    let step = |name: &str| StepResult {
        name: name.into(),
        kind: "http".into(),
        outcome: Outcome::Success as i32,
        failure_class: FailureClass::Unspecified as i32,
        timings: Some(Timings {
            dns_us: Some(1200),
            connect_us: Some(3400),
            tls_us: Some(8800),
            ttfb_us: Some(15000),
            total_us: 31000,
        }),
        detail: format!(
            "200 OK from https://login.example.com/realms/prod/{name}; issuer and jwks_uri match"
        ),
    };
    let mut r = probe_result("agent-eu-west-1a", "eu-west-1", 0, &format!("probe-{i}"))
        .started(1_700_000_000_000 + i64::try_from(i).unwrap_or(0))
        .timings(Timings {
            dns_us: Some(1200),
            connect_us: None,
            tls_us: None,
            ttfb_us: Some(15000),
            total_us: 52000,
        })
        .assignment_version(7)
        .build();
    r.steps = vec![step("discovery"), step("token")];
    r.detail = "oidc discovery and client-credentials token ok".into();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_recent_success_with_consistent_timings() {
        let r = probe_result("a", "eu", 7, "p").build();
        assert_eq!(r.outcome, Outcome::Success as i32);
        assert_eq!(r.failure_class, FailureClass::Unspecified as i32);
        assert_eq!(r.duration_us, r.timings.as_ref().expect("timings").total_us);
        assert!((now_ms() - r.started_unix_ms - 1_000).abs() < 5_000);
        let f = probe_result("a", "eu", 8, "p")
            .ok(false)
            .total_us(7_000)
            .build();
        assert_eq!(f.failure_class, FailureClass::HttpStatus as i32);
        assert_eq!(f.duration_us, 7_000);
    }
}
