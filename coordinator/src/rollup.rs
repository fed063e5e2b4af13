//! In-memory roll-ups of the per-minute aggregates, so evaluating thousands
//! of SLOs never scans weeks of minute rows. Per series (probe, latency
//! threshold, region) it keeps the last three days and a bit by minute, and
//! everything the minute retention keeps by hour and by UTC day. A window
//! `[s, now]` is then at most 59 minutes + 23 hours + its days. When `s` is
//! older than the minute ring (a 28-day window's first, partial hour), the
//! caller passes those few minutes in from the database as "edges".
//!
//! The store owns the one instance, loads it at open (hours and days from
//! the persisted hourly sums, the ring from the recent minute rows), and
//! applies each committed batch's minute deltas to it under the same lock
//! the write path holds, so the roll-ups always equal `minute_counts`.
use std::collections::{BTreeMap, HashMap};

use crate::store::MinuteSums;

/// Minutes kept by minute: the longest burn window (3d) plus 3 hours, so
/// every burn window's first partial hour is in memory.
pub const MINUTE_SLOTS: i64 = 3 * 24 * 60 + 180;
const HOUR: i64 = 60;
const DAY: i64 = 24 * 60;

/// (probe, threshold µs, region): the key of [`MinuteSums`].
pub type SeriesKey = (String, u64, String);

/// A series key borrowed as `(&str, u64, &str)`, so finding an existing
/// series allocates nothing: the load at open looks one up per stored row
/// (half a million), ingest one per minute delta. Hashes exactly as
/// [`SeriesKey`] does (a `String` hashes as its `str`).
trait SeriesRef {
    fn parts(&self) -> (&str, u64, &str);
}

impl SeriesRef for SeriesKey {
    fn parts(&self) -> (&str, u64, &str) {
        (&self.0, self.1, &self.2)
    }
}

impl SeriesRef for (&str, u64, &str) {
    fn parts(&self) -> (&str, u64, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn SeriesRef + 'a> for SeriesKey {
    fn borrow(&self) -> &(dyn SeriesRef + 'a) {
        self
    }
}

impl std::hash::Hash for dyn SeriesRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn SeriesRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn SeriesRef + '_ {}

/// Slots per chunk of the minute ring. Chunks are allocated on first use,
/// so a series that saw a few minutes costs a chunk or two (~1.4 KB each),
/// not the whole ring (~108 KB): series come and go with the catalog and
/// with what agents report.
const CHUNK: usize = 60;
const CHUNKS: usize = MINUTE_SLOTS as usize / CHUNK;
const _: () = assert!(CHUNKS * CHUNK == MINUTE_SLOTS as usize);

/// (minute, good, total); `i64::MIN` marks a slot never written.
type Slot = (i64, u64, u64);
const EMPTY: Slot = (i64::MIN, 0, 0);

/// The ring by `minute % MINUTE_SLOTS`, allocated a chunk at a time.
#[derive(Default)]
struct MinuteRing {
    chunks: Vec<Option<Box<[Slot; CHUNK]>>>,
}

impl MinuteRing {
    fn index(minute: i64) -> (usize, usize) {
        let i = minute.rem_euclid(MINUTE_SLOTS) as usize;
        (i / CHUNK, i % CHUNK)
    }

    fn get(&self, minute: i64) -> Option<&Slot> {
        let (c, o) = Self::index(minute);
        self.chunks.get(c)?.as_ref().map(|chunk| &chunk[o])
    }

