//! The audit chain: every single modification, removal or reordering of a record
//! is found by `verify`, naming where; a node refuses to extend a broken trail; a
//! torn last write (a crash while appending) is cut off on open.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::audit::{AuditLog, AuditRecord, read_records, verify};
use std::path::Path;

/// A log of `n` records in `dir`.
fn log_of(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, "n1").unwrap();
    for i in 0..n {
        let mut r = AuditRecord::new(&format!("User::\"u{i}\""));
        r.tables = vec!["t".into()];
        r.rows_scanned = i * 10;
        r.rows_returned = i;
        log.append(r).unwrap();
    }
}

/// The frames of the log: (offset, length) of each, header included.
fn frames(dir: &Path) -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = std::fs::read(dir.join("audit.log")).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 4 + len));
        at += 4 + len;
    }
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
    let log = AuditLog::open(d.path(), "n1").unwrap();
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
    let e = AuditLog::open(d.path(), "n1").unwrap_err();
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
        AuditLog::open(d.path(), "n1").unwrap()
    };
    let r = log.append(AuditRecord::new("owner")).unwrap();
    assert_eq!(r.seq, 2);
    assert_eq!(verify(d.path()).unwrap().first_break, None);
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
