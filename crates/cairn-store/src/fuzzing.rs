//! Hooks for the `filter_sql` fuzz target (`fuzz/fuzz_targets/filter_sql.rs`), not an API:
//! the filter → SQL translation of both dialects, and the checks that no filter can put
//! anything into the SQL text but the fixed pieces the translators are made of — every
//! value and JSON path must travel as a bound parameter.

use cairn_core::query::Filter;
use std::cell::RefCell;

/// A `WHERE` fragment and how many parameters it binds.
#[derive(Debug)]
pub struct Translated {
    pub sql: String,
    pub params: usize,
}

pub fn sqlite_where(f: &Filter) -> Translated {
    let w = crate::sqlite::filter::where_clause(f);
    Translated {
        sql: w.text,
        params: w.params.len(),
    }
}

pub fn postgres_where(f: &Filter) -> Translated {
    let mut w = crate::postgres::filter::Sql::default();
    crate::postgres::filter::push_where(f, &mut w);
    Translated {
        sql: w.text,
        params: w.params.len(),
    }
}

thread_local! {
    static SCHEMA: RefCell<Option<rusqlite::Connection>> = const { RefCell::new(None) };
}

/// Prepares `SELECT … FROM users u WHERE <fragment>` on an in-memory database with every
/// migration applied (and Cairn's SQL functions), as the store would: SQLite must accept
/// the statement, and it must have exactly as many parameters as were bound.
pub fn sqlite_prepare(t: &Translated) -> Result<(), String> {
    SCHEMA.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let mut conn = crate::sqlite::conn::open(std::path::Path::new(":memory:"), true)
                .map_err(|e| e.to_string())?;
            crate::sqlite::conn::migrate(&mut conn).map_err(|e| e.to_string())?;
            *cell = Some(conn);
        }
        let conn = cell.as_ref().expect("opened above");
        let stmt = conn
            .prepare(&format!("SELECT u.id FROM users u WHERE {}", t.sql))
            .map_err(|e| format!("{e}: {}", t.sql))?;
        if stmt.parameter_count() != t.params {
            return Err(format!(
                "{} placeholders, {} parameters bound: {}",
                stmt.parameter_count(),
                t.params,
                t.sql
            ));
        }
        Ok(())
    })
}

/// Which SQL dialect a fragment is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Identifiers and keywords the translators write. Anything else in the text came from
/// somewhere else.
const WORDS: &[&str] = &[
    // SQL
    "AND",
    "AS",
    "ASC",
    "CASE",
    "COALESCE",
    "COLLATE",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "EXISTS",
    "FROM",
    "IS",
    "LAST",
    "NOT",
    "NULL",
    "NULLS",
    "OR",
    "ORDER",
    "BY",
    "SELECT",
    "THEN",
    "WHEN",
    "WHERE",
    "false",
    "true",
    // columns and aliases
    "u",
    "doc",
    "id",
    "user_name",
    "user_name_fold",
    "display_name",
    "display_name_fold",
    "external_id",
    "active",
    "created_at",
    "updated_at",
    "seq",
    "value",
    // SQLite functions
    "json_each",
    "json_type",
    "json_extract",
    "json_array_length",
    "scim_fold",
    "instr",
    "substr",
    "length",
    // PostgreSQL functions and types
    "jsonb_array_elements",
    "jsonb_typeof",
    "jsonb_array_length",
    "jsonb",
    "text",
    "boolean",
    "float8",
    "lower",
    "right",
    "char_length",
    "starts_with",
    "strpos",
];

/// String literals the translators write (JSON type names, the empty string, `'{}'` and
/// `'[]'`).
const LITERALS: &[&str] = &[
    "", "array", "null", "text", "string", "boolean", "number", "{}", "[]",
];

