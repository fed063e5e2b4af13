//! Retention: segments fully covered by the ack are deleted, and the
//! oldest ones while the spool is over its size bound (their unacknowledged
//! results recorded as dropped).
use super::error::SpoolError;
use super::{Spool, remove_if_exists};

impl Spool {
    /// Deletes segments fully covered by the ack, then the oldest segments
    /// while over the bound (never the newest one, which is being written).
    pub(super) fn gc(&mut self) -> Result<(), SpoolError> {
        let mut removed = false;
        let mut result = Ok(());
        loop {
            let over = self.bytes > self.max_bytes && self.segments.len() > 1;
            if !(self.front_acked_away() || over) {
                break;
            }
            // A deferred ack must be on disk before the records it covers
            // can go (see `ack`).
            if self.state_dirty
                && let Err(e) = self.write_state(true)
            {
                result = Err(e);
                break;
            }
            let Some(front) = self.segments.front() else {
                break;
            };
            if let Err(e) = remove_if_exists(&front.path) {
                result = Err(e);
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                let lost = seg.unacked(self.acked);
                if lost > 0 {
                    self.record_drop(seg.first_seq.max(self.acked + 1), seg.end_seq() - 1);
                    tracing::warn!(
                        first_seq = seg.first_seq,
                        last_seq = seg.end_seq() - 1,
                        lost,
                        "spool over its bound: dropped the oldest unacknowledged results"
                    );
                }
                self.bytes -= seg.file_len;
                if self.segments.is_empty() {
                    self.writer = None;
                }
                removed = true;
            }
        }
        if self
            .cursor
            .as_ref()
            .is_some_and(|c| !self.segments.iter().any(|s| s.first_seq == c.first_seq))
        {
            self.cursor = None;
        }
        if removed {
            self.sync_dir()?;
        }
        result
    }

    /// Whether the oldest segment is fully acknowledged and can go. A fully
    /// acked newest segment stays while it can take appends, so a caught-up
    /// agent doesn't create a segment (and fsync the directory) per batch.
    pub(super) fn front_acked_away(&self) -> bool {
        let Some(front) = self.segments.front() else {
            return false;
        };
        let covered = front.end_seq() <= self.acked.saturating_add(1);
        let appendable =
            self.segments.len() == 1 && !front.sealed && front.end_seq() == self.next_seq;
        covered && !appendable
    }
}
