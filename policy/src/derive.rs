//! Enforcement derivation: for one security context and one table, what the shard
//! host enforces. A pure function of (bundle, context, table), cached.
//!
//! * Grants (`Select`, `Insert`, `Update`, `Delete` on `Table::"t"`), column rules
//!   (`ReadColumn` on `Column::"t.c"`) and unmasking (`Unmask` on `Domain::"d"`) are
//!   ordinary Cedar decisions: the principal and context are known.
//! * Row filters (`Read`, and `Write` for rows written) depend on the row: Cedar's
//!   type-aware partial evaluation leaves a residual per policy over `resource`,
//!   which is translated to the predicate IR (`crate::ir`). A residual that cannot be
//!   translated makes the filter fall back to calling Cedar for every row. Nothing
//!   defaults to allow: a failure to derive is an error.

use crate::bundle::{AttrKind, Bundle, RowType};
use crate::error::{PolicyError, Result};
use crate::ir::{Filter, Rows, Translate, Untranslatable};
use crate::limits::{DERIVATION_CACHE_ENTRIES_MAX, FALLBACK_ROWS_MAX};
use crate::mask::MaskFn;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PartialEntityUid, PartialRequest, PolicyId, Request, RestrictedExpression,
};
use scratchbird_types::schema::{ColumnDef, Schema, SchemaVersion, TableDef};
use scratchbird_types::{BundleHash, ColumnId, SqlType, TableId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

pub use cedar_policy::Effect;

/// A principal's ancestors (roles, groups, managers) and attributes, rendered, from
/// the bundle's entity data.
///
/// # Errors
/// The principal is malformed or not in the bundle.
pub fn describe_principal(bundle: &Bundle, principal: &str) -> Result<(Vec<String>, Vec<String>)> {
    let uid = EntityUid::from_str(principal).map_err(|e| PolicyError::InvalidContext {
        reason: format!(
            "principal {principal:?} is not an entity reference like User::\"alice\": {e}"
        ),
    })?;
    let entity = bundle
        .entities
        .get(&uid)
        .ok_or_else(|| PolicyError::UnknownPrincipal {
            principal: principal.to_owned(),
        })?;
    let mut roles: Vec<String> = bundle
        .entities
        .ancestors(&uid)
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    roles.sort();
    let json = entity
        .to_json_value()
        .map_err(|e| PolicyError::Evaluation {
            reason: e.to_string(),
        })?;
    let attrs = json
        .get("attrs")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            let mut v: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} = {}", render_value(v)))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    Ok((roles, attrs))
}

/// An attribute value as a policy author writes it: entities as `Type::"id"`,
/// extension values as calls (`decimal("1.5")`), everything else as JSON.
fn render_value(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            if let Some(J::Object(e)) = m.get("__entity")
                && let (Some(J::String(t)), Some(J::String(i))) = (e.get("type"), e.get("id"))
            {
                return format!("{t}::{}", J::String(i.clone()));
            }
            if let Some(J::Object(x)) = m.get("__extn")
                && let (Some(J::String(f)), Some(a)) = (x.get("fn"), x.get("arg"))
            {
                return format!("{f}({})", render_value(a));
            }
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", render_value(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        J::Array(a) => format!(
            "[{}]",
            a.iter().map(render_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// Whether `ctx`'s principal may see the domain's values unmasked.
///
/// # Errors
/// As [`derive`].
pub fn may_unmask(bundle: &Arc<Bundle>, ctx: &SecurityContext, domain: &str) -> Result<bool> {
    Ctx::new(bundle, ctx)?.decide("Unmask", uid(&bundle.names.domain, domain))
}

/// Whether `ctx`'s principal may see, in `EXPLAIN ANALYZE`, how many rows of
/// `table` the row policy hid and how many values masks changed: the
/// bundle's [`crate::bundle::INSPECT_ACTION`] on `Table::"table"`. A bundle
/// that does not declare the action permits it to nobody.
///
/// # Errors
/// As [`derive`].
pub fn may_inspect(bundle: &Arc<Bundle>, ctx: &SecurityContext, table: &str) -> Result<bool> {
    if !bundle.declares_action(crate::bundle::INSPECT_ACTION) {
        return Ok(false);
    }
    Ctx::new(bundle, ctx)?.decide(
        crate::bundle::INSPECT_ACTION,
        uid(&bundle.names.table, table),
    )
}

/// A change to the schema, as the bundle's schema actions name it
/// ([`crate::bundle::SCHEMA_ACTIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaAction {
    /// `Create`: CREATE TABLE, CREATE DOMAIN.
    Create,
    /// `Alter`: CREATE INDEX and DROP INDEX on a table (and ALTER TABLE).
    Alter,
    /// `Drop`: DROP TABLE, DROP DOMAIN.
    Drop,
}

impl SchemaAction {
    /// The Cedar action's id.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Alter => "Alter",
            Self::Drop => "Drop",
        }
    }
}

