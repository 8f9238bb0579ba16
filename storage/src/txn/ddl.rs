//! Schema changes in a transaction: tables, domains and indexes created and
//! dropped as rows of `SB$OBJECTS`, and a new index built over the rows its
//! table holds.

use super::*;
use crate::catalog::{
    ColumnSpec, DefaultFn, Distribution, TableChange, TableCheck, build_column, check_identifier,
};
use crate::check::Check;
use crate::limits::{CHECK_TEXT_MAX_BYTES, TABLE_COLUMNS_MAX};
use scratchbird_types::SqlType;

/// What [`Transaction::current_rows`] calls with each batch of rows: `false`
/// stops it.
type RowsFn<'a> = dyn FnMut(&mut Transaction, Vec<Vec<Value>>) -> Result<bool> + 'a;

/// The position of column `n` of `def`.
fn column_at(def: &TableDef, n: &str) -> Result<usize> {
    def.columns
        .iter()
        .position(|c| c.name == n)
        .ok_or_else(|| StorageError::NotFound {
            kind: "column",
            name: format!("{}.{n}", def.name),
        })
}

impl Transaction {
    fn insert_object(&mut self, def: ObjectDef) -> Result<()> {
        let sys = self.inner.system_table()?;
        let values = def.to_row()?;
        let row = encode_checked(&sys.def.clone(), &sys, &values)?;
        let key = sys.key_of_values(&values)?;
        let kind = match &def {
            ObjectDef::Table(_) => "table",
            ObjectDef::Index(_) => "index",
            ObjectDef::Domain(_) => "domain",
            // a table or view of that name: they share one namespace
            ObjectDef::View(_) => "relation",
        };
        match self.write_record(&sys, &key, Op::Insert(row, values)) {
            Err(
                StorageError::UniqueViolation { .. } | StorageError::PrimaryKeyViolation { .. },
            ) => Err(StorageError::AlreadyExists {
                kind,
                name: def.name().to_owned(),
            }),
            Err(e) => Err(e),
            Ok(_) => {
                self.ddl = true;
                self.forget_catalog();
                Ok(())
            }
        }
    }

    fn delete_object(&mut self, id: [u8; 16]) -> Result<()> {
        let sys = self.inner.system_table()?;
        let key = sys.encode_pk(&[Value::Blob(id.to_vec())])?;
        self.write_record(&sys, &key, Op::Delete)?;
        self.ddl = true;
        self.forget_catalog();
        Ok(())
    }

    fn new_random(&self) -> [u8; 16] {
        let mut given = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match given.as_mut() {
            Some(next) => (next.0)(),
            None => self.inner.config.env.random_bytes(),
        }
    }

    /// The objects this transaction creates from now on take their ids from
    /// `ids` (`None`: from randomness again). A cluster applies each schema
    /// change of its log with ids drawn from the change, so every node names
    /// the table, its columns, a domain or an index with the same ids, and
    /// their schemas have equal versions.
    pub fn set_ids(&mut self, ids: Option<IdSource>) {
        *self
            .ids
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ids.map(GivenIds);
    }

