//! The schema vocabulary every crate shares: tables, columns, indexes and domains
//! with their ids, and a [`Schema`] (one consistent set of them) with its
//! [`SchemaVersion`].
//!
//! Storage keeps these definitions in its catalog, the compiler binds SQL against a
//! [`Schema`], and the policy deriver reads the same [`TableDef`] to decide what a
//! principal sees of it. Nothing converts one shape into another on the way.
//!
//! The version is a digest of the schema's content (every definition, in id order),
//! so two shards that applied the same changes with the same ids have the same
//! version, and anything derived from a schema can be cached under it.

use crate::error::TypeError;
use crate::key::encode_key_value;
use crate::row::RowLayout;
use crate::{ColumnId, DomainId, IndexId, SqlType, TableId, Value, ViewId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Names of system objects start with this; SQL cannot name them.
pub const SYSTEM_PREFIX: &str = "SB$";

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Identity.
    pub id: ColumnId,
    /// Name, unique in its table.
    pub name: String,
    /// Type (a domain column has its domain's base type).
    pub ty: SqlType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Value used when an insert does not give one.
    pub default: Option<Value>,
    /// The domain this column was declared with.
    pub domain: Option<DomainId>,
    /// The domain's CHECK, checked on every value written to the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ColumnCheck>,
    /// A DEFAULT that is the statement's time (`now()`, `CURRENT_DATE`, ...),
    /// in place of `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_fn: Option<DefaultFn>,
}

/// A column DEFAULT that is not a constant: the statement's time, as the
/// coordinator fixes it for `now()` in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultFn {
    /// `now()`, `CURRENT_TIMESTAMP`, `LOCALTIMESTAMP`, ...: the timestamp.
    Now,
    /// `CURRENT_DATE`: its date.
    CurrentDate,
}

impl DefaultFn {
    /// As SQL writes it.
    #[must_use]
    pub fn sql(self) -> &'static str {
        match self {
            Self::Now => "now()",
            Self::CurrentDate => "CURRENT_DATE",
        }
    }
}

/// A domain's CHECK as the columns of the domain carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnCheck {
    /// The domain's name.
    pub domain: String,
    /// The expression, over `VALUE`.
    pub expr: String,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Identity.
    pub id: TableId,
    /// Name, unique among tables.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
    /// Positions of the primary key columns; empty for a table without a primary key
    /// (its records are then keyed by a hidden, increasing row number).
    pub primary_key: Vec<usize>,
    /// How its rows are placed on the cluster's shards, as declared (`DISTRIBUTE
    /// BY`); `None` takes the default ([`TableDef::placement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// CHECK constraints over the table's columns (a column's CHECK is one of
    /// them), checked by storage on every row written, whoever writes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<TableCheck>,
    /// The first id the last transaction that altered it drew (ALTER TABLE):
    /// a cluster's node that applies a change of its log again after a crash
    /// knows by it that the change is in (not part of the schema's version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<[u8; 16]>,
}

/// A table's CHECK constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCheck {
    /// The constraint's name, unique among the table's constraints.
    pub name: String,
    /// The expression, over the table's columns by name (the language of
    /// storage's CHECKs).
    pub expr: String,
}

/// How a table's rows are placed on shards (see [`crate::placement`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Distribution {
    /// By a hash of one column's value.
    Hash {
        /// The column's position.
        column: usize,
    },
    /// By ranges of one column's values: `splits` (ascending, distinct) start
    /// the second, third, ... range.
    Range {
        /// The column's position.
        column: usize,
        /// Where each range after the first starts.
        splits: Vec<Value>,
    },
}

/// A table's placement as CREATE TABLE declares it: columns by name.
#[derive(Debug, Clone, PartialEq)]
pub enum DistributionSpec {
    /// `DISTRIBUTE BY HASH (column)`.
    Hash(String),
    /// `DISTRIBUTE BY RANGE (column) SPLIT AT (value, ...)`.
    Range(String, Vec<Value>),
}

impl Distribution {
    /// The position of the column that places rows.
    #[must_use]
    pub fn column(&self) -> usize {
        match self {
            Self::Hash { column } | Self::Range { column, .. } => *column,
        }
    }
}

impl TableDef {
    /// Column types in order.
    #[must_use]
    pub fn types(&self) -> Vec<SqlType> {
        self.columns.iter().map(|c| c.ty).collect()
    }

    /// Types of the primary key columns.
    #[must_use]
    pub fn key_types(&self) -> Vec<SqlType> {
        self.primary_key
            .iter()
            .filter_map(|&i| self.columns.get(i).map(|c| c.ty))
            .collect()
    }

