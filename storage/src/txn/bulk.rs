//! Bulk loading: rows written straight into new pages, bypassing the
//! per-row delta.

use super::*;

/// Fewest rows [`Transaction::insert_many`] writes as a bulk load: fewer go in
/// row by row (a page for a handful of rows would leave the table in many
/// small pages).
pub(crate) const BULK_ROWS_MIN: usize = 128;

impl Transaction {
    /// Loads rows straight into pages, for large appends. The table is locked
    /// exclusively for the rest of the transaction. Rows must come in ascending key
    /// order, above every key already in the table (always true for a table without
    /// primary key). Returns the number of rows loaded.
    ///
    /// # Errors
    /// Order, NOT NULL, type or unique violations (nothing of the load remains).
    pub fn bulk_insert(
        &mut self,
        table: TableId,
        rows: impl IntoIterator<Item = Vec<Value>>,
    ) -> Result<u64> {
        self.statement(|t| t.bulk_insert_inner(table, rows.into_iter().map(|r| (None, r))))
    }

    /// Inserts `rows` (values for every column of the table) as one
    /// statement. The rows whose keys are above every key the table holds go
    /// in as a bulk load straight into pages, in key order, when they are at
    /// least [`BULK_ROWS_MIN`] and the table's exclusive lock is free at once
    /// (the table then stays locked exclusively for the rest of the
    /// transaction); the others go in row by row, as [`Transaction::insert`]
    /// puts them. Either way the same checks apply (types, NOT NULL, domains,
    /// unique keys, placement). COPY's write path. Returns the rows inserted.
    ///
    /// # Errors
    /// As [`Transaction::insert`] (nothing of the rows remains).
    pub fn insert_many(&mut self, table: TableId, rows: Vec<Vec<Value>>) -> Result<u64> {
        self.statement(|t| {
            let (def, store) = t.table_for_write(table)?;
            if rows.len() < BULK_ROWS_MIN {
                return t.insert_rows(table, rows);
            }
            if def.is_keyless() {
                return if t.locked_now(&def)? {
                    t.bulk_insert_inner(table, rows.into_iter().map(|r| (None, r)))
                } else {
                    t.insert_rows(table, rows)
                };
            }
            let mut keyed: Vec<(Vec<u8>, Vec<Value>)> = Vec::with_capacity(rows.len());
            let mut rows = rows.into_iter();
            for values in rows.by_ref() {
                match store.key_of_values(&values) {
                    Ok(k) => keyed.push((k, values)),
                    Err(_) => {
                        // the row path says what is wrong with it
                        let all = keyed
                            .into_iter()
                            .map(|(_, r)| r)
                            .chain([values])
                            .chain(rows);
                        return t.insert_rows(table, all);
                    }
                }
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            let max: Option<Vec<u8>> = {
                let st = store.read();
                let a = st.pages.values().next_back().map(|m| m.last_key.clone());
                let b = st.delta.keys().next_back().cloned();
                a.into_iter().chain(b).max()
            };
            let at = keyed.partition_point(|(k, _)| max.as_ref().is_some_and(|m| k <= m));
            let above = keyed.split_off(at);
            let distinct = above
                .windows(2)
                .all(|w| w.first().map(|x| &x.0) < w.get(1).map(|x| &x.0));
            if above.len() < BULK_ROWS_MIN || !distinct || !t.locked_now(&def)? {
                // a key given twice is a violation the row path names
                let all = keyed.into_iter().chain(above).map(|(_, r)| r);
                return t.insert_rows(table, all);
            }
            let mut n = t.insert_rows(table, keyed.into_iter().map(|(_, r)| r))?;
            n += t.bulk_insert_inner(table, above.into_iter().map(|(k, r)| (Some(k), r)))?;
            Ok(n)
        })
    }

    fn insert_rows(
        &mut self,
        table: TableId,
        rows: impl IntoIterator<Item = Vec<Value>>,
    ) -> Result<u64> {
        let mut n = 0u64;
        for r in rows {
            self.insert_row(table, r)?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether this transaction holds `def`'s exclusive lock, taking it when
    /// it is free now (no wait: another transaction writing the table keeps
    /// a load on the row path).
    fn locked_now(&mut self, def: &TableDef) -> Result<bool> {
        if self.inner.locks.holds_exclusive(self.id, def.id) {
            return Ok(true);
        }
        let wait = std::mem::replace(&mut self.opts.wait, crate::locks::LockWait::NoWait);
        let locked = self.lock_table(def, TableLockMode::Exclusive);
        self.opts.wait = wait;
        match locked {
            Ok(()) => Ok(true),
            Err(StorageError::ObjectInUse { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The rows, each with its record key when the caller computed it
    /// already (`insert_many` sorts by it).
    pub(super) fn bulk_insert_inner(
        &mut self,
        table: TableId,
        rows: impl IntoIterator<Item = (Option<Vec<u8>>, Vec<Value>)>,
    ) -> Result<u64> {
        let (def, store) = self.table_for_write(table)?;
        self.lock_table(&def, TableLockMode::Exclusive)?;
        let mut max_key: Option<Vec<u8>> = {
            let st = store.read();
            let a = st.pages.values().next_back().map(|m| m.last_key.clone());
            let b = st.delta.keys().next_back().cloned();
            a.into_iter().chain(b).max()
        };
        let indexes = store.index_defs();
        let enforced = self.enforced_unique(&store)?;
        let mut seen: HashMap<IndexId, HashSet<Vec<u8>>> = HashMap::new();
        let target = self.inner.config.page_target_bytes;
        let mut builder = PageBuilder::new(&store.types);
        let mut first: Option<Vec<u8>> = None;
        let mut entries: Vec<Vec<u8>> = Vec::new();
        let mut count = 0u64;
        for (given, values) in rows {
            encode_checked_values(&def, &store, &values)?;
            self.check_placed(&def, &values)?;
            let key = match given {
                Some(k) => k,
                None if def.is_keyless() => next_rowid_key(&store),
                None => store.key_of_values(&values)?,
            };
            if max_key.as_ref().is_some_and(|m| key <= *m) {
                return Err(StorageError::BulkLoad {
                    table: def.name.clone(),
                    reason: "rows must come in ascending key order, above every existing key; use insert for other rows",
                });
            }
            for idx in &indexes {
                let ik = store.index_key_of(idx, &values)?;
                if enforced.contains(&idx.id) && !has_null(idx, &values) {
                    let fresh = seen.entry(idx.id).or_default().insert(ik.clone());
                    let st = store.read();
                    let existing = if fresh {
                        self.unique_conflict(&store, &st, &key, idx, &ik, &values)?
                    } else {
                        None
                    };
                    if !fresh || existing.is_some() {
                        return Err(StorageError::UniqueViolation {
                            index: idx.name.clone(),
                            table: def.name.clone(),
                            key: describe_values(idx, &values),
                        });
                    }
                }
                entries.push(index_key(idx.id, &ik, &key)?);
            }
            if first.is_none() {
                first = Some(key.clone());
            }
            builder.push_values(&key, &values)?;
            max_key = Some(key);
            count += 1;
            if builder.rows() >= PAGE_ROWS_MAX || builder.bytes() >= target {
                let full = std::mem::replace(&mut builder, PageBuilder::new(&store.types));
                self.flush_bulk_page(&store, full, first.take(), std::mem::take(&mut entries))?;
            }
        }
        if builder.rows() > 0 {
            self.flush_bulk_page(&store, builder, first.take(), entries)?;
        }
        Ok(count)
    }

    fn flush_bulk_page(
        &mut self,
        store: &Arc<TableStore>,
        builder: PageBuilder,
        first: Option<Vec<u8>>,
        entries: Vec<Vec<u8>>,
    ) -> Result<()> {
        let first = first.ok_or(StorageError::Internal("bulk page without a first key"))?;
        let last_key = builder.last_key().map(<[u8]>::to_vec).unwrap_or_default();
        let rows =
            u32::try_from(builder.rows()).map_err(|_| StorageError::Internal("page rows"))?;
        let counted = self
            .loaded
            .entry(store.def.id)
            .or_insert_with(|| (vec![crate::stats::Sketch::default(); store.types.len()], 0));
        builder.sketch_into(&mut counted.0);
        counted.1 += u64::from(rows);
        let bytes = builder.finish(self.id)?;
        let inner = self.inner.clone();
        let pk = page_key(store.def.id, &first);
        let meta = PageMeta {
            creator: self.id,
            generation: crate::table::next_generation(),
            rows,
            bytes: u32::try_from(bytes.len()).map_err(|_| StorageError::Internal("page size"))?,
            last_key,
        };
        let mut b = inner.db.batch();
        if !self.wrote {
            let rec = TipRecord {
                state: TxnState::Active,
                commit_ts: 0,
            };
            b.insert(&inner.ks.tip, tip_key(self.id), encode_record(self.id, rec));
        }
        b.insert(&inner.ks.pagedir, pk.clone(), encode_page_meta(&pk, &meta));
        let sealed = crate::codec::seal(&pk, bytes);
        b.insert(&inner.ks.pages, pk, sealed);
        for e in entries {
            b.insert(&inner.ks.index, e, Vec::<u8>::new());
        }
        b.insert(
            &inner.ks.txlog,
            txlog_key(self.id, self.txlog_seq),
            encode_bulk_page(self.id, self.txlog_seq, store.def.id, &first)?,
        );
        inner.write_batch(b)?;
        self.wrote = true;
        self.txlog_seq += 1;
        store.write().pages.insert(first.clone(), meta);
        self.undo.push(Undo::BulkPage {
            table: store.def.id,
            first,
        });
        Ok(())
    }

    // ---------------------------------------------------------------- DDL
}
