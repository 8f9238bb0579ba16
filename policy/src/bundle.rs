//! Loading a bundle folder: parse, validate strictly, check the ScratchBird model,
//! and compute the bundle's identity.
//!
//! A bundle is a folder holding `schema.cedarschema`, any number of `*.cedar` policy
//! files, `entities.json` (the principals, roles, hierarchy and domains the policies
//! speak of) and, once signed, `bundle.manifest`. Nothing else: an unexpected file
//! is refused, so a misnamed policy file can never be silently ignored.

use crate::canonical;
use crate::error::{Diagnostic, PolicyError, Result};
use crate::limits::{ENTITIES_MAX, FILE_MAX_BYTES, FILES_MAX, POLICIES_MAX};
use crate::mask::MaskFn;
use cedar_policy::{
    Entities, EntityTypeName, EntityUid, PolicyId, PolicySet, Schema, ValidationMode, Validator,
};
use miette::Diagnostic as _;
use scratchbird_types::{BundleHash, SqlType};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The schema file of a bundle.
pub const SCHEMA_FILE: &str = "schema.cedarschema";
/// The entity data file of a bundle.
pub const ENTITIES_FILE: &str = "entities.json";
/// The signed manifest of a bundle (not part of what is hashed).
pub const MANIFEST_FILE: &str = "bundle.manifest";
/// Version of the canonical form (part of what is hashed).
pub const CANONICAL_FORMAT: u64 = 1;

/// The actions a bundle must declare, with the resource type each applies to (`*`:
/// the row types).
pub const ACTIONS: [(&str, &str); 8] = [
    ("Select", "Table"),
    ("Insert", "Table"),
    ("Update", "Table"),
    ("Delete", "Table"),
    ("Read", "*"),
    ("Write", "*"),
    ("ReadColumn", "Column"),
    ("Unmask", "Domain"),
];

/// The schema-change actions. A bundle may leave them out (then nobody changes
/// the schema under it); each one it declares must apply to `Table` and
/// `Domain`: `Create`, `Alter` and `Drop` of `Table::"t"` (an index is an
/// `Alter` of its table) and `Create` and `Drop` of `Domain::"d"`.
pub const SCHEMA_ACTIONS: [&str; 3] = ["Create", "Alter", "Drop"];

/// The action that lets a principal see, in `EXPLAIN ANALYZE`, how many rows
/// of a table the row policy hid from them and how many values masks
/// changed. A bundle may leave it out (then nobody sees them); declared, it
/// must apply to `Table`:
/// `action Inspect appliesTo { principal: User, resource: Table, context: Session };`.
pub const INSPECT_ACTION: &str = "Inspect";

/// The Cedar type of a row attribute, as far as ScratchBird maps SQL types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrKind {
    /// `Bool` (BOOLEAN).
    Bool,
    /// `Long` (SMALLINT, INTEGER, BIGINT).
    Long,
    /// `String` (VARCHAR, TEXT).
    String,
    /// `decimal` (DECIMAL with at most 4 fractional digits).
    Decimal,
    /// Anything else: allowed in the schema, but no column can back it.
    Other(String),
}

impl std::fmt::Display for AttrKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool => f.write_str("Bool"),
            Self::Long => f.write_str("Long"),
            Self::String => f.write_str("String"),
            Self::Decimal => f.write_str("decimal"),
            Self::Other(o) => f.write_str(o),
        }
    }
}

/// A row attribute (a column as policies see it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Its type.
    pub kind: AttrKind,
    /// Whether every row has it (optional attributes stand for nullable columns).
    pub required: bool,
}

/// The row type of one table: an entity type annotated `@table("name")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowType {
    /// The table.
    pub table: String,
    /// The entity type.
    pub entity_type: EntityTypeName,
    /// Its attributes: the columns policies may look at.
    pub attrs: BTreeMap<String, Attr>,
    /// `@parent("column")`: each row's parent in the entity hierarchy is the entity
    /// of the row type's single parent type whose id is that column's value.
    pub parent: Option<(String, EntityTypeName)>,
}

/// A domain as the bundle declares it (a `Domain` entity in `entities.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Name.
    pub name: String,
    /// Base type.
    pub base: SqlType,
    /// CHECK expression text over `VALUE`.
    pub check: Option<String>,
    /// What principals who may not unmask it see.
    pub mask: MaskFn,
}

/// A policy with where it came from.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// File.
    pub file: String,
    /// The policy's text.
    pub text: String,
}

/// A loaded, checked bundle.
#[derive(Debug)]
pub struct Bundle {
    pub(crate) dir: PathBuf,
    pub(crate) schema: Schema,
    pub(crate) policies: PolicySet,
    pub(crate) entities: Entities,
    pub(crate) tables: BTreeMap<String, RowType>,
    pub(crate) domains: BTreeMap<String, Domain>,
    pub(crate) sources: BTreeMap<PolicyId, PolicySource>,
    pub(crate) warnings: Vec<Diagnostic>,
    /// Texts of the schema and policy files, for locating problems.
    pub(crate) files: BTreeMap<String, String>,
    /// The entities in the form partial evaluation takes, converted once.
    pub(crate) partial_entities: cedar_policy::PartialEntities,
    /// The model's entity type names, parsed once (Cedar's parser is not cheap).
    pub(crate) names: ModelNames,
    /// [`Bundle::principal_type`], worked out once: every statement asks.
    principal_type: Option<String>,
    canonical: Vec<u8>,
    hash: BundleHash,
}