/// What a schema change acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaObject<'a> {
    /// `Table::"t"`.
    Table(&'a str),
    /// `Domain::"d"`.
    Domain(&'a str),
}

impl std::fmt::Display for SchemaObject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Table(t) => write!(f, "Table::{t:?}"),
            Self::Domain(d) => write!(f, "Domain::{d:?}"),
        }
    }
}

/// Whether `ctx`'s principal may make the schema change `action` on `object`,
/// and the `@record` reasons of the policies that permitted it. A bundle that
/// does not declare the action permits it to nobody.
///
/// # Errors
/// As [`derive`].
pub fn may_change_schema(
    bundle: &Arc<Bundle>,
    ctx: &SecurityContext,
    action: SchemaAction,
    object: SchemaObject<'_>,
) -> Result<(bool, Vec<String>)> {
    if !bundle.declares_action(action.name()) {
        return Ok((false, Vec::new()));
    }
    let mut c = Ctx::new(bundle, ctx)?;
    let resource = match object {
        SchemaObject::Table(t) => uid(&bundle.names.table, t),
        SchemaObject::Domain(d) => uid(&bundle.names.domain, d),
    };
    let allowed = c.decide(action.name(), resource)?;
    Ok((allowed, c.recorded.into_iter().collect()))
}

/// Who asks, and in what session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecurityContext {
    /// The principal, as a Cedar entity reference (`User::"alice"`).
    pub principal: String,
    /// The session context: a JSON record of the schema's context type (for example
    /// `{"break_glass": true}`).
    pub context: serde_json::Value,
}

impl SecurityContext {
    /// A context with an empty session record.
    #[must_use]
    pub fn new(principal: &str) -> Self {
        Self {
            principal: principal.to_owned(),
            context: serde_json::json!({}),
        }
    }
}

/// The grants of a principal on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants {
    /// `Select`
    pub select: bool,
    /// `Insert`
    pub insert: bool,
    /// `Update`
    pub update: bool,
    /// `Delete`
    pub delete: bool,
}

/// How rows are decided.
#[derive(Debug, Clone)]
pub enum RowFilter {
    /// Every row.
    All,
    /// No row.
    None,
    /// The translated residuals, evaluated a batch at a time.
    Predicate(Filter),
    /// Cedar, called for every row (a residual could not be translated).
    Cedar(Box<CedarPerRow>),
}

/// The fallback: the original policies, evaluated per row by Cedar.
#[derive(Debug, Clone)]
pub struct CedarPerRow {
    bundle: Arc<Bundle>,
    principal: EntityUid,
    action: EntityUid,
    context: Context,
    row: RowType,
    /// Why the residual could not be translated.
    pub reason: String,
}

impl RowFilter {
    /// The row attributes (columns) the filter reads: what a scan must fetch to
    /// decide rows, even when the query does not read them.
    #[must_use]
    pub fn attributes(&self) -> std::collections::BTreeSet<String> {
        match self {
            Self::All | Self::None => std::collections::BTreeSet::new(),
            Self::Predicate(f) => f.attributes(),
            Self::Cedar(c) => c.row.attrs.keys().cloned().collect(),
        }
    }

