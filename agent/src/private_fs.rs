//! Owner-only files and directories for everything the agent keeps on disk.
//! The data directory holds results (details can quote servers) and the last
//! assignment, which carries any credential a catalog writes inline instead
//! of as `{ secret: NAME }`; so directories are created `0700` and files
//! `0600`, and ones found looser (left by an older version, or made by hand)
//! are tightened when the agent opens them. Tightening is best effort: a
//! path the agent doesn't own is logged, not fatal.
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory the agent creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the agent creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) owner-only; tightens it if it exists.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir, DIR_MODE);
    Ok(())
}

/// Options for a new owner-only file (the mode applies when it is created).
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates or truncates `path` for writing, owner-only even if it existed.
pub fn create_file(path: &Path) -> io::Result<File> {
    let f = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    tighten_file(&f, path);
    Ok(f)
}

/// Removes group and other bits from `path` beyond `mode`.
pub fn tighten(path: &Path, mode: u32) {
    match fs::metadata(path) {
        Ok(m) => {
            let now = m.permissions().mode() & 0o777;
            if now & !mode != 0 {
                set(path, now & mode, now, || {
                    fs::set_permissions(path, fs::Permissions::from_mode(now & mode))
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot check permissions");
        }
    }
}

/// [`tighten`] for an open file (no second path lookup).
pub fn tighten_file(f: &File, path: &Path) {
    if let Ok(m) = f.metadata() {
        let now = m.permissions().mode() & 0o777;
        if now & !FILE_MODE != 0 {
            set(path, now & FILE_MODE, now, || {
                f.set_permissions(fs::Permissions::from_mode(now & FILE_MODE))
            });
        }
    }
}

fn set(path: &Path, to: u32, was: u32, apply: impl FnOnce() -> io::Result<()>) {
    match apply() {
        Ok(()) => tracing::info!(
            path = %path.display(),
            was = format!("{was:o}"),
            now = format!("{to:o}"),
            "tightened permissions (the agent's files are owner-only)"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = format!("{was:o}"),
            error = %e,
            "cannot make owner-only; others may read it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_tightened_when_loose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a/b");
        create_dir(&sub).expect("create");
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("f");
        create_file(&f).expect("file");
        assert_eq!(mode(&f), 0o600);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("loosen");
        create_file(&f).expect("again");
        assert_eq!(mode(&f), 0o600, "an existing loose file is tightened");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("loosen");
        create_dir(&sub).expect("again");
        assert_eq!(mode(&sub), 0o700);
        // Stricter than ours stays as it is.
        fs::set_permissions(&f, fs::Permissions::from_mode(0o400)).expect("stricter");
        tighten(&f, FILE_MODE);
        assert_eq!(mode(&f), 0o400);
    }
}
