//! Reading a whole audit log back: [`verify`] checks the hash chain (finds
//! accidental damage and edits that did not recompute the hashes);
//! [`verify_with`] also checks every entry's MAC with the given keys (finds
//! any rewrite by someone without the key). `authpulse audit verify` is a
//! thin shell around these.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{AuditKey, GENESIS, Head, Invalid, mac_ok, parse_entry};

/// A verified log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// Hash of the newest entry ([`GENESIS`] for an empty log).
    pub head: String,
    /// Entries that carry a MAC.
    pub macs: u64,
    /// Of those, the ones whose MAC was checked with a given key (all of
    /// them when keys were given, else none).
    pub authenticated: u64,
    /// The first entry with a MAC: it vouches for the ones before it.
    pub first_mac_seq: Option<u64>,
}

/// The first entry that breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEntry {
    /// 1-based line number.
    pub line: u64,
    /// The entry's `seq` when it could be read.
    pub seq: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for BadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "line {} (seq {seq}): {}", self.line, self.problem),
            None => write!(f, "line {}: {}", self.line, self.problem),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Bad(BadEntry),
}

/// Reads the whole log and checks every entry's hash, that seqs count up
/// from 1 without gaps, and that each `prev` is the hash of the line
/// before. Stops at the first bad entry. MACs are not checked: this finds
/// accidental damage, not a rewrite by someone who recomputed the hashes
/// (see [`verify_with`]).
pub fn verify(path: &Path) -> Result<Verified, VerifyError> {
    verify_with(path, &[])
}

/// [`verify`], and with `keys` also every entry's MAC (by the key its
/// `key_id` names): a MAC that doesn't match, an entry without one after
/// entries with one, or a log with no MAC at all is a bad entry, so a log
/// rewritten without the key fails even with every hash recomputed.
pub fn verify_with(path: &Path, keys: &[AuditKey]) -> Result<Verified, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut line_no = 0u64;
    let mut head = Head {
        seq: 0,
        hash: GENESIS.to_string(),
    };
    let mut buf = Vec::new();
    let mut macs = 0u64;
    let mut first_mac_seq = None;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let expected = head.seq + 1;
        let bad = |seq: Option<u64>, problem: String| {
            VerifyError::Bad(BadEntry {
                line: line_no,
                seq,
                problem,
            })
        };
        let e = match parse_entry(line) {
            Ok(e) => e,
            Err(Invalid { seq, problem }) => {
                let problem = if complete {
                    problem
                } else {
                    format!("truncated last line: {problem}")
                };
                return Err(bad(seq, format!("{problem} (expected seq {expected})")));
            }
        };
        if e.seq != expected {
            let why = if e.seq > expected {
                format!("expected seq {expected}: entries before it are missing or out of order")
            } else {
                format!("expected seq {expected}: entries are out of order or duplicated")
            };
            return Err(bad(Some(e.seq), why));
        }
        if e.prev != head.hash {
            return Err(bad(
                Some(e.seq),
                if line_no == 1 {
                    "does not start the chain (prev is not the genesis hash)".into()
                } else {
                    format!(
                        "prev hash does not match line {} (seq {}): the chain is broken",
                        line_no - 1,
                        head.seq
                    )
                },
            ));
        }
        if let Some(id) = &e.key_id {
            macs += 1;
            first_mac_seq.get_or_insert(e.seq);
            if !keys.is_empty() {
                let Some(k) = keys.iter().find(|k| k.id() == id) else {
                    return Err(bad(
                        Some(e.seq),
                        format!("written with key id {id}, which none of the given keys has"),
                    ));
                };
                if mac_ok(k, &e) != Some(true) {
                    return Err(bad(
                        Some(e.seq),
                        "MAC mismatch: the entry was modified or rewritten without the key".into(),
                    ));
                }
            }
        } else if let (false, Some(first)) = (keys.is_empty(), first_mac_seq) {
            return Err(bad(
                Some(e.seq),
                format!(
                    "no MAC, though entries from seq {first} on carry one: written or \
                     rewritten without the key"
                ),
            ));
        }
        head = Head {
            seq: e.seq,
            hash: e.hash,
        };
    }
    if !keys.is_empty() && head.seq > 0 && macs == 0 {
        return Err(VerifyError::Bad(BadEntry {
            line: line_no,
            seq: Some(head.seq),
            problem: "no entry carries a MAC: the log was written without a key, or \
                      rewritten by someone without it"
                .into(),
        }));
    }
    Ok(Verified {
        entries: head.seq,
        head: head.hash,
        macs,
        authenticated: if keys.is_empty() { 0 } else { macs },
        first_mac_seq,
    })
}
