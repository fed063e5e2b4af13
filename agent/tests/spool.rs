//! The on-disk result spool against real files in temp dirs: ordering, acks,
//! restarts, torn and corrupt data, the size bound, renumbering.
//!
//! Slightly over 800 lines: one binary for every durability case, so the
//! corruption helpers are shared.
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use authpulse_agent::spool::{
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, Spool, SpoolConfig, SpoolError,
};
use authpulse_proto::v1::ProbeResult;

fn result(i: u64) -> ProbeResult {
    authpulse_tests::results::spool_record(i)
}

fn batch(from: u64, n: u64) -> Vec<ProbeResult> {
    (from..from + n).map(result).collect()
}

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig::new(dir)
}

fn small(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
    }
}

fn open(c: SpoolConfig) -> (Spool, authpulse_agent::spool::OpenReport) {
    Spool::open(c).unwrap_or_else(|e| panic!("open: {e}"))
}

fn append(s: &mut Spool, from: u64, n: u64) -> std::ops::RangeInclusive<u64> {
    let mut b = batch(from, n);
    let r = s.append(&mut b).unwrap_or_else(|e| panic!("append: {e}"));
    for (r, seq) in b.iter().zip(r.clone()) {
        assert_eq!(r.seq, seq, "append sets result.seq");
    }
    r
}

fn read_all(s: &mut Spool) -> Vec<ProbeResult> {
    s.read_from(0, usize::MAX)
        .unwrap_or_else(|e| panic!("read: {e}"))
}

fn seqs(rs: &[ProbeResult]) -> Vec<u64> {
    rs.iter().map(|r| r.seq).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// (offset, payload length) of every record in a segment file, parsed
/// independently of the spool's code.
fn records(path: &Path) -> Vec<(u64, u64)> {
    let b = fs::read(path).expect("read segment");
    let mut off = SEGMENT_HEADER_LEN as usize;
    let mut out = Vec::new();
    while off + 8 <= b.len() {
        let len = u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
        if off + 8 + len > b.len() {
            break;
        }
        out.push((off as u64, len as u64));
        off += 8 + len;
    }
    out
}

fn flip_byte(path: &Path, at: u64) {
    let mut b = fs::read(path).expect("read");
    b[at as usize] ^= 0x5a;
    fs::write(path, b).expect("write");
}

#[test]
fn sample_result_is_realistic_size() {
    use prost::Message;
    let mut r = result(12345);
    r.seq = 123_456;
    let len = r.encoded_len();
    assert!((300..=500).contains(&len), "{len} bytes");
}

#[test]
fn append_then_read_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small segments so reads cross segment boundaries.
    let (mut s, report) = open(small(dir.path(), 1 << 20, 2048));
    assert!(s.is_fresh());
    assert_eq!(report.records, 0);
    assert_eq!(
        (s.next_seq(), s.acked(), s.low_watermark(), s.depth()),
        (1, 0, 1, 0)
    );

    assert_eq!(append(&mut s, 1, 1), 1..=1);
    assert_eq!(append(&mut s, 2, 10), 2..=11);
    assert_eq!(append(&mut s, 12, 100), 12..=111);
    let empty = s.append(&mut []).expect("empty append");
    assert!(empty.is_empty());
    assert_eq!(s.next_seq(), 112);
    assert_eq!(s.depth(), 111);
    assert!(segments(dir.path()).len() > 2, "crosses segments");

    let all = read_all(&mut s);
    assert_eq!(seqs(&all), (1..=111).collect::<Vec<_>>());
    for r in &all {
        assert_eq!(r.probe_id, format!("probe-{}", r.seq));
        assert_eq!(r.steps.len(), 2);
    }
    // Chunked, increasing `from` as the uplink does.
    let mut from = 1;
    let mut got = Vec::new();
    loop {
        let chunk = s.read_from(from, 7).expect("read");
        let Some(last) = chunk.last() else { break };
        from = last.seq + 1;
        got.extend(seqs(&chunk));
    }
    assert_eq!(got, (1..=111).collect::<Vec<_>>());
    // Arbitrary positions, including going backwards.
    assert_eq!(seqs(&s.read_from(70, 3).expect("read")), vec![70, 71, 72]);
    assert_eq!(seqs(&s.read_from(5, 2).expect("read")), vec![5, 6]);
    assert_eq!(seqs(&s.read_from(111, 10).expect("read")), vec![111]);
    assert!(s.read_from(112, 10).expect("read").is_empty());
    assert!(s.read_from(5, 0).expect("read").is_empty());
    // Appends after a read are visible to the next read at the cursor.
    append(&mut s, 112, 3);
    assert_eq!(
        seqs(&s.read_from(112, 10).expect("read")),
        vec![112, 113, 114]
    );
}

