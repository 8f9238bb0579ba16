//! No clause is silently dropped. sqlparser parses far more SQL than the compiler
//! implements (other dialects' clauses among it), and a field the compiler does
//! not look at would be ignored: `INSERT OR REPLACE` ran as a plain INSERT. Each
//! check here takes one of the parser's structures apart **without `..`**, so a
//! field sqlparser adds is a compile error until someone decides what it means,
//! and refuses every part the compiler does not implement, naming it.
//!
//! The statement-level checks run before a statement is compiled; the
//! query-level ones wherever the binder meets the structure (a SELECT, a FROM
//! item, a function call ...). `tests/clauses.rs` walks every statement type the
//! compiler accepts with each refused clause.

use crate::bind::pos_of;
use crate::error::{CompileError, codes};
use sqlparser::ast::{
    self, CreateTableOptions, Expr, FunctionArguments, GroupByExpr, HiveDistributionStyle,
    SelectFlavor, TableFactor,
};

fn refused(what: &str) -> CompileError {
    CompileError::new(codes::NOT_SUPPORTED, format!("{what} is not supported"))
        .hint("remove the clause; nothing was run")
}

/// Refuses the first of `checks` whose condition holds, naming its clause.
fn refuse(checks: &[(bool, &str)]) -> Result<(), CompileError> {
    match checks.iter().find(|(c, _)| *c) {
        Some((_, what)) => Err(refused(what)),
        None => Ok(()),
    }
}

/// The statement-level clauses of `stmt` (its inner queries are checked where
/// the binder meets them).
///
/// # Errors
/// The first clause the compiler does not implement.
pub(crate) fn statement(stmt: &ast::Statement) -> Result<(), CompileError> {
    use ast::Statement as S;
    let at = pos_of(stmt);
    let r = match stmt {
        S::Insert(i) => insert(i),
        S::Update(u) => update(u),
        S::Delete(d) => delete(d),
        S::CreateTable(ct) => create_table(ct),
        S::CreateIndex(ci) => create_index(ci),
        S::CreateDomain(d) => create_domain(d),
        S::CreateView(v) => create_view(v),
        S::DropDomain(ast::DropDomain {
            if_exists: _,
            name: _,
            drop_behavior,
        }) => refuse(&[(
            drop_behavior.is_some(),
            "DROP DOMAIN ... CASCADE / RESTRICT",
        )]),
        S::Drop {
            object_type: _,
            if_exists: _,
            names: _,
            cascade,
            restrict,
            purge,
            temporary,
            table,
        } => refuse(&[
            (*cascade || *restrict, "DROP ... CASCADE / RESTRICT"),
            (*purge, "DROP ... PURGE"),
            (*temporary, "DROP TEMPORARY"),
            (table.is_some(), "DROP INDEX ... ON table"),
        ]),
        S::StartTransaction {
            modes: _,
            begin: _,
            transaction: _,
            modifier,
            statements,
            exception,
            has_end_keyword,
        } => refuse(&[
            (
                modifier.is_some(),
                "a BEGIN modifier (DEFERRED, IMMEDIATE, ...)",
            ),
            (
                !statements.is_empty() || exception.is_some() || *has_end_keyword,
                "a BEGIN ... END block",
            ),
        ]),
        S::Commit {
            chain,
            end: _,
            modifier,
        } => refuse(&[
            (*chain, "COMMIT AND CHAIN"),
            (modifier.is_some(), "a COMMIT modifier"),
        ]),
        S::Rollback {
            chain,
            savepoint: _,
        } => refuse(&[(*chain, "ROLLBACK AND CHAIN")]),
        S::Explain {
            describe_alias,
            analyze: _,
            verbose: _,
            query_plan,
            estimate,
            statement: _,
            format,
            options,
        } => refuse(&[
            (
                !matches!(describe_alias, ast::DescribeAlias::Explain),
                "DESCRIBE / DESC",
            ),
            (*query_plan, "EXPLAIN QUERY PLAN"),
            (*estimate, "EXPLAIN ESTIMATE"),
            (format.is_some(), "EXPLAIN (FORMAT ...)"),
            (options.is_some(), "EXPLAIN options"),
        ]),
        _ => Ok(()),
    };
    r.map_err(|e| e.at(at))
}

