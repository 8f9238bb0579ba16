//! Init plans (uncorrelated subqueries run once) and IN-set probes.

use super::*;

impl Gen {
    /// Runs an init plan before the main pipelines and records where its result is.
    pub(crate) fn init_plan(&mut self, init: &crate::plan::InitPlan) -> Result<(), EmitError> {
        use crate::plan::InitPlan;
        let slot = match init {
            InitPlan::Scalar(op) => {
                let prims = self.slots(op)?;
                let [prim] = prims.as_slice() else {
                    return Err(EmitError::Plan(
                        "a scalar subquery must return one column".into(),
                    ));
                };
                let prim = *prim;
                let addr = self.static_alloc(SLOT, 16);
                let base = self.f.local(ValType::I32);
                let seen = self.f.local(ValType::I32);
                self.f.set_i32(base, addr as i32);
                self.slot_null(base, prim);
                self.f.set_i32(seen, 0);
                self.sub_pipeline(op, &mut |g, t| {
                    let v = *t
                        .first()
                        .ok_or_else(|| EmitError::Plan("scalar subquery".into()))?;
                    g.f.get(seen);
                    g.f.if_();
                    fail(&mut g.f, ErrorCode::CardinalityViolation);
                    g.f.end();
                    g.f.set_i32(seen, 1);
                    g.store_slot(base, 0, &v, true);
                    Ok(())
                })?;
                InitSlot::Scalar { addr, prim }
            }
            InitPlan::Exists(op) => {
                let addr = self.static_alloc(4, 4);
                self.f.i32c(addr as i32);
                self.f.i32c(0);
                self.f.i(I::I32Store(mem(0, 2)));
                self.sub_pipeline(op, &mut |g, _t| {
                    g.f.i32c(addr as i32);
                    g.f.i32c(1);
                    g.f.i(I::I32Store(mem(0, 2)));
                    // one row decides it
                    let exit = *g
                        .exit
                        .last()
                        .ok_or_else(|| EmitError::Plan("EXISTS outside a pipeline".into()))?;
                    g.f.br(exit);
                    Ok(())
                })?;
                InitSlot::Exists { addr }
            }
            InitPlan::Set(op) => {
                let prims = self.slots(op)?;
                let [prim] = prims.as_slice() else {
                    return Err(EmitError::Plan(
                        "an IN subquery must return one column".into(),
                    ));
                };
                let prim = *prim;
                let dir = self.f.local(ValType::I32);
                let cap = self.f.local(ValType::I32);
                let count = self.f.local(ValType::I32);
                let has_null = self.f.local(ValType::I32);
                let e = self.f.local(ValType::I32);
                let idx = self.f.local(ValType::I32);
                let fresh = self.f.local(ValType::I32);
                self.dir_new(dir, cap, DIR_INITIAL);
                self.f.set_i32(count, 0);
                self.f.set_i32(has_null, 0);
                let entry_bytes = (ENTRY_HEAD + SLOT) as i32;
                self.sub_pipeline(op, &mut |g, t| {
                    let v = *t
                        .first()
                        .ok_or_else(|| EmitError::Plan("IN subquery".into()))?;
                    if let Some(n) = v.null {
                        g.f.get(n);
                        g.f.if_();
                        g.f.set_i32(has_null, 1);
                        g.f.end();
                        g.f.get(n);
                        g.br_cont()?;
                    }
                    let v = Val { null: None, ..v };
                    let h = g.hash_vals(&[v]);
                    g.dir_find_or_insert(
                        (dir, cap, count),
                        (h, &[v]),
                        entry_bytes,
                        (e, idx, fresh),
                    );
                    Ok(())
                })?;
                InitSlot::Set {
                    dir,
                    cap,
                    count,
                    has_null,
                    prim,
                }
            }
        };
        self.inits.push(slot);
        Ok(())
    }

    pub(super) fn init_slot(&self, i: usize) -> Result<InitSlot, EmitError> {
        self.inits
            .get(i)
            .copied()
            .ok_or_else(|| EmitError::Plan(format!("init plan {i} is not computed before its use")))
    }

    /// The value of a scalar or EXISTS init plan.
    pub(crate) fn init_value(&mut self, i: usize) -> Result<Val, EmitError> {
        match self.init_slot(i)? {
            InitSlot::Scalar { addr, prim } => {
                let base = self.f.local(ValType::I32);
                self.f.set_i32(base, addr as i32);
                Ok(self.load_slot(base, 0, prim))
            }
            InitSlot::Exists { addr } => {
                let v = self.fresh(Prim::Bool, false);
                self.f.i32c(addr as i32);
                self.f.i(I::I32Load(mem(0, 2)));
                self.f.set(v.v);
                Ok(v)
            }
            InitSlot::Set { .. } => Err(EmitError::Plan("an IN set used as a value".into())),
        }
    }

    /// `v IN (set i)` with SQL's NULL rules.
    pub(crate) fn in_set(&mut self, v: &Val, i: usize) -> Result<Val, EmitError> {
        let InitSlot::Set {
            dir,
            cap,
            count,
            has_null,
            prim,
        } = self.init_slot(i)?
        else {
            return Err(EmitError::Plan("IN needs a set".into()));
        };
        if prim != v.prim {
            return Err(EmitError::Plan(
                "IN compares values of different types".into(),
            ));
        }
        let out = self.fresh(Prim::Bool, true);
        let on = out.null.unwrap_or(0);
        let found = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        let idx = self.f.local(ValType::I32);
        self.f.set_i32(found, 0);
        let body = |g: &mut Gen| -> Result<(), EmitError> {
            let nv = Val { null: None, ..*v };
            let h = g.hash_vals(&[nv]);
            g.f.get(h);
            g.f.i(I::I32WrapI64);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.set(idx);
            let done = g.f.block();
            let probe = g.f.loop_();
            g.dir_slot(dir, idx);
            g.f.i(I::I32Load(mem(0, 2)));
            g.f.set(e);
            g.f.get(e);
            g.f.i(I::I32Eqz);
            g.f.br_if(done);
            g.f.get(e);
            g.f.i(I::I64Load(mem(0, 3)));
            g.f.get(h);
            g.f.i(I::I64Eq);
            g.f.if_();
            g.keys_equal(e, ENTRY_HEAD, &[nv]);
            g.f.set(found);
            g.f.get(found);
            g.f.br_if(done);
            g.f.end();
            g.f.get(idx);
            g.f.i32c(1);
            g.f.i(I::I32Add);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.set(idx);
            g.f.br(probe);
            g.f.end();
            g.f.end();
            Ok(())
        };
        match v.null {
            Some(n) => {
                self.f.get(n);
                self.f.i(I::I32Eqz);
                self.f.if_();
                body(self)?;
                self.f.end();
            }
            None => body(self)?,
        }
        // TRUE if found; FALSE for an empty set (even when v is NULL); NULL if v is
        // NULL, or not found and the set holds a NULL
        self.f.get(found);
        self.f.set(out.v);
        self.push_null(v);
        self.f.get(count);
        self.f.get(has_null);
        self.f.i(I::I32Or);
        self.f.i32c(0);
        self.f.i(I::I32Ne);
        self.f.i(I::I32And);
        self.f.get(found);
        self.f.i(I::I32Eqz);
        self.f.get(has_null);
        self.f.i(I::I32And);
        self.f.i(I::I32Or);
        self.f.set(on);
        Ok(out)
    }

    // ------------------------------------------------------------------- sinks
}
