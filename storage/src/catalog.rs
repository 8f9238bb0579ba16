//! The catalog: tables, columns, domains, indexes and views.
//!
//! Every object has a UUID; names resolve to UUIDs. The catalog is stored as rows of
//! the system table `SB$OBJECTS`, so catalog changes are transactional exactly like
//! data: a transaction sees its own DDL, others see it when it commits, concurrent
//! creations of one name collide on a unique index, and time travel sees the catalog
//! of its snapshot. Definitions are immutable once created (there is no ALTER yet).
//! The definitions themselves are the shared vocabulary of `types::schema`; this
//! module stores, validates and resolves them.
//!
//! Names are compared exactly; the SQL layer normalises case before they get here.

use crate::error::{Result, StorageError};
use crate::limits::{
    CHECK_TEXT_MAX_BYTES, IDENTIFIER_MAX_BYTES, KEY_COLUMNS_MAX, TABLE_COLUMNS_MAX,
    VIEW_TEXT_MAX_BYTES,
};
use scratchbird_types::{ColumnId, DomainId, IndexId, SqlType, TableId, Value};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Fixed ids of the system objects are built from constants.
const fn fixed_id(v: u128) -> [u8; 16] {
    v.to_be_bytes()
}

use scratchbird_types::placement;
pub use scratchbird_types::schema::{
    ColumnCheck, ColumnDef, DefaultFn, Distribution, DistributionSpec, DomainDef, IndexDef, Schema,
    SchemaVersion, SeqOptions, TableCheck, TableDef, ViewDef,
};

/// The catalog as one transaction sees it: the shared [`Schema`].
pub type Catalog = Schema;

/// The type of a new column: a SQL type or a domain by name.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnType {
    /// A SQL type.
    Sql(SqlType),
    /// A domain, by name.
    Domain(String),
}

/// A column of a table to create.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: ColumnType,
    /// NOT NULL.
    pub not_null: bool,
    /// DEFAULT.
    pub default: Option<Value>,
    /// A DEFAULT that is the statement's time (in place of `default`): a
    /// TIMESTAMP or DATE column's.
    pub default_fn: Option<DefaultFn>,
    /// A SERIAL or identity column's sequence options (`None`: from 1 by 1).
    pub seq: Option<SeqOptions>,
}

impl ColumnSpec {
    /// A nullable column of a SQL type without default.
    #[must_use]
    pub fn new(name: &str, ty: SqlType) -> Self {
        Self {
            name: name.to_owned(),
            ty: ColumnType::Sql(ty),
            not_null: false,
            default: None,
            default_fn: None,
            seq: None,
        }
    }

    /// A column of a domain.
    #[must_use]
    pub fn of_domain(name: &str, domain: &str) -> Self {
        Self {
            name: name.to_owned(),
            ty: ColumnType::Domain(domain.to_owned()),
            not_null: false,
            default: None,
            default_fn: None,
            seq: None,
        }
    }

    /// Marks the column NOT NULL.
    #[must_use]
    pub fn not_null(mut self) -> Self {
        self.not_null = true;
        self
    }

    /// Sets the default.
    #[must_use]
    pub fn default_value(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }
}

/// A table to create.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// Name.
    pub name: String,
    /// Columns.
    pub columns: Vec<ColumnSpec>,
    /// Names of the primary key columns (empty: no primary key).
    pub primary_key: Vec<String>,
    /// How its rows are placed on shards (`None`: the default,
    /// [`TableDef::placement`]).
    pub distribution: Option<DistributionSpec>,
}

/// A domain to create.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainSpec {
    /// Name.
    pub name: String,
    /// Base type.
    pub base: SqlType,
    /// NOT NULL.
    pub not_null: bool,
    /// DEFAULT.
    pub default: Option<Value>,
    /// CHECK expression text.
    pub check: Option<String>,
}

/// A view to create. The SQL layer has bound its query (so it names objects
/// that exist) and lists what it names in `depends`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSpec {
    /// Name.
    pub name: String,
    /// Column names given with it (empty: the query's own).
    pub columns: Vec<String>,
    /// The query, as SQL text.
    pub query: String,
    /// The tables and views the query names.
    pub depends: Vec<String>,
}

