//! `sb bundle ...`: the security officer's tools.

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;
use scratchbird_policy::Bundle;
use scratchbird_policy::bundle::SCHEMA_ACTIONS;
use scratchbird_policy::catalog::{self, Catalog};
use scratchbird_policy::derive::{
    Deriver, Effect, Enforcement, RowFilter, SchemaAction, SchemaObject, SecurityContext,
    may_change_schema, schema_of_row_types,
};
use scratchbird_policy::sign::{self, Manifest, Trust};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Check a bundle: parse, validate every policy strictly against the schema, check
    /// the ScratchBird model, and (with --catalog) check it against a catalog.
    Check {
        /// The bundle folder.
        dir: PathBuf,
        /// A catalog description (JSON) to check the bundle against.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Print the bundle's hash: blake3 of its canonical form (formatting, comments,
    /// file names and order do not change it).
    Hash {
        /// The bundle folder.
        dir: PathBuf,
    },
    /// Sign the bundle with an administrator key (adds to bundle.manifest; a bundle
    /// that changed since the last signature starts a new manifest).
    Sign {
        /// The bundle folder.
        dir: PathBuf,
        /// The secret key file (from `sb bundle keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify bundle.manifest: the hash matches the files and every signature verifies
    /// with the trusted key it names.
    Verify {
        /// The bundle folder.
        dir: PathBuf,
        /// Trusted administrator public keys (repeatable). Default: the file named by
        /// $SB_TRUSTED_ADMINS, else ~/.config/scratchbird/trusted-admins.pub.
        #[arg(long)]
        trust: Vec<PathBuf>,
    },
    /// Create an administrator key pair: OUT.key (secret, mode 0600) and OUT.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
        /// A comment stored with the public key (who owns it).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Explain what a principal can see: grants, which rows (in words and as the
    /// derived predicate), which columns, which masks.
    Explain {
        /// The bundle folder.
        dir: PathBuf,
        /// The principal, e.g. 'User::"analyst1"'.
        #[arg(long)]
        principal: String,
        /// The session context, a JSON object, e.g. '{"break_glass": true}'.
        #[arg(long, default_value = "{}")]
        context: String,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// A catalog description: columns and their domains (for masks).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

pub fn run(cmd: BundleCommand) -> Result<()> {
    match cmd {
        BundleCommand::Check { dir, catalog } => check(&dir, catalog.as_deref()),
        BundleCommand::Hash { dir } => {
            let b = load(&dir)?;
            say!("{}", b.hash());
            Ok(())
        }
        BundleCommand::Sign { dir, key } => sign_cmd(&dir, &key),
        BundleCommand::Verify { dir, trust } => verify_cmd(&dir, trust),
        BundleCommand::Keygen { out, comment } => keygen(&out, &comment),
        BundleCommand::Explain {
            dir,
            principal,
            context,
            table,
            catalog,
        } => explain(
            &dir,
            &principal,
            &context,
            table.as_deref(),
            catalog.as_deref(),
        ),
    }
}

fn load(dir: &Path) -> Result<Bundle> {
    Bundle::load(dir).map_err(|e| anyhow!("{e}"))
}

fn check(dir: &Path, catalog_path: Option<&Path>) -> Result<()> {
    let b = load(dir)?;
    for w in b.warnings() {
        eprintln!("warning: {w}");
    }
    if let Some(p) = catalog_path {
        let c = Catalog::read(p).map_err(|e| anyhow!("{e}"))?;
        let problems = catalog::check(&b, &c);
        if !problems.is_empty() {
            let mut msg = format!(
                "the bundle does not match catalog {} ({} problem{}):",
                p.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for d in &problems {
                msg.push('\n');
                msg.push_str(&d.to_string());
            }
            bail!(msg);
        }
    }
    say!("ok: bundle {} checks", dir.display());
    say!("  hash      {}", b.hash());
    say!("  policies  {}", b.policy_count());
    let tables: Vec<String> = b
        .tables()
        .values()
        .map(|r| format!("{} ({})", r.table, r.entity_type))
        .collect();
    say!(
        "  tables    {}",
        if tables.is_empty() {
            "(none)".into()
        } else {
            tables.join(", ")
        }
    );
    let domains: Vec<String> = b
        .domains()
        .values()
        .map(|d| format!("{} ({}, mask {})", d.name, d.base, d.mask))
        .collect();
    say!(
        "  domains   {}",
        if domains.is_empty() {
            "(none)".into()
        } else {
            domains.join(", ")
        }
    );
    if let Some(p) = catalog_path {
        say!("  catalog   {}: matches", p.display());
    }
    Ok(())
}

pub(crate) fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn sign_cmd(dir: &Path, key_path: &Path) -> Result<()> {
    let b = load(dir)?;
    let key = sign::read_secret_key(key_path).map_err(|e| anyhow!("{e}"))?;
    let existing = match Manifest::read(dir) {
        Ok(m) => Some(m),
        Err(scratchbird_policy::SignatureError::NoManifest { .. }) => None,
        Err(e) => bail!("{e}"),
    };
    let restarted = existing
        .as_ref()
        .is_some_and(|m| m.bundle_hash != b.hash().to_hex());
    let m = sign::sign(&b, &key, existing, now_micros());
    m.write(dir).map_err(|e| anyhow!("{e}"))?;
    if restarted {
        eprintln!(
            "note: the bundle changed since its manifest was signed; the earlier signatures were dropped"
        );
    }
    say!(
        "signed bundle {} with key {} ({} signature{} in {})",
        b.hash(),
        sign::key_id(&key.verifying_key()),
        m.signatures.len(),
        if m.signatures.len() == 1 { "" } else { "s" },
        dir.join(scratchbird_policy::bundle::MANIFEST_FILE)
            .display()
    );
    Ok(())
}

fn default_trust() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SB_TRUSTED_ADMINS") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".config/scratchbird/trusted-admins.pub");
    p.exists().then_some(p)
}

fn verify_cmd(dir: &Path, mut trust_files: Vec<PathBuf>) -> Result<()> {
    if trust_files.is_empty() {
        trust_files.extend(default_trust());
    }
    if trust_files.is_empty() {
        bail!(
            "no trusted administrator keys: pass --trust FILE (public keys from `sb bundle keygen`), or set SB_TRUSTED_ADMINS"
        );
    }
    let trust = Trust::from_files(&trust_files).map_err(|e| anyhow!("{e}"))?;
    let b = load(dir)?;
    let m = Manifest::read(dir).map_err(|e| anyhow!("{e}"))?;
    let signers = sign::verify(&b, &m, &trust).map_err(|e| anyhow!("{e}"))?;
    say!(
        "ok: bundle {} is signed by {} trusted key{}",
        b.hash(),
        signers.len(),
        if signers.len() == 1 { "" } else { "s" }
    );
    for k in signers {
        say!("  {} {}", k.id, k.comment);
    }
    Ok(())
}

fn write_new(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() {
            format!("{} exists; refusing to overwrite a key", path.display())
        } else {
            format!("cannot create {}", path.display())
        }
    })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

fn keygen(out: &Path, comment: &str) -> Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow!("no randomness from the operating system: {e}"))?;
    let key = sign::signing_key_from_seed(seed);
    let secret = out.with_extension("key");
    let public = out.with_extension("pub");
    if secret.exists() || public.exists() {
        bail!(
            "{} or {} exists; refusing to overwrite a key",
            secret.display(),
            public.display()
        );
    }
    write_new(&secret, &sign::secret_key_text(&key), true)?;
    write_new(
        &public,
        &sign::public_key_text(&key.verifying_key(), comment),
        false,
    )?;
    say!("key {} created", sign::key_id(&key.verifying_key()));
    say!(
        "  secret  {} (mode 0600; keep it offline)",
        secret.display()
    );
    say!(
        "  public  {} (give it to every node that must trust this administrator)",
        public.display()
    );
    Ok(())
}

