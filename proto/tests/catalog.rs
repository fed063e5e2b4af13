//! Catalog loading: the happy path in both formats, and one precise error
//! (file, line, item, what) for each kind of mistake users make.
use authpulse_proto::catalog::{self, CatalogErrors, KindSpec, Value};

const GOOD: &str = r#"# a comment
probes:
  - id: idp-discovery
    kind: oidc_discovery
    issuer: https://idp.example.com
    interval: 30s
    timeout: 5s
  - id: health
    kind: http
    regions: [eu-west]
    url: https://idp.example.com/health
    headers:
      Authorization: { secret: health_token }
      X-Probe: authpulse
    expect:
      status: [200]
      json:
        - path: $.status
          equals: ok
      max_latency: 800ms
slos:
  - id: discovery-availability
    probes: [idp-discovery, health]
    objective: 99.9
    window: 28d
"#;

fn errors(name: &str, text: &str) -> CatalogErrors {
    catalog::load_str(name, text).expect_err("catalog should be rejected")
}

fn only_error(name: &str, text: &str) -> catalog::CatalogError {
    let errs = errors(name, text);
    assert_eq!(errs.0.len(), 1, "expected exactly one error, got: {errs}");
    errs.0.into_iter().next().expect("one error")
}

#[test]
fn good_yaml_loads_typed() {
    let c = catalog::load_str("good.yaml", GOOD).expect("valid");
    assert_eq!(c.probes.len(), 2);
    assert_eq!(c.probes[0].interval.as_secs(), 30);
    let KindSpec::Http(h) = &c.probes[1].spec else {
        panic!("http")
    };
    // Keys keep their case (the config crate must not lower-case them).
    assert_eq!(
        h.headers.get("Authorization"),
        Some(&Value::Secret {
            secret: "health_token".into()
        })
    );
    assert_eq!(h.expect.json[0].equals, Some(serde_json::json!("ok")));
    assert!(c.probes[1].runs_in("eu-west") && !c.probes[1].runs_in("us-east"));
    assert!(c.probes[0].runs_in("anywhere"));
    assert_eq!(c.slos[0].objective, 99.9);
}

#[test]
fn good_toml_loads_typed() {
    let text = r#"
[[probes]]
id = "idp-discovery"
kind = "oidc_discovery"
issuer = "https://idp.example.com"
interval = "30s"
timeout = "5s"

[[slos]]
id = "d"
probes = ["idp-discovery"]
objective = 99.5
window = "7d"
"#;
    let c = catalog::load_str("good.toml", text).expect("valid");
    assert_eq!(c.probes[0].kind(), "oidc_discovery");
    assert_eq!(
        c.slos[0].window,
        catalog::Window::Rolling(std::time::Duration::from_secs(7 * 86400))
    );
}

#[test]
fn wire_form_round_trips() {
    let c = catalog::load_str("good.yaml", GOOD).expect("valid");
    for p in &c.probes {
        let back = catalog::probe_from_json(&p.to_json()).expect("parses");
        assert_eq!(back.common, p.common);
        assert_eq!(back.spec, p.spec);
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let text = "probes:\n  - id: a\n    kind: http\n   url: [unclosed\n";
    let e = only_error("bad.yaml", text);
    assert_eq!(e.file.to_str(), Some("bad.yaml"));
    assert!(e.message.contains("syntax error"), "{e}");
    assert!(
        matches!(e.line, Some(3..=5)),
        "line of the syntax error: {e}"
    );
}

#[test]
fn unknown_key_is_an_error_at_its_line() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n    intervl: 30s\n";
    let e = only_error("c.yaml", text);
    assert_eq!(e.line, Some(5), "{e}");
    assert_eq!(e.item.as_deref(), Some("a"));
    assert!(e.message.contains("unknown field `intervl`"), "{e}");
    assert_eq!(e.path, "probes[0].intervl");
}

#[test]
fn unknown_key_inside_nested_assertions() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n    expect:\n      statuss: [200]\n";
    let e = only_error("c.yaml", text);
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(e.path, "probes[0].expect.statuss");
}

#[test]
fn unknown_top_level_key_and_kind() {
    let errs = errors(
        "c.yaml",
        "probes:\n  - id: a\n    kind: htp\n    url: x\nslo: []\n",
    );
    let text = errs.to_string();
    assert!(
        text.contains("c.yaml:3: `a`: probes[0].kind: unknown probe kind `htp`"),
        "{text}"
    );
    assert!(text.contains("c.yaml:5: slo: unknown key `slo`"), "{text}");
}

#[test]
fn duplicate_probe_id_points_at_both() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n  - id: a\n    kind: http\n    url: https://y.example\n";
    let e = only_error("d.yaml", text);
    assert_eq!(e.line, Some(5));
    assert!(
        e.message
            .contains("duplicate probe id `a` (first defined at d.yaml:2)"),
        "{e}"
    );
}

