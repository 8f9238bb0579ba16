//! Bulk loading: rows written straight into new pages, bypassing the
//! per-row delta.

use super::*;

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
        self.statement(|t| t.bulk_insert_inner(table, rows))
    }

    fn bulk_insert_inner(
        &mut self,
        table: TableId,
        rows: impl IntoIterator<Item = Vec<Value>>,
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
        for values in rows {
            encode_checked_values(&def, &store, &values)?;
            let key = if def.is_keyless() {
                next_rowid_key(&store)
            } else {
                store.key_of_values(&values)?
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
