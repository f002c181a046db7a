//! Restoring roles and grants (`pg_dumpall --globals-only` output) into a server: statement by
//! statement, skipping `CREATE ROLE` for roles that exist and never changing the role Coffer
//! is connected as; other failures become warnings, as with `psql` running the script.

use super::connect::{query_error, PgConn};
use super::restore::connect_maintenance;
use super::sql::{first_ident, split};
use crate::database::{RestoreReport, StreamSource};
use coffer_core::{Error, Result};
use std::collections::HashSet;

/// Runs the globals script of stream `path` against `conn`'s server.
pub async fn restore(
    src: &StreamSource,
    path: &str,
    conn: &PgConn,
    report: &mut RestoreReport,
) -> Result<()> {
    let text = String::from_utf8(src.read_all(path).await?)
        .map_err(|_| Error::corrupt("the globals stream is not UTF-8"))?;
    let client = connect_maintenance(conn).await?;
    let roles: HashSet<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(|e| query_error("listing roles", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let me: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| query_error("reading the current user", e))?
        .get(0);
    for stmt in split(&text) {
        let code: String = stmt
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.trim();
        let upper = code.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("CREATE ROLE ") {
            let name = first_ident(&code[code.len() - rest.len()..]);
            if name.as_ref().is_some_and(|n| roles.contains(n)) {
                continue;
            }
        }
        if let Some(rest) = upper.strip_prefix("ALTER ROLE ") {
            let name = first_ident(&code[code.len() - rest.len()..]);
            if name.as_deref() == Some(me.as_str()) {
                report.warnings.push(format!(
                    "globals: the attributes of role {me} (the restoring user) were left as they are"
                ));
                continue;
            }
        }
        if let Err(e) = client.batch_execute(code).await {
            let short: String = code.chars().take(80).collect();
            report
                .warnings
                .push(format!("globals: {:#}", query_error(short, e)));
        }
    }
    Ok(())
}
