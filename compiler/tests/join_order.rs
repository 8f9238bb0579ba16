//! The join order and join sides the optimiser picks from row estimates
//! (`src/cost.rs`), read from the EXPLAIN tree a compiled statement carries.
//! Answers are checked elsewhere (tests/slt/038_join_order.slt,
//! tests/slt/100_join_sides.slt, the differential tests): here, that a star
//! join listed in an unlucky order streams its fact table past its
//! dimensions, that no cross product is built where a condition connects,
//! and that a LEFT or mark join holds its smaller, kept side.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_compiler::{Catalog, ColumnDef, Statement, TableDef, compile, parse};
use scratchbird_types::schema::RowEstimates;
use scratchbird_types::{ColumnId, SqlType, TableId};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct Rows(HashMap<TableId, u64>);

impl RowEstimates for Rows {
    fn rows(&self, table: TableId) -> Option<u64> {
        self.0.get(&table).copied()
    }
}

/// Row counts and distinct values of columns (table, position).
#[derive(Debug)]
struct Stats(HashMap<TableId, u64>, HashMap<(TableId, usize), f64>);

impl RowEstimates for Stats {
    fn rows(&self, table: TableId) -> Option<u64> {
        self.0.get(&table).copied()
    }

    fn distinct(&self, table: TableId, column: usize) -> Option<f64> {
        self.1.get(&(table, column)).copied()
    }
}

fn table(id: u8, name: &str, cols: &[&str]) -> TableDef {
    TableDef {
        distribution: None,
        checks: Vec::new(),
        revision: None,
        id: TableId::from_bytes([id; 16]),
        name: name.into(),
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnDef {
                id: ColumnId::from_bytes({
                    let mut b = [0u8; 16];
                    b[0] = id;
                    b[1] = i as u8 + 1;
                    b
                }),
                name: (*c).into(),
                ty: SqlType::Integer,
                nullable: true,
                default: None,
                domain: None,
                check: None,
                default_fn: None,
                seq: None,
            })
            .collect(),
        primary_key: vec![0],
    }
}

/// fact (1 M rows) references dim1 (100) and dim2 (1,000) by key.
fn star(estimates: bool) -> Catalog {
    let tables = vec![
        table(1, "fact", &["id", "d1", "d2", "v"]),
        table(2, "dim1", &["id", "x"]),
        table(3, "dim2", &["id", "y"]),
    ];
    let cat = Catalog::new(tables, vec![], vec![]);
    if !estimates {
        return cat;
    }
    let rows = Rows(HashMap::from([
        (TableId::from_bytes([1; 16]), 1_000_000),
        (TableId::from_bytes([2; 16]), 100),
        (TableId::from_bytes([3; 16]), 1_000),
    ]));
    cat.with_row_estimates(Arc::new(rows))
}

fn plan(cat: &Catalog, sql: &str) -> String {
    let p = parse(sql).unwrap();
    match compile(&p[0], cat).unwrap() {
        Statement::Query(c) => c.plan,
        other => panic!("not a query: {other:?}"),
    }
}

/// The tables in the order the plan's scans name them (a join's probe side
/// is printed before its build side).
fn scans(plan: &str) -> Vec<String> {
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix("Scan "))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

const STAR: &str = "SELECT count(*) FROM dim1, dim2, fact \
                    WHERE fact.d1 = dim1.id AND fact.d2 = dim2.id AND dim1.x = 3";

#[test]
fn a_star_join_streams_its_fact_table_past_its_dimensions() {
    let p = plan(&star(true), STAR);
    assert!(!p.contains("Cross join"), "{p}");
    assert_eq!(scans(&p).first().map(String::as_str), Some("fact"), "{p}");
}

#[test]
fn without_estimates_conditions_still_connect_every_join() {
    let p = plan(&star(false), STAR);
    assert!(!p.contains("Cross join"), "{p}");
    assert_eq!(scans(&p).len(), 3, "{p}");
}

#[test]
fn a_filtered_dimension_is_joined_before_a_larger_one() {
    // dim1 filtered to about 10 rows: joining it first leaves fewer fact
    // rows to probe dim2 with
    let p = plan(&star(true), STAR);
    let order = scans(&p);
    let at = |t: &str| order.iter().position(|s| s == t).unwrap();
    let joins: Vec<&str> = p.lines().filter(|l| l.contains("join")).collect();
    assert_eq!(joins.len(), 2, "{p}");
    // the inner (lower) join is the one with dim1
    assert!(
        joins[1].contains("dim1.id") || joins[1].contains("d1"),
        "{p}"
    );
    assert!(at("dim1") < at("dim2"), "{p}");
}

