//! `authorization_code`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::AuthorizationCodeSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for AuthorizationCodeSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "authorization_code",
            "the `authorization_code` probe kind is not implemented yet",
        )
    }
}