/// The entity type names of the ScratchBird model.
#[derive(Debug, Clone)]
pub(crate) struct ModelNames {
    pub action: EntityTypeName,
    pub table: EntityTypeName,
    pub column: EntityTypeName,
    pub domain: EntityTypeName,
}

impl ModelNames {
    fn new() -> Result<Self> {
        let n = |s: &str| {
            EntityTypeName::from_str(s).map_err(|_| PolicyError::Internal("entity type name"))
        };
        Ok(Self {
            action: n("Action")?,
            table: n("Table")?,
            column: n("Column")?,
            domain: n("Domain")?,
        })
    }
}

fn read(path: &Path) -> Result<String> {
    let io = |source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > FILE_MAX_BYTES {
        return Err(PolicyError::LimitExceeded {
            limit: "FILE_MAX_BYTES",
            max: FILE_MAX_BYTES,
            needed: len,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Diagnostics of a miette error whose labels point into `text`.
fn diags_of(
    file: &str,
    text: &str,
    e: &dyn miette::Diagnostic,
    fallback_message: String,
) -> Vec<Diagnostic> {
    let help = e.help().map(|h| h.to_string());
    let labels: Vec<miette::LabeledSpan> = e.labels().map(Iterator::collect).unwrap_or_default();
    if labels.is_empty() {
        return vec![Diagnostic {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: fallback_message,
            help,
        }];
    }
    let mut out = Vec::new();
    for l in labels.iter().take(1) {
        let mut msg = fallback_message.clone();
        if let Some(label) = l.label()
            && !label.is_empty()
            && !msg.contains(label)
        {
            msg = format!("{msg} ({label})");
        }
        out.push(Diagnostic::at(file, text, l.offset(), msg, help.clone()));
    }
    out
}

/// What a bundle is assembled from, read from a folder or a canonical form.
struct Parts {
    dir: PathBuf,
    schema: Schema,
    schema_json: Json,
    policies: PolicySet,
    sources: BTreeMap<PolicyId, PolicySource>,
    warnings: Vec<Diagnostic>,
    files: BTreeMap<String, String>,
    entities: Entities,
    entities_json: Json,
    diags: Vec<Diagnostic>,
}

/// Largest canonical bundle taken from an epoch (a control-plane message
/// carries it whole).
pub const CANONICAL_BYTES_MAX: u64 = 8 * 1024 * 1024;

impl Bundle {
    /// Loads and checks the bundle in `dir`.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] with every problem found, each with file, line,
    /// column and what to change; I/O errors; limits.
    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mut diags: Vec<Diagnostic> = Vec::new();
        let mut policy_files = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| PolicyError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|source| PolicyError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            names.push(e.file_name().to_string_lossy().into_owned());
            if names.len() > FILES_MAX {
                return Err(PolicyError::LimitExceeded {
                    limit: "FILES_MAX",
                    max: FILES_MAX as u64,
                    needed: names.len() as u64,
                });
            }
        }
        names.sort();
        for name in &names {
            if name.starts_with('.')
                || name == SCHEMA_FILE
                || name == ENTITIES_FILE
                || name == MANIFEST_FILE
            {
                continue;
            }
            if Path::new(name).extension().is_some_and(|x| x == "cedar") {
                policy_files.push(name.clone());
            } else {
                diags.push(Diagnostic::file(
                    name,
                    "unexpected file in a bundle folder",
                    Some("a bundle holds schema.cedarschema, *.cedar policy files, entities.json and bundle.manifest; rename policy files to *.cedar or move other files out"),
                ));
            }
        }

        // The schema.
        let schema_path = dir.join(SCHEMA_FILE);
        if !schema_path.exists() {
            diags.push(Diagnostic::file(
                SCHEMA_FILE,
                "missing",
                Some("every bundle needs a schema; see policy/BUNDLE.md"),
            ));
            return Err(PolicyError::Invalid { diagnostics: diags });
        }
        let schema_text = read(&schema_path)?;
        let mut warnings = Vec::new();
        let mut files = BTreeMap::new();
        files.insert(SCHEMA_FILE.to_owned(), schema_text.clone());
        let schema = match Schema::from_cedarschema_str(&schema_text) {
            Ok((s, schema_warnings)) => {
                for w in schema_warnings {
                    let msg = w.to_string();
                    warnings.extend(diags_of(SCHEMA_FILE, &schema_text, &w, msg));
                }
                s
            }
            Err(e) => {
                diags.extend(diags_of(SCHEMA_FILE, &schema_text, &e, e.to_string()));
                return Err(PolicyError::Invalid { diagnostics: diags });
            }
        };
        let schema_json = match cedar_policy::schema_str_to_json_with_resolved_types(&schema_text) {
            Ok((json, _)) => json,
            Err(e) => {
                diags.push(Diagnostic::file(SCHEMA_FILE, e.to_string(), None));
                return Err(PolicyError::Invalid { diagnostics: diags });
            }
        };

        // Policies, one file at a time (so locations are per file).
        let mut policies = PolicySet::new();
        let mut sources = BTreeMap::new();
        for file in &policy_files {
            let text = read(&dir.join(file))?;
            files.insert(file.clone(), text.clone());
            let set = match PolicySet::from_str(&text) {
                Ok(s) => s,
                Err(errs) => {
                    for e in errs.iter() {
                        diags.extend(diags_of(file, &text, e, e.to_string()));
                    }
                    continue;
                }
            };
            if set.templates().next().is_some() {
                diags.push(Diagnostic::file(
                    file,
                    "policy templates are not supported in a bundle",
                    Some("write static policies"),
                ));
            }
            let starts = policy_starts(&text);
            for p in set.policies() {
                let id = match p.annotation("id") {
                    Some(id) if !id.trim().is_empty() => id.to_owned(),
                    _ => {
                        // The parser names policies policy0, policy1, ... in source order.
                        let at = p
                            .id()
                            .to_string()
                            .strip_prefix("policy")
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| starts.get(n).copied());
                        let msg = "a policy without @id: every policy needs a name that explanations and the audit trail cite, and that is part of the bundle's identity";
                        let help =
                            Some("add @id(\"a-short-name\") on the line above it".to_owned());
                        diags.push(match at {
                            Some(at) => Diagnostic::at(file, &text, at, msg, help),
                            None => Diagnostic::file(file, msg, help.as_deref()),
                        });
                        continue;
                    }
                };
                let pid = PolicyId::new(&id);
                let src = PolicySource {
                    file: file.clone(),
                    text: p.to_string(),
                };
                if sources.contains_key(&pid) {
                    diags.push(Diagnostic::file(
                        file,
                        format!("two policies have the id {id:?}"),
                        Some("@id annotations must be unique in a bundle"),
                    ));
                    continue;
                }
                if let Err(e) = policies.add(p.new_id(pid.clone())) {
                    diags.push(Diagnostic::file(file, e.to_string(), None));
                    continue;
                }
                if p.effect() == cedar_policy::Effect::Forbid
                    && p.to_json().is_ok_and(|j| uses_arithmetic(&j))
                {
                    let msg = format!(
                        "policy {id}: a forbid whose condition does arithmetic stops applying where the arithmetic overflows (Cedar skips a policy whose condition fails to evaluate)"
                    );
                    let help = Some("compare without arithmetic where you can (for example `resource.grade >= 9` rather than `resource.grade * 2 >= 18`)".to_owned());
                    let needle = format!("@id(\"{id}\")");
                    warnings.push(match text.find(&needle) {
                        Some(at) => Diagnostic::at(file, &text, at, msg, help),
                        None => Diagnostic::file(file, msg, help.as_deref()),
                    });
                }
                sources.insert(pid, src);
                if sources.len() > POLICIES_MAX {
                    return Err(PolicyError::LimitExceeded {
                        limit: "POLICIES_MAX",
                        max: POLICIES_MAX as u64,
                        needed: sources.len() as u64,
                    });
                }
            }
            // Strict validation, per file so that locations point into it.
            let file_set: PolicySet = {
                let mut s = PolicySet::new();
                for p in policies
                    .policies()
                    .filter(|p| sources.get(p.id()).is_some_and(|src| &src.file == file))
                {
                    let _ = s.add(p.clone());
                }
                s
            };
            let result = Validator::new(schema.clone()).validate(&file_set, ValidationMode::Strict);
            for e in result.validation_errors() {
                diags.extend(diags_of(
                    file,
                    &text,
                    e,
                    format!("policy {}: {e}", e.policy_id()),
                ));
            }
            for w in result.validation_warnings() {
                warnings.extend(diags_of(
                    file,
                    &text,
                    w,
                    format!("policy {}: {w}", w.policy_id()),
                ));
            }
        }

        // Entities: principals, roles, hierarchy, domains.
        let entities_path = dir.join(ENTITIES_FILE);
        let (entities, entities_json) = if entities_path.exists() {
            let text = read(&entities_path)?;
            match serde_json::from_str::<Json>(&text) {
                Err(e) => {
                    diags.push(Diagnostic {
                        file: ENTITIES_FILE.into(),
                        line: e.line(),
                        column: e.column(),
                        message: e.to_string(),
                        help: None,
                    });
                    (Entities::empty(), Json::Array(Vec::new()))
                }
                Ok(json) => {
                    let n = json.as_array().map_or(0, Vec::len);
                    if n > ENTITIES_MAX {
                        return Err(PolicyError::LimitExceeded {
                            limit: "ENTITIES_MAX",
                            max: ENTITIES_MAX as u64,
                            needed: n as u64,
                        });
                    }
                    match Entities::from_json_value(json.clone(), Some(&schema)) {
                        Ok(e) => (e, json),
                        Err(e) => {
                            diags.push(Diagnostic::file(
                                ENTITIES_FILE,
                                e.to_string(),
                                e.help().map(|h| h.to_string()).as_deref(),
                            ));
                            (Entities::empty(), json)
                        }
                    }
                }
            }
        } else {
            (Entities::empty(), Json::Array(Vec::new()))
        };

        Self::assemble(Parts {
            dir,
            schema,
            schema_json,
            policies,
            sources,
            warnings,
            files,
            entities,
            entities_json,
            diags,
        })
    }

    /// A bundle from its canonical form (what an epoch of the control plane
    /// stores, [`Bundle::canonical_bytes`]): parsed, checked like a folder,
    /// and refused unless its canonical form is exactly `bytes`, so the hash an
    /// epoch names is the hash of what is enforced. Policies are located by
    /// their ids (there are no files to point into).
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] for bytes that are not a canonical bundle, or a
    /// bundle that fails the checks; limits.
    pub fn from_canonical(bytes: &[u8], origin: &str) -> Result<Self> {
        let bad = |message: String| PolicyError::Invalid {
            diagnostics: vec![Diagnostic::file(origin, message, None)],
        };
        if bytes.len() as u64 > CANONICAL_BYTES_MAX {
            return Err(PolicyError::LimitExceeded {
                limit: "CANONICAL_BYTES_MAX",
                max: CANONICAL_BYTES_MAX,
                needed: bytes.len() as u64,
            });
        }
        let top: ciborium::Value = ciborium::from_reader(bytes)
            .map_err(|e| bad(format!("not a canonical bundle: {e}")))?;
        let ciborium::Value::Map(entries) = top else {
            return Err(bad("not a canonical bundle: not a map".into()));
        };
        let field = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v)
                .ok_or_else(|| bad(format!("not a canonical bundle: no {name:?}")))
        };
        let format = field("format")?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok());
        if format != Some(CANONICAL_FORMAT) {
            return Err(bad(format!(
                "the canonical bundle has format {format:?}; this build reads format {CANONICAL_FORMAT}"
            )));
        }
        let schema_json = canonical::to_json(field("schema")?)
            .ok_or_else(|| bad("the canonical schema is not JSON".into()))?;
        let entities_json = canonical::to_json(field("entities")?)
            .ok_or_else(|| bad("the canonical entities are not JSON".into()))?;
        let mut diags = Vec::new();
        let schema = Schema::from_json_value(schema_json.clone())
            .map_err(|e| bad(format!("the schema: {e}")))?;
        let mut policies = PolicySet::new();
        let mut sources = BTreeMap::new();
        let list = field("policies")?
            .as_array()
            .ok_or_else(|| bad("the canonical policies are not a list".into()))?;
        if list.len() > POLICIES_MAX {
            return Err(PolicyError::LimitExceeded {
                limit: "POLICIES_MAX",
                max: POLICIES_MAX as u64,
                needed: list.len() as u64,
            });
        }
        for p in list {
            let est: Json = p
                .as_bytes()
                .and_then(|b| ciborium::from_reader::<ciborium::Value, _>(b.as_slice()).ok())
                .and_then(|v| canonical::to_json(&v))
                .ok_or_else(|| bad("a canonical policy is not CBOR of JSON".into()))?;
            let id = est
                .pointer("/annotations/id")
                .and_then(Json::as_str)
                .filter(|id| !id.trim().is_empty())
                .ok_or_else(|| bad("a policy without @id".into()))?
                .to_owned();
            let pid = PolicyId::new(&id);
            let policy = cedar_policy::Policy::from_json(Some(pid.clone()), est)
                .map_err(|e| bad(format!("policy {id}: {e}")))?;
            let text = policy.to_string();
            policies
                .add(policy)
                .map_err(|e| bad(format!("policy {id}: {e}")))?;
            sources.insert(
                pid,
                PolicySource {
                    file: origin.to_owned(),
                    text,
                },
            );
        }
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for e in result.validation_errors() {
            diags.push(Diagnostic::file(
                origin,
                format!("policy {}: {e}", e.policy_id()),
                None,
            ));
        }
        let n = entities_json.as_array().map_or(0, Vec::len);
        if n > ENTITIES_MAX {
            return Err(PolicyError::LimitExceeded {
                limit: "ENTITIES_MAX",
                max: ENTITIES_MAX as u64,
                needed: n as u64,
            });
        }
        let entities = Entities::from_json_value(entities_json.clone(), Some(&schema))
            .map_err(|e| bad(format!("the entities: {e}")))?;
        let bundle = Self::assemble(Parts {
            dir: PathBuf::from(origin),
            schema,
            schema_json,
            policies,
            sources,
            warnings: Vec::new(),
            files: BTreeMap::new(),
            entities,
            entities_json,
            diags,
        })?;
        if bundle.canonical_bytes() != bytes {
            return Err(bad(
                "the bytes are not in canonical form (the bundle they describe has another hash)"
                    .into(),
            ));
        }
        Ok(bundle)
    }

    /// The checks and identity common to a folder and a canonical form.
    fn assemble(parts: Parts) -> Result<Self> {
        let Parts {
            dir,
            schema,
            schema_json,
            policies,
            sources,
            warnings,
            files,
            entities,
            entities_json,
            mut diags,
        } = parts;
        let model = check_model(&schema_json, &mut diags);
        let domains = read_domains(&entities_json, &mut diags);
        if let Some(tables) = &model {
            refuse_named_rows(
                tables,
                &policies,
                &sources,
                &files,
                &entities_json,
                &mut diags,
            );
        }
        if !diags.is_empty() {
            return Err(PolicyError::Invalid { diagnostics: diags });
        }
        let tables = model.unwrap_or_default();

        // Identity: canonical CBOR of schema, policies and entities.
        let mut schema_canon = schema_json.clone();
        canonical::sort_arrays(&mut schema_canon);
        let mut policy_jsons = Vec::new();
        for p in policies.policies() {
            let est = p
                .to_json()
                .map_err(|_| PolicyError::Internal("a policy has no JSON form"))?;
            policy_jsons.push(canonical::bytes(&canonical::to_cbor(&est)));
        }
        policy_jsons.sort();
        let mut ents = entities_json.clone();
        canonical_entities(&mut ents);
        // Keys in sorted order: entities, format, policies, schema.
        let top = ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("entities".into()),
                canonical::to_cbor(&ents),
            ),
            (
                ciborium::Value::Text("format".into()),
                ciborium::Value::Integer(CANONICAL_FORMAT.into()),
            ),
            (
                ciborium::Value::Text("policies".into()),
                ciborium::Value::Array(
                    policy_jsons
                        .iter()
                        .map(|b| ciborium::Value::Bytes(b.clone()))
                        .collect(),
                ),
            ),
            (
                ciborium::Value::Text("schema".into()),
                canonical::to_cbor(&schema_canon),
            ),
        ]);
        let canonical_bytes = canonical::bytes(&top);
        let hash = BundleHash(*blake3::hash(&canonical_bytes).as_bytes());
        let partial_entities =
            cedar_policy::PartialEntities::from_concrete(entities.clone(), &schema).map_err(
                |e| PolicyError::Evaluation {
                    reason: format!("entities.json for partial evaluation: {e}"),
                },
            )?;
        let principal_type = {
            let types: std::collections::BTreeSet<String> =
                schema.principals().map(ToString::to_string).collect();
            (types.len() == 1)
                .then(|| types.into_iter().next())
                .flatten()
        };
        Ok(Self {
            dir,
            schema,
            policies,
            entities,
            partial_entities,
            names: ModelNames::new()?,
            principal_type,
            tables,
            domains,
            sources,
            warnings,
            files,
            canonical: canonical_bytes,
            hash,
        })
    }

    /// Whether the schema declares the action `name` (`Create`, say).
    #[must_use]
    pub fn declares_action(&self, name: &str) -> bool {
        self.schema
            .actions()
            .any(|a| a.type_name() == &self.names.action && a.id().unescaped() == name)
    }

    /// The bundle's identity.
    #[must_use]
    pub fn hash(&self) -> BundleHash {
        self.hash
    }

    /// The canonical form that is hashed.
    #[must_use]
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// The folder it was loaded from.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Row types by table name.
    #[must_use]
    pub fn tables(&self) -> &BTreeMap<String, RowType> {
        &self.tables
    }

    /// Domains by name.
    #[must_use]
    pub fn domains(&self) -> &BTreeMap<String, Domain> {
        &self.domains
    }

    /// Number of policies.
    #[must_use]
    pub fn policy_count(&self) -> usize {
        self.sources.len()
    }

    /// Where a policy came from.
    #[must_use]
    pub fn source(&self, id: &PolicyId) -> Option<&PolicySource> {
        self.sources.get(id)
    }

    /// Warnings that do not stop the bundle from checking.
    #[must_use]
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// A diagnostic at the first occurrence of `needle` in `file` (or the whole
    /// file when it does not occur).
    pub(crate) fn locate(
        &self,
        file: &str,
        needle: &str,
        message: String,
        help: Option<String>,
    ) -> Diagnostic {
        match self
            .files
            .get(file)
            .and_then(|t| t.find(needle).map(|at| (t, at)))
        {
            Some((text, at)) => Diagnostic::at(file, text, at, message, help),
            None => Diagnostic {
                file: file.to_owned(),
                line: 0,
                column: 0,
                message,
                help,
            },
        }
    }

    /// The Cedar schema.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The entity type of the bundle's principals (`User`, or `Staff` in the
    /// clinical example): the one type its actions apply to as a principal. A
    /// node names the user of a certificate `<type>::"<name>"`. `None` when the
    /// schema has no principal type or several (then a user name alone does not
    /// say which entity it is).
    #[must_use]
    pub fn principal_type(&self) -> Option<String> {
        self.principal_type.clone()
    }

    /// The principal a user name stands for: `<principal type>::"<name>"`.
    ///
    /// # Errors
    /// The bundle has no single principal type.
    pub fn principal_of(&self, user: &str) -> std::result::Result<String, String> {
        let ty = self.principal_type().ok_or_else(|| {
            let types: Vec<String> = self.schema.principals().map(ToString::to_string).collect();
            format!(
                "the bundle's actions apply to principals of {} types ({}); a user name must map to one",
                types.len(),
                types.join(", ")
            )
        })?;
        Ok(format!("{ty}::{user:?}"))
    }

    /// Whether the entity data names the principal `principal` (as
    /// [`Bundle::principal_of`] writes it). A principal it does not name is
    /// refused, never run as an entity without roles or attributes.
    #[must_use]
    pub fn knows_principal(&self, principal: &str) -> bool {
        EntityUid::from_str(principal).is_ok_and(|uid| self.entities.get(&uid).is_some())
    }

    /// Why this bundle singles out table `table`, if it does: it gives the
    /// table a row type (its row policies read the rows), or a policy or an
    /// entity names the table's entity or one of its columns' (`"t"` or
    /// `"t.c"` anywhere in its text: a policy that merely mentions such a
    /// string counts too). A table renamed out of such a name, or into one,
    /// would move its rows out from under the rules written for them, or
    /// under rules written for other rows.
    #[must_use]
    pub fn names_table(&self, table: &str) -> Option<String> {
        if self.tables.contains_key(table) {
            return Some(format!(
                "the bundle gives {table} a row type, which its row policies read"
            ));
        }
        let whole = format!("\"{table}\"");
        let column = format!("\"{table}.");
        if let Some(p) = self.policies.policies().find(|p| {
            let text = p.to_string();
            text.contains(&whole) || text.contains(&column)
        }) {
            return Some(format!(
                "policy {} names the table {table} or one of its columns",
                p.id()
            ));
        }
        let mut json = Vec::new();
        if self.entities.write_to_json(&mut json).is_err() {
            return Some(format!(
                "the bundle's entities could not be read to tell whether they name {table}"
            ));
        }
        let text = String::from_utf8_lossy(&json);
        if text.contains(&whole) || text.contains(&column) {
            return Some(format!(
                "the bundle's entities name the table {table} or one of its columns"
            ));
        }
        None
    }

    /// Why this bundle singles out column `column` of table `table`, if it
    /// does: the table's row type names it as an attribute (row policies
    /// read it), or a policy or an entity names the column's entity (its
    /// `ReadColumn` decisions may differ from another column's). A column
    /// renamed out of such a name, or into one, would move its values out
    /// from under the rules written for them.
    #[must_use]
    pub fn names_column(&self, table: &str, column: &str) -> Option<String> {
        if self
            .tables
            .get(table)
            .is_some_and(|r| r.attrs.contains_key(column))
        {
            return Some(format!(
                "the bundle's row type of {table} names the attribute {column}, which its row policies read"
            ));
        }
        let quoted = format!("\"{table}.{column}\"");
        if let Some(p) = self
            .policies
            .policies()
            .find(|p| p.to_string().contains(&quoted))
        {
            return Some(format!(
                "policy {} names the column {table}.{column}",
                p.id()
            ));
        }
        let mut json = Vec::new();
        if self.entities.write_to_json(&mut json).is_err()
            || String::from_utf8_lossy(&json).contains(&quoted)
        {
            return Some(format!(
                "the bundle's entities name the column {table}.{column}"
            ));
        }
        None
    }

    /// The policies.
    #[must_use]
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The entity data.
    #[must_use]
    pub fn entities(&self) -> &Entities {
        &self.entities
    }
}

