//! `sb audit show | verify | tail`: a node's audit trail of sandbox executions.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use scratchbird_host::audit::{AuditRecord, read_records, verify};
use scratchbird_types::Date;
use std::path::{Path, PathBuf};

/// Which log.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The node's data directory (its audit trail is in DIR/audit).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

/// How to print records.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One line per record.
    Table,
    /// One JSON object per record, every field.
    Json,
}

/// What `sb audit spine` does.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SpineAction {
    /// Print the spine.
    Show,
    /// Check it, and a node's trail against its anchor.
    Verify,
}

/// `sb audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print records, oldest first, optionally filtered.
    ///
    ///   sb audit show --data /tmp/db --principal 'User::"alice"' --outcome error
    ///   sb audit show --data /tmp/db --table customers --since 2026-11-26T18:00:00
    #[command(verbatim_doc_comment)]
    Show {
        #[command(flatten)]
        log: LogArgs,
        /// Only this principal (as Cedar writes it: User::"alice"; or owner).
        #[arg(long)]
        principal: Option<String>,
        /// Only executions that touched this table.
        #[arg(long)]
        table: Option<String>,
        /// Only records from this time on (UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only records before this time (UTC).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this outcome.
        #[arg(long, value_parser = ["ok", "error", "started"])]
        outcome: Option<String>,
        /// Only the executions of one query: its trace id (EXPLAIN ANALYZE
        /// prints it; every shard's stage record and the merge stage's carry
        /// it), on each node's trail.
        #[arg(long, value_name = "HEX")]
        trace: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Check the hash chain end to end; report the first break and exit 1 if any.
    Verify {
        #[command(flatten)]
        log: LogArgs,
    },
    /// The cluster's audit spine, in its control log: every epoch (membership
    /// changes, bundles, CA operations, forced steps) with who signed it and
    /// when, and each node's execution-audit head as last anchored. show
    /// prints it; verify checks the chain here (against --trust keys when
    /// given) and, with --data, that the node's trail still holds the record
    /// the log anchored: a trail rewritten together with its head, or
    /// replaced, no longer does.
    ///
    ///   sb audit spine show --connect 127.0.0.1:7400 --cert ops.crt --key ops.key --ca ca.crt
    ///   sb audit spine verify --data n1/data --trust admin.pub --connect ...
    #[command(verbatim_doc_comment)]
    Spine {
        /// show or verify.
        action: SpineAction,
        /// verify: the data directory of the node whose trail is checked.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// verify: the administrator public keys the first epoch must be
        /// signed by.
        #[arg(long, value_name = "FILE")]
        trust: Vec<PathBuf>,
        #[command(flatten)]
        conn: crate::remote::Conn,
    },
    /// Print the last records.
    Tail {
        #[command(flatten)]
        log: LogArgs,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

use scratchbird_types::hex;

/// Microseconds since the epoch of `YYYY-MM-DD[THH:MM[:SS]]` (UTC).
fn parse_time(s: &str) -> Result<i64> {
    let bad =
        || anyhow::anyhow!("{s:?} is not a time: write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)");
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, ""));
    let mut d = date.splitn(3, '-');
    let y: i32 = d.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let m: u32 = d.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let day: u32 = d.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let days = Date::from_ymd(y, m, day).ok_or_else(bad)?.0;
    let mut secs = 0i64;
    if !time.is_empty() {
        let mut parts = time.split(':');
        for mult in [3600, 60, 1] {
            if let Some(p) = parts.next() {
                let v: i64 = p.parse().map_err(|_| bad())?;
                secs += v * mult;
            }
        }
    }
    Ok((i64::from(days) * 86_400 + secs) * 1_000_000)
}