    /// How rows are placed on shards: as declared, else by a hash of the first
    /// primary key column, else of the first column. System tables are never
    /// placed (each node keeps its own).
    #[must_use]
    pub fn placement(&self) -> std::borrow::Cow<'_, Distribution> {
        match &self.distribution {
            Some(d) => std::borrow::Cow::Borrowed(d),
            None => std::borrow::Cow::Owned(Distribution::Hash {
                column: self.primary_key.first().copied().unwrap_or(0),
            }),
        }
    }

    /// Whether records are keyed by a hidden row number.
    #[must_use]
    pub fn is_keyless(&self) -> bool {
        self.primary_key.is_empty()
    }

    /// Position of a column by name.
    #[must_use]
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Whether this is a system table (SQL cannot name it).
    #[must_use]
    pub fn is_system(&self) -> bool {
        self.name.starts_with(SYSTEM_PREFIX)
    }

    /// The row layout of this table.
    ///
    /// # Errors
    /// Never for a validated definition.
    pub fn row_layout(&self) -> Result<RowLayout, TypeError> {
        RowLayout::new(&self.types())
    }
}

/// A domain: a named base type with NOT NULL, default and CHECK.
///
/// The CHECK is kept as SQL expression text (`VALUE > 0`); the sandbox host's write
/// path evaluates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainDef {
    /// Identity.
    pub id: DomainId,
    /// Name, unique among domains.
    pub name: String,
    /// Base type.
    pub base: SqlType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Default value.
    pub default: Option<Value>,
    /// CHECK expression text, over `VALUE`.
    pub check: Option<String>,
}

/// A view: a named query, expanded into each statement that names it and
/// bound there, so the rows it shows are those the running principal may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Identity.
    pub id: ViewId,
    /// Name, unique among tables and views.
    pub name: String,
    /// The column names given with it (empty: its query's own names).
    pub columns: Vec<String>,
    /// The query, as SQL text.
    pub query: String,
    /// The tables and views its query names (a view cannot be dropped while
    /// another names it, nor a table while a view names it).
    pub depends: Vec<String>,
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Identity.
    pub id: IndexId,
    /// Name, unique among indexes.
    pub name: String,
    /// Indexed table.
    pub table: TableId,
    /// Positions of the indexed columns.
    pub columns: Vec<usize>,
    /// Whether two current rows may not share a (non-NULL) key.
    pub unique: bool,
}

/// The version of a schema: a digest of everything in it. Equal versions mean equal
/// definitions (same ids, names, types, defaults, keys, indexes and domains).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaVersion(pub [u8; 32]);

impl SchemaVersion {
    /// 64 lowercase hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        crate::hex(&self.0)
    }
}

impl std::fmt::Debug for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema:{}", self.to_hex())
    }
}

impl std::fmt::Display for SchemaVersion {
    /// The first 16 hex digits, as logs and errors show a version.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One consistent set of tables, indexes and domains (the catalog as one
/// transaction sees it), with its version.
#[derive(Debug, Clone)]
pub struct Schema {
    tables: BTreeMap<TableId, Arc<TableDef>>,
    table_names: HashMap<String, TableId>,
    indexes: BTreeMap<IndexId, Arc<IndexDef>>,
    index_names: HashMap<String, IndexId>,
    domains: BTreeMap<DomainId, Arc<DomainDef>>,
    domain_names: HashMap<String, DomainId>,
    views: BTreeMap<ViewId, Arc<ViewDef>>,
    view_names: HashMap<String, ViewId>,
    version: SchemaVersion,
}

impl Default for Schema {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), Vec::new())
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl Eq for Schema {}

impl Schema {
    /// A schema of these definitions. A later definition with the id or the name of
    /// an earlier one of its kind replaces it (the caller validates uniqueness).
    #[must_use]
    pub fn new(tables: Vec<TableDef>, indexes: Vec<IndexDef>, domains: Vec<DomainDef>) -> Self {
        let mut s = Self {
            tables: BTreeMap::new(),
            table_names: HashMap::new(),
            indexes: BTreeMap::new(),
            index_names: HashMap::new(),
            domains: BTreeMap::new(),
            domain_names: HashMap::new(),
            views: BTreeMap::new(),
            view_names: HashMap::new(),
            version: SchemaVersion([0; 32]),
        };
        for t in tables {
            s.table_names.insert(t.name.clone(), t.id);
            s.tables.insert(t.id, Arc::new(t));
        }
        for i in indexes {
            s.index_names.insert(i.name.clone(), i.id);
            s.indexes.insert(i.id, Arc::new(i));
        }
        for d in domains {
            s.domain_names.insert(d.name.clone(), d.id);
            s.domains.insert(d.id, Arc::new(d));
        }
        s.version = s.digest();
        s
    }

