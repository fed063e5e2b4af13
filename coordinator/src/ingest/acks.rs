//! Where the acknowledgement of one stream stands: the ack advances over
//! contiguous stored seqs only, and an agent's low watermark settles what it
//! dropped.

use std::collections::BTreeSet;

/// Where the acknowledgement of one stream stands: the highest seq below
/// which everything is settled, and the seqs stored above it that are still
/// waiting for the gap below them to fill.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckTracker {
    acked: u64,
    above: BTreeSet<u64>,
}

/// Acks are stored as SQLite integers.
pub(super) const MAX_ACK: u64 = i64::MAX as u64;

impl AckTracker {
    pub fn new(acked: u64) -> AckTracker {
        AckTracker {
            acked: acked.min(MAX_ACK),
            above: BTreeSet::new(),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether `seq` is known to be settled (stored or given up) already.
    pub fn settled(&self, seq: u64) -> bool {
        seq <= self.acked || self.above.contains(&seq)
    }

    /// Records that `seqs` are durably stored and that the agent holds
    /// nothing below `low_watermark` (0 = no statement), and returns the new ack.
    pub fn stored(&mut self, seqs: impl IntoIterator<Item = u64>, low_watermark: u64) -> u64 {
        self.above
            .extend(seqs.into_iter().filter(|s| *s > self.acked));
        if low_watermark > 0 {
            self.acked = self.acked.max((low_watermark - 1).min(MAX_ACK));
            self.above = self.above.split_off(&(self.acked + 1));
        }
        while self.acked < MAX_ACK && self.above.remove(&(self.acked + 1)) {
            self.acked += 1;
        }
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_advances_over_contiguous_seqs_only() {
        let mut a = AckTracker::new(0);
        assert_eq!(a.stored([1, 2, 4], 0), 2);
        assert_eq!(a.stored([3], 0), 4);
        assert_eq!(a.stored([4, 3], 0), 4);
        assert_eq!(a.stored([6], 0), 4);
        assert_eq!(a.stored([5], 0), 6);
    }

    #[test]
    fn low_watermark_settles_below() {
        let mut a = AckTracker::new(0);
        assert_eq!(a.stored([10, 11], 10), 11);
        // Seqs the agent dropped (12..14) are settled by a later watermark.
        assert_eq!(a.stored([15, 17], 15), 15);
        assert_eq!(a.stored([], 17), 17);
        // A watermark below the ack changes nothing.
        assert_eq!(a.stored([], 3), 17);
    }

    #[test]
    fn ack_starts_from_stored() {
        let mut a = AckTracker::new(41);
        assert_eq!(a.stored([40, 41], 0), 41);
        assert_eq!(a.stored([42], 0), 42);
        let mut huge = AckTracker::new(0);
        assert_eq!(huge.stored([], u64::MAX), MAX_ACK);
    }
}
