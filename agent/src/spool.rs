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
//! coordinator already has, which it stores idempotently.
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
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Instant;

use authpulse_proto::v1::ProbeResult;
use prost::Message;

use crate::private_fs;

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

/// The largest seq a result may carry: the coordinator stores seqs as
/// signed 64-bit integers.
pub const SEQ_MAX: u64 = i64::MAX as u64;
/// Seqs left free above renumbered results, at least: a coordinator that
/// claims to hold seqs this close to [`SEQ_MAX`] for an agent is wrong or
/// hostile (2^32 is decades of results), and numbering must not run out.
pub const RENUMBER_HEADROOM: u64 = 1 << 32;

pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;
/// Larger records are rejected on append and treated as corruption on read:
/// a result is a few hundred bytes, so a huge length is a torn header.
pub const MAX_RECORD_BYTES: u32 = 16 << 20;
/// Segment header length; records start at this offset.
pub const SEGMENT_HEADER_LEN: u64 = 28;
/// `[u32 len][u32 crc]` in front of every payload.
pub const RECORD_HEADER_LEN: u64 = 8;

const SEG_MAGIC: [u8; 4] = *b"APSG";
const STATE_MAGIC: [u8; 4] = *b"APST";
const FORMAT_VERSION: u32 = 1;
const STATE_LEN: usize = 40;
/// State flag: the spool has been reconciled with the coordinator.
const FLAG_RECONCILED: u32 = 1;
const STATE_FILE: &str = "state";
const STATE_TMP: &str = "state.tmp";
const LOCK_FILE: &str = "lock";
const SEG_EXT: &str = ".seg";
const SEG_NEW_EXT: &str = ".seg.new";
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

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// `error` is part of the message (not a `source`) so that logging the
    /// error with `%e` says what went wrong, not only where.
    #[error("spool: cannot {op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("spool directory {} is in use by another process (its lock file is held)", path.display())]
    Locked { path: PathBuf },
    #[error("spool: result seq {seq} encodes to {len} bytes, over the 16 MiB record limit")]
    RecordTooLarge { seq: u64, len: usize },
    #[error("spool: cannot encode result seq {seq}: {message}")]
    Encode { seq: u64, message: String },
    #[error(
        "spool: renumbering {held} results after seq {highest} would leave less than 2^32 seqs \
         below the largest a result can carry (2^63 - 1); not renumbering"
    )]
    SeqOverflow { highest: u64, held: u64 },
}

trait Ctx<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, SpoolError>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, SpoolError> {
        self.map_err(|e| io_error(op, path, e))
    }
}

