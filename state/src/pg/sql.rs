//! One SQL text for both backends: the store's statements are written for SQLite with
//! numbered placeholders (`?1`, `?2`, …); PostgreSQL numbers them `$1`, `$2`, ….

use std::borrow::Cow;

/// `sql` with SQLite's placeholders rewritten for PostgreSQL: `?N` becomes `$N`, and a bare
/// `?` takes the number one above the largest assigned before it (SQLite's rule), so
/// `? ?3 ?` is `$1 $3 $4`. Text inside string literals (`'…'`, with `''` escapes), quoted
/// identifiers (`"…"`) and comments (`-- …`, `/* … */`) is left alone. SQL without a `?` is
/// returned as it is, without a copy.
///
/// Not handled, since the shared SQL has none of them: SQLite's named parameters (`:name`,
/// `@name`, `$name`) and PostgreSQL's `?` JSON operators.
pub fn postgres_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut largest = 0u32;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // To the closing quote; a doubled quote is an escaped one and reopens.
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek().is_some_and(|&(_, next)| next == '-') => {
                out.push(c);
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|&(_, next)| next == '*') => {
                out.push(c);
                let mut previous = '\0';
                // The `*` of the opener is pushed here too, so `/*/` does not close it.
                if let Some((_, star)) = chars.next() {
                    out.push(star);
                }
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    digits.push(d);
                    chars.next();
                }
                let number = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => largest + 1,
                };
                largest = largest.max(number);
                out.push('$');
                out.push_str(&number.to_string());
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, expected: &str) {
        assert_eq!(postgres_placeholders(sql), expected, "{sql}");
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_literals_identifiers_and_comments() {
        check("SELECT 1", "SELECT 1");
        check(
            "UPDATE runs SET status = ?2, updated_at = ?3 WHERE id = ?1",
            "UPDATE runs SET status = $2, updated_at = $3 WHERE id = $1",
        );
        check("VALUES (?, ?, ?)", "VALUES ($1, $2, $3)");
        check("VALUES (?, ?3, ?)", "VALUES ($1, $3, $4)");
        check("VALUES (?10, ?2)", "VALUES ($10, $2)");
        check(
            "WHERE a = '?1 isn''t ?' AND b = ?1",
            "WHERE a = '?1 isn''t ?' AND b = $1",
        );
        check(
            r#"SELECT "who?" FROM t WHERE x = ?2"#,
            r#"SELECT "who?" FROM t WHERE x = $2"#,
        );
        check("SELECT ?1 -- why ?2\n, ?2", "SELECT $1 -- why ?2\n, $2");
        check("SELECT ?1 /* ?2 */ , ?2", "SELECT $1 /* ?2 */ , $2");
        check("SELECT ?1 /*/ ?2 */ , ?2", "SELECT $1 /*/ ?2 */ , $2");
        check("SELECT a - ?1, b / ?2", "SELECT a - $1, b / $2");
        assert!(matches!(postgres_placeholders("SELECT 1"), Cow::Borrowed(_)));
    }
}
