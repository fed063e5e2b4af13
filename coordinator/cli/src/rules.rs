//! `authpulse rules`: the Prometheus rules of a catalog's SLOs (the
//! generator is [`authpulse_coordinator::prometheus_rules`]), printed, written
//! to a file, or spliced between the markers of an existing rule file such as
//! deploy/prometheus/rules.yml, whose operational groups stay as they are.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use authpulse_coordinator::prometheus_rules;

pub(crate) fn rules(
    sources: &[PathBuf],
    output: Option<&Path>,
    into: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let catalog = match authpulse_proto::catalog::load_files(sources) {
        Ok(c) => c,
        Err(errors) => {
            crate::catalog::print_catalog_errors(&errors);
            return Ok(ExitCode::from(1));
        }
    };
    let names: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
    if let Some(file) = into {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let spliced = match prometheus_rules::splice(&text, &prometheus_rules::groups(&catalog)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("authpulse rules: {}: {e}", file.display());
                return Ok(ExitCode::from(1));
            }
        };
        std::fs::write(file, spliced)
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!("updated {} ({} SLO(s))", file.display(), catalog.slos.len());
        return Ok(ExitCode::SUCCESS);
    }
    let text = prometheus_rules::rule_file(&catalog, &names);
    match output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {} ({} SLO(s))", path.display(), catalog.slos.len());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
