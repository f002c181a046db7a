//! Picking the schema archive's entries for a per-table restore: `pg_restore -l` lists them
//! (`ID; CATALOG OID DESC SCHEMA TAG OWNER`), and `pg_restore -L` restores only the lines kept.
//! Entries with a catalog id are kept by id (the ids recorded at backup time); entries without
//! one (`COMMENT`, `ACL`, `SEQUENCE OWNED BY`, `TABLE ATTACH`, `INDEX ATTACH`) by their tag.

use super::catalog::{PgDatabase, PgTable, PG_CLASS, PG_NAMESPACE};
use super::tools::{run_capture, Tool};
use coffer_core::Result;
use std::collections::HashSet;
use std::path::Path;

/// The longest `pg_restore -l` list read (some three million entries): the archive comes from
/// a snapshot, and its list is held in memory twice over (text and entries).
pub const MAX_LIST: u64 = 256 << 20;

/// One entry of a `pg_restore -l` list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The whole line.
    pub line: String,
    /// The catalog id (0 for derived entries).
    pub catalog: u32,
    /// The object's oid (0 for derived entries).
    pub oid: u32,
    /// `DESC SCHEMA TAG OWNER`.
    pub rest: String,
}

/// Kinds of entries a per-table restore may need besides the table's own (the types of its
/// columns, the functions of its defaults and triggers), created when the target lacks them.
const SUPPORT: [&str; 9] = [
    "SCHEMA",
    "EXTENSION",
    "SHELL TYPE",
    "TYPE",
    "DOMAIN",
    "FUNCTION",
    "PROCEDURE",
    "AGGREGATE",
    "COLLATION",
];

impl Entry {
    /// For a supporting object (schema, extension, type, domain, function, collation):
    /// `(kind, schema, tag)`.
    pub fn support(&self) -> Option<(&'static str, &str, &str)> {
        if self.catalog == 0 {
            return None;
        }
        let kind = SUPPORT
            .iter()
            .find(|k| self.rest.starts_with(&format!("{k} ")))?;
        let after = self.rest[kind.len() + 1..].trim_end();
        let (schema, rest) = after.split_once(' ')?;
        let (tag, _owner) = rest.rsplit_once(' ')?;
        Some((kind, schema, tag))
    }
}

/// The entries of the schema archive at `archive` (`pg_restore -l`). Blocking.
pub fn list(pg_restore: &Tool, archive: &Path) -> Result<Vec<Entry>> {
    list_within(pg_restore, archive, MAX_LIST)
}

fn list_within(pg_restore: &Tool, archive: &Path, limit: u64) -> Result<Vec<Entry>> {
    let mut cmd = pg_restore.command(None);
    cmd.arg("-l").arg(archive);
    let what = "pg_restore -l (listing the schema archive)";
    let text = run_capture(pg_restore, cmd, what, limit)?;
    Ok(parse(&String::from_utf8_lossy(&text)))
}

/// Parses a `pg_restore -l` list (comments skipped).
pub fn parse(list: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in list.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        let Some((_, after)) = t.split_once("; ") else {
            continue;
        };
        let mut it = after.splitn(3, ' ');
        let (Some(c), Some(o), Some(rest)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (Ok(catalog), Ok(oid)) = (c.parse(), o.parse()) else {
            continue;
        };
        out.push(Entry {
            line: t.to_string(),
            catalog,
            oid,
            rest: format!("{rest} "),
        });
    }
    out
}

/// The spellings of a name in TOC tags: as is, and quoted when SQL needs quotes.
fn spellings(name: &str) -> Vec<String> {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let mut v = vec![name.to_string()];
    if !plain {
        v.push(super::connect::ident(name));
    }
    v
}

/// The entries a restore of some tables keeps.
#[derive(Default)]
pub struct Picker {
    ids: HashSet<(u32, u32)>,
    prefixes: Vec<String>,
}

impl Picker {
    /// Keeps `t`'s definition; with `objects`, also its indexes, constraints, defaults,
    /// triggers, rules, policies, owned sequences, comments and grants. Foreign keys are kept
    /// only when `keep_fk` says so for the referenced table.
    pub fn add_table(
        &mut self,
        db: &PgDatabase,
        t: &PgTable,
        objects: bool,
        keep_fk: &dyn Fn(u32) -> bool,
    ) {
        self.ids.insert((PG_CLASS, t.oid));
        let s = &t.schema;
        for n in spellings(&t.name) {
            self.prefixes.push(format!("TABLE ATTACH {s} {n} "));
            for d in ["COMMENT", "ACL", "SECURITY LABEL"] {
                self.prefixes.push(format!("{d} {s} TABLE {n} "));
                self.prefixes.push(format!("{d} {s} COLUMN {n}."));
            }
        }
        if !objects {
            return;
        }
        for o in &t.objects {
            if o.kind == "fk" && !o.references.is_some_and(keep_fk) {
                continue;
            }
            self.ids.insert((o.catalog, o.oid));
            for n in spellings(&o.name) {
                match o.kind.as_str() {
                    "index" => {
                        self.prefixes.push(format!("INDEX ATTACH {s} {n} "));
                        self.prefixes.push(format!("COMMENT {s} INDEX {n} "));
                    }
                    "constraint" | "fk" | "trigger" | "rule" | "policy" => {
                        let word = match o.kind.as_str() {
                            "fk" => "CONSTRAINT",
                            k => &k.to_ascii_uppercase(),
                        };
                        for tn in spellings(&t.name) {
                            self.prefixes
                                .push(format!("COMMENT {s} {word} {n} ON {tn} "));
                        }
                    }
                    _ => {}
                }
            }
        }
        for seq in db.sequences.iter().filter(|q| q.owned_by == Some(t.oid)) {
            for n in spellings(&seq.name) {
                let qs = &seq.schema;
                self.prefixes.push(format!("SEQUENCE OWNED BY {qs} {n} "));
                for d in ["COMMENT", "ACL", "SECURITY LABEL"] {
                    self.prefixes.push(format!("{d} {qs} SEQUENCE {n} "));
                }
            }
        }
    }

