//! A mergeable latency sketch per probe, region and minute (DDSketch's
//! log-bucket scheme: value `v` goes to bucket `ceil(log_γ v)` with
//! `γ = (1 + α) / (1 − α)`, so any quantile is within relative error `α` =
//! 1 %). Merging two sketches adds bucket counts, so minutes merge into any
//! window exactly as if the runs had been sketched together.
//!
//! Written here rather than taken from `sketches-ddsketch` because that
//! crate keeps a dense bucket array and serializes only through serde: a
//! minute with one run would be stored as hundreds of bytes of JSON, while
//! the sparse varint encoding below takes 4–6 bytes per occupied bucket.

use std::collections::BTreeMap;

/// Relative accuracy of every quantile.
pub const ALPHA: f64 = 0.01;

/// Latencies in microseconds; 0 µs goes to a bucket of its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySketch {
    buckets: BTreeMap<i32, u64>,
    zeros: u64,
    max_us: u64,
}

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

fn bucket(us: u64) -> i32 {
    ((us as f64).ln() / gamma().ln()).ceil() as i32
}

/// The value a bucket stands for: the one that is within α of every value
/// in `(γ^(i−1), γ^i]`.
fn value(index: i32) -> f64 {
    2.0 * gamma().powi(index) / (1.0 + gamma())
}

impl LatencySketch {
    pub fn add(&mut self, us: u64) {
        if us == 0 {
            self.zeros += 1;
        } else {
            *self.buckets.entry(bucket(us)).or_default() += 1;
        }
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &LatencySketch) {
        for (k, v) in &other.buckets {
            *self.buckets.entry(*k).or_default() += v;
        }
        self.zeros += other.zeros;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.values().sum::<u64>()
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The `q`-quantile (0..=1) in µs, within 1 %; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The rank of the q-quantile among n sorted values (0-based).
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        if rank == n - 1 {
            return Some(self.max_us as f64);
        }
        if rank < self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        for (k, c) in &self.buckets {
            seen += c;
            if seen > rank {
                return Some(value(*k).min(self.max_us as f64));
            }
        }
        Some(self.max_us as f64)
    }

    /// Sparse encoding: version byte, varint zeros, varint max, then per
    /// bucket a zigzag varint key delta and a varint count.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        put(&mut out, self.zeros);
        put(&mut out, self.max_us);
        let mut last = 0i64;
        for (k, c) in &self.buckets {
            let d = i64::from(*k) - last;
            put(&mut out, ((d << 1) ^ (d >> 63)) as u64);
            put(&mut out, *c);
            last = i64::from(*k);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<LatencySketch> {
        let (&version, mut rest) = bytes.split_first()?;
        if version != 1 {
            return None;
        }
        let zeros = take(&mut rest)?;
        let max_us = take(&mut rest)?;
        let mut buckets = BTreeMap::new();
        let mut last = 0i64;
        while !rest.is_empty() {
            let z = take(&mut rest)?;
            let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
            last += d;
            buckets.insert(i32::try_from(last).ok()?, take(&mut rest)?);
        }
        Some(LatencySketch {
            buckets,
            zeros,
            max_us,
        })
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn take(rest: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent_of_the_exact_ones_and_merge_exactly() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values: Vec<u64> = (0..5000).map(|_| 1_000 + next() % 2_000_000).collect();
        values.push(0);
        let (a, b) = values.split_at(2000);
        let (mut sa, mut sb, mut all) = (
            LatencySketch::default(),
            LatencySketch::default(),
            LatencySketch::default(),
        );
        a.iter().for_each(|v| sa.add(*v));
        b.iter().for_each(|v| sb.add(*v));
        values.iter().for_each(|v| all.add(*v));
        sa.merge(&sb);
        assert_eq!(sa, all, "merging equals sketching together");
        values.sort_unstable();
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize] as f64;
            let got = all.quantile(q).expect("data");
            assert!(
                (got - exact).abs() <= exact * ALPHA + 1e-9,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(all.quantile(0.0), Some(0.0));
        assert_eq!(all.quantile(1.0), Some(*values.last().expect("max") as f64));
        assert_eq!(all.count(), 5001);
        let bytes = all.encode();
        assert_eq!(LatencySketch::decode(&bytes), Some(all.clone()));
        assert!(LatencySketch::decode(&bytes[..bytes.len() - 1]).is_none());
        // One run in a minute: a handful of bytes.
        let mut one = LatencySketch::default();
        one.add(123_456);
        assert!(one.encode().len() <= 8, "{}", one.encode().len());
        assert_eq!(LatencySketch::default().quantile(0.5), None);
    }
}
