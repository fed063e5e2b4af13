//! `dns`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::DnsSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for DnsSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(ctx, "dns", "the `dns` probe kind is not implemented yet")
    }
}
