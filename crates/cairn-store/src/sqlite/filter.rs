//! Turns a resolved `Filter` into a SQLite `WHERE` fragment. Every value and every JSON
//! path is a bound parameter; the SQL text is built only from fixed pieces, so no filter
//! can change the shape of the statement.

use cairn_core::ids::fold_case;
use cairn_core::query::{
    Attr, AttrKind, AttrTarget, CompareOp, Filter, Keyset, Scalar, Seek, SortKey,
};
use rusqlite::types::Value as SqlValue;

/// The SQL and its parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

/// A JSON path in SQLite's syntax, every key quoted (`$."urn:…:User"."employeeNumber"`).
/// `"` and `\` are dropped from keys: neither can occur in a SCIM attribute name (RFC 7643
/// section 2.1), and the SQLite bundled since rusqlite 0.37 (3.50) reads a `\` in a quoted
/// label as an escape, so a key ending in one left the label unterminated (an error where
/// 3.46 found no match).
pub(crate) fn json_path(keys: &[String]) -> String {
    let mut p = String::from("$");
    for k in keys {
        p.push_str(".\"");
        p.push_str(&k.replace(['"', '\\'], ""));
        p.push('"');
    }
    p
}

/// The source a relative JSON path is applied to: the user's document, or the current
/// element of a `json_each` inside `Filter::Any`; or, inside `Filter::Member`, the
/// membership row whose user id `AttrTarget::Value` names.
#[derive(Clone, Copy)]
enum Scope {
    Doc,
    Element(usize),
    Member(usize),
}

pub(crate) fn where_clause(f: &Filter) -> Sql {
    let mut sql = Sql::default();
    let mut depth = 0;
    build(f, Scope::Doc, &mut sql, &mut depth);
    sql
}

fn build(f: &Filter, scope: Scope, sql: &mut Sql, depth: &mut usize) {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            sql.text.push('(');
            build(a, scope, sql, depth);
            sql.text.push_str(if matches!(f, Filter::And(..)) {
                " AND "
            } else {
                " OR "
            });
            build(b, scope, sql, depth);
            sql.text.push(')');
        }
        Filter::Not(inner) => {
            sql.text.push_str("(NOT ");
            build(inner, scope, sql, depth);
            sql.text.push(')');
        }
        Filter::Present(attr) => present(attr, scope, sql),
        Filter::Compare { attr, op, value } => compare(attr, *op, value, scope, sql),
        Filter::Any { path, filter } => {
            *depth += 1;
            let n = *depth;
            let src = source(scope);
            sql.text.push_str(&format!(
                "EXISTS (SELECT 1 FROM json_each({src}, ?) AS e{n} WHERE json_type({src}, ?) = 'array' AND "
            ));
            let p = json_path(path);
            sql.params.push(SqlValue::Text(p.clone()));
            sql.params.push(SqlValue::Text(p));
            build(filter, Scope::Element(n), sql, depth);
            sql.text.push(')');
        }
        Filter::Member(filter) => {
            // Per group row, its memberships through the primary key (tenant, group,
            // user): a `value eq` test is one point lookup per group; soft-deleted
            // accounts are not members (as `live_members` reads them).
            *depth += 1;
            let n = *depth;
            sql.text.push_str(&format!(
                "EXISTS (SELECT 1 FROM group_members m{n} JOIN users mu{n} \
                 ON mu{n}.tenant_id = m{n}.tenant_id AND mu{n}.id = m{n}.user_id \
                 WHERE m{n}.tenant_id = u.tenant_id AND m{n}.group_id = u.id \
                 AND mu{n}.deleted_at IS NULL AND "
            ));
            build(filter, Scope::Member(n), sql, depth);
            sql.text.push(')');
        }
    }
}

fn source(scope: Scope) -> String {
    match scope {
        Scope::Doc => "u.doc".into(),
        Scope::Element(n) => format!("e{n}.value"),
        // A membership has no document: its JSON paths are absent.
        Scope::Member(_) => "NULL".into(),
    }
}

/// The SQL expression for an attribute, and whether its stored form is already folded.
fn expr(attr: &Attr, scope: Scope, sql: &mut Sql) -> (String, bool) {
    let fold_wanted = !attr.case_exact && is_textual(attr.kind);
    match &attr.target {
        AttrTarget::Id => ("u.id".into(), false),
        AttrTarget::UserName => {
            if fold_wanted {
                ("u.user_name_fold".into(), true)
            } else {
                ("u.user_name".into(), false)
            }
        }
        AttrTarget::DisplayName => {
            if fold_wanted {
                ("u.display_name_fold".into(), true)
            } else {
                ("u.display_name".into(), false)
            }
        }
        AttrTarget::ExternalId => ("u.external_id".into(), false),
        AttrTarget::Active => ("u.active".into(), false),
        AttrTarget::Created => ("u.created_at".into(), false),
        AttrTarget::LastModified => ("u.updated_at".into(), false),
        AttrTarget::Json(keys) => {
            sql.params.push(SqlValue::Text(json_path(keys)));
            (format!("json_extract({}, ?)", source(scope)), false)
        }
        AttrTarget::Value => (
            match scope {
                Scope::Element(n) => format!("e{n}.value"),
                Scope::Member(n) => format!("m{n}.user_id"),
                Scope::Doc => "NULL".into(),
            },
            false,
        ),
    }
}

