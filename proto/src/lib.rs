//! The contract both sides share: the generated `authpulse.v1` gRPC types and
//! the catalog (probes, SLOs, gates) with its loader and validation, and the
//! agent identity carried in client certificates.
pub mod catalog;
pub mod identity;

pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("authpulse.v1");
}

/// Lower-case snake name of a failure class (`dns`, `http_status`, …), as
/// used in metrics labels, JSON and docs; `unspecified` for the zero value.
/// Every failure class a catalog may name (all but `unspecified`).
pub const FAILURE_CLASS_NAMES: &[&str] = &[
    "dns",
    "connect",
    "tls",
    "timeout",
    "http_status",
    "protocol",
    "auth_rejected",
    "token_invalid",
    "assertion",
    "permission_mismatch",
    "escalation",
    "config",
    "internal",
];

/// The class a catalog name stands for (the inverse of [`failure_class_name`]).
pub fn failure_class_from_name(name: &str) -> Option<v1::FailureClass> {
    use v1::FailureClass as F;
    [
        F::Dns,
        F::Connect,
        F::Tls,
        F::Timeout,
        F::HttpStatus,
        F::Protocol,
        F::AuthRejected,
        F::TokenInvalid,
        F::Assertion,
        F::PermissionMismatch,
        F::Escalation,
        F::Config,
        F::Internal,
    ]
    .into_iter()
    .find(|c| failure_class_name(*c) == name)
}

pub fn failure_class_name(c: v1::FailureClass) -> &'static str {
    use v1::FailureClass as F;
    match c {
        F::Unspecified => "unspecified",
        F::Dns => "dns",
        F::Connect => "connect",
        F::Tls => "tls",
        F::Timeout => "timeout",
        F::HttpStatus => "http_status",
        F::Protocol => "protocol",
        F::AuthRejected => "auth_rejected",
        F::TokenInvalid => "token_invalid",
        F::Assertion => "assertion",
        F::PermissionMismatch => "permission_mismatch",
        F::Escalation => "escalation",
        F::Config => "config",
        F::Internal => "internal",
    }
}
