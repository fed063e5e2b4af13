//! `userinfo`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::UserinfoSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for UserinfoSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "userinfo",
            "the `userinfo` probe kind is not implemented yet",
        )
    }
}
