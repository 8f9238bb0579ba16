//! The catalog views SQL reads to find its way around: `information_schema`'s
//! `schemata`, `tables`, `columns`, `views`, `table_constraints`,
//! `key_column_usage` and `domains`, and `pg_catalog`'s `pg_tables`,
//! `pg_namespace`, `pg_class`, `pg_attribute`, `pg_type`, `pg_index` and
//! `pg_constraint` (the columns of them drivers and tools read first). Each has
//! fixed ids and columns here and holds no rows: the shard's host makes a
//! view's rows from its catalog when a scan of it opens, keeping only what the
//! principal may see (tables it holds a grant on, columns it may read), so the
//! compiler and the coordinator never decide what a listing shows.

use crate::ids::{ColumnId, TableId};
use crate::schema::{ColumnDef, TableDef};
use crate::sqltype::SqlType;
use std::sync::{Arc, OnceLock};

/// One catalog view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `information_schema.schemata`.
    Schemata,
    /// `information_schema.tables`.
    Tables,
    /// `information_schema.columns`.
    Columns,
    /// `information_schema.views`.
    Views,
    /// `information_schema.table_constraints`.
    TableConstraints,
    /// `information_schema.key_column_usage`.
    KeyColumnUsage,
    /// `information_schema.domains`.
    Domains,
    /// `pg_catalog.pg_tables`.
    PgTables,
    /// `pg_catalog.pg_namespace`.
    PgNamespace,
    /// `pg_catalog.pg_class`: tables, views and indexes.
    PgClass,
    /// `pg_catalog.pg_attribute`: the columns of tables.
    PgAttribute,
    /// `pg_catalog.pg_type`: the built-in types and the domains.
    PgType,
    /// `pg_catalog.pg_index`: the primary keys and indexes.
    PgIndex,
    /// `pg_catalog.pg_constraint`: primary keys, UNIQUE and CHECK constraints.
    PgConstraint,
}

/// The oid `pg_namespace` gives schema `pg_catalog` (PostgreSQL's).
pub const PG_CATALOG_OID: i64 = 11;
/// The oid of schema `public` (PostgreSQL's).
pub const PUBLIC_OID: i64 = 2200;
/// The oid of schema `information_schema`.
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;

/// The oid a table, view, index or domain shows in `pg_catalog`: its id's
/// first four bytes, above PostgreSQL's built-in oids (2^30 and up). Stable
/// for the object's life; two objects may share one (one chance in about a
/// billion per pair).
#[must_use]
pub fn oid_of(id: &[u8; 16]) -> i64 {
    let n = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    i64::from((n & 0x3FFF_FFFF) | 0x4000_0000)
}

/// PostgreSQL's oid, name and length (-1: variable) of the type `ty` is
/// stored as, and its type modifier (-1: none).
#[must_use]
pub fn pg_type(ty: SqlType) -> (i64, &'static str, i32, i32) {
    match ty {
        SqlType::Boolean => (16, "bool", 1, -1),
        SqlType::SmallInt => (21, "int2", 2, -1),
        SqlType::Integer => (23, "int4", 4, -1),
        SqlType::BigInt => (20, "int8", 8, -1),
        SqlType::Double => (701, "float8", 8, -1),
        SqlType::Decimal { precision, scale } => (
            1700,
            "numeric",
            -1,
            ((i32::from(precision) << 16) | i32::from(scale)) + 4,
        ),
        SqlType::Varchar { max_chars } => (
            1043,
            "varchar",
            -1,
            i32::try_from(max_chars).map_or(-1, |n| n.saturating_add(4)),
        ),
        SqlType::Text => (25, "text", -1, -1),
        SqlType::Date => (1082, "date", 4, -1),
        SqlType::Timestamp => (1114, "timestamp", 8, -1),
        SqlType::Blob => (17, "bytea", -1, -1),
    }
}

/// Every built-in type `pg_type` lists.
pub const PG_BUILTIN_TYPES: [SqlType; 11] = [
    SqlType::Boolean,
    SqlType::SmallInt,
    SqlType::Integer,
    SqlType::BigInt,
    SqlType::Double,
    SqlType::Decimal {
        precision: 38,
        scale: 0,
    },
    SqlType::Varchar { max_chars: 1 },
    SqlType::Text,
    SqlType::Date,
    SqlType::Timestamp,
    SqlType::Blob,
];

