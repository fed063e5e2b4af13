//! Secret references (`{ secret: NAME }`) resolved on the agent; each value
//! resolved is handed to the run's [`Redactor`] (see `redact`), which keeps
//! it out of every detail string the agent produces. Values come from
//! `AUTHPULSE_SECRET_<NAME>` or `<secrets_dir>/<NAME>` (contract); they are
//! never logged, sent or put into metrics.
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use authpulse_proto::catalog::Value;

pub use crate::redact::{REDACTED, Redactor};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    // Names only, never values.
    #[error("secret `{name}` not found: set {env} or create {file}")]
    Missing {
        name: String,
        env: String,
        file: String,
    },
    #[error("secret `{name}`: cannot read {file}: {reason}")]
    Unreadable {
        name: String,
        file: String,
        reason: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct SecretStore {
    dir: Option<PathBuf>,
}

impl SecretStore {
    pub fn new(dir: Option<PathBuf>) -> SecretStore {
        SecretStore { dir }
    }

    pub fn env_name(name: &str) -> String {
        authpulse_proto::catalog::secret_env_name(name)
    }

    pub fn get(&self, name: &str) -> Result<String, SecretError> {
        let env = Self::env_name(name);
        if let Ok(v) = std::env::var(&env) {
            return Ok(v);
        }
        let file = self
            .dir
            .as_ref()
            .map(|d| d.join(name))
            .unwrap_or_else(|| PathBuf::from(format!("<secrets_dir>/{name}")));
        if self.dir.is_some() && !name.contains(['/', '\\']) && name != ".." {
            match std::fs::read_to_string(&file) {
                // A trailing newline from `echo x > file` is not part of the secret.
                Ok(v) => return Ok(v.trim_end_matches(['\n', '\r']).to_string()),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SecretError::Unreadable {
                        name: name.into(),
                        file: file.display().to_string(),
                        reason: e.kind().to_string(),
                    });
                }
                Err(_) => {}
            }
        }
        Err(SecretError::Missing {
            name: name.into(),
            env,
            file: file.display().to_string(),
        })
    }
}

/// Resolves a catalog value, remembering secrets for redaction.
pub fn resolve(
    value: &Value,
    store: &SecretStore,
    redactor: &Redactor,
) -> Result<String, SecretError> {
    match value {
        Value::Plain(s) => Ok(s.clone()),
        Value::Secret { secret } => {
            let v = store.get(secret)?;
            if v.chars().count() < crate::redact::MIN_SECRET_CHARS {
                warn_short_once(secret);
            }
            redactor.remember(&v);
            Ok(v)
        }
    }
}

/// Values this short are not redacted (they would shred ordinary text);
/// say so once per name rather than at every run.
fn warn_short_once(name: &str) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if let Ok(mut warned) = WARNED.lock()
        && warned.insert(name.to_string())
    {
        tracing::warn!(
            secret = name,
            min_chars = crate::redact::MIN_SECRET_CHARS,
            "secret is too short to be redacted from probe details; use a longer credential"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_trims_newline_and_is_redacted() {
        let dir = std::env::temp_dir().join(format!("ap-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("db_pw"), "hunter2-long\n").expect("write");
        let store = SecretStore::new(Some(dir.clone()));
        let red = Redactor::default();
        let v = resolve(
            &Value::Secret {
                secret: "db_pw".into(),
            },
            &store,
            &red,
        )
        .expect("found");
        assert_eq!(v, "hunter2-long");
        assert_eq!(
            red.redact("server said: bad password hunter2-long!"),
            "server said: bad password [redacted]!"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_secret_names_where_to_put_it_without_values() {
        let store = SecretStore::new(None);
        let err = store
            .get("corp_cc_secret")
            .expect_err("missing")
            .to_string();
        assert!(err.contains("AUTHPULSE_SECRET_CORP_CC_SECRET"), "{err}");
    }

    #[test]
    fn path_traversal_is_not_read() {
        let store = SecretStore::new(Some(PathBuf::from("/etc")));
        assert!(store.get("../etc/passwd").is_err());
    }
}
