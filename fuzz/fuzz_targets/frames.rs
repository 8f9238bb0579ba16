//! RPC frames from libFuzzer's input, decoded as a node and a client decode them.
//! Even first byte: up to eight byte edits of valid frames (a query, a result
//! batch); odd: the input itself. A crash is a panic, a frame over the limit
//! accepted, or a decoded frame that does not survive re-encoding unchanged. A
//! decoded batch's rows are read (every offset checked, never trusted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scratchbird_net::rpc::{self, Query, Request, Response, WireBatch};
use scratchbird_types::SqlType;
use scratchbird_types::batch::{BatchLayout, BatchWriter};

const MAX: usize = 1 << 16;

fn seeds() -> Vec<Vec<u8>> {
    let q = Request::Query(Query { sql: "SELECT name, mrr FROM customers WHERE id = 7".into(), deadline_ms: 1000, context: None, attestation: None });
    let types = vec![SqlType::Integer, SqlType::Varchar { max_chars: 20 }];
    let layout = BatchLayout::new(&types, 8, 64).expect("layout");
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut w = BatchWriter::new(&layout, &mut buf).expect("writer");
    w.set_fixed(0, 0, &7i32.to_le_bytes()).expect("fixed");
    w.set_bytes(1, 0, b"alice").expect("bytes");
    w.set_null(0, 1).expect("null");
    w.set_bytes(1, 1, b"").expect("bytes");
    w.finish(2).expect("finish");
    let b = Response::Batch(WireBatch { types, rows_max: 8, heap_bytes: 64, bytes: buf });
    vec![rpc::encode(1, &q, MAX).expect("encode"), rpc::encode(2, &b, MAX).expect("encode")]
}

fn mutate(base: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits.chunks(3).take(8) {
        let (op, at, val) = (e[0] % 4, usize::from(*e.get(1).unwrap_or(&0)), *e.get(2).unwrap_or(&0));
        if v.is_empty() {
            v.push(val);
            continue;
        }
        let i = at % v.len();
        match op {
            0 => v[i] ^= val | 1,
            1 => v.insert(i, val),
            2 => {
                v.remove(i);
            }
            _ => v.truncate(i),
        }
    }
    v
}

fn check(bytes: &[u8]) {
    if let Ok(Some((f, used))) = rpc::decode::<Request>(bytes, MAX) {
        assert!(used <= bytes.len() && used - 4 <= MAX);
        let again = rpc::encode(f.id, &f.body, MAX).expect("a decoded request re-encodes");
        let (g, _) = rpc::decode::<Request>(&again, MAX).expect("decodes").expect("whole");
        assert_eq!(f, g);
    }
    if let Ok(Some((f, used))) = rpc::decode::<Response>(bytes, MAX) {
        assert!(used <= bytes.len());
        if let Response::Batch(b) = &f.body {
            let _ = b.rows();
        }
        let again = rpc::encode(f.id, &f.body, MAX).expect("a decoded response re-encodes");
        let (g, _) = rpc::decode::<Response>(&again, MAX).expect("decodes").expect("whole");
        assert_eq!(f, g);
    }
}

thread_local! {
    static SEEDS: Vec<Vec<u8>> = seeds();
}

fuzz_target!(|data: &[u8]| {
    match data.first() {
        Some(b) if b % 2 == 0 => SEEDS.with(|s| {
            let base = &s[usize::from(*data.get(1).unwrap_or(&0)) % s.len()];
            check(&mutate(base, data.get(2..).unwrap_or(&[])));
        }),
        _ => check(data),
    }
});