    fn get_mut(&mut self, minute: i64) -> &mut Slot {
        let (c, o) = Self::index(minute);
        if self.chunks.is_empty() {
            self.chunks.resize_with(CHUNKS, || None);
        }
        &mut self.chunks[c].get_or_insert_with(|| Box::new([EMPTY; CHUNK]))[o]
    }
}

#[derive(Default)]
struct Series {
    /// Ring by `minute % MINUTE_SLOTS`: (minute, good, total).
    minutes: MinuteRing,
    /// Hour index (minute / 60) → sums.
    hours: HashMap<i64, (u64, u64)>,
    /// UTC day index (minute / 1440) → sums.
    days: BTreeMap<i64, (u64, u64)>,
}

impl Series {
    fn add(&mut self, minute: i64, good: u64, total: u64) {
        self.add_to_ring(minute, good, total);
        let h = self.hours.entry(minute.div_euclid(HOUR)).or_default();
        h.0 += good;
        h.1 += total;
        let d = self.days.entry(minute.div_euclid(DAY)).or_default();
        d.0 += good;
        d.1 += total;
    }

    /// Adds to the ring slot of `minute` only (not its hour or day).
    fn add_to_ring(&mut self, minute: i64, good: u64, total: u64) {
        let slot = self.minutes.get_mut(minute);
        if slot.0 == minute {
            slot.1 += good;
            slot.2 += total;
        } else if slot.0 < minute {
            // The slot held a minute that has left the ring.
            *slot = (minute, good, total);
        }
        // else: older than the ring; only hours and days keep it.
    }

    /// Makes `minute` hold (good, total), moving its hour and day by the
    /// difference. Only for minutes the ring can hold (see [`Rollup::set`]).
    fn set(&mut self, minute: i64, good: u64, total: u64) {
        let (old_good, old_total) = self.minute(minute).unwrap_or((0, 0));
        if (old_good, old_total) == (good, total) {
            return;
        }
        *self.minutes.get_mut(minute) = (minute, good, total);
        let shift = |v: &mut (u64, u64)| {
            v.0 = (v.0 + good).saturating_sub(old_good);
            v.1 = (v.1 + total).saturating_sub(old_total);
        };
        shift(self.hours.entry(minute.div_euclid(HOUR)).or_default());
        shift(self.days.entry(minute.div_euclid(DAY)).or_default());
    }

    fn minute(&self, m: i64) -> Option<(u64, u64)> {
        let slot = self.minutes.get(m)?;
        (slot.0 == m).then_some((slot.1, slot.2))
    }

    /// Sums over minutes `>= since`, with `edge` standing in for the minutes
    /// `[since, next hour)` when they are older than the ring.
    fn since(&self, since: i64, ring_start: i64, edge: Option<(u64, u64)>) -> (u64, u64) {
        let first_hour = since.div_euclid(HOUR) + i64::from(since.rem_euclid(HOUR) != 0);
        let first_day = first_hour.div_euclid(24) + i64::from(first_hour.rem_euclid(24) != 0);
        let mut acc = (0u64, 0u64);
        let mut add = |(g, t): (u64, u64)| {
            acc.0 += g;
            acc.1 += t;
        };
        if since < first_hour * HOUR {
            if since >= ring_start {
                for m in since..first_hour * HOUR {
                    if let Some(c) = self.minute(m) {
                        add(c);
                    }
                }
            } else if let Some(e) = edge {
                add(e);
            }
        }
        for h in first_hour..(first_day * 24) {
            if let Some(c) = self.hours.get(&h) {
                add(*c);
            }
        }
        for (_, c) in self.days.range(first_day..) {
            add(*c);
        }
        acc
    }

    fn prune(&mut self, before_minute: i64) {
        let h = before_minute.div_euclid(HOUR);
        let d = before_minute.div_euclid(DAY);
        self.hours.retain(|k, _| *k >= h);
        self.days = self.days.split_off(&d);
    }

    fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }
}

/// The roll-ups of every series.
pub struct Rollup {
    series: HashMap<SeriesKey, Series>,
    /// Newest minute seen, which positions the ring.
    newest: i64,
    /// The oldest minute whose ring slots are complete: a store loads the
    /// recent hours of the ring at open and the rest in the background
    /// (SQLite), lowering this as it goes. Older minutes count as outside
    /// the ring until then (their first partial hour comes from the
    /// database, as for windows older than the ring).
    floor: i64,
}

