//! Where a catalog comes from: each configured entry is a file, a directory
//! (every `.yaml`, `.yml` and `.toml` file under it) or a glob pattern
//! (`teams/*.yaml`). Expanded in a stable order (sorted paths), each file
//! once. Names starting with `.` are skipped, so a Kubernetes ConfigMap
//! mounted as a directory (its `..data` links) and editors' swap files are
//! not read twice or half-written. An entry that yields no file is an
//! error: a typo in a pattern must not silently drop a team's probes.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::load::{CatalogError, CatalogErrors};

/// At most this many files in one catalog, and this deep under a directory.
pub const MAX_FILES: usize = 2_000;
const MAX_DEPTH: usize = 8;

const EXTENSIONS: &[&str] = &["yaml", "yml", "toml"];

fn is_catalog_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn error(entry: &Path, message: String) -> CatalogError {
    CatalogError {
        file: entry.to_path_buf(),
        line: None,
        item: None,
        path: String::new(),
        message,
        context: None,
    }
}

/// The catalog files the entries name, in order, each once.
pub fn expand_sources<P: AsRef<Path>>(entries: &[P]) -> Result<Vec<PathBuf>, CatalogErrors> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for entry in entries {
        let entry = entry.as_ref();
        let found = expand_one(entry);
        match found {
            Ok(files) if files.is_empty() => errors.push(error(
                entry,
                if is_pattern(&entry.to_string_lossy()) {
                    "the pattern matches no .yaml, .yml or .toml file".to_string()
                } else {
                    "the directory holds no .yaml, .yml or .toml file".to_string()
                },
            )),
            Ok(files) => {
                for f in files {
                    // The same file through a directory and by name: once.
                    let key = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
                    if seen.insert(key) {
                        out.push(f);
                    }
                }
            }
            Err(e) => errors.push(*e),
        }
    }
    if out.len() > MAX_FILES {
        errors.push(error(
            Path::new(""),
            format!("{} catalog files; at most {MAX_FILES}", out.len()),
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(CatalogErrors(errors))
    }
}

fn expand_one(entry: &Path) -> Result<Vec<PathBuf>, Box<CatalogError>> {
    let text = entry.to_string_lossy();
    if is_pattern(&text) {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let paths = glob::glob_with(&text, options)
            .map_err(|e| Box::new(error(entry, format!("invalid pattern: {e}"))))?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file() && is_catalog_file(p))
            .collect();
        files.sort();
        return Ok(files);
    }
    match std::fs::metadata(entry) {
        Ok(m) if m.is_dir() => {
            let mut files = Vec::new();
            walk(entry, 0, &mut files).map_err(|e| Box::new(error(entry, e)))?;
            files.sort();
            Ok(files)
        }
        // A file (or a missing one: reading it reports the error).
        _ => Ok(vec![entry.to_path_buf()]),
    }
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("more than {MAX_DEPTH} directory levels"));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        if hidden(&p) {
            continue;
        }
        // Real subdirectories only: a symlinked one could loop.
        let real_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if real_dir {
            walk(&p, depth + 1, out)?;
        } else if p.is_file() && is_catalog_file(&p) {
            out.push(p);
            if out.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} catalog files"));
            }
        }
    }
    Ok(())
}
