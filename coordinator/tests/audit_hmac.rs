//! The keyed audit log: with an HMAC key every entry carries `key_id` and
//! `mac`, and `authpulse audit verify --key-file` fails on a log rewritten
//! by someone without the key, even when every later hash was recomputed
//! (which plain `verify` cannot tell: a documented limitation). Logs
//! started without a key keep working, and the first MAC vouches for the
//! unkeyed entries before it. Also: the key can't live in the data
//! directory, and the coordinator's files are private (0600/0700).
use std::path::{Path, PathBuf};
use std::process::Command;

use authpulse_coordinator::audit::{AuditKey, AuditLog, entry_hash, verify, verify_with};
use serde_json::{Map, Value, json};

const SECRET: &str = "4f1c2b9e8d7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d";

fn key_file(dir: &Path, secret: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("key dir");
    let p = dir.join("audit.key");
    std::fs::write(&p, format!("{secret}\n")).expect("key file");
    p
}

async fn append(log: &AuditLog, from: u64, n: u64) {
    for i in from..from + n {
        log.append_durable("test", json!({ "i": i, "by": "ci" }))
            .await
            .expect("append");
    }
}

fn entries(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| match serde_json::from_str(l).expect("json") {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

/// What someone who can write the file but has no key does: edits entry
/// `index` and recomputes every hash from there (MACs left as they were,
/// or removed).
fn rewrite(path: &Path, index: usize, strip_macs: bool) {
    let mut es = entries(path);
    es[index]["fields"]["by"] = json!("mallory");
    let mut prev = if index == 0 {
        authpulse_coordinator::audit::GENESIS.to_string()
    } else {
        es[index - 1]["hash"].as_str().expect("hash").to_string()
    };
    for e in es.iter_mut().skip(index) {
        if strip_macs {
            e.remove("mac");
            e.remove("key_id");
        }
        e.insert("prev".into(), json!(prev));
        let h = entry_hash(e);
        e.insert("hash".into(), json!(h));
        prev = h;
    }
    let text: String = es
        .iter()
        .map(|e| format!("{}\n", Value::Object(e.clone())))
        .collect();
    std::fs::write(path, text).expect("write");
}

/// Removes every MAC and recomputes the whole chain.
fn rewrite_all_macs_away(path: &Path) {
    rewrite(path, 0, true);
}

/// `authpulse audit verify FILE ARGS…`: (exit code, stdout, stderr).
fn cli(path: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(authpulse_tests::bin("authpulse"))
        .args(["audit", "verify"])
        .arg(path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run authpulse");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_rewrite_without_the_key_fails_verify_with_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kf = key_file(dir.path(), SECRET);
    let key = AuditKey::from_file(&kf).expect("key");
    let path = dir.path().join("log").join("audit.jsonl");
    let log = AuditLog::open_with(&path, Some(key.clone())).expect("open");
    append(&log, 0, 5).await;
    drop(log);
    for e in entries(&path) {
        assert_eq!(e["key_id"], key.id());
        assert_eq!(e["mac"].as_str().map(str::len), Some(64));
        assert!(
            !std::fs::read_to_string(&path)
                .expect("read")
                .contains(SECRET)
        );
    }
    let kf_arg = kf.to_str().expect("utf8");
    let (code, out, err) = cli(&path, &["--key-file", kf_arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("ok: 5 entries") && out.contains("MACs checked"),
        "{out}"
    );
    let (code, out, _) = cli(
        &path,
        &["--key-env", "AUDIT_KEY_FOR_TEST"],
        &[("AUDIT_KEY_FOR_TEST", SECRET)],
    );
    assert_eq!(code, 0, "{out}");
    // Without a key it says what it can't see.
    let (code, out, _) = cli(&path, &[], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("hash chain only") && out.contains("5 entries carry MACs"),
        "{out}"
    );

    // Entry 2 edited, hashes recomputed, MACs kept: the chain alone says ok.
    let pristine = std::fs::read(&path).expect("read");
    rewrite(&path, 1, false);
    assert_eq!(verify(&path).expect("chain ok").entries, 5);
    let (code, out, _) = cli(&path, &[], &[]);
    assert_eq!(code, 0, "documented limitation: {out}");
    let (code, _, err) = cli(&path, &["--key-file", kf_arg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("line 2 (seq 2): MAC mismatch"), "{err}");
    // Every MAC stripped instead: no entry is authenticated.
    std::fs::write(&path, &pristine).expect("restore");
    rewrite_all_macs_away(&path);
    assert!(verify(&path).is_ok());
    let (code, _, err) = cli(&path, &["--key-file", kf_arg], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 5 (seq 5): no entry carries a MAC"),
        "{err}"
    );
    // Only the later ones stripped: named at the first without.
    std::fs::write(&path, &pristine).expect("restore");
    rewrite(&path, 3, true);
    let (code, _, err) = cli(&path, &["--key-file", kf_arg], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 4 (seq 4): no MAC, though entries from seq 1 on"),
        "{err}"
    );
    // A rewritten last entry also stops the coordinator from continuing.
    std::fs::write(&path, &pristine).expect("restore");
    rewrite(&path, 4, false);
    let e = AuditLog::open_with(&path, Some(key.clone()))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("MAC mismatch"), "{e}");

    // The right log with the wrong key: named, exit 1; a bad key file: 2.
    std::fs::write(&path, &pristine).expect("restore");
    let other = key_file(&dir.path().join("log"), &SECRET.replace('4', "5"));
    let (code, _, err) = cli(&path, &["--key-file", other.to_str().expect("utf8")], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("which none of the given keys has"), "{err}");
    let short = key_file(&dir.path().join("log"), "short");
    let (code, _, err) = cli(&path, &["--key-file", short.to_str().expect("utf8")], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains(SECRET));
}

#[tokio::test]
async fn a_log_started_without_a_key_is_covered_by_the_first_mac() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).expect("open without key");
    append(&log, 0, 3).await;
    drop(log);
    let key = AuditKey::new(SECRET.as_bytes(), "test").expect("key");
    let log = AuditLog::open_with(&path, Some(key.clone())).expect("continues with a key");
    append(&log, 3, 2).await;
    drop(log);
    let es = entries(&path);
    assert!(es[..3].iter().all(|e| !e.contains_key("mac")));
    assert!(es[3..].iter().all(|e| e.contains_key("mac")));
    let v = verify_with(&path, std::slice::from_ref(&key)).expect("verifies");
    assert_eq!((v.entries, v.macs, v.first_mac_seq), (5, 2, Some(4)));
    let kf = key_file(&dir.path().join("k"), SECRET);
    let (code, out, _) = cli(&path, &["--key-file", kf.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("entries 1 to 3 were written without a key"),
        "{out}"
    );

    // An old, unkeyed entry rewritten: the first MAC no longer matches.
    rewrite(&path, 0, false);
    assert!(verify(&path).is_ok());
    let err = verify_with(&path, &[key]).expect_err("refused").to_string();
    assert!(err.contains("line 4 (seq 4): MAC mismatch"), "{err}");
}

#[tokio::test]
async fn the_key_lives_outside_the_data_dir_and_data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog,
        "probes:\n  - { id: p, kind: http, url: \"https://idp.example/\" }\n",
    )
    .expect("catalog");
    let config = |key: PathBuf| authpulse_coordinator::CoordinatorConfig {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.clone(),
        catalog: vec![catalog.clone()],
        insecure: true,
        audit: authpulse_coordinator::config::AuditConfig {
            hmac_key_file: Some(key),
        },
        ..Default::default()
    };
    let inside = key_file(&data, SECRET);
    let err = match authpulse_coordinator::start(config(inside.clone())).await {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a key inside data_dir was accepted"),
    };
    assert!(err.contains("inside") && !err.contains(SECRET), "{err}");
    std::fs::remove_file(&inside).expect("rm");

    // Files an older version left readable are tightened on start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let audit = data.join("audit.jsonl");
    std::fs::write(&audit, "").expect("audit");
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let running = authpulse_coordinator::start(config(key_file(dir.path(), SECRET)))
        .await
        .expect("starts");
    running.reload_catalog().await.expect("reload");
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&audit), 0o600);
    let db = data.join(authpulse_coordinator::store::DB_FILE);
    assert_eq!(mode(&db), 0o600);
    let wal = data.join(format!("{}-wal", authpulse_coordinator::store::DB_FILE));
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600);
    running.shutdown().await;
    // The coordinator wrote keyed entries (the reload at least).
    let kf = dir.path().join("audit.key");
    let (code, out, err) = cli(&audit, &["--key-file", kf.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{out}{err}");
}
