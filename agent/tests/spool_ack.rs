//! When the spool writes its ack watermark: at most once per
//! `ACK_PERSIST_EVERY`, but always on the first ack, before a segment is
//! deleted, on demand and when the spool is dropped. A "crash" is a copy of
//! the directory taken while the spool is open: what a `kill -9` at that
//! moment would leave on disk.
use std::fs;
use std::path::Path;

use authpulse_agent::spool::{Spool, SpoolConfig};
use authpulse_proto::v1::ProbeResult;

fn open(c: SpoolConfig) -> Spool {
    Spool::open(c).unwrap_or_else(|e| panic!("open: {e}")).0
}

fn append(s: &mut Spool, n: u64) {
    let mut b: Vec<ProbeResult> = (0..n).map(authpulse_tests::results::spool_record).collect();
    s.append(&mut b).unwrap_or_else(|e| panic!("append: {e}"));
}

/// The acked seq in the state file (bytes 8..16, see the spool's format).
fn acked_on_disk(dir: &Path) -> u64 {
    let b = fs::read(dir.join("state")).expect("state file");
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[8..16]);
    u64::from_le_bytes(x)
}

/// What a crash right now would leave: every file, copied.
fn crash_copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("list") {
        let p = e.expect("entry").path();
        fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

fn held(s: &mut Spool) -> Vec<u64> {
    s.read_from(0, usize::MAX)
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect()
}

#[test]
fn later_acks_are_written_at_most_once_a_period_and_at_drop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("spool");
    let mut s = open(SpoolConfig::new(&dir));
    append(&mut s, 10);
    s.ack(2).expect("first ack");
    assert_eq!(acked_on_disk(&dir), 2, "the first ack is written at once");
    s.ack(5).expect("ack");
    s.ack(7).expect("ack");
    assert_eq!(s.acked(), 7);
    assert_eq!(acked_on_disk(&dir), 2, "later ones within the period wait");
    assert!(s.ack_persist_due(true) && !s.ack_persist_due(false));

    // A crash now resends 3..=7, which the coordinator stores once; no
    // result is lost and no seq goes back.
    crash_copy(&dir, &tmp.path().join("crashed"));
    let mut crashed = open(SpoolConfig::new(tmp.path().join("crashed")));
    assert_eq!((crashed.acked(), crashed.next_seq()), (2, 11));
    assert_eq!(held(&mut crashed), (3..=10).collect::<Vec<_>>());

    assert!(s.persist_ack(true).expect("persist"), "written on demand");
    assert_eq!(acked_on_disk(&dir), 7);
    assert!(
        !s.persist_ack(true).expect("persist"),
        "nothing new to write"
    );
    s.ack(9).expect("ack");
    drop(s);
    assert_eq!(acked_on_disk(&dir), 9, "a clean stop keeps the latest ack");
    let mut s = open(SpoolConfig::new(&dir));
    assert_eq!(held(&mut s), vec![10]);
}

#[test]
fn a_deferred_ack_is_written_before_the_segments_it_covers_go() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("spool");
    // Tiny segments: every append of 5 results starts a new one.
    let cfg = SpoolConfig {
        dir: dir.clone(),
        max_bytes: 1 << 20,
        segment_bytes: 64,
    };
    let mut s = open(cfg.clone());
    for _ in 0..4 {
        append(&mut s, 5);
    }
    s.ack(1).expect("first ack");
    // Covers the first segment: it goes, so the ack is written at once.
    s.ack(5).expect("ack");
    assert_eq!(acked_on_disk(&dir), 5);
    // Inside the second segment: deferred.
    s.ack(7).expect("ack");
    assert_eq!(acked_on_disk(&dir), 5);
    // Covers the second and third: written before they are deleted.
    s.ack(15).expect("ack");
    assert_eq!(acked_on_disk(&dir), 15);
    crash_copy(&dir, &tmp.path().join("crashed"));
    let mut crashed = open(SpoolConfig {
        dir: tmp.path().join("crashed"),
        ..cfg
    });
    assert_eq!((crashed.acked(), crashed.next_seq()), (15, 21));
    assert_eq!(held(&mut crashed), (16..=20).collect::<Vec<_>>());
}
