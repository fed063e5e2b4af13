//! Reading records back: a seek through the segment's sparse index (or a
//! continuation from the cursor), each record's length, crc and seq checked,
//! and a segment found unreadable after it was written cut at the bad record.
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use authpulse_proto::v1::ProbeResult;
use prost::Message;

use super::error::{Ctx, SpoolError, io_error};
use super::format::{MAX_RECORD_BYTES, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, split_record_header};
use super::{Cursor, INDEX_STRIDE, READ_BUF, Spool, remove_if_exists};

/// Why reading a record failed.
pub(super) enum ReadFail {
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

impl Spool {
    /// Reads `want` records starting at `seq` from segment `i` into `out`.
    pub(super) fn read_in_segment(
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
    pub(super) fn cut_segment(
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
