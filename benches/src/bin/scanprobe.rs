#![allow(clippy::unwrap_used, reason = "probe")]
use scratchbird_benches::*;
use scratchbird_storage::scan::ScanSpec;
use scratchbird_storage::{Durability, TxnOptions};
use std::time::Instant;
fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let path = std::path::PathBuf::from(
        std::env::args()
            .nth(2)
            .unwrap_or_else(|| "/tmp/scanprobe".into()),
    );
    let fresh = !path.exists();
    let store = open_store(&path, Durability::Fsync);
    let t0 = Instant::now();
    let table = if fresh {
        load_lineitem(&store, rows)
    } else {
        store
            .begin(TxnOptions::snapshot())
            .unwrap()
            .table_id("lineitem")
            .unwrap()
    };
    println!(
        "bulk load {rows} rows: {:?} ({:.0} rows/s)",
        t0.elapsed(),
        rows as f64 / t0.elapsed().as_secs_f64()
    );
    println!("{:?}", store.stats());
    for _ in 0..std::env::var("SCANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
    {
        let t = store.begin(TxnOptions::snapshot().read_only()).unwrap();
        let t0 = Instant::now();
        let mut scan = t.scan(ScanSpec::full(table, (0..8).collect())).unwrap();
        let layout = scan.layout(1024, 64 * 1024).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut n = 0usize;
        loop {
            let k = scan.next_batch(&layout, &mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k;
        }
        let s = t0.elapsed().as_secs_f64();
        println!(
            "scan {n} rows: {:.3}s {:.1} M rows/s",
            s,
            n as f64 / s / 1e6
        );
    }
}