#[test]
fn duplicate_ids_across_files_are_caught() {
    let dir = std::env::temp_dir().join(format!("authpulse-cat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let a = dir.join("a.yaml");
    let b = dir.join("b.toml");
    std::fs::write(
        &a,
        "probes:\n  - id: x\n    kind: http\n    url: https://x.example\n",
    )
    .expect("write");
    std::fs::write(
        &b,
        "[[probes]]\nid = \"x\"\nkind = \"http\"\nurl = \"https://x.example\"\n",
    )
    .expect("write");
    let errs = catalog::load_files(&[&a, &b]).expect_err("duplicate");
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].file, b);
    assert_eq!(errs.0[0].line, Some(2), "line of `id` in b.toml");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn slo_naming_a_missing_probe() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\nslos:\n  - id: s\n    probes: [a, nope]\n    objective: 99\n    window: 7d\n";
    let e = only_error("s.yaml", text);
    assert_eq!(e.line, Some(7));
    assert_eq!(e.item.as_deref(), Some("s"));
    assert_eq!(e.path, "slos[0].probes[1]");
    assert!(e.message.contains("unknown probe `nope`"), "{e}");
}

#[test]
fn interval_below_timeout() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\n    interval: 5s\n    timeout: 10s\n";
    let e = only_error("t.yaml", text);
    assert_eq!(e.line, Some(5));
    assert!(
        e.message.contains("interval 5s is below timeout 10s"),
        "{e}"
    );
}

#[test]
fn bad_values_are_each_reported() {
    let text = r#"probes:
  - id: Bad_Id
    kind: http
    url: ftp://x.example
    interval: 10x
  - id: b
    kind: http
    url: https://x.example
    expect:
      body_matches: "("
      json:
        - path: "$[?"
slos:
  - id: s
    probes: [b]
    objective: 100
    window: 28d
"#;
    let errs = errors("m.yaml", text);
    let all = errs.to_string();
    // interval is a type error, so probe 0 stops there; probe 1 and the SLO still report.
    assert!(
        all.contains("m.yaml:5: `Bad_Id`: probes[0].interval:"),
        "{all}"
    );
    assert!(
        all.contains("m.yaml:10: `b`: probes[1].expect.body_matches: invalid regular expression"),
        "{all}"
    );
    assert!(
        all.contains("m.yaml:12: `b`: probes[1].expect.json[0].path: invalid JSONPath"),
        "{all}"
    );
    assert!(all.contains("m.yaml:16: `s`: slos[0].objective:"), "{all}");
}

#[test]
fn empty_file_is_an_empty_catalog() {
    let c = catalog::load_str("e.yaml", "").expect("empty is fine");
    assert!(c.probes.is_empty());
}

#[test]
fn slo_alerting_opt_out() {
    let base = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\nslos:\n  - id: s\n    probes: [a]\n    objective: 99\n    window: 7d\n";
    let c = catalog::load_str("a.yaml", base).expect("valid");
    assert!(
        c.slos[0].alerting.page && c.slos[0].alerting.ticket,
        "both on by default"
    );

    let c = catalog::load_str(
        "a.yaml",
        &format!("{base}    alerting: {{ page: false }}\n"),
    )
    .expect("valid");
    assert!(!c.slos[0].alerting.page);
    assert!(c.slos[0].alerting.ticket);

    let e = only_error(
        "a.yaml",
        &format!("{base}    alerting: {{ pager: false }}\n"),
    );
    assert_eq!(e.line, Some(10));
    assert!(e.path.starts_with("slos[0].alerting"), "{e}");
    assert!(e.message.contains("pager"), "{e}");
}

#[test]
fn zero_latency_threshold_is_rejected() {
    let text = "probes:\n  - id: a\n    kind: http\n    url: https://x.example\nslos:\n  - id: s\n    probes: [a]\n    objective: 99\n    window: 7d\n    sli: { latency: { threshold: 0s } }\n";
    let e = only_error("z.yaml", text);
    assert_eq!(e.line, Some(10), "{e}");
    assert!(
        e.message
            .contains("latency threshold must be greater than 0"),
        "{e}"
    );
}

/// A `dns` step names its record with `query` (the step takes `name`); it
/// loads, goes over the wire and back unchanged, and a step without `query`
/// is an error that says so.
#[test]
fn a_dns_journey_step_queries_with_query() {
    let text = "probes:\n  - id: j\n    kind: journey\n    steps:\n      - name: resolve\n        kind: dns\n        query: idp.example.com\n        record_type: A\n      - name: health\n        kind: http\n        url: https://idp.example.com/health\n";
    let c = catalog::load_str("j.yaml", text).expect("valid");
    let KindSpec::Journey(j) = &c.probes[0].spec else {
        panic!("a journey")
    };
    assert_eq!(j.steps[0].name, "resolve");
    let KindSpec::Dns(d) = &j.steps[0].spec else {
        panic!("a dns step")
    };
    assert_eq!(d.name, "idp.example.com");
    let back = catalog::probe_from_json(&c.probes[0].to_json()).expect("parses");
    assert_eq!(back.spec, c.probes[0].spec);

    let e = only_error(
        "j.yaml",
        &text.replace("        query: idp.example.com\n", ""),
    );
    assert!(e.to_string().contains("missing `query`"), "{e}");
    assert_eq!(e.line, Some(5), "{e}");
}
