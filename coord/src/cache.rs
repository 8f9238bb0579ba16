//! Compiled statements, shared by a node's coordinator sessions: a request whose
//! SQL text was compiled before, against the same catalog, skips parsing and
//! compiling (the sandbox's module cache then skips Cranelift too).
//!
//! Compiling is a pure function of the SQL text, the catalog and the row
//! estimates the home shard lets the user's plans use (which choose join
//! orders and sides): it sees no data; what a user may see is decided where
//! the module runs. A statement planned without estimates serves every
//! session and every user; one planned with them is kept under its text and
//! the estimates' scope (the session passes a key naming the user they were
//! given for), and only while each table it reads keeps the scale its
//! estimate had (`Compiled::planned_alike`: the same power of two), so a
//! plan chosen over an empty table is chosen again once the table has
//! rows. The one input
//! besides those is the statement's time, for `now()` and `current_date`: a
//! statement that reads it holds it in its module and is never kept here. An entry
//! is keyed by the text, by whether it was compiled for one shard or several,
//! and by the version of the schema it was compiled against
//! (a digest of the schema's whole content: ids, names, types, keys, indexes,
//! domains). A schema change therefore misses and compiles again; nothing stale is
//! served, and a schema equal in content (another shard's, or the same one read
//! again) hits.

use scratchbird_compiler::{Catalog, Compiled, SchemaVersion};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

/// Entries kept by default.
pub const STATEMENTS_MAX: usize = 1024;
/// Module bytes kept by default (shard and merge stages together).
pub const STATEMENT_BYTES_MAX: usize = 64 << 20;
/// Schema versions the kept statements may belong to at once: statements
/// compiled against an older schema than the newest few leave with it, so schema
/// churn never fills the cache with statements nobody can use again.
pub const CATALOGS_MAX: usize = 8;

struct Entry {
    compiled: Arc<Compiled>,
    bytes: usize,
}

/// The statements compiled against one schema version.
struct Pinned {
    version: SchemaVersion,
    statements: HashMap<String, Entry>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first; at most [`CATALOGS_MAX`].
    catalogs: VecDeque<Pinned>,
    /// Insertion order of the statements (schema version, text): the oldest
    /// entry leaves first.
    order: VecDeque<(SchemaVersion, String)>,
    entries: usize,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl Inner {
    fn pinned(&mut self, version: SchemaVersion) -> Option<&mut Pinned> {
        self.catalogs.iter_mut().find(|p| p.version == version)
    }

    /// Drops the oldest catalog and every statement compiled against it.
    fn forget_oldest_catalog(&mut self) {
        let Some(old) = self.catalogs.pop_front() else {
            return;
        };
        self.entries -= old.statements.len();
        self.bytes -= old.statements.values().map(|e| e.bytes).sum::<usize>();
        self.order.retain(|(v, _)| *v != old.version);
    }

    /// Drops the oldest statement.
    fn forget_oldest(&mut self) -> bool {
        let Some((c, sql)) = self.order.pop_front() else {
            return false;
        };
        if let Some(i) = self.catalogs.iter().position(|p| p.version == c)
            && let Some(e) = self.catalogs[i].statements.remove(&sql)
        {
            self.entries -= 1;
            self.bytes -= e.bytes;
            if self.catalogs[i].statements.is_empty() {
                self.catalogs.remove(i);
            }
        }
        true
    }
}

/// A bounded cache of compiled statements (first in, first out).
pub struct StatementCache {
    inner: Mutex<Inner>,
    entries_max: usize,
    bytes_max: usize,
}

impl std::fmt::Debug for StatementCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes, hits, misses) = self.figures();
        f.debug_struct("StatementCache")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .field("hits", &hits)
            .field("misses", &misses)
            .finish_non_exhaustive()
    }
}

impl Default for StatementCache {
    fn default() -> Self {
        Self::new(STATEMENTS_MAX, STATEMENT_BYTES_MAX)
    }
}

