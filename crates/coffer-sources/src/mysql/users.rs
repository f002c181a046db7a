//! Users, roles and grants of a whole server, as SQL (`CREATE USER IF NOT EXISTS`, `GRANT`)
//! read with `SHOW CREATE USER` and `SHOW GRANTS`, which MariaDB 10.2+ and MySQL 5.7+ both have.

use super::conn::{describe, query_error};
use super::sql::lit;
use coffer_core::Result;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Accounts that belong to the server itself (or to its administrator) and are never restored.
const SYSTEM_ACCOUNTS: &[&str] = &[
    "root",
    "mariadb.sys",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
];

/// The users script and how many accounts it holds.
pub struct Users {
    /// The SQL: every `CREATE` first, then every `GRANT`, one statement a line.
    pub sql: String,
    /// Accounts written.
    pub accounts: usize,
    /// Accounts that could not be read (name and why).
    pub skipped: Vec<String>,
}

/// Reads every account but the system ones.
pub async fn read(conn: &mut Conn) -> Result<Users> {
    let rows: Vec<(String, String, String)> = match conn
        .query("SELECT User, Host, is_role FROM mysql.user ORDER BY User, Host")
        .await
    {
        Ok(r) => r,
        // MySQL has no is_role column.
        Err(_) => conn
            .query::<(String, String), _>("SELECT User, Host FROM mysql.user ORDER BY User, Host")
            .await
            .map_err(|e| query_error("listing the server's users (mysql.user)", e))?
            .into_iter()
            .map(|(u, h)| (u, h, "N".to_string()))
            .collect(),
    };
    let mut creates = Vec::new();
    let mut grants = Vec::new();
    let mut skipped = Vec::new();
    let mut accounts = 0;
    for (user, host, is_role) in rows {
        if SYSTEM_ACCOUNTS.contains(&user.as_str()) || user.is_empty() {
            continue;
        }
        let role = is_role == "Y";
        let account = if role {
            lit(&user)
        } else {
            format!("{}@{}", lit(&user), lit(&host))
        };
        if role {
            creates.push(format!("CREATE ROLE IF NOT EXISTS {account};"));
        } else {
            match conn
                .query_first::<String, _>(format!("SHOW CREATE USER {account}"))
                .await
            {
                Ok(Some(create)) => creates.push(format!(
                    "{};",
                    create.replacen("CREATE USER ", "CREATE USER IF NOT EXISTS ", 1)
                )),
                Ok(None) => {
                    skipped.push(format!("{user}@{host}: SHOW CREATE USER returned nothing"));
                    continue;
                }
                Err(e) => {
                    skipped.push(format!("{user}@{host}: {}", describe(&e)));
                    continue;
                }
            }
        }
        match conn
            .query::<String, _>(format!("SHOW GRANTS FOR {account}"))
            .await
        {
            Ok(list) => grants.extend(list.into_iter().map(|g| format!("{g};"))),
            Err(e) => skipped.push(format!("grants of {user}@{host}: {}", describe(&e))),
        }
        accounts += 1;
    }
    let mut sql = String::from("/*!40101 SET NAMES utf8mb4 */;\n");
    for line in creates.iter().chain(grants.iter()) {
        sql.push_str(&line.replace('\n', " "));
        sql.push('\n');
    }
    Ok(Users {
        sql,
        accounts,
        skipped,
    })
}