fn time_text(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let d = i32::try_from(days).map_or_else(|_| "?".to_owned(), |d| Date(d).to_string());
    format!(
        "{d}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn print(r: &AuditRecord, format: Format) {
    match format {
        Format::Table => {
            let err = r
                .error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default();
            let recorded = if r.recorded.is_empty() {
                String::new()
            } else {
                format!(" recorded: {}", r.recorded.join("; "))
            };
            let context = r
                .context
                .as_deref()
                .map(|c| format!(" context: {c}"))
                .unwrap_or_default();
            let change = r
                .change
                .as_deref()
                .map(|c| format!(" schema change: {c};"))
                .unwrap_or_default();
            let trace = r
                .trace
                .as_deref()
                .map(|t| format!(" trace {t}"))
                .unwrap_or_default();
            say!(
                "{:>6} {} {} {}{} tables [{}] scanned {} hidden {} masked {} returned {} written {} {} µs{}{}{}{}",
                r.seq,
                time_text(r.time_us),
                r.principal,
                r.outcome,
                change,
                r.tables.join(", "),
                r.rows_scanned,
                r.rows_hidden,
                r.cells_masked,
                r.rows_returned,
                r.rows_written,
                r.duration_us,
                recorded,
                context,
                trace,
                err
            );
        }
        Format::Json => {
            let v = serde_json::json!({
                "seq": r.seq,
                "time": time_text(r.time_us),
                "time_us": r.time_us,
                "node": r.node,
                "envelope": r.envelope.map(|h| hex(&h)),
                "modules": r.modules.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                "coordinator": r.coordinator,
                "principal": r.principal,
                "epoch": r.epoch,
                "bundle": r.bundle.map(|h| hex(&h)),
                "tables": r.tables,
                "columns": r.columns,
                "rows_scanned": r.rows_scanned,
                "rows_hidden": r.rows_hidden,
                "cells_masked": r.cells_masked,
                "rows_returned": r.rows_returned,
                "rows_written": r.rows_written,
                "memory_bytes": r.memory_bytes,
                "duration_us": r.duration_us,
                "outcome": r.outcome,
                "error": r.error,
                "recorded": r.recorded,
                "context": r.context,
                "change": r.change,
                "trace": r.trace,
                "prev": hex(&r.prev),
                "hash": hex(&r.hash),
            });
            say!("{v}");
        }
    }
}

fn records(data: &Path) -> Result<Vec<AuditRecord>> {
    let path = data.join("audit").join("audit.log");
    if !path.exists() {
        anyhow::bail!(
            "{} has no audit trail (looked for {})",
            data.display(),
            path.display()
        );
    }
    let (records, torn) =
        read_records(&path).with_context(|| format!("reading {}", path.display()))?;
    if torn {
        eprintln!(
            "warning: {} ends in a frame a crash left unfinished; it is not shown (the node cuts it when it next starts; `sb audit verify` says more)",
            path.display()
        );
    }
    Ok(records)
}

/// Runs an `sb audit` subcommand.
///
/// # Errors
/// The log cannot be read, a filter is malformed, or (verify) the chain is broken.
pub fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Spine {
            action,
            data,
            trust,
            conn,
        } => crate::cluster::block_on(spine(action, data, trust, conn)),
        AuditCommand::Show {
            log,
            principal,
            table,
            since,
            until,
            outcome,
            trace,
            format,
        } => {
            let since = since.as_deref().map(parse_time).transpose()?;
            let until = until.as_deref().map(parse_time).transpose()?;
            for r in records(&log.data)? {
                if principal.as_ref().is_some_and(|p| *p != r.principal)
                    || table.as_ref().is_some_and(|t| !r.tables.contains(t))
                    || since.is_some_and(|s| r.time_us < s)
                    || until.is_some_and(|u| r.time_us >= u)
                    || outcome.as_ref().is_some_and(|o| *o != r.outcome)
                    || trace.as_ref().is_some_and(|t| r.trace.as_ref() != Some(t))
                {
                    continue;
                }
                print(&r, format);
            }
            Ok(())
        }
        AuditCommand::Verify { log } => {
            let dir = log.data.join("audit");
            let v = verify(&dir).with_context(|| format!("verifying {}", dir.display()))?;
            match v.first_break {
                None => {
                    say!("ok: {} records, the chain verifies", v.records);
                    if v.beyond_head > 0 || v.torn_bytes > 0 {
                        say!(
                            "note: {} whole record(s) after the head and {} bytes of an unfinished record: what a crash during an append leaves; the node adopts the records and cuts the rest when it next starts (docs/audit-trail.md)",
                            v.beyond_head,
                            v.torn_bytes
                        );
                    }
                    Ok(())
                }
                Some((at, reason)) => {
                    say!("BROKEN at record {at}: {reason}");
                    say!("{} records before it verify", v.records);
                    anyhow::bail!("the audit trail of {} does not verify", log.data.display())
                }
            }
        }
        AuditCommand::Tail { log, count, format } => {
            let all = records(&log.data)?;
            for r in all.iter().skip(all.len().saturating_sub(count)) {
                print(r, format);
            }
            Ok(())
        }
    }
}