fn create_view(v: &ast::CreateView) -> Result<(), CompileError> {
    let ast::CreateView {
        or_alter,
        or_replace,
        materialized,
        secure,
        name: _,
        name_before_not_exists: _,
        columns,
        query: _,
        options,
        cluster_by,
        comment,
        with_no_schema_binding,
        if_not_exists,
        temporary,
        copy_grants,
        to,
        params,
    } = v;
    refuse(&[
        (*or_alter || *or_replace, "CREATE OR REPLACE VIEW"),
        (*materialized, "CREATE MATERIALIZED VIEW"),
        (*temporary, "CREATE TEMPORARY VIEW"),
        (*if_not_exists, "CREATE VIEW IF NOT EXISTS"),
        (
            *secure
                || !matches!(options, ast::CreateTableOptions::None)
                || !cluster_by.is_empty()
                || comment.is_some()
                || *with_no_schema_binding
                || *copy_grants
                || to.is_some()
                || params.is_some(),
            "a CREATE VIEW option of another dialect",
        ),
        (
            columns
                .iter()
                .any(|c| c.data_type.is_some() || c.options.is_some()),
            "a type or option on a view's column",
        ),
    ])
}

fn insert(i: &ast::Insert) -> Result<(), CompileError> {
    let ast::Insert {
        insert_token: _,
        optimizer_hints,
        or,
        ignore,
        into: _,
        table: _,
        table_alias: _,
        columns: _,
        by_name,
        overwrite,
        source: _,
        assignments,
        partitioned,
        after_columns,
        overriding: _,
        has_table_keyword,
        on,
        returning: _,
        output,
        replace_into,
        priority,
        insert_alias,
        settings,
        format_clause,
        multi_table_insert_type,
        multi_table_into_clauses,
        multi_table_when_clauses,
        multi_table_else_clause,
    } = i;
    refuse(&[
        (
            or.is_some(),
            "INSERT OR REPLACE / OR IGNORE (use PostgreSQL's INSERT)",
        ),
        (*ignore, "INSERT IGNORE"),
        (*replace_into, "REPLACE INTO"),
        (
            matches!(on, Some(ast::OnInsert::DuplicateKeyUpdate(_))),
            "INSERT ... ON DUPLICATE KEY UPDATE (use PostgreSQL's ON CONFLICT)",
        ),
        (
            matches!(
                on,
                Some(ast::OnInsert::OnConflict(ast::OnConflict {
                    conflict_target: Some(ast::ConflictTarget::Columns {
                        predicate: Some(_),
                        ..
                    }),
                    ..
                }))
            ),
            "ON CONFLICT (...) WHERE (an index predicate: there are no partial indexes)",
        ),
        (output.is_some(), "INSERT ... OUTPUT"),
        (!assignments.is_empty(), "INSERT ... SET"),
        (*by_name, "INSERT ... BY NAME"),
        (*overwrite, "INSERT OVERWRITE"),
        (*has_table_keyword, "INSERT INTO TABLE"),
        (
            partitioned.is_some() || !after_columns.is_empty(),
            "INSERT ... PARTITION",
        ),
        (priority.is_some(), "an INSERT priority"),
        (insert_alias.is_some(), "INSERT ... AS alias"),
        (settings.is_some(), "INSERT ... SETTINGS"),
        (format_clause.is_some(), "INSERT ... FORMAT"),
        (!optimizer_hints.is_empty(), "optimizer hints"),
        (
            multi_table_insert_type.is_some()
                || !multi_table_into_clauses.is_empty()
                || !multi_table_when_clauses.is_empty()
                || multi_table_else_clause.is_some(),
            "a multi-table INSERT",
        ),
    ])
}

