//! A catalog description (tables, columns, types, domains) and the checks of a
//! bundle against it: every row type names a table that exists, every attribute a
//! column of a matching type (optional exactly where the column is nullable), every
//! `Table::`, `Column::` and `Domain::` a policy names exists, and every column's
//! domain is declared by the bundle with the same base type.
//!
//! The file is JSON:
//!
//! ```json
//! { "tables": [ { "name": "customers", "columns": [
//!     { "name": "id", "type": "BIGINT", "nullable": false },
//!     { "name": "email", "type": "VARCHAR(254)", "domain": "email" } ] } ] }
//! ```

use crate::bundle::{AttrKind, Bundle, SCHEMA_FILE};
use crate::derive::id_of_name;
use crate::error::{Diagnostic, PolicyError, Result};
use scratchbird_types::schema::{ColumnDef, DomainDef, Schema, TableDef};
use scratchbird_types::{ColumnId, DomainId, SqlType, TableId};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnJson {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default = "yes")]
    nullable: bool,
    #[serde(default)]
    domain: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableJson {
    name: String,
    columns: Vec<ColumnJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogJson {
    tables: Vec<TableJson>,
}

/// A catalog: the tables a bundle is checked against, as the shared schema
/// vocabulary (ids are made from names: the file has none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// The tables, and the domains their columns name (each with the type of the
    /// first column that names it).
    pub schema: Schema,
}

impl Catalog {
    /// Reads a catalog description file.
    ///
    /// # Errors
    /// I/O, or the file is not a catalog description (with line and column).
    pub fn read(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: file.clone(),
            source,
        })?;
        let raw: CatalogJson = serde_json::from_str(&text).map_err(|e| PolicyError::Invalid {
            diagnostics: vec![Diagnostic {
                file: file.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
                help: Some("a catalog is {\"tables\": [{\"name\": ..., \"columns\": [{\"name\": ..., \"type\": \"BIGINT\", \"nullable\": false, \"domain\": ...}]}]}".into()),
            }],
        })?;
        let mut diags = Vec::new();
        let mut tables = Vec::new();
        let mut domains: BTreeMap<String, DomainDef> = BTreeMap::new();
        for t in raw.tables {
            let mut columns = Vec::new();
            for c in t.columns {
                match SqlType::from_str(&c.ty) {
                    Ok(ty) => {
                        let domain = c.domain.map(|name| {
                            domains
                                .entry(name.clone())
                                .or_insert_with(|| DomainDef {
                                    id: DomainId::from_bytes(id_of_name("domain", &name)),
                                    name,
                                    base: ty,
                                    nullable: true,
                                    default: None,
                                    check: None,
                                })
                                .id
                        });
                        columns.push(ColumnDef {
                            id: ColumnId::from_bytes(id_of_name(
                                "column",
                                &format!("{}.{}", t.name, c.name),
                            )),
                            name: c.name,
                            ty,
                            nullable: c.nullable,
                            default: None,
                            domain,
                            check: None,
                            default_fn: None,
                            seq: None,
                        });
                    }
                    Err(e) => diags.push(Diagnostic::file(
                        &file,
                        format!("column {}.{}: {e}", t.name, c.name),
                        None,
                    )),
                }
            }
            tables.push(TableDef {
                distribution: None,
                checks: Vec::new(),
                revision: None,
                id: TableId::from_bytes(id_of_name("table", &t.name)),
                name: t.name,
                columns,
                primary_key: Vec::new(),
            });
        }
        if diags.is_empty() {
            Ok(Self {
                schema: Schema::new(tables, Vec::new(), domains.into_values().collect()),
            })
        } else {
            Err(PolicyError::Invalid { diagnostics: diags })
        }
    }

    /// A table by name.
    #[must_use]
    pub fn table(&self, name: &str) -> Option<&Arc<TableDef>> {
        self.schema.table_by_name(name)
    }
}

/// Whether a column of `ty` can back an attribute of `kind`.
fn compatible(kind: &AttrKind, ty: &SqlType) -> bool {
    match kind {
        AttrKind::Bool => *ty == SqlType::Boolean,
        AttrKind::Long => matches!(ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt),
        AttrKind::String => matches!(ty, SqlType::Varchar { .. } | SqlType::Text),
        // A Cedar decimal has four fractional digits and fits 64 bits.
        AttrKind::Decimal => {
            matches!(ty, SqlType::Decimal { precision, scale } if *scale <= 4 && precision - scale <= 14)
        }
        AttrKind::Other(_) => false,
    }
}

