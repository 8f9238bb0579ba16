//! The audit chain: every single modification, removal or reordering of a record
//! is found by `verify`, naming where; a node refuses to extend a broken trail;
//! every state a crash during an append can leave (docs/audit-trail.md) is
//! recovered on open, and nothing else is.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::audit::{AuditError, AuditLog, AuditRecord, read_records, verify};
use scratchbird_types::env::ManualEnv;
use std::path::Path;
use std::sync::Arc;

/// The clock these trails' records are stamped with: 2026-12-04 00:00 UTC.
const NOW_US: i64 = 1_796_342_400_000_000;

/// Opens the trail in `dir` as the local node on a manual clock a microsecond after
/// the last one opened (from [`NOW_US`]): two trails built alike still differ,
/// as trails written at different times do.
fn open(dir: &Path) -> Result<AuditLog, AuditError> {
    static OPENED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let at = NOW_US + OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    AuditLog::open(
        dir,
        &scratchbird_types::NodeName::LOCAL,
        Arc::new(ManualEnv::new(at, 1)),
    )
}

#[test]
fn records_are_stamped_with_the_clock_the_trail_is_given() {
    let d = tempfile::tempdir().unwrap();
    let env = Arc::new(ManualEnv::new(NOW_US, 1));
    let log = AuditLog::open(d.path(), &scratchbird_types::NodeName::LOCAL, env.clone()).unwrap();
    let a = log.append(AuditRecord::new("owner")).unwrap();
    env.advance_micros(1_500);
    let b = log.append(AuditRecord::new("owner")).unwrap();
    assert_eq!((a.time_us, b.time_us), (NOW_US, NOW_US + 1_500));
}

/// A log of `n` records in `dir`.
fn log_of(dir: &Path, n: u64) {
    let log = open(dir).unwrap();
    for i in 0..n {
        let mut r = AuditRecord::new(&format!("User::\"u{i}\""));
        r.tables = vec!["t".into()];
        r.rows_scanned = i * 10;
        r.rows_returned = i;
        log.append(r).unwrap();
    }
}

/// The frames of the log: its bytes up to the end of the last record (not the
/// zeros the file was grown by), and (offset, length) of each frame, header
/// included.
fn frames(dir: &Path) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut bytes = std::fs::read(dir.join("audit.log")).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            assert!(bytes[at..].iter().all(|b| *b == 0), "only zeros follow");
            break;
        }
        out.push((at, 4 + len));
        at += 4 + len;
    }
    bytes.truncate(at);
    (bytes, out)
}

fn broken_at(dir: &Path) -> u64 {
    let v = verify(dir).unwrap();
    v.first_break
        .unwrap_or_else(|| panic!("the tampering went unnoticed"))
        .0
}

#[test]
fn an_untouched_log_verifies_and_chains() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 5);
    let v = verify(d.path()).unwrap();
    assert_eq!(v.records, 5);
    assert_eq!(v.first_break, None);
    let (rs, torn) = read_records(&d.path().join("audit.log")).unwrap();
    assert!(!torn);
    assert_eq!(rs[0].prev, [0; 32]);
    for w in rs.windows(2) {
        assert_eq!(w[1].prev, w[0].hash);
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    // reopening continues the chain
    let log = open(d.path()).unwrap();
    let r = log.append(AuditRecord::new("owner")).unwrap();
    assert_eq!((r.seq, r.prev), (5, rs[4].hash));
    assert_eq!(verify(d.path()).unwrap().first_break, None);
}

#[test]
fn every_single_modified_byte_of_every_record_is_found() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 4);
    let (orig, fr) = frames(d.path());
    // flip one byte inside each record's body (past its length prefix), at several
    // places, and check the break names that record (or the log as unreadable)
    for (i, (at, len)) in fr.iter().enumerate() {
        for k in [4, len / 2, len - 1] {
            let mut b = orig.clone();
            b[at + k] ^= 0x01;
            std::fs::write(d.path().join("audit.log"), &b).unwrap();
            let v = verify(d.path()).unwrap();
            let (where_, why) = v.first_break.expect("modification unnoticed");
            assert!(
                where_ <= i as u64,
                "byte {k} of record {i}: break reported at {where_}: {why}"
            );
        }
    }
    std::fs::write(d.path().join("audit.log"), &orig).unwrap();
    assert_eq!(verify(d.path()).unwrap().first_break, None);
}

