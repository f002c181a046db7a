//! `coffer status`: the last run of each job's tasks, their next time, and which are overdue
//! or failing. Exits with 1 when any is, so monitoring can run it as a check.

use crate::commands::schedule::{
    describe, load_config, local_time, open_catalog, print_table, ConfigArg,
};
use crate::context::Ctx;
use crate::output::{self, code};
use anyhow::Result;
use chrono::Utc;
use clap::Args;
use coffer_server::status::statuses;

/// `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The config.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// Runs `status`.
pub async fn run(ctx: &Ctx, a: StatusArgs) -> Result<u8> {
    let config = load_config(a.config.config.as_deref())?;
    let (catalog, location) = open_catalog(&config).await?;
    let all = statuses(&config, catalog.as_ref(), Utc::now()).await?;
    let bad = all.iter().filter(|s| s.overdue || s.failing).count();
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "ok": bad == 0,
            "catalog": location,
            "jobs": all,
        }));
    } else {
        let tz = config.timezone;
        let rows: Vec<[String; 6]> = all
            .iter()
            .map(|s| {
                let last = s
                    .last_run
                    .as_ref()
                    .map(|r| format!("{} {}", local_time(r.started_at, tz), r.status))
                    .unwrap_or_else(|| "never".into());
                let ok = s
                    .last_success
                    .as_ref()
                    .map(|r| local_time(r.started_at, tz))
                    .unwrap_or_else(|| "never".into());
                let mut state = s.state.to_string();
                if let Some(since) = s.overdue_since {
                    state.push_str(&format!(" (missed {})", local_time(since, tz)));
                }
                if s.failing {
                    if let Some(r) = &s.last_run {
                        state.push_str(&format!(": {}", describe(r)));
                    }
                }
                [
                    s.job.clone(),
                    s.kind.to_string(),
                    last,
                    ok,
                    s.next_run
                        .map(|n| local_time(n, tz))
                        .unwrap_or_else(|| "-".into()),
                    state,
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no jobs in {}", config.path.display());
        } else {
            print_table(
                [
                    "JOB",
                    "TASK",
                    "LAST RUN",
                    "LAST SUCCESS",
                    "NEXT RUN",
                    "STATE",
                ],
                &rows,
            );
        }
        if bad > 0 && !ctx.global.quiet {
            eprintln!("coffer: {bad} task(s) overdue or failing");
        }
    }
    Ok(if bad == 0 { code::OK } else { code::FAILURE })
}
