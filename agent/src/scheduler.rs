//! Runs the assigned probes: each on its interval at a stable per-probe
//! offset (a hash of agent id and probe id, so a thousand 60 s probes spread
//! over the minute instead of firing together, and the same probe fires at
//! the same second after a restart), a per-run timeout, and a bound on runs
//! in flight. Applying a new assignment leaves unchanged probes' schedules
//! alone and restarts only what changed.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authpulse_proto::catalog::ProbeDef;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::http::NetContext;
use crate::probes::{self, ProbeOutcome};
use crate::secrets::SecretStore;
use crate::telemetry as t;

/// One finished run, on its way to the uplink.
#[derive(Debug)]
pub struct CompletedRun {
    pub probe_id: String,
    pub kind: &'static str,
    pub started_unix_ms: i64,
    pub assignment_version: u64,
    pub outcome: ProbeOutcome,
}

pub struct Shared {
    pub agent_id: String,
    /// The agent's region, for the fields of every probe run's log lines.
    pub region: String,
    pub net: NetContext,
    pub secrets: SecretStore,
    pub memory: crate::probes::ProbeMemory,
    pub permits: Semaphore,
    pub results: mpsc::Sender<CompletedRun>,
    pub version: AtomicU64,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    running: HashMap<String, (String, JoinHandle<()>)>,
}

/// Histogram, no labels: seconds from a run's scheduled slot to its actual
/// start (timer lateness plus waiting for a `max_concurrency` permit). Near
/// zero on a healthy agent; a growing tail means the agent is overloaded
/// (too many probes for its CPU or `max_concurrency`), and its results'
/// start times drift off the schedule.
pub const START_LATENESS: &str = "authpulse_agent_probe_start_lateness_seconds";

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Scheduler {
        metrics::describe_histogram!(
            START_LATENESS,
            metrics::Unit::Seconds,
            "Time from a probe run's scheduled slot to its actual start."
        );
        Scheduler {
            shared,
            running: HashMap::new(),
        }
    }

    /// Makes the running set equal `probes`. Returns (started, stopped).
    pub fn apply(&mut self, version: u64, probes: Vec<ProbeDef>) -> (usize, usize) {
        self.shared.version.store(version, Ordering::Relaxed);
        let mut wanted: HashMap<String, ProbeDef> =
            probes.into_iter().map(|p| (p.id.clone(), p)).collect();
        let mut stopped = 0;
        self.running.retain(|id, (json, handle)| {
            let keep = wanted.get(id).is_some_and(|p| &p.to_json() == json);
            if keep {
                wanted.remove(id);
            } else {
                handle.abort();
                stopped += 1;
            }
            keep
        });
        let started = wanted.len();
        for (id, def) in wanted {
            let json = def.to_json();
            let handle = tokio::spawn(probe_loop(Arc::new(def), self.shared.clone()));
            self.running.insert(id, (json, handle));
        }
        metrics::gauge!(t::PROBES_ASSIGNED).set(self.running.len() as f64);
        metrics::gauge!(t::ASSIGNMENT_VERSION).set(version as f64);
        (started, stopped)
    }

    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Relaxed)
    }

    pub fn probe_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.running.keys().cloned().collect();
        ids.sort();
        ids
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for (_, handle) in self.running.values() {
            handle.abort();
        }
    }
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Milliseconds into each interval at which this probe fires.
pub fn offset_ms(agent_id: &str, probe_id: &str, interval: Duration) -> u64 {
    let interval_ms = interval.as_millis().max(1) as u64;
    stable_hash(&[agent_id, probe_id]) % interval_ms
}

