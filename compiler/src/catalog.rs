//! What the compiler knows of the database: tables, columns, indexes and domains as
//! of the catalog snapshot it compiles against. Whoever calls the compiler builds
//! this from the real catalog (the compiler does not depend on storage).

use scratchbird_types::{ColumnId, IndexId, SqlType, TableId, Value};
use std::sync::Arc;

/// A column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    /// Identity.
    pub id: ColumnId,
    /// Name.
    pub name: String,
    /// Type (a domain column has its domain's base type).
    pub ty: SqlType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The default of an insert that does not give a value.
    pub default: Option<Value>,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Identity.
    pub id: TableId,
    /// Name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Positions of the primary key columns.
    pub primary_key: Vec<usize>,
}

/// An index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Identity.
    pub id: IndexId,
    /// Name.
    pub name: String,
    /// The table.
    pub table: TableId,
    /// Column positions, in key order.
    pub columns: Vec<usize>,
    /// UNIQUE.
    pub unique: bool,
}

/// A domain.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainInfo {
    /// Name.
    pub name: String,
    /// Base type.
    pub base: SqlType,
}

/// The catalog snapshot a statement is compiled against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Tables.
    pub tables: Vec<Arc<TableInfo>>,
    /// Indexes.
    pub indexes: Vec<IndexInfo>,
    /// Domains.
    pub domains: Vec<DomainInfo>,
}

impl Catalog {
    /// A table by name (names are case-insensitive unless quoted; the binder
    /// normalises unquoted names to lower case before asking).
    #[must_use]
    pub fn table(&self, name: &str) -> Option<&Arc<TableInfo>> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// A domain by name.
    #[must_use]
    pub fn domain(&self, name: &str) -> Option<&DomainInfo> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// The indexes of a table.
    pub fn indexes_of(&self, table: TableId) -> impl Iterator<Item = &IndexInfo> {
        self.indexes.iter().filter(move |i| i.table == table)
    }
}
