//! SQL text: quoting identifiers and strings, writing row values as literals a `mariadb`
//! client loads back exactly (hex for binary columns), and splitting `mariadb-dump` output
//! into its per-object sections.

use mysql_async::consts::ColumnType;
use mysql_async::{Column, Value};

/// The character set number MySQL reports for binary data.
const BINARY_CHARSET: u16 = 63;

/// The session settings at the top of every table data stream (constant, so unchanged tables
/// dedup): utf8mb4, UTC timestamps, no checks while loading, 0 kept in auto-increment columns.
pub const DATA_HEADER: &str = "/*!40101 SET NAMES utf8mb4 */;\n\
/*!40103 SET TIME_ZONE='+00:00' */;\n\
/*!40014 SET UNIQUE_CHECKS=0, FOREIGN_KEY_CHECKS=0 */;\n\
/*!40101 SET SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\
/*!40111 SET SQL_NOTES=0 */;\n";

/// `` `name` `` with backticks doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'` with quotes and backslashes escaped (for sessions without NO_BACKSLASH_ESCAPES).
pub fn lit(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    push_quoted(&mut out, text.as_bytes());
    String::from_utf8(out).expect("escaping keeps UTF-8 valid")
}

/// Appends `bytes` as a quoted string literal.
pub fn push_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'\'');
    for &b in bytes {
        match b {
            0 => out.extend_from_slice(b"\\0"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x1a => out.extend_from_slice(b"\\Z"),
            _ => out.push(b),
        }
    }
    out.push(b'\'');
}

/// Appends `bytes` as a hex literal (`0x...`, or `''` when empty).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if bytes.is_empty() {
        out.extend_from_slice(b"''");
        return;
    }
    out.extend_from_slice(b"0x");
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// How a column's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// As the server wrote them (numbers).
    Raw,
    /// As a quoted string (text, dates, JSON).
    Quoted,
    /// As a hex literal (binary strings, BLOBs, BIT, geometry).
    Hex,
}

/// How to write the values of `col` (from a text-protocol result).
pub fn render_for(col: &Column) -> Render {
    use ColumnType::*;
    match col.column_type() {
        MYSQL_TYPE_TINY
        | MYSQL_TYPE_SHORT
        | MYSQL_TYPE_LONG
        | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_FLOAT
        | MYSQL_TYPE_DOUBLE
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_YEAR => Render::Raw,
        MYSQL_TYPE_BIT | MYSQL_TYPE_GEOMETRY => Render::Hex,
        MYSQL_TYPE_JSON => Render::Quoted,
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_TIME
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_TIMESTAMP2 => Render::Quoted,
        _ if col.character_set() == BINARY_CHARSET => Render::Hex,
        _ => Render::Quoted,
    }
}

/// Appends one value written as `render` says.
pub fn push_value(out: &mut Vec<u8>, value: &Value, render: Render) {
    match value {
        Value::NULL => out.extend_from_slice(b"NULL"),
        Value::Bytes(b) => match render {
            Render::Raw if !b.is_empty() => out.extend_from_slice(b),
            Render::Raw | Render::Quoted => push_quoted(out, b),
            Render::Hex => push_hex(out, b),
        },
        // The text protocol only yields bytes; keep the others correct anyway.
        other => {
            let text = other.as_sql(false);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// A `mariadb-dump` output cut at its `--\n-- TITLE\n--` comment headers.
pub struct Sections<'a> {
    /// The session settings before the first section.
    pub preamble: &'a str,
    /// `(title, text)` of each section, the text starting at its header.
    pub sections: Vec<(&'a str, &'a str)>,
}

impl<'a> Sections<'a> {
    /// Splits `text`.
    pub fn parse(text: &'a str) -> Sections<'a> {
        let mut starts: Vec<(usize, &'a str)> = Vec::new();
        let mut offsets = Vec::new();
        let mut pos = 0;
        for line in text.split_inclusive('\n') {
            offsets.push((pos, line.trim_end_matches('\n')));
            pos += line.len();
        }
        for w in offsets.windows(3) {
            let (at, a) = w[0];
            let (_, b) = w[1];
            let (_, c) = w[2];
            if a == "--" && c == "--" && b.starts_with("-- ") {
                starts.push((at, &b[3..]));
            }
        }
        let preamble = &text[..starts.first().map(|s| s.0).unwrap_or(text.len())];
        let mut sections = Vec::with_capacity(starts.len());
        for (i, (at, title)) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map(|s| s.0).unwrap_or(text.len());
            sections.push((*title, &text[*at..end]));
        }
        Sections { preamble, sections }
    }

    /// The section creating table `name`.
    pub fn table(&self, name: &str) -> Option<&'a str> {
        let title = table_title(name);
        self.sections
            .iter()
            .find(|(t, _)| *t == title)
            .map(|(_, s)| *s)
    }
}

/// The header `mariadb-dump` writes above a table's definition.
pub fn table_title(name: &str) -> String {
    format!(
        "Table structure for table {}",
        ident(&name.replace('\n', " "))
    )
}

/// A cheap hash of a row's text, to end INSERT statements at content-defined rows.
pub fn row_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert_eq!(lit("it's a \\ test"), "'it\\'s a \\\\ test'");
        let mut out = Vec::new();
        push_quoted(&mut out, b"a\0b\r\n\x1a");
        assert_eq!(out, b"'a\\0b\\r\\n\\Z'");
        out.clear();
        push_hex(&mut out, &[0, 255, 16]);
        assert_eq!(out, b"0x00FF10");
        out.clear();
        push_hex(&mut out, &[]);
        assert_eq!(out, b"''");
    }

    #[test]
    fn values() {
        let mut out = Vec::new();
        push_value(&mut out, &Value::NULL, Render::Quoted);
        out.push(b',');
        push_value(&mut out, &Value::Bytes(b"12.50".to_vec()), Render::Raw);
        out.push(b',');
        push_value(&mut out, &Value::Bytes(b"x'y".to_vec()), Render::Quoted);
        out.push(b',');
        push_value(&mut out, &Value::Bytes(vec![1, 2]), Render::Hex);
        assert_eq!(String::from_utf8(out).unwrap(), "NULL,12.50,'x\\'y',0x0102");
    }

    #[test]
    fn sections() {
        let dump = "/*!40101 SET NAMES utf8mb4 */;\n\n--\n-- Table structure for table `a`\n--\n\n\
                    CREATE TABLE `a` (x int);\n\n--\n-- Table structure for table `we``ird`\n--\n\n\
                    CREATE TABLE `we``ird` (y int);\n\n--\n-- Final view structure for view `v`\n--\n\
                    CREATE VIEW v AS SELECT 1;\n";
        let s = Sections::parse(dump);
        assert_eq!(s.preamble, "/*!40101 SET NAMES utf8mb4 */;\n\n");
        assert_eq!(s.sections.len(), 3);
        assert!(s.table("a").unwrap().contains("CREATE TABLE `a`"));
        assert!(!s.table("a").unwrap().contains("we``ird"));
        assert!(s.table("we`ird").unwrap().contains("(y int)"));
        assert!(s.table("v").is_none());
    }
}