/// Rows have no identity a policy could name: the host gives each row it decides an
/// arbitrary id. A policy that names a row entity (`resource == Doc::"7"`), or a row
/// entity in `entities.json`, would decide by that accident: refused.
fn refuse_named_rows(
    tables: &BTreeMap<String, RowType>,
    policies: &PolicySet,
    sources: &BTreeMap<PolicyId, PolicySource>,
    files: &BTreeMap<String, String>,
    entities: &Json,
    diags: &mut Vec<Diagnostic>,
) {
    fn refs(v: &Json, out: &mut Vec<(String, String)>) {
        match v {
            Json::Object(m) => {
                if let (Some(Json::String(t)), Some(Json::String(i))) = (m.get("type"), m.get("id"))
                {
                    out.push((t.clone(), i.clone()));
                }
                m.values().for_each(|x| refs(x, out));
            }
            Json::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let row_types: BTreeMap<String, &str> = tables
        .values()
        .map(|r| (r.entity_type.to_string(), r.table.as_str()))
        .collect();
    for p in policies.policies() {
        let mut found = Vec::new();
        if let Ok(est) = p.to_json() {
            refs(&est, &mut found);
        }
        for (ty, id) in found {
            let Some(table) = row_types.get(&ty) else {
                continue;
            };
            let file = sources.get(p.id()).map_or("", |s| s.file.as_str());
            let text = files.get(file).map_or("", String::as_str);
            let msg = format!(
                "policy {} names the row {ty}::\"{id}\" of table {table}: rows have no identity a policy can name",
                p.id()
            );
            let help = Some("decide rows by their attributes (`resource.id == 7`)".to_owned());
            diags.push(match text.find(&format!("{ty}::\"{id}\"")) {
                Some(at) => Diagnostic::at(file, text, at, msg, help),
                None => Diagnostic::file(file, msg, help.as_deref()),
            });
        }
    }
    for e in entities.as_array().into_iter().flatten() {
        if let Some(ty) = e.pointer("/uid/type").and_then(Json::as_str)
            && let Some(table) = row_types.get(ty)
        {
            diags.push(Diagnostic::file(
                ENTITIES_FILE,
                format!("entities.json lists a {ty}, a row of table {table}"),
                Some("rows come from the table; remove it from entities.json"),
            ));
        }
    }
}

/// Byte offsets of the `permit` / `forbid` keywords that start policies in a policy
/// file, in source order (comments and string literals skipped).
fn policy_starts(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while b.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while let Some(&c) = b.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                continue;
            }
            _ if ident(c) => {
                let start = i;
                while b.get(i).copied().is_some_and(ident) {
                    i += 1;
                }
                let word = text.get(start..i).unwrap_or("");
                let before = start.checked_sub(1).and_then(|j| b.get(j)).copied();
                let next = text.get(i..).unwrap_or("").trim_start().as_bytes().first();
                if matches!(word, "permit" | "forbid")
                    && next == Some(&b'(')
                    && !matches!(before, Some(b'.' | b':'))
                {
                    out.push(start);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether a policy's JSON form uses an operator that fails on overflow.
fn uses_arithmetic(v: &Json) -> bool {
    match v {
        Json::Object(m) => m
            .iter()
            .any(|(k, v)| matches!(k.as_str(), "+" | "-" | "*" | "neg") || uses_arithmetic(v)),
        Json::Array(a) => a.iter().any(uses_arithmetic),
        _ => false,
    }
}

fn canonical_entities(v: &mut Json) {
    if let Json::Array(list) = v {
        for e in list.iter_mut() {
            if let Some(Json::Array(parents)) = e.get_mut("parents") {
                parents.sort_by_cached_key(|p| canonical::bytes(&canonical::to_cbor(p)));
            }
        }
        list.sort_by_cached_key(|e| {
            canonical::bytes(&canonical::to_cbor(e.get("uid").unwrap_or(&Json::Null)))
        });
    }
}

fn attr_kind(t: &Json) -> AttrKind {
    match (
        t.get("type").and_then(Json::as_str),
        t.get("name").and_then(Json::as_str),
    ) {
        (Some("Long"), _) => AttrKind::Long,
        (Some("String"), _) => AttrKind::String,
        (Some("Boolean" | "Bool"), _) => AttrKind::Bool,
        (Some("Extension"), Some("decimal")) | (Some("decimal"), _) => AttrKind::Decimal,
        (Some(t), Some(n)) => AttrKind::Other(format!("{t} {n}")),
        (Some(t), None) => AttrKind::Other(t.to_owned()),
        _ => AttrKind::Other("unknown".into()),
    }
}

/// Checks the ScratchBird model in the schema and returns the row types.
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn check_model(schema: &Json, diags: &mut Vec<Diagnostic>) -> Option<BTreeMap<String, RowType>> {
    let mut problem =
        |msg: String, help: &str| diags.push(Diagnostic::file(SCHEMA_FILE, msg, Some(help)));
    let Some(ns) = schema.get("") else {
        problem(
            "the bundle's declarations must be in the empty namespace".into(),
            "remove the `namespace` block: Table, Column, Domain and the actions are looked up without a namespace",
        );
        return None;
    };
    let types = ns
        .get("entityTypes")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    for needed in ["Table", "Column", "Domain"] {
        if !types.contains_key(needed) {
            problem(
                format!("entity type {needed} is not declared"),
                "declare it; see policy/BUNDLE.md for the model",
            );
        }
    }
    if let Some(domain) = types.get("Domain") {
        let attrs = domain
            .pointer("/shape/attributes")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        for (a, req) in [("base", true), ("mask", true), ("check", false)] {
            let ok = attrs.get(a).is_some_and(|t| {
                attr_kind(t) == AttrKind::String
                    && t.get("required").and_then(Json::as_bool).unwrap_or(true) == req
            });
            if !ok {
                problem(
                    format!(
                        "entity type Domain needs attribute {a}: String{}",
                        if req { "" } else { " (optional)" }
                    ),
                    "declare: entity Domain = { base: String, mask: String, check?: String };",
                );
            }
        }
    }
    let mut tables = BTreeMap::new();
    for (name, def) in &types {
        let Some(table) = def.pointer("/annotations/table").and_then(Json::as_str) else {
            continue;
        };
        let Ok(entity_type) = EntityTypeName::from_str(name) else {
            continue;
        };
        let mut attrs = BTreeMap::new();
        for (a, t) in def
            .pointer("/shape/attributes")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            attrs.insert(
                a.clone(),
                Attr {
                    kind: attr_kind(t),
                    required: t.get("required").and_then(Json::as_bool).unwrap_or(true),
                },
            );
        }
        let parent = match def.pointer("/annotations/parent").and_then(Json::as_str) {
            None => None,
            Some(col) => {
                let parents: Vec<&str> = def
                    .get("memberOfTypes")
                    .and_then(Json::as_array)
                    .map(|a| a.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                match (attrs.get(col), parents.as_slice()) {
                    (
                        Some(Attr {
                            kind: AttrKind::String,
                            ..
                        }),
                        [p],
                    ) => EntityTypeName::from_str(p)
                        .ok()
                        .map(|p| (col.to_owned(), p)),
                    _ => {
                        problem(
                            format!(
                                "row type {name}: @parent(\"{col}\") needs a String attribute {col} and exactly one parent type (`in [T]`)"
                            ),
                            "declare e.g. @parent(\"employee\") entity Salary in [Employee] = { \"employee\": String, ... };",
                        );
                        None
                    }
                }
            }
        };
        if tables
            .insert(
                table.to_owned(),
                RowType {
                    table: table.to_owned(),
                    entity_type,
                    attrs,
                    parent,
                },
            )
            .is_some()
        {
            problem(
                format!("two row types are annotated @table(\"{table}\")"),
                "each table has one row type",
            );
        }
    }
    let actions = ns
        .get("actions")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    for (action, resource) in ACTIONS {
        let Some(a) = actions.get(action) else {
            problem(
                format!("action {action} is not declared"),
                "declare every action of the model; see policy/BUNDLE.md",
            );
            continue;
        };
        let resources: Vec<String> = a
            .pointer("/appliesTo/resourceTypes")
            .and_then(Json::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if resource == "*" {
            for rt in tables.values() {
                if !resources.contains(&rt.entity_type.to_string()) {
                    problem(
                        format!(
                            "action {action} does not apply to row type {} (table {})",
                            rt.entity_type, rt.table
                        ),
                        "list every row type in the action's resource types",
                    );
                }
            }
        } else if !resources.iter().any(|r| r == resource) {
            problem(
                format!("action {action} must apply to resource type {resource}"),
                "fix its appliesTo",
            );
        }
    }
    for action in SCHEMA_ACTIONS {
        let Some(a) = actions.get(action) else {
            continue;
        };
        let resources: Vec<&str> = a
            .pointer("/appliesTo/resourceTypes")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        for needed in ["Table", "Domain"] {
            if !resources.contains(&needed) {
                problem(
                    format!("schema action {action} must apply to resource type {needed}"),
                    "declare it as `action Create, Alter, Drop appliesTo { principal: User, resource: [Table, Domain], context: Session };`",
                );
            }
        }
    }
    if let Some(a) = actions.get(INSPECT_ACTION) {
        let applies = a
            .pointer("/appliesTo/resourceTypes")
            .and_then(Json::as_array)
            .is_some_and(|r| r.iter().any(|x| x.as_str() == Some("Table")));
        if !applies {
            problem(
                format!("action {INSPECT_ACTION} must apply to resource type Table"),
                "declare it as `action Inspect appliesTo { principal: User, resource: Table, context: Session };`",
            );
        }
    }
    Some(tables)
}

fn read_domains(entities: &Json, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, Domain> {
    let mut out = BTreeMap::new();
    for e in entities.as_array().into_iter().flatten() {
        if e.pointer("/uid/type").and_then(Json::as_str) != Some("Domain") {
            continue;
        }
        let Some(name) = e.pointer("/uid/id").and_then(Json::as_str) else {
            continue;
        };
        let attr = |k: &str| e.pointer(&format!("/attrs/{k}")).and_then(Json::as_str);
        let base = match attr("base").map(SqlType::from_str) {
            Some(Ok(t)) => t,
            Some(Err(err)) => {
                diags.push(Diagnostic::file(
                    ENTITIES_FILE,
                    format!("domain {name}: base type: {err}"),
                    Some("write a SQL type, e.g. \"VARCHAR(254)\" or \"DECIMAL(12,2)\""),
                ));
                continue;
            }
            None => continue,
        };
        let mask = match attr("mask").map(MaskFn::from_str) {
            Some(Ok(m)) => m,
            Some(Err(err)) => {
                diags.push(Diagnostic::file(
                    ENTITIES_FILE,
                    format!("domain {name}: mask: {err}"),
                    None,
                ));
                continue;
            }
            None => continue,
        };
        if let Err(err) = mask.check_type(&base) {
            diags.push(Diagnostic::file(
                ENTITIES_FILE,
                format!("domain {name}: {err}"),
                Some("choose a mask that keeps the base type, or null"),
            ));
            continue;
        }
        out.insert(
            name.to_owned(),
            Domain {
                name: name.to_owned(),
                base,
                check: attr("check").map(str::to_owned),
                mask,
            },
        );
    }
    out
}
