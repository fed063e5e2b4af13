//! `aws_cognito`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::AwsCognitoSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for AwsCognitoSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "aws_cognito",
            "the `aws_cognito` probe kind is not implemented yet",
        )
    }
}