fn update(u: &ast::Update) -> Result<(), CompileError> {
    let ast::Update {
        update_token: _,
        optimizer_hints,
        table: _,
        on_cluster,
        assignments: _,
        from,
        selection: _,
        returning: _,
        output,
        or,
        order_by,
        limit,
        settings,
    } = u;
    refuse(&[
        (
            matches!(from, Some(ast::UpdateTableFromKind::BeforeSet(_))),
            "UPDATE FROM ... SET (write UPDATE t SET ... FROM ...)",
        ),
        (output.is_some(), "UPDATE ... OUTPUT"),
        (or.is_some(), "UPDATE OR ..."),
        (
            !order_by.is_empty() || limit.is_some(),
            "UPDATE ... ORDER BY / LIMIT",
        ),
        (on_cluster.is_some(), "ON CLUSTER"),
        (settings.is_some(), "UPDATE ... SETTINGS"),
        (!optimizer_hints.is_empty(), "optimizer hints"),
    ])
}

fn delete(d: &ast::Delete) -> Result<(), CompileError> {
    let ast::Delete {
        delete_token: _,
        optimizer_hints,
        tables,
        from: _,
        on_cluster,
        using: _,
        selection: _,
        returning: _,
        output,
        order_by,
        limit,
        settings,
    } = d;
    refuse(&[
        (!tables.is_empty(), "DELETE of several tables"),
        (output.is_some(), "DELETE ... OUTPUT"),
        (
            !order_by.is_empty() || limit.is_some(),
            "DELETE ... ORDER BY / LIMIT",
        ),
        (on_cluster.is_some(), "ON CLUSTER"),
        (settings.is_some(), "DELETE ... SETTINGS"),
        (!optimizer_hints.is_empty(), "optimizer hints"),
    ])
}

