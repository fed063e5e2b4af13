//! `authpulse certs`: a development CA and the mTLS certificates of the
//! coordinator and the agents.
use std::process::ExitCode;

use crate::CertsCommand;

pub(crate) fn certs(command: CertsCommand) -> anyhow::Result<ExitCode> {
    use authpulse_coordinator::certs;
    match command {
        CertsCommand::Init {
            out,
            san,
            days,
            force,
        } => {
            let w = certs::init(&out, &san, days, force)?;
            println!(
                "wrote {} and {} (CA)",
                w.ca_cert.display(),
                w.ca_key.display()
            );
            println!(
                "wrote {} and {} (coordinator, valid for {})",
                w.server_cert.display(),
                w.server_key.display(),
                w.server_names.join(", ")
            );
            println!(
                "coordinator config:\n  tls: {{ cert: {}, key: {}, client_ca: {} }}",
                w.server_cert.display(),
                w.server_key.display(),
                w.ca_cert.display()
            );
        }
        CertsCommand::Agent {
            out,
            ca,
            ca_key,
            agent_id,
            region,
            days,
            force,
        } => {
            let identity = authpulse_proto::identity::AgentIdentity::new(agent_id, region)?;
            let (cert, key) = certs::agent(&out, &ca, &ca_key, &identity, days, force)?;
            println!(
                "wrote {} and {} ({}, {})",
                cert.display(),
                key.display(),
                identity.uri(),
                identity
            );
            println!(
                "agent config:\n  agent_id: {}\n  region: {}\n  tls: {{ cert: {}, key: {}, ca: {} }}",
                identity.agent_id,
                identity.region,
                cert.display(),
                key.display(),
                ca.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
