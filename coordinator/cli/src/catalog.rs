//! The catalog commands: `validate` (every problem as FILE:LINE), `docs`
//! (the Markdown runbook; with `--schema` / `--reference` the catalog
//! format itself) and `import-openslo` (OpenSLO documents as catalog SLOs).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Checks the catalog; with `print`, writes its expansion to stdout (the
/// summary then goes to stderr, so stdout stays a catalog file).
pub(crate) fn validate(sources: &[PathBuf], print: bool) -> ExitCode {
    match authpulse_proto::catalog::load_files(sources) {
        Ok(c) => {
            let files = authpulse_proto::catalog::expand_sources(sources)
                .map(|f| f.len())
                .unwrap_or(sources.len());
            let summary = format!(
                "ok: {} probe(s), {} SLO(s), {} gate(s) in {files} file(s)",
                c.probes.len(),
                c.slos.len(),
                c.gates.len(),
            );
            if print {
                print!("{}", authpulse_proto::catalog::print::to_yaml(&c));
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_catalog_errors(&errors);
            ExitCode::from(1)
        }
    }
}

/// One problem per line (`FILE:LINE: `id`: path: message`), then the count.
pub(crate) fn print_catalog_errors(errors: &authpulse_proto::catalog::CatalogErrors) {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    eprintln!("{} problem(s) found", errors.0.len());
}

pub(crate) fn docs(
    files: &[PathBuf],
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let catalog = match authpulse_proto::catalog::load_files(files) {
        Ok(c) => c,
        Err(errors) => {
            print_catalog_errors(&errors);
            return Ok(ExitCode::from(1));
        }
    };
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let markdown = authpulse_coordinator::catalog_docs::render(&catalog, &sources);
    match output {
        Some(path) => {
            std::fs::write(path, &markdown)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote {} ({} probe(s), {} SLO(s), {} gate(s))",
                path.display(),
                catalog.probes.len(),
                catalog.slos.len(),
                catalog.gates.len()
            );
        }
        None => print!("{markdown}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `docs --schema` / `docs --reference` prints.
#[derive(Clone, Copy)]
pub(crate) enum FormatDoc {
    Schema,
    Reference,
}

/// The catalog file's JSON Schema or its Markdown reference, both generated
/// from the spec types in authpulse-proto.
pub(crate) fn format_docs(
    what: FormatDoc,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let text = match what {
        FormatDoc::Schema => authpulse_proto::catalog::json_schema_text(),
        FormatDoc::Reference => authpulse_proto::catalog::reference_markdown(),
    };
    match output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn import_openslo(
    file: &std::path::Path,
    catalog: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let slos = match authpulse_coordinator::openslo::convert(&text) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("{}: {e}", file.display());
            }
            return Ok(ExitCode::from(1));
        }
    };
    let yaml = authpulse_coordinator::openslo::to_yaml(&slos, &file.display().to_string());
    if !catalog.is_empty() {
        // Validate the SLOs next to the probes they name, as one catalog.
        let dir = tempfile::tempdir().context("temp dir")?;
        let out = dir.path().join("imported-slos.yaml");
        std::fs::write(&out, &yaml).context("write temp file")?;
        let mut files = catalog.to_vec();
        files.push(out);
        if let Err(e) = authpulse_proto::catalog::load_files(&files) {
            eprintln!("the converted SLOs do not validate against the catalog:\n{e}");
            return Ok(ExitCode::from(1));
        }
    }
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}
