//! Schema changes in a transaction: tables, domains and indexes created and
//! dropped as rows of `SB$OBJECTS`, and a new index built over the rows its
//! table holds.

use super::*;

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

    // ---------------------------------------------------------------- end
}