fn is_textual(kind: AttrKind) -> bool {
    matches!(
        kind,
        AttrKind::String | AttrKind::Reference | AttrKind::Binary | AttrKind::DateTime
    )
}

fn present(attr: &Attr, scope: Scope, sql: &mut Sql) {
    match &attr.target {
        AttrTarget::Json(keys) => {
            let src = source(scope);
            let p = json_path(keys);
            sql.text.push_str(&format!(
                "(CASE COALESCE(json_type({src}, ?), 'null') WHEN 'null' THEN 0 \
                 WHEN 'array' THEN json_array_length({src}, ?) > 0 \
                 WHEN 'text' THEN json_extract({src}, ?) <> '' ELSE 1 END)"
            ));
            for _ in 0..3 {
                sql.params.push(SqlValue::Text(p.clone()));
            }
        }
        _ => {
            let (e, _) = expr(attr, scope, sql);
            // Column targets bind no parameters, so `e` may appear twice.
            sql.text
                .push_str(&format!("({e} IS NOT NULL AND {e} <> '')"));
        }
    }
}

fn compare(attr: &Attr, op: CompareOp, value: &Scalar, scope: Scope, sql: &mut Sql) {
    let (e, folded) = expr(attr, scope, sql);
    let fold = !attr.case_exact && is_textual(attr.kind);
    let lhs = if fold && !folded {
        format!("scim_fold({e})")
    } else {
        e
    };
    let param = |s: &str| -> SqlValue {
        if fold {
            SqlValue::Text(fold_case(s))
        } else {
            SqlValue::Text(s.to_owned())
        }
    };
    match value {
        Scalar::Null => {
            // `eq null` matches absent values, `ne null` present ones (RFC 7644 §3.4.2.2
            // leaves null comparisons to the provider).
            let text = match op {
                CompareOp::Eq => format!("({lhs} IS NULL)"),
                CompareOp::Ne => format!("({lhs} IS NOT NULL)"),
                _ => "0".into(),
            };
            sql.text.push_str(&text);
        }
        Scalar::Bool(b) => {
            let v = SqlValue::Integer(i64::from(*b));
            let text = match op {
                CompareOp::Eq => format!("COALESCE({lhs} = ?, 0)"),
                CompareOp::Ne => format!("({lhs} IS NOT ?)"),
                _ => "0".into(),
            };
            if text != "0" {
                sql.params.push(v);
            }
            sql.text.push_str(&text);
        }
        Scalar::Int(_) | Scalar::Decimal(_) => {
            let v = match value {
                Scalar::Int(i) => SqlValue::Integer(*i),
                Scalar::Decimal(d) => SqlValue::Real(*d),
                _ => unreachable!(),
            };
            let o = match op {
                CompareOp::Eq => "=",
                CompareOp::Ne => "IS NOT",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
                    sql.text.push('0');
                    return;
                }
            };
            sql.params.push(v);
            sql.text.push_str(&format!("COALESCE({lhs} {o} ?, 0)"));
        }
        Scalar::String(s) => {
            let text = match op {
                // Same truth table as the COALESCE form below (false, never NULL, for an
                // absent value, so `not (… eq …)` still matches it), but SQLite can serve
                // `column = ?` from an index, and can't look through COALESCE: with it,
                // Okta's and Entra's `userName eq "…"` read every row of the tenant.
                // Only for columns: a json_extract target binds a parameter of its own.
                CompareOp::Eq if !matches!(attr.target, AttrTarget::Json(_)) => {
                    sql.params.push(param(s));
                    format!("({lhs} = ? AND {lhs} IS NOT NULL)")
                }
                CompareOp::Eq => {
                    sql.params.push(param(s));
                    format!("COALESCE({lhs} = ?, 0)")
                }
                CompareOp::Ne => {
                    sql.params.push(param(s));
                    format!("({lhs} IS NOT ?)")
                }
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew if s.is_empty() => {
                    format!("({lhs} IS NOT NULL)")
                }
                CompareOp::Co => {
                    sql.params.push(param(s));
                    format!("COALESCE(instr({lhs}, ?) > 0, 0)")
                }
                CompareOp::Sw => {
                    let p = param(s);
                    sql.params.push(p.clone());
                    sql.params.push(p);
                    format!("COALESCE(substr({lhs}, 1, length(?)) = ?, 0)")
                }
                CompareOp::Ew => {
                    let p = param(s);
                    sql.params.push(p.clone());
                    sql.params.push(p);
                    format!("COALESCE(substr({lhs}, -length(?)) = ?, 0)")
                }
                CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
                    let o = match op {
                        CompareOp::Gt => ">",
                        CompareOp::Ge => ">=",
                        CompareOp::Lt => "<",
                        _ => "<=",
                    };
                    sql.params.push(param(s));
                    format!("COALESCE({lhs} {o} ?, 0)")
                }
            };
            sql.text.push_str(&text);
        }
    }
}