#[test]
fn reopen_continues_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 7);
    }
    let (mut s, report) = open(cfg(dir.path()));
    assert!(!s.is_fresh());
    assert_eq!(report.records, 7);
    assert_eq!(report.torn_bytes_skipped, 0);
    assert!(
        report.corrupt_segments.is_empty(),
        "{:?}",
        report.corrupt_segments
    );
    assert_eq!(s.next_seq(), 8);
    assert_eq!(append(&mut s, 8, 2), 8..=9);
    assert_eq!(seqs(&read_all(&mut s)), (1..=9).collect::<Vec<_>>());
}

#[test]
fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_s, _) = open(cfg(dir.path()));
    match Spool::open(cfg(dir.path())) {
        Err(SpoolError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn ack_deletes_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = || small(dir.path(), 1 << 20, 4096);
    {
        let (mut s, _) = open(c());
        for b in 0..10 {
            append(&mut s, 1 + b * 10, 10);
        }
        let before = segments(dir.path()).len();
        assert!(before >= 5, "{before} segments");
        s.ack(55).expect("ack");
        assert_eq!((s.acked(), s.depth(), s.low_watermark()), (55, 45, 56));
        let after = segments(dir.path());
        assert!(after.len() < before);
        // Every remaining segment still holds something above the ack.
        let first_left: u64 = after[0]
            .file_stem()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("name");
        assert!(first_left <= 56);
        assert_eq!(seqs(&read_all(&mut s)), (56..=100).collect::<Vec<_>>());
        // Reads below the ack skip acked results.
        assert_eq!(seqs(&s.read_from(1, 2).expect("read")), vec![56, 57]);
        // Stale acks are no-ops.
        s.ack(10).expect("stale ack");
        assert_eq!(s.acked(), 55);
    }
    {
        let (mut s, report) = open(c());
        assert_eq!(report.records, 45);
        assert_eq!((s.acked(), s.next_seq(), s.low_watermark()), (55, 101, 56));
        assert_eq!(seqs(&read_all(&mut s)), (56..=100).collect::<Vec<_>>());
        s.ack(100).expect("ack all");
        assert_eq!((s.depth(), s.low_watermark()), (0, 101));
        assert!(read_all(&mut s).is_empty());
        // The newest segment may stay (it takes the next appends), nothing else.
        assert!(segments(dir.path()).len() <= 1);
    }
    {
        let (mut s, report) = open(c());
        assert_eq!(report.records, 0);
        assert_eq!(s.next_seq(), 101);
        assert!(read_all(&mut s).is_empty(), "no resend of acked results");
        assert_eq!(append(&mut s, 101, 1), 101..=101);
        s.ack(101).expect("ack");
    }
    // Even with every segment gone, the ack file keeps seqs from going back.
    for p in segments(dir.path()) {
        fs::remove_file(p).expect("rm");
    }
    let (s, _) = open(c());
    assert_eq!(s.next_seq(), 102);
    assert!(!s.is_fresh());
}

#[test]
fn ack_beyond_next_seq_moves_numbering_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(cfg(dir.path()));
    append(&mut s, 1, 3);
    s.ack(40).expect("ack");
    assert_eq!((s.next_seq(), s.depth(), s.acked()), (41, 0, 40));
    assert_eq!(append(&mut s, 41, 1), 41..=41);
    drop(s);
    let (s, _) = open(cfg(dir.path()));
    assert_eq!(s.next_seq(), 42);
}