#[test]
fn a_removed_record_is_found_wherever_it_was() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 5);
    let (orig, fr) = frames(d.path());
    for (i, (at, len)) in fr.iter().enumerate() {
        let mut b = orig[..*at].to_vec();
        b.extend_from_slice(&orig[at + len..]);
        std::fs::write(d.path().join("audit.log"), &b).unwrap();
        assert_eq!(broken_at(d.path()), i as u64, "removing record {i}");
    }
}

#[test]
fn reordered_records_are_found() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 4);
    let (orig, fr) = frames(d.path());
    for i in 0..fr.len() - 1 {
        let (a, b) = (fr[i], fr[i + 1]);
        let mut out = orig[..a.0].to_vec();
        out.extend_from_slice(&orig[b.0..b.0 + b.1]);
        out.extend_from_slice(&orig[a.0..a.0 + a.1]);
        out.extend_from_slice(&orig[b.0 + b.1..]);
        std::fs::write(d.path().join("audit.log"), &out).unwrap();
        assert_eq!(broken_at(d.path()), i as u64, "swapping {i} and {}", i + 1);
    }
}

#[test]
fn a_node_will_not_extend_a_broken_trail() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 3);
    let (mut b, fr) = frames(d.path());
    b[fr[1].0 + 10] ^= 0xff;
    std::fs::write(d.path().join("audit.log"), &b).unwrap();
    let e = open(d.path()).unwrap_err();
    assert!(e.to_string().contains("sb audit verify"), "{e}");
}

#[test]
fn a_torn_last_write_is_reported_then_cut_off_on_open() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 3);
    let (b, fr) = frames(d.path());
    // the third record half written: as if the node died in append()
    let cut = fr[2].0 + fr[2].1 / 2;
    std::fs::write(d.path().join("audit.log"), &b[..cut]).unwrap();
    // the head still says 3 records: the third was never acknowledged, but the
    // head rename came after its fsync, so say how the head was left
    let v = verify(d.path()).unwrap();
    assert_eq!(v.first_break.unwrap().0, 2);
    // a crash between the log's fsync and the head's rename leaves the head one
    // behind; reproduce that state and open
    let log = {
        std::fs::write(d.path().join("audit.log"), &b[..fr[2].0 + fr[2].1 / 2]).unwrap();
        rewrite_head(d.path(), 2, &b, &fr);
        open(d.path()).unwrap()
    };
    // the cut is recorded in the trail itself
    assert!(
        log.recovered().unwrap().contains("cut off"),
        "{:?}",
        log.recovered()
    );
    let r = log.append(AuditRecord::new("owner")).unwrap();
    assert_eq!(r.seq, 3);
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.torn_bytes), (None, 4, 0));
    let (rs, _) = read_records(&d.path().join("audit.log")).unwrap();
    assert_eq!(rs[2].outcome, "recovered");
}

/// Writes a head saying the log holds `n` records ending with record n-1.
fn rewrite_head(dir: &Path, n: usize, bytes: &[u8], fr: &[(usize, usize)]) {
    let (at, len) = fr[n - 1];
    let r: AuditRecord = ciborium::from_reader(&bytes[at + 4..at + len]).unwrap();
    #[derive(serde::Serialize)]
    struct Head {
        next_seq: u64,
        last: [u8; 32],
    }
    let mut out = Vec::new();
    ciborium::into_writer(
        &Head {
            next_seq: n as u64,
            last: r.hash,
        },
        &mut out,
    )
    .unwrap();
    std::fs::write(dir.join("audit.head"), out).unwrap();
}

#[test]
fn removing_records_from_the_end_is_found_through_the_head() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 4);
    let (b, fr) = frames(d.path());
    std::fs::write(d.path().join("audit.log"), &b[..fr[3].0]).unwrap();
    let v = verify(d.path()).unwrap();
    let (at, why) = v.first_break.unwrap();
    assert_eq!(at, 3);
    assert!(why.contains("removed from the end"), "{why}");
}

