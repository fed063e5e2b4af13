//! `introspect`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::IntrospectSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for IntrospectSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(
            ctx,
            "introspect",
            "the `introspect` probe kind is not implemented yet",
        )
    }
}
