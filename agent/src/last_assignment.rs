//! The last assignment the coordinator sent, kept on disk so that an agent
//! restarted while the coordinator is unreachable goes on probing what it was
//! told to, instead of sitting idle. Written atomically (temp file, fsync,
//! rename); a missing or unreadable file just means "none yet".
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
            let mut f = std::fs::File::create(&tmp)?;
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
}