/// Time from `now_ms` (unix) to the next slot `k * interval + offset` after it.
pub fn until_next_slot(now_ms: u64, interval: Duration, offset_ms: u64) -> Duration {
    let interval_ms = interval.as_millis().max(1) as u64;
    let phase = (now_ms + interval_ms - offset_ms % interval_ms) % interval_ms;
    Duration::from_millis(interval_ms - phase)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How soon a newly assigned probe first runs: its offset squeezed into the
/// first [`FIRST_RUN_SPREAD`], so a fresh agent (or a catalog change) shows
/// results within seconds instead of up to a whole interval, still spread out.
pub fn first_delay(offset_ms: u64, interval: Duration) -> Duration {
    let interval_ms = interval.as_millis().max(1) as u64;
    let spread = FIRST_RUN_SPREAD.as_millis() as u64;
    if interval_ms <= spread {
        return Duration::from_millis(offset_ms % interval_ms);
    }
    Duration::from_millis(offset_ms * spread / interval_ms)
}

const FIRST_RUN_SPREAD: Duration = Duration::from_secs(5);

/// Delay to the next regular slot after a run, skipping a slot that comes
/// sooner than half an interval (right after the early first run).
fn next_delay(now: u64, interval: Duration, offset: u64) -> Duration {
    let d = until_next_slot(now, interval, offset);
    if d < interval / 2 { d + interval } else { d }
}

async fn probe_loop(def: Arc<ProbeDef>, shared: Arc<Shared>) {
    let offset = offset_ms(&shared.agent_id, &def.id, def.interval);
    let kind = def.kind();
    // The slot this run is due at, as a deadline: sleeping until it (rather
    // than for a delay measured before the previous run) keeps a run's own
    // duration out of the next one's start.
    let mut due = Instant::now() + first_delay(offset, def.interval);
    let mut run_metrics = RunMetrics::new(&def.id, kind);
    loop {
        tokio::time::sleep_until(due).await;
        let scheduled = now_ms();
        let this_due = due;
        due = Instant::now() + next_delay(scheduled, def.interval, offset);
        let Ok(permit) = shared.permits.acquire().await else {
            return;
        };
        let waited = now_ms().saturating_sub(scheduled);
        if waited > def.interval.as_millis() as u64 {
            metrics::counter!(t::SKIPPED, "probe" => def.id.clone())
                .increment(waited / def.interval.as_millis().max(1) as u64);
        }
        // Timer lateness plus the wait for a permit: how far behind its
        // schedule the agent is.
        run_metrics.lateness(this_due.elapsed().as_secs_f64());
        let started_unix_ms = now_ms() as i64;
        // Every line logged during the run (the agent's own and its
        // libraries') carries these fields. ERROR level so that the span is
        // enabled whatever filter is set: a `warn` filter must not strip the
        // probe from a warning.
        let span = tracing::error_span!(
            "probe",
            probe = %def.id,
            kind,
            region = %shared.region,
            agent_id = %shared.agent_id
        );
        // Boxed: a run's future is as big as the biggest probe kind's state
        // (about 10 KiB); inline, every idle probe task would hold that much
        // between runs (over 100 MB of RSS at 10,000 probes, see the `scale`
        // bench). Boxed, only runs in flight pay for it.
        let outcome = Box::pin(
            probes::run(&def, &shared.net, &shared.secrets, &shared.memory)
                .instrument(span.clone()),
        )
        .await;
        drop(permit);
        run_metrics.record(&outcome);
        span.in_scope(|| match &outcome.failure {
            None => tracing::debug!(total_ms = outcome.timings.total.as_millis() as u64, "probe ok"),
            Some(f) => tracing::info!(class = crate::class_name(f.class), detail = %outcome.detail, "probe failed"),
        });
        let run = CompletedRun {
            probe_id: def.id.clone(),
            kind,
            started_unix_ms,
            assignment_version: shared.version.load(Ordering::Relaxed),
            outcome,
        };
        if shared.results.send(run).await.is_err() {
            return;
        }
    }
}

/// One probe's series, each looked up once per probe task and then kept:
/// a lookup builds the labels (the probe id copied into a `String`), hashes
/// the key and searches the registry, which at 100 runs/s was a visible
/// part of the agent's CPU. A series is still created on its first use
/// only, so a probe that never failed has no failure series, as before.
struct RunMetrics {
    probe: String,
    kind: &'static str,
    lateness: Option<metrics::Histogram>,
    /// Runs by outcome: success, failure.
    runs: [Option<metrics::Counter>; 2],
    duration: Option<metrics::Histogram>,
    /// dns, connect, tls, ttfb (per kind, shared with the kind's other probes).
    phases: [Option<metrics::Histogram>; 4],
}

const PHASES: [&str; 4] = ["dns", "connect", "tls", "ttfb"];

impl RunMetrics {
    fn new(probe: &str, kind: &'static str) -> RunMetrics {
        RunMetrics {
            probe: probe.to_string(),
            kind,
            lateness: None,
            runs: [None, None],
            duration: None,
            phases: [None, None, None, None],
        }
    }

    fn lateness(&mut self, seconds: f64) {
        self.lateness
            .get_or_insert_with(|| metrics::histogram!(START_LATENESS))
            .record(seconds);
    }

    fn record(&mut self, o: &ProbeOutcome) {
        let (probe, kind) = (&self.probe, self.kind);
        let outcome = if o.success() { "success" } else { "failure" };
        self.runs[usize::from(!o.success())]
            .get_or_insert_with(|| {
                metrics::counter!(t::RUNS, "probe" => probe.clone(), "kind" => kind, "outcome" => outcome)
            })
            .increment(1);
        if let Some(f) = &o.failure {
            metrics::counter!(t::FAILURES, "probe" => probe.clone(), "kind" => kind, "class" => crate::class_name(f.class))
                .increment(1);
        }
        self.duration
            .get_or_insert_with(
                || metrics::histogram!(t::DURATION, "probe" => probe.clone(), "kind" => kind),
            )
            .record(o.timings.total.as_secs_f64());
        let phases = [
            o.timings.dns,
            o.timings.connect,
            o.timings.tls,
            o.timings.ttfb,
        ];
        for ((slot, phase), d) in self.phases.iter_mut().zip(PHASES).zip(phases) {
            if let Some(d) = d {
                // By kind, not by probe: per probe these were most of the
                // agent's series (up to four histograms of 18 lines per
                // probe), its RSS and its /metrics page. `DURATION` stays
                // per probe.
                slot.get_or_insert_with(
                    || metrics::histogram!(t::PHASE, "kind" => kind, "phase" => phase),
                )
                .record(d.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(yaml: &str) -> Vec<ProbeDef> {
        authpulse_proto::catalog::load_str("t.yaml", yaml)
            .expect("catalog")
            .probes
    }

    #[tokio::test]
    async fn apply_restarts_only_what_changed() {
        let (tx, _rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            agent_id: "a".into(),
            region: "local".into(),
            net: NetContext::new().expect("net"),
            secrets: SecretStore::new(None),
            memory: crate::probes::ProbeMemory::default(),
            permits: Semaphore::new(4),
            results: tx,
            version: AtomicU64::new(0),
        });
        let mut s = Scheduler::new(shared);
        let p = |id: &str, url: &str| {
            format!(
                "  - id: {id}\n    kind: http\n    url: {url}\n    interval: 1h\n    timeout: 1s\n"
            )
        };
        let v1 = probes(&format!(
            "probes:\n{}{}",
            p("keep", "http://127.0.0.1:9/a"),
            p("change", "http://127.0.0.1:9/b")
        ));
        assert_eq!(s.apply(1, v1), (2, 0));
        let keep_task = s.running["keep"].1.id();
        let v2 = probes(&format!(
            "probes:\n{}{}{}",
            p("keep", "http://127.0.0.1:9/a"),
            p("change", "http://127.0.0.1:9/CHANGED"),
            p("new", "http://127.0.0.1:9/c")
        ));
        // `change` restarts, `new` starts, `keep` keeps its task (and schedule).
        assert_eq!(s.apply(2, v2), (2, 1));
        assert_eq!(s.running["keep"].1.id(), keep_task);
        assert_eq!(s.apply(3, Vec::new()), (0, 3));
        assert!(s.probe_ids().is_empty());
        assert_eq!(s.version(), 3);
    }

    /// Phase histograms are per kind and phase, durations per probe; the
    /// page grows by about one duration histogram per probe. 1,000 `http`
    /// and `tls` probes rendered 1,694,542 bytes (1,694 per probe) when this
    /// was written; with per-probe phase histograms it was about 4.6 MB
    /// (issue 17). The bound leaves room for longer probe ids and still
    /// fails if per-probe phase series come back (about 5 KB more a probe).
    #[test]
    fn phase_series_are_per_kind_and_the_page_per_probe_is_bounded() {
        use crate::http::Timings;
        let recorder = t::builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        let ms = Duration::from_millis;
        let probes = 1_000;
        metrics::with_local_recorder(&recorder, || {
            t::describe();
            for i in 0..probes {
                let (kind, tls) = if i % 2 == 0 {
                    ("http", None)
                } else {
                    ("tls", Some(ms(3)))
                };
                let outcome = ProbeOutcome {
                    failure: None,
                    timings: Timings {
                        dns: Some(ms(1)),
                        connect: Some(ms(2)),
                        tls,
                        ttfb: Some(ms(4)),
                        total: ms(10),
                    },
                    steps: Vec::new(),
                    detail: String::new(),
                };
                for _ in 0..3 {
                    RunMetrics::new(&format!("probe-{i:05}"), kind).record(&outcome);
                }
            }
        });
        let page = handle.render();
        let label_names = |line: &str| -> Vec<String> {
            let Some((_, rest)) = line.split_once('{') else {
                return Vec::new();
            };
            let labels = rest.split_once('}').map_or(rest, |(l, _)| l);
            labels
                .split("\",")
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                .collect()
        };
        let phase_counts: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with(&format!("{}_count", t::PHASE)))
            .collect();
        // http: dns, connect, ttfb; tls: those and tls.
        assert_eq!(phase_counts.len(), 7, "{phase_counts:#?}");
        for line in &phase_counts {
            assert_eq!(label_names(line), ["kind", "phase"], "{line}");
            assert!(line.ends_with(" 1500"), "{line}");
        }
        let duration_counts = page
            .lines()
            .filter(|l| l.starts_with(&format!("{}_count", t::DURATION)))
            .inspect(|l| assert_eq!(label_names(l), ["probe", "kind"], "{l}"))
            .count();
        assert_eq!(duration_counts, probes);
        let per_probe = page.len() / probes;
        assert!(
            per_probe <= 2_000,
            "/metrics grew to {} bytes at {probes} probes ({per_probe} per probe)",
            page.len()
        );
    }

    /// A run that takes 400 ms must not push the next run 400 ms off its
    /// slot, and every start is recorded in the lateness histogram.
    #[tokio::test]
    async fn slow_runs_do_not_delay_the_next_start() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // current_thread runtime: every task runs here, under this recorder.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        let (tx, mut rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            agent_id: "a".into(),
            region: "local".into(),
            net: NetContext::new().expect("net"),
            secrets: SecretStore::new(None),
            memory: crate::probes::ProbeMemory::default(),
            permits: Semaphore::new(4),
            results: tx,
            version: AtomicU64::new(0),
        });
        let mut s = Scheduler::new(shared);
        s.apply(
            1,
            probes(&format!(
                "probes:\n  - id: slow\n    kind: http\n    url: http://{addr}/\n    interval: 1s\n    timeout: 1s\n"
            )),
        );
        let mut starts = Vec::new();
        for _ in 0..3 {
            let run = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a run within 5 s")
                .expect("scheduler running");
            assert!(run.outcome.success(), "{}", run.outcome.detail);
            assert!(run.outcome.timings.total >= Duration::from_millis(400));
            starts.push(run.started_unix_ms);
        }
        // Runs 2 and 3 start on their slots (k * 1 s + offset), not 400 ms
        // after them (a sleep measured before the run used to add it).
        let offset = offset_ms("a", "slow", Duration::from_secs(1)) as i64;
        for start in &starts[1..] {
            let late_ms = (start - offset).rem_euclid(1000);
            assert!(late_ms < 100, "started {late_ms} ms after its slot");
        }
        let text = handle.render();
        let value = |suffix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{START_LATENESS}{suffix} ")))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {START_LATENESS}{suffix} in\n{text}"))
        };
        assert!(value("_count") >= 3.0);
        assert!(
            value("_sum") < 0.2,
            "lateness sum {} s over {} runs",
            value("_sum"),
            value("_count")
        );
    }

    #[test]
    fn next_slot_lands_on_offset() {
        let i = Duration::from_secs(60);
        // now = 10 s into the minute, offset 15 s → 5 s to wait.
        assert_eq!(
            until_next_slot(120_000 + 10_000, i, 15_000),
            Duration::from_secs(5)
        );
        // Exactly on the slot → a whole interval (never fire twice in one slot).
        assert_eq!(
            until_next_slot(120_000 + 15_000, i, 15_000),
            Duration::from_secs(60)
        );
        // Past the offset → wrap to next minute.
        assert_eq!(
            until_next_slot(120_000 + 20_000, i, 15_000),
            Duration::from_secs(55)
        );
    }

    #[test]
    fn first_run_comes_within_seconds_and_keeps_the_spread() {
        let minute = Duration::from_secs(60);
        assert_eq!(first_delay(0, minute), Duration::ZERO);
        assert_eq!(first_delay(30_000, minute), Duration::from_millis(2_500));
        assert_eq!(first_delay(59_999, minute), Duration::from_millis(4_999));
        // Intervals shorter than the spread keep their own offset.
        assert_eq!(
            first_delay(700, Duration::from_secs(2)),
            Duration::from_millis(700)
        );
        // After the early run, a slot less than half an interval away is skipped.
        assert_eq!(
            next_delay(120_000 + 10_000, minute, 15_000),
            Duration::from_secs(65)
        );
        assert_eq!(
            next_delay(120_000 + 20_000, minute, 15_000),
            Duration::from_secs(55)
        );
    }

    #[test]
    fn offsets_are_stable_and_spread() {
        let i = Duration::from_secs(60);
        assert_eq!(offset_ms("a", "p1", i), offset_ms("a", "p1", i));
        let mut per_second = [0u32; 60];
        for n in 0..1000 {
            per_second[(offset_ms("agent-1", &format!("probe-{n}"), i) / 1000) as usize] += 1;
        }
        // 1000 probes over 60 s: ~16.7 per second; no second may hold a crowd.
        let max = per_second.iter().copied().max().unwrap_or(0);
        assert!(max <= 35, "busiest second has {max} probes: {per_second:?}");
        assert!(
            per_second.iter().all(|&c| c > 0),
            "every second gets some: {per_second:?}"
        );
    }
}