fn words(filter: &RowFilter) -> String {
    match filter {
        RowFilter::All => "every row".into(),
        RowFilter::None => "no row".into(),
        RowFilter::Cedar(c) => format!(
            "rows Cedar allows, decided row by row (the residual could not be translated: {})",
            c.reason
        ),
        RowFilter::Predicate(f) => {
            let mut s = if f.permit_always {
                "every row".to_owned()
            } else {
                let p: Vec<String> = f.permits.iter().map(ToString::to_string).collect();
                format!(
                    "rows where {}",
                    if p.is_empty() {
                        "false".into()
                    } else {
                        p.join(" OR ")
                    }
                )
            };
            for x in &f.forbids {
                s.push_str(&format!("\n                 except rows where {x}"));
            }
            s
        }
    }
}

fn predicate(filter: &RowFilter) -> Option<String> {
    let RowFilter::Predicate(f) = filter else {
        return None;
    };
    let mut permit = if f.permit_always {
        "TRUE".to_owned()
    } else if f.permits.is_empty() {
        "FALSE".to_owned()
    } else {
        f.permits
            .iter()
            .map(|e| format!("IS TRUE ({e})"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    for x in &f.forbids {
        permit = format!("({permit}) AND NOT IS TRUE ({x})");
    }
    Some(permit)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// What `ctx` may do to the schema of `object`: `Create`, `Alter`, `Drop`.
fn schema_rights(
    b: &Arc<Bundle>,
    ctx: &SecurityContext,
    object: SchemaObject<'_>,
) -> Result<[bool; 3]> {
    let mut out = [false; 3];
    for (slot, action) in out.iter_mut().zip([
        SchemaAction::Create,
        SchemaAction::Alter,
        SchemaAction::Drop,
    ]) {
        *slot = may_change_schema(b, ctx, action, object)
            .map_err(|e| anyhow!("{e}"))?
            .0;
    }
    Ok(out)
}

fn print_table(b: &Bundle, e: &Enforcement, schema: [bool; 3]) {
    say!();
    say!("table {}", e.table);
    let g = e.grants;
    say!(
        "  grants       SELECT {}   INSERT {}   UPDATE {}   DELETE {}",
        yes(g.select),
        yes(g.insert),
        yes(g.update),
        yes(g.delete)
    );
    say!(
        "  schema       CREATE {}   ALTER {}   DROP {}",
        yes(schema[0]),
        yes(schema[1]),
        yes(schema[2])
    );
    say!("  reads        {}", words(&e.read));
    for (id, effect, cond) in &e.read_policies {
        let file = b.source(id).map(|s| s.file.clone()).unwrap_or_default();
        let verb = if *effect == Effect::Permit {
            "permitted by"
        } else {
            "forbidden by"
        };
        let cond = if cond == "true" {
            "every row"
        } else {
            cond.as_str()
        };
        say!("                 {verb} {id} ({file}): {cond}");
    }
    say!("  writes       {}", words(&e.write));
    if let Some(p) = predicate(&e.read) {
        say!("  predicate    {p}");
    }
    let width = e.columns.iter().map(|c| c.column.len()).max().unwrap_or(0);
    for (i, c) in e.columns.iter().enumerate() {
        let what = match (&c.readable, &c.mask) {
            (false, _) => "hidden: a query that names it fails".to_owned(),
            (true, None) => "visible".to_owned(),
            (true, Some((d, m))) => format!("visible, masked with {m} (domain {d})"),
        };
        let label = if i == 0 {
            "  columns    "
        } else {
            "             "
        };
        say!("{label}  {:<width$}  {what}", c.column);
    }
    if !e.recorded.is_empty() {
        say!(
            "  recorded     {} (every use goes to the audit trail)",
            e.recorded.join(", ")
        );
    }
}

fn explain(
    dir: &Path,
    principal: &str,
    context: &str,
    table: Option<&str>,
    catalog_path: Option<&Path>,
) -> Result<()> {
    let b = Arc::new(load(dir)?);
    let context: serde_json::Value = serde_json::from_str(context)
        .with_context(|| format!("--context is not JSON: {context}"))?;
    let catalog = match catalog_path {
        Some(p) => Some(Catalog::read(p).map_err(|e| anyhow!("{e}"))?),
        None => None,
    };
    let deriver = Deriver::new(b.clone());
    let ctx = SecurityContext {
        principal: principal.to_owned(),
        context: context.clone(),
    };
    let names: Vec<&str> = match table {
        Some(t) => {
            if !b.tables().contains_key(t) {
                bail!(
                    "table {t} has no row type in the bundle (tables: {})",
                    b.tables().keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            vec![t]
        }
        None => b.tables().values().map(|row| row.table.as_str()).collect(),
    };
    // a table the catalog describes is derived as the catalog has it; any other
    // as the bundle's row type describes it
    let of_rows = schema_of_row_types(&b);
    let mut out = Vec::new();
    for name in names {
        let (schema, t) = match catalog.as_ref().and_then(|c| Some((c, c.table(name)?))) {
            Some((c, t)) => (&c.schema, t.id),
            None => (
                &of_rows,
                of_rows
                    .table_by_name(name)
                    .map(|t| t.id)
                    .ok_or_else(|| anyhow!("table {name} has no row type in the bundle"))?,
            ),
        };
        out.push(
            deriver
                .derive(&ctx, schema, t)
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    say!("bundle     {} ({})", dir.display(), b.hash());
    say!("principal  {principal}");
    let (roles, attrs) = scratchbird_policy::derive::describe_principal(&b, principal)
        .map_err(|e| anyhow!("{e}"))?;
    say!(
        "  member of  {}",
        if roles.is_empty() {
            "(nothing)".into()
        } else {
            roles.join(", ")
        }
    );
    say!(
        "  attributes {}",
        if attrs.is_empty() {
            "(none)".into()
        } else {
            attrs.join(", ")
        }
    );
    say!("context    {context}");
    if catalog.is_none() {
        say!(
            "(no --catalog: columns are the row types' attributes, and masks need the catalog's domains)"
        );
    }
    let declared: Vec<&str> = SCHEMA_ACTIONS
        .into_iter()
        .filter(|a| b.declares_action(a))
        .collect();
    if declared.is_empty() {
        say!(
            "schema     the bundle declares no schema action (Create, Alter, Drop): nobody changes the schema under it"
        );
    }
    for e in &out {
        let rights = schema_rights(&b, &ctx, SchemaObject::Table(&e.table))?;
        print_table(&b, e, rights);
    }
    let domains: Vec<String> = b.domains().keys().cloned().collect();
    if !domains.is_empty() {
        say!();
        say!("domains");
        for d in &domains {
            let unmask =
                scratchbird_policy::derive::may_unmask(&b, &ctx, d).map_err(|e| anyhow!("{e}"))?;
            let dom = &b.domains()[d];
            let rights = schema_rights(&b, &ctx, SchemaObject::Domain(d))?;
            say!(
                "  {d:<12} {}   CREATE {}   DROP {}",
                if unmask {
                    "shown as stored".to_owned()
                } else {
                    format!("masked with {}", dom.mask)
                },
                yes(rights[0]),
                yes(rights[2])
            );
        }
    }
    Ok(())
}
