//! The append path: a batch encoded into records, written to the active
//! segment or a new one and made durable with one fdatasync, and the
//! segment sealed and cut back after a failed write.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use authpulse_proto::v1::ProbeResult;
use prost::Message;

use super::error::{Ctx, SpoolError};
use super::format::{
    MAX_RECORD_BYTES, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, seg_name, segment_header,
};
use super::{FSYNC_SECONDS, INDEX_STRIDE, Segment, Spool};
use crate::private_fs;

impl Spool {
    pub(super) fn encode_batch(
        &mut self,
        results: &mut [ProbeResult],
        first: u64,
    ) -> Result<(), SpoolError> {
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

    pub(super) fn write_active(&mut self, batch_len: u64) -> Result<(), SpoolError> {
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

    pub(super) fn write_new_segment(&mut self, first: u64) -> Result<(), SpoolError> {
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
    pub(super) fn after_write_failure(&mut self, first: u64, n: u64) {
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
}

fn timed_sync(f: &File, path: &Path) -> Result<(), SpoolError> {
    let t = Instant::now();
    f.sync_data().ctx("fsync", path)?;
    metrics::histogram!(FSYNC_SECONDS).record(t.elapsed().as_secs_f64());
    Ok(())
}
