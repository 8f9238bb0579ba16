//! `sb`: the ScratchBird command line.
//!
//! Today it carries the security bundle tooling (`sb bundle ...`) and a SQL shell
//! on an in-process node (`sb sql --local DIR`); the networked shell, CA and
//! cluster commands arrive with their issues.

#[macro_use]
mod out;
mod audit;
mod bundle;
mod ca;
mod cluster;
mod demo;
mod load;
mod remote;
mod rotate;
mod sql;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sb",
    version,
    about = "ScratchBird command line",
    long_about = "ScratchBird command line.\n\nA security officer writes a security bundle (Cedar files in a folder), checks it against the catalog, hashes and signs it, and asks what a principal would see:\n\n  sb bundle check examples/bundles/saas --catalog examples/catalogs/saas.json\n  sb bundle keygen --out ~/keys/officer\n  sb bundle sign examples/bundles/saas --key ~/keys/officer.key\n  sb bundle verify examples/bundles/saas --trust ~/keys/officer.pub\n  sb bundle explain examples/bundles/saas --principal 'User::\"alice\"'"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Security bundles: check, hash, sign, verify, explain.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// A SQL shell, on a node over QUIC (--connect) or inside this process (--local).
    ///
    /// Statements end with ';'. With -c or -f it runs them and exits with status 1
    /// if one failed. Examples:
    ///
    ///   sb sql --connect 127.0.0.1:7400 --cert alice.crt --key alice.key --ca ca.crt
    ///   sb sql --profile prod -c "SELECT count(*) FROM orders" --format csv
    ///   sb sql --local /tmp/db -c "CREATE TABLE t (a INT PRIMARY KEY, b TEXT)"
    ///   sb sql --local /tmp/db -c "INSERT INTO t VALUES (1, 'x'); SELECT * FROM t"
    ///   sb sql --local /tmp/db -c "EXPLAIN WASM SELECT count(*) FROM t"
    ///   sb sql --local /tmp/db --format csv -f report.sql
    #[command(verbatim_doc_comment)]
    Sql(sql::SqlArgs),
    /// Loads a file of rows into a table (csv, or PostgreSQL's text format),
    /// in runs of whole rows with progress, under the bundle's write rules:
    /// `\copy` in sb sql with options of its own. Outside a transaction each
    /// run (about 768 KiB of rows) commits on its own; a failure names its
    /// line and the rows committed before it.
    ///
    ///   sb load orders orders.csv --header --local /tmp/db
    ///   sb load lineitem lineitem.tbl --format csv --delimiter '|' --profile prod
    ///   sb load t rows.tsv --columns id,name --null '' --connect 127.0.0.1:7400 --cert ...
    #[command(verbatim_doc_comment)]
    Load(load::LoadArgs),
    /// The cluster CA: init, issue-node, issue-user, list, enable, disable; with
    /// a control plane, rotate (new, begin, status, cutover) and rules.
    ///
    ///   sb ca init --dir ca
    ///   sb ca issue-node --dir ca --name n1 --roles coordinator,shard --out n1
    ///   sb ca issue-user --dir ca --name alice --out alice
    ///   sb ca list --dir ca
    ///   sb ca rotate begin --new ca-2027 --admin-key admin.key --connect ...
    #[command(subcommand, verbatim_doc_comment)]
    Ca(ca::CaCommand),
    /// A one-node cluster on loopback and a tour: two users, different rows and
    /// masks for the same SQL over QUIC; then a prompt. Everything is removed after.
    ///
    ///   sb demo
    ///   sb demo --keep --no-shell
    #[command(verbatim_doc_comment)]
    Demo(demo::DemoArgs),
    /// Runs the node (the same program as sbnode), for `sb demo` where sbnode was
    /// not built. Use sbnode.
    #[command(hide = true, disable_help_flag = true)]
    Sbnode {
        /// sbnode's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The cluster's control plane: init (its genesis), status, member
    /// add|remove|enable|disable|list, epoch list|show|verify, bundle publish,
    /// shards, enrol (the chain for a new node). Every change is a new signed
    /// epoch.
    ///
    ///   sb cluster init --ca ca --key admin.key --bundle bundle --out genesis.sbc
    ///   sb cluster status --connect 127.0.0.1:7400 --cert alice.crt --key alice.key --ca ca.crt
    ///   sb cluster member disable n3 --admin-key admin.key --connect ... --cert ... --key ... --ca ...
    ///   sb cluster bundle publish ./bundle --admin-key admin.key --connect ...
    #[command(subcommand, verbatim_doc_comment)]
    Cluster(cluster::ClusterCommand),
    /// The audit trail of sandbox executions: show, verify, tail; and the
    /// cluster's audit spine (spine show|verify).
    ///
    ///   sb audit verify --data /tmp/db
    ///   sb audit tail --data /tmp/db -n 20
    ///   sb audit show --data /tmp/db --principal 'User::"alice"' --format json
    #[command(subcommand, verbatim_doc_comment)]
    Audit(audit::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bundle(cmd) => bundle::run(cmd),
        Command::Sql(args) => sql::run(&args),
        Command::Load(args) => load::run(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Cluster(cmd) => cluster::run(cmd),
        Command::Demo(args) => demo::run(&args),
        Command::Sbnode { args } => {
            let mut all = vec![std::ffi::OsString::from("sbnode")];
            all.extend(args);
            return scratchbird_node::daemon::main_with(all);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
