//! ALTER TABLE and CHECK constraints: the statement's actions, checked for
//! what the compiler can see (clauses it does not implement, names), and
//! kept for storage, which checks them against the table and its rows.

use crate::bind::{norm, object_name, pos_of};
use crate::error::{CompileError, codes};
use crate::{
    AlterAction, Catalog, Statement, column_of, const_value, time_default, unique_columns,
};
use sqlparser::ast;

/// A CHECK constraint: its name (`name`, the column option's, else its own)
/// and its expression as SQL text. `NO INHERIT` and `NOT ENFORCED` are
/// refused.
pub(crate) fn check_of(
    k: &ast::CheckConstraint,
    name: Option<&ast::Ident>,
) -> Result<(Option<String>, String), CompileError> {
    if k.no_inherit {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "CHECK ... NO INHERIT is not supported (tables do not inherit)",
        ));
    }
    if k.enforced == Some(false) {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "a CHECK that is NOT ENFORCED is not supported",
        ));
    }
    let name = name.or(k.name.as_ref()).map(norm);
    Ok((name, k.expr.to_string()))
}

/// ALTER TABLE's actions, in order.
pub(crate) fn alter_table(at: &ast::AlterTable, cat: &Catalog) -> Result<Statement, CompileError> {
    if at.only {
        return Err(refused("ONLY (tables do not inherit: leave it out)"));
    }
    if at.location.is_some() || at.on_cluster.is_some() || at.table_type.is_some() {
        return Err(refused("of this kind"));
    }
    let name = object_name(&at.name)?;
    let table = cat.table_by_name(&name);
    let mut actions = Vec::with_capacity(at.operations.len());
    for op in &at.operations {
        use ast::AlterTableOperation as A;
        match op {
            A::AddColumn {
                column_keyword: _,
                if_not_exists,
                column_def,
                column_position,
            } => {
                if column_position.is_some() {
                    return Err(refused(
                        "ADD COLUMN ... FIRST / AFTER (a new column comes last)",
                    ));
                }
                let mut unique = Vec::new();
                let mut checks = Vec::new();
                let (column, pk) = column_of(column_def, cat, &mut unique, &mut checks)?;
                if pk {
                    return Err(refused(
                        "ADD COLUMN ... PRIMARY KEY (a table's key is declared when it is created)",
                    ));
                }
                let col = column.name.clone();
                let exists = table.is_some_and(|t| t.columns.iter().any(|c| c.name == col));
                if *if_not_exists && exists {
                    continue;
                }
                actions.push(AlterAction::AddColumn {
                    column,
                    if_not_exists: *if_not_exists,
                });
                for (name, columns) in unique {
                    actions.push(AlterAction::AddUnique { name, columns });
                }
                for (name, expr) in checks {
                    actions.push(AlterAction::AddCheck { name, expr });
                }
            }
            A::DropColumn {
                has_column_keyword: _,
                column_names,
                if_exists,
                drop_behavior,
            } => {
                if drop_behavior.is_some() {
                    return Err(refused("DROP COLUMN ... CASCADE / RESTRICT"));
                }
                for c in column_names {
                    actions.push(AlterAction::DropColumn {
                        name: norm(c),
                        if_exists: *if_exists,
                    });
                }
            }
            A::RenameColumn {
                old_column_name,
                new_column_name,
            } => actions.push(AlterAction::RenameColumn {
                from: norm(old_column_name),
                to: norm(new_column_name),
            }),
            A::RenameTable { table_name } => {
                let ast::RenameTableNameKind::To(to) = table_name else {
                    return Err(refused("RENAME AS (write RENAME TO)"));
                };
                if at.operations.len() > 1 {
                    return Err(CompileError::new(
                        codes::SYNTAX,
                        "ALTER TABLE ... RENAME TO cannot be combined with other actions",
                    )
                    .hint("rename the table in an ALTER TABLE of its own"));
                }
                actions.push(AlterAction::RenameTable {
                    to: object_name(to)?,
                });
            }
            A::AlterColumn { column_name, op } => {
                actions.push(alter_column(&name, table, norm(column_name), op, cat)?);
            }
            A::AddConstraint {
                constraint,
                not_valid,
            } => {
                if *not_valid {
                    return Err(refused(
                        "ADD CONSTRAINT ... NOT VALID (every row is checked)",
                    ));
                }
                actions.push(add_constraint(constraint)?);
            }
            A::DropConstraint {
                if_exists,
                name,
                drop_behavior,
            } => {
                if drop_behavior.is_some() {
                    return Err(refused("DROP CONSTRAINT ... CASCADE / RESTRICT"));
                }
                actions.push(AlterAction::DropConstraint {
                    name: norm(name),
                    if_exists: *if_exists,
                });
            }
            other => {
                let words: Vec<String> = other
                    .to_string()
                    .split_whitespace()
                    .take(2)
                    .map(str::to_owned)
                    .collect();
                return Err(refused(&format!(
                    "{} (ADD / DROP / RENAME COLUMN, RENAME TO, ALTER COLUMN SET / DROP DEFAULT and NOT NULL, ADD / DROP CONSTRAINT are)",
                    words.join(" ")
                )));
            }
        }
    }
    Ok(Statement::AlterTable {
        name,
        if_exists: at.if_exists,
        actions,
    })
}

