//! `client_credentials`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::ClientCredentialsSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for ClientCredentialsSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "client_credentials",
            "the `client_credentials` probe kind is not implemented yet",
        )
    }
}
