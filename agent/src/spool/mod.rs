//! The agent's on-disk result spool: every probe result is appended here
//! before it is sent, and removed only once the coordinator's ack covers it,
//! so a crash (`kill -9`), a restart or a long coordinator outage loses
//! nothing until the size bound is reached, and then only the oldest results,
//! counted in `authpulse_agent_spool_dropped_total`.
//!
//! **Layout.** `<dir>/<first_seq:020>.seg` segment files hold the results in
//! sequence order; `<dir>/state` holds the ack watermark; `<dir>/lock` is held
//! with an advisory lock while a [`Spool`] is open so two agents can't share a
//! directory. A segment starts with a 28-byte header — magic `APSG`, format
//! version (u32 LE), epoch (u64 LE), first seq (u64 LE), crc32 of those 24
//! bytes (u32 LE) — followed by records `[u32 LE len][u32 LE crc32(payload)]
//! [payload]`, the payload being the prost-encoded `ProbeResult` (its `seq`
//! set). Within a segment the seqs are consecutive from the header's first
//! seq, so the seq of a record is implied by its position and the open-time
//! scan only checks lengths and crcs; between segments there may be gaps
//! (drops, corruption), which the coordinator settles through the batch's
//! `low_watermark`. The state file is 40 bytes, little-endian: magic `APST`,
//! version (u32), acked (u64), next-seq floor (u64), epoch (u64), flags
//! (u32, bit 0 = reconciled), crc32 of the preceding 36 bytes. The epoch
//! changes only in [`Spool::renumber_after`] and makes that rewrite atomic:
//! new segments are written as `*.seg.new` with the next epoch, the state
//! file naming that epoch is the commit point, and open finishes (or
//! discards) an interrupted rewrite by comparing epochs.
//!
//! **Permissions.** The directory is `0700`, every file `0600` (results
//! quote servers); looser ones are tightened on open (see `private_fs`).
//!
//! **Durability (fsync policy).** [`Spool::append`] writes the whole batch
//! with one `write` and makes it durable with one `fdatasync` of the segment
//! before returning the seqs, so a result whose seq was handed out is on disk.
//! Creating or deleting a segment also fsyncs the directory, so the entry
//! itself survives a crash. The ack watermark is written to `state.tmp`,
//! fdatasync'ed and renamed over `state`; the directory is fsync'ed before
//! segments are deleted (so the next-seq floor is durable before the records
//! that carried the highest seq can disappear) and on the first ack ever, but
//! not on every ack: losing the latest ack only means re-sending results the
//! coordinator already has, which it stores idempotently. For the same
//! reason an ack is persisted at most every [`ACK_PERSIST_EVERY`] (the
//! others only in memory, [`Spool::persist_ack`] writes the latest), except
//! that the state is always written before a segment is deleted, on the
//! first ack, when an ack moves `next_seq`, and when the spool is dropped.
//!
//! **Group commit (the caller's side).** Each `append` is one fdatasync
//! however many results it carries, so callers batch: the uplink appends
//! the runs that finish within one window of up to
//! `uplink::COMMIT_WINDOW` (100 ms) together, up to 512 per call
//! (`authpulse_agent_spool_results_per_fsync`). The guarantee stays what
//! it was: a result that was numbered, and so any result that was sent, is
//! on disk, and a crash (`kill -9`, power loss) loses none of them. What a
//! crash can lose is the runs of the window still open: finished but not
//! yet appended, never numbered, never sent (at most 100 ms of results;
//! before group commit the same held for the runs waiting in the channel).
//!
//! **Recovery.** Open validates every record's crc while building the index.
//! A torn or corrupt record in the last segment is where a crash interrupted
//! an append: the file is truncated there. Corruption inside an older segment
//! keeps the valid prefix of that segment. Segments with a bad header, empty
//! segments and a leftover `state.tmp` are removed. Everything skipped is
//! listed in [`OpenReport`] and counted in
//! `authpulse_agent_spool_torn_bytes_total`; open never refuses to start
//! because of bad data (only when the disk itself fails or the directory is
//! locked by another process). Seqs never go backwards across restarts:
//! `next_seq` is above the last record on disk, the persisted ack and the
//! persisted floor.
//!
//! **Numbering and the coordinator.** Seqs are assigned here, at append
//! time, and survive restarts. A spool that has never been reconciled with
//! the coordinator ([`Spool::reconciled`] is false: no ack ever received)
//! may hold results numbered from 1 while the coordinator already stores
//! results of this agent under those seqs (the data directory was lost). So
//! nothing from such a spool is sent before the coordinator's first ack;
//! then, if its `highest_stored_seq` >= [`Spool::low_watermark`], call
//! [`Spool::renumber_after`]`(highest_stored_seq)`, and [`Spool::ack`] the
//! `acked_seq` in every case (that first ack marks the spool reconciled).
//!
//! **Blocking.** All I/O is synchronous `std::fs`: an append costs one
//! fdatasync (typically 0.1–10 ms depending on the disk), an ack one small
//! file write. From async code call it inside `tokio::task::spawn_blocking`
//! (or `block_in_place`) rather than directly on a runtime worker; `Spool` is
//! `Send`, so it can live in a `std::sync::Mutex` or move into the closure.
//! Directory fsync opens the directory as a file: Unix only.
mod append;
mod error;
mod format;
mod read;
mod recovery;
mod renumber;
mod retention;

