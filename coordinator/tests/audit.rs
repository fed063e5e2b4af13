//! The hash-chained audit log on a real file: a fresh log verifies; an
//! edited, dropped, swapped or truncated line fails `verify` (and
//! `authpulse audit verify`) naming the first bad entry; reopening continues
//! the chain, repairs a torn last line and refuses a tampered tail;
//! concurrent appends stay one chain.
use std::path::{Path, PathBuf};
use std::process::Command;

use authpulse_coordinator::audit::{AuditLog, BadEntry, VerifyError, catalog_diff, verify};
use authpulse_proto::catalog::load_str;
use serde_json::{Value, json};

/// Writes `n` entries through a log that is closed again on return.
async fn write_log(path: &Path, n: u64) {
    let log = AuditLog::open(path).expect("open");
    for i in 0..n {
        let seq = log
            .append_durable("test", json!({ "i": i, "note": format!("entry {i}") }))
            .await
            .expect("append");
        assert!(seq.is_some());
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

fn bad(path: &Path) -> BadEntry {
    match verify(path) {
        Err(VerifyError::Bad(b)) => b,
        other => panic!("expected a bad entry, got {other:?}"),
    }
}

/// `authpulse audit verify FILE`: (exit code, stdout, stderr).
fn cli_verify(path: &Path) -> (i32, String, String) {
    let out = Command::new(authpulse_tests::bin("authpulse"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .expect("run authpulse");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit").join("audit.jsonl");
    (dir, path)
}

#[tokio::test]
async fn a_fresh_log_verifies_and_chains_every_entry() {
    let (_dir, path) = temp_log();
    write_log(&path, 5).await;
    let v = verify(&path).expect("verifies");
    assert_eq!(v.entries, 5);
    let ls = lines(&path);
    assert_eq!(ls.len(), 5);
    let entries: Vec<Value> = ls
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(entries[0]["prev"], authpulse_coordinator::audit::GENESIS);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["kind"], "test");
        assert_eq!(e["fields"]["i"], i as u64);
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        if i > 0 {
            assert_eq!(e["prev"], entries[i - 1]["hash"], "line {} chains", i + 1);
        }
    }
    assert_eq!(v.head, entries[4]["hash"].as_str().expect("hash"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (code, stdout, _) = cli_verify(&path);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("ok: 5 entries"), "{stdout}");

    // An empty log is a valid (empty) chain.
    let empty = path.with_file_name("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    assert_eq!(verify(&empty).expect("verifies").entries, 0);
}

#[tokio::test]
async fn an_edited_line_is_named() {
    let (_dir, path) = temp_log();
    write_log(&path, 5).await;
    let mut ls = lines(&path);
    assert!(ls[2].contains("entry 2"));
    ls[2] = ls[2].replace("entry 2", "entry X");
    write_lines(&path, &ls);
    let b = bad(&path);
    assert_eq!((b.line, b.seq), (3, Some(3)));
    assert!(b.problem.contains("hash mismatch"), "{b}");

    let (code, _, stderr) = cli_verify(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 3 (seq 3)"), "{stderr}");
    assert!(stderr.contains("modified"), "{stderr}");
}

#[tokio::test]
async fn an_edited_line_with_a_recomputed_hash_breaks_the_next_link() {
    // Someone who recomputes the edited entry's own hash still breaks the
    // link from the entry after it.
    let (_dir, path) = temp_log();
    write_log(&path, 4).await;
    let mut ls = lines(&path);
    let mut e: serde_json::Map<String, Value> = serde_json::from_str(&ls[1]).expect("json");
    e.insert("fields".into(), json!({ "i": 1, "note": "rewritten" }));
    let h = authpulse_coordinator::audit::entry_hash(&e);
    e.insert("hash".into(), json!(h));
    ls[1] = Value::Object(e).to_string();
    write_lines(&path, &ls);
    let b = bad(&path);
    assert_eq!((b.line, b.seq), (3, Some(3)), "{b}");
    assert!(b.problem.contains("prev hash does not match line 2"), "{b}");
}

#[tokio::test]
async fn a_dropped_line_is_named() {
    let (_dir, path) = temp_log();
    write_log(&path, 5).await;
    let mut ls = lines(&path);
    ls.remove(2);
    write_lines(&path, &ls);
    let b = bad(&path);
    assert_eq!((b.line, b.seq), (3, Some(4)));
    assert!(b.problem.contains("expected seq 3"), "{b}");
    assert!(b.problem.contains("missing"), "{b}");

    let (code, _, stderr) = cli_verify(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 3 (seq 4)"), "{stderr}");

    // Dropping the first line: the chain no longer starts at seq 1.
    let mut ls = lines(&path);
    ls.remove(0);
    write_lines(&path, &ls);
    let b = bad(&path);
    assert_eq!((b.line, b.seq), (1, Some(2)), "{b}");
}

#[tokio::test]
async fn swapped_lines_are_named() {
    let (_dir, path) = temp_log();
    write_log(&path, 5).await;
    let mut ls = lines(&path);
    ls.swap(1, 2);
    write_lines(&path, &ls);
    let b = bad(&path);
    assert_eq!((b.line, b.seq), (2, Some(3)));
    assert!(b.problem.contains("expected seq 2"), "{b}");

    let (code, _, stderr) = cli_verify(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 2 (seq 3)"), "{stderr}");
}

#[tokio::test]
async fn a_truncated_line_is_named() {
    let (_dir, path) = temp_log();
    write_log(&path, 5).await;

    // The last line cut short (no newline).
    let text = std::fs::read_to_string(&path).expect("read");
    let cut = text.trim_end().len() - 30;
    std::fs::write(&path, &text[..cut]).expect("write");
    let b = bad(&path);
    assert_eq!(b.line, 5, "{b}");
    assert!(b.problem.contains("truncated"), "{b}");
    assert!(b.problem.contains("expected seq 5"), "{b}");
    let (code, _, stderr) = cli_verify(&path);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 5"), "{stderr}");

    // A line in the middle cut short.
    std::fs::write(&path, &text).expect("restore");
    let mut ls = lines(&path);
    let half = ls[1].len() / 2;
    ls[1].truncate(half);
    write_lines(&path, &ls);
    let b = bad(&path);
    assert_eq!(b.line, 2, "{b}");
    assert!(b.problem.contains("not a complete JSON entry"), "{b}");

    // A missing file is not a verdict on the chain: exit 2.
    let (code, _, stderr) = cli_verify(&path.with_file_name("nope.jsonl"));
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let (_dir, path) = temp_log();
    write_log(&path, 3).await;
    write_log(&path, 2).await;
    let v = verify(&path).expect("verifies");
    assert_eq!(v.entries, 5);
    let last: Value = serde_json::from_str(lines(&path).last().expect("line")).expect("json");
    assert_eq!(last["fields"]["i"], 1);
}

#[tokio::test]
async fn a_torn_last_line_is_cut_and_recorded_on_open() {
    let (_dir, path) = temp_log();
    write_log(&path, 3).await;
    // A crash mid-write: half an entry, no newline.
    let mut text = std::fs::read_to_string(&path).expect("read");
    let torn = r#"{"seq":4,"time":"2026-01-01T00:00:00.000Z","kind":"te"#;
    text.push_str(torn);
    std::fs::write(&path, &text).expect("write");
    assert!(verify(&path).is_err());

    let log = AuditLog::open(&path).expect("open repairs a torn tail");
    log.append_durable("after", json!({}))
        .await
        .expect("append");
    drop(log);
    let v = verify(&path).expect("verifies after repair");
    assert_eq!(v.entries, 5);
    let entries: Vec<Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(entries[3]["kind"], "audit_torn_tail");
    assert_eq!(entries[3]["fields"]["bytes"], torn.len());
    assert_eq!(entries[4]["kind"], "after");
}

#[tokio::test]
async fn a_tampered_tail_refuses_to_open() {
    let (_dir, path) = temp_log();
    write_log(&path, 3).await;
    let mut ls = lines(&path);
    ls[2] = ls[2].replace("entry 2", "entry X");
    write_lines(&path, &ls);
    let err = AuditLog::open(&path).expect_err("a modified tail is refused");
    let msg = err.to_string();
    assert!(msg.contains("does not verify"), "{msg}");
    assert!(msg.contains("line 3 (seq 3)"), "{msg}");
    assert!(msg.contains("move it aside"), "{msg}");

    // A dropped last-but-one line breaks the tail's link too.
    write_log(&path.with_file_name("b.jsonl"), 3).await;
    let b = path.with_file_name("b.jsonl");
    let mut ls = lines(&b);
    ls.remove(1);
    write_lines(&b, &ls);
    assert!(AuditLog::open(&b).is_err());
}

#[tokio::test]
async fn a_second_writer_is_refused() {
    let (_dir, path) = temp_log();
    let first = AuditLog::open(&path).expect("open");
    first.append_durable("x", json!({})).await.expect("append");
    let err = AuditLog::open(&path).expect_err("locked");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_chain() {
    let (_dir, path) = temp_log();
    let log = AuditLog::open(&path).expect("open");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                if i % 2 == 0 {
                    log.append("fire", json!({ "t": t, "i": i }));
                } else {
                    seqs.push(
                        log.append_durable("durable", json!({ "t": t, "i": i }))
                            .await
                            .expect("append")
                            .expect("seq"),
                    );
                }
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.expect("task"));
    }
    // A durable append on the same log comes after every queued one.
    let last = log
        .append_durable("last", json!({}))
        .await
        .expect("append")
        .expect("seq");
    assert_eq!(last, 401);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 200, "durable appends got distinct seqs");
    assert_eq!(verify(&path).expect("verifies").entries, 401);
}

#[tokio::test]
async fn the_default_log_is_disabled() {
    let log = AuditLog::default();
    assert!(!log.enabled());
    log.append("x", json!({}));
    assert_eq!(log.append_durable("x", json!({})).await.expect("ok"), None);
}

#[test]
fn catalog_diff_names_added_removed_and_changed_ids() {
    let old = load_str(
        "old.yaml",
        r#"
probes:
  - { id: a, kind: http, url: "https://a.example.com" }
  - { id: b, kind: http, url: "https://b.example.com" }
slos:
  - { id: a-ok, probes: [a], objective: 99, window: 1d }
gates:
  - { id: deploy, slos: [a-ok], block_when: [page_alert] }
"#,
    )
    .expect("old");
    let new = load_str(
        "new.yaml",
        r#"
probes:
  - { id: a, kind: http, url: "https://a2.example.com" }
  - { id: c, kind: http, url: "https://c.example.com" }
slos:
  - { id: a-ok, probes: [a], objective: 99, window: 1d }
gates:
  - { id: deploy, slos: [a-ok], block_when: [page_alert, { budget_below: 0.2 }] }
"#,
    )
    .expect("new");
    let d = catalog_diff(&old, &new);
    assert_eq!(
        d["probes"],
        json!({ "added": ["c"], "removed": ["b"], "changed": ["a"] })
    );
    assert_eq!(
        d["slos"],
        json!({ "added": [], "removed": [], "changed": [] })
    );
    assert_eq!(d["gates"]["changed"], json!(["deploy"]));
    assert_eq!(catalog_diff(&new, &new)["probes"]["changed"], json!([]));
}
