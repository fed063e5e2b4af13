//! The last assignment the coordinator sent, kept on disk so that an agent
//! restarted while the coordinator is unreachable goes on probing what it was
//! told to, instead of sitting idle. Written atomically (temp file, fsync,
//! rename); a missing or unreadable file just means "none yet".
//!
//! The file holds each probe's catalog entry, references as references but
//! any credential a catalog writes inline (instead of `{ secret: NAME }`) as
//! its value, so it is owner-only (`0600`, tightened on load if an older
//! version left it looser; see `private_fs`).
use std::path::{Path, PathBuf};

use authpulse_proto::catalog::{self, ProbeDef};
use serde::{Deserialize, Serialize};

const FILE: &str = "assignment.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u64,
    /// Each probe in its wire form (`ProbeDef::to_json`).
    probes: Vec<String>,
}

pub struct LastAssignment {
    path: PathBuf,
}

impl LastAssignment {
    pub fn new(data_dir: &Path) -> LastAssignment {
        LastAssignment {
            path: data_dir.join(FILE),
        }
    }

    /// The stored assignment, if any. Probes that no longer parse (an older
    /// file from a different version) are skipped with a log line.
    pub fn load(&self) -> Option<(u64, Vec<ProbeDef>)> {
        // An older version wrote it with the default (often 0644) mode.
        crate::private_fs::tighten(&self.path, crate::private_fs::FILE_MODE);
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the last assignment");
                return None;
            }
        };
        let stored: Stored = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring a corrupt last assignment");
                return None;
            }
        };
        let probes = stored
            .probes
            .iter()
            .filter_map(|json| match catalog::probe_from_json(json) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a stored probe that no longer parses");
                    None
                }
            })
            .collect();
        Some((stored.version, probes))
    }

    pub fn save(&self, version: u64, probes: &[ProbeDef]) -> std::io::Result<()> {
        let stored = Stored {
            version,
            probes: probes.iter().map(ProbeDef::to_json).collect(),
        };
        let json = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = crate::private_fs::create_file(&tmp)?;
            f.write_all(&json)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("ap-last-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let store = LastAssignment::new(&dir);
        assert!(store.load().is_none());
        let cat = catalog::load_str(
            "a.yaml",
            "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n",
        )
        .expect("catalog");
        store.save(7, &cat.probes).expect("save");
        let (v, probes) = store.load().expect("load");
        assert_eq!(v, 7);
        assert_eq!(probes[0].common, cat.probes[0].common);
        std::fs::write(dir.join(FILE), "{not json").expect("corrupt");
        assert!(
            store.load().is_none(),
            "a corrupt file is ignored, not fatal"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LastAssignment::new(dir.path());
        let mode = || {
            std::fs::metadata(dir.path().join(FILE))
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        // An inline credential ends up in the file as its value.
        let cat = catalog::load_str(
            "a.yaml",
            "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n    headers: { X-Key: inline-credential }\n",
        )
        .expect("catalog");
        store.save(1, &cat.probes).expect("save");
        assert_eq!(mode(), 0o600);
        // Left 0644 by an older version: tightened when read.
        std::fs::set_permissions(
            dir.path().join(FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("loosen");
        assert!(store.load().is_some());
        assert_eq!(mode(), 0o600);
        // A stale temp file with a loose mode doesn't make the next one loose.
        let tmp = dir.path().join("assignment.json.tmp");
        std::fs::write(&tmp, "x").expect("tmp");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).expect("loosen");
        store.save(2, &cat.probes).expect("save");
        assert_eq!(mode(), 0o600);
    }
}