/// An index to create.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    /// Name.
    pub name: String,
    /// Table name.
    pub table: String,
    /// Column names.
    pub columns: Vec<String>,
    /// UNIQUE.
    pub unique: bool,
    /// Made by CREATE INDEX rather than by a UNIQUE constraint
    /// ([`IndexDef::plain`]).
    pub plain: bool,
}

/// A change ALTER TABLE makes to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum TableChange {
    /// ADD COLUMN, last: the rows the table holds take its default (NULL
    /// without one). The table is rewritten.
    AddColumn(ColumnSpec),
    /// DROP COLUMN, with the indexes and CHECK constraints that name it. The
    /// table is rewritten.
    DropColumn(String),
    /// RENAME TO: the table keeps its id, rows, indexes and constraints
    /// under a new name (refused while a view names it).
    RenameTable {
        /// The new name.
        to: String,
    },
    /// RENAME COLUMN; the CHECK constraints that name it are rewritten.
    RenameColumn {
        /// The column's name.
        from: String,
        /// Its new name.
        to: String,
    },
    /// ALTER COLUMN SET DEFAULT (`Some`) or DROP DEFAULT (`None`); the rows
    /// the table holds keep their values.
    SetDefault {
        /// The column.
        column: String,
        /// The default.
        default: Option<Value>,
        /// A default of the statement's time, in place of `default`.
        default_fn: Option<DefaultFn>,
    },
    /// ALTER COLUMN SET NOT NULL (`true`, checked against every row the table
    /// holds) or DROP NOT NULL.
    SetNotNull {
        /// The column.
        column: String,
        /// NOT NULL.
        not_null: bool,
    },
    /// ADD [CONSTRAINT name] CHECK (expr), checked against every row the
    /// table holds. Unnamed, it is named as PostgreSQL names it:
    /// `table_column_check` when it reads one column, else `table_check`
    /// (and a number after a name taken).
    AddCheck {
        /// The constraint's name.
        name: Option<String>,
        /// The expression, over the table's columns by name.
        expr: String,
    },
    /// DROP CONSTRAINT of a CHECK constraint.
    DropCheck(String),
}

/// What is stored in the definition column of `SB$OBJECTS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ObjectDef {
    Table(TableDef),
    Index(IndexDef),
    Domain(DomainDef),
    View(ViewDef),
}

impl ObjectDef {
    pub(crate) fn kind_code(&self) -> i16 {
        match self {
            // tables and views share one namespace (as relations do in SQL):
            // the unique index on (KIND, NAME) refuses a view named as a
            // table, even when two transactions create them at once
            Self::Table(_) | Self::View(_) => KIND_TABLE,
            Self::Index(_) => KIND_INDEX,
            Self::Domain(_) => KIND_DOMAIN,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Table(t) => &t.name,
            Self::Index(i) => &i.name,
            Self::Domain(d) => &d.name,
            Self::View(v) => &v.name,
        }
    }

    pub(crate) fn id_bytes(&self) -> [u8; 16] {
        match self {
            Self::Table(t) => *t.id.as_bytes(),
            Self::Index(i) => *i.id.as_bytes(),
            Self::Domain(d) => *d.id.as_bytes(),
            Self::View(v) => *v.id.as_bytes(),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out)
            .map_err(|_| StorageError::Internal("catalog definition could not be encoded"))?;
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        ciborium::from_reader(bytes).map_err(|e| StorageError::Corruption {
            what: "catalog definition",
            location: "SB$OBJECTS".into(),
            reason: e.to_string(),
        })
    }

    /// The row of `SB$OBJECTS` that stores this definition.
    pub(crate) fn to_row(&self) -> Result<Vec<Value>> {
        Ok(vec![
            Value::Blob(self.id_bytes().to_vec()),
            Value::SmallInt(self.kind_code()),
            Value::Text(self.name().to_owned()),
            Value::Blob(self.encode()?),
        ])
    }

    pub(crate) fn from_row(values: &[Value]) -> Result<Self> {
        match values.get(3) {
            Some(Value::Blob(b)) => Self::decode(b),
            _ => Err(StorageError::Corruption {
                what: "catalog row",
                location: "SB$OBJECTS".into(),
                reason: "definition column is not a BLOB".into(),
            }),
        }
    }
}

pub(crate) const KIND_TABLE: i16 = 1;
pub(crate) const KIND_INDEX: i16 = 2;
pub(crate) const KIND_DOMAIN: i16 = 3;

/// Name of the system table that holds the catalog.
pub const SYSTEM_TABLE_NAME: &str = "SB$OBJECTS";

