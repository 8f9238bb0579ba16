//! What the compiler knows of the database: the shared schema vocabulary of
//! `types::schema`, as of the catalog snapshot it compiles against. Whoever calls
//! the compiler hands it the schema storage keeps (the compiler does not depend on
//! storage); nothing is converted on the way.

use std::sync::Arc;

pub use scratchbird_types::schema::{
    ColumnDef, DomainDef, IndexDef, Schema, SchemaVersion, TableDef,
};

/// The schema a statement is compiled against.
pub type Catalog = Schema;

/// A table SQL may name: system tables are not visible to SQL (names are
/// case-insensitive unless quoted; the binder normalises unquoted names to lower
/// case before asking).
pub(crate) fn user_table<'a>(cat: &'a Catalog, name: &str) -> Option<&'a Arc<TableDef>> {
    cat.table_by_name(name).filter(|t| !t.is_system())
}

/// The tables SQL may name, by name, for hints.
pub(crate) fn user_table_names(cat: &Catalog) -> Vec<&str> {
    let mut names: Vec<&str> = cat
        .tables()
        .filter(|t| !t.is_system())
        .map(|t| t.name.as_str())
        .collect();
    names.sort_unstable();
    names
}
