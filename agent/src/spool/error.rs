//! Errors of the spool: [`SpoolError`], and the `ctx` helper that turns an
//! `io::Error` into one naming the failed operation and its path.
use std::io;
use std::path::{Path, PathBuf};

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

pub(super) trait Ctx<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, SpoolError>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, SpoolError> {
        self.map_err(|e| io_error(op, path, e))
    }
}

pub(super) fn io_error(op: &'static str, path: &Path, error: io::Error) -> SpoolError {
    SpoolError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}
