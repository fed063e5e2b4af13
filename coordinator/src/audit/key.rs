//! The secret that keys the audit log's HMACs: read from a file
//! (`audit.hmac_key_file`) or the environment (`AUTHPULSE_AUDIT_KEY`), at
//! least [`AuditKey::MIN_LEN`] bytes, never shown. Each keyed entry carries
//! `key_id` (a fingerprint: HMAC of a fixed label, so it reveals nothing
//! about the key) and `mac` = HMAC-SHA256(key, the entry's `hash`); the
//! hash covers `prev`, so one MAC vouches for every entry before it too.
use std::path::Path;
use std::sync::Arc;

use hmac::{KeyInit, Mac};

use super::AuditError;

/// The environment variable holding the key itself (when no key file is
/// configured).
pub const KEY_ENV: &str = "AUTHPULSE_AUDIT_KEY";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// An HMAC key for the audit log. `Debug` shows only its id.
#[derive(Clone)]
pub struct AuditKey {
    secret: Arc<Vec<u8>>,
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    /// Shortest key accepted, in bytes (`openssl rand -hex 32` gives 64).
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes (surrounding whitespace and a trailing newline
    /// are not part of it).
    pub fn new(secret: &[u8], source: &str) -> Result<AuditKey, AuditError> {
        let secret = secret.trim_ascii();
        if secret.len() < Self::MIN_LEN {
            return Err(AuditError(format!(
                "the audit HMAC key from {source} is {} bytes; it needs at least {} \
                 (e.g. `openssl rand -hex 32`)",
                secret.len(),
                Self::MIN_LEN
            )));
        }
        let id = hex::encode(&mac_bytes(secret, b"authpulse audit key id")[..8]);
        Ok(AuditKey {
            secret: Arc::new(secret.to_vec()),
            id,
        })
    }

    /// Reads the key file; warns when others may read it.
    pub fn from_file(path: &Path) -> Result<AuditKey, AuditError> {
        let bytes = std::fs::read(path).map_err(|e| {
            AuditError(format!(
                "cannot read the audit HMAC key file {}: {e}",
                path.display()
            ))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(),
                    "the audit HMAC key file is readable by other users; make it mode 0600");
            }
        }
        AuditKey::new(&bytes, &path.display().to_string())
    }

    /// The key in the environment variable `var`, if it is set and not empty.
    pub fn from_env(var: &str) -> Result<Option<AuditKey>, AuditError> {
        match std::env::var_os(var) {
            Some(v) if !v.is_empty() => {
                AuditKey::new(v.as_encoded_bytes(), &format!("${var}")).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The fingerprint written as `key_id` (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `mac` of an entry whose `hash` is `hash` (hex).
    pub fn mac(&self, hash: &str) -> String {
        hex::encode(mac_bytes(&self.secret, hash.as_bytes()))
    }

    /// Whether `mac` (hex) is right for `hash`, compared in constant time.
    pub fn check(&self, hash: &str, mac: &str) -> bool {
        let Ok(given) = hex::decode(mac) else {
            return false;
        };
        let mut m = match HmacSha256::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => return false,
        };
        m.update(hash.as_bytes());
        m.verify_slice(&given).is_ok()
    }
}

fn mac_bytes(key: &[u8], data: &[u8]) -> Vec<u8> {
    match HmacSha256::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; unreachable.
        Err(_) => Vec::new(),
    }
}

/// The key the coordinator config names (`audit.hmac_key_file`), else the
/// one in [`KEY_ENV`], else none. A key file inside one of `protected`
/// (the data directory, the log's directory) is refused.
pub fn configured_key(
    cfg: &crate::config::AuditConfig,
    protected: &[&Path],
) -> Result<Option<AuditKey>, AuditError> {
    let key = match &cfg.hmac_key_file {
        Some(file) => {
            check_key_location(file, protected)?;
            Some(AuditKey::from_file(file)?)
        }
        None => AuditKey::from_env(KEY_ENV)?,
    };
    match &key {
        Some(k) => tracing::info!(key_id = %k.id(), "audit log entries carry HMACs"),
        None => tracing::info!(
            "audit log without an HMAC key: the hash chain finds accidental damage only \
             (set audit.hmac_key_file or AUTHPULSE_AUDIT_KEY)"
        ),
    }
    Ok(key)
}

/// Refuses a key file that sits with the data it protects: whoever can
/// rewrite the log could read the key there.
pub fn check_key_location(key: &Path, protected: &[&Path]) -> Result<(), AuditError> {
    let key_abs = std::fs::canonicalize(key).map_err(|e| {
        AuditError(format!(
            "cannot read the audit HMAC key file {}: {e}",
            key.display()
        ))
    })?;
    for dir in protected {
        // A directory that doesn't exist yet can't hold the key.
        let Ok(dir_abs) = std::fs::canonicalize(dir) else {
            continue;
        };
        if key_abs.starts_with(&dir_abs) {
            return Err(AuditError(format!(
                "the audit HMAC key file {} is inside {}, next to the log it protects: anyone \
                 who can rewrite the log could read the key. Keep it elsewhere (e.g. \
                 /etc/authpulse/audit.key, mode 0600)",
                key.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused_and_ids_hide_the_key() {
        assert!(AuditKey::new(b"short", "test").is_err());
        let k = AuditKey::new(b"0123456789abcdef0123456789abcdef\n", "test").expect("key");
        assert_eq!(k.id().len(), 16);
        assert!(!format!("{k:?}").contains("0123456789"));
        let mac = k.mac("abc");
        assert!(k.check("abc", &mac));
        assert!(!k.check("abd", &mac));
        assert!(!k.check("abc", "zz"));
        let other = AuditKey::new(b"0123456789abcdef0123456789abcdeX", "test").expect("key");
        assert_ne!(other.id(), k.id());
        assert!(!other.check("abc", &mac));
    }
}