/// The frame the next append would write after a log of `n` records in `dir`,
/// made by appending to a copy.
fn next_frame(dir: &Path) -> Vec<u8> {
    let copy = tempfile::tempdir().unwrap();
    for f in ["audit.log", "audit.head"] {
        std::fs::copy(dir.join(f), copy.path().join(f)).unwrap();
    }
    let before = frames(copy.path()).1.len();
    let log = open(copy.path()).unwrap();
    log.append(AuditRecord::new("User::\"next\"")).unwrap();
    let (bytes, fr) = frames(copy.path());
    let (at, len) = fr[before];
    bytes[at..at + len].to_vec()
}

#[test]
fn the_log_grows_in_zeroed_steps_that_read_as_no_damage() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 3);
    let file = std::fs::read(d.path().join("audit.log")).unwrap();
    let (records, fr) = frames(d.path());
    // the file is one step long; the records are at its start, zeros after them
    assert_eq!(file.len() as u64, scratchbird_host::audit::LOG_GROWTH_BYTES);
    assert_eq!((fr.len(), &file[..records.len()]), (3, &records[..]));
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.torn_bytes), (None, 3, 0));
    assert!(!read_records(&d.path().join("audit.log")).unwrap().1);
    // reopening neither cuts nor records a recovery, and goes on after the records
    let log = open(d.path()).unwrap();
    assert_eq!(log.recovered(), None);
    let r = log.append(AuditRecord::new("owner")).unwrap();
    assert_eq!(r.seq, 3);
    drop(log);
    assert_eq!(frames(d.path()).1.len(), 4);
    // appends past the step grow the file by another, and the chain holds
    let log = open(d.path()).unwrap();
    let big = "x".repeat(200_000);
    for _ in 0..6 {
        let mut r = AuditRecord::new("owner");
        r.error = Some(big.clone());
        log.append(r).unwrap();
    }
    drop(log);
    let len = std::fs::metadata(d.path().join("audit.log")).unwrap().len();
    assert_eq!(len, 2 * scratchbird_host::audit::LOG_GROWTH_BYTES);
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.torn_bytes), (None, 10, 0));
}

/// How an interrupted append left the end of the log.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Left {
    /// The file ends with the part of the frame that reached the disk.
    Cut,
    /// The part of the frame that reached the disk, then the zeros the file
    /// was grown by (its tail did not reach the disk).
    InZeros,
    /// As many zero bytes as were written: the file grew, its data did not
    /// reach the disk.
    Zeros,
}

#[test]
fn every_crash_point_of_an_append_is_recovered_on_open() {
    // a crash can stop an append after any byte of its frame reached the disk,
    // with the head either not yet replaced or replaced, in a file that ended
    // with the records or was grown ahead of them; a power loss can also
    // leave the grown part of the file as zeros. Each state must open, and the
    // trail must then verify with the new record exactly when it was whole.
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 3);
    let (log0, _) = frames(d.path());
    let head0 = std::fs::read(d.path().join("audit.head")).unwrap();
    let frame = next_frame(d.path());
    for written in 0..=frame.len() {
        for left in [Left::Cut, Left::InZeros, Left::Zeros] {
            let t = tempfile::tempdir().unwrap();
            let mut bytes = log0.clone();
            match left {
                Left::Zeros => bytes.extend(std::iter::repeat_n(0u8, written)),
                Left::Cut | Left::InZeros => bytes.extend_from_slice(&frame[..written]),
            }
            if left == Left::InZeros {
                bytes.resize(log0.len() + frame.len() + 4096, 0);
            }
            std::fs::write(t.path().join("audit.log"), &bytes).unwrap();
            std::fs::write(t.path().join("audit.head"), &head0).unwrap();
            // whole: every byte of the frame is there (the bytes that did not
            // reach the disk read as zeros, and were zeros)
            let whole = match left {
                Left::Zeros => false,
                Left::Cut => written == frame.len(),
                Left::InZeros => frame[written..].iter().all(|b| *b == 0),
            };
            let torn = left != Left::Zeros && written > 0 && !whole;
            let case = format!("{written} bytes ({left:?})");
            let v = verify(t.path()).unwrap();
            assert_eq!(v.first_break, None, "{case}");
            assert_eq!(v.beyond_head, u64::from(whole), "{case}");
            assert_eq!(v.torn_bytes > 0, torn, "{case}");
            let log = open(t.path()).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(log.recovered().is_some(), whole || torn, "{case}");
            // the head thread writes the recovery record's head; closing waits for it
            drop(log);
            // the trail now holds the old records, the new one if it was whole,
            // and the record of the recovery
            let v = verify(t.path()).unwrap();
            let expect = 3 + u64::from(whole) + u64::from(whole || torn);
            assert_eq!(
                (v.first_break, v.records, v.beyond_head, v.torn_bytes),
                (None, expect, 0, 0),
                "{case}"
            );
        }
    }
}

