//! Where each part of a MySQL/MariaDB backup lives in the snapshot's tree.
//!
//! ```text
//! databases/<db>/schema.sql         mariadb-dump --no-data: tables, sequences, views, routines
//! databases/<db>/data/<table>.sql   the table's rows as INSERT statements
//! databases/<db>/triggers/<table>.sql  the table's triggers (created after its data)
//! databases/<db>/events.sql         the database's events (created last)
//! server/users.sql                  users, roles and grants (whole-server backups)
//! ```

use crate::database::component;

/// The folder of database `db`.
pub fn db_dir(db: &str) -> String {
    format!("databases/{}", component(db))
}

/// The schema stream of `db`.
pub fn schema(db: &str) -> String {
    format!("{}/schema.sql", db_dir(db))
}

/// The data stream of `db`.`table`.
pub fn data(db: &str, table: &str) -> String {
    format!("{}/data/{}.sql", db_dir(db), component(table))
}

/// The triggers stream of `db`.`table`.
pub fn triggers(db: &str, table: &str) -> String {
    format!("{}/triggers/{}.sql", db_dir(db), component(table))
}

/// The events stream of `db`.
pub fn events(db: &str) -> String {
    format!("{}/events.sql", db_dir(db))
}

/// Users, roles and grants.
pub const USERS: &str = "server/users.sql";

#[cfg(test)]
mod tests {
    #[test]
    fn paths() {
        assert_eq!(super::data("app", "a/b"), "databases/app/data/a%2Fb.sql");
        assert_eq!(super::schema("x"), "databases/x/schema.sql");
    }
}
