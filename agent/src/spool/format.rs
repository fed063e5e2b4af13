//! The on-disk format (see the `spool` module doc for the layout): file
//! names (`<first_seq:020>.seg`, `*.seg.new`, `state`, `lock`), the segment
//! and record headers, and the state file's encoding, read and atomically
//! written.
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Spool;
use super::error::{Ctx, SpoolError};
use crate::private_fs;

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
pub(super) const FLAG_RECONCILED: u32 = 1;
pub(super) const STATE_FILE: &str = "state";
pub(super) const STATE_TMP: &str = "state.tmp";
pub(super) const LOCK_FILE: &str = "lock";
pub(super) const SEG_EXT: &str = ".seg";
pub(super) const SEG_NEW_EXT: &str = ".seg.new";

pub(super) struct State {
    pub(super) acked: u64,
    pub(super) floor: u64,
    pub(super) epoch: u64,
    pub(super) flags: u32,
}

impl Spool {
    pub(super) fn write_state(&mut self, sync_dir: bool) -> Result<(), SpoolError> {
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
        self.state_dirty = false;
        self.state_written = Some(Instant::now());
        Ok(())
    }
}

pub(super) fn split_record_header(h: [u8; 8]) -> (u32, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

pub(super) fn segment_header(epoch: u64, first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
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
pub(super) fn parse_segment_header(
    h: &[u8; SEGMENT_HEADER_LEN as usize],
) -> Result<(u64, u64), String> {
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

pub(super) fn read_header_file(path: &Path) -> Result<(u64, u64), String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    f.read_exact(&mut h).map_err(|e| e.to_string())?;
    parse_segment_header(&h)
}

pub(super) fn read_state(path: &Path) -> Result<State, String> {
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

pub(super) fn seg_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEG_EXT}")
}

pub(super) fn parse_seq(stem: &str) -> Option<u64> {
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

pub(super) fn strip_new(path: &Path) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    PathBuf::from(s.strip_suffix(".new").unwrap_or(&s))
}

pub(super) fn rename_new(path: &Path) -> Result<(), SpoolError> {
    let dest = strip_new(path);
    fs::rename(path, &dest).ctx("rename into place", &dest)
}