    /// Which of `rows` are allowed.
    ///
    /// # Errors
    /// The filter reads a column holding values policies cannot read (the bundle
    /// and the catalog disagree on its type), or the Cedar fallback could not build
    /// a row or refused more rows than its limit.
    pub fn eval(&self, rows: &Rows<'_>) -> Result<Vec<bool>> {
        match self {
            Self::All => Ok(vec![true; rows.len()]),
            Self::None => Ok(vec![false; rows.len()]),
            Self::Predicate(f) => {
                refuse_opaque(rows, |name| f.attributes().contains(name))?;
                Ok(f.eval(rows))
            }
            Self::Cedar(c) => {
                refuse_opaque(rows, |name| c.row.attrs.contains_key(name))?;
                c.eval(rows)
            }
        }
    }
}

impl RowFilter {
    /// As [`RowFilter::eval`], as a bitset: bit `r % 64` of word `r / 64` is row
    /// `r`'s verdict; `ceil(n / 64)` words, bits past the last row clear.
    ///
    /// # Errors
    /// As [`RowFilter::eval`].
    pub fn eval_words(&self, rows: &Rows<'_>) -> Result<Vec<u64>> {
        let n = rows.len();
        let all = |on: bool| {
            let mut v = vec![if on { u64::MAX } else { 0 }; n.div_ceil(64)];
            if on
                && !n.is_multiple_of(64)
                && let Some(last) = v.last_mut()
            {
                *last = (1u64 << (n % 64)) - 1;
            }
            v
        };
        match self {
            Self::All => Ok(all(true)),
            Self::None => Ok(all(false)),
            Self::Predicate(f) => {
                refuse_opaque(rows, |name| f.attributes().contains(name))?;
                Ok(f.eval_words(rows))
            }
            Self::Cedar(_) => {
                let mut v = all(false);
                for (r, keep) in self.eval(rows)?.into_iter().enumerate() {
                    if keep && let Some(w) = v.get_mut(r / 64) {
                        *w |= 1 << (r % 64);
                    }
                }
                Ok(v)
            }
        }
    }
}

/// A value of a type Cedar cannot be given would be an error in every condition that
/// reads it, and an erroring forbid does not apply: rather than decide rows a policy
/// cannot see, refuse the batch.
fn refuse_opaque(rows: &Rows<'_>, reads: impl Fn(&str) -> bool) -> Result<()> {
    for name in rows.opaque_columns() {
        if reads(name) {
            return Err(PolicyError::Evaluation {
                reason: format!(
                    "column {name} holds values the bundle's policies cannot read as the attribute's type; the bundle and the catalog disagree (run `sb bundle check --catalog`)"
                ),
            });
        }
    }
    Ok(())
}