#[expect(clippy::too_many_lines, reason = "one line per field of CREATE TABLE")]
fn create_table(ct: &ast::CreateTable) -> Result<(), CompileError> {
    let ast::CreateTable {
        or_replace,
        temporary,
        unlogged,
        external,
        dynamic,
        global,
        if_not_exists: _,
        transient,
        volatile,
        iceberg,
        snapshot,
        name: _,
        columns,
        constraints,
        hive_distribution,
        hive_formats,
        table_options,
        file_format,
        location,
        query,
        sqlite_table_options,
        like,
        clone,
        version,
        comment,
        on_commit,
        on_cluster,
        primary_key,
        order_by,
        partition_by,
        cluster_by,
        clustered_by,
        inherits,
        partition_of,
        for_values,
        copy_grants,
        enable_schema_evolution,
        change_tracking,
        data_retention_time_in_days,
        max_data_extension_time_in_days,
        default_ddl_collation,
        with_aggregation_policy,
        with_row_access_policy,
        with_storage_lifecycle_policy,
        with_tags,
        external_volume,
        with_connection,
        base_location,
        catalog,
        catalog_sync,
        storage_serialization_policy,
        target_lag,
        warehouse,
        refresh_mode,
        initialize,
        require_user,
        diststyle,
        distkey,
        sortkey,
        backup,
        multiset,
        fallback,
        with_data,
    } = ct;
    refuse(&[
        (*or_replace, "CREATE OR REPLACE TABLE"),
        (*temporary || global.is_some(), "temporary tables"),
        (*unlogged, "UNLOGGED tables"),
        (*external, "external tables"),
        (
            query.is_some() || like.is_some() || clone.is_some(),
            "CREATE TABLE ... AS / LIKE / CLONE",
        ),
        (
            inherits.is_some() || partition_of.is_some() || for_values.is_some(),
            "table inheritance and partitions",
        ),
        (partition_by.is_some(), "PARTITION BY"),
        (
            !matches!(table_options, CreateTableOptions::None),
            "table options (WITH, ...)",
        ),
        (comment.is_some(), "a table COMMENT"),
        (on_commit.is_some(), "ON COMMIT"),
        (
            primary_key.is_some() || order_by.is_some(),
            "PRIMARY KEY / ORDER BY as table options",
        ),
        (
            !matches!(hive_distribution, HiveDistributionStyle::NONE),
            "a Hive distribution clause (ScratchBird places rows with DISTRIBUTE BY HASH (column) or RANGE (column) SPLIT AT (...))",
        ),
        (
            *dynamic
                || *transient
                || *volatile
                || *iceberg
                || *snapshot
                || hive_formats.is_some()
                || file_format.is_some()
                || location.is_some()
                || *sqlite_table_options != ast::SqliteTableOptions::default()
                || version.is_some()
                || on_cluster.is_some()
                || cluster_by.is_some()
                || clustered_by.is_some()
                || *copy_grants
                || enable_schema_evolution.is_some()
                || change_tracking.is_some()
                || data_retention_time_in_days.is_some()
                || max_data_extension_time_in_days.is_some()
                || default_ddl_collation.is_some()
                || with_aggregation_policy.is_some()
                || with_row_access_policy.is_some()
                || with_storage_lifecycle_policy.is_some()
                || with_tags.is_some()
                || external_volume.is_some()
                || with_connection.is_some()
                || base_location.is_some()
                || catalog.is_some()
                || catalog_sync.is_some()
                || storage_serialization_policy.is_some()
                || target_lag.is_some()
                || warehouse.is_some()
                || refresh_mode.is_some()
                || initialize.is_some()
                || *require_user
                || diststyle.is_some()
                || distkey.is_some()
                || sortkey.is_some()
                || backup.is_some()
                || multiset.is_some()
                || fallback.is_some()
                || with_data.is_some(),
            "this CREATE TABLE clause (another dialect's)",
        ),
    ])?;
    for c in columns {
        let ast::ColumnDef {
            name: _,
            data_type: _,
            options,
        } = c;
        for o in options {
            let ast::ColumnOptionDef { name, option: _ } = o;
            refuse(&[(
                name.is_some(),
                "a named column constraint (CONSTRAINT name ...)",
            )])?;
        }
    }
    for c in constraints {
        if let ast::TableConstraint::PrimaryKey(pk) = c {
            let ast::PrimaryKeyConstraint {
                name,
                index_name,
                index_type,
                columns: _,
                index_options,
                characteristics,
                include,
            } = pk;
            refuse(&[
                (
                    name.is_some() || index_name.is_some(),
                    "a named PRIMARY KEY constraint",
                ),
                (
                    index_type.is_some()
                        || !index_options.is_empty()
                        || characteristics.is_some()
                        || !include.is_empty(),
                    "PRIMARY KEY options",
                ),
            ])?;
        }
    }
    Ok(())
}

