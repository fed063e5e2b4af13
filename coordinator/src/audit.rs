//! The append-only, hash-chained audit log: one JSON object per line with
//! `seq`, `time`, `kind`, `fields`, `prev` (the previous entry's hash) and
//! `hash` = SHA-256 over the entry's canonical JSON (every key sorted, no
//! whitespace, `hash` left out, `prev` included). Editing, removing,
//! inserting or reordering any line breaks the chain at that line, which
//! [`verify`] (`authpulse audit verify FILE`) names. Removing lines from the
//! *end* leaves a shorter valid chain; the gauge
//! `authpulse_coordinator_audit_seq` lets Prometheus remember the head.
//!
//! Writing: one background thread owns the file and appends in the order
//! entries arrive, then `fdatasync`s once per batch (group commit).
//! [`AuditLog::append`] only queues (callers are never blocked by disk);
//! [`AuditLog::append_durable`] waits until its entry is on disk, which gate
//! decisions use so a decision is never served without its record. A crash
//! can lose entries queued in the last milliseconds, never rewrite older
//! ones. On open the chain continues from the last line after checking it:
//! a torn last line (a crash mid-write) is cut off and recorded as an
//! `audit_torn_tail` entry; a tail that fails its hash check refuses to open
//! (move the file aside to start a new chain). An advisory lock keeps a
//! second process from forking the chain.
//!
//! The hash chain alone detects accidental damage only: anyone who can
//! write the file can edit an entry and recompute every later hash. With a
//! key ([`AuditKey`]: `audit.hmac_key_file` or `AUTHPULSE_AUDIT_KEY`) each
//! entry also carries `key_id` and `mac` = HMAC-SHA256(key, `hash`), so a
//! rewrite needs the key; [`verify_with`] checks them. Entries written
//! without a key keep verifying (the fields are simply absent), and the
//! first MAC vouches for every unkeyed entry before it through the chain.
mod key;
mod verify;

pub use crate::private_files::{private_dir, private_file};
pub use key::{AuditKey, KEY_ENV, check_key_location, configured_key};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
pub use verify::{BadEntry, Verified, VerifyError, verify, verify_with};

use authpulse_proto::catalog::Catalog;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How long `open` waits for another holder of the lock (a coordinator in
/// this process that is still shutting down) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(pub String);

fn io_err(path: &Path, what: &str, e: std::io::Error) -> AuditError {
    AuditError(format!("{what} {}: {e}", path.display()))
}

/// Cheap to clone; appends are serialized by the writer thread. The default
/// value is a disabled log that drops entries (for tests of other parts).
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    tx: Option<Arc<mpsc::Sender<Job>>>,
}