fn io_error(op: &'static str, path: &Path, error: io::Error) -> SpoolError {
    SpoolError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
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

/// Why reading a record failed.
enum ReadFail {
    Io(SpoolError),
    /// The bytes at `offset` (record `seq`) don't hold a valid record.
    Corrupt {
        seq: u64,
        offset: u64,
        reason: String,
    },
}

impl From<SpoolError> for ReadFail {
    fn from(e: SpoolError) -> ReadFail {
        ReadFail::Io(e)
    }
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

struct State {
    acked: u64,
    floor: u64,
    epoch: u64,
    flags: u32,
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
        if acked >= self.next_seq {
            tracing::warn!(
                acked,
                next_seq = self.next_seq,
                "coordinator acked seqs this spool never assigned; continuing after them"
            );
            self.next_seq = acked + 1;
        }
        self.acked = acked;
        let deletes = self.front_acked_away();
        // The rename must be durable before a deletion can be (the deleted
        // segment may be the one carrying the highest seq), and the first
        // ack's must be durable anyway (see `reconciled`).
        let persisted = self.write_state(deletes || first_ack);
        let cleaned = match persisted {
            Ok(()) => self.gc(),
            Err(e) => Err(e),
        };
        self.publish();
        cleaned
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

    /// Second half of a committed renumbering: old segments out, new in.
    fn replace_segments(&self, written: &[PathBuf]) -> Result<(), SpoolError> {
        for seg in &self.segments {
            remove_if_exists(&seg.path)?;
        }
        for p in written {
            rename_new(p)?;
        }
        self.sync_dir()
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

    // ---- open / recovery -------------------------------------------------

    /// Builds the in-memory state from the directory, repairing as it goes.
    /// Returns whether any prior spool state was found.
    fn load(&mut self, report: &mut OpenReport) -> Result<bool, SpoolError> {
        self.segments.clear();
        self.writer = None;
        self.cursor = None;
        self.bytes = 0;
        let mut prior = false;
        let mut changed = false;
        let mut seg_files: Vec<(u64, PathBuf)> = Vec::new();
        let mut new_files: Vec<PathBuf> = Vec::new();
        let mut has_state = false;
        let entries = fs::read_dir(&self.dir).ctx("list", &self.dir)?;
        for entry in entries {
            let entry = entry.ctx("list", &self.dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            // Written by an older version (or by hand) with looser modes.
            private_fs::tighten(&path, private_fs::FILE_MODE);
            if name == STATE_FILE {
                has_state = true;
                prior = true;
            } else if name == STATE_TMP {
                // A crash between writing and renaming the ack file: the
                // previous `state` is still whole.
                prior = true;
                remove_if_exists(&path)?;
                changed = true;
            } else if let Some(stem) = name.strip_suffix(SEG_NEW_EXT) {
                if parse_seq(stem).is_some() {
                    prior = true;
                    new_files.push(path);
                }
            } else if let Some(stem) = name.strip_suffix(SEG_EXT)
                && let Some(seq) = parse_seq(stem)
            {
                prior = true;
                seg_files.push((seq, path));
            }
        }

        let state_path = self.dir.join(STATE_FILE);
        let state = if has_state {
            match read_state(&state_path) {
                Ok(s) => Some(s),
                Err(reason) => {
                    report
                        .corrupt_segments
                        .push(format!("{STATE_FILE}: {reason}; ack watermark reset to 0"));
                    None
                }
            }
        } else {
            None
        };

        // Finish or discard an interrupted renumbering (see the module doc).
        for path in new_files {
            let committed = state
                .as_ref()
                .is_some_and(|s| read_header_file(&path).is_ok_and(|(epoch, _)| epoch == s.epoch));
            if committed {
                rename_new(&path)?;
                let dest = strip_new(&path);
                if let Some(seq) = dest
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(SEG_EXT))
                    .and_then(parse_seq)
                    && !seg_files.iter().any(|(_, p)| p == &dest)
                {
                    seg_files.push((seq, dest));
                }
            } else {
                remove_if_exists(&path)?;
            }
            changed = true;
        }

        // Scan every segment: header, then each record's length and crc.
        seg_files.sort();
        let mut scans: Vec<(PathBuf, Scan)> = Vec::with_capacity(seg_files.len());
        for (name_seq, path) in seg_files {
            let scan = scan_segment(&path, name_seq, &mut self.rbuf);
            scans.push((path, scan));
        }
        let epoch = match &state {
            Some(s) => s.epoch,
            None => scans
                .iter()
                .filter_map(|(_, s)| s.header.as_ref().ok().map(|h| h.0))
                .max()
                .unwrap_or(0),
        };
        self.epoch = epoch;
        let (acked, floor) = state.as_ref().map_or((0, 0), |s| (s.acked, s.floor));
        self.acked = acked;
        // No state file: no ack was ever received (every ack writes it). A
        // corrupt one: assume reconciled, since renumbering results the
        // coordinator may already hold would store them twice.
        self.reconciled = match &state {
            Some(s) => s.flags & FLAG_RECONCILED != 0,
            None => has_state,
        };

        let last_ok = scans
            .iter()
            .rposition(|(_, s)| s.header.as_ref().is_ok_and(|h| h.0 >= epoch));
        for (i, (path, scan)) in scans.into_iter().enumerate() {
            let name = file_name(&path);
            let first_seq = match scan.header {
                Err(reason) => {
                    report.corrupt_segments.push(format!(
                        "{name}: {reason}; removed ({} bytes)",
                        scan.file_len
                    ));
                    report.torn_bytes_skipped += scan.file_len;
                    remove_if_exists(&path)?;
                    changed = true;
                    continue;
                }
                Ok((seg_epoch, _)) if seg_epoch < epoch => {
                    report.corrupt_segments.push(format!(
                        "{name}: left over from an interrupted renumbering (epoch {seg_epoch} < {epoch}); removed"
                    ));
                    remove_if_exists(&path)?;
                    changed = true;
                    continue;
                }
                Ok((_, first)) => first,
            };
            let is_last = Some(i) == last_ok;
            let skipped = scan.file_len - scan.valid_len;
            if let Some((offset, reason)) = &scan.bad {
                report.torn_bytes_skipped += skipped;
                let what = if is_last {
                    "truncated"
                } else {
                    "skipped (valid prefix kept)"
                };
                report.corrupt_segments.push(format!(
                    "{name}: {reason} at offset {offset}; {skipped} bytes {what}, {} records kept",
                    scan.count
                ));
            }
            if scan.count == 0 {
                if scan.bad.is_none() {
                    report
                        .corrupt_segments
                        .push(format!("{name}: empty segment; removed"));
                }
                remove_if_exists(&path)?;
                changed = true;
                continue;
            }
            if let Some(prev) = self.segments.back()
                && first_seq < prev.end_seq()
            {
                report.corrupt_segments.push(format!(
                    "{name}: seqs {first_seq}.. overlap the previous segment (ends at {}); removed",
                    prev.end_seq() - 1
                ));
                report.torn_bytes_skipped += scan.file_len;
                remove_if_exists(&path)?;
                changed = true;
                continue;
            }
            let mut file_len = scan.file_len;
            if is_last && scan.bad.is_some() {
                // The tail of the newest segment is where a crash tears an
                // append; cut it so new records follow the valid ones.
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .ctx("open for truncation", &path)?;
                f.set_len(scan.valid_len).ctx("truncate", &path)?;
                f.sync_data().ctx("fsync", &path)?;
                file_len = scan.valid_len;
            }
            self.bytes += file_len;
            self.segments.push_back(Segment {
                path,
                first_seq,
                count: scan.count,
                valid_len: scan.valid_len,
                file_len,
                index: scan.index,
                // Appending only ever continues on the newest segment (its
                // torn tail was cut above).
                sealed: !is_last,
            });
        }
        // The segment list must end with the appendable one if any; only the
        // last segment can be unsealed.
        let n = self.segments.len();
        for (i, s) in self.segments.iter_mut().enumerate() {
            if i + 1 < n {
                s.sealed = true;
            }
        }

        let last_end = self.segments.back().map_or(1, Segment::end_seq);
        self.next_seq = last_end.max(acked.saturating_add(1)).max(floor).max(1);

        // Segments an ack covered whose deletion a crash interrupted.
        while let Some(front) = self.segments.front() {
            if front.end_seq() > acked.saturating_add(1) {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                self.bytes -= seg.file_len;
                remove_if_exists(&seg.path)?;
                changed = true;
            }
        }
        if changed {
            self.sync_dir()?;
        }
        Ok(prior)
    }

    // ---- append ----------------------------------------------------------

    fn encode_batch(&mut self, results: &mut [ProbeResult], first: u64) -> Result<(), SpoolError> {
        self.buf.clear();
        self.batch_offsets.clear();
        for (i, r) in results.iter_mut().enumerate() {
            let seq = first + i as u64;
            r.seq = seq;
            let start = self.buf.len();
            self.batch_offsets.push(start as u64);
            self.buf.extend_from_slice(&[0; RECORD_HEADER_LEN as usize]);
            r.encode(&mut self.buf).map_err(|e| SpoolError::Encode {
                seq,
                message: e.to_string(),
            })?;
            let payload = &self.buf[start + RECORD_HEADER_LEN as usize..];
            let len = payload.len();
            if len > MAX_RECORD_BYTES as usize {
                return Err(SpoolError::RecordTooLarge { seq, len });
            }
            let crc = crc32fast::hash(payload);
            self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
            self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        }
        Ok(())
    }

    fn write_active(&mut self, batch_len: u64) -> Result<(), SpoolError> {
        let Some(seg) = self.segments.back_mut() else {
            return Ok(());
        };
        if self.writer.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .ctx("open for append", &seg.path)?;
            self.writer = Some(f);
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer.write_all(&self.buf).ctx("write", &seg.path)?;
        timed_sync(writer, &seg.path)?;
        let base = seg.valid_len;
        for (i, off) in self.batch_offsets.iter().enumerate() {
            if (seg.count + i as u64).is_multiple_of(INDEX_STRIDE) {
                seg.index.push(base + off);
            }
        }
        seg.count += self.batch_offsets.len() as u64;
        seg.valid_len += batch_len;
        seg.file_len = seg.valid_len;
        self.bytes += batch_len;
        Ok(())
    }

    fn write_new_segment(&mut self, first: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(seg_name(first));
        // Any file of that name is a leftover of a failed create: no segment
        // in the list can start at a seq that was never handed out.
        self.writer = None;
        let f = match self.create_segment_file(&path, first) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        if let Some(prev) = self.segments.back_mut() {
            prev.sealed = true;
        }
        let batch_len = self.buf.len() as u64;
        let index = self
            .batch_offsets
            .iter()
            .step_by(INDEX_STRIDE as usize)
            .map(|off| SEGMENT_HEADER_LEN + off)
            .collect();
        let len = SEGMENT_HEADER_LEN + batch_len;
        self.segments.push_back(Segment {
            path,
            first_seq: first,
            count: self.batch_offsets.len() as u64,
            valid_len: len,
            file_len: len,
            index,
            sealed: false,
        });
        self.bytes += len;
        self.writer = Some(f);
        Ok(())
    }

    /// Header and batch in a new file, fdatasync'ed, its directory entry
    /// fsync'ed.
    fn create_segment_file(&self, path: &Path, first: u64) -> Result<File, SpoolError> {
        let mut f = private_fs::create_file(path).ctx("create segment", path)?;
        f.write_all(&segment_header(self.epoch, first))
            .ctx("write", path)?;
        f.write_all(&self.buf).ctx("write", path)?;
        timed_sync(&f, path)?;
        self.sync_dir()?;
        Ok(f)
    }

    /// After a failed write or fsync the file's content past the last good
    /// batch is unknown (and after a failed fsync the kernel may already have
    /// thrown the dirty pages away), so the segment is cut back, sealed, and
    /// the batch's seqs are never reused.
    fn after_write_failure(&mut self, first: u64, n: u64) {
        self.writer = None;
        self.cursor = None;
        if let Some(seg) = self.segments.back_mut()
            && !seg.sealed
        {
            seg.sealed = true;
            if let Ok(f) = OpenOptions::new().write(true).open(&seg.path)
                && f.set_len(seg.valid_len).is_ok()
            {
                seg.file_len = seg.valid_len;
            }
        }
        self.next_seq = first + n;
    }

    /// Deletes segments fully covered by the ack, then the oldest segments
    /// while over the bound (never the newest one, which is being written).
    fn gc(&mut self) -> Result<(), SpoolError> {
        let mut removed = false;
        let mut result = Ok(());
        loop {
            let over = self.bytes > self.max_bytes && self.segments.len() > 1;
            if !(self.front_acked_away() || over) {
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
    fn front_acked_away(&self) -> bool {
        let Some(front) = self.segments.front() else {
            return false;
        };
        let covered = front.end_seq() <= self.acked.saturating_add(1);
        let appendable =
            self.segments.len() == 1 && !front.sealed && front.end_seq() == self.next_seq;
        covered && !appendable
    }

    // ---- read ------------------------------------------------------------

    /// Reads `want` records starting at `seq` from segment `i` into `out`.
    fn read_in_segment(
        &mut self,
        i: usize,
        seq: u64,
        want: u64,
        out: &mut Vec<ProbeResult>,
    ) -> Result<(), ReadFail> {
        let seg = &self.segments[i];
        // The index has an entry for every block that holds a record; the
        // fallback (start of the segment) is only for robustness.
        let block = (seq - seg.first_seq) / INDEX_STRIDE;
        let (block_seq, block_off) = match seg.index.get(block as usize) {
            Some(&off) => (seg.first_seq + block * INDEX_STRIDE, off),
            None => (seg.first_seq, SEGMENT_HEADER_LEN),
        };
        // Continue from the cursor if it's in this segment at or after the
        // index entry we'd otherwise seek to.
        let reuse = self
            .cursor
            .as_ref()
            .is_some_and(|c| c.first_seq == seg.first_seq && c.seq <= seq && c.seq >= block_seq);
        if !reuse {
            let reader = match self.cursor.take() {
                Some(c) if c.first_seq == seg.first_seq => c.reader,
                _ => BufReader::with_capacity(
                    READ_BUF,
                    File::open(&seg.path).ctx("open", &seg.path)?,
                ),
            };
            let mut c = Cursor {
                first_seq: seg.first_seq,
                seq: block_seq,
                offset: block_off,
                reader,
            };
            c.reader
                .seek(SeekFrom::Start(block_off))
                .ctx("seek", &seg.path)?;
            self.cursor = Some(c);
        }
        let Some(c) = self.cursor.as_mut() else {
            return Ok(());
        };
        let path = &seg.path;
        let valid_len = seg.valid_len;
        // Skip forward to `seq` using the lengths only.
        while c.seq < seq {
            let len = match read_record_header(&mut c.reader, c.offset, valid_len, path)? {
                Ok((len, _)) => len,
                Err(reason) => return Err(corrupt(c, reason)),
            };
            c.reader.seek_relative(len as i64).ctx("seek", path)?;
            c.offset += RECORD_HEADER_LEN + len;
            c.seq += 1;
        }
        for _ in 0..want {
            let (len, crc) = match read_record_header(&mut c.reader, c.offset, valid_len, path)? {
                Ok(h) => h,
                Err(reason) => return Err(corrupt(c, reason)),
            };
            self.rbuf.resize(len as usize, 0);
            match c.reader.read_exact(&mut self.rbuf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(corrupt(c, "file shorter than its index".into()));
                }
                Err(e) => return Err(ReadFail::Io(io_error("read", path, e))),
            }
            if crc32fast::hash(&self.rbuf) != crc {
                return Err(corrupt(c, "crc mismatch".into()));
            }
            let r = match ProbeResult::decode(self.rbuf.as_slice()) {
                Ok(r) => r,
                Err(e) => return Err(corrupt(c, format!("undecodable result: {e}"))),
            };
            if r.seq != c.seq {
                return Err(corrupt(
                    c,
                    format!("record holds seq {}, expected {}", r.seq, c.seq),
                ));
            }
            out.push(r);
            c.offset += RECORD_HEADER_LEN + len;
            c.seq += 1;
        }
        Ok(())
    }

    /// Segment `i` is unreadable from record `seq` (at `offset`) on: keep the
    /// part before, count the rest as dropped, never append to it again.
    fn cut_segment(
        &mut self,
        i: usize,
        seq: u64,
        offset: u64,
        reason: &str,
    ) -> Result<(), SpoolError> {
        self.cursor = None;
        let is_last = i + 1 == self.segments.len();
        let acked = self.acked;
        let Some(seg) = self.segments.get_mut(i) else {
            return Ok(());
        };
        let lost_from = seg.first_seq.max(seq);
        let lost = seg
            .end_seq()
            .saturating_sub(lost_from.max(acked.saturating_add(1)));
        tracing::error!(
            path = %seg.path.display(),
            seq,
            offset,
            reason,
            lost,
            "spool record unreadable; dropping the rest of its segment"
        );
        let lost_range = (
            lost_from.max(acked.saturating_add(1)),
            seg.end_seq().saturating_sub(1),
        );
        seg.count = lost_from - seg.first_seq;
        seg.valid_len = offset;
        seg.index
            .truncate(seg.count.div_ceil(INDEX_STRIDE) as usize);
        seg.sealed = true;
        if lost > 0 {
            // Disjoint field borrow: `seg` still borrows `self.segments`.
            self.pending_drops.push(lost_range);
        }
        if is_last {
            self.writer = None;
        }
        if seg.count == 0
            && let Some(gone) = self.segments.remove(i)
        {
            self.bytes -= gone.file_len;
            remove_if_exists(&gone.path)?;
            self.sync_dir()?;
        }
        Ok(())
    }

    // ---- renumbering -----------------------------------------------------

    /// Writes every held record, renumbered from `highest + 1`, into
    /// `*.seg.new` files of epoch `epoch`; returns the next seq after them.
    fn write_renumbered(
        &mut self,
        highest: u64,
        epoch: u64,
        written: &mut Vec<PathBuf>,
    ) -> Result<u64, SpoolError> {
        let mut next = highest + 1;
        let mut from = self.acked.saturating_add(1);
        let mut out: Option<(File, PathBuf, u64)> = None;
        let mut buf = Vec::new();
        loop {
            let chunk = self.read_from(from, 4096)?;
            let Some(last) = chunk.last() else { break };
            from = last.seq + 1;
            for mut r in chunk {
                r.seq = next;
                buf.clear();
                buf.extend_from_slice(&[0; RECORD_HEADER_LEN as usize]);
                r.encode(&mut buf).map_err(|e| SpoolError::Encode {
                    seq: next,
                    message: e.to_string(),
                })?;
                let len = buf.len() - RECORD_HEADER_LEN as usize;
                let crc = crc32fast::hash(&buf[RECORD_HEADER_LEN as usize..]);
                buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
                buf[4..8].copy_from_slice(&crc.to_le_bytes());
                let full = out
                    .as_ref()
                    .is_some_and(|(_, _, size)| size + buf.len() as u64 > self.segment_bytes);
                if full && let Some((f, p, _)) = out.take() {
                    f.sync_data().ctx("fsync", &p)?;
                }
                if out.is_none() {
                    let p = self.dir.join(format!("{}.new", seg_name(next)));
                    let mut f = private_fs::create_file(&p).ctx("create segment", &p)?;
                    written.push(p.clone());
                    f.write_all(&segment_header(epoch, next)).ctx("write", &p)?;
                    out = Some((f, p, SEGMENT_HEADER_LEN));
                }
                if let Some((f, p, size)) = out.as_mut() {
                    f.write_all(&buf).ctx("write", p)?;
                    *size += buf.len() as u64;
                }
                next += 1;
            }
        }
        if let Some((f, p, _)) = out.take() {
            f.sync_data().ctx("fsync", &p)?;
        }
        Ok(next)
    }

    // ---- small helpers ---------------------------------------------------

    fn write_state(&self, sync_dir: bool) -> Result<(), SpoolError> {
        let mut b = [0u8; STATE_LEN];
        b[0..4].copy_from_slice(&STATE_MAGIC);
        b[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.acked.to_le_bytes());
        b[16..24].copy_from_slice(&self.next_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        let flags = if self.reconciled { FLAG_RECONCILED } else { 0 };
        b[32..36].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32fast::hash(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join(STATE_TMP);
        let path = self.dir.join(STATE_FILE);
        let mut f = private_fs::create_file(&tmp).ctx("create", &tmp)?;
        f.write_all(&b).ctx("write", &tmp)?;
        f.sync_data().ctx("fsync", &tmp)?;
        fs::rename(&tmp, &path).ctx("rename into place", &path)?;
        if sync_dir {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        self.dir_handle.sync_all().ctx("fsync directory", &self.dir)
    }

    fn publish(&self) {
        metrics::gauge!(BYTES).set(self.bytes as f64);
        metrics::gauge!(DEPTH).set(self.depth() as f64);
    }
}

fn corrupt(c: &Cursor, reason: String) -> ReadFail {
    ReadFail::Corrupt {
        seq: c.seq,
        offset: c.offset,
        reason,
    }
}

/// Reads a record header at `offset`; the inner error is a corruption reason.
fn read_record_header(
    r: &mut BufReader<File>,
    offset: u64,
    valid_len: u64,
    path: &Path,
) -> Result<Result<(u64, u32), String>, SpoolError> {
    if offset + RECORD_HEADER_LEN > valid_len {
        return Ok(Err(format!(
            "record at {offset} past the end of valid data ({valid_len})"
        )));
    }
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err("file shorter than its index".into()));
        }
        Err(e) => return Err(io_error("read", path, e)),
    }
    let (len, crc) = split_record_header(h);
    if len == 0 || len > MAX_RECORD_BYTES {
        return Ok(Err(format!("implausible record length {len}")));
    }
    if offset + RECORD_HEADER_LEN + len as u64 > valid_len {
        return Ok(Err(format!(
            "record at {offset} runs past the end of valid data"
        )));
    }
    Ok(Ok((len as u64, crc)))
}

fn split_record_header(h: [u8; 8]) -> (u32, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

fn segment_header(epoch: u64, first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..4].copy_from_slice(&SEG_MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// `(epoch, first_seq)` or why the header is bad.
fn parse_segment_header(h: &[u8; SEGMENT_HEADER_LEN as usize]) -> Result<(u64, u64), String> {
    if h[0..4] != SEG_MAGIC {
        return Err("bad magic".into());
    }
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crc32fast::hash(&h[..24]) != crc {
        return Err("header crc mismatch".into());
    }
    let version = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&h[8..16]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[16..24]);
    Ok((u64::from_le_bytes(e), u64::from_le_bytes(s)))
}

fn read_header_file(path: &Path) -> Result<(u64, u64), String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    f.read_exact(&mut h).map_err(|e| e.to_string())?;
    parse_segment_header(&h)
}

fn read_state(path: &Path) -> Result<State, String> {
    let b = fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    if b.len() != STATE_LEN {
        return Err(format!("{} bytes, expected {STATE_LEN}", b.len()));
    }
    if b[0..4] != STATE_MAGIC {
        return Err("bad magic".into());
    }
    let crc = u32::from_le_bytes([b[36], b[37], b[38], b[39]]);
    if crc32fast::hash(&b[..36]) != crc {
        return Err("crc mismatch".into());
    }
    let u64_at = |at: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(x)
    };
    let version = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    Ok(State {
        acked: u64_at(8),
        floor: u64_at(16),
        flags: u32::from_le_bytes([b[32], b[33], b[34], b[35]]),
        epoch: u64_at(24),
    })
}

/// Result of validating one segment file.
struct Scan {
    /// `(epoch, first_seq)` or why the header is unusable.
    header: Result<(u64, u64), String>,
    file_len: u64,
    count: u64,
    valid_len: u64,
    index: Vec<u64>,
    /// First bad spot: offset and reason.
    bad: Option<(u64, String)>,
}

fn scan_segment(path: &Path, name_seq: u64, buf: &mut Vec<u8>) -> Scan {
    let mut scan = Scan {
        header: Err(String::new()),
        file_len: 0,
        count: 0,
        valid_len: 0,
        index: Vec::new(),
        bad: None,
    };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            scan.header = Err(format!("unreadable: {e}"));
            return scan;
        }
    };
    scan.file_len = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            scan.header = Err(format!("unreadable: {e}"));
            return scan;
        }
    };
    let mut r = BufReader::with_capacity(READ_BUF, f);
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    if scan.file_len < SEGMENT_HEADER_LEN {
        scan.header = Err(format!(
            "truncated header ({} of {SEGMENT_HEADER_LEN} bytes)",
            scan.file_len
        ));
        return scan;
    }
    if let Err(e) = r.read_exact(&mut h) {
        scan.header = Err(format!("unreadable header: {e}"));
        return scan;
    }
    scan.header = parse_segment_header(&h).and_then(|(epoch, first)| {
        if first == name_seq {
            Ok((epoch, first))
        } else {
            Err(format!(
                "header says first seq {first}, file name says {name_seq}"
            ))
        }
    });
    if scan.header.is_err() {
        return scan;
    }
    let mut off = SEGMENT_HEADER_LEN;
    scan.valid_len = off;
    while off < scan.file_len {
        let left = scan.file_len - off;
        if left < RECORD_HEADER_LEN {
            scan.bad = Some((off, format!("truncated record header ({left} bytes)")));
            break;
        }
        let mut rh = [0u8; RECORD_HEADER_LEN as usize];
        if let Err(e) = r.read_exact(&mut rh) {
            scan.bad = Some((off, format!("unreadable: {e}")));
            break;
        }
        let (len, crc) = split_record_header(rh);
        if len == 0 || len > MAX_RECORD_BYTES {
            scan.bad = Some((off, format!("implausible record length {len}")));
            break;
        }
        if RECORD_HEADER_LEN + len as u64 > left {
            scan.bad = Some((
                off,
                format!(
                    "truncated record ({len}-byte payload, {} bytes left)",
                    left - RECORD_HEADER_LEN
                ),
            ));
            break;
        }
        buf.resize(len as usize, 0);
        if let Err(e) = r.read_exact(buf) {
            scan.bad = Some((off, format!("unreadable: {e}")));
            break;
        }
        if crc32fast::hash(buf) != crc {
            scan.bad = Some((off, "crc mismatch".into()));
            break;
        }
        if scan.count.is_multiple_of(INDEX_STRIDE) {
            scan.index.push(off);
        }
        scan.count += 1;
        off += RECORD_HEADER_LEN + len as u64;
        scan.valid_len = off;
    }
    scan
}

fn timed_sync(f: &File, path: &Path) -> Result<(), SpoolError> {
    let t = Instant::now();
    f.sync_data().ctx("fsync", path)?;
    metrics::histogram!(FSYNC_SECONDS).record(t.elapsed().as_secs_f64());
    Ok(())
}

fn seg_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEG_EXT}")
}

fn parse_seq(stem: &str) -> Option<u64> {
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn strip_new(path: &Path) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    PathBuf::from(s.strip_suffix(".new").unwrap_or(&s))
}

fn rename_new(path: &Path) -> Result<(), SpoolError> {
    let dest = strip_new(path);
    fs::rename(path, &dest).ctx("rename into place", &dest)
}

fn remove_if_exists(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, e)),
    }
}
