//! The contract both sides share: the generated `authpulse.v1` gRPC types and
//! the catalog (probes, SLOs, gates) with its loader and validation, and the
//! agent identity carried in client certificates.
pub mod catalog;
pub mod identity;

pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("authpulse.v1");
}