#[derive(Debug)]
struct Job {
    kind: String,
    fields: Value,
    done: Option<tokio::sync::oneshot::Sender<Result<u64, String>>>,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log at `path` and starts its
    /// writer, without a key (hash chain only). Fails if the file can't be
    /// opened or locked, or if its last entry doesn't verify.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, None)
    }

    /// Like [`open`](Self::open); with a key every new entry carries a MAC,
    /// and a last entry whose MAC (by this key) is wrong refuses to open.
    pub fn open_with(path: &Path, key: Option<AuditKey>) -> Result<AuditLog, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir, false).map_err(|e| io_err(dir, "cannot create", e))?;
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| io_err(path, "cannot open", e))?;
        // An older version (or a umask) may have left it readable.
        private_file(path).map_err(|e| io_err(path, "cannot restrict the mode of", e))?;
        lock(&file, path)?;
        let tail = read_tail(&mut file, path)?;
        let mut head = Head {
            seq: 0,
            hash: GENESIS.to_string(),
        };
        if let Some(last) = tail.lines.last() {
            let before = tail.lines.len().checked_sub(2).map(|i| &tail.lines[i]);
            head = check_tail(path, last, before, key.as_ref())?;
        }
        let mut torn = None;
        if !tail.torn.is_empty() {
            // A complete entry that only lacks its newline is kept; anything
            // else is a write cut short by a crash.
            match parse_entry(&tail.torn) {
                Ok(e)
                    if e.seq == head.seq + 1
                        && e.prev == head.hash
                        && key.as_ref().is_none_or(|k| mac_ok(k, &e) != Some(false)) =>
                {
                    file.write_all(b"\n")
                        .map_err(|e| io_err(path, "cannot write", e))?;
                    head = Head {
                        seq: e.seq,
                        hash: e.hash,
                    };
                }
                _ => {
                    file.set_len(tail.torn_at)
                        .map_err(|e| io_err(path, "cannot cut the torn last line of", e))?;
                    tracing::warn!(path = %path.display(), bytes = tail.torn.len(),
                        "audit log: cut off a torn last line (crash during a write); recorded in the log");
                    torn = Some(json!({
                        "offset": tail.torn_at,
                        "bytes": tail.torn.len(),
                        "sha256": hex::encode(Sha256::digest(&tail.torn)),
                    }));
                }
            }
        }
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err(path, "cannot seek", e))?;
        metrics::describe_gauge!(
            "authpulse_coordinator_audit_seq",
            "Sequence number of the newest audit log entry (a drop means entries were removed)"
        );
        metrics::describe_counter!(
            "authpulse_coordinator_audit_errors_total",
            "Audit log entries that could not be written"
        );
        metrics::gauge!("authpulse_coordinator_audit_seq").set(head.seq as f64);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            path: path.to_path_buf(),
            file,
            len,
            head,
            broken: false,
            key,
        };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError(format!("cannot start the writer thread: {e}")))?;
        let log = AuditLog {
            tx: Some(Arc::new(tx)),
        };
        if let Some(fields) = torn {
            log.append("audit_torn_tail", fields);
        }
        Ok(log)
    }

    /// Whether entries go anywhere (false for the default, disabled log).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Appends one entry; returns at once (the writer thread writes and
    /// syncs it). Errors are logged, never fatal to the caller.
    pub fn append(&self, kind: &str, fields: serde_json::Value) {
        self.send(kind, fields, None);
    }

    /// Appends one entry and waits until it is on disk (fdatasync); returns
    /// its `seq`, or `None` for a disabled log.
    pub async fn append_durable(
        &self,
        kind: &str,
        fields: serde_json::Value,
    ) -> Result<Option<u64>, AuditError> {
        if self.tx.is_none() {
            return Ok(None);
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(kind, fields, Some(done));
        match wait.await {
            Ok(Ok(seq)) => Ok(Some(seq)),
            Ok(Err(e)) => Err(AuditError(e)),
            Err(_) => Err(AuditError("the writer stopped".into())),
        }
    }

    fn send(
        &self,
        kind: &str,
        fields: Value,
        done: Option<tokio::sync::oneshot::Sender<Result<u64, String>>>,
    ) {
        let Some(tx) = &self.tx else { return };
        let job = Job {
            kind: kind.to_string(),
            fields,
            done,
        };
        if tx.send(job).is_err() {
            metrics::counter!("authpulse_coordinator_audit_errors_total").increment(1);
            tracing::error!(kind, "audit log writer is gone; entry dropped");
        }
    }
}

/// The newest entry: what the next one chains to.
#[derive(Clone, Debug)]
struct Head {
    seq: u64,
    hash: String,
}

struct Writer {
    path: PathBuf,
    file: File,
    /// Length of the file up to the last entry known written.
    len: u64,
    head: Head,
    /// A failed write could not be undone: appending more would corrupt
    /// the chain, so everything after is refused.
    broken: bool,
    /// Keys every entry's MAC, when configured.
    key: Option<AuditKey>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        // Blocks for the first job, then takes whatever else is queued so
        // one fdatasync covers the batch.
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let result = self.write_batch(&batch);
            if let Err(e) = &result {
                metrics::counter!("authpulse_coordinator_audit_errors_total")
                    .increment(batch.len() as u64);
                tracing::error!(path = %self.path.display(), error = %e, entries = batch.len(),
                    "audit log write failed; entries dropped");
            }
            for (i, job) in batch.into_iter().enumerate() {
                if let Some(done) = job.done {
                    let _ = done.send(match &result {
                        Ok(first_seq) => Ok(first_seq + i as u64),
                        Err(e) => Err(e.clone()),
                    });
                }
            }
        }
    }

    /// Writes the batch as one `write`, syncs, and returns the first seq.
    fn write_batch(&mut self, batch: &[Job]) -> Result<u64, String> {
        if self.broken {
            return Err("an earlier write failed and could not be undone".into());
        }
        let first = self.head.seq + 1;
        let mut head = self.head.clone();
        let mut buf = Vec::new();
        for job in batch {
            let (line, hash) = entry_line(
                head.seq + 1,
                &crate::clock::now_rfc3339(),
                &job.kind,
                &job.fields,
                &head.hash,
                self.key.as_ref(),
            );
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            head = Head {
                seq: head.seq + 1,
                hash,
            };
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Undo a partial line so the chain stays intact for the next batch.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(e.to_string());
        }
        self.len += buf.len() as u64;
        self.head = head;
        metrics::gauge!("authpulse_coordinator_audit_seq").set(self.head.seq as f64);
        Ok(first)
    }
}