#[test]
fn a_left_join_holds_its_smaller_kept_side() {
    let cat = star(true);
    let small_left = plan(
        &cat,
        "SELECT dim1.id, fact.v FROM dim1 LEFT JOIN fact ON fact.d1 = dim1.id",
    );
    assert!(small_left.contains("(holds the left side)"), "{small_left}");
    let big_left = plan(
        &cat,
        "SELECT dim1.id, fact.v FROM fact LEFT JOIN dim1 ON fact.d1 = dim1.id",
    );
    assert!(!big_left.contains("holds"), "{big_left}");
    // no equality to hash on: a nested loop, which holds the right side
    let no_keys = plan(
        &cat,
        "SELECT dim1.id, fact.v FROM dim1 LEFT JOIN fact ON fact.d1 < dim1.id",
    );
    assert!(!no_keys.contains("holds"), "{no_keys}");
}

#[test]
fn a_correlated_exists_over_a_larger_table_holds_the_outer_rows() {
    let cat = star(true);
    let p = plan(
        &cat,
        "SELECT id FROM dim1 WHERE EXISTS (SELECT 1 FROM fact WHERE fact.d1 = dim1.id)",
    );
    assert!(
        p.contains("Mark join") && p.contains("(holds the left side)"),
        "{p}"
    );
    let q = plan(
        &cat,
        "SELECT id FROM fact WHERE EXISTS (SELECT 1 FROM dim1 WHERE fact.d1 = dim1.id)",
    );
    assert!(!q.contains("holds"), "{q}");
}

#[test]
fn a_thirty_table_chain_in_reverse_order_joins_along_its_conditions() {
    let mut tables = Vec::new();
    for i in 0..30u8 {
        tables.push(table(i + 1, &format!("c{i}"), &["id", "nxt"]));
    }
    let rows = Rows(
        (0..30u8)
            .map(|i| (TableId::from_bytes([i + 1; 16]), 10 + u64::from(i)))
            .collect(),
    );
    let cat = Catalog::new(tables, vec![], vec![]).with_row_estimates(Arc::new(rows));
    let from: Vec<String> = (0..30).rev().map(|i| format!("c{i}")).collect();
    let conds: Vec<String> = (0..29)
        .map(|i| format!("c{i}.nxt = c{}.id", i + 1))
        .collect();
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {}",
        from.join(", "),
        conds.join(" AND ")
    );
    let p = plan(&cat, &sql);
    assert!(!p.contains("Cross join"), "{p}");
    assert_eq!(scans(&p).len(), 30);
}

#[test]
fn the_same_statement_and_estimates_compile_to_the_same_module() {
    let cat = star(true);
    let compiled = || {
        let p = parse(STAR).unwrap();
        match compile(&p[0], &cat).unwrap() {
            Statement::Query(c) => c.hash,
            other => panic!("not a query: {other:?}"),
        }
    };
    assert_eq!(compiled(), compiled());
}

/// `star(true)` with an index on `fact (d2, v)`.
fn star_indexed() -> Catalog {
    let tables = vec![
        table(1, "fact", &["id", "d1", "d2", "v"]),
        table(2, "dim1", &["id", "x"]),
        table(3, "dim2", &["id", "y"]),
    ];
    let index = scratchbird_types::schema::IndexDef {
        id: scratchbird_types::IndexId::from_bytes([9; 16]),
        name: "fact_d2".into(),
        table: TableId::from_bytes([1; 16]),
        columns: vec![2, 3],
        unique: false,
        plain: true,
    };
    let rows = Rows(HashMap::from([
        (TableId::from_bytes([1; 16]), 1_000_000),
        (TableId::from_bytes([2; 16]), 100),
        (TableId::from_bytes([3; 16]), 1_000),
    ]));
    Catalog::new(tables, vec![index], vec![]).with_row_estimates(Arc::new(rows))
}

#[test]
fn a_few_build_keys_look_the_large_side_up_by_an_index() {
    let cat = star_indexed();
    // dim2 filtered to about 100 rows: about 1,000 fact rows per key found
    // through fact_d2, against a scan of a million
    let p = plan(
        &cat,
        "SELECT count(*) FROM fact JOIN dim2 ON fact.d2 = dim2.id WHERE dim2.y = 7 AND dim2.id < 500",
    );
    assert!(p.contains("(looks up fact by index fact_d2, up to "), "{p}");
    // no index leads with d1: a scan
    let p = plan(
        &cat,
        "SELECT count(*) FROM fact JOIN dim1 ON fact.d1 = dim1.id WHERE dim1.x = 7",
    );
    assert!(!p.contains("looks up"), "{p}");
    // every dim2 row: looking each key up costs more than the scan
    let p = plan(
        &cat,
        "SELECT count(*) FROM fact JOIN dim2 ON fact.d2 = dim2.id",
    );
    assert!(!p.contains("looks up"), "{p}");
}

#[test]
fn a_few_build_keys_look_the_large_side_up_by_its_primary_key() {
    let cat = star_indexed();
    let p = plan(
        &cat,
        "SELECT fact.v FROM dim1 JOIN fact ON fact.id = dim1.id WHERE dim1.x = 3",
    );
    assert!(
        p.contains("(looks up fact by its primary key, up to "),
        "{p}"
    );
    // without estimates nothing is looked up
    let p = plan(
        &star(false),
        "SELECT fact.v FROM dim1 JOIN fact ON fact.id = dim1.id WHERE dim1.x = 3",
    );
    assert!(!p.contains("looks up"), "{p}");
}