#[test]
fn records_after_a_head_whose_rename_was_lost_are_all_adopted() {
    // without a folder fsync per append, a power loss can bring back an older
    // head while several later records are durable
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 5);
    let (b, fr) = frames(d.path());
    rewrite_head(d.path(), 2, &b, &fr);
    std::fs::write(d.path().join("audit.head.tmp"), b"half a he").unwrap();
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.beyond_head), (None, 5, 3));
    let log = open(d.path()).unwrap();
    assert!(
        log.recovered().unwrap().contains("adopted 3"),
        "{:?}",
        log.recovered()
    );
    // the recovery record's head is written by the head thread: closing waits for it
    drop(log);
    assert!(!d.path().join("audit.head.tmp").exists());
    let log = open(d.path()).unwrap();
    let r = log.append(AuditRecord::new("owner")).unwrap();
    assert_eq!(r.seq, 6);
    // the head follows appends off their path: behind until its thread catches up
    drop(log);
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.beyond_head), (None, 7, 0));
}

#[test]
fn what_no_crash_can_leave_after_the_head_is_a_break() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 4);
    let (b, fr) = frames(d.path());
    rewrite_head(d.path(), 2, &b, &fr);
    let head2 = std::fs::read(d.path().join("audit.head")).unwrap();
    let other = tempfile::tempdir().unwrap();
    log_of(other.path(), 4);
    let (ob, ofr) = frames(other.path());
    let cases: Vec<(&str, u64, Vec<u8>)> = vec![
        // a whole record after the head that does not chain
        ("foreign record", 2, {
            let mut x = b[..fr[2].0].to_vec();
            x.extend_from_slice(&ob[ofr[2].0..ofr[2].0 + ofr[2].1]);
            x
        }),
        // a record after the head modified, with a whole record behind it
        // (only the last frame can be a write cut short)
        ("modified record", 2, {
            let mut x = b.clone();
            let frame = &mut x[fr[2].0..fr[2].0 + fr[2].1];
            let at = frame
                .windows(4)
                .position(|w| w == b"\"u2\"")
                .expect("the principal is in the frame");
            frame[at + 2] = b'9';
            x
        }),
    ];
    for (what, at, bytes) in cases {
        std::fs::write(d.path().join("audit.log"), &bytes).unwrap();
        std::fs::write(d.path().join("audit.head"), &head2).unwrap();
        let v = verify(d.path()).unwrap();
        assert_eq!(
            v.first_break.as_ref().map(|b| b.0),
            Some(at),
            "{what}: {v:?}"
        );
        let e = open(d.path()).unwrap_err();
        assert!(e.to_string().contains("sb audit verify"), "{what}: {e}");
    }
}

