//! WITH RECURSIVE: the base term's rows and each round's new rows kept as
//! records in one array; the step reads the last round's range of it as its
//! work table, and what it makes is appended, until a round makes nothing.
//! Then every record goes to the consumer, in the order made. Under UNION
//! (not ALL) each record is also an entry of a hash directory, and a row
//! equal to one kept before (NULL equal to NULL) is not kept: the rounds end
//! once a step makes only rows already seen, so a walk over a graph with
//! cycles ends.

use super::*;
use crate::plan::{RECURSIVE_DEPTH_MAX, RECURSIVE_ROWS_MAX};

impl Gen {
    pub(super) fn recursive(
        &mut self,
        base: &Op,
        step: &Op,
        work: usize,
        distinct: bool,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let prims = self.slots(base)?;
        if self.slots(step)? != prims {
            return Err(EmitError::Plan(
                "a recursive term of other types than its base".into(),
            ));
        }
        if self.works.contains_key(&work) {
            return Err(EmitError::Plan(format!("work table {work} emitted twice")));
        }
        let all = self.vec_new();
        let width = SLOT as i32 * prims.len() as i32;
        // under UNION a record is a directory entry: its hash, then its slots
        let off = if distinct { ENTRY_HEAD } else { 0 };
        let rec = self.f.local(ValType::I32);
        let (dir, cap, count, idx, fresh) = (
            self.f.local(ValType::I32),
            self.f.local(ValType::I32),
            self.f.local(ValType::I32),
            self.f.local(ValType::I32),
            self.f.local(ValType::I32),
        );
        if distinct {
            self.dir_new(dir, cap, DIR_INITIAL);
            self.f.set_i32(count, 0);
        }
        let too_many = format!("WITH RECURSIVE made more than {RECURSIVE_ROWS_MAX} rows");
        let too_deep = format!("WITH RECURSIVE ran more than {RECURSIVE_DEPTH_MAX} rounds");
        // the row limit counts rows kept: under UNION a row seen before is
        // not one, so it is checked where a new row is kept
        let limit = |g: &mut Gen| {
            g.f.get(all.2);
            g.f.i32c(i32::try_from(RECURSIVE_ROWS_MAX).unwrap_or(i32::MAX));
            g.f.i(I::I32GeU);
            g.f.if_();
            g.fail_message(ErrorCode::LimitExceeded, too_many.as_bytes());
            g.f.end();
        };
        let mut keep = |g: &mut Gen, t: &[Val]| -> Result<(), EmitError> {
            if !distinct {
                limit(g);
                g.call_alloc_const(width.max(8), rec);
                for (k, val) in t.iter().enumerate() {
                    g.store_slot(rec, SLOT * k as u32, val, true);
                }
                g.vec_push(all, rec);
                return Ok(());
            }
            let h = g.hash_vals(t);
            g.dir_find_or_insert(
                (dir, cap, count),
                (h, t),
                ENTRY_HEAD as i32 + width.max(8),
                (rec, idx, fresh),
            );
            // a row seen before is not kept
            g.f.get(fresh);
            g.f.if_();
            limit(g);
            g.vec_push(all, rec);
            g.f.end();
            Ok(())
        };
        self.sub_pipeline(base, &mut keep)?;
        let (ws, we, depth) = (
            self.f.local(ValType::I32),
            self.f.local(ValType::I32),
            self.f.local(ValType::I32),
        );
        self.f.set_i32(ws, 0);
        self.f.get(all.2);
        self.f.set(we);
        self.f.set_i32(depth, 0);
        let done = self.f.block();
        let lp = self.f.loop_();
        // the last round made nothing: done
        self.f.get(ws);
        self.f.get(we);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        self.f.inc(depth);
        self.f.get(depth);
        self.f
            .i32c(i32::try_from(RECURSIVE_DEPTH_MAX).unwrap_or(i32::MAX));
        self.f.i(I::I32GtU);
        self.f.if_();
        self.fail_message(ErrorCode::LimitExceeded, too_deep.as_bytes());
        self.f.end();
        self.works.insert(work, (all.0, ws, we, off));
        let r = self.sub_pipeline(step, &mut keep);
        self.works.remove(&work);
        r?;
        self.f.get(we);
        self.f.set(ws);
        self.f.get(all.2);
        self.f.set(we);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        self.records_walk((all.0, all.2), off, &prims, &mut |g, t, _| consume(g, &t))
    }

    /// The last round's records of recursion `work`.
    pub(super) fn work_table(
        &mut self,
        work: usize,
        prims: &[Prim],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let (arr, ws, we, off) = *self.works.get(&work).ok_or_else(|| {
            EmitError::Plan(format!("work table {work} read outside its recursion"))
        })?;
        self.records_walk_range((arr, ws, we), off, prims, &mut |g, t, _| consume(g, &t))
    }

    /// Fails the query with `code` and the message `msg`.
    fn fail_message(&mut self, code: ErrorCode, msg: &[u8]) {
        let at = self.string(msg);
        self.f.i32c(code as i32);
        self.f.i32c(i32::try_from(at).unwrap_or(0));
        self.f.i32c(i32::try_from(msg.len()).unwrap_or(0));
        self.f.i(I::Call(super::super::FAIL_FN));
        self.f.i(I::Unreachable);
    }
}
