//! `scim`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::ScimSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for ScimSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(ctx, "scim", "the `scim` probe kind is not implemented yet")
    }
}