#[test]
fn a_lookup_never_reads_the_side_a_join_keeps_whole() {
    let cat = star_indexed();
    // fact is the kept side of this LEFT join: each of its rows must come
    // out, so it is never looked up
    let p = plan(
        &cat,
        "SELECT fact.v, dim1.x FROM fact LEFT JOIN dim1 ON fact.id = dim1.id AND dim1.x = 3",
    );
    assert!(!p.contains("looks up"), "{p}");
    // the same below a FULL join
    let p = plan(
        &cat,
        "SELECT fact.v, dim1.x FROM dim1 FULL JOIN fact ON fact.id = dim1.id AND dim1.x = 3",
    );
    assert!(!p.contains("looks up"), "{p}");
}

/// fact (10 M rows) references dim1 (1 M rows, `x` of 100,000 values) and
/// dim2 (10,000 rows, `y` of 2 values, `z` of values statistics do not
/// know); with `stats` the estimator knows those distinct values, without
/// it only the rows.
fn skewed(stats: bool) -> Catalog {
    let tables = vec![
        table(1, "fact", &["id", "d1", "d2", "v"]),
        table(2, "dim1", &["id", "x"]),
        table(3, "dim2", &["id", "y", "z"]),
    ];
    let t = |b: u8| TableId::from_bytes([b; 16]);
    let rows = HashMap::from([(t(1), 10_000_000), (t(2), 1_000_000), (t(3), 10_000)]);
    let distinct = if stats {
        HashMap::from([((t(2), 1), 100_000.0), ((t(3), 1), 2.0)])
    } else {
        HashMap::new()
    };
    Catalog::new(tables, vec![], vec![]).with_row_estimates(Arc::new(Stats(rows, distinct)))
}

/// An equality keeps one row in its column's distinct values where
/// statistics know them, a tenth otherwise: the dimension whose filter keeps
/// fewest rows is joined to the fact table first (TPC-H Q8's part, whose
/// `p_type` has 150 values, before its orders).
#[test]
fn distinct_values_decide_which_filtered_dimension_joins_first() {
    let sql = "SELECT count(*) FROM fact, dim2, dim1 \
               WHERE fact.d1 = dim1.id AND fact.d2 = dim2.id AND dim1.x = 3 AND dim2.y = 1 AND dim2.z = 5";
    // the first join is fact's with the dimension printed after it
    let first = |p: &str| {
        let s = scans(p);
        let at = s.iter().position(|t| t == "fact").unwrap();
        s.get(at + 1).cloned().unwrap_or_default()
    };
    let p = plan(&skewed(false), sql);
    assert_eq!(first(&p), "dim2", "a tenth for each equality: {p}");
    let p = plan(&skewed(true), sql);
    assert_eq!(first(&p), "dim1", "with statistics: {p}");
}

/// TPC-H Q5's shape: customer and supplier share a nation key that nation's
/// key equals, so `c_nation = n_id` is implied though never written. With
/// it, customer is joined to its (filtered) nation before orders, which then
/// meets lineitem with a fifth of its rows; the class's equalities count as
/// one per input they add, not one per equality.
#[test]
fn an_implied_equality_joins_customer_to_nation_before_orders() {
    let tables = vec![
        table(1, "customer", &["c_id", "c_nation"]),
        table(2, "orders", &["o_id", "o_cust"]),
        table(3, "lineitem", &["l_id", "l_order", "l_supp"]),
        table(4, "supplier", &["s_id", "s_nation"]),
        table(5, "nation", &["n_id", "n_region"]),
        table(6, "region", &["r_id", "r_name"]),
    ];
    let t = |b: u8| TableId::from_bytes([b; 16]);
    let rows = Rows(HashMap::from([
        (t(1), 150_000),
        (t(2), 1_500_000),
        (t(3), 6_000_000),
        (t(4), 10_000),
        (t(5), 25),
        (t(6), 5),
    ]));
    let cat = Catalog::new(tables, vec![], vec![]).with_row_estimates(Arc::new(rows));
    let p = plan(
        &cat,
        "SELECT count(*) FROM customer, orders, lineitem, supplier, nation, region \
         WHERE c_id = o_cust AND l_order = o_id AND l_supp = s_id AND c_nation = s_nation \
         AND s_nation = n_id AND n_region = r_id AND r_name = 1",
    );
    assert!(!p.contains("Cross join"), "{p}");
    let line = |needle: &str| {
        p.lines()
            .position(|l| l.contains("join") && l.contains(needle))
            .unwrap_or_else(|| panic!("no join on {needle}: {p}"))
    };
    // deeper joins are printed later: customer meets nation below orders
    assert!(line("c_nation = n_id") > line("c_id = o_cust"), "{p}");
    assert!(line("c_id = o_cust") > line("l_order = o_id"), "{p}");
}