impl CedarPerRow {
    fn eval(&self, rows: &Rows<'_>) -> Result<Vec<bool>> {
        if rows.len() > FALLBACK_ROWS_MAX {
            return Err(PolicyError::LimitExceeded {
                limit: "FALLBACK_ROWS_MAX",
                max: FALLBACK_ROWS_MAX as u64,
                needed: rows.len() as u64,
            });
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in 0..rows.len() {
            let (uid, entities) = row_entities(&self.bundle, &self.row, rows, r)?;
            let req = Request::new(
                self.principal.clone(),
                self.action.clone(),
                uid,
                self.context.clone(),
                Some(&self.bundle.schema),
            )
            .map_err(|e| PolicyError::Evaluation {
                reason: e.to_string(),
            })?;
            let resp = Authorizer::new().is_authorized(&req, &self.bundle.policies, &entities);
            out.push(resp.decision() == Decision::Allow);
        }
        Ok(out)
    }
}

/// The Cedar entities for evaluating one row: the bundle's, plus the row itself
/// (attributes from the row's columns; its parent from the `@parent` column).
///
/// # Errors
/// The row's values cannot be expressed as Cedar values.
pub fn row_entities(
    bundle: &Bundle,
    row: &RowType,
    rows: &Rows<'_>,
    r: usize,
) -> Result<(EntityUid, Entities)> {
    let uid = EntityUid::from_type_name_and_id(
        row.entity_type.clone(),
        EntityId::new(format!("row-{r}")),
    );
    let mut attrs = HashMap::new();
    let mut parents = HashSet::new();
    for name in row.attrs.keys() {
        if rows.is_opaque_at(name, r) {
            return Err(PolicyError::Evaluation {
                reason: format!(
                    "column {name} holds a value the bundle's policies cannot read as the attribute's type; the bundle and the catalog disagree (run `sb bundle check --catalog`)"
                ),
            });
        }
        if let Some(v) = rows.restricted(name, r) {
            attrs.insert(name.clone(), v);
        }
    }
    if let Some((col, parent_ty)) = &row.parent
        && let Some(id) = rows.string(col, r)
    {
        parents.insert(EntityUid::from_type_name_and_id(
            parent_ty.clone(),
            EntityId::new(id),
        ));
    }
    let entity = Entity::new(uid.clone(), attrs, parents).map_err(|e| PolicyError::Evaluation {
        reason: e.to_string(),
    })?;
    // No schema here: a row whose values do not match the declared types must still
    // be evaluated (and fail) as Cedar would, not be refused before.
    let entities = bundle
        .entities
        .clone()
        .add_entities([entity], None)
        .map_err(|e| PolicyError::Evaluation {
            reason: e.to_string(),
        })?;
    Ok((uid, entities))
}

impl Rows<'_> {
    /// Column `name` of row `r` as a Cedar value, `None` if missing.
    #[must_use]
    pub fn restricted(&self, name: &str, r: usize) -> Option<RestrictedExpression> {
        use crate::ir::ColData;
        let c = self.column(name)?;
        if !c.present.get(r).copied().unwrap_or(false) {
            return None;
        }
        Some(match &c.data {
            ColData::Long(v) => RestrictedExpression::new_long(*v.get(r)?),
            ColData::Bool(v) => RestrictedExpression::new_bool(*v.get(r)?),
            ColData::Str(v) => RestrictedExpression::new_string((*v.get(r)?).to_owned()),
            ColData::Dec(v) => {
                let u = *v.get(r)?;
                let sign = if u < 0 { "-" } else { "" };
                let a = u.unsigned_abs();
                RestrictedExpression::new_decimal(format!("{sign}{}.{:04}", a / 10_000, a % 10_000))
            }
            // Filters refuse such rows before calling Cedar (`refuse_opaque`); there is
            // no Cedar value to give.
            ColData::Opaque => return None,
        })
    }

    /// Column `name` of row `r` if it is a string.
    #[must_use]
    pub fn string(&self, name: &str, r: usize) -> Option<String> {
        use crate::ir::ColData;
        let c = self.column(name)?;
        if !c.present.get(r).copied().unwrap_or(false) {
            return None;
        }
        match &c.data {
            ColData::Str(v) => v.get(r).map(|s| (*s).to_owned()),
            _ => None,
        }
    }
}

/// A column's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRule {
    /// The column.
    pub column: String,
    /// Whether the principal may read it (a subplan that references a column it may
    /// not read fails whole).
    pub readable: bool,
    /// The mask applied to its values, if the principal may not unmask its domain.
    pub mask: Option<(String, MaskFn)>,
}

/// A policy that decides rows, with its effect and its residual condition as text.
pub type DecidingPolicy = (PolicyId, Effect, String);

/// What the host enforces for one context on one table.
#[derive(Debug, Clone)]
pub struct Enforcement {
    /// The bundle it was derived from.
    pub bundle: BundleHash,
    /// The table.
    pub table: String,
    /// Grants.
    pub grants: Grants,
    /// Rows that may be read.
    pub read: RowFilter,
    /// Rows that may be written (every new row version must pass).
    pub write: RowFilter,
    /// One rule per column, in table order.
    pub columns: Vec<ColumnRule>,
    /// Reasons to record in the audit trail: the `@record("...")` annotations of
    /// policies that take part in these decisions (for example a break-glass rule).
    pub recorded: Vec<String>,
    /// Policies whose residual is what decides rows, for explanation.
    pub read_policies: Vec<DecidingPolicy>,
}

