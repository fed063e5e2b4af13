//! `aws_sts`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::AwsStsSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for AwsStsSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "aws_sts",
            "the `aws_sts` probe kind is not implemented yet",
        )
    }
}
