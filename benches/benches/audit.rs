//! Group commit of the audit trail: concurrent appends share `fdatasync`s.
//! Each configuration opens a fresh trail in a temporary folder (on the
//! disk `TMPDIR` is on) and has `threads` threads append records of about
//! 850 bytes, the size of a point query's, as fast as they can, each append
//! returning only once its record is durable. Beside them, the same run
//! measures one `fdatasync` of an 850-byte overwrite on its own: the floor of
//! one append, and the unit the rates are compared with.
//!
//! `cargo bench -p scratchbird-benches --bench audit`. `SB_AUDIT_APPENDS`
//! sets the appends per configuration (default 4000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "benchmark"
)]

use scratchbird_host::audit::{AuditLog, AuditRecord};
use scratchbird_types::env::SystemEnv;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new("User::\"alice\"");
    r.envelope = Some([7; 32]);
    r.modules = vec![[9; 32]];
    r.coordinator = Some(format!(
        "sb://cluster/00000000-0000-0000-0000-000000000000/node/{i:036}"
    ));
    r.bundle = Some([3; 32]);
    r.tables = vec!["customers".into()];
    r.columns = vec![
        "customers.name".into(),
        "customers.email".into(),
        "customers.tenant_id".into(),
    ];
    r.rows_scanned = 1;
    r.rows_returned = 1;
    r.cells_masked = 1;
    r.trace = Some("0123456789abcdef0123456789abcdef".into());
    r.context = Some("{\"tenant\":1}".into());
    r
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

/// One `fdatasync` after overwriting 850 bytes of an already written file.
fn fsync_alone(dir: &std::path::Path, n: usize) -> f64 {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-alone");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![0u8; 1 << 20]).unwrap();
    f.sync_all().unwrap();
    let buf = vec![1u8; 850];
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let at = (i * 850 % ((1 << 20) - 850)) as u64;
        let s = Instant::now();
        f.write_all_at(&buf, at).unwrap();
        f.sync_data().unwrap();
        t.push(s.elapsed());
    }
    pct(&mut t, 0.5)
}

/// `threads` threads appending `total` records together: appends per second,
/// fsyncs, and each append's latency (p50, p99 in µs).
fn appends(threads: usize, total: usize) -> (f64, u64, f64, f64) {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AuditLog::open(
            d.path(),
            &scratchbird_types::NodeName::LOCAL,
            Arc::new(SystemEnv::default()),
        )
        .unwrap(),
    );
    let syncs = log.syncs();
    let start = Arc::new(Barrier::new(threads + 1));
    let each = total / threads;
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let (log, start) = (log.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut t = Vec::with_capacity(each);
                for _ in 0..each {
                    let s = Instant::now();
                    log.append(record(i)).unwrap();
                    t.push(s.elapsed());
                }
                t
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut lat: Vec<Duration> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let took = began.elapsed().as_secs_f64();
    let rate = (each * threads) as f64 / took;
    let fsyncs = log.syncs() - syncs;
    (rate, fsyncs, pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

fn main() {
    let total: usize = std::env::var("SB_AUDIT_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let d = tempfile::tempdir().unwrap();
    let fsync_us = fsync_alone(d.path(), 500);
    println!("one fdatasync of an 850-byte overwrite, alone: {fsync_us:.0} µs p50");
    println!();
    println!(
        "| threads | appends/s | appends per fsync | append p50 µs | append p99 µs | vs 1 thread | vs threads / fsync |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut one = 0.0;
    for threads in [1, 4, 16, 32] {
        let (rate, fsyncs, p50, p99) = appends(threads, total);
        if threads == 1 {
            one = rate;
        }
        let bound = threads as f64 / (fsync_us / 1e6);
        println!(
            "| {threads} | {rate:.0} | {:.1} | {p50:.0} | {p99:.0} | {:.1}x | {:.0} % |",
            (total / threads * threads) as f64 / fsyncs.max(1) as f64,
            rate / one,
            100.0 * rate / bound
        );
    }
}