/// The fixed id of `SB$OBJECTS`.
#[must_use]
pub fn system_table_id() -> TableId {
    TableId::from_bytes(fixed_id(0x5342_244f_424a_4543_5453_0000_0000_0001))
}

fn system_index_id() -> IndexId {
    IndexId::from_bytes(fixed_id(0x5342_244f_424a_4543_5453_0000_0000_0002))
}

/// The definition of `SB$OBJECTS` (ID BLOB PK, KIND SMALLINT, NAME TEXT, DEFINITION BLOB).
pub(crate) fn system_table_def() -> TableDef {
    let col = |n: u128, name: &str, ty: SqlType| ColumnDef {
        id: ColumnId::from_bytes(fixed_id(0x5342_244f_424a_4543_5453_0000_0001_0000 + n)),
        name: name.to_owned(),
        ty,
        nullable: false,
        default: None,
        domain: None,
        check: None,
        default_fn: None,
        seq: None,
    };
    TableDef {
        distribution: None,
        checks: Vec::new(),
        revision: None,
        id: system_table_id(),
        name: SYSTEM_TABLE_NAME.to_owned(),
        columns: vec![
            col(0, "ID", SqlType::Blob),
            col(1, "KIND", SqlType::SmallInt),
            col(2, "NAME", SqlType::Text),
            col(3, "DEFINITION", SqlType::Blob),
        ],
        primary_key: vec![0],
    }
}

/// The unique index of `SB$OBJECTS` on (KIND, NAME).
pub(crate) fn system_index_def() -> IndexDef {
    IndexDef {
        id: system_index_id(),
        name: "SB$OBJECTS_KIND_NAME".to_owned(),
        table: system_table_id(),
        columns: vec![1, 2],
        unique: true,
        plain: false,
    }
}

/// Name resolution with the errors a user should see.
pub trait Resolve {
    /// Resolves a table name.
    ///
    /// # Errors
    /// [`StorageError::NotFound`].
    fn resolve_table(&self, name: &str) -> Result<&Arc<TableDef>>;

    /// Resolves an index name.
    ///
    /// # Errors
    /// [`StorageError::NotFound`].
    fn resolve_index(&self, name: &str) -> Result<&Arc<IndexDef>>;

    /// Resolves a domain name.
    ///
    /// # Errors
    /// [`StorageError::NotFound`].
    fn resolve_domain(&self, name: &str) -> Result<&Arc<DomainDef>>;
}

impl Resolve for Schema {
    fn resolve_table(&self, name: &str) -> Result<&Arc<TableDef>> {
        self.table_by_name(name)
            .ok_or_else(|| StorageError::NotFound {
                kind: "table",
                name: name.to_owned(),
            })
    }

    /// Resolves an index name, with the error a user should see.
    ///
    /// # Errors
    /// [`StorageError::NotFound`].
    fn resolve_index(&self, name: &str) -> Result<&Arc<IndexDef>> {
        self.index_by_name(name)
            .ok_or_else(|| StorageError::NotFound {
                kind: "index",
                name: name.to_owned(),
            })
    }

    fn resolve_domain(&self, name: &str) -> Result<&Arc<DomainDef>> {
        self.domain_by_name(name)
            .ok_or_else(|| StorageError::NotFound {
                kind: "domain",
                name: name.to_owned(),
            })
    }
}

pub(crate) fn check_identifier(kind: &str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a name must not be empty"
    } else if name.len() > IDENTIFIER_MAX_BYTES {
        "a name must be at most 128 bytes"
    } else if name.contains('\0') {
        "a name must not contain NUL"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidDefinition {
        object: format!("{kind} {name:?}"),
        reason,
    })
}

fn invalid(object: String, reason: &'static str) -> StorageError {
    StorageError::InvalidDefinition { object, reason }
}

/// Gives each column of a domain the domain's CHECK where its definition
/// does not carry it (tables created before columns carried it), so that
/// every definition of a table, whichever version of its catalog row it is
/// read from, checks what the domain checks.
pub(crate) fn carry_domain_checks(tables: &mut [TableDef], domains: &[DomainDef]) {
    for t in tables {
        for c in &mut t.columns {
            if c.check.is_none()
                && let Some(d) = c.domain.and_then(|d| domains.iter().find(|x| x.id == d))
            {
                c.check = d.check.clone().map(|expr| ColumnCheck {
                    domain: d.name.clone(),
                    expr,
                });
            }
        }
    }
}

