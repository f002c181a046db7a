//! `coffer dump`: a database snapshot's plain dump on stdout or into a file (SQL for PostgreSQL
//! and MySQL, the database file for SQLite, the RDB file for Redis), so a restore never depends
//! on Coffer reaching a server.

use crate::cli::SnapshotFilter;
use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::Result;
use clap::Args;
use coffer_ops::dump::{dump, Dump, DumpOutput};
use coffer_sources::database::DumpRequest;
use std::path::PathBuf;

/// `dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// Which database of a whole-server snapshot.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Only this table (repeatable).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// Only the schema.
    #[arg(long, conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Only the data.
    #[arg(long)]
    pub data_only: bool,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Runs `dump`.
pub async fn run(ctx: &Ctx, a: DumpArgs) -> Result<u8> {
    if ctx.global.json && a.output.is_none() {
        return Err(UsageError(
            "--json needs --output FILE: without it the dump itself goes to standard output".into(),
        )
        .into());
    }
    let req = Dump {
        snapshot: a.snapshot.clone(),
        filter: a.filter.ops(),
        request: DumpRequest {
            database: a.database.clone(),
            tables: a.tables.clone(),
            schema_only: a.schema_only,
            data_only: a.data_only,
        },
        no_lock: ctx.global.no_lock,
    };
    let display = crate::commands::progress::display(ctx);
    let sigint = crate::commands::progress::cancel_on_sigint("interrupted: stopping the dump");
    let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    let output = match &a.output {
        Some(path) => DumpOutput::File(path.clone()),
        None => DumpOutput::Writer(&mut stdout),
    };
    let report = dump(&ctx.spec()?, &req, output, &*display, &sigint.token).await;
    display.finish();
    let report = report?;
    if let Some(path) = &a.output {
        if ctx.global.json {
            output::print_json(&report);
        } else if !ctx.global.quiet {
            println!(
                "wrote the {} dump of snapshot {} to {} ({})",
                report.engine,
                report.snapshot_id.short(),
                path.display(),
                output::size(report.bytes)
            );
        }
    }
    Ok(code::OK)
}
