//! What both binaries export as `authpulse_build_info`: the version and the
//! source revision they were built from, the one place the labels come from
//! so the agent's and the coordinator's series always match. The revision is
//! whatever the packager put in the environment variable `AUTHPULSE_REVISION`
//! at build time (`AUTHPULSE_REVISION=$(git rev-parse HEAD) cargo build …`);
//! without it the label says `unknown` rather than guessing from a git
//! checkout that may not exist (a source tarball, a container build context)
//! or may be dirty.

/// The metric name: a gauge that is always 1, labelled `version` and `revision`.
pub const METRIC: &str = "authpulse_build_info";

/// HELP text of [`METRIC`].
pub const HELP: &str = "Always 1; labels: version (the workspace version) and revision (AUTHPULSE_REVISION at build time, or unknown)";

/// The workspace version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source revision this build says it came from, or `unknown`.
pub fn revision() -> &'static str {
    match option_env!("AUTHPULSE_REVISION") {
        Some(r) if !r.trim().is_empty() => r,
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_revision_is_never_empty() {
        assert!(!super::revision().is_empty());
        assert!(!super::VERSION.is_empty());
    }
}