impl Default for Rollup {
    fn default() -> Self {
        Rollup {
            series: HashMap::new(),
            newest: 0,
            floor: i64::MIN,
        }
    }
}

impl Rollup {
    /// Runs `f` on the series, created if new.
    fn with_series(
        &mut self,
        probe: &str,
        threshold_us: u64,
        region: &str,
        f: impl FnOnce(&mut Series),
    ) {
        let key: &dyn SeriesRef = &(probe, threshold_us, region);
        match self.series.get_mut(key) {
            Some(series) => f(series),
            None => f(self
                .series
                .entry((probe.to_string(), threshold_us, region.to_string()))
                .or_default()),
        }
    }

    pub fn add(
        &mut self,
        probe: &str,
        region: &str,
        minute: i64,
        threshold_us: u64,
        good: u64,
        total: u64,
    ) {
        self.newest = self.newest.max(minute);
        self.with_series(probe, threshold_us, region, |s| s.add(minute, good, total));
    }

    /// Adds the sums of one hour of a series (a `hour_counts` row, read at
    /// open): hours and days only.
    pub fn add_hour(
        &mut self,
        probe: &str,
        region: &str,
        hour: i64,
        threshold_us: u64,
        good: u64,
        total: u64,
    ) {
        self.with_series(probe, threshold_us, region, |series| {
            let h = series.hours.entry(hour).or_default();
            h.0 += good;
            h.1 += total;
            let d = series
                .days
                .entry((hour * HOUR).div_euclid(DAY))
                .or_default();
            d.0 += good;
            d.1 += total;
        });
    }

    /// Puts one stored minute of a series into the minute ring only: its
    /// hour and day already count it (loaded from `hour_counts` at open).
    pub fn add_ring_minute(
        &mut self,
        probe: &str,
        region: &str,
        minute: i64,
        threshold_us: u64,
        good: u64,
        total: u64,
    ) {
        self.newest = self.newest.max(minute);
        self.with_series(probe, threshold_us, region, |s| {
            s.add_to_ring(minute, good, total)
        });
    }

    /// Makes one minute of a series hold the stored (good, total), e.g. a
    /// row another coordinator wrote. False when the minute is older than
    /// the ring: its previous value is not known here, so the caller must
    /// rebuild the roll-ups from the table.
    #[allow(clippy::too_many_arguments)]
    pub fn set(
        &mut self,
        probe: &str,
        region: &str,
        minute: i64,
        threshold_us: u64,
        good: u64,
        total: u64,
        now_minute: i64,
    ) -> bool {
        if minute < self.ring_start(now_minute) {
            return false;
        }
        self.newest = self.newest.max(minute);
        self.with_series(probe, threshold_us, region, |s| s.set(minute, good, total));
        true
    }

    /// The first minute the ring still holds for a clock at `now_minute`.
    pub fn ring_start(&self, now_minute: i64) -> i64 {
        (now_minute.max(self.newest) - MINUTE_SLOTS + 1).max(self.floor)
    }

    /// See [`Rollup::set_ring_floor`].
    pub fn ring_floor(&self) -> i64 {
        self.floor
    }

    /// Marks the ring complete from `minute` on (see the field's doc).
    pub fn set_ring_floor(&mut self, minute: i64) {
        self.floor = minute;
    }

    /// Makes the ring slot of one minute hold the stored (good, total),
    /// not touching its hour or day (the background ring fill below the
    /// floor: the value read replaces whatever a batch added meanwhile,
    /// since the database already counts that batch).
    pub fn fill_ring_minute(
        &mut self,
        probe: &str,
        region: &str,
        minute: i64,
        threshold_us: u64,
        good: u64,
        total: u64,
    ) {
        self.with_series(probe, threshold_us, region, |s| {
            let slot = s.minutes.get_mut(minute);
            // A newer minute in the slot (one from the future) stays.
            if slot.0 <= minute {
                *slot = (minute, good, total);
            }
        });
    }

