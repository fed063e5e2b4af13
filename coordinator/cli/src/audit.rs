//! `authpulse audit verify`: checks an audit log's hash chain (and its
//! HMACs with the keys given).
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) fn audit_verify(
    file: &std::path::Path,
    key_files: &[PathBuf],
    key_env: Option<&str>,
) -> ExitCode {
    use authpulse_coordinator::audit::{AuditKey, VerifyError, verify_with};
    let mut keys = Vec::new();
    for f in key_files {
        match AuditKey::from_file(f) {
            Ok(k) => keys.push(k),
            Err(e) => {
                eprintln!("authpulse: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(var) = key_env {
        match AuditKey::from_env(var) {
            Ok(Some(k)) => keys.push(k),
            Ok(None) => {
                eprintln!("authpulse: --key-env {var}: the variable is not set");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("authpulse: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match verify_with(file, &keys) {
        Ok(v) if keys.is_empty() => {
            println!("ok: {} entries (head {})", v.entries, v.head);
            println!(
                "hash chain only (no key given): this finds accidental damage, not a rewrite by \
                 someone who recomputed the hashes{}",
                if v.macs > 0 {
                    format!(
                        "; {} entries carry MACs: pass --key-file to check them",
                        v.macs
                    )
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!(
                "ok: {} entries (head {}), MACs checked with the key",
                v.entries, v.head
            );
            if let Some(first) = v.first_mac_seq.filter(|s| *s > 1) {
                println!(
                    "entries 1 to {} were written without a key; the MAC of seq {first} vouches \
                     for them through the hash chain",
                    first - 1
                );
            }
            ExitCode::SUCCESS
        }
        Err(VerifyError::Bad(bad)) => {
            eprintln!("{}: {bad}", file.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("authpulse: {e}");
            ExitCode::from(2)
        }
    }
}
