//! `password`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::PasswordSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for PasswordSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "password",
            "the `password` probe kind is not implemented yet",
        )
    }
}
