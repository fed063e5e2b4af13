//! AWS request signing and endpoints shared by the AWS probes (stub: filled
//! in by the AWS probes work).