#[test]
fn torn_tail_mid_record_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 10);
    }
    let seg = &segments(dir.path())[0];
    let full = fs::metadata(seg).expect("meta").len();
    let recs = records(seg);
    let (last_off, _) = recs[9];
    // Cut the last record in the middle of its payload.
    let cut = full - 5;
    OpenOptions::new()
        .write(true)
        .open(seg)
        .expect("open")
        .set_len(cut)
        .expect("truncate");
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!(report.records, 9);
    assert_eq!(report.torn_bytes_skipped, cut - last_off);
    assert_eq!(
        report.corrupt_segments.len(),
        1,
        "{:?}",
        report.corrupt_segments
    );
    assert_eq!(
        fs::metadata(seg).expect("meta").len(),
        last_off,
        "file truncated"
    );
    assert_eq!(seqs(&read_all(&mut s)), (1..=9).collect::<Vec<_>>());
    assert_eq!(s.next_seq(), 10);
    // New appends follow the valid records and survive another reopen.
    assert_eq!(append(&mut s, 10, 2), 10..=11);
    drop(s);
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!(report.torn_bytes_skipped, 0);
    assert_eq!(seqs(&read_all(&mut s)), (1..=11).collect::<Vec<_>>());
}

#[test]
fn torn_tail_inside_record_header_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 4);
    }
    let seg = &segments(dir.path())[0];
    let (last_off, _) = records(seg)[3];
    OpenOptions::new()
        .write(true)
        .open(seg)
        .expect("open")
        .set_len(last_off + 3)
        .expect("truncate");
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!((report.records, report.torn_bytes_skipped), (3, 3));
    assert_eq!(seqs(&read_all(&mut s)), vec![1, 2, 3]);
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    // Garbage of the three shapes a torn write leaves: random bytes, zeros
    // (a size extended before the data reached the disk), and a plausible
    // header whose payload doesn't match its crc.
    let mut plausible = Vec::new();
    plausible.extend_from_slice(&20u32.to_le_bytes());
    plausible.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    plausible.extend_from_slice(&[7u8; 20]);
    for garbage in [vec![0xab; 100], vec![0; 4096], plausible] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut s, _) = open(cfg(dir.path()));
            append(&mut s, 1, 10);
        }
        let seg = &segments(dir.path())[0];
        let len = fs::metadata(seg).expect("meta").len();
        OpenOptions::new()
            .append(true)
            .open(seg)
            .expect("open")
            .write_all(&garbage)
            .expect("write");
        let (mut s, report) = open(cfg(dir.path()));
        assert_eq!(report.records, 10);
        assert_eq!(report.torn_bytes_skipped, garbage.len() as u64);
        assert_eq!(fs::metadata(seg).expect("meta").len(), len);
        assert_eq!(seqs(&read_all(&mut s)), (1..=10).collect::<Vec<_>>());
        assert_eq!(append(&mut s, 11, 1), 11..=11);
    }
}