/// A validated column of table `table`, with the id `id`.
pub(crate) fn build_column(
    table: &str,
    c: &ColumnSpec,
    catalog: &Catalog,
    id: ColumnId,
) -> Result<ColumnDef> {
    check_identifier("column", &c.name)?;
    let cobj = || format!("column {}.{}", table, c.name);
    let (ty, mut nullable, mut default, domain, check) = match &c.ty {
        ColumnType::Sql(ty) => (*ty, true, None, None, None),
        ColumnType::Domain(name) => {
            let d = catalog
                .domain_by_name(name)
                .ok_or_else(|| StorageError::NotFound {
                    kind: "domain",
                    name: name.clone(),
                })?;
            (
                d.base,
                d.nullable,
                d.default.clone(),
                Some(d.id),
                d.check.clone().map(|expr| ColumnCheck {
                    domain: d.name.clone(),
                    expr,
                }),
            )
        }
    };
    ty.validate().map_err(|source| StorageError::ColumnValue {
        table: table.to_owned(),
        column: c.name.clone(),
        source,
    })?;
    if c.not_null {
        nullable = false;
    }
    if let Some(v) = &c.default {
        default = Some(v.clone());
    }
    if c.default_fn.is_some_and(DefaultFn::is_identity) {
        if !matches!(ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt) {
            return Err(invalid(
                cobj(),
                "a SERIAL or identity column needs a SMALLINT, INTEGER or BIGINT type",
            ));
        }
        if domain.is_some() {
            return Err(invalid(
                cobj(),
                "a SERIAL or identity column cannot be of a domain",
            ));
        }
        if c.default.is_some() {
            return Err(invalid(
                cobj(),
                "a SERIAL or identity column cannot also have a DEFAULT",
            ));
        }
        if let Some(q) = &c.seq {
            // the type was checked above
            let (lo, hi) = SeqOptions::type_range(ty).unwrap_or((i64::MIN, i64::MAX));
            let why = if q.increment == 0 {
                Some("its INCREMENT is 0")
            } else if q.min >= q.max {
                Some("its MINVALUE is not less than its MAXVALUE")
            } else if q.min < lo || q.max > hi {
                Some("its MINVALUE or MAXVALUE is out of the column type's range")
            } else if q.start < q.min || q.start > q.max {
                Some("its START is outside MINVALUE..MAXVALUE")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(invalid(cobj(), why));
            }
        }
        nullable = false;
        default = None;
    } else if c.default_fn.is_some() {
        if !matches!(ty, SqlType::Timestamp | SqlType::Date) {
            return Err(invalid(
                cobj(),
                "a DEFAULT of the statement's time (now(), CURRENT_DATE) needs a TIMESTAMP or DATE column",
            ));
        }
        default = None;
    }
    if let Some(v) = &default {
        ty.check_value(v)
            .map_err(|source| StorageError::ColumnValue {
                table: table.to_owned(),
                column: c.name.clone(),
                source,
            })?;
        // the rows an ADD COLUMN fills take it: refused here, alike on every
        // node, rather than by some nodes' rows
        if let Some(k) = &check
            && crate::check::Check::parse_for(&k.expr, &ty).is_ok_and(|k| !k.admits(v))
        {
            return Err(invalid(
                cobj(),
                "the default is refused by the domain's CHECK",
            ));
        }
        if v.is_null() && !nullable {
            return Err(invalid(
                cobj(),
                "the default is NULL but the column is NOT NULL",
            ));
        }
    }
    Ok(ColumnDef {
        id,
        name: c.name.clone(),
        ty,
        nullable,
        default,
        domain,
        check,
        default_fn: c.default_fn,
        seq: c
            .seq
            .filter(|_| c.default_fn.is_some_and(DefaultFn::is_identity)),
    })
}

