//! File modes of what only the coordinator should read: the data
//! directory (0700), the audit log and the SQLite files (0600). Set when
//! created, and tightened on open when an older version (or a umask) left
//! them readable by others. Used by the store and the audit log alike, so
//! it belongs to neither.
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700; an existing `dir`
/// is tightened to 0700 when `tighten` is set (the coordinator's own data
/// directory, not a shared parent such as /var/lib).
pub fn private_dir(dir: &Path, tighten: bool) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        return b.create(dir);
    }
    if tighten {
        restrict(dir, 0o700)?;
    }
    Ok(())
}

/// Tightens an existing file to 0600 (no-op when it is missing or already
/// private).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(_) => restrict(path, 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"),
            "tightened the file mode (only the coordinator reads this)");
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_tightened() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/b");
        private_dir(&d, false).expect("create");
        assert_eq!(mode(&d), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&d, false).expect("left alone");
        assert_eq!(mode(&d), 0o755);
        private_dir(&d, true).expect("tighten");
        assert_eq!(mode(&d), 0o700);
        let f = d.join("f");
        std::fs::write(&f, "x").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        private_file(&f).expect("tighten");
        assert_eq!(mode(&f), 0o600);
        private_file(&d.join("missing")).expect("missing is fine");
    }
}