#[test]
fn corrupt_crc_in_an_older_segment_keeps_its_prefix_and_later_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each 10-record batch gets its own segment.
    let c = || small(dir.path(), 1 << 20, 4096);
    {
        let (mut s, _) = open(c());
        for b in 0..3 {
            append(&mut s, 1 + b * 10, 10);
        }
    }
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 3);
    let recs = records(&segs[0]);
    let (off5, _) = recs[4];
    // A payload byte of record 5: the crc no longer matches.
    flip_byte(&segs[0], off5 + RECORD_HEADER_LEN + 10);
    let seg0_len = fs::metadata(&segs[0]).expect("meta").len();

    let (mut s, report) = open(c());
    assert_eq!(report.records, 4 + 20);
    assert_eq!(report.torn_bytes_skipped, seg0_len - off5);
    assert_eq!(report.corrupt_segments.len(), 1);
    assert!(
        report.corrupt_segments[0].contains("crc mismatch"),
        "{:?}",
        report.corrupt_segments
    );
    let want: Vec<u64> = (1..=4).chain(11..=30).collect();
    assert_eq!(seqs(&read_all(&mut s)), want);
    assert_eq!(s.next_seq(), 31);
    assert_eq!(s.low_watermark(), 1);
    assert_eq!(s.depth(), 24);
    // The older segment is not appended to; new records go after the newest.
    assert_eq!(append(&mut s, 31, 1), 31..=31);
    s.ack(4).expect("ack");
    assert_eq!(s.low_watermark(), 11, "the gap is below the watermark");
}

#[test]
fn corrupt_crc_in_the_last_segment_truncates_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 10);
    }
    let seg = &segments(dir.path())[0];
    let (off7, _) = records(seg)[6];
    flip_byte(seg, off7 + RECORD_HEADER_LEN + 3);
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!(report.records, 6);
    assert_eq!(seqs(&read_all(&mut s)), (1..=6).collect::<Vec<_>>());
    assert_eq!(s.next_seq(), 7);
}

#[test]
fn corruption_found_while_reading_drops_the_rest_of_the_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(small(dir.path(), 1 << 20, 4096));
    for b in 0..3 {
        append(&mut s, 1 + b * 10, 10);
    }
    let segs = segments(dir.path());
    let (off3, _) = records(&segs[0])[2];
    flip_byte(&segs[0], off3 + RECORD_HEADER_LEN + 1);
    let got = read_all(&mut s);
    let want: Vec<u64> = (1..=2).chain(11..=30).collect();
    assert_eq!(seqs(&got), want);
    assert_eq!(settled(&mut s), 8);
    assert_eq!(s.depth(), 22);
    // Appending still works and is readable.
    assert_eq!(append(&mut s, 31, 2), 31..=32);
    assert_eq!(seqs(&s.read_from(30, 10).expect("read")), vec![30, 31, 32]);
}

#[test]
fn leftovers_are_tolerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 5);
        s.ack(2).expect("ack");
    }
    // A tmp ack file from a crash before its rename, an empty segment (crash
    // right after create), a segment with a junk header, a segment whose
    // header is whole but has no records.
    fs::write(dir.path().join("state.tmp"), b"half").expect("write");
    fs::write(dir.path().join(format!("{:020}.seg", 900)), b"").expect("write");
    fs::write(
        dir.path().join(format!("{:020}.seg", 3)),
        b"not a segment header at all!!",
    )
    .expect("write");
    let seg = segments(dir.path())[0].clone();
    let header = fs::read(&seg).expect("read")[..SEGMENT_HEADER_LEN as usize].to_vec();
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!(report.records, 3, "{:?}", report.corrupt_segments);
    assert_eq!(s.acked(), 2);
    assert_eq!(seqs(&read_all(&mut s)), vec![3, 4, 5]);
    assert_eq!(s.next_seq(), 6);
    assert!(!dir.path().join("state.tmp").exists());
    assert_eq!(
        report.corrupt_segments.len(),
        2,
        "{:?}",
        report.corrupt_segments
    );
    assert_eq!(segments(dir.path()).len(), 1);
    drop(s);
    // The only segment loses its records (header only, as right after a
    // create): it is removed, and numbering continues from the persisted
    // floor rather than going back.
    fs::write(&seg, &header).expect("write");
    let (s, report) = open(cfg(dir.path()));
    assert!(
        report.corrupt_segments.iter().any(|l| l.contains("empty")),
        "{:?}",
        report.corrupt_segments
    );
    assert_eq!(s.next_seq(), 6);
}

