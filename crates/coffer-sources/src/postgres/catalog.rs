//! What a PostgreSQL backup records about a database besides its streams (kept in the
//! manifest's `details`): each table's columns, data stream, and the catalog ids of the objects
//! that belong to it (indexes, constraints, defaults, triggers, rules, policies, owned
//! sequences), which is what a per-table restore uses to pick its entries from the schema
//! archive; and the catalog queries that read it all inside the backup's snapshot.

use super::connect::{qualified, query_error};
use coffer_core::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::Client;

/// The `details` of a PostgreSQL manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgDetails {
    /// Layout version of these details.
    pub format: u32,
    /// The `pg_dump` that wrote the schema archives.
    pub pg_dump_version: String,
    /// The server's `server_version_num`.
    pub server_version_num: u32,
    /// The stream holding `pg_dumpall --globals-only` (whole-server backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<String>,
    /// Per database, by name.
    pub databases: BTreeMap<String, PgDatabase>,
}

/// What one database's restore needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgDatabase {
    /// Its encoding (`UTF8`).
    pub encoding: String,
    /// Its LC_COLLATE.
    pub collate: String,
    /// Its LC_CTYPE.
    pub ctype: String,
    /// Its owner.
    #[serde(default)]
    pub owner: String,
    /// The stream holding `pg_dump --schema-only -Fc`.
    pub schema_stream: String,
    /// The stream of `setval` calls.
    pub sequences_stream: String,
    /// Tables and partitioned tables.
    pub tables: Vec<PgTable>,
    /// Sequences (values are in the sequences stream).
    pub sequences: Vec<PgSequence>,
    /// Large objects.
    pub large_objects: Vec<PgLargeObject>,
    /// Materialized views (refreshed after a full restore when they were populated).
    pub matviews: Vec<PgMatview>,
    /// Non-system schemas with their catalog ids.
    pub schemas: Vec<PgSchema>,
    /// Roles owning objects of the database (a restore without them skips ownership).
    pub owners: Vec<String>,
}

/// One table (`kind` `table`) or partitioned table (`partitioned`, no data of its own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgTable {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Its `pg_class` oid in the source.
    pub oid: u32,
    /// `table` or `partitioned`.
    pub kind: String,
    /// The partitioned table it is a partition of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// Columns COPY carries (not generated ones), in order.
    pub columns: Vec<String>,
    /// Its data stream (tables only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Rows in the snapshot (partitioned: of all its partitions).
    pub rows: u64,
    /// Objects belonging to it.
    #[serde(default)]
    pub objects: Vec<PgObject>,
    /// Size estimate used to start big tables first.
    #[serde(default, skip)]
    pub pages: i64,
}

impl PgTable {
    /// `"schema"."name"`.
    pub fn sql_name(&self) -> String {
        qualified(&self.schema, &self.name)
    }

    /// `schema.name`, as the manifest and `--table` spell it.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The column list for COPY (`("a", "b")`), empty for a table without columns.
    pub fn column_list(&self) -> String {
        if self.columns.is_empty() {
            return String::new();
        }
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| super::connect::ident(c))
            .collect();
        format!(" ({})", cols.join(", "))
    }
}

/// An object belonging to a table, as the schema archive's TOC names it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PgObject {
    /// `index`, `constraint`, `fk`, `default`, `trigger`, `rule`, `policy`, `sequence`.
    pub kind: String,
    /// The catalog's oid (`pg_class`, `pg_constraint`, ...).
    pub catalog: u32,
    /// The object's oid.
    pub oid: u32,
    /// Its name (sequences: schema-qualified, quoted).
    #[serde(default)]
    pub name: String,
    /// For foreign keys: the referenced table's oid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<u32>,
}

/// A sequence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgSequence {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// The table owning it (serial / identity columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<u32>,
}

/// A large object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgLargeObject {
    /// Its oid (kept on restore).
    pub oid: u32,
    /// Its owner.
    pub owner: String,
    /// Its size.
    pub size: u64,
    /// The stream holding its bytes.
    pub stream: String,
}

/// A materialized view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgMatview {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Whether it held data (then a full restore refreshes it).
    pub populated: bool,
}

/// A schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgSchema {
    /// Name.
    pub name: String,
    /// Its oid in the source.
    pub oid: u32,
}

/// The catalog id of `pg_class` in TOC entries.
pub const PG_CLASS: u32 = 1259;
/// The catalog id of `pg_namespace`.
pub const PG_NAMESPACE: u32 = 2615;

const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

fn not_extension_member(alias: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
         AND d.objid = {alias}.oid AND d.deptype = 'e')"
    )
}

