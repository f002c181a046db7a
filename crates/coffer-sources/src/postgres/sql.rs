//! Splitting a SQL script into statements (for `pg_dumpall --globals-only` output, run one
//! statement at a time so that one existing role does not stop the rest).

/// Splits `sql` at top-level semicolons, honouring quotes, dollar quotes and comments.
/// Statements are returned trimmed, without their semicolon; comment-only pieces are dropped.
pub fn split(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut has_code = false;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                has_code = true;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|e| i + 1 + e);
                if let Some(e) = tag_end.filter(|&e| b[e] == b'$') {
                    let tag = &sql[i..=e];
                    match sql[e + 1..].find(tag) {
                        Some(end) => i = e + 1 + end + tag.len() - 1,
                        None => i = b.len(),
                    }
                }
                has_code = true;
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim().to_string());
                }
                start = i + 1;
                has_code = false;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code && start < sql.len() {
        out.push(sql[start..].trim().to_string());
    }
    out
}

/// The first identifier of `s` (quoted or not), unquoted.
pub fn first_ident(s: &str) -> Option<String> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    name.push('"');
                    continue;
                }
                return Some(name);
            }
            name.push(c);
        }
        None
    } else {
        let end = s
            .find(|c: char| c.is_whitespace() || c == ';')
            .unwrap_or(s.len());
        (end > 0).then(|| s[..end].to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        let sql = "-- roles\nSET x = on;\nCREATE ROLE \"we;ird\";\n\
                   ALTER ROLE a WITH PASSWORD 'p;''q';\nCOMMENT ON ROLE a IS $$x;y$$;\n/* c; */\n";
        assert_eq!(
            split(sql),
            [
                "-- roles\nSET x = on",
                "CREATE ROLE \"we;ird\"",
                "ALTER ROLE a WITH PASSWORD 'p;''q'",
                "COMMENT ON ROLE a IS $$x;y$$"
            ]
        );
        assert_eq!(first_ident("\"we;ird\" WITH"), Some("we;ird".into()));
        assert_eq!(first_ident("Alice;"), Some("alice".into()));
    }
}