fn create_index(ci: &ast::CreateIndex) -> Result<(), CompileError> {
    let ast::CreateIndex {
        name: _,
        table_name: _,
        using,
        columns,
        unique: _,
        concurrently,
        if_not_exists,
        include,
        nulls_distinct,
        with,
        predicate,
        index_options,
        alter_options,
        r#async,
    } = ci;
    refuse(&[
        (using.is_some(), "CREATE INDEX ... USING"),
        (*r#async, "CREATE INDEX ASYNC"),
        (*concurrently, "CREATE INDEX CONCURRENTLY"),
        (*if_not_exists, "CREATE INDEX IF NOT EXISTS"),
        (!include.is_empty(), "CREATE INDEX ... INCLUDE"),
        (nulls_distinct.is_some(), "NULLS [NOT] DISTINCT"),
        (
            !with.is_empty() || !index_options.is_empty() || !alter_options.is_empty(),
            "index options",
        ),
        (
            predicate.is_some(),
            "partial indexes (CREATE INDEX ... WHERE)",
        ),
    ])?;
    for c in columns {
        let ast::IndexColumn {
            column,
            operator_class,
        } = c;
        let ast::OrderByExpr {
            expr: _,
            options,
            with_fill,
        } = column;
        refuse(&[
            (operator_class.is_some(), "index operator classes"),
            (
                options.sort.is_some() || options.nulls_first.is_some() || with_fill.is_some(),
                "an index column's order (ASC, DESC, NULLS ...)",
            ),
        ])?;
    }
    Ok(())
}

fn create_domain(d: &ast::CreateDomain) -> Result<(), CompileError> {
    let ast::CreateDomain {
        name: _,
        data_type: _,
        collation,
        default: _,
        constraints: _,
    } = d;
    refuse(&[(collation.is_some(), "CREATE DOMAIN ... COLLATE")])
}

/// The clauses of a query (its WITH, ORDER BY, limits and the rest; its body is
/// checked as the binder meets it).
///
/// # Errors
/// The first clause the compiler does not implement.
pub(crate) fn query(q: &ast::Query) -> Result<(), CompileError> {
    let ast::Query {
        with,
        body: _,
        order_by,
        limit_clause: _,
        fetch: _,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = q;
    refuse(&[
        (
            with.as_ref()
                .is_some_and(|w| w.cte_tables.iter().any(|c| c.from.is_some())),
            "WITH ... FROM",
        ),
        (!locks.is_empty(), "SELECT ... FOR UPDATE / FOR SHARE"),
        (for_clause.is_some(), "FOR XML / FOR JSON"),
        (settings.is_some(), "SETTINGS"),
        (format_clause.is_some(), "FORMAT"),
        (!pipe_operators.is_empty(), "pipe operators"),
        (
            order_by.as_ref().is_some_and(|o| o.interpolate.is_some()),
            "ORDER BY ... INTERPOLATE",
        ),
    ])
    .map_err(|e| e.at(pos_of(q)))
}

/// The clauses of a SELECT the binder does not read.
///
/// # Errors
/// The first clause the compiler does not implement.
pub(crate) fn select(s: &ast::Select) -> Result<(), CompileError> {
    let ast::Select {
        select_token: _,
        optimizer_hints,
        distinct: _,
        select_modifiers,
        top,
        top_before_distinct: _,
        projection,
        exclude,
        into,
        from: _,
        lateral_views,
        prewhere,
        selection: _,
        connect_by,
        group_by,
        cluster_by,
        distribute_by,
        sort_by,
        having: _,
        named_window,
        qualify,
        window_before_qualify: _,
        value_table_mode,
        flavor,
    } = s;
    refuse(&[
        (into.is_some(), "SELECT ... INTO"),
        (top.is_some(), "SELECT TOP (use LIMIT)"),
        (exclude.is_some(), "SELECT ... EXCLUDE"),
        (!lateral_views.is_empty(), "LATERAL VIEW"),
        (prewhere.is_some(), "PREWHERE"),
        (!connect_by.is_empty(), "CONNECT BY"),
        (
            !cluster_by.is_empty() || !distribute_by.is_empty() || !sort_by.is_empty(),
            "CLUSTER BY / DISTRIBUTE BY / SORT BY",
        ),
        (!named_window.is_empty(), "WINDOW"),
        (qualify.is_some(), "QUALIFY"),
        (value_table_mode.is_some(), "SELECT AS STRUCT / VALUE"),
        (
            !matches!(flavor, SelectFlavor::Standard),
            "FROM-first SELECT",
        ),
        (select_modifiers.is_some(), "SELECT modifiers"),
        (!optimizer_hints.is_empty(), "optimizer hints"),
        (
            matches!(group_by, GroupByExpr::Expressions(_, m) if !m.is_empty()),
            "GROUP BY ... WITH ROLLUP / CUBE / TOTALS",
        ),
    ])?;
    for item in projection {
        if let ast::SelectItem::Wildcard(o) | ast::SelectItem::QualifiedWildcard(_, o) = item {
            let ast::WildcardAdditionalOptions {
                wildcard_token: _,
                opt_ilike,
                opt_exclude,
                opt_except,
                opt_replace,
                opt_rename,
                opt_alias,
            } = o;
            refuse(&[(
                opt_ilike.is_some()
                    || opt_exclude.is_some()
                    || opt_except.is_some()
                    || opt_replace.is_some()
                    || opt_rename.is_some()
                    || opt_alias.is_some(),
                "* with ILIKE / EXCLUDE / EXCEPT / REPLACE / RENAME / AS",
            )])
            .map_err(|e| e.at(pos_of(item)))?;
        }
    }
    Ok(())
}

/// The parts of a FROM item the binder does not read.
///
/// # Errors
/// The first part the compiler does not implement.
pub(crate) fn table_factor(f: &TableFactor) -> Result<(), CompileError> {
    let r = match f {
        TableFactor::Table {
            name: _,
            alias,
            args,
            with_hints,
            version,
            with_ordinality,
            partitions,
            json_path,
            sample,
            index_directives,
            inheritance,
        } => refuse(&[
            (
                args.as_ref().is_some_and(|a| a.settings.is_some()),
                "table function SETTINGS",
            ),
            (
                !with_hints.is_empty() || !index_directives.is_empty(),
                "table hints",
            ),
            (
                version
                    .as_ref()
                    .is_some_and(|v| !matches!(v, ast::TableVersion::ForSystemTimeAsOf(_))),
                "table versions other than FOR SYSTEM_TIME AS OF",
            ),
            (*with_ordinality, "WITH ORDINALITY"),
            (!partitions.is_empty(), "PARTITION (...)"),
            (json_path.is_some(), "a JSON path on a table"),
            (sample.is_some(), "TABLESAMPLE"),
            (inheritance.is_some(), "ONLY / table inheritance"),
            (
                alias
                    .as_ref()
                    .is_some_and(|a| a.columns.iter().any(|c| c.data_type.is_some())),
                "a type on a column alias",
            ),
        ]),
        TableFactor::Derived {
            lateral,
            subquery: _,
            alias: _,
            sample,
        } => refuse(&[(*lateral, "LATERAL"), (sample.is_some(), "TABLESAMPLE")]),
        _ => Ok(()),
    };
    r.map_err(|e| e.at(pos_of(f)))
}

/// A join's parts the binder does not read.
///
/// # Errors
/// GLOBAL joins.
pub(crate) fn join(j: &ast::Join) -> Result<(), CompileError> {
    let ast::Join {
        relation,
        global,
        join_operator: _,
    } = j;
    refuse(&[(*global, "GLOBAL JOIN")]).map_err(|e| e.at(pos_of(relation)))
}

/// An ORDER BY item's parts the binder does not read.
///
/// # Errors
/// WITH FILL.
pub(crate) fn order_item(o: &ast::OrderByExpr) -> Result<(), CompileError> {
    let ast::OrderByExpr {
        expr,
        options: _,
        with_fill,
    } = o;
    refuse(&[(with_fill.is_some(), "ORDER BY ... WITH FILL")]).map_err(|e| e.at(pos_of(expr)))
}

/// A function call's parts the binder does not read.
///
/// # Errors
/// The first part the compiler does not implement.
pub(crate) fn function(f: &ast::Function) -> Result<(), CompileError> {
    let ast::Function {
        name: _,
        uses_odbc_syntax,
        parameters,
        args: _,
        within_group: _,
        filter: _,
        null_treatment,
        over: _,
    } = f;
    refuse(&[
        (null_treatment.is_some(), "IGNORE / RESPECT NULLS"),
        (
            !matches!(parameters, FunctionArguments::None),
            "parametric functions",
        ),
        (*uses_odbc_syntax, "ODBC function syntax"),
    ])
    .map_err(|e| e.at(pos_of(f)))
}

/// A CAST's parts the binder does not read.
///
/// # Errors
/// CAST ... FORMAT.
pub(crate) fn cast(e: &Expr) -> Result<(), CompileError> {
    if let Expr::Cast {
        kind: _,
        expr: _,
        data_type: _,
        format,
    } = e
    {
        refuse(&[(format.is_some(), "CAST ... FORMAT")]).map_err(|x| x.at(pos_of(e)))?;
    }
    Ok(())
}
