//! The CLI as people meet it: shell completions that a real bash loads and
//! that complete subcommands and `--log-format` values, a man page that a
//! real `man`/groff renders without warnings, human-readable logs with
//! `--log-format text` and JSON with `json`, one exit-status convention
//! across the three binaries (0 ok, 1 failed, 2 usage or config error), a
//! "did you mean" for a misspelt catalog key, and `standalone` quiet about
//! its own in-process agent.
use std::process::{Command, Stdio};

use authpulse_tests::process::Process;
use authpulse_tests::{TempDir, bin};

fn run(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin(binary))
        .args(args)
        .env_remove("AUTHPULSE_LOG_FORMAT")
        .envs(envs.iter().copied())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bash_loads_the_completions_and_they_complete_commands_and_values() {
    let (code, script, err) = run("authpulse", &["completions", "bash"], &[]);
    assert_eq!(code, 0, "{err}");
    let dir = TempDir::new("ap-completions");
    let file = dir.path().join("authpulse.bash");
    std::fs::write(&file, &script).expect("write");
    // Load it in a real bash and ask it to complete, as readline would.
    let probe = format!(
        r#"source {}
complete -p authpulse
COMP_WORDS=(authpulse val); COMP_CWORD=1; COMP_LINE="authpulse val"; COMP_POINT=${{#COMP_LINE}}
_authpulse authpulse val authpulse; echo "words: ${{COMPREPLY[*]}}"
COMP_WORDS=(authpulse probe --log-format ''); COMP_CWORD=3; COMP_LINE="authpulse probe --log-format "; COMP_POINT=${{#COMP_LINE}}
_authpulse authpulse '' --log-format; echo "formats: ${{COMPREPLY[*]}}"
"#,
        file.display()
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &probe])
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _authpulse authpulse"), "{text}");
    assert!(text.contains("words: validate"), "{text}");
    assert!(text.contains("formats: auto json text"), "{text}");
    let (code, zsh, _) = run("authpulse", &["completions", "zsh"], &[]);
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef authpulse"), "{zsh}");
    let (code, _, err) = run("authpulse", &["completions", "tcsh"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("possible values"), "{err}");
}

#[test]
fn the_man_pages_render_without_warnings() {
    let (code, page, err) = run("authpulse", &["man"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH authpulse"), "{page}");
    // groff with every warning on, as `man` would format it.
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff");
    use std::io::Write;
    groff
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("feed groff");
    let out = groff.wait_with_output().expect("groff");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.trim().is_empty(),
        "{warnings}"
    );
    let dir = TempDir::new("ap-man");
    let out_dir = dir.path().join("man1");
    let (code, _, err) = run(
        "authpulse",
        &["man", "--out", out_dir.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    for page in ["authpulse.1", "authpulse-validate.1", "authpulse-gate.1"] {
        assert!(out_dir.join(page).exists(), "{page}");
    }
    // `man -l` reads it like an installed page.
    let out = Command::new("man")
        .args([
            "-l",
            out_dir.join("authpulse-validate.1").to_str().expect("utf8"),
        ])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--print"), "{text}");
}

#[test]
fn log_format_chooses_text_or_json_and_bad_values_are_usage_errors() {
    let dir = TempDir::new("ap-logfmt");
    // A coordinator that logs (plaintext warning) then stops on a bad catalog.
    let cat = dir.path().join("bad-catalog.yaml");
    std::fs::write(&cat, "probes:\n  - id: a\n    kind: htp\n").expect("catalog");
    let config = dir.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!(
            "insecure: true\ngrpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\ndata_dir: {}\ncatalog: [{}]\n",
            dir.path().join("data").display(),
            cat.display()
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf8");
    let (code, _, err) = run(
        "authpulse-coordinator",
        &["--config", config, "--log-format", "json"],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let warn = err
        .lines()
        .find(|l| l.contains("insecure mode"))
        .unwrap_or_else(|| panic!("{err}"));
    let v: serde_json::Value =
        serde_json::from_str(warn).unwrap_or_else(|e| panic!("not JSON ({e}): {warn}"));
    assert_eq!(v["level"], "WARN");
    let (code, _, err) = run(
        "authpulse-coordinator",
        &["--config", config, "--log-format", "text"],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let warn = err
        .lines()
        .find(|l| l.contains("insecure mode"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        warn.contains("WARN") && !warn.trim_start().starts_with('{'),
        "{warn}"
    );
    // Not a terminal and no flag: JSON.
    let (_, _, err) = run("authpulse-coordinator", &["--config", config], &[]);
    assert!(
        err.lines()
            .any(|l| l.starts_with('{') && l.contains("insecure mode")),
        "{err}"
    );
    let cat = cat.to_str().expect("utf8");
    // The environment variable does the same; a bad value is a usage error.
    let (code, _, err) = run(
        "authpulse",
        &["validate", cat],
        &[("AUTHPULSE_LOG_FORMAT", "yaml")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[possible values: auto, json, text]"), "{err}");
    for binary in ["authpulse-coordinator", "authpulse-agent"] {
        let (code, _, err) = run(binary, &["--log-format", "loud", "--config", "x.yaml"], &[]);
        assert_eq!(code, 2, "{binary}: {err}");
    }
}

#[test]
fn one_exit_status_convention_across_the_binaries() {
    let dir = TempDir::new("ap-exit");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "no_such_key: 1\n").expect("config");
    let bad = bad.to_str().expect("utf8");
    // A config file error is 2 in both daemons.
    let (code, _, err) = run("authpulse-coordinator", &["--config", bad], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run("authpulse-agent", &["--config", bad], &[]);
    assert_eq!(code, 2, "{err}");
    // Usage errors are 2, a failed check 1.
    let (code, _, err) = run("authpulse", &["validate"], &[]);
    assert_eq!(code, 2, "{err}");
    let cat = dir.path().join("c.yaml");
    std::fs::write(
        &cat,
        "probes:\n  - id: a\n    kind: http\n    url: https://a.example\n    intervl: 30s\n",
    )
    .expect("catalog");
    let (code, _, err) = run("authpulse", &["validate", cat.to_str().expect("utf8")], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown field `intervl` (did you mean `interval`?)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_is_quiet_about_its_own_agent() {
    let dir = TempDir::new("ap-quiet");
    let cat = dir.path().join("c.yaml");
    std::fs::write(
        &cat,
        "probes:\n  - id: closed\n    kind: tcp\n    address: 127.0.0.1:1\n    interval: 1s\n    timeout: 500ms\n",
    )
    .expect("catalog");
    let (mut p, _api) = Process::standalone(cat.to_str().expect("utf8"), dir.path()).await;
    // The agent connected (so everything that would warn about it ran).
    authpulse_tests::wait_for(
        std::time::Duration::from_secs(30),
        "the agent to connect",
        || async { p.log_text().contains("agent connected").then_some(()) },
    )
    .await;
    p.terminate().await;
    let log = p.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains(" WARN "))
        .collect();
    assert!(
        warnings.is_empty(),
        "standalone warned:\n{}",
        warnings.join("\n")
    );
    assert!(!log.contains("0.0.0.0:0"), "{log}");
}