/// The catalog name the views show (PostgreSQL's database name).
pub const CATALOG_NAME: &str = "scratchbird";

/// The schema user tables are in.
pub const USER_SCHEMA: &str = "public";

const T: SqlType = SqlType::Text;
const I: SqlType = SqlType::Integer;
const B: SqlType = SqlType::Boolean;
/// PostgreSQL's `oid`, an unsigned 32-bit number.
const O: SqlType = SqlType::BigInt;

impl View {
    /// Every view, in a fixed order (its position is in its ids).
    pub const ALL: [Self; 14] = [
        Self::Schemata,
        Self::Tables,
        Self::Columns,
        Self::Views,
        Self::TableConstraints,
        Self::KeyColumnUsage,
        Self::Domains,
        Self::PgTables,
        Self::PgNamespace,
        Self::PgClass,
        Self::PgAttribute,
        Self::PgType,
        Self::PgIndex,
        Self::PgConstraint,
    ];

    /// Its schema.
    #[must_use]
    pub fn schema(self) -> &'static str {
        match self {
            Self::PgTables
            | Self::PgNamespace
            | Self::PgClass
            | Self::PgAttribute
            | Self::PgType
            | Self::PgIndex
            | Self::PgConstraint => "pg_catalog",
            _ => "information_schema",
        }
    }

    /// Its name in its schema.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Schemata => "schemata",
            Self::Tables => "tables",
            Self::Columns => "columns",
            Self::Views => "views",
            Self::TableConstraints => "table_constraints",
            Self::KeyColumnUsage => "key_column_usage",
            Self::Domains => "domains",
            Self::PgTables => "pg_tables",
            Self::PgNamespace => "pg_namespace",
            Self::PgClass => "pg_class",
            Self::PgAttribute => "pg_attribute",
            Self::PgType => "pg_type",
            Self::PgIndex => "pg_index",
            Self::PgConstraint => "pg_constraint",
        }
    }

    /// Its columns, in order.
    #[must_use]
    pub fn columns(self) -> &'static [(&'static str, SqlType)] {
        match self {
            Self::Schemata => &[("catalog_name", T), ("schema_name", T), ("schema_owner", T)],
            Self::Tables => &[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("table_type", T),
                ("is_insertable_into", T),
            ],
            Self::Columns => &[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("column_name", T),
                ("ordinal_position", I),
                ("column_default", T),
                ("is_nullable", T),
                ("data_type", T),
                ("character_maximum_length", I),
                ("numeric_precision", I),
                ("numeric_scale", I),
                ("domain_name", T),
                ("is_identity", T),
                ("identity_generation", T),
                ("identity_start", T),
                ("identity_increment", T),
                ("identity_maximum", T),
                ("identity_minimum", T),
                ("identity_cycle", T),
            ],
            Self::Views => &[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("view_definition", T),
            ],
            Self::TableConstraints => &[
                ("constraint_catalog", T),
                ("constraint_schema", T),
                ("constraint_name", T),
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("constraint_type", T),
            ],
            Self::KeyColumnUsage => &[
                ("constraint_catalog", T),
                ("constraint_schema", T),
                ("constraint_name", T),
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("column_name", T),
                ("ordinal_position", I),
            ],
            Self::Domains => &[
                ("domain_catalog", T),
                ("domain_schema", T),
                ("domain_name", T),
                ("data_type", T),
                ("character_maximum_length", I),
                ("numeric_precision", I),
                ("numeric_scale", I),
                ("domain_default", T),
            ],
            Self::PgTables => &[
                ("schemaname", T),
                ("tablename", T),
                ("tableowner", T),
                ("hasindexes", SqlType::Boolean),
            ],
            Self::PgNamespace => &[("oid", O), ("nspname", T), ("nspowner", O)],
            Self::PgClass => &[
                ("oid", O),
                ("relname", T),
                ("relnamespace", O),
                ("relkind", T),
                ("relnatts", I),
                ("relhasindex", B),
                ("relowner", O),
            ],
            Self::PgAttribute => &[
                ("attrelid", O),
                ("attname", T),
                ("atttypid", O),
                ("attlen", I),
                ("attnum", I),
                ("atttypmod", I),
                ("attnotnull", B),
                ("atthasdef", B),
                ("attisdropped", B),
                ("attidentity", T),
            ],
            Self::PgType => &[
                ("oid", O),
                ("typname", T),
                ("typnamespace", O),
                ("typlen", I),
                ("typtype", T),
                ("typbasetype", O),
                ("typnotnull", B),
            ],
            // `indkey` is PostgreSQL's int2vector as it prints: the
            // columns' numbers, space separated
            Self::PgIndex => &[
                ("indexrelid", O),
                ("indrelid", O),
                ("indnatts", I),
                ("indisunique", B),
                ("indisprimary", B),
                ("indkey", T),
            ],
            // `conkey` is PostgreSQL's int2[] as it prints: `{1,2}`
            Self::PgConstraint => &[
                ("oid", O),
                ("conname", T),
                ("connamespace", O),
                ("contype", T),
                ("conrelid", O),
                ("conindid", O),
                ("conkey", T),
            ],
        }
    }

    fn position(self) -> u8 {
        Self::ALL
            .iter()
            .position(|v| *v == self)
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(u8::MAX)
    }

    /// Its table id: no table storage makes has it (storage's ids are
    /// random, version 4 UUIDs; these have version 0).
    #[must_use]
    pub fn id(self) -> TableId {
        let mut b = [0u8; 16];
        b[0] = 0x5b;
        b[1] = 0x1f;
        b[15] = self.position();
        TableId::from_bytes(b)
    }

    /// The view whose table id is `id`.
    #[must_use]
    pub fn by_id(id: TableId) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.id() == id)
    }

    /// The view `schema.name` (both as the catalog spells them).
    #[must_use]
    pub fn named(schema: &str, name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.schema() == schema && v.name() == name)
    }

    /// Its definition as a table, for the compiler to scan.
    #[must_use]
    pub fn def(self) -> Arc<TableDef> {
        static DEFS: OnceLock<Vec<Arc<TableDef>>> = OnceLock::new();
        let defs = DEFS.get_or_init(|| Self::ALL.iter().map(|v| Arc::new(v.make())).collect());
        defs.get(usize::from(self.position()))
            .cloned()
            .unwrap_or_else(|| Arc::new(self.make()))
    }

    fn make(self) -> TableDef {
        let table = self.id();
        let columns = self
            .columns()
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                let mut b = *table.as_bytes();
                b[14] = u8::try_from(i + 1).unwrap_or(u8::MAX);
                ColumnDef {
                    id: ColumnId::from_bytes(b),
                    name: (*name).to_owned(),
                    ty: *ty,
                    nullable: true,
                    default: None,
                    domain: None,
                    check: None,
                    default_fn: None,
                    seq: None,
                }
            })
            .collect();
        TableDef {
            id: table,
            name: format!("{}.{}", self.schema(), self.name()),
            columns,
            primary_key: Vec::new(),
            distribution: None,
            checks: Vec::new(),
            revision: None,
        }
    }
}