/// Builds a validated table definition. `new_id` supplies fresh column ids.
pub(crate) fn build_table(
    spec: &TableSpec,
    id: TableId,
    catalog: &Catalog,
    mut new_column_id: impl FnMut() -> ColumnId,
) -> Result<TableDef> {
    check_identifier("table", &spec.name)?;
    let obj = || format!("table {}", spec.name);
    if spec.columns.is_empty() {
        return Err(invalid(obj(), "a table needs at least one column"));
    }
    if spec.columns.len() > TABLE_COLUMNS_MAX {
        return Err(invalid(obj(), "a table has at most 1024 columns"));
    }
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        if columns.iter().any(|d| d.name == c.name) {
            return Err(invalid(
                format!("column {}.{}", spec.name, c.name),
                "two columns have this name",
            ));
        }
        columns.push(build_column(&spec.name, c, catalog, new_column_id())?);
    }
    if spec.primary_key.len() > KEY_COLUMNS_MAX {
        return Err(invalid(obj(), "a primary key has at most 16 columns"));
    }
    let mut primary_key = Vec::with_capacity(spec.primary_key.len());
    for name in &spec.primary_key {
        let i = columns
            .iter()
            .position(|c| &c.name == name)
            .ok_or_else(|| StorageError::NotFound {
                kind: "column",
                name: format!("{}.{name}", spec.name),
            })?;
        if primary_key.contains(&i) {
            return Err(invalid(obj(), "a primary key names a column twice"));
        }
        if let Some(c) = columns.get_mut(i) {
            // A primary key column is NOT NULL, as in SQL.
            c.nullable = false;
        }
        primary_key.push(i);
    }
    let distribution = match &spec.distribution {
        None => None,
        Some(d) => Some(build_distribution(&spec.name, d, &columns)?),
    };
    let def = TableDef {
        id,
        name: spec.name.clone(),
        columns,
        primary_key,
        distribution,
        checks: Vec::new(),
        revision: None,
    };
    def.row_layout()?;
    Ok(def)
}

/// A declared placement, checked: its column exists, range splits are of the
/// column's type, ascending and distinct, and at most
/// [`placement::SPLITS_MAX`].
fn build_distribution(
    table: &str,
    d: &DistributionSpec,
    columns: &[ColumnDef],
) -> Result<Distribution> {
    let (name, splits) = match d {
        DistributionSpec::Hash(c) => (c, None),
        DistributionSpec::Range(c, s) => (c, Some(s)),
    };
    let column = columns
        .iter()
        .position(|c| &c.name == name)
        .ok_or_else(|| StorageError::NotFound {
            kind: "column",
            name: format!("{table}.{name}"),
        })?;
    let Some(splits) = splits else {
        return Ok(Distribution::Hash { column });
    };
    let ty = columns[column].ty;
    let obj = || format!("table {table}");
    if !placement::ranges_suit(&ty) {
        return Err(invalid(
            obj(),
            "DISTRIBUTE BY RANGE takes a number, date, timestamp or text column",
        ));
    }
    if splits.len() > placement::SPLITS_MAX {
        return Err(invalid(
            obj(),
            "DISTRIBUTE BY RANGE takes at most 4095 split points",
        ));
    }
    let mut keys = Vec::with_capacity(splits.len());
    for v in splits {
        if v.is_null() {
            return Err(invalid(obj(), "a split point is NULL"));
        }
        let mut k = Vec::new();
        scratchbird_types::key::encode_key_value(&ty, v, &mut k).map_err(|source| {
            StorageError::ColumnValue {
                table: table.to_owned(),
                column: name.clone(),
                source,
            }
        })?;
        keys.push(k);
    }
    if !keys.windows(2).all(|w| w[0] < w[1]) {
        return Err(invalid(
            obj(),
            "split points must be ascending and distinct",
        ));
    }
    Ok(Distribution::Range {
        column,
        splits: splits.clone(),
    })
}

/// Builds a validated view definition.
pub(crate) fn build_view(spec: &ViewSpec, id: scratchbird_types::ViewId) -> Result<ViewDef> {
    check_identifier("view", &spec.name)?;
    for c in &spec.columns {
        check_identifier("column", c)?;
    }
    if spec.query.len() > VIEW_TEXT_MAX_BYTES {
        return Err(StorageError::InvalidDefinition {
            object: format!("view {}", spec.name),
            reason: "its query is longer than the limit on a view's text (64 KiB)",
        });
    }
    Ok(ViewDef {
        id,
        name: spec.name.clone(),
        columns: spec.columns.clone(),
        query: spec.query.clone(),
        depends: spec.depends.clone(),
    })
}

