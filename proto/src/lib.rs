//! The contract both sides share: the generated `authpulse.v1` gRPC types and
//! the catalog (probes, SLOs, gates) with its loader and validation, and the
//! agent identity carried in client certificates.
pub mod build_info;
pub mod catalog;
pub mod identity;

pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("authpulse.v1");
}

use v1::FailureClass as F;

/// Every failure class with its lower-case snake name (`dns`, `http_status`,
/// …), as used in metrics labels, JSON, catalogs and docs: the one table
/// every name comes from. `unspecified` (the zero value) is not in it: no
/// result or catalog may name it.
const FAILURE_CLASSES: &[(F, &str)] = &[
    (F::Dns, "dns"),
    (F::Connect, "connect"),
    (F::Tls, "tls"),
    (F::Timeout, "timeout"),
    (F::HttpStatus, "http_status"),
    (F::Protocol, "protocol"),
    (F::AuthRejected, "auth_rejected"),
    (F::TokenInvalid, "token_invalid"),
    (F::Assertion, "assertion"),
    (F::PermissionMismatch, "permission_mismatch"),
    (F::Escalation, "escalation"),
    (F::Config, "config"),
    (F::Internal, "internal"),
];

/// Every failure class a catalog may name, in the table's order.
pub fn failure_class_names() -> impl Iterator<Item = &'static str> {
    FAILURE_CLASSES.iter().map(|(_, name)| *name)
}

/// The class a catalog name stands for (the inverse of [`failure_class_name`]).
pub fn failure_class_from_name(name: &str) -> Option<v1::FailureClass> {
    FAILURE_CLASSES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(c, _)| *c)
}

/// The name of a class; `unspecified` for the zero value.
pub fn failure_class_name(c: v1::FailureClass) -> &'static str {
    FAILURE_CLASSES
        .iter()
        .find(|(class, _)| *class == c)
        .map(|(_, n)| *n)
        .unwrap_or("unspecified")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A class added to the proto without a name here would be reported as
    /// `unspecified`: every non-zero value must be in the table, once.
    #[test]
    fn every_failure_class_has_one_name() {
        let mut seen = std::collections::HashSet::new();
        for v in 1..=64 {
            if let Ok(c) = v1::FailureClass::try_from(v) {
                let name = failure_class_name(c);
                assert_ne!(name, "unspecified", "{c:?} has no name");
                assert_eq!(failure_class_from_name(name), Some(c));
                assert!(seen.insert(name), "{name} twice");
            }
        }
        assert_eq!(seen.len(), FAILURE_CLASSES.len());
    }
}
