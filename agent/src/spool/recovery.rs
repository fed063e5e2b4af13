//! Open-time recovery: lists the directory, finishes or discards an
//! interrupted renumbering, scans every segment (header, then each record's
//! length and crc), truncates the torn tail of the newest segment, removes
//! bad, empty and fully acknowledged segments, and rebuilds the in-memory
//! segment list and index.
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::{Ctx, SpoolError};
use super::format::{
    FLAG_RECONCILED, MAX_RECORD_BYTES, RECORD_HEADER_LEN, SEG_EXT, SEG_NEW_EXT, SEGMENT_HEADER_LEN,
    STATE_FILE, STATE_TMP, parse_segment_header, parse_seq, read_header_file, read_state,
    rename_new, split_record_header, strip_new,
};
use super::{INDEX_STRIDE, OpenReport, READ_BUF, Segment, Spool, remove_if_exists};
use crate::private_fs;

impl Spool {
    /// Builds the in-memory state from the directory, repairing as it goes.
    /// Returns whether any prior spool state was found.
    pub(super) fn load(&mut self, report: &mut OpenReport) -> Result<bool, SpoolError> {
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

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
