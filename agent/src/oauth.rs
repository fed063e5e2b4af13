//! OAuth 2.0 / OpenID Connect client plumbing shared by the token probes
//! (stub: filled in by the token probes work).