fn lock(file: &File, path: &Path) -> Result<(), AuditError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError(format!(
                    "{} is in use by another process (two coordinators must not share an audit log)",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path, "cannot lock", e)),
        }
    }
}

/// The canonical JSON the hash covers: object keys sorted at every level,
/// no whitespace, strings and numbers as serde_json writes them.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// SHA-256 (hex) over the canonical form of `entry` without its `hash`
/// and `mac` (the MAC is computed from the hash).
pub fn entry_hash(entry: &Map<String, Value>) -> String {
    let mut body = entry.clone();
    body.remove("hash");
    body.remove("mac");
    hex::encode(Sha256::digest(canonical(&Value::Object(body)).as_bytes()))
}

/// One line (without newline) and its hash. Keys are written in reading
/// order (seq, time, kind, fields, prev, [key_id,] hash[, mac]); the hash
/// doesn't depend on that order.
fn entry_line(
    seq: u64,
    time: &str,
    kind: &str,
    fields: &Value,
    prev: &str,
    key: Option<&AuditKey>,
) -> (String, String) {
    // The canonical form of the entry without `hash`/`mac`, written
    // directly (keys in sorted order: fields, key_id, kind, prev, seq,
    // time) rather than built as a map, cloned and sorted: this thread
    // writes every gate decision. `entry_hash` over the parsed line gives
    // the same digest (tested).
    let fields_text = canonical(fields);
    let quoted = |s: &str| Value::from(s).to_string();
    let mut body = String::with_capacity(fields_text.len() + 192);
    body.push_str("{\"fields\":");
    body.push_str(&fields_text);
    if let Some(k) = key {
        body.push_str(",\"key_id\":");
        body.push_str(&quoted(k.id()));
    }
    body.push_str(",\"kind\":");
    body.push_str(&quoted(kind));
    body.push_str(",\"prev\":");
    body.push_str(&quoted(prev));
    body.push_str(",\"seq\":");
    body.push_str(&seq.to_string());
    body.push_str(",\"time\":");
    body.push_str(&quoted(time));
    body.push('}');
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let line = match key {
        None => format!(
            "{{\"seq\":{seq},\"time\":{},\"kind\":{},\"fields\":{},\"prev\":{},\"hash\":{}}}",
            json!(time),
            json!(kind),
            fields_text,
            json!(prev),
            json!(hash)
        ),
        Some(k) => format!(
            "{{\"seq\":{seq},\"time\":{},\"kind\":{},\"fields\":{},\"prev\":{},\"key_id\":{},\"hash\":{},\"mac\":{}}}",
            json!(time),
            json!(kind),
            fields_text,
            json!(prev),
            json!(k.id()),
            json!(hash),
            json!(k.mac(&hash))
        ),
    };
    (line, hash)
}

/// Whether the entry's MAC is right, when `key` is the key it names:
/// `None` when it has no MAC or names another key.
fn mac_ok(key: &AuditKey, e: &Parsed) -> Option<bool> {
    match (&e.key_id, &e.mac) {
        (Some(id), Some(mac)) if id == key.id() => Some(key.check(&e.hash, mac)),
        _ => None,
    }
}

/// The chain-relevant parts of a parsed entry.
struct Parsed {
    seq: u64,
    prev: String,
    hash: String,
    /// Both or neither (checked by [`parse_entry`]).
    key_id: Option<String>,
    mac: Option<String>,
}

/// Why a line is not a valid entry, with its `seq` when that could be read.
#[derive(Debug)]
struct Invalid {
    seq: Option<u64>,
    problem: String,
}