fn entity_literals(v: &Json, out: &mut Vec<(String, String)>) {
    match v {
        Json::Object(m) => {
            if let Some(Json::Object(e)) = m.get("__entity")
                && let (Some(Json::String(t)), Some(Json::String(i))) = (e.get("type"), e.get("id"))
            {
                out.push((t.clone(), i.clone()));
            }
            for x in m.values() {
                entity_literals(x, out);
            }
        }
        Json::Array(a) => a.iter().for_each(|x| entity_literals(x, out)),
        _ => {}
    }
}

/// Checks `bundle` against `catalog`; every problem found.
#[must_use]
pub fn check(bundle: &Bundle, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    for (table, row) in bundle.tables() {
        let at = format!("@table(\"{table}\")");
        let Some(t) = catalog.table(table) else {
            d.push(bundle.locate(
                SCHEMA_FILE,
                &at,
                format!(
                    "row type {} names table {table}, which the catalog does not have",
                    row.entity_type
                ),
                Some("fix the @table annotation or create the table".into()),
            ));
            continue;
        };
        for (name, attr) in &row.attrs {
            let Some(c) = t.columns.iter().find(|c| &c.name == name) else {
                d.push(bundle.locate(
                    SCHEMA_FILE,
                    &format!("\"{name}\""),
                    format!(
                        "attribute {name} of {}: table {table} has no column {name}",
                        row.entity_type
                    ),
                    Some("remove the attribute or fix its name".into()),
                ));
                continue;
            };
            if !compatible(&attr.kind, &c.ty) {
                d.push(bundle.locate(
                    SCHEMA_FILE,
                    &format!("\"{name}\""),
                    format!("attribute {name} of {} is {}, but column {table}.{name} is {}", row.entity_type, attr.kind, c.ty),
                    Some("Long for SMALLINT/INTEGER/BIGINT, String for VARCHAR/TEXT, Bool for BOOLEAN, decimal for DECIMAL with at most 4 fractional and 14 integer digits".into()),
                ));
            }
            if attr.required && c.nullable {
                d.push(bundle.locate(
                    SCHEMA_FILE,
                    &format!("\"{name}\""),
                    format!(
                        "attribute {name} of {} is required, but column {table}.{name} is nullable",
                        row.entity_type
                    ),
                    Some(format!("declare it optional: \"{name}\"?: {}", attr.kind)),
                ));
            }
        }
    }
    for t in catalog.schema.tables() {
        for c in &t.columns {
            let Some(dn) = c
                .domain
                .and_then(|id| catalog.schema.domain(id))
                .map(|d| &d.name)
            else {
                continue;
            };
            match bundle.domains().get(dn) {
                None => d.push(Diagnostic::file(
                    crate::bundle::ENTITIES_FILE,
                    format!(
                        "column {}.{} uses domain {dn}, which the bundle does not declare",
                        t.name, c.name
                    ),
                    Some("add a Domain entity with base, mask and check to entities.json"),
                )),
                Some(dom) if dom.base != c.ty => d.push(Diagnostic::file(
                    crate::bundle::ENTITIES_FILE,
                    format!(
                        "domain {dn} has base type {}, but column {}.{} is {}",
                        dom.base, t.name, c.name, c.ty
                    ),
                    Some("make the domain's base type match the catalog"),
                )),
                Some(_) => {}
            }
        }
    }
    // Entities the policies name.
    for p in bundle.policies().policies() {
        let Ok(est) = p.to_json() else { continue };
        let mut lits = Vec::new();
        entity_literals(&est, &mut lits);
        let file = bundle
            .source(p.id())
            .map(|s| s.file.clone())
            .unwrap_or_default();
        for (ty, id) in lits {
            let text = format!("{ty}::\"{id}\"");
            let problem = match ty.as_str() {
                "Table" if catalog.table(&id).is_none() => Some(format!(
                    "policy {} names {text}, which the catalog does not have",
                    p.id()
                )),
                "Column" => match id.split_once('.') {
                    Some((tn, cn))
                        if catalog
                            .table(tn)
                            .is_some_and(|t| t.columns.iter().any(|c| c.name == cn)) =>
                    {
                        None
                    }
                    _ => Some(format!(
                        "policy {} names {text}, which is not a column of the catalog (write Column::\"table.column\")",
                        p.id()
                    )),
                },
                "Domain" if !bundle.domains().contains_key(&id) => Some(format!(
                    "policy {} names {text}, which the bundle does not declare",
                    p.id()
                )),
                _ => None,
            };
            if let Some(msg) = problem {
                d.push(bundle.locate(&file, &text, msg, None));
            }
        }
    }
    d
}