/// Builds a validated domain definition.
pub(crate) fn build_domain(spec: &DomainSpec, id: DomainId) -> Result<DomainDef> {
    check_identifier("domain", &spec.name)?;
    let obj = || format!("domain {}", spec.name);
    spec.base.validate()?;
    if let Some(v) = &spec.default {
        spec.base.check_value(v)?;
        if v.is_null() && spec.not_null {
            return Err(invalid(
                obj(),
                "the default is NULL but the domain is NOT NULL",
            ));
        }
    }
    if let Some(check) = &spec.check {
        if check.trim().is_empty() {
            return Err(invalid(obj(), "the CHECK expression is empty"));
        }
        if check.len() > CHECK_TEXT_MAX_BYTES {
            return Err(invalid(obj(), "the CHECK expression is longer than 16 KiB"));
        }
        let parsed = crate::check::Check::parse_for(check, &spec.base).map_err(|reason| {
            StorageError::CheckUnsupported {
                domain: spec.name.clone(),
                reason,
            }
        })?;
        if let Some(v) = &spec.default
            && !parsed.admits(v)
        {
            return Err(invalid(
                obj(),
                "the default is a value the domain's CHECK refuses",
            ));
        }
    }
    Ok(DomainDef {
        id,
        name: spec.name.clone(),
        base: spec.base,
        nullable: !spec.not_null,
        default: spec.default.clone(),
        check: spec.check.clone(),
    })
}

/// Builds a validated index definition.
pub(crate) fn build_index(spec: &IndexSpec, id: IndexId, table: &TableDef) -> Result<IndexDef> {
    check_identifier("index", &spec.name)?;
    let obj = || format!("index {}", spec.name);
    if spec.columns.is_empty() {
        return Err(invalid(obj(), "an index needs at least one column"));
    }
    if spec.columns.len() > KEY_COLUMNS_MAX {
        return Err(invalid(obj(), "an index has at most 16 columns"));
    }
    let mut columns = Vec::with_capacity(spec.columns.len());
    for name in &spec.columns {
        let i = table
            .column_index(name)
            .ok_or_else(|| StorageError::NotFound {
                kind: "column",
                name: format!("{}.{name}", table.name),
            })?;
        if columns.contains(&i) {
            return Err(invalid(obj(), "an index names a column twice"));
        }
        columns.push(i);
    }
    Ok(IndexDef {
        id,
        name: spec.name.clone(),
        table: table.id,
        columns,
        unique: spec.unique,
        plain: spec.plain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> ColumnId {
        let mut n = 0u8;
        move || {
            n += 1;
            ColumnId::from_bytes([n; 16])
        }
    }

    #[test]
    fn a_table_definition_round_trips_through_its_catalog_row() {
        let spec = TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![
                ColumnSpec::new("id", SqlType::BigInt),
                ColumnSpec::new("name", SqlType::Varchar { max_chars: 20 })
                    .default_value(Value::Text("x".into())),
            ],
            primary_key: vec!["id".into()],
        };
        let def = build_table(
            &spec,
            TableId::from_bytes([1; 16]),
            &Catalog::default(),
            ids(),
        )
        .unwrap();
        assert!(!def.columns[0].nullable, "primary key columns are NOT NULL");
        let obj = ObjectDef::Table(def);
        assert_eq!(ObjectDef::from_row(&obj.to_row().unwrap()).unwrap(), obj);
    }

    #[test]
    fn invalid_definitions_say_what_is_wrong() {
        let spec = TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![
                ColumnSpec::new("a", SqlType::Integer),
                ColumnSpec::new("a", SqlType::Integer),
            ],
            primary_key: vec![],
        };
        let err = build_table(
            &spec,
            TableId::from_bytes([1; 16]),
            &Catalog::default(),
            ids(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("two columns have this name"),
            "{err}"
        );
        let spec = TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![
                ColumnSpec::new("a", SqlType::Integer)
                    .not_null()
                    .default_value(Value::Null),
            ],
            primary_key: vec![],
        };
        assert!(
            build_table(
                &spec,
                TableId::from_bytes([1; 16]),
                &Catalog::default(),
                ids()
            )
            .is_err()
        );
        let spec = TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![ColumnSpec::new("a", SqlType::Integer)],
            primary_key: vec!["b".into()],
        };
        let err = build_table(
            &spec,
            TableId::from_bytes([1; 16]),
            &Catalog::default(),
            ids(),
        )
        .unwrap_err();
        assert!(matches!(err, StorageError::NotFound { kind: "column", .. }));
    }
}