/// The canonical text of a JSON value (sorted keys), for cache keys.
fn canonical_text(v: &serde_json::Value) -> String {
    let c = crate::canonical::to_cbor(v);
    scratchbird_types::hex(&crate::canonical::bytes(&c))
}

/// (principal, canonical context, table, schema version): derivation is a pure
/// function of these and the bundle.
type CacheKey = (String, String, TableId, SchemaVersion);

/// Derives enforcement from one bundle, with a cache per (principal, context,
/// table, schema version).
#[derive(Debug)]
pub struct Deriver {
    bundle: Arc<Bundle>,
    cache: Mutex<HashMap<CacheKey, Arc<Enforcement>>>,
    per_row: bool,
}

impl Deriver {
    /// A deriver for `bundle`.
    #[must_use]
    pub fn new(bundle: Arc<Bundle>) -> Self {
        Self {
            bundle,
            cache: Mutex::new(HashMap::new()),
            per_row: false,
        }
    }

    /// A deriver for `bundle` that derives grants, column rules and masks as
    /// [`Deriver::new`] does but leaves every row policy that depends on the row
    /// to Cedar's authorizer, row by row ([`RowFilter::Cedar`]): the reference
    /// the derived predicates are checked and measured against. Same decisions,
    /// far slower.
    #[must_use]
    pub fn per_row(bundle: Arc<Bundle>) -> Self {
        Self {
            per_row: true,
            ..Self::new(bundle)
        }
    }

    /// The bundle.
    #[must_use]
    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.bundle
    }

    /// Checks that `ctx` names a principal the bundle knows and carries a
    /// session context of the schema's context type, before any derivation needs
    /// it (a node checks a client's context when it binds it).
    ///
    /// # Errors
    /// Unknown principal, or a context that does not match the schema.
    pub fn check_context(&self, ctx: &SecurityContext) -> Result<()> {
        let mut c = Ctx::new(&self.bundle, ctx)?;
        // a request as every derivation makes one (on any table: the context's
        // type is the action's, whatever the resource), validated by the schema
        let table = self
            .bundle
            .tables()
            .keys()
            .next()
            .cloned()
            .unwrap_or_default();
        c.decide("Select", uid(&self.bundle.names.table, &table))?;
        Ok(())
    }

    /// The enforcement for `ctx` on table `table` of `schema`, from the cache
    /// when it was derived before for the same principal, context, table and
    /// schema version (derivation is a pure function of those and the bundle).
    ///
    /// # Errors
    /// Unknown principal or table, a column whose domain the schema does not
    /// name, a context that does not match the schema, or a Cedar evaluation error.
    pub fn derive(
        &self,
        ctx: &SecurityContext,
        schema: &Schema,
        table: TableId,
    ) -> Result<Arc<Enforcement>> {
        let key = (
            ctx.principal.clone(),
            canonical_text(&ctx.context),
            table,
            schema.version(),
        );
        if let Some(e) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(e.clone());
        }
        let e = Arc::new(derive_with(&self.bundle, ctx, schema, table, self.per_row)?);
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= DERIVATION_CACHE_ENTRIES_MAX {
            cache.clear();
        }
        cache.insert(key, e.clone());
        Ok(e)
    }
}

/// An id for an object known only by name (a catalog description file, or the
/// bundle's row types): the same name always gives the same id.
#[must_use]
pub fn id_of_name(kind: &str, name: &str) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"scratchbird named object\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// The tables as the bundle's row types describe them, for when no catalog is
/// given: one column per attribute, domains unknown, ids from names.
#[must_use]
pub fn schema_of_row_types(bundle: &Bundle) -> Schema {
    Schema::new(
        bundle.tables().values().map(table_from_row_type).collect(),
        Vec::new(),
        Vec::new(),
    )
}