    /// Creates a table.
    ///
    /// # Errors
    /// Invalid definition, or the name exists.
    pub fn create_table(&mut self, spec: &TableSpec) -> Result<TableId> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            if cat.table_by_name(&spec.name).is_some() {
                return Err(StorageError::AlreadyExists {
                    kind: "table",
                    name: spec.name.clone(),
                });
            }
            let id = TableId::from_random_bytes(t.new_random());
            let def = build_table(spec, id, &cat, || {
                ColumnId::from_random_bytes(t.new_random())
            })?;
            let store = Arc::new(TableStore::new(Arc::new(def.clone()))?);
            t.inner
                .tables
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, store);
            t.undo.push(Undo::CreatedTable(id));
            t.insert_object(ObjectDef::Table(def))?;
            // Nobody else can see the table yet; this transaction owns it.
            t.inner.locks.lock_table(
                t.id,
                id,
                &spec.name,
                TableLockMode::Exclusive,
                LockWait::NoWait,
            )?;
            t.shared_locked.insert(id);
            Ok(id)
        })
    }

    /// Drops a table and its indexes. Its data stays readable by older snapshots
    /// until the drop is older than every snapshot and the retention window; then
    /// sweep removes it.
    ///
    /// # Errors
    /// Unknown table, or the table is in use.
    pub fn drop_table(&mut self, name: &str) -> Result<()> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            if cat.table_by_name(name).is_none() && cat.view_by_name(name).is_some() {
                return Err(StorageError::InvalidDefinition {
                    object: format!("view {name}"),
                    reason: "it is a view, not a table: DROP VIEW drops it",
                });
            }
            let def = cat.resolve_table(name)?.clone();
            if def.id == system_table_id() {
                return Err(StorageError::InvalidDefinition {
                    object: format!("table {name}"),
                    reason: "the system catalog cannot be dropped",
                });
            }
            if let Some(on) = cat.views_on(name).next() {
                return Err(StorageError::ObjectInUse {
                    name: name.to_owned(),
                    reason: format!("view {} names it: drop that view first", on.name),
                });
            }
            t.lock_table(&def, TableLockMode::Exclusive)?;
            // a view created by a transaction that committed while this one
            // waited for the lock is not in this snapshot's catalog
            if let Some(on) = t.latest_catalog()?.views_on(name).next() {
                return Err(StorageError::ObjectInUse {
                    name: name.to_owned(),
                    reason: format!("view {} names it: drop that view first", on.name),
                });
            }
            let indexes: Vec<IndexId> = cat.indexes_of(def.id).map(|i| i.id).collect();
            for i in indexes {
                t.delete_object(*i.as_bytes())?;
            }
            t.delete_object(*def.id.as_bytes())
        })
    }

    /// Creates a view.
    ///
    /// # Errors
    /// Invalid definition, a table or view of the name exists, or a table or
    /// view it names does not.
    pub fn create_view(&mut self, spec: &ViewSpec) -> Result<ViewId> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            if cat.table_by_name(&spec.name).is_some() || cat.view_by_name(&spec.name).is_some() {
                return Err(StorageError::AlreadyExists {
                    kind: "relation",
                    name: spec.name.clone(),
                });
            }
            if let Some(missing) = spec
                .depends
                .iter()
                .find(|d| cat.table_by_name(d).is_none() && cat.view_by_name(d).is_none())
            {
                return Err(StorageError::NotFound {
                    kind: "table or view",
                    name: missing.clone(),
                });
            }
            // the tables and views it names stay while it is created: a
            // DROP waits for this transaction, then finds the new view in
            // the latest catalog and refuses; a DROP that got its lock
            // first makes this lock fail once it has committed
            for d in &spec.depends {
                if let Some(table) = cat.table_by_name(d) {
                    let table = table.clone();
                    t.lock_table(&table, TableLockMode::Shared)?;
                } else if let Some(view) = cat.view_by_name(d) {
                    let view = view.clone();
                    t.lock_view(&view, TableLockMode::Shared)?;
                }
            }
            let id = ViewId::from_random_bytes(t.new_random());
            let def = build_view(spec, id)?;
            t.insert_object(ObjectDef::View(def))?;
            Ok(id)
        })
    }

    /// Drops a view no other view names.
    ///
    /// # Errors
    /// Unknown view, or another view names it.
    pub fn drop_view(&mut self, name: &str) -> Result<()> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            if cat.view_by_name(name).is_none() && cat.table_by_name(name).is_some() {
                return Err(StorageError::InvalidDefinition {
                    object: format!("table {name}"),
                    reason: "it is a table, not a view: DROP TABLE drops it",
                });
            }
            let v = cat
                .view_by_name(name)
                .ok_or_else(|| StorageError::NotFound {
                    kind: "view",
                    name: name.to_owned(),
                })?
                .clone();
            if let Some(on) = cat.views_on(name).next() {
                return Err(StorageError::ObjectInUse {
                    name: name.to_owned(),
                    reason: format!("view {} names it: drop that view first", on.name),
                });
            }
            t.lock_view(&v, TableLockMode::Exclusive)?;
            if let Some(on) = t.latest_catalog()?.views_on(name).next() {
                return Err(StorageError::ObjectInUse {
                    name: name.to_owned(),
                    reason: format!("view {} names it: drop that view first", on.name),
                });
            }
            t.delete_object(*v.id.as_bytes())
        })
    }

    /// Creates a domain.
    ///
    /// # Errors
    /// Invalid definition, or the name exists.
    pub fn create_domain(&mut self, spec: &DomainSpec) -> Result<DomainId> {
        self.check_writable()?;
        self.statement(|t| {
            if t.catalog()?.domain_by_name(&spec.name).is_some() {
                return Err(StorageError::AlreadyExists {
                    kind: "domain",
                    name: spec.name.clone(),
                });
            }
            let id = DomainId::from_random_bytes(t.new_random());
            let def = build_domain(spec, id)?;
            t.insert_object(ObjectDef::Domain(def))?;
            Ok(id)
        })
    }

    /// Drops a domain no column uses.
    ///
    /// # Errors
    /// Unknown domain, or a column uses it.
    pub fn drop_domain(&mut self, name: &str) -> Result<()> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            let d = cat.resolve_domain(name)?.clone();
            if let Some((tbl, col)) = cat
                .tables()
                .flat_map(|tb| tb.columns.iter().map(move |c| (tb, c)))
                .find(|(_, c)| c.domain == Some(d.id))
            {
                return Err(StorageError::ObjectInUse {
                    name: name.to_owned(),
                    reason: format!("column {}.{} uses the domain", tbl.name, col.name),
                });
            }
            t.delete_object(*d.id.as_bytes())
        })
    }

    /// Creates an index and builds it from every retained version of the table.
    ///
    /// # Errors
    /// Invalid definition, the name exists, the table is in use, or (UNIQUE) two
    /// current rows share a key.
    pub fn create_index(&mut self, spec: &IndexSpec) -> Result<IndexId> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            let table = cat.resolve_table(&spec.table)?.clone();
            if cat.index_by_name(&spec.name).is_some() {
                return Err(StorageError::AlreadyExists {
                    kind: "index",
                    name: spec.name.clone(),
                });
            }
            t.lock_table(&table, TableLockMode::Exclusive)?;
            let id = IndexId::from_random_bytes(t.new_random());
            let def = Arc::new(build_index(spec, id, &table)?);
            let store = t
                .inner
                .table(table.id)
                .ok_or(StorageError::Internal("table without store"))?;
            store
                .indexes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(def.clone());
            t.undo.push(Undo::CreatedIndex {
                table: table.id,
                index: id,
            });
            t.build_index(&store, &def)?;
            t.insert_object(ObjectDef::Index((*def).clone()))?;
            Ok(id)
        })
    }

    fn build_index(&self, store: &TableStore, idx: &IndexDef) -> Result<()> {
        let inner = &self.inner;
        let tip = &inner.tip;
        let st = store.read();
        let mut b = inner.db.batch();
        let mut current: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut note = |rk: &[u8],
                        values: &[Value],
                        is_current: bool,
                        b: &mut fjall::OwnedWriteBatch|
         -> Result<()> {
            let ik = store.index_key_of(idx, values)?;
            if is_current
                && idx.unique
                && !has_null(idx, values)
                && let Some(other) = current.insert(ik.clone(), rk.to_vec())
                && other != rk
            {
                return Err(StorageError::UniqueViolation {
                    index: idx.name.clone(),
                    table: store.def.name.clone(),
                    key: describe_values(idx, values),
                });
            }
            b.insert(
                &inner.ks.index,
                index_key(idx.id, &ik, rk)?,
                Vec::<u8>::new(),
            );
            Ok(())
        };
        let live = |t: TxnId| t == self.id || tip.state(t) != TxnState::RolledBack;
        for (first, meta) in &st.pages {
            if !live(meta.creator) {
                continue;
            }
            let pv = store.fetch_page(&inner.pages(), first, meta.generation)?;
            for i in 0..pv.rows() {
                let rk = pv.key(i);
                let shadowed = st
                    .delta
                    .get(rk)
                    .is_some_and(|c| c.iter().any(|v| live(v.txn)));
                note(rk, &pv.values(i)?, !shadowed, &mut b)?;
            }
        }
        for (rk, chain) in &st.delta {
            let newest = chain.iter().rev().find(|v| live(v.txn)).map(|v| v.seq);
            for v in chain.iter().filter(|v| live(v.txn)) {
                if v.txn != self.id && tip.state(v.txn) != TxnState::Active {
                    // committed or limbo: fine to index
                }
                if let Some(row) = &v.row {
                    let values = store.layout.decode(row)?.values()?;
                    note(rk, &values, Some(v.seq) == newest, &mut b)?;
                }
            }
        }
        drop(st);
        inner.write_batch(b)
    }

    /// Drops an index. Its entries are removed by sweep once no snapshot can use it.
    ///
    /// # Errors
    /// Unknown index, or its table is in use.
    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            let idx = cat.resolve_index(name)?.clone();
            if let Some(table) = cat.table(idx.table).cloned() {
                t.lock_table(&table, TableLockMode::Exclusive)?;
            }
            t.delete_object(*idx.id.as_bytes())
        })
    }

    /// Changes a table (ALTER TABLE). A change of columns (ADD, DROP) writes
    /// the table anew, under a new id, with its indexes: readers whose
    /// snapshot is older go on reading the old one. The other changes keep
    /// the rows where they are. Either way the table is locked exclusively,
    /// and a constraint added is checked against every row it holds.
    ///
    /// # Errors
    /// Unknown table or column, a name taken, a change that would break a
    /// row the table holds, a view that names the table (for a change of its
    /// columns' names or number), or the table in use.
    pub fn alter_table(&mut self, name: &str, change: &TableChange) -> Result<()> {
        self.check_writable()?;
        self.statement(|t| {
            let cat = t.catalog()?;
            if cat.table_by_name(name).is_none() && cat.view_by_name(name).is_some() {
                return Err(StorageError::InvalidDefinition {
                    object: format!("view {name}"),
                    reason: "it is a view, not a table: drop it and create it anew",
                });
            }
            let old: TableDef = (**cat.resolve_table(name)?).clone();
            if old.is_system() || old.id == system_table_id() {
                return Err(StorageError::InvalidDefinition {
                    object: format!("table {name}"),
                    reason: "system tables cannot be altered",
                });
            }
            t.lock_table(&old, TableLockMode::Exclusive)?;
            let mut new = old.clone();
            match change {
                TableChange::AddColumn(spec) => {
                    t.add_column(&cat, &old, spec)
                }
                TableChange::DropColumn(n) => t.drop_column(&old, n),
                TableChange::RenameColumn { from, to } => {
                    t.rename_column(&old, from, to)
                }
                TableChange::RenameTable { to } => t.rename_table(&cat, &old, to),
                TableChange::SetDefault {
                    column: n,
                    default,
                    default_fn,
                } => {
                    let at = column_at(&old, n)?;
                    identity_stays(&old, at, n)?;
                    if default_fn.is_some()
                        && old
                            .columns
                            .get(at)
                            .is_some_and(|c| !matches!(c.ty, SqlType::Timestamp | SqlType::Date))
                    {
                        return Err(StorageError::InvalidDefinition {
                            object: format!("column {}.{n}", old.name),
                            reason: "a DEFAULT of the statement's time (now(), CURRENT_DATE) needs a TIMESTAMP or DATE column",
                        });
                    }
                    if let (Some(c), Some(v)) = (old.columns.get(at), default) {
                        c.ty.check_value(v)
                            .map_err(|source| StorageError::ColumnValue {
                                table: old.name.clone(),
                                column: n.clone(),
                                source,
                            })?;
                    }
                    if let Some(c) = new.columns.get_mut(at) {
                        c.default = default.clone().filter(|v| !v.is_null() && default_fn.is_none());
                        c.default_fn = *default_fn;
                    }
                    t.redefine(&old, new)
                }
                TableChange::SetNotNull {
                    column: n,
                    not_null,
                } => {
                    let at = column_at(&old, n)?;
                    if !*not_null {
                        identity_stays(&old, at, n)?;
                    }
                    if !*not_null && old.primary_key.contains(&at) {
                        return Err(StorageError::ObjectInUse {
                            name: format!("{}.{n}", old.name),
                            reason: "it is part of the table's primary key, which is NOT NULL"
                                .into(),
                        });
                    }
                    if *not_null {
                        let mut nulls = false;
                        t.current_rows(&old, &mut |_, rows| {
                            nulls |= rows.iter().any(|r| r.get(at).is_none_or(Value::is_null));
                            Ok(!nulls)
                        })?;
                        if nulls {
                            return Err(StorageError::ExistingRows {
                                what: format!(
                                    "column {n} of table {} holds NULL in some rows",
                                    old.name
                                ),
                            });
                        }
                    }
                    if let Some(c) = new.columns.get_mut(at) {
                        c.nullable = !*not_null;
                    }
                    t.redefine(&old, new)
                }
                TableChange::AddCheck { name: given, expr } => {
                    t.add_check(&cat, &old, given.as_deref(), expr)
                }
                TableChange::DropCheck(n) => {
                    let before = new.checks.len();
                    new.checks.retain(|k| k.name != *n);
                    if new.checks.len() == before {
                        return Err(StorageError::NotFound {
                            kind: "constraint",
                            name: format!("{n} of table {}", old.name),
                        });
                    }
                    t.redefine(&old, new)
                }
            }
        })
    }

    /// ALTER TABLE ... ADD COLUMN `spec` to `old`.
    fn add_column(&mut self, cat: &Catalog, old: &TableDef, spec: &ColumnSpec) -> Result<()> {
        let mut new = old.clone();
        if old.columns.iter().any(|c| c.name == spec.name) {
            return Err(StorageError::AlreadyExists {
                kind: "column",
                name: format!("{}.{}", old.name, spec.name),
            });
        }
        if old.columns.len() >= TABLE_COLUMNS_MAX {
            return Err(StorageError::InvalidDefinition {
                object: format!("table {}", old.name),
                reason: "a table has at most 1024 columns",
            });
        }
        let id = TableId::from_random_bytes(self.new_random());
        let col = build_column(
            &old.name,
            spec,
            cat,
            ColumnId::from_random_bytes(self.new_random()),
        )?;
        new.id = id;
        new.columns.push(col);
        // the rows held take the default; one of the statement's
        // time takes this shard's clock's, as PostgreSQL takes
        // its own
        let now = self.inner.config.env.now_micros();
        let day = now.div_euclid(86_400_000_000);
        let fill = new.columns.last().and_then(|c| match (c.default_fn, c.ty) {
            (Some(DefaultFn::Now), SqlType::Timestamp) => {
                Some(Value::Timestamp(scratchbird_types::Timestamp(now)))
            }
            (Some(_), SqlType::Timestamp) => Some(Value::Timestamp(scratchbird_types::Timestamp(
                day * 86_400_000_000,
            ))),
            (Some(_), _) => i32::try_from(day)
                .ok()
                .map(|d| Value::Date(scratchbird_types::Date(d))),
            (None, _) => c.default.clone(),
        });
        self.rewrite(old, new, &|mut row| {
            row.push(fill.clone().unwrap_or(Value::Null));
            row
        })
    }

    /// ALTER TABLE ... RENAME TO `to` of `old`: the same table (id, rows,
    /// indexes, constraints) under another name.
    fn rename_table(&mut self, cat: &Catalog, old: &TableDef, to: &str) -> Result<()> {
        check_identifier("table", to)?;
        if cat.table_by_name(to).is_some() || cat.view_by_name(to).is_some() {
            return Err(StorageError::AlreadyExists {
                kind: "relation",
                name: to.to_owned(),
            });
        }
        self.no_views(&old.name, "rename the table")?;
        let mut new = old.clone();
        to.clone_into(&mut new.name);
        self.redefine(old, new)
    }

    /// ALTER TABLE ... RENAME COLUMN `from` TO `to` of `old`.
    fn rename_column(&mut self, old: &TableDef, from: &str, to: &str) -> Result<()> {
        let mut new = old.clone();
        let at = column_at(old, from)?;
        check_identifier("column", to)?;
        if old.columns.iter().any(|c| c.name == *to) {
            return Err(StorageError::AlreadyExists {
                kind: "column",
                name: format!("{}.{to}", old.name),
            });
        }
        self.no_views(&old.name, "rename the column")?;
        if let Some(c) = new.columns.get_mut(at) {
            to.clone_into(&mut c.name);
        }
        let renamed = new.clone();
        for k in &mut new.checks {
            let was = Check::parse_in(&k.expr, old).map(|c| c.columns());
            k.expr = crate::check::rename_column(&k.expr, from, to);
            // the expression must read the same columns under
            // the new name: a name such as NULL, 1 or one that
            // differs from another column only in case would
            // change what it says
            let now = Check::parse_in(&k.expr, &renamed).map(|c| c.columns());
            if was.is_ok() && was != now {
                return Err(StorageError::TableCheckUnsupported {
                    table: old.name.clone(),
                    constraint: k.name.clone(),
                    reason: format!(
                        "the name {to} cannot stand for column {from} in its expression; drop the constraint, rename the column, and add it again"
                    ),
                });
            }
        }
        self.redefine(old, new)
    }

    /// ALTER TABLE ... DROP COLUMN `n` of `old`.
    fn drop_column(&mut self, old: &TableDef, n: &str) -> Result<()> {
        let mut new = old.clone();
        let at = column_at(old, n)?;
        self.no_views(&old.name, "drop the column")?;
        if old.primary_key.contains(&at) {
            return Err(StorageError::ObjectInUse {
                name: format!("{}.{n}", old.name),
                reason: "it is part of the table's primary key, which keys its rows; create a new table without it and copy the rows".into(),
            });
        }
        if old.distribution.is_some() && old.placement().column() == at {
            return Err(StorageError::ObjectInUse {
                name: format!("{}.{n}", old.name),
                reason: "it places the table's rows on shards (DISTRIBUTE BY)".into(),
            });
        }
        if old.columns.len() == 1 {
            return Err(StorageError::InvalidDefinition {
                object: format!("table {}", old.name),
                reason: "a table needs at least one column: drop the table instead",
            });
        }
        new.id = TableId::from_random_bytes(self.new_random());
        new.columns.remove(at);
        let shift = |i: usize| if i > at { i - 1 } else { i };
        new.primary_key = old.primary_key.iter().map(|&i| shift(i)).collect();
        if let Some(d) = &mut new.distribution {
            match d {
                Distribution::Hash { column } | Distribution::Range { column, .. } => {
                    *column = shift(*column);
                }
            }
        }
        // the CHECKs that read the column go with it, as in SQL
        new.checks
            .retain(|k| Check::parse_in(&k.expr, old).map_or(true, |c| !c.columns().contains(&at)));
        self.rewrite(old, new, &|mut row| {
            if at < row.len() {
                row.remove(at);
            }
            row
        })
    }

    /// ALTER TABLE ... ADD [CONSTRAINT `given`] CHECK (`expr`) of `old`.
    fn add_check(
        &mut self,
        cat: &Catalog,
        old: &TableDef,
        given: Option<&str>,
        expr: &str,
    ) -> Result<()> {
        let mut new = old.clone();
        let provisional = given.map_or_else(|| format!("{}_check", old.name), str::to_owned);
        if expr.len() > CHECK_TEXT_MAX_BYTES {
            return Err(StorageError::TableCheckUnsupported {
                table: old.name.clone(),
                constraint: provisional,
                reason: format!("longer than {CHECK_TEXT_MAX_BYTES} bytes"),
            });
        }
        let check =
            Check::parse_in(expr, old).map_err(|reason| StorageError::TableCheckUnsupported {
                table: old.name.clone(),
                constraint: provisional.clone(),
                reason,
            })?;
        let taken = |n: &str| {
            old.checks.iter().any(|k| k.name == n)
                || cat.index_by_name(n).is_some_and(|i| i.table == old.id)
        };
        let cname = match given {
            Some(n) => {
                check_identifier("constraint", n)?;
                if taken(n) {
                    return Err(StorageError::AlreadyExists {
                        kind: "constraint",
                        name: format!("{n} of table {}", old.name),
                    });
                }
                n.to_owned()
            }
            None => {
                // PostgreSQL's name: after the column when
                // it reads exactly one
                let read = check.columns();
                let base = match read.as_slice() {
                    [one] => match old.columns.get(*one) {
                        Some(c) => format!("{}_{}_check", old.name, c.name),
                        None => format!("{}_check", old.name),
                    },
                    _ => format!("{}_check", old.name),
                };
                let mut n = base.clone();
                let mut k = 0u32;
                while taken(&n) {
                    k += 1;
                    n = format!("{base}{k}");
                }
                n
            }
        };
        let mut broken = false;
        self.current_rows(old, &mut |_, rows| {
            broken |= rows.iter().any(|r| !check.admits_row(r));
            Ok(!broken)
        })?;
        if broken {
            return Err(StorageError::ExistingRows {
                what: format!(
                    "check constraint {cname} of table {} is violated by some row",
                    old.name
                ),
            });
        }
        new.checks.push(TableCheck {
            name: cname,
            expr: expr.to_owned(),
        });
        self.redefine(old, new)
    }

    /// The revision an ALTER of `old` stamps on the table: a fresh id the
    /// first time this transaction alters it, else the one drawn then.
    fn revision_for(&self, old: &TableDef) -> Result<[u8; 16]> {
        let committed = self.inner.catalog_for(
            ReadView {
                me: TxnId(u64::MAX),
                snapshot: self.inner.visible(),
            },
            false,
        )?;
        let first = committed
            .table(old.id)
            .is_some_and(|t| t.revision == old.revision);
        Ok(match old.revision {
            Some(r) if !first => r,
            _ => self.new_random(),
        })
    }

    /// Refuses a change that needs `what` when a view names table `name`.
    fn no_views(&self, name: &str, what: &str) -> Result<()> {
        match self.latest_catalog()?.views_on(name).next() {
            Some(v) => Err(StorageError::ObjectInUse {
                name: name.to_owned(),
                reason: format!(
                    "view {} names it: drop that view, {what}, then create the view again",
                    v.name
                ),
            }),
            None => Ok(()),
        }
    }

    /// Puts `new` in place of `old`, a definition of the same table with the
    /// same row layout: its catalog row, and the store writers check rows
    /// against (restored if the transaction or statement is undone).
    fn redefine(&mut self, old: &TableDef, mut new: TableDef) -> Result<()> {
        new.row_layout()?;
        new.revision = Some(self.revision_for(old)?);
        let store = self.inner.table(old.id).ok_or(StorageError::Internal(
            "a table of the catalog has no store",
        ))?;
        let next = Arc::new(store.redefined(Arc::new(new.clone()))?);
        self.delete_object(*old.id.as_bytes())?;
        self.insert_object(ObjectDef::Table(new))?;
        self.inner
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(old.id, next);
        self.undo.push(Undo::Redefined(store));
        Ok(())
    }

    /// Writes the rows of `old` into the new table `new` (another id), each
    /// through `map`, then puts `new` in place of `old` with `old`'s indexes
    /// on the columns it keeps.
    fn rewrite(
        &mut self,
        old: &TableDef,
        mut new: TableDef,
        map: &dyn Fn(Vec<Value>) -> Vec<Value>,
    ) -> Result<()> {
        new.row_layout()?;
        new.revision = Some(self.revision_for(old)?);
        // the indexes as committed now: one made while this waited for the
        // lock is carried too
        let cat = self.latest_catalog()?;
        let indexes: Vec<Arc<IndexDef>> = cat.indexes_of(old.id).cloned().collect();
        let id = new.id;
        let store = Arc::new(TableStore::new(Arc::new(new.clone()))?);
        self.inner
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, store);
        self.undo.push(Undo::CreatedTable(id));
        self.inner.locks.lock_table(
            self.id,
            id,
            &new.name,
            TableLockMode::Exclusive,
            LockWait::NoWait,
        )?;
        self.shared_locked.insert(id);
        // the new column's NOT NULL without a default, said as SQL says it
        if let Some(c) = new.columns.iter().find(|c| {
            !c.nullable && c.default.is_none() && !old.columns.iter().any(|o| o.id == c.id)
        }) {
            let mut any = false;
            self.current_rows(old, &mut |_, rows| {
                any |= !rows.is_empty();
                Ok(!any)
            })?;
            if any && c.default_fn.is_some_and(DefaultFn::is_identity) {
                return Err(StorageError::ExistingRows {
                    what: format!(
                        "column {} of table {} is SERIAL or an identity column, and adding one to a table that holds rows is not supported yet (create a table with it and INSERT ... SELECT the rows into it)",
                        c.name, old.name
                    ),
                });
            }
            if any {
                return Err(StorageError::ExistingRows {
                    what: format!(
                        "column {} of table {} would hold NULL in the rows the table holds (give it a DEFAULT)",
                        c.name, old.name
                    ),
                });
            }
        }
        for i in &indexes {
            self.delete_object(*i.id.as_bytes())?;
        }
        self.delete_object(*old.id.as_bytes())?;
        self.insert_object(ObjectDef::Table(new.clone()))?;
        self.current_rows(old, &mut |t, rows| {
            let rows: Vec<(Option<Vec<u8>>, Vec<Value>)> =
                rows.into_iter().map(|r| (None, map(r))).collect();
            t.bulk_insert_inner(id, rows)?;
            Ok(true)
        })?;
        // the indexes on the columns it keeps, built anew over its rows
        for i in indexes {
            let names: Option<Vec<String>> = i
                .columns
                .iter()
                .map(|&c| old.columns.get(c).map(|c| c.name.clone()))
                .collect();
            let Some(names) = names else { continue };
            if !names
                .iter()
                .all(|n| new.columns.iter().any(|c| c.name == *n))
            {
                continue;
            }
            let spec = IndexSpec {
                name: i.name.clone(),
                table: new.name.clone(),
                columns: names,
                unique: i.unique,
                plain: i.plain,
            };
            let iid = IndexId::from_random_bytes(self.new_random());
            let def = Arc::new(build_index(&spec, iid, &new)?);
            let store = self
                .inner
                .table(id)
                .ok_or(StorageError::Internal("table without store"))?;
            store
                .indexes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(def.clone());
            self.undo.push(Undo::CreatedIndex {
                table: id,
                index: iid,
            });
            self.build_index(&store, &def)?;
            self.insert_object(ObjectDef::Index((*def).clone()))?;
        }
        Ok(())
    }

    /// Calls `f` with the rows of `table` as the latest commits and this
    /// transaction's own writes hold them (whatever its snapshot: a holder
    /// of the table's exclusive lock sees everything there is), in record
    /// key order, a batch at a time, until `f` returns `false`.
    fn current_rows(&mut self, table: &TableDef, f: &mut RowsFn<'_>) -> Result<()> {
        let store = self.inner.table(table.id).ok_or(StorageError::Internal(
            "a table of the catalog has no store",
        ))?;
        let (cn, guard) = self.inner.current_snapshot();
        let view = ReadView {
            me: self.id,
            snapshot: cn,
        };
        let cols: Vec<usize> = (0..table.columns.len()).collect();
        let mut cursor = ScanCursor::new(
            store,
            ScanSpec::full(table.id, cols),
            None,
            view,
            Some(guard),
        )?;
        let layout = cursor.layout(4096, 8 << 20)?;
        let mut buf = vec![0u8; layout.total_bytes()];
        loop {
            let n = self.advance(&mut cursor, &layout, &mut buf, None, None)?;
            if n == 0 {
                return Ok(());
            }
            let view = scratchbird_types::batch::BatchView::new(&layout, &buf)?;
            let mut rows = Vec::with_capacity(n);
            for r in 0..n {
                rows.push(view.row(r)?);
            }
            if !f(self, rows)? {
                return Ok(());
            }
        }
    }

    // ---------------------------------------------------------------- end
}

/// Refuses to drop the DEFAULT or NOT NULL of column `n` (at `at`) of `def`
/// when it is an identity column, as PostgreSQL does (a SERIAL column's
/// DEFAULT may be replaced: it then stops drawing values).
fn identity_stays(def: &TableDef, at: usize, n: &str) -> Result<()> {
    if def
        .columns
        .get(at)
        .and_then(|c| c.default_fn)
        .is_some_and(|f| matches!(f, DefaultFn::Identity | DefaultFn::IdentityAlways))
    {
        return Err(StorageError::InvalidDefinition {
            object: format!("column {}.{n}", def.name),
            reason: "it is an identity column: its DEFAULT and NOT NULL cannot be changed",
        });
    }
    Ok(())
}