impl StatementCache {
    /// A cache of at most `entries_max` statements and `bytes_max` module bytes
    /// (0 entries: nothing is kept).
    #[must_use]
    pub fn new(entries_max: usize, bytes_max: usize) -> Self {
        Self {
            inner: Mutex::default(),
            entries_max,
            bytes_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The statement `sql` compiled against `catalog` for one shard or, with
    /// `spread`, for several, if it is kept.
    #[must_use]
    pub fn get(&self, sql: &str, catalog: &Catalog, spread: bool) -> Option<Arc<Compiled>> {
        let mut g = self.lock();
        let found = g
            .pinned(catalog.version())
            .and_then(|p| p.statements.get(sql))
            .filter(|e| e.compiled.fits(spread) && e.compiled.planned_alike(catalog))
            .map(|e| e.compiled.clone());
        if found.is_some() {
            g.hits += 1;
        } else {
            g.misses += 1;
        }
        found
    }

    /// Keeps `compiled`, the statement `sql` compiled against `catalog`,
    /// making room by dropping the oldest entries. A statement larger than the
    /// whole budget is not kept.
    pub fn insert(&self, sql: &str, catalog: &Catalog, compiled: Arc<Compiled>) {
        let version = catalog.version();
        let bytes = sql.len()
            + compiled.module.len()
            + compiled.merge.as_ref().map_or(0, |m| m.module.len());
        if self.entries_max == 0 || bytes > self.bytes_max {
            return;
        }
        let mut g = self.lock();
        let spread = compiled.spread;
        if g.pinned(version).is_some_and(|p| {
            p.statements
                .get(sql)
                .is_some_and(|e| e.compiled.fits(spread) && e.compiled.planned_alike(catalog))
        }) {
            return;
        }
        // the same text compiled for another number of shards (the shard map
        // changed), or planned when its tables' estimates were of another
        // scale, gives way
        if let Some(old) = g.pinned(version).and_then(|p| p.statements.remove(sql)) {
            g.entries -= 1;
            g.bytes -= old.bytes;
            g.order.retain(|(v, q)| !(*v == version && q == sql));
        }
        while g.entries >= self.entries_max || g.bytes + bytes > self.bytes_max {
            if !g.forget_oldest() {
                break;
            }
        }
        if g.pinned(version).is_none() {
            if g.catalogs.len() >= CATALOGS_MAX {
                g.forget_oldest_catalog();
            }
            g.catalogs.push_back(Pinned {
                version,
                statements: HashMap::new(),
            });
        }
        g.order.push_back((version, sql.to_owned()));
        g.entries += 1;
        g.bytes += bytes;
        if let Some(p) = g.pinned(version) {
            p.statements
                .insert(sql.to_owned(), Entry { compiled, bytes });
        }
    }

    /// Entries, their bytes, hits and misses so far.
    #[must_use]
    pub fn figures(&self) -> (usize, usize, u64, u64) {
        let g = self.lock();
        (g.entries, g.bytes, g.hits, g.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scratchbird_compiler::{ColumnDef, Statement, TableDef, compile, parse};
    use scratchbird_types::{ColumnId, SqlType, TableId};

    fn compiled(sql: &str, cat: &Catalog) -> Arc<Compiled> {
        let p = parse(sql).unwrap().remove(0);
        match compile(&p, cat).unwrap() {
            Statement::Query(c) => Arc::from(c),
            _ => panic!("not a query"),
        }
    }

    /// A schema of one table, `t<n>`: each `n` is another schema version.
    fn schema(n: u8) -> Catalog {
        Catalog::new(
            vec![TableDef {
                distribution: None,
                checks: Vec::new(),
                revision: None,
                id: TableId::from_bytes([n; 16]),
                name: format!("t{n}"),
                columns: vec![ColumnDef {
                    id: ColumnId::from_bytes([n; 16]),
                    name: "a".into(),
                    ty: SqlType::Integer,
                    nullable: true,
                    default: None,
                    domain: None,
                    check: None,
                    default_fn: None,
                    seq: None,
                }],
                primary_key: vec![],
            }],
            vec![],
            vec![],
        )
    }

    #[test]
    fn an_entry_serves_its_text_and_schema_version_only() {
        let cache = StatementCache::default();
        let a = schema(0);
        let c = compiled("SELECT 1", &a);
        cache.insert("SELECT 1", &a, c.clone());
        assert!(Arc::ptr_eq(&cache.get("SELECT 1", &a, false).unwrap(), &c));
        // the same content read again (or on another shard): the same version
        assert!(Arc::ptr_eq(
            &cache.get("SELECT 1", &schema(0), false).unwrap(),
            &c
        ));
        // a schema change committed
        assert!(cache.get("SELECT 1", &schema(1), false).is_none());
        assert!(cache.get("SELECT 2", &a, false).is_none());
        assert!(cache.get("select 1", &a, false).is_none());
        assert_eq!(cache.figures().2, 2);
        assert_eq!(cache.figures().3, 3);
        // compiled for one shard: a session over several compiles again, and
        // its statement takes the place of this one
        assert!(cache.get("SELECT 1", &a, true).is_none());
        let mut spread = (*compiled("SELECT 1", &a)).clone();
        spread.spread = true;
        cache.insert("SELECT 1", &a, Arc::new(spread));
        assert!(cache.get("SELECT 1", &a, true).is_some());
        assert!(cache.get("SELECT 1", &a, false).is_none());
        assert_eq!(cache.figures().0, 1);
    }

    #[derive(Debug)]
    struct Rows(u64);

    impl scratchbird_types::schema::RowEstimates for Rows {
        fn rows(&self, _table: TableId) -> Option<u64> {
            Some(self.0)
        }
    }

    #[test]
    fn a_plan_chosen_by_estimates_serves_while_they_keep_their_scale() {
        let cache = StatementCache::default();
        let at = |n: u64| schema(0).with_row_estimates(Arc::new(Rows(n)));
        let c = compiled("SELECT a FROM t0", &at(1000));
        assert_eq!(c.planned_with.len(), 1);
        cache.insert("SELECT a FROM t0", &at(1000), c.clone());
        // grown, but within its power of two: the same plan
        assert!(Arc::ptr_eq(
            &cache.get("SELECT a FROM t0", &at(1020), false).unwrap(),
            &c
        ));
        // doubled (or without estimates): planned anew, and the new plan
        // takes the old one's place
        assert!(cache.get("SELECT a FROM t0", &at(2100), false).is_none());
        assert!(cache.get("SELECT a FROM t0", &schema(0), false).is_none());
        let d = compiled("SELECT a FROM t0", &at(2100));
        cache.insert("SELECT a FROM t0", &at(2100), d.clone());
        assert!(Arc::ptr_eq(
            &cache.get("SELECT a FROM t0", &at(4000), false).unwrap(),
            &d
        ));
        assert!(cache.get("SELECT a FROM t0", &at(1000), false).is_none());
        assert_eq!(cache.figures().0, 1);
        // a statement that reads no table is planned alike at any scale
        let one = compiled("SELECT 1", &at(5));
        cache.insert("SELECT 1", &at(5), one);
        assert!(cache.get("SELECT 1", &at(1 << 40), false).is_some());
    }

    #[test]
    fn the_oldest_entries_leave_first_within_both_bounds() {
        let cat = Catalog::default();
        let one = compiled("SELECT 1", &cat);
        let size = "SELECT 1".len() + one.module.len();
        let cache = StatementCache::new(2, usize::MAX);
        for sql in ["SELECT 1", "SELECT 2", "SELECT 3"] {
            cache.insert(sql, &cat, compiled(sql, &cat));
        }
        assert!(cache.get("SELECT 1", &cat, false).is_none());
        assert!(cache.get("SELECT 2", &cat, false).is_some());
        assert!(cache.get("SELECT 3", &cat, false).is_some());
        // room for two statements of this size, not three
        let cache = StatementCache::new(100, size * 2 + 1);
        for sql in ["SELECT 1", "SELECT 2", "SELECT 3"] {
            cache.insert(sql, &cat, compiled(sql, &cat));
        }
        assert_eq!(cache.figures().0, 2);
        assert!(cache.figures().1 <= size * 2 + 1);
        assert!(cache.get("SELECT 1", &cat, false).is_none());
        // larger than the whole budget: not kept
        let tiny = StatementCache::new(100, 10);
        tiny.insert("SELECT 1", &cat, one);
        assert_eq!(tiny.figures().0, 0);
    }

    /// Statements of a schema older than the newest `CATALOGS_MAX` versions leave
    /// with it.
    #[test]
    fn at_most_a_few_schema_versions_are_kept() {
        let cache = StatementCache::default();
        let cats: Vec<Catalog> = (0..=CATALOGS_MAX)
            .map(|n| schema(u8::try_from(n).unwrap()))
            .collect();
        for c in &cats {
            cache.insert("SELECT 1", c, compiled("SELECT 1", c));
            cache.insert("SELECT 2", c, compiled("SELECT 2", c));
        }
        assert_eq!(cache.figures().0, CATALOGS_MAX * 2);
        assert!(cache.get("SELECT 1", &cats[0], false).is_none());
        assert!(cache.get("SELECT 2", &cats[0], false).is_none());
        assert!(cache.get("SELECT 1", &cats[1], false).is_some());
        assert!(cache.get("SELECT 2", &cats[CATALOGS_MAX], false).is_some());
    }
}
