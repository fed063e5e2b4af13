//! JWT validation against an issuer's JWKS (stub: filled in by the token
//! probes work). Owns the agent-wide JWKS cache.

/// JWKS documents by URL, shared by every probe of the agent.
#[derive(Default)]
pub struct JwksCache {}