    /// Start minutes that need edges from the database: older than the ring
    /// and not on an hour boundary.
    pub fn edges_needed(&self, since_minutes: &[i64], now_minute: i64) -> Vec<i64> {
        let ring_start = self.ring_start(now_minute);
        let mut v: Vec<i64> = since_minutes
            .iter()
            .copied()
            .filter(|s| *s < ring_start && s.rem_euclid(HOUR) != 0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Like [`crate::store::Store::minute_sums`]: per series of `probes`, the
    /// sums over minutes `>= since_minutes[i]`. `edges` holds, per start
    /// returned by [`Rollup::edges_needed`], the sums of `[start, next hour)`.
    pub fn sums(
        &self,
        probes: &[String],
        since_minutes: &[i64],
        now_minute: i64,
        edges: &HashMap<i64, HashMap<SeriesKey, (u64, u64)>>,
    ) -> MinuteSums {
        let ring_start = self.ring_start(now_minute);
        let wanted: std::collections::HashSet<&str> = probes.iter().map(String::as_str).collect();
        let mut out = MinuteSums::new();
        for (key, series) in &self.series {
            if !wanted.contains(key.0.as_str()) {
                continue;
            }
            let v = since_minutes
                .iter()
                .map(|s| {
                    let edge = edges.get(s).map(|e| e.get(key).copied().unwrap_or((0, 0)));
                    series.since(*s, ring_start, edge)
                })
                .collect();
            out.insert(key.clone(), v);
        }
        out
    }

    /// Drops what is older than `before_minute` (the minute retention).
    pub fn prune(&mut self, before_minute: i64) {
        for s in self.series.values_mut() {
            s.prune(before_minute);
        }
        self.series.retain(|_, s| !s.is_empty());
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollup")
            .field("series", &self.series.len())
            .field("newest", &self.newest)
            .field("floor", &self.floor)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_allocated_a_chunk_at_a_time() {
        let mut s = Series::default();
        assert!(s.minutes.chunks.is_empty());
        s.add(100, 1, 2);
        s.add(101, 0, 1);
        let allocated = s.minutes.chunks.iter().filter(|c| c.is_some()).count();
        assert_eq!(allocated, 1);
        assert_eq!(s.minute(100), Some((1, 2)));
        assert_eq!(s.minute(102), None);
        // A minute one ring later reuses the slot.
        s.add(100 + MINUTE_SLOTS, 1, 1);
        assert_eq!(s.minute(100), None);
        assert_eq!(s.minute(100 + MINUTE_SLOTS), Some((1, 1)));
    }

    /// A ring loaded at open only from `floor` on: starts further back need
    /// edges until the fill lowers the floor; a batch for a minute below
    /// the floor counts in hours and days at once, and the fill's stored
    /// value (which already includes it) then replaces the slot.
    #[test]
    fn the_ring_below_its_floor_is_filled_later() {
        let now = 29_000_000i64;
        let mut r = Rollup::default();
        r.add_hour("p", "eu", now.div_euclid(HOUR) - 5, 0, 50, 60);
        r.add_hour("p", "eu", now.div_euclid(HOUR), 0, 1, 1);
        r.add_ring_minute("p", "eu", now, 0, 1, 1);
        let floor = now.div_euclid(HOUR) * HOUR - 60;
        r.set_ring_floor(floor);
        let start = floor - 5 * HOUR + 20;
        assert_eq!(r.edges_needed(&[start, floor + 7], now), vec![start]);
        // A late batch below the floor: hours and days count it.
        r.add("p", "eu", start + 1, 0, 2, 2);
        // The fill reads the stored minutes of that hour (with the batch).
        r.fill_ring_minute("p", "eu", start + 1, 0, 3, 4);
        r.fill_ring_minute("p", "eu", start + 30, 0, 4, 5);
        r.set_ring_floor(i64::MIN);
        assert!(r.edges_needed(&[start], now).is_empty());
        let key = ("p".to_string(), 0, "eu".to_string());
        let sums = r.sums(&["p".to_string()], &[start], now, &HashMap::new());
        // The first, partial hour from the ring (both filled minutes, the
        // batch's counted once), then the two later hours.
        assert_eq!(sums[&key][0], (3 + 4 + 50 + 1, 4 + 5 + 60 + 1));
    }

    /// Brute force over a dense random history: every start minute, old or
    /// recent, on or off an hour boundary, sums to the same as the rows.
    #[test]
    fn sums_equal_brute_force_for_every_start() {
        let now = 29_000_000i64; // a minute index in 2025
        let mut rows: Vec<(i64, u64, u64)> = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut r = Rollup::default();
        for m in (now - 8 * DAY)..=now {
            if next() % 5 == 0 {
                continue;
            }
            let t = next() % 4 + 1;
            let g = next() % (t + 1);
            rows.push((m, g, t));
            r.add("p", "eu", m, 0, g, t);
        }
        let key = ("p".to_string(), 0, "eu".to_string());
        let ring_start = r.ring_start(now);
        let starts: Vec<i64> = vec![
            now - 5,
            now - 59,
            now - 60,
            now - 61,
            now - 3 * DAY,
            now - 3 * DAY - 17,
            now - 7 * DAY - 33,
            now - 7 * DAY - (now - 7 * DAY).rem_euclid(60),
        ];
        let mut edges: HashMap<i64, HashMap<SeriesKey, (u64, u64)>> = HashMap::new();
        for s in r.edges_needed(&starts, now) {
            let end = (s.div_euclid(60) + 1) * 60;
            let sum = rows
                .iter()
                .filter(|(m, _, _)| *m >= s && *m < end)
                .fold((0, 0), |a, (_, g, t)| (a.0 + g, a.1 + t));
            edges.entry(s).or_default().insert(key.clone(), sum);
        }
        assert!(
            edges.contains_key(&(now - 7 * DAY - 33)),
            "old edges come from outside"
        );
        assert!(starts.iter().any(|s| *s < ring_start));
        let sums = r.sums(&["p".to_string()], &starts, now, &edges);
        for (i, s) in starts.iter().enumerate() {
            let want = rows
                .iter()
                .filter(|(m, _, _)| m >= s)
                .fold((0, 0), |a, (_, g, t)| (a.0 + g, a.1 + t));
            assert_eq!(sums[&key][i], want, "start {s} (now - {})", now - s);
        }
        // Late data for an old minute reaches hours and days, not the ring.
        r.add("p", "eu", now - 5 * DAY, 0, 1, 1);
        // (An hour-aligned old start needs no edge.)
        let start = now - 6 * DAY - (now - 6 * DAY).rem_euclid(60);
        assert!(r.edges_needed(&[start], now).is_empty());
        let again = r.sums(&["p".to_string()], &[start], now, &HashMap::new());
        let want = rows
            .iter()
            .filter(|(m, _, _)| *m >= start)
            .fold((0, 0), |a, (_, g, t)| (a.0 + g, a.1 + t));
        assert_eq!(again[&key][0], (want.0 + 1, want.1 + 1));
        r.prune(now - 2 * DAY);
        let pruned = r.sums(&["p".to_string()], &[now - 8 * DAY], now, &HashMap::new());
        let want = rows
            .iter()
            .filter(|(m, _, _)| *m >= (now - 2 * DAY).div_euclid(DAY) * DAY)
            .fold((0, 0), |a, (_, g, t)| (a.0 + g, a.1 + t));
        assert_eq!(pruned[&key][0], want, "whole days before the cut are gone");
    }
}