#[test]
fn corrupt_state_file_only_costs_resends() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 5);
        s.ack(3).expect("ack");
    }
    fs::write(dir.path().join("state"), b"garbage").expect("write");
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!(report.corrupt_segments.len(), 1);
    assert_eq!(s.next_seq(), 6);
    // The ack is lost, so whatever is still on disk is offered again.
    assert_eq!(read_all(&mut s).last().map(|r| r.seq), Some(5));
}

#[test]
fn bound_drops_oldest_whole_segments_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 32 * 1024;
    // 16 KiB asked, clamped to max/4 = 8 KiB.
    let (mut s, _) = open(small(dir.path(), max, 16 * 1024));
    let n = 1000;
    let mut next = 1;
    while next <= n {
        let k = (next % 7 + 1).min(n - next + 1);
        append(&mut s, next, k);
        next += k;
        assert!(s.bytes() <= max, "{} > {max}", s.bytes());
    }
    assert!(settled(&mut s) > 0);
    assert_eq!(settled(&mut s) + s.depth(), n);
    let held = read_all(&mut s);
    assert_eq!(held.len() as u64, s.depth());
    let first = s.low_watermark();
    assert_eq!(seqs(&held), (first..=n).collect::<Vec<_>>());
    // Whole segments: every file on disk is at most a segment (plus a batch).
    for p in segments(dir.path()) {
        assert!(fs::metadata(&p).expect("meta").len() <= 8 * 1024);
    }
    let bytes: u64 = segments(dir.path())
        .iter()
        .map(|p| fs::metadata(p).expect("meta").len())
        .sum();
    assert_eq!(bytes, s.bytes());
    drop(s);
    let (mut s, report) = open(small(dir.path(), max, 16 * 1024));
    assert_eq!(report.records, held.len() as u64);
    assert_eq!(settled(&mut s), 0, "counted since open");
    assert_eq!(s.next_seq(), n + 1);
}

#[test]
fn bound_does_not_count_acked_results_as_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(small(dir.path(), 32 * 1024, 8 * 1024));
    append(&mut s, 1, 50);
    s.ack(50).expect("ack");
    let n = 600;
    for i in 51..=n {
        append(&mut s, i, 1);
    }
    assert!(settled(&mut s) > 0);
    assert_eq!(settled(&mut s) + s.depth(), n - 50);

    // A coordinator that keeps up: the bound holds without any drop.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(small(dir.path(), 32 * 1024, 8 * 1024));
    for i in 1..=n {
        append(&mut s, i, 1);
        s.ack(i.saturating_sub(10)).expect("ack");
        assert!(s.bytes() <= 32 * 1024);
    }
    assert_eq!((settled(&mut s), s.depth()), (0, 10));
}

#[test]
fn renumber_after_moves_held_results_past_the_coordinator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = || small(dir.path(), 1 << 20, 4096);
    {
        let (mut s, _) = open(c());
        assert!(s.is_fresh());
        for b in 0..5 {
            append(&mut s, 1 + b * 10, 10);
        }
        s.renumber_after(500).expect("renumber");
        assert_eq!(
            (s.next_seq(), s.acked(), s.low_watermark(), s.depth()),
            (551, 500, 501, 50)
        );
        let got = read_all(&mut s);
        assert_eq!(seqs(&got), (501..=550).collect::<Vec<_>>());
        // Same results, same order.
        for (k, r) in got.iter().enumerate() {
            assert_eq!(r.probe_id, format!("probe-{}", k + 1));
        }
        assert_eq!(append(&mut s, 51, 1), 551..=551);
    }
    let (mut s, report) = open(c());
    assert!(
        report.corrupt_segments.is_empty(),
        "{:?}",
        report.corrupt_segments
    );
    assert_eq!(s.next_seq(), 552);
    assert_eq!(seqs(&read_all(&mut s)), (501..=551).collect::<Vec<_>>());
    assert!(!dir.path().read_dir().expect("ls").any(|e| {
        e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".new")
    }));
}