/// Checks that a fragment is made only of the translators' fixed pieces: known words,
/// `e<n>` aliases, the literals above, operators and punctuation, the numbers 0 and 1, and
/// placeholders (`?` for SQLite, `$<n>` for PostgreSQL, as many as `params`).
pub fn check_shape(t: &Translated, dialect: Dialect) -> Result<(), String> {
    let s = t.sql.as_bytes();
    let mut i = 0;
    let mut placeholders = 0;
    let fail = |at: usize, why: &str| Err(format!("{why} at byte {at} of {:?}", t.sql));
    while i < s.len() {
        let c = s[i];
        match c {
            b' ' | b'(' | b')' | b',' | b'.' | b'=' | b'<' | b'>' | b'[' | b']' | b'#' | b'-' => {
                i += 1
            }
            b':' if s.get(i + 1) == Some(&b':') && dialect == Dialect::Postgres => i += 2,
            b'?' if dialect == Dialect::Sqlite => {
                placeholders += 1;
                i += 1;
            }
            b'$' if dialect == Dialect::Postgres => {
                let start = i + 1;
                i = start;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = match t.sql[start..i].parse() {
                    Ok(n) => n,
                    Err(_) => return fail(start, "a `$` that is not a placeholder"),
                };
                if n == 0 || n > t.params {
                    return fail(start, "a placeholder beyond the parameters bound");
                }
                placeholders += 1;
            }
            b'\'' => {
                let Some(len) = t.sql[i + 1..].find('\'') else {
                    return fail(i, "an unterminated string literal");
                };
                let lit = &t.sql[i + 1..i + 1 + len];
                if !LITERALS.contains(&lit) {
                    return fail(i, "a string literal that is not a fixed piece");
                }
                i += len + 2;
            }
            b'"' if dialect == Dialect::Postgres && t.sql[i..].starts_with("\"C\"") => i += 3,
            b'0'..=b'9' => {
                let start = i;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                if !matches!(&t.sql[start..i], "0" | "1") {
                    return fail(start, "a number that is not a fixed piece");
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
                    i += 1;
                }
                let word = &t.sql[start..i];
                let alias = word.len() > 1
                    && word.starts_with('e')
                    && word[1..].bytes().all(|b| b.is_ascii_digit());
                if !alias && !WORDS.contains(&word) {
                    return fail(start, "a word that is not a fixed piece");
                }
            }
            _ => return fail(i, "a character that is not a fixed piece"),
        }
    }
    if dialect == Dialect::Sqlite && placeholders != t.params {
        return Err(format!(
            "{placeholders} placeholders, {} parameters bound: {}",
            t.params, t.sql
        ));
    }
    if dialect == Dialect::Postgres && t.params > 0 && placeholders == 0 {
        return Err(format!("parameters bound but none used: {}", t.sql));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Filter {
        let expr = cairn_scim::filter::parse(text).unwrap();
        cairn_scim::query::resolve_user_filter(&expr).unwrap()
    }

    #[test]
    fn hostile_filters_translate_to_the_fixed_shape_in_both_dialects() {
        for text in [
            r#"userName eq "x' OR 1=1 --""#,
            r#"emails[type eq "work\" ) OR (1=1" and value co "'; DROP TABLE users; --"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber sw "$1""#,
            r#"not (displayName pr) or title ew "?" and active eq true and meta.created gt "2020-01-01T00:00:00Z""#,
            r#"name.givenName lt "12.5" or addresses[postalCode eq "99"] or emails[value pr]"#,
        ] {
            let f = parsed(text);
            let lite = sqlite_where(&f);
            check_shape(&lite, Dialect::Sqlite).unwrap();
            sqlite_prepare(&lite).unwrap();
            check_shape(&postgres_where(&f), Dialect::Postgres).unwrap();
        }
    }

    #[test]
    fn the_shape_check_catches_text_that_is_not_a_fixed_piece() {
        for (sql, params) in [
            ("u.user_name = 'x'", 0),
            ("u.user_name = ?", 0),
            ("u.user_name = ? OR 2 = 2", 1),
            ("u.user_name = ?; DROP TABLE users", 1),
            ("u.secret = ?", 1),
        ] {
            let t = Translated {
                sql: sql.into(),
                params,
            };
            assert!(check_shape(&t, Dialect::Sqlite).is_err(), "{sql}");
        }
        let t = Translated {
            sql: "u.id = $2".into(),
            params: 1,
        };
        assert!(check_shape(&t, Dialect::Postgres).is_err());
        let t = Translated {
            sql: "u.user_name = ?".into(),
            params: 2,
        };
        assert!(sqlite_prepare(&t).is_err());
    }
}
