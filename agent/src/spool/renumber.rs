//! The rewrite behind [`Spool::renumber_after`]: every held record
//! renumbered into `*.seg.new` files of the next epoch, then swapped in for
//! the old segments once the state file has committed that epoch.
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use prost::Message;

use super::error::{Ctx, SpoolError};
use super::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, rename_new, seg_name, segment_header};
use super::{Spool, remove_if_exists};
use crate::private_fs;

impl Spool {
    /// Second half of a committed renumbering: old segments out, new in.
    pub(super) fn replace_segments(&self, written: &[PathBuf]) -> Result<(), SpoolError> {
        for seg in &self.segments {
            remove_if_exists(&seg.path)?;
        }
        for p in written {
            rename_new(p)?;
        }
        self.sync_dir()
    }

    /// Writes every held record, renumbered from `highest + 1`, into
    /// `*.seg.new` files of epoch `epoch`; returns the next seq after them.
    pub(super) fn write_renumbered(
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
}
