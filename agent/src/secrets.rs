//! Secret references (`{ secret: NAME }`) resolved on the agent, and the
//! redactor that keeps their values out of every detail string the agent
//! produces. Values come from `AUTHPULSE_SECRET_<NAME>` or `<secrets_dir>/<NAME>`
//! (contract); they are never logged, sent or put into metrics.
use std::path::PathBuf;
use std::sync::Mutex;

use authpulse_proto::catalog::Value;

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
        format!(
            "AUTHPULSE_SECRET_{}",
            name.to_ascii_uppercase().replace(['-', '.'], "_")
        )
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

/// Collects every secret value resolved during one run and scrubs them from
/// text. Redaction is by value, so a secret echoed back by a server (in an
/// error body, say) is caught too.
#[derive(Debug, Default)]
pub struct Redactor {
    values: Mutex<Vec<String>>,
}

pub const REDACTED: &str = "[redacted]";

impl Redactor {
    pub fn remember(&self, value: &str) {
        // Very short values would shred ordinary text and protect little.
        if value.len() >= 4
            && let Ok(mut v) = self.values.lock()
            && !v.iter().any(|x| x == value)
        {
            v.push(value.to_string());
            // Longest first so a secret containing another is fully replaced.
            v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let Ok(values) = self.values.lock() else {
            return REDACTED.to_string();
        };
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
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
            redactor.remember(&v);
            Ok(v)
        }
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
