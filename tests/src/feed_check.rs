//! Independent parsers for the status feed tests: the test venv's Python
//! (`AUTHPULSE_TEST_PYTHON`, default target/test-venv/bin/python) reads an
//! Atom feed with `feedparser` plus a structural RFC 4287 check, and an SVG
//! with the standard library's XML parser; each prints JSON for the test to
//! assert on.
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The venv's python; fails with the fix when it or `feedparser` is missing.
pub fn python() -> PathBuf {
    let python = std::env::var_os("AUTHPULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/test-venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run tests/run once (it builds target/test-venv from tests/python/requirements.txt)",
        python.display()
    );
    python
}

/// What `feedparser` and the structural check make of an Atom document:
/// `{bozo, bozo_exception, version, feed: {...}, entries: [...], problems: [...]}`.
const ATOM: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
import feedparser

raw = open(sys.argv[1], "rb").read()
d = feedparser.parse(raw)
A = "{http://www.w3.org/2005/Atom}"
problems = []
root = ET.fromstring(raw)
if root.tag != A + "feed":
    problems.append("root element is " + root.tag)
def need(el, tag, where):
    if el.find(A + tag) is None:
        problems.append(where + ": no atom:" + tag)
for t in ("id", "title", "updated"):
    need(root, t, "feed")
entries = root.findall(A + "entry")
if root.find(A + "author") is None and any(e.find(A + "author") is None for e in entries):
    problems.append("feed: no atom:author (and not every entry has one)")
if not any(l.get("rel") == "self" for l in root.findall(A + "link")):
    problems.append("feed: no rel=self link")
for i, e in enumerate(entries):
    for t in ("id", "title", "updated"):
        need(e, t, "entry %d" % i)
    alternate = any(l.get("rel", "alternate") == "alternate" for l in e.findall(A + "link"))
    if e.find(A + "content") is None and not alternate:
        problems.append("entry %d: neither content nor an alternate link" % i)
ids = [e.findtext(A + "id") for e in entries]
if len(ids) != len(set(ids)):
    problems.append("duplicate entry ids")
print(json.dumps({
    "bozo": int(bool(d.bozo)),
    "bozo_exception": str(d.get("bozo_exception", "")),
    "version": d.version,
    "feed": {
        "id": d.feed.get("id"),
        "title": d.feed.get("title"),
        "updated_parsed": d.feed.get("updated_parsed") is not None,
        "author": d.feed.get("author"),
        "links": [{"rel": l.get("rel"), "href": l.get("href")} for l in d.feed.get("links", [])],
    },
    "entries": [{
        "id": e.get("id"),
        "title": e.get("title"),
        "updated_parsed": e.get("updated_parsed") is not None,
        "published_parsed": e.get("published_parsed") is not None,
        "summary": e.get("summary"),
        "content": [c.value for c in e.get("content", [])],
        "links": [{"rel": l.get("rel"), "type": l.get("type"), "href": l.get("href")} for l in e.get("links", [])],
        "tags": [t.term for t in e.get("tags", [])],
    } for e in d.entries],
    "problems": problems,
}))
"#;

/// The root tag, size and texts of an SVG document.
const SVG: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
S = "{http://www.w3.org/2000/svg}"
print(json.dumps({
    "tag": root.tag,
    "width": root.get("width"),
    "height": root.get("height"),
    "title": root.findtext(S + "title"),
    "texts": [t.text for t in root.iter(S + "text")],
    "rects": len(list(root.iter(S + "rect"))),
}))
"#;

fn run(script: &str, dir: &Path, name: &str, text: &str) -> Value {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write document");
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python could not parse {}: {stderr}\n(missing module? tests/run installs tests/python/requirements.txt)\n{text}",
        file.display()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python printed no JSON ({e}): {stderr}"))
}

/// Parses `text` as Atom (file `name` in `dir`).
pub fn parse_atom(dir: &Path, name: &str, text: &str) -> Value {
    run(ATOM, dir, name, text)
}

/// Parses `text` as SVG/XML (file `name` in `dir`); a malformed document
/// fails the test with the parser's message.
pub fn parse_svg(dir: &Path, name: &str, text: &str) -> Value {
    run(SVG, dir, name, text)
}