fn refused(what: &str) -> CompileError {
    CompileError::new(
        codes::NOT_SUPPORTED,
        format!("ALTER TABLE ... {what} is not supported"),
    )
}

/// ALTER COLUMN `column` of table `name` (`table`, when it exists).
fn alter_column(
    name: &str,
    table: Option<&std::sync::Arc<crate::TableDef>>,
    column: String,
    op: &ast::AlterColumnOperation,
    cat: &Catalog,
) -> Result<AlterAction, CompileError> {
    Ok(match op {
        ast::AlterColumnOperation::SetNotNull => AlterAction::SetNotNull {
            column,
            not_null: true,
        },
        ast::AlterColumnOperation::DropNotNull => AlterAction::SetNotNull {
            column,
            not_null: false,
        },
        ast::AlterColumnOperation::DropDefault => AlterAction::SetDefault {
            column,
            default: None,
            default_fn: None,
        },
        ast::AlterColumnOperation::SetDefault { value } if time_default(value).is_some() => {
            AlterAction::SetDefault {
                column,
                default: None,
                default_fn: time_default(value),
            }
        }
        ast::AlterColumnOperation::SetDefault { value } => {
            let ty = table
                .and_then(|t| t.columns.iter().find(|c| c.name == column))
                .map(|c| c.ty)
                .ok_or_else(|| {
                    CompileError::new(
                        codes::UNDEFINED_COLUMN,
                        format!("column \"{column}\" of table {name} does not exist"),
                    )
                })?;
            let v = const_value(value, ty, cat).map_err(|e| e.at(pos_of(value)))?;
            AlterAction::SetDefault {
                column,
                default: Some(v),
                default_fn: None,
            }
        }
        other => {
            let words: Vec<String> = other
                .to_string()
                .split_whitespace()
                .take(3)
                .map(str::to_owned)
                .collect();
            return Err(refused(&format!(
                "ALTER COLUMN {} (only SET / DROP DEFAULT and SET / DROP NOT NULL)",
                words.join(" ")
            )));
        }
    })
}

/// ADD CONSTRAINT: a CHECK or a UNIQUE.
fn add_constraint(constraint: &ast::TableConstraint) -> Result<AlterAction, CompileError> {
    match constraint {
        ast::TableConstraint::Check(k) => {
            let (name, expr) = check_of(k, None)?;
            Ok(AlterAction::AddCheck { name, expr })
        }
        ast::TableConstraint::Unique(u) => {
            let columns = unique_columns(u)?;
            Ok(AlterAction::AddUnique {
                name: u.name.as_ref().map(norm),
                columns,
            })
        }
        other => Err(refused(&format!(
            "ADD {} (CHECK and UNIQUE constraints can be added)",
            other.to_string().split_whitespace().next().unwrap_or("")
        ))),
    }
}
