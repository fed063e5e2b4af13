//! Stub: the hash-chained audit log (filled in by the issue-6 work). The
//! coordinator opens one at start and appends gate decisions, catalog
//! reloads, agent registrations and rejections, and admin actions.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(pub String);

/// Cheap to clone; appends are serialized internally.
#[derive(Clone, Debug, Default)]
pub struct AuditLog {}

impl AuditLog {
    pub fn open(_path: &Path) -> Result<AuditLog, AuditError> {
        Ok(AuditLog {})
    }

    /// Appends one entry; errors are logged, never fatal to the caller.
    pub fn append(&self, _kind: &str, _fields: serde_json::Value) {}
}