    /// This schema with `views` added (a later one with the id or name of an
    /// earlier one replaces it).
    #[must_use]
    pub fn with_views(mut self, views: Vec<ViewDef>) -> Self {
        for v in views {
            self.view_names.insert(v.name.clone(), v.id);
            self.views.insert(v.id, Arc::new(v));
        }
        self.version = self.digest();
        self
    }

    /// A view by id.
    #[must_use]
    pub fn view(&self, id: ViewId) -> Option<&Arc<ViewDef>> {
        self.views.get(&id)
    }

    /// A view by name.
    #[must_use]
    pub fn view_by_name(&self, name: &str) -> Option<&Arc<ViewDef>> {
        self.view_names.get(name).and_then(|id| self.views.get(id))
    }

    /// All views, by id.
    pub fn views(&self) -> impl Iterator<Item = &Arc<ViewDef>> {
        self.views.values()
    }

    /// The views whose query names `name` (a table or a view).
    pub fn views_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<ViewDef>> {
        self.views
            .values()
            .filter(move |v| v.depends.iter().any(|d| d == name))
    }

    /// The version: equal for equal content.
    #[must_use]
    pub fn version(&self) -> SchemaVersion {
        self.version
    }

    /// A table by id.
    #[must_use]
    pub fn table(&self, id: TableId) -> Option<&Arc<TableDef>> {
        self.tables.get(&id)
    }

    /// A table by name.
    #[must_use]
    pub fn table_by_name(&self, name: &str) -> Option<&Arc<TableDef>> {
        self.table_names
            .get(name)
            .and_then(|id| self.tables.get(id))
    }

    /// All tables, by id.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableDef>> {
        self.tables.values()
    }

    /// An index by id.
    #[must_use]
    pub fn index(&self, id: IndexId) -> Option<&Arc<IndexDef>> {
        self.indexes.get(&id)
    }

    /// An index by name.
    #[must_use]
    pub fn index_by_name(&self, name: &str) -> Option<&Arc<IndexDef>> {
        self.index_names
            .get(name)
            .and_then(|id| self.indexes.get(id))
    }

    /// The indexes of a table.
    pub fn indexes_of(&self, table: TableId) -> impl Iterator<Item = &Arc<IndexDef>> {
        self.indexes.values().filter(move |i| i.table == table)
    }

    /// A domain by id.
    #[must_use]
    pub fn domain(&self, id: DomainId) -> Option<&Arc<DomainDef>> {
        self.domains.get(&id)
    }

    /// A domain by name.
    #[must_use]
    pub fn domain_by_name(&self, name: &str) -> Option<&Arc<DomainDef>> {
        self.domain_names
            .get(name)
            .and_then(|id| self.domains.get(id))
    }

    /// All domains, by id.
    pub fn domains(&self) -> impl Iterator<Item = &Arc<DomainDef>> {
        self.domains.values()
    }

    /// The digest of every definition in id order, each field length-prefixed so
    /// no two schemas share an encoding.
    fn digest(&self) -> SchemaVersion {
        let mut h = Feed(blake3::Hasher::new());
        h.bytes(b"scratchbird schema v1");
        h.count(self.tables.len());
        for t in self.tables.values() {
            h.bytes(t.id.as_bytes());
            h.bytes(t.name.as_bytes());
            h.count(t.columns.len());
            for c in &t.columns {
                h.bytes(c.id.as_bytes());
                h.bytes(c.name.as_bytes());
                h.ty(c.ty);
                h.flag(c.nullable);
                h.value(c.ty, c.default.as_ref());
                h.bytes(c.domain.as_ref().map_or(&[][..], |d| d.as_bytes()));
                match &c.check {
                    None => h.flag(false),
                    Some(k) => {
                        h.flag(true);
                        h.bytes(k.domain.as_bytes());
                        h.bytes(k.expr.as_bytes());
                    }
                }
                // none adds nothing: schemas from before keep their version
                if let Some(f) = c.default_fn {
                    h.bytes(f.sql().as_bytes());
                }
            }
            h.positions(&t.primary_key);
            // a declared placement is part of the version; the default adds
            // nothing, so schemas written before placements keep their version
            if let Some(d) = &t.distribution {
                match d {
                    Distribution::Hash { column } => {
                        h.bytes(b"hash");
                        h.count(*column);
                    }
                    Distribution::Range { column, splits } => {
                        h.bytes(b"range");
                        h.count(*column);
                        h.count(splits.len());
                        let ty = t.columns.get(*column).map_or(SqlType::Boolean, |c| c.ty);
                        for v in splits {
                            h.value(ty, Some(v));
                        }
                    }
                }
            }
            // likewise CHECKs: a table without any keeps its version
            if !t.checks.is_empty() {
                h.bytes(b"checks");
                h.count(t.checks.len());
                for k in &t.checks {
                    h.bytes(k.name.as_bytes());
                    h.bytes(k.expr.as_bytes());
                }
            }
        }
        h.count(self.indexes.len());
        for i in self.indexes.values() {
            h.bytes(i.id.as_bytes());
            h.bytes(i.name.as_bytes());
            h.bytes(i.table.as_bytes());
            h.positions(&i.columns);
            h.flag(i.unique);
        }
        h.count(self.domains.len());
        for d in self.domains.values() {
            h.bytes(d.id.as_bytes());
            h.bytes(d.name.as_bytes());
            h.ty(d.base);
            h.flag(d.nullable);
            h.value(d.base, d.default.as_ref());
            h.bytes(d.check.as_deref().unwrap_or("").as_bytes());
            h.flag(d.check.is_some());
        }
        // views add nothing when there are none, so schemas written before
        // views keep their version
        if !self.views.is_empty() {
            h.bytes(b"views");
            h.count(self.views.len());
            for v in self.views.values() {
                h.bytes(v.id.as_bytes());
                h.bytes(v.name.as_bytes());
                h.count(v.columns.len());
                for c in &v.columns {
                    h.bytes(c.as_bytes());
                }
                h.bytes(v.query.as_bytes());
                h.count(v.depends.len());
                for d in &v.depends {
                    h.bytes(d.as_bytes());
                }
            }
        }
        SchemaVersion(*h.0.finalize().as_bytes())
    }
}