    /// Keeps the entry `e` (by its catalog id).
    pub fn add_entry(&mut self, e: &Entry) {
        self.ids.insert((e.catalog, e.oid));
    }

    /// Keeps the creation of schema `oid`.
    pub fn add_schema(&mut self, oid: u32) {
        self.ids.insert((PG_NAMESPACE, oid));
    }

    /// Whether the picker keeps `e`.
    pub fn keeps(&self, e: &Entry) -> bool {
        if e.catalog != 0 || e.oid != 0 {
            return self.ids.contains(&(e.catalog, e.oid));
        }
        self.prefixes.iter().any(|p| e.rest.starts_with(p.as_str()))
    }

    /// The `-L` list of the kept entries.
    pub fn list(&self, entries: &[Entry]) -> String {
        let mut s = String::new();
        for e in entries.iter().filter(|e| self.keeps(e)) {
            s.push_str(&e.line);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::catalog::{PgObject, PgSequence};

    const LIST: &str = ";\n; Selected TOC Entries:\n;\n\
        6; 2615 16385 SCHEMA - app postgres\n\
        216; 1259 16387 TABLE app customers postgres\n\
        215; 1259 16386 SEQUENCE app customers_id_seq postgres\n\
        3383; 0 0 SEQUENCE OWNED BY app customers_id_seq postgres\n\
        218; 1259 16396 TABLE app orders postgres\n\
        3384; 0 0 COMMENT app TABLE orders postgres\n\
        217; 1259 16395 SEQUENCE app orders_id_seq postgres\n\
        3385; 0 0 SEQUENCE OWNED BY app orders_id_seq postgres\n\
        3222; 2604 16399 DEFAULT app orders id postgres\n\
        3227; 2606 16403 CONSTRAINT app orders orders_pkey postgres\n\
        3225; 1259 16409 INDEX app orders_cust_idx postgres\n\
        3231; 2606 16404 FK CONSTRAINT app orders orders_cust_fkey postgres\n";

    #[test]
    fn picks_a_table_and_what_belongs_to_it() {
        let obj = |kind: &str, catalog, oid, name: &str, r| PgObject {
            kind: kind.into(),
            catalog,
            oid,
            name: name.into(),
            references: r,
        };
        let orders = PgTable {
            schema: "app".into(),
            name: "orders".into(),
            oid: 16396,
            kind: "table".into(),
            objects: vec![
                obj("default", 2604, 16399, "", None),
                obj("constraint", 2606, 16403, "orders_pkey", None),
                obj("index", 1259, 16409, "orders_cust_idx", None),
                obj("fk", 2606, 16404, "orders_cust_fkey", Some(16387)),
                obj("sequence", 1259, 16395, "app.orders_id_seq", None),
            ],
            ..Default::default()
        };
        let db = PgDatabase {
            sequences: vec![PgSequence {
                schema: "app".into(),
                name: "orders_id_seq".into(),
                owned_by: Some(16396),
            }],
            ..Default::default()
        };
        let entries = parse(LIST);
        assert_eq!(entries.len(), 12);
        let mut p = Picker::default();
        p.add_table(&db, &orders, true, &|_| false);
        let list = p.list(&entries);
        let ids: Vec<&str> = list.lines().map(|l| l.split(';').next().unwrap()).collect();
        assert_eq!(ids, ["218", "3384", "217", "3385", "3222", "3227", "3225"]);
        let mut p = Picker::default();
        p.add_table(&db, &orders, true, &|oid| oid == 16387);
        p.add_schema(16385);
        assert!(p.list(&entries).contains("FK CONSTRAINT"));
        assert!(p.list(&entries).contains("SCHEMA - app"));
        let support: Vec<_> = entries.iter().filter_map(|e| e.support()).collect();
        assert_eq!(support, [("SCHEMA", "-", "app")]);
        let f = parse("223; 1255 16426 FUNCTION app f(integer, text) postgres\n");
        assert_eq!(
            f[0].support(),
            Some(("FUNCTION", "app", "f(integer, text)"))
        );
    }

    /// A list past the limit (here from a stand-in `pg_restore` that prints without end) stops
    /// the tool and is an error naming the limit.
    #[test]
    fn lists_are_read_within_a_limit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_restore");
        std::fs::write(
            &path,
            "#!/bin/sh\n[ \"$1\" = -l ] || exit 2\nexec yes '216; 1259 16387 TABLE app t postgres'\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tool = Tool {
            path,
            major: (17, 0),
            version: "17.0".into(),
        };
        let e = list_within(&tool, Path::new("/nonexistent"), 1000).unwrap_err();
        assert_eq!(e.kind(), coffer_core::ErrorKind::Unsupported);
        assert!(e.to_string().contains("passed 1000 bytes"), "{e}");
    }
}
