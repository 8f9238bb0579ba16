//! Run-time date and timestamp text: the guest's formatting against the Rust
//! formatting of the same values (the oracle), and text read back to the value it
//! came from, over dates from year 0 to far past 9999 and timestamps with and
//! without fractions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use proptest::prelude::*;
use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, display_value, open_storage};
use scratchbird_types::{Date, Timestamp, Value};
use std::sync::Arc;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// PostgreSQL's text of a timestamp: no fraction when zero, no trailing zeros.
fn ts_text(t: Timestamp) -> String {
    let s = t.to_string();
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn run(s: &mut LocalSession, sql: &str) -> Vec<Vec<Value>> {
    let out = s.execute(sql).unwrap();
    let Some(Outcome::Rows { batches, .. }) = out.into_iter().last() else {
        panic!("no rows from {sql}");
    };
    batches.iter().flat_map(|b| b.rows().unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn date_and_timestamp_text_matches_the_oracle_and_reads_back(
        // from 0000-01-01 (DATE literals spell no earlier year) to year ~10,000
        days in proptest::collection::vec(-719_528i32..3_000_000, 200),
        micros in proptest::collection::vec(0i64..MICROS_PER_DAY, 200),
        whole in proptest::collection::vec(any::<bool>(), 200),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(open_storage(dir.path()).unwrap());
        let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
        let mut s = LocalSession::new(storage, sandbox);
        s.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, x DATE, t TIMESTAMP)").unwrap();
        let mut expect = Vec::new();
        let mut values = Vec::new();
        for (i, ((d, us), w)) in days.iter().zip(&micros).zip(&whole).enumerate() {
            let date = Date(*d);
            // timestamps only where days * 86400e6 fits (about +-292,000 years)
            let day_ts = (*d).clamp(-106_751_990, 106_751_990);
            let us = if *w { us - us % 1_000_000 } else { *us };
            let ts = Timestamp(i64::from(day_ts) * MICROS_PER_DAY + us);
            values.push(format!("({i}, DATE '{date}', TIMESTAMP '{}')", Timestamp(ts.0)));
            expect.push((date, ts));
        }
        s.execute(&format!("INSERT INTO d VALUES {}", values.join(", "))).unwrap();
        let rows = run(
            &mut s,
            "SELECT id, CAST(x AS TEXT), CAST(t AS TEXT), \
             CAST(CAST(x AS TEXT) AS DATE) = x, CAST(CAST(t AS TEXT) AS TIMESTAMP) = t \
             FROM d ORDER BY id",
        );
        prop_assert_eq!(rows.len(), expect.len());
        for (row, (date, ts)) in rows.iter().zip(&expect) {
            prop_assert_eq!(&row[1], &Value::Text(date.to_string()));
            prop_assert_eq!(&row[2], &Value::Text(ts_text(*ts)));
            prop_assert_eq!(display_value(&Value::Timestamp(*ts)), ts_text(*ts));
            prop_assert_eq!(&row[3], &Value::Boolean(true));
            prop_assert_eq!(&row[4], &Value::Boolean(true));
        }
    }
}