impl Invalid {
    fn new(problem: impl Into<String>) -> Invalid {
        Invalid {
            seq: None,
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "seq {seq}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

/// Parses one line and checks its own hash.
fn parse_entry(line: &[u8]) -> Result<Parsed, Invalid> {
    let text = std::str::from_utf8(line).map_err(|_| Invalid::new("not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(Invalid::new("empty line"));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| {
        Invalid::new(format!(
            "not a complete JSON entry (truncated or corrupted): {e}"
        ))
    })?;
    let Value::Object(map) = v else {
        return Err(Invalid::new("not a JSON object"));
    };
    let seq = map
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| Invalid::new("not an audit entry: no numeric `seq`"))?;
    let invalid = |problem: String| Invalid {
        seq: Some(seq),
        problem,
    };
    for k in ["time", "kind"] {
        if !map.get(k).is_some_and(Value::is_string) {
            return Err(invalid(format!("not an audit entry: no `{k}`")));
        }
    }
    if !map.contains_key("fields") {
        return Err(invalid("not an audit entry: no `fields`".into()));
    }
    let text_of = |k: &str| -> Result<String, Invalid> {
        map.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("not an audit entry: no `{k}`")))
    };
    let prev = text_of("prev")?;
    let hash = text_of("hash")?;
    let key_id = map
        .contains_key("key_id")
        .then(|| text_of("key_id"))
        .transpose()?;
    let mac = map
        .contains_key("mac")
        .then(|| text_of("mac"))
        .transpose()?;
    if key_id.is_some() != mac.is_some() {
        return Err(invalid(
            "not an audit entry: `key_id` and `mac` come together".into(),
        ));
    }
    if entry_hash(&map) != hash {
        return Err(invalid(
            "hash mismatch: the entry was modified after it was written".into(),
        ));
    }
    Ok(Parsed {
        seq,
        prev,
        hash,
        key_id,
        mac,
    })
}

/// The last complete lines of the file (at least two when there are) and
/// the bytes after the last newline.
struct Tail {
    lines: Vec<Vec<u8>>,
    torn: Vec<u8>,
    /// Offset where `torn` starts.
    torn_at: u64,
}

fn read_tail(file: &mut File, path: &Path) -> Result<Tail, AuditError> {
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| io_err(path, "cannot seek", e))?;
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_err(path, "cannot seek", e))?;
        let mut buf = Vec::new();
        Read::by_ref(file)
            .take(len - start)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(path, "cannot read", e))?;
        // Two complete lines need three newlines unless the window reaches
        // the start of the file.
        let newlines = buf.iter().filter(|b| **b == b'\n').count();
        if start > 0 && newlines < 3 {
            window *= 2;
            continue;
        }
        let from = if start == 0 {
            0
        } else {
            buf.iter().position(|b| *b == b'\n').map_or(0, |p| p + 1)
        };
        let body = &buf[from..];
        let end = body.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let lines = body[..end]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        return Ok(Tail {
            lines,
            torn: body[end..].to_vec(),
            torn_at: start + (from + end) as u64,
        });
    }
}

/// Checks the last entry (and that it chains to the one before) and
/// returns it as the head.
fn check_tail(
    path: &Path,
    last: &[u8],
    before: Option<&Vec<u8>>,
    key: Option<&AuditKey>,
) -> Result<Head, AuditError> {
    let refuse = |problem: String| {
        let keys: Vec<AuditKey> = key.into_iter().cloned().collect();
        let where_ = match verify_with(path, &keys) {
            Err(VerifyError::Bad(b)) => format!(" (first bad entry: {b})"),
            _ => String::new(),
        };
        AuditError(format!(
            "{}: the last entry does not verify: {problem}{where_}; the log was modified. \
             Keep it as evidence and move it aside to start a new chain",
            path.display()
        ))
    };
    let e = parse_entry(last).map_err(|i| refuse(i.to_string()))?;
    if let Some(before) = before {
        let b = parse_entry(before).map_err(|i| refuse(i.to_string()))?;
        if e.prev != b.hash || e.seq != b.seq + 1 {
            return Err(refuse(format!(
                "seq {} does not chain to the entry before it (seq {})",
                e.seq, b.seq
            )));
        }
    } else if e.prev != GENESIS || e.seq != 1 {
        return Err(refuse(format!(
            "the only entry has seq {} and does not start the chain",
            e.seq
        )));
    }
    match (key, &e.key_id) {
        (Some(k), _) if mac_ok(k, &e) == Some(false) => {
            return Err(refuse(format!(
                "seq {}: MAC mismatch: the entry was rewritten without the key",
                e.seq
            )));
        }
        (Some(k), Some(id)) if id != k.id() => tracing::warn!(path = %path.display(),
            previous_key = %id, key = %k.id(),
            "the audit HMAC key changed: entries from here on carry the new key id; verify with both keys"),
        (Some(_), None) => tracing::info!(path = %path.display(), from_seq = e.seq + 1,
            "audit entries carry HMACs from here on (the first one vouches for the entries before it)"),
        (None, Some(_)) => tracing::warn!(path = %path.display(),
            "the audit log carries HMACs but no key is configured (audit.hmac_key_file or \
             AUTHPULSE_AUDIT_KEY): new entries are protected by the hash chain only"),
        _ => {}
    }
    Ok(Head {
        seq: e.seq,
        hash: e.hash,
    })
}

