//! `ldap`: not implemented yet; this stub fails every run with class
//! `config` so a catalog naming it loads, and says so.
use authpulse_proto::catalog::LdapSpec;

use super::{Probe, ProbeOutcome, RunContext, config_failure};

impl Probe for LdapSpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        config_failure(ctx, "ldap", "the `ldap` probe kind is not implemented yet")
    }
}