/// `ORDER BY` for a sort key, ending with the insertion order so that every listing has a
/// stable total order (pages never repeat or skip a user).
pub(crate) fn order_by(sort: Option<&SortKey>) -> Sql {
    let mut sql = Sql::default();
    match sort {
        None => sql.text.push_str(" ORDER BY u.seq"),
        Some(k) => {
            let (e, folded) = expr(&k.attr, Scope::Doc, &mut sql);
            let fold = !k.attr.case_exact && is_textual(k.attr.kind) && !folded;
            let e = if fold { format!("scim_fold({e})") } else { e };
            let dir = if k.descending { "DESC" } else { "ASC" };
            sql.text
                .push_str(&format!(" ORDER BY {e} {dir} NULLS LAST, u.seq {dir}"));
        }
    }
    sql
}

/// The expression a sort key orders by (folded when the attribute is case-insensitive),
/// the same in `ORDER BY` and in a keyset's comparison.
fn sort_expr(k: &SortKey, sql: &mut Sql) -> String {
    let (e, folded) = expr(&k.attr, Scope::Doc, sql);
    let fold = !k.attr.case_exact && is_textual(k.attr.kind) && !folded;
    if fold {
        format!("scim_fold({e})")
    } else {
        e
    }
}

/// A keyset page (RFC 9865 cursors): ` AND <after or before the position>`, appended to
/// the `WHERE` clause, and the ` ORDER BY` that reads the page (by the sort key with
/// NULLs last, then by id; reversed for a page before the position, which the caller
/// turns back). Whether the page reads backwards is returned too.
pub(crate) fn keyset(sort: Option<&SortKey>, seek: &Seek) -> (Sql, Sql, bool) {
    let (pos, backward) = match seek {
        Seek::First => (None, false),
        Seek::After(k) => (Some(k), false),
        Seek::Before(k) => (Some(k), true),
    };
    let descending = sort.is_some_and(|k| k.descending);
    // Rows "after" in the direction read: greater ids when reading ascending.
    let cmp = if descending == backward { ">" } else { "<" };
    let dir = if descending == backward {
        "ASC"
    } else {
        "DESC"
    };
    let nulls = if backward {
        "NULLS FIRST"
    } else {
        "NULLS LAST"
    };
    let mut cond = Sql::default();
    let mut order = Sql::default();
    match sort {
        None => {
            if let Some(Keyset { id, .. }) = pos {
                cond.text = format!(" AND u.id {cmp} ?");
                cond.params.push(SqlValue::Text(id.clone()));
            }
            order.text = format!(" ORDER BY u.id {dir}");
        }
        Some(k) => {
            if let Some(Keyset { key, id }) = pos {
                let e = sort_expr(k, &mut cond);
                let e_params = cond.params.clone();
                let value = match key {
                    Scalar::Null => None,
                    Scalar::Bool(b) => Some(SqlValue::Integer(i64::from(*b))),
                    Scalar::Int(i) => Some(SqlValue::Integer(*i)),
                    Scalar::Decimal(d) => Some(SqlValue::Real(*d)),
                    Scalar::String(s) => Some(SqlValue::Text(s.clone())),
                };
                cond.params.clear();
                let push_e = |c: &mut Sql| c.params.extend(e_params.iter().cloned());
                match (value, backward) {
                    (Some(v), false) => {
                        push_e(&mut cond);
                        cond.params.push(v.clone());
                        push_e(&mut cond);
                        cond.params.push(v);
                        cond.params.push(SqlValue::Text(id.clone()));
                        push_e(&mut cond);
                        cond.text = format!(
                            " AND ({e} {cmp} ? OR ({e} = ? AND u.id {cmp} ?) OR {e} IS NULL)"
                        );
                    }
                    (Some(v), true) => {
                        push_e(&mut cond);
                        cond.params.push(v.clone());
                        push_e(&mut cond);
                        cond.params.push(v);
                        cond.params.push(SqlValue::Text(id.clone()));
                        cond.text = format!(" AND ({e} {cmp} ? OR ({e} = ? AND u.id {cmp} ?))");
                    }
                    (None, false) => {
                        push_e(&mut cond);
                        cond.params.push(SqlValue::Text(id.clone()));
                        cond.text = format!(" AND ({e} IS NULL AND u.id {cmp} ?)");
                    }
                    (None, true) => {
                        push_e(&mut cond);
                        cond.params.push(SqlValue::Text(id.clone()));
                        cond.text = format!(" AND ({e} IS NOT NULL OR u.id {cmp} ?)");
                    }
                }
            }
            let e = sort_expr(k, &mut order);
            order.text = format!(" ORDER BY {e} {dir} {nulls}, u.id {dir}");
        }
    }
    (cond, order, backward)
}