/// PostgreSQL's description of type `ty`: the `data_type` information_schema
/// shows, and its character length, numeric precision and scale.
#[must_use]
pub fn describe(ty: SqlType) -> (&'static str, Option<i32>, Option<i32>, Option<i32>) {
    match ty {
        SqlType::Boolean => ("boolean", None, None, None),
        SqlType::SmallInt => ("smallint", None, Some(16), Some(0)),
        SqlType::Integer => ("integer", None, Some(32), Some(0)),
        SqlType::BigInt => ("bigint", None, Some(64), Some(0)),
        SqlType::Double => ("double precision", None, Some(53), None),
        SqlType::Decimal { precision, scale } => (
            "numeric",
            None,
            Some(i32::from(precision)),
            Some(i32::from(scale)),
        ),
        SqlType::Varchar { max_chars } => (
            "character varying",
            i32::try_from(max_chars).ok(),
            None,
            None,
        ),
        SqlType::Text => ("text", None, None, None),
        SqlType::Date => ("date", None, None, None),
        SqlType::Timestamp => ("timestamp without time zone", None, None, None),
        SqlType::Blob => ("bytea", None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_view_is_found_by_its_name_and_its_id_and_has_distinct_column_ids() {
        for v in View::ALL {
            assert_eq!(View::named(v.schema(), v.name()), Some(v));
            assert_eq!(View::by_id(v.id()), Some(v));
            let d = v.def();
            assert_eq!(d.id, v.id());
            let mut ids: Vec<_> = d.columns.iter().map(|c| c.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), v.columns().len(), "{v:?}");
        }
        assert_eq!(View::named("public", "tables"), None);
    }
}