#[test]
fn a_last_frame_with_a_hole_reads_as_torn_after_the_head_and_as_a_break_under_it() {
    // a frame written over the zeros the log was grown by: after a power loss
    // any of its pages may still be zeros, the middle of a large record too,
    // and it may still decode. After the head it is the crash it looks like;
    // counted by the head, it is a break.
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 2);
    let log = open(d.path()).unwrap();
    let mut r = AuditRecord::new("owner");
    r.error = Some("x".repeat(20_000));
    log.append(r).unwrap();
    drop(log);
    let (b, fr) = frames(d.path());
    let (at, len) = fr[2];
    let mut holed = b.clone();
    holed[at + 4096..at + 8192].fill(0);
    assert_ne!(
        holed[at + len - 1],
        0,
        "the frame's own last byte is intact"
    );
    // counted by the head: a break naming the record
    std::fs::write(d.path().join("audit.log"), &holed).unwrap();
    let (n, why) = verify(d.path()).unwrap().first_break.unwrap();
    assert!(n == 2 && why.contains("head counts it"), "{n}: {why}");
    assert!(open(d.path()).is_err());
    // after the head: cut on open, and the cut recorded
    rewrite_head(d.path(), 2, &b, &fr);
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records), (None, 2));
    assert!(v.torn_bytes > 0);
    let log = open(d.path()).unwrap();
    assert!(
        log.recovered().unwrap().contains("cut off"),
        "{:?}",
        log.recovered()
    );
    drop(log);
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.torn_bytes), (None, 3, 0));
}

#[test]
fn stale_bytes_after_the_last_record_are_cut_like_a_torn_frame() {
    // a file system that does not order data before size can leave a frame of
    // old bytes where an append was interrupted: after the head, anchored by
    // nothing, released by no append
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 3);
    let (mut b, _) = frames(d.path());
    let whole = b.len();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(b"notcbor!");
    std::fs::write(d.path().join("audit.log"), &b).unwrap();
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.records, v.torn_bytes), (None, 3, 12));
    let log = open(d.path()).unwrap();
    assert!(
        log.recovered().unwrap().contains("cut off 12 bytes"),
        "{:?}",
        log.recovered()
    );
    assert!(std::fs::read(d.path().join("audit.log")).unwrap().len() > whole);
    assert_eq!(verify(d.path()).unwrap().first_break, None);
}

#[test]
fn a_trail_left_without_its_head_gets_one_when_opened() {
    // a crash after the log was created and before its first head was written
    let d = tempfile::tempdir().unwrap();
    drop(open(d.path()).unwrap());
    std::fs::remove_file(d.path().join("audit.head")).unwrap();
    drop(open(d.path()).unwrap());
    assert!(d.path().join("audit.head").exists());
    assert_eq!(verify(d.path()).unwrap().first_break, None);
}

#[test]
fn a_head_naming_another_record_or_unreadable_or_missing_is_a_break() {
    let d = tempfile::tempdir().unwrap();
    log_of(d.path(), 3);
    let (b, fr) = frames(d.path());
    let head = std::fs::read(d.path().join("audit.head")).unwrap();
    // the head of another trail of the same length
    let other = tempfile::tempdir().unwrap();
    log_of(other.path(), 3);
    std::fs::copy(other.path().join("audit.head"), d.path().join("audit.head")).unwrap();
    let (at, why) = verify(d.path()).unwrap().first_break.unwrap();
    assert!(at == 2 && why.contains("replaced"), "{at}: {why}");
    std::fs::write(d.path().join("audit.head"), b"\xff\x00junk").unwrap();
    let (_, why) = verify(d.path()).unwrap().first_break.unwrap();
    assert!(why.contains("head file is not readable"), "{why}");
    std::fs::remove_file(d.path().join("audit.head")).unwrap();
    let (_, why) = verify(d.path()).unwrap().first_break.unwrap();
    assert!(why.contains("head file is missing"), "{why}");
    assert!(open(d.path()).is_err());
    // one record and no head: a first append (by an older version, which wrote
    // the head with it) stopped before its head
    std::fs::write(d.path().join("audit.log"), &b[..fr[0].1]).unwrap();
    let v = verify(d.path()).unwrap();
    assert_eq!((v.first_break, v.beyond_head), (None, 1));
    std::fs::write(d.path().join("audit.head"), head).unwrap();
}

#[test]
fn the_trail_is_readable_by_the_node_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    log_of(&dir, 2);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("audit.log")), 0o600);
    assert_eq!(mode(&dir.join("audit.head")), 0o600);
    // a trail left readable by others (an older version, a careless copy) is
    // made private again when opened
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["audit.log", "audit.head"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    drop(open(&dir).unwrap());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("audit.log")), 0o600);
    assert_eq!(mode(&dir.join("audit.head")), 0o600);
}
