//! `jwt_validate`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::JwtValidateSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for JwtValidateSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "jwt_validate",
            "the `jwt_validate` probe kind is not implemented yet",
        )
    }
}