use std::collections::VecDeque;
use std::fs::{self, File, TryLockError};
use std::io::{self, BufReader};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authpulse_proto::v1::ProbeResult;

use crate::private_fs;
use error::{Ctx, io_error};
use format::LOCK_FILE;
use read::ReadFail;

pub use error::SpoolError;
pub use format::{MAX_RECORD_BYTES, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Results dropped because the spool bound was reached (or their bytes
/// turned out unreadable after they were written), since start.
pub const DROPPED_TOTAL: &str = "authpulse_agent_spool_dropped_total";
/// Bytes the spool's segments take on disk.
pub const BYTES: &str = "authpulse_agent_spool_bytes";
/// Results held and not yet acknowledged.
pub const DEPTH: &str = "authpulse_agent_spool_depth";
/// Bytes skipped on open: torn tails, corrupt records, bad segments.
pub const TORN_BYTES_TOTAL: &str = "authpulse_agent_spool_torn_bytes_total";
/// Duration of the per-batch fdatasync.
pub const FSYNC_SECONDS: &str = "authpulse_agent_spool_fsync_seconds";
/// Results per appended batch, i.e. per fdatasync (group commit).
pub const RESULTS_PER_FSYNC: &str = "authpulse_agent_spool_results_per_fsync";
/// Buckets of [`RESULTS_PER_FSYNC`]: one result alone up to a full batch.
pub const RESULTS_PER_FSYNC_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 512.0];

/// The largest seq a result may carry: the coordinator stores seqs as
/// signed 64-bit integers.
pub const SEQ_MAX: u64 = i64::MAX as u64;
/// Seqs left free above renumbered results, at least: a coordinator that
/// claims to hold seqs this close to [`SEQ_MAX`] for an agent is wrong or
/// hostile (2^32 is decades of results), and numbering must not run out.
pub const RENUMBER_HEADROOM: u64 = 1 << 32;

/// An ack is written to the state file at most this often (see the module
/// doc); at 10 acks a second, each an fdatasync and a rename, that was a
/// good part of the spool's I/O.
pub const ACK_PERSIST_EVERY: Duration = Duration::from_secs(1);

pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

/// One byte offset is kept per this many records: a seek lands at most 63
/// records before the wanted one, and the index of a full 256 MiB spool of
/// ~400-byte results stays around 80 KiB.
const INDEX_STRIDE: u64 = 64;
const READ_BUF: usize = 256 << 10;

/// Registers the spool metrics' help texts with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        DROPPED_TOTAL,
        "Results the spool dropped unacknowledged because its size bound was reached."
    );
    metrics::describe_gauge!(
        BYTES,
        metrics::Unit::Bytes,
        "Bytes the result spool holds on disk."
    );
    metrics::describe_gauge!(DEPTH, "Results in the spool not yet acknowledged.");
    metrics::describe_counter!(
        TORN_BYTES_TOTAL,
        metrics::Unit::Bytes,
        "Spool bytes skipped on open (torn writes, corruption)."
    );
    metrics::describe_histogram!(
        FSYNC_SECONDS,
        metrics::Unit::Seconds,
        "Duration of the spool's fdatasync per appended batch."
    );
    metrics::describe_histogram!(
        RESULTS_PER_FSYNC,
        "Results per batch appended to the spool, i.e. per fdatasync (group commit)."
    );
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bound on the segments' total size; past it the oldest segment goes.
    pub max_bytes: u64,
    /// Target segment size; clamped to `max_bytes / 4` so dropping one
    /// segment never throws away more than a quarter of the spool.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records held (acknowledged ones excluded).
    pub records: u64,
    /// Bytes on disk after recovery.
    pub bytes: u64,
    /// Bytes skipped: torn tails, corrupt records and whatever followed them
    /// in their segment, bad segments.
    pub torn_bytes_skipped: u64,
    /// One line per thing skipped or removed, with the reason.
    pub corrupt_segments: Vec<String>,
}

