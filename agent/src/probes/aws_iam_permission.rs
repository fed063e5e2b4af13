//! `aws_iam_permission`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::AwsIamPermissionSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for AwsIamPermissionSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "aws_iam_permission",
            "the `aws_iam_permission` probe kind is not implemented yet",
        )
    }
}