fn table_from_row_type(row: &RowType) -> TableDef {
    TableDef {
        distribution: None,
        checks: Vec::new(),
        revision: None,
        id: TableId::from_bytes(id_of_name("table", &row.table)),
        name: row.table.clone(),
        columns: row
            .attrs
            .iter()
            .map(|(name, a)| ColumnDef {
                id: ColumnId::from_bytes(id_of_name("column", &format!("{}.{name}", row.table))),
                name: name.clone(),
                ty: match a.kind {
                    AttrKind::Bool => SqlType::Boolean,
                    AttrKind::Long => SqlType::BigInt,
                    AttrKind::Decimal => SqlType::Decimal {
                        precision: 18,
                        scale: 4,
                    },
                    AttrKind::String | AttrKind::Other(_) => SqlType::Text,
                },
                nullable: !a.required,
                default: None,
                domain: None,
                check: None,
                default_fn: None,
                seq: None,
            })
            .collect(),
        primary_key: Vec::new(),
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

struct Ctx<'b> {
    bundle: &'b Arc<Bundle>,
    principal: EntityUid,
    context_json: serde_json::Value,
    /// The session context, checked against each action's context type once.
    contexts: HashMap<String, Context>,
    recorded: BTreeSet<String>,
    /// Leave every residual row policy to Cedar, row by row (see
    /// [`Deriver::per_row`]).
    per_row: bool,
}

impl<'b> Ctx<'b> {
    /// The context for `ctx`'s principal and session. A principal the bundle does not
    /// know is refused, never evaluated as one without roles: it would slip past a
    /// policy such as "everyone but support unmasks".
    fn new(bundle: &'b Arc<Bundle>, ctx: &SecurityContext) -> Result<Self> {
        let principal =
            EntityUid::from_str(&ctx.principal).map_err(|e| PolicyError::InvalidContext {
                reason: format!(
                    "principal {:?} is not an entity reference like User::\"alice\": {e}",
                    ctx.principal
                ),
            })?;
        if bundle.entities.get(&principal).is_none() {
            return Err(PolicyError::UnknownPrincipal {
                principal: ctx.principal.clone(),
            });
        }
        if !ctx.context.is_object() {
            return Err(PolicyError::InvalidContext {
                reason: "the context must be a JSON object".into(),
            });
        }
        Ok(Self {
            bundle,
            principal,
            context_json: ctx.context.clone(),
            contexts: HashMap::new(),
            recorded: BTreeSet::new(),
            per_row: false,
        })
    }

    fn action(&self, name: &str) -> EntityUid {
        uid(&self.bundle.names.action, name)
    }

    fn context(&mut self, action: &EntityUid) -> Result<Context> {
        let key = action.id().unescaped().to_owned();
        if let Some(c) = self.contexts.get(&key) {
            return Ok(c.clone());
        }
        let c = Context::from_json_value(
            self.context_json.clone(),
            Some((&self.bundle.schema, action)),
        )
        .map_err(|e| PolicyError::InvalidContext {
            reason: e.to_string(),
        })?;
        self.contexts.insert(key, c.clone());
        Ok(c)
    }

    fn note(&mut self, ids: impl IntoIterator<Item = PolicyId>) {
        for id in ids {
            if let Some(r) = self.bundle.policies.annotation(&id, "record") {
                self.recorded.insert(r.to_owned());
            }
        }
    }

    fn decide(&mut self, action_name: &str, resource: EntityUid) -> Result<bool> {
        let a = self.action(action_name);
        let req = Request::new(
            self.principal.clone(),
            a.clone(),
            resource,
            self.context(&a)?,
            Some(&self.bundle.schema),
        )
        .map_err(|e| PolicyError::InvalidContext {
            reason: e.to_string(),
        })?;
        let resp =
            Authorizer::new().is_authorized(&req, &self.bundle.policies, &self.bundle.entities);
        let allow = resp.decision() == Decision::Allow;
        if allow {
            let reasons: Vec<PolicyId> = resp.diagnostics().reason().cloned().collect();
            self.note(reasons);
        }
        Ok(allow)
    }

    fn filter(
        &mut self,
        action_name: &str,
        row: &RowType,
    ) -> Result<(RowFilter, Vec<DecidingPolicy>)> {
        let b = self.bundle;
        let a = self.action(action_name);
        let ctx = self.context(&a)?;
        let shared = Arc::clone(b);
        let req = PartialRequest::new(
            PartialEntityUid::from_concrete(self.principal.clone()),
            a.clone(),
            PartialEntityUid::new(row.entity_type.clone(), None),
            Some(ctx.clone()),
            &b.schema,
        )
        .map_err(|e| PolicyError::InvalidContext {
            reason: e.to_string(),
        })?;
        let resp = b
            .policies
            .tpe(&req, &b.partial_entities, &b.schema)
            .map_err(|e| PolicyError::Evaluation {
                reason: e.to_string(),
            })?;
        let true_permits: Vec<PolicyId> = resp.true_permits().cloned().collect();
        let residual_ids: Vec<PolicyId> = resp
            .residual_permits()
            .chain(resp.residual_forbids())
            .cloned()
            .collect();
        self.note(
            true_permits
                .iter()
                .cloned()
                .chain(residual_ids.iter().cloned()),
        );
        let mut explain = Vec::new();
        match resp.decision() {
            Some(Decision::Allow) => {
                for id in &true_permits {
                    explain.push((id.clone(), Effect::Permit, "true".to_owned()));
                }
                return Ok((RowFilter::All, explain));
            }
            Some(Decision::Deny) => return Ok((RowFilter::None, explain)),
            None => {}
        }
        let tr = Translate {
            row,
            entities: &b.entities,
        };
        let mut filter = Filter {
            permit_always: !true_permits.is_empty(),
            permits: Vec::new(),
            forbids: Vec::new(),
        };
        // Policies that apply whatever the row: shown first.
        for id in &true_permits {
            explain.push((id.clone(), Effect::Permit, "true".to_owned()));
        }
        let mut failed: Option<Untranslatable> = self
            .per_row
            .then(|| Untranslatable("this deriver evaluates row policies per row".into()));
        for p in resp.residual_policies() {
            let text = p.to_string();
            if failed.is_some() {
                explain.push((p.id().clone(), p.effect(), residual_condition(&text)));
                continue;
            }
            let translated = p
                .to_pst()
                .map_err(|e| Untranslatable(e.to_string()))
                .and_then(|pst| {
                    let body = pst.body();
                    if !matches!(body.principal, cedar_policy::pst::PrincipalConstraint::Any)
                        || !matches!(body.action, cedar_policy::pst::ActionConstraint::Any)
                        || !matches!(body.resource, cedar_policy::pst::ResourceConstraint::Any)
                    {
                        return Err(Untranslatable("a residual with a scope constraint".into()));
                    }
                    let mut cond: Option<crate::ir::Expr> = None;
                    for c in body.clauses() {
                        let e = match c {
                            cedar_policy::pst::Clause::When(e) => tr.expr(e)?,
                            cedar_policy::pst::Clause::Unless(e) => {
                                crate::ir::Expr::Not(Box::new(tr.expr(e)?))
                            }
                        };
                        cond = Some(match cond {
                            None => e,
                            Some(prev) => crate::ir::Expr::And(Box::new(prev), Box::new(e)),
                        });
                    }
                    Ok(cond.unwrap_or(crate::ir::Expr::Lit(crate::ir::Lit::Bool(true))))
                });
            match translated {
                // A policy applies only where its condition is true: one that is
                // never true decides nothing (for example a forbid `unless` the
                // session breaks the glass, in a session that does).
                Ok(e) if crate::ir::never_true(&e) => {}
                Ok(e) => {
                    explain.push((p.id().clone(), p.effect(), residual_condition(&text)));
                    if p.effect() == Effect::Permit {
                        filter.permits.push(e);
                    } else {
                        filter.forbids.push(e);
                    }
                }
                Err(u) => {
                    explain.push((p.id().clone(), p.effect(), residual_condition(&text)));
                    failed = Some(u);
                }
            }
        }
        if let Some(u) = failed {
            return Ok((
                RowFilter::Cedar(Box::new(CedarPerRow {
                    bundle: shared,
                    principal: self.principal.clone(),
                    action: a,
                    context: ctx,
                    row: row.clone(),
                    reason: u.0,
                })),
                explain,
            ));
        }
        if filter.forbids.is_empty() && filter.permit_always {
            return Ok((RowFilter::All, explain));
        }
        if filter.permits.is_empty() && !filter.permit_always {
            return Ok((RowFilter::None, explain));
        }
        Ok((RowFilter::Predicate(filter), explain))
    }
}

/// The `when { ... }` body of a residual policy's text.
fn residual_condition(text: &str) -> String {
    match (text.find("when"), text.rfind('}')) {
        (Some(w), Some(end)) if end > w => {
            let inner = text
                .get(w + 4..end)
                .unwrap_or("")
                .trim()
                .trim_start_matches('{')
                .trim();
            inner.to_owned()
        }
        _ => text.to_owned(),
    }
}

/// Derives without a cache.
///
/// # Errors
/// As [`Deriver::derive`].
pub fn derive(
    bundle: &Arc<Bundle>,
    ctx: &SecurityContext,
    schema: &Schema,
    table: TableId,
) -> Result<Enforcement> {
    derive_with(bundle, ctx, schema, table, false)
}

fn derive_with(
    bundle: &Arc<Bundle>,
    ctx: &SecurityContext,
    schema: &Schema,
    table: TableId,
    per_row: bool,
) -> Result<Enforcement> {
    let table = schema
        .table(table)
        .ok_or_else(|| PolicyError::NotInSchema {
            what: format!("schema {} has no table with id {table}", schema.version()),
        })?;
    let row = bundle
        .tables
        .get(&table.name)
        .ok_or_else(|| PolicyError::UnknownTable {
            table: table.name.clone(),
        })?;
    let mut c = Ctx::new(bundle, ctx)?;
    c.per_row = per_row;
    let t = uid(&bundle.names.table, &table.name);
    let grants = Grants {
        select: c.decide("Select", t.clone())?,
        insert: c.decide("Insert", t.clone())?,
        update: c.decide("Update", t.clone())?,
        delete: c.decide("Delete", t)?,
    };
    let (read, read_policies) = c.filter("Read", row)?;
    let (write, _) = c.filter("Write", row)?;
    let mut columns = Vec::with_capacity(table.columns.len());
    for col in &table.columns {
        let readable = c.decide(
            "ReadColumn",
            uid(
                &bundle.names.column,
                &format!("{}.{}", table.name, col.name),
            ),
        )?;
        let domain = match col.domain {
            None => None,
            Some(id) => Some(
                schema
                    .domain(id)
                    .ok_or_else(|| PolicyError::NotInSchema {
                        what: format!(
                            "column {}.{} is declared in domain {id}, which the schema does not have",
                            table.name, col.name
                        ),
                    })?
                    .name
                    .clone(),
            ),
        };
        let mask = match &domain {
            None => None,
            Some(d) => {
                let domain = bundle
                    .domains
                    .get(d)
                    .ok_or_else(|| PolicyError::InvalidContext {
                        reason: format!(
                            "column {}.{} uses domain {d}, which the bundle does not declare",
                            table.name, col.name
                        ),
                    })?;
                if c.decide("Unmask", uid(&bundle.names.domain, d))? {
                    None
                } else {
                    Some((d.clone(), domain.mask.clone()))
                }
            }
        };
        columns.push(ColumnRule {
            column: col.name.clone(),
            readable,
            mask,
        });
    }
    Ok(Enforcement {
        bundle: bundle.hash(),
        table: table.name.clone(),
        grants,
        read,
        write,
        columns,
        recorded: c.recorded.into_iter().collect(),
        read_policies,
    })
}