#[test]
fn renumber_after_on_an_empty_spool_persists_the_floor() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        s.renumber_after(77).expect("renumber");
        assert_eq!((s.next_seq(), s.depth()), (78, 0));
    }
    let (mut s, _) = open(cfg(dir.path()));
    assert_eq!(s.next_seq(), 78);
    assert_eq!(append(&mut s, 1, 1), 78..=78);
}

#[test]
fn renumber_skips_acked_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(cfg(dir.path()));
    append(&mut s, 1, 10);
    s.ack(4).expect("ack");
    s.renumber_after(100).expect("renumber");
    let got = read_all(&mut s);
    assert_eq!(seqs(&got), (101..=106).collect::<Vec<_>>());
    assert_eq!(got[0].probe_id, "probe-5");
}

#[test]
fn interrupted_renumbering_is_completed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_copy;
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 5);
        let old = segments(dir.path());
        assert_eq!(old.len(), 1);
        old_copy = (old[0].clone(), fs::read(&old[0]).expect("read"));
        s.renumber_after(1000).expect("renumber");
    }
    // Rewind to "state committed, old segment not yet deleted, new one not
    // yet renamed".
    let new = segments(dir.path());
    assert_eq!(new.len(), 1);
    fs::rename(&new[0], new[0].with_extension("seg.new")).expect("rename");
    fs::write(&old_copy.0, &old_copy.1).expect("restore old");
    let (mut s, report) = open(cfg(dir.path()));
    assert_eq!(seqs(&read_all(&mut s)), (1001..=1005).collect::<Vec<_>>());
    assert_eq!(s.next_seq(), 1006);
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "{:?}",
        report.corrupt_segments
    );
}

#[test]
fn uncommitted_renumbering_is_discarded_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new_copy;
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 5);
        let old = segments(dir.path());
        let old_bytes = fs::read(&old[0]).expect("read");
        let state = fs::read(dir.path().join("state")).ok();
        s.renumber_after(1000).expect("renumber");
        let new = segments(dir.path());
        new_copy = (new[0].clone(), fs::read(&new[0]).expect("read"));
        // Rewind to "new segment written, state not yet committed".
        fs::remove_file(&new[0]).expect("rm");
        fs::write(&old[0], old_bytes).expect("restore");
        match state {
            Some(b) => fs::write(dir.path().join("state"), b).expect("restore state"),
            None => fs::remove_file(dir.path().join("state")).expect("rm state"),
        }
    }
    fs::write(new_copy.0.with_extension("seg.new"), &new_copy.1).expect("write new");
    let (mut s, _) = open(cfg(dir.path()));
    assert_eq!(seqs(&read_all(&mut s)), (1..=5).collect::<Vec<_>>());
    assert_eq!(s.next_seq(), 6);
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn reconciled_is_persisted_and_set_by_the_first_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        assert!(s.is_fresh() && !s.reconciled());
        append(&mut s, 1, 3);
    }
    {
        // Restarted before ever reaching the coordinator: no longer fresh,
        // still unreconciled, so the uplink still knows to check numbering.
        let (mut s, _) = open(cfg(dir.path()));
        assert!(!s.is_fresh() && !s.reconciled());
        // An empty coordinator acks 0: nothing moves, but it counts.
        s.ack(0).expect("ack 0");
        assert!(s.reconciled());
        assert_eq!((s.acked(), s.depth()), (0, 3));
    }
    let (s, _) = open(cfg(dir.path()));
    assert!(s.reconciled());
    drop(s);

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut s, _) = open(cfg(dir.path()));
        append(&mut s, 1, 3);
        s.renumber_after(9).expect("renumber");
        assert!(s.reconciled());
    }
    let (s, _) = open(cfg(dir.path()));
    assert!(s.reconciled());
}

/// Drops count once settled against the coordinator; nothing was sent in
/// these tests, so everything dropped is lost.
fn settled(s: &mut Spool) -> u64 {
    s.settle_drops(s.acked(), s.acked() + 1);
    s.dropped_total()
}