/// In-memory view of one segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    /// Valid records; their seqs are `first_seq..end_seq()`. Always >= 1 for
    /// a segment in the list.
    count: u64,
    /// End of the last valid record; reads never go past it.
    valid_len: u64,
    /// Size on disk (more than `valid_len` for an older segment whose corrupt
    /// tail was kept rather than rewritten).
    file_len: u64,
    /// Byte offset of record `i * INDEX_STRIDE`.
    index: Vec<u64>,
    /// No more appends (an older segment, a corrupt tail, a failed write).
    sealed: bool,
}

impl Segment {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.count
    }

    /// Records with seq > `acked`.
    fn unacked(&self, acked: u64) -> u64 {
        self.end_seq()
            .saturating_sub(self.first_seq.max(acked.saturating_add(1)))
    }
}

/// Where the last `read_from` stopped, so the next one continues without a
/// seek or a scan.
struct Cursor {
    first_seq: u64,
    /// Seq of the record at `offset`.
    seq: u64,
    offset: u64,
    reader: BufReader<File>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Open for appending to `segments.back()`, when that one is appendable.
    writer: Option<File>,
    cursor: Option<Cursor>,
    next_seq: u64,
    acked: u64,
    epoch: u64,
    bytes: u64,
    dropped_total: u64,
    /// Dropped seq ranges not yet settled against the coordinator.
    pending_drops: Vec<(u64, u64)>,
    fresh: bool,
    reconciled: bool,
    /// `acked` is newer than the state file (see [`ACK_PERSIST_EVERY`]).
    state_dirty: bool,
    /// When the state file was last written by this process.
    state_written: Option<Instant>,
    /// Encoding buffer reused across appends.
    buf: Vec<u8>,
    /// Offsets of the records inside `buf`.
    batch_offsets: Vec<u64>,
    /// Payload buffer reused across reads.
    rbuf: Vec<u8>,
    dir_handle: File,
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("next_seq", &self.next_seq)
            .field("acked", &self.acked)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `cfg.dir`, recovering from
    /// whatever a crash left behind.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, OpenReport), SpoolError> {
        let dir = cfg.dir;
        private_fs::create_dir(&dir).ctx("create directory", &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = private_fs::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx("open", &lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SpoolError::Locked { path: dir }),
            // Some filesystems have no locks; the spool still works there.
            Err(TryLockError::Error(e)) => {
                tracing::warn!(path = %lock_path.display(), error = %e, "spool lock unavailable, continuing without it");
            }
        }
        let dir_handle = File::open(&dir).ctx("open directory", &dir)?;
        let segment_bytes = cfg.segment_bytes.min(cfg.max_bytes / 4).max(1);
        let mut spool = Spool {
            dir,
            max_bytes: cfg.max_bytes,
            segment_bytes,
            segments: VecDeque::new(),
            writer: None,
            cursor: None,
            next_seq: 1,
            acked: 0,
            epoch: 0,
            bytes: 0,
            dropped_total: 0,
            pending_drops: Vec::new(),
            fresh: false,
            reconciled: false,
            state_dirty: false,
            state_written: None,
            buf: Vec::new(),
            batch_offsets: Vec::new(),
            rbuf: Vec::new(),
            dir_handle,
            _lock: lock,
        };
        let mut report = OpenReport::default();
        spool.fresh = !spool.load(&mut report)?;
        report.records = spool.depth();
        report.bytes = spool.bytes;
        if report.torn_bytes_skipped > 0 {
            metrics::counter!(TORN_BYTES_TOTAL).increment(report.torn_bytes_skipped);
        }
        for line in &report.corrupt_segments {
            tracing::warn!(dir = %spool.dir.display(), "spool recovery: {line}");
        }
        spool.publish();
        Ok((spool, report))
    }

    /// Numbers the results (`next_seq`, `next_seq + 1`, ..), writes them and
    /// fdatasyncs once; the seqs are returned only once the batch is durable.
    /// Then drops the oldest segments while the spool is over its bound.
    ///
    /// On error nothing of the batch counts as stored, but its seqs are
    /// consumed (a partly written batch may reappear after a restart, and
    /// reusing its seqs could pair one seq with two results).
    pub fn append(
        &mut self,
        results: &mut [ProbeResult],
    ) -> Result<RangeInclusive<u64>, SpoolError> {
        let first = self.next_seq;
        let n = results.len() as u64;
        if n == 0 {
            return Ok(first..=first - 1);
        }
        self.encode_batch(results, first)?;
        let batch_len = self.buf.len() as u64;
        let appendable = self.segments.back().is_some_and(|s| {
            !s.sealed && s.end_seq() == first && s.file_len + batch_len <= self.segment_bytes
        });
        let written = if appendable {
            self.write_active(batch_len)
        } else {
            self.write_new_segment(first)
        };
        if let Err(e) = written {
            self.after_write_failure(first, n);
            return Err(e);
        }
        self.next_seq = first + n;
        metrics::histogram!(RESULTS_PER_FSYNC).record(n as f64);
        if let Err(e) = self.gc() {
            // The batch is durable; failing the append now would make the
            // caller store it twice.
            tracing::warn!(error = %e, "spool cleanup failed");
        }
        self.publish();
        Ok(first..=first + n - 1)
    }

    /// Everything <= `acked` is stored by the coordinator: persist the
    /// watermark and delete segments it fully covers. Acks at or below the
    /// current watermark are no-ops.
    ///
    /// An ack at or above `next_seq` (the coordinator has seqs this spool
    /// never handed out: its directory was lost) raises `next_seq` past it so
    /// no seq is ever reused; call [`Spool::renumber_after`] *before* acking
    /// if the held results are new ones that must not be taken as stored.
    pub fn ack(&mut self, acked: u64) -> Result<(), SpoolError> {
        if acked <= self.acked {
            if self.reconciled {
                return Ok(());
            }
            // The first ack ever (e.g. 0 from an empty coordinator) still
            // marks the spool reconciled, durably (directory included):
            // forgetting it would renumber results already sent.
            self.reconciled = true;
            return self.write_state(true);
        }
        let first_ack = !self.reconciled;
        self.reconciled = true;
        let moved_next_seq = acked >= self.next_seq;
        if moved_next_seq {
            tracing::warn!(
                acked,
                next_seq = self.next_seq,
                "coordinator acked seqs this spool never assigned; continuing after them"
            );
            self.next_seq = acked + 1;
        }
        self.acked = acked;
        let deletes = self.front_acked_away();
        let due = self
            .state_written
            .is_none_or(|t| t.elapsed() >= ACK_PERSIST_EVERY);
        // The rename must be durable before a deletion can be (the deleted
        // segment may be the one carrying the highest seq), and the first
        // ack's must be durable anyway (see `reconciled`); a moved `next_seq`
        // is the floor that keeps seqs from being reused.
        let persisted = if deletes || first_ack || moved_next_seq || due {
            self.write_state(deletes || first_ack)
        } else {
            self.state_dirty = true;
            Ok(())
        };
        let cleaned = match persisted {
            Ok(()) => self.gc(),
            Err(e) => Err(e),
        };
        self.publish();
        cleaned
    }

    /// Writes the latest ack to the state file if only memory has it (see
    /// [`ACK_PERSIST_EVERY`]), and only once that long after the last write
    /// unless `now` is set. Returns whether it wrote.
    pub fn persist_ack(&mut self, now: bool) -> Result<bool, SpoolError> {
        if !self.ack_persist_due(now) {
            return Ok(false);
        }
        self.write_state(false)?;
        Ok(true)
    }

    /// Whether [`Spool::persist_ack`] would write: cheap, no I/O.
    pub fn ack_persist_due(&self, now: bool) -> bool {
        self.state_dirty
            && (now
                || self
                    .state_written
                    .is_none_or(|t| t.elapsed() >= ACK_PERSIST_EVERY))
    }

    /// Up to `max` results with seq >= `from` (acknowledged ones skipped), in
    /// seq order. Consecutive calls with increasing `from` continue where the
    /// previous one stopped without seeking.
    ///
    /// A record that turns out unreadable here (bit rot after it was
    /// written) is logged, it and the rest of its segment are counted as
    /// dropped, and reading goes on with the next segment, so one bad sector
    /// can't wedge the uplink.
    pub fn read_from(&mut self, from: u64, max: usize) -> Result<Vec<ProbeResult>, SpoolError> {
        let mut out = Vec::with_capacity(max.min(1024));
        let mut seq = from.max(self.acked.saturating_add(1));
        while out.len() < max {
            let i = self.segments.partition_point(|s| s.end_seq() <= seq);
            let Some(seg) = self.segments.get(i) else {
                break;
            };
            seq = seq.max(seg.first_seq);
            let want = (seg.end_seq() - seq).min((max - out.len()) as u64);
            match self.read_in_segment(i, seq, want, &mut out) {
                Ok(()) => seq += want,
                Err(ReadFail::Io(e)) => {
                    // The reader's position is unknown after a failed read.
                    self.cursor = None;
                    return Err(e);
                }
                Err(ReadFail::Corrupt {
                    seq: bad,
                    offset,
                    reason,
                }) => {
                    // Records before `bad` were pushed; drop the rest of the
                    // segment and continue with the next one.
                    self.cut_segment(i, bad, offset, &reason)?;
                    seq = bad;
                    self.publish();
                }
            }
        }
        Ok(out)
    }

    /// The coordinator already holds results up to `highest` that this spool
    /// doesn't know about (its directory was lost or reset): renumber every
    /// held result so the first becomes `highest + 1`, rewrite the spool and
    /// continue numbering after it. Only valid before anything from this
    /// spool was sent. The rewrite is atomic across crashes (see the module
    /// doc); afterwards `acked()` is `highest`. Refused (nothing changes)
    /// when the new seqs would come near [`SEQ_MAX`] ([`Spool::renumber_fits`]).
    pub fn renumber_after(&mut self, highest: u64) -> Result<(), SpoolError> {
        if !self.renumber_fits(highest) {
            return Err(SpoolError::SeqOverflow {
                highest,
                held: self.depth(),
            });
        }
        let new_epoch = self.epoch + 1;
        let mut written: Vec<PathBuf> = Vec::new();
        let next = match self.write_renumbered(highest, new_epoch, &mut written) {
            Ok(next) => next,
            Err(e) => {
                for p in &written {
                    let _ = fs::remove_file(p);
                }
                return Err(e);
            }
        };
        if let Err(e) = self.sync_dir() {
            for p in &written {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        // Commit point: once the state file names the new epoch, a restart
        // completes the rewrite instead of discarding it.
        let (old_epoch, old_acked, old_next) = (self.epoch, self.acked, self.next_seq);
        let old_reconciled = self.reconciled;
        self.epoch = new_epoch;
        self.acked = highest;
        self.next_seq = next;
        self.reconciled = true;
        if let Err(e) = self.write_state(true) {
            // The rename may have happened even though a later step failed:
            // put the old state back before the new segments go, or a
            // restart would take the old segments for stale ones.
            self.epoch = old_epoch;
            self.acked = old_acked;
            self.next_seq = old_next;
            self.reconciled = old_reconciled;
            if self.write_state(true).is_ok() {
                for p in &written {
                    let _ = fs::remove_file(p);
                }
            }
            return Err(e);
        }
        self.writer = None;
        self.cursor = None;
        let applied = self.replace_segments(&written);
        // Reload even after a failure so memory matches the disk; open would
        // finish the job the same way.
        let mut report = OpenReport::default();
        let loaded = self.load(&mut report);
        for line in &report.corrupt_segments {
            tracing::warn!(dir = %self.dir.display(), "spool after renumbering: {line}");
        }
        self.publish();
        applied?;
        loaded.map(|_| ())
    }

    /// Whether [`Spool::renumber_after`]`(highest)` keeps every seq, and
    /// [`RENUMBER_HEADROOM`] more, at or below [`SEQ_MAX`].
    pub fn renumber_fits(&self, highest: u64) -> bool {
        highest
            .checked_add(self.depth())
            .and_then(|last| last.checked_add(RENUMBER_HEADROOM))
            .is_some_and(|end| end <= SEQ_MAX)
    }

    /// The seq the next appended result gets (1 for a brand-new spool).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Everything <= this is acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Lowest seq still held (not acked); `next_seq()` when empty. Everything
    /// below was acknowledged or dropped.
    pub fn low_watermark(&self) -> u64 {
        let floor = self.acked.saturating_add(1);
        self.segments
            .iter()
            .find(|s| s.end_seq() > floor)
            .map_or(self.next_seq, |s| s.first_seq.max(floor))
    }

    /// Results held and not acknowledged.
    pub fn depth(&self) -> u64 {
        self.segments.iter().map(|s| s.unacked(self.acked)).sum()
    }

    /// Bytes on disk (segments; the small state file not counted).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Results dropped unacknowledged since open.
    /// Results dropped unacknowledged whose fate the coordinator has not
    /// settled yet (see [`Spool::settle_drops`]).
    pub fn unsettled_drops(&self) -> u64 {
        self.pending_drops.iter().map(|(a, b)| b + 1 - a).sum()
    }

    /// Remembers dropped seqs `first..=last`. They are counted as lost only
    /// once [`Spool::settle_drops`] knows the coordinator doesn't have them:
    /// a result sent just before the link broke may be stored even though
    /// its ack never arrived, and counting it as dropped would be a lie.
    fn record_drop(&mut self, first: u64, last: u64) {
        if first <= last {
            self.pending_drops.push((first, last));
        }
    }

    /// Settles dropped seqs against what the coordinator confirmed: seqs
    /// `<= stored_upto` reached it (not lost); seqs `>= unsent_from` were
    /// never sent on the current stream (lost); the rest stay pending until
    /// the next stream's first ack. Returns the newly counted losses.
    pub fn settle_drops(&mut self, stored_upto: u64, unsent_from: u64) -> u64 {
        let mut lost = 0;
        let mut keep = Vec::new();
        for (a, b) in std::mem::take(&mut self.pending_drops) {
            let a = a.max(stored_upto.saturating_add(1));
            if a > b {
                continue;
            }
            let lost_from = a.max(unsent_from);
            if lost_from <= b {
                lost += b + 1 - lost_from;
            }
            if a < lost_from {
                keep.push((a, b.min(lost_from - 1)));
            }
        }
        self.pending_drops = keep;
        if lost > 0 {
            self.dropped_total += lost;
            metrics::counter!(DROPPED_TOTAL).increment(lost);
        }
        lost
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// True if open found no prior spool at all (a new or emptied directory):
    /// the seqs start at 1 and may collide with what the coordinator has.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// False until the first [`Spool::ack`] or [`Spool::renumber_after`] in
    /// this directory's life, persisted across restarts. Unlike
    /// [`Spool::is_fresh`] it stays false when a fresh spool took results and
    /// the agent restarted before ever reaching the coordinator, which is
    /// exactly when the held results still need renumbering: decide on
    /// `renumber_after` with this, not with `is_fresh`.
    pub fn reconciled(&self) -> bool {
        self.reconciled
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        self.dir_handle.sync_all().ctx("fsync directory", &self.dir)
    }

    fn publish(&self) {
        metrics::gauge!(BYTES).set(self.bytes as f64);
        metrics::gauge!(DEPTH).set(self.depth() as f64);
    }
}

impl Drop for Spool {
    /// A clean stop keeps the latest ack: the next start resends nothing
    /// the coordinator acknowledged.
    fn drop(&mut self) {
        if let Err(e) = self.persist_ack(true) {
            tracing::warn!(error = %e, "cannot persist the latest ack; results it covers will be sent again");
        }
    }
}

fn remove_if_exists(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, e)),
    }
}