/// What a catalog reload changed, for the `catalog_reload` entry: per
/// section the ids added, removed and changed (same id, different content).
pub fn catalog_diff(old: &Catalog, new: &Catalog) -> serde_json::Value {
    fn section<T>(
        old: &[T],
        new: &[T],
        id: impl Fn(&T) -> &str,
        body: impl Fn(&T) -> String,
    ) -> Value {
        let mut added = Vec::new();
        let mut changed = Vec::new();
        for n in new {
            match old.iter().find(|o| id(o) == id(n)) {
                None => added.push(id(n).to_string()),
                Some(o) if body(o) != body(n) => changed.push(id(n).to_string()),
                Some(_) => {}
            }
        }
        let removed: Vec<String> = old
            .iter()
            .filter(|o| !new.iter().any(|n| id(n) == id(o)))
            .map(|o| id(o).to_string())
            .collect();
        json!({ "added": added, "removed": removed, "changed": changed })
    }
    fn ser<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    json!({
        "probes": section(&old.probes, &new.probes, |p| p.id.as_str(), |p| p.to_json()),
        "slos": section(&old.slos, &new.slos, |s| s.id.as_str(), ser),
        "gates": section(&old.gates, &new.gates, |g| g.id.as_str(), ser),
        "components": section(&old.components, &new.components, |c| c.id.as_str(), ser),
        "maintenances": section(&old.maintenances, &new.maintenances, |m| m.id.as_str(), ser),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": "s"}], "c": null}});
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":null,"z":[1,{"x":"s","y":2}]},"b":1}"#
        );
    }

    #[test]
    fn a_written_line_verifies_and_chains() {
        let (line, hash) = entry_line(
            1,
            "2026-01-01T00:00:00.000Z",
            "test",
            &json!({"b": 2, "a": 1.5}),
            GENESIS,
            None,
        );
        let e = parse_entry(line.as_bytes()).expect("verifies");
        assert_eq!(
            (e.seq, e.prev.as_str(), e.hash.as_str()),
            (1, GENESIS, hash.as_str())
        );
        let edited = line.replace("1.5", "2.5");
        assert!(parse_entry(edited.as_bytes()).is_err());
    }

    /// A number that serde_json's default (fast, not exact) float parser
    /// reads back one bit off: written by a caller (a Flagger webhook's
    /// `metadata`), it made the entry fail its own hash check, so `verify`
    /// called the log tampered and the next open refused to start.
    #[tokio::test]
    async fn any_number_a_caller_sends_verifies_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("open");
        log.append_durable(
            "gate_decision",
            json!({ "webhook": { "metadata": { "x": -2.9156787660446386e-183, "y": 0.1 } } }),
        )
        .await
        .expect("append");
        drop(log);
        let verified = verify(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.entries, 1);
        // `open` waits for the old writer thread to let go of the lock.
        AuditLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The writer builds the hashed text directly; it must be exactly
        /// what `entry_hash` (which `verify` uses) computes from the line,
        /// with and without a key, whatever the fields and strings hold.
        #[test]
        fn the_written_hash_is_the_one_verify_computes(
            fields in json_value(),
            kind in ".{0,16}",
            time in ".{0,30}",
            seq in 1u64..u64::MAX / 2,
            keyed in proptest::bool::ANY,
        ) {
            let key = keyed.then(|| AuditKey::new(b"0123456789abcdef0123456789abcdef", "test").expect("key"));
            let (line, hash) = entry_line(seq, &time, &kind, &fields, GENESIS, key.as_ref());
            let Value::Object(map) = serde_json::from_str::<Value>(&line).expect("line is JSON") else {
                panic!("line is not an object: {line}");
            };
            proptest::prop_assert_eq!(entry_hash(&map), hash.clone());
            proptest::prop_assert_eq!(map.get("hash").and_then(Value::as_str), Some(hash.as_str()));
            proptest::prop_assert_eq!(map.get("fields"), Some(&fields));
        }
    }
}