#[test]
fn drops_settle_against_what_the_coordinator_confirms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 64 * 1024;
    let (mut s, _) = open(small(dir.path(), max, 16 * 1024));
    // 1..=40 were sent before the link broke; nothing acked yet.
    let mut first: Vec<ProbeResult> = (0..40).map(result).collect();
    s.append(&mut first).expect("append");
    let sent_upto = 40;
    // The cut lasts: the spool overflows and drops its oldest segments.
    for chunk in (40..1040u64).collect::<Vec<_>>().chunks(10) {
        let mut more: Vec<ProbeResult> = chunk.iter().copied().map(result).collect();
        s.append(&mut more).expect("append");
    }
    let pending = s.unsettled_drops();
    assert!(
        pending > 40,
        "dropped across the sent and unsent range: {pending}"
    );
    // While still cut, only seqs never sent count as lost.
    let lost_unsent = s.settle_drops(0, sent_upto + 1);
    assert_eq!(lost_unsent, pending - 40);
    assert_eq!(
        s.unsettled_drops(),
        40,
        "sent-but-unacked drops wait for the coordinator"
    );
    // Reconnected: the coordinator stored 1..=33 before the cut.
    let lost_sent = s.settle_drops(33, 34);
    assert_eq!(lost_sent, 7, "34..=40 were sent but never stored");
    assert_eq!(s.dropped_total(), pending - 33);
    assert_eq!(s.unsettled_drops(), 0);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn loosen(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
}

/// Every file in `dir` with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into(),
                mode(&p),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn files_are_owner_only_and_loose_ones_are_tightened_on_open() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("spool");
    {
        let (mut s, _) = open(small(&dir, 1 << 20, 4096));
        append(&mut s, 1, 40);
        s.renumber_after(100).expect("renumber");
        append(&mut s, 41, 40);
        s.ack(120).expect("ack");
    }
    assert_eq!(mode(&dir), 0o700);
    let files = modes(&dir);
    assert!(files.iter().any(|(n, _)| n == "state"), "{files:?}");
    assert!(files.iter().any(|(n, _)| n.ends_with(".seg")), "{files:?}");
    assert!(files.iter().all(|(_, m)| *m == 0o600), "{files:?}");
    // As an older version (or a hand-made copy) left them.
    loosen(&dir, 0o755);
    for (name, _) in &files {
        loosen(&dir.join(name), 0o644);
    }
    let (mut s, _) = open(small(&dir, 1 << 20, 4096));
    assert_eq!(mode(&dir), 0o700);
    let files = modes(&dir);
    assert!(files.iter().all(|(_, m)| *m == 0o600), "{files:?}");
    assert_eq!(seqs(&read_all(&mut s)), (121..=180).collect::<Vec<_>>());
}

#[test]
fn renumbering_near_the_largest_seq_is_refused_and_changes_nothing() {
    use authpulse_agent::spool::{RENUMBER_HEADROOM, SEQ_MAX};
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(cfg(dir.path()));
    append(&mut s, 1, 5);
    for highest in [
        SEQ_MAX,
        SEQ_MAX - 1,
        SEQ_MAX - 5,
        SEQ_MAX - RENUMBER_HEADROOM,
        u64::MAX,
    ] {
        assert!(!s.renumber_fits(highest), "{highest}");
        match s.renumber_after(highest) {
            Err(SpoolError::SeqOverflow { held: 5, .. }) => {}
            other => panic!("{highest}: {other:?}"),
        }
    }
    assert_eq!((s.next_seq(), s.acked(), s.depth()), (6, 0, 5));
    assert_eq!(seqs(&read_all(&mut s)), vec![1, 2, 3, 4, 5]);
    // Just enough room left.
    let fits = SEQ_MAX - RENUMBER_HEADROOM - 5;
    assert!(s.renumber_fits(fits));
    s.renumber_after(fits).expect("renumber");
    assert_eq!(s.next_seq(), fits + 6);
}