/// Feeds fields into a digest, each with its length in front.
struct Feed(blake3::Hasher);

impl Feed {
    fn count(&mut self, n: usize) {
        self.0.update(&(n as u64).to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.update(b);
    }

    fn flag(&mut self, f: bool) {
        self.0.update(&[u8::from(f)]);
    }

    fn ty(&mut self, ty: SqlType) {
        self.bytes(ty.to_string().as_bytes());
    }

    fn positions(&mut self, p: &[usize]) {
        self.count(p.len());
        for &i in p {
            self.count(i);
        }
    }

    /// A default value in the key encoding of its type (canonical: one encoding
    /// per value). A value that is not of the type (never in a validated
    /// definition) is fed by its display text, marked as such.
    fn value(&mut self, ty: SqlType, v: Option<&Value>) {
        let Some(v) = v else {
            self.flag(false);
            return;
        };
        self.flag(true);
        let mut out = Vec::new();
        if encode_key_value(&ty, v, &mut out).is_ok() {
            self.flag(true);
            self.bytes(&out);
        } else {
            self.flag(false);
            self.bytes(v.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, ty: SqlType) -> TableDef {
        TableDef {
            distribution: None,
            checks: Vec::new(),
            revision: None,
            id: TableId::from_bytes([7; 16]),
            name: name.to_owned(),
            columns: vec![ColumnDef {
                id: ColumnId::from_bytes([8; 16]),
                name: "a".into(),
                ty,
                nullable: true,
                default: None,
                domain: None,
                check: None,
                default_fn: None,
            }],
            primary_key: vec![0],
        }
    }

    #[test]
    fn the_version_follows_the_content() {
        let a = Schema::new(vec![table("t", SqlType::Integer)], vec![], vec![]);
        let same = Schema::new(vec![table("t", SqlType::Integer)], vec![], vec![]);
        assert_eq!(a.version(), same.version());
        let renamed = Schema::new(vec![table("u", SqlType::Integer)], vec![], vec![]);
        let retyped = Schema::new(vec![table("t", SqlType::BigInt)], vec![], vec![]);
        let mut defaulted = table("t", SqlType::Integer);
        defaulted.columns[0].default = Some(Value::Integer(1));
        let defaulted = Schema::new(vec![defaulted], vec![], vec![]);
        let mut keyless = table("t", SqlType::Integer);
        keyless.primary_key.clear();
        let keyless = Schema::new(vec![keyless], vec![], vec![]);
        let versions = [
            a.version(),
            renamed.version(),
            retyped.version(),
            defaulted.version(),
            keyless.version(),
            Schema::default().version(),
        ];
        for (i, x) in versions.iter().enumerate() {
            for y in &versions[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn lookups_by_id_and_name_agree() {
        let t = table("t", SqlType::Integer);
        let id = t.id;
        let s = Schema::new(vec![t], vec![], vec![]);
        assert_eq!(s.table(id).map(|t| t.name.as_str()), Some("t"));
        assert_eq!(s.table_by_name("t").map(|t| t.id), Some(id));
        assert!(s.table_by_name("T").is_none());
        assert!(!s.table(id).is_some_and(|t| t.is_system()));
    }
}