/// Reads every fact about the database (inside the caller's transaction), except row counts,
/// sequence values and large object contents.
pub async fn load(client: &Client) -> Result<PgDatabase> {
    let q = |what: &'static str| move |e| query_error(format!("reading the catalog ({what})"), e);
    let mut db = PgDatabase::default();
    let row = client
        .query_one(
            "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text, \
             pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(q("database"))?;
    db.encoding = row.get(0);
    db.collate = row.get(1);
    db.ctype = row.get(2);
    db.owner = row.get(3);

    let sql = format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, \
           (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a \
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), \
           c.relpages::int8, \
           (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid AND c.relispartition) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND {USER_SCHEMA} AND {} \
         ORDER BY n.nspname, c.relname",
        not_extension_member("c")
    );
    for r in client.query(&sql, &[]).await.map_err(q("tables"))? {
        let kind: String = r.get(3);
        db.tables.push(PgTable {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            kind: if kind == "p" { "partitioned" } else { "table" }.to_string(),
            columns: r.get::<_, Option<Vec<String>>>(4).unwrap_or_default(),
            pages: r.get(5),
            parent: r.get(6),
            ..Default::default()
        });
    }
    let index: HashMap<u32, usize> = db
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.oid, i))
        .collect();

    let objects = "SELECT i.indrelid, 'pg_class'::regclass::oid, i.indexrelid, 'index', c.relname::text, NULL::oid \
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         UNION ALL SELECT conrelid, 'pg_constraint'::regclass::oid, oid, \
           CASE WHEN contype = 'f' THEN 'fk' ELSE 'constraint' END, conname::text, NULLIF(confrelid, 0) \
           FROM pg_constraint WHERE conrelid <> 0 \
         UNION ALL SELECT adrelid, 'pg_attrdef'::regclass::oid, oid, 'default', '', NULL FROM pg_attrdef \
         UNION ALL SELECT tgrelid, 'pg_trigger'::regclass::oid, oid, 'trigger', tgname::text, NULL \
           FROM pg_trigger WHERE NOT tgisinternal \
         UNION ALL SELECT ev_class, 'pg_rewrite'::regclass::oid, oid, 'rule', rulename::text, NULL \
           FROM pg_rewrite WHERE rulename <> '_RETURN' \
         UNION ALL SELECT polrelid, 'pg_policy'::regclass::oid, oid, 'policy', polname::text, NULL FROM pg_policy \
         UNION ALL SELECT d.refobjid, 'pg_class'::regclass::oid, s.oid, 'sequence', \
           quote_ident(n.nspname) || '.' || quote_ident(s.relname), NULL \
           FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
           JOIN pg_namespace n ON n.oid = s.relnamespace \
           WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
             AND d.deptype IN ('a', 'i')";
    for r in client
        .query(objects, &[])
        .await
        .map_err(q("table objects"))?
    {
        let table: u32 = r.get(0);
        if let Some(&i) = index.get(&table) {
            db.tables[i].objects.push(PgObject {
                catalog: r.get(1),
                oid: r.get(2),
                kind: r.get(3),
                name: r.get(4),
                references: r.get(5),
            });
        }
    }

    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, \
           (SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
              AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S' AND {USER_SCHEMA} AND {} ORDER BY 1, 2",
        not_extension_member("c")
    );
    for r in client.query(&sql, &[]).await.map_err(q("sequences"))? {
        db.sequences.push(PgSequence {
            schema: r.get(0),
            name: r.get(1),
            owned_by: r.get(2),
        });
    }

    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relispopulated \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'm' AND {USER_SCHEMA} AND {} ORDER BY c.oid",
        not_extension_member("c")
    );
    for r in client
        .query(&sql, &[])
        .await
        .map_err(q("materialized views"))?
    {
        db.matviews.push(PgMatview {
            schema: r.get(0),
            name: r.get(1),
            populated: r.get(2),
        });
    }

    let sql =
        format!("SELECT n.nspname::text, n.oid FROM pg_namespace n WHERE {USER_SCHEMA} ORDER BY 1");
    for r in client.query(&sql, &[]).await.map_err(q("schemas"))? {
        db.schemas.push(PgSchema {
            name: r.get(0),
            oid: r.get(1),
        });
    }

    let sql = format!(
        "SELECT DISTINCT pg_get_userbyid(o)::text FROM ( \
           SELECT c.relowner AS o FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} \
           UNION SELECT n.nspowner FROM pg_namespace n WHERE {USER_SCHEMA} \
           UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMA} \
           UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_SCHEMA} \
           UNION SELECT lomowner FROM pg_largeobject_metadata) x ORDER BY 1"
    );
    for r in client.query(&sql, &[]).await.map_err(q("owners"))? {
        db.owners.push(r.get(0));
    }

    for r in client
        .query(
            "SELECT oid, pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .map_err(q("large objects"))?
    {
        db.large_objects.push(PgLargeObject {
            oid: r.get(0),
            owner: r.get(1),
            ..Default::default()
        });
    }
    Ok(db)
}

/// The application's schema version, when it keeps one in a well-known table.
pub async fn schema_version(client: &Client, db: &PgDatabase) -> Option<String> {
    let probes: [(&str, &str); 4] = [
        (
            "alembic_version",
            "SELECT string_agg(version_num::text, ',') FROM {}",
        ),
        ("schema_migrations", "SELECT max(version)::text FROM {}"),
        (
            "flyway_schema_history",
            "SELECT version::text FROM {} WHERE success ORDER BY installed_rank DESC LIMIT 1",
        ),
        (
            "__diesel_schema_migrations",
            "SELECT max(version)::text FROM {}",
        ),
    ];
    for (table, sql) in probes {
        let Some(t) = db.tables.iter().find(|t| t.name == table) else {
            continue;
        };
        let sql = sql.replace("{}", &t.sql_name());
        // A table of that name with other columns must not abort the backup's transaction.
        client.batch_execute("SAVEPOINT coffer_probe").await.ok()?;
        match client.query_opt(&sql, &[]).await {
            Ok(row) => {
                client
                    .batch_execute("RELEASE SAVEPOINT coffer_probe")
                    .await
                    .ok()?;
                if let Some(Ok(Some(v))) = row.map(|r| r.try_get::<_, Option<String>>(0)) {
                    return Some(format!("{table}: {v}"));
                }
            }
            Err(_) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT coffer_probe")
                    .await
                    .ok()?;
            }
        }
    }
    None
}