async fn spine(
    action: SpineAction,
    data: Option<PathBuf>,
    trust: Vec<PathBuf>,
    conn: crate::remote::Conn,
) -> Result<()> {
    use scratchbird_control::state::ControlState;
    use scratchbird_control::wire::{AdminAnswer, AdminMessage};
    let client = crate::remote::connect(&conn).await?;
    let AdminAnswer::Chain(image) = crate::cluster::ask(&client, &AdminMessage::Chain).await?
    else {
        anyhow::bail!("the node did not send its chain");
    };
    let state = if trust.is_empty() {
        ControlState::from_image(&image)
            .map_err(|e| anyhow::anyhow!("the spine is REFUSED: {e}"))?
    } else {
        let keys: Vec<scratchbird_control::AdminKey> =
            scratchbird_policy::sign::Trust::from_files(&trust)
                .map_err(|e| anyhow::anyhow!("the trusted keys: {e}"))?
                .verifying_keys()
                .map(|k| scratchbird_control::AdminKey(k.to_bytes()))
                .collect();
        ControlState::from_enrolment(&image, &keys)
            .map_err(|e| anyhow::anyhow!("the spine is REFUSED: {e}"))?
    };
    let chain = state.chain().context("the cluster has no epoch yet")?;
    for n in 1..=chain.current().number.0 {
        let Some((r, signed, _)) = chain.get(scratchbird_types::Epoch(n)) else {
            continue;
        };
        let who: Vec<String> = signed
            .signatures
            .iter()
            .map(|s| s.key.to_string())
            .collect();
        println!(
            "epoch {n:>4}  {}  signed by {}  {}{}",
            time_text(r.created_us),
            who.join(","),
            r.note,
            r.forced
                .as_ref()
                .map(|f| format!("  [FORCED: {}]", f.what))
                .unwrap_or_default()
        );
    }
    println!("audit heads anchored");
    for (node, (a, at)) in state
        .anchors()
        .iter()
        .filter_map(|(n, kept)| kept.last().map(|k| (n, k)))
    {
        println!(
            "  node {node}  record {}  {}  at {} (log index {at})",
            a.seq,
            &hex(&a.hash)[..16],
            time_text(a.at_us)
        );
    }
    if matches!(action, SpineAction::Show) {
        return Ok(());
    }
    println!(
        "the chain of {} epoch(s) verifies{}",
        chain.current().number.0,
        if trust.is_empty() {
            " (its first epoch's signers not checked against keys of yours: pass --trust)"
        } else {
            ", from a first epoch signed by keys you trust"
        }
    );
    let Some(data) = data else {
        return Ok(());
    };
    let dir = data.join("audit");
    let v = verify(&dir).with_context(|| format!("verifying {}", dir.display()))?;
    if let Some((at, why)) = v.first_break {
        anyhow::bail!(
            "the trail in {} breaks at record {at}: {why}",
            dir.display()
        );
    }
    let records = records(&data)?;
    let node = records
        .first()
        .and_then(|r| r.node.rsplit('/').next())
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(scratchbird_types::NodeId::from_uuid)
        .context("the trail is empty or names no node")?;
    let kept = state.anchors().get(&node).map_or(&[][..], Vec::as_slice);
    if kept.is_empty() {
        anyhow::bail!(
            "the log holds no anchor for node {node}: nothing to check the trail against yet"
        );
    }
    // every anchor the log keeps, oldest first: a trail padded past the last
    // one still fails on those before it
    for (anchor, at) in kept {
        match records.get(usize::try_from(anchor.seq).unwrap_or(usize::MAX)) {
            Some(r) if r.hash == anchor.hash => {}
            Some(r) => anyhow::bail!(
                "the trail of node {node} was REWRITTEN: its record {} has hash {}, but the control log anchored {} at {} (log index {at})",
                anchor.seq,
                &hex(&r.hash)[..16],
                &hex(&anchor.hash)[..16],
                time_text(anchor.at_us)
            ),
            None => anyhow::bail!(
                "the trail of node {node} was CUT or REPLACED: it holds {} record(s), but the control log anchored record {} at {} (log index {at})",
                records.len(),
                anchor.seq,
                time_text(anchor.at_us)
            ),
        }
    }
    let (last, at) = &kept[kept.len() - 1];
    println!(
        "the trail of node {node} holds all {} record(s) the control log anchored, the last {} at {} (log index {at}): {} record(s) verify",
        kept.len(),
        last.seq,
        time_text(last.at_us),
        records.len()
    );
    Ok(())
}
