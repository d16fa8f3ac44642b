//! Turns a resolved `Filter` into a PostgreSQL `WHERE` fragment over `users u`. As in the
//! SQLite dialect, every value and JSON path is a bound parameter. Text comparisons use
//! `COLLATE "C"` (code-point order, like SQLite) so both backends sort and compare alike.

use cairn_core::ids::fold_case;
use cairn_core::query::{
    Attr, AttrKind, AttrTarget, CompareOp, Filter, Keyset, Scalar, Seek, SortKey,
};
use tokio_postgres::types::ToSql;

pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

#[derive(Default)]
pub(crate) struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    /// Binds `v` and returns its placeholder.
    pub(crate) fn bind(&mut self, v: Param) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }
}

/// What attributes are read from: the document, an element of a `Filter::Any`, or,
/// inside `Filter::Member`, the membership row whose user id `AttrTarget::Value` names.
#[derive(Clone, Copy)]
enum Scope {
    Doc,
    Element(usize),
    Member(usize),
}

fn source(scope: Scope) -> String {
    match scope {
        Scope::Doc => "u.doc".into(),
        Scope::Element(n) => format!("e{n}.value"),
        // A membership has no document: its JSON paths are absent.
        Scope::Member(_) => "NULL::jsonb".into(),
    }
}

fn is_textual(kind: AttrKind) -> bool {
    matches!(
        kind,
        AttrKind::String | AttrKind::Reference | AttrKind::Binary | AttrKind::DateTime
    )
}

/// Appends the filter to `sql` (whose earlier parameters keep their numbers).
pub(crate) fn push_where(f: &Filter, sql: &mut Sql) {
    let mut depth = 0;
    build(f, Scope::Doc, sql, &mut depth);
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
            let p = sql.bind(Box::new(path.clone()));
            sql.text.push_str(&format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({src} #> {p}::text[]) = 'array' \
                 THEN {src} #> {p}::text[] ELSE '[]'::jsonb END) AS e{n}(value) WHERE "
            ));
            build(filter, Scope::Element(n), sql, depth);
            sql.text.push(')');
        }
        Filter::Member(filter) => {
            // As in the SQLite dialect: per group row, its memberships through the
            // primary key; soft-deleted accounts are not members.
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

/// The attribute as SQL text (or boolean for `active`), and whether it is already folded.
fn text_expr(attr: &Attr, scope: Scope, sql: &mut Sql) -> (String, bool) {
    let fold_wanted = !attr.case_exact && is_textual(attr.kind);
    match &attr.target {
        AttrTarget::Id => ("u.id".into(), false),
        AttrTarget::UserName if fold_wanted => ("u.user_name_fold".into(), true),
        AttrTarget::UserName => ("u.user_name".into(), false),
        AttrTarget::DisplayName if fold_wanted => ("u.display_name_fold".into(), true),
        AttrTarget::DisplayName => ("u.display_name".into(), false),
        AttrTarget::ExternalId => ("u.external_id".into(), false),
        AttrTarget::Active => ("u.active".into(), false),
        AttrTarget::Created => ("u.created_at".into(), false),
        AttrTarget::LastModified => ("u.updated_at".into(), false),
        AttrTarget::Json(keys) => {
            let p = sql.bind(Box::new(keys.clone()));
            (format!("({} #>> {p}::text[])", source(scope)), false)
        }
        AttrTarget::Value => (
            match scope {
                Scope::Element(n) => format!("(e{n}.value #>> '{{}}')"),
                Scope::Member(n) => format!("m{n}.user_id"),
                Scope::Doc => "NULL::text".into(),
            },
            false,
        ),
    }
}

/// The attribute as JSON (for typed comparisons of booleans and numbers).
fn json_expr(attr: &Attr, scope: Scope, sql: &mut Sql) -> Option<String> {
    match &attr.target {
        AttrTarget::Json(keys) => {
            let p = sql.bind(Box::new(keys.clone()));
            Some(format!("({} #> {p}::text[])", source(scope)))
        }
        AttrTarget::Value => match scope {
            Scope::Element(n) => Some(format!("e{n}.value")),
            Scope::Member(_) | Scope::Doc => None,
        },
        _ => None,
    }
}

fn present(attr: &Attr, scope: Scope, sql: &mut Sql) {
    match &attr.target {
        AttrTarget::Json(keys) => {
            let src = source(scope);
            let p = sql.bind(Box::new(keys.clone()));
            sql.text.push_str(&format!(
                "(CASE COALESCE(jsonb_typeof({src} #> {p}::text[]), 'null') WHEN 'null' THEN false \
                 WHEN 'array' THEN jsonb_array_length({src} #> {p}::text[]) > 0 \
                 WHEN 'string' THEN ({src} #>> {p}::text[]) <> '' ELSE true END)"
            ));
        }
        AttrTarget::Active => sql.text.push_str("true"),
        _ => {
            let (e, _) = text_expr(attr, scope, sql);
            sql.text
                .push_str(&format!("({e} IS NOT NULL AND {e} <> '')"));
        }
    }
}

fn compare(attr: &Attr, op: CompareOp, value: &Scalar, scope: Scope, sql: &mut Sql) {
    match value {
        Scalar::Null => {
            let (e, _) = text_expr(attr, scope, sql);
            let e = if matches!(attr.target, AttrTarget::Active) {
                format!("{e}::text")
            } else {
                e
            };
            sql.text.push_str(&match op {
                CompareOp::Eq => format!("({e} IS NULL)"),
                CompareOp::Ne => format!("({e} IS NOT NULL)"),
                _ => "false".into(),
            });
        }
        Scalar::Bool(b) => {
            let lhs = if matches!(attr.target, AttrTarget::Active) {
                Some("u.active".to_owned())
            } else {
                json_expr(attr, scope, sql).map(|j| {
                    format!("(CASE WHEN jsonb_typeof({j}) = 'boolean' THEN ({j})::boolean END)")
                })
            };
            let Some(lhs) = lhs else {
                sql.text.push_str("false");
                return;
            };
            let v = sql.bind(Box::new(*b));
            sql.text.push_str(&match op {
                CompareOp::Eq => format!("COALESCE({lhs} = {v}, false)"),
                CompareOp::Ne => format!("({lhs} IS DISTINCT FROM {v})"),
                _ => "false".into(),
            });
        }
        Scalar::Int(_) | Scalar::Decimal(_) => {
            let Some(j) = json_expr(attr, scope, sql) else {
                sql.text.push_str("false");
                return;
            };
            let lhs =
                format!("(CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j})::text::float8 END)");
            let o = match op {
                CompareOp::Eq => "=",
                CompareOp::Ne => "IS DISTINCT FROM",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                _ => {
                    sql.text.push_str("false");
                    return;
                }
            };
            let f = match value {
                Scalar::Int(i) => *i as f64,
                Scalar::Decimal(d) => *d,
                _ => unreachable!(),
            };
            let v = sql.bind(Box::new(f));
            if op == CompareOp::Ne {
                sql.text.push_str(&format!("({lhs} {o} {v})"));
            } else {
                sql.text
                    .push_str(&format!("COALESCE({lhs} {o} {v}, false)"));
            }
        }
        Scalar::String(s) => {
            let (e, folded) = text_expr(attr, scope, sql);
            if matches!(attr.target, AttrTarget::Active) {
                sql.text.push_str("false");
                return;
            }
            let fold = !attr.case_exact && is_textual(attr.kind);
            let lhs = if fold && !folded {
                format!("lower({e})")
            } else {
                e
            };
            let val = if fold { fold_case(s) } else { s.clone() };
            if val.is_empty() && matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
                sql.text.push_str(&format!("({lhs} IS NOT NULL)"));
                return;
            }
            let v = sql.bind(Box::new(val));
            let c = "COLLATE \"C\"";
            sql.text.push_str(&match op {
                // Never NULL (so `not (… eq …)` matches an absent value), like COALESCE,
                // but in a form the planner serves from the (tenant_id, user_name_fold)
                // and (tenant_id, external_id) indexes; COALESCE hides the column.
                CompareOp::Eq => format!("({lhs} = {v} AND {lhs} IS NOT NULL)"),
                CompareOp::Ne => format!("({lhs} IS DISTINCT FROM {v})"),
                CompareOp::Co => format!("COALESCE(strpos({lhs}, {v}) > 0, false)"),
                CompareOp::Sw => format!("COALESCE(starts_with({lhs}, {v}), false)"),
                CompareOp::Ew => format!("COALESCE(right({lhs}, char_length({v})) = {v}, false)"),
                CompareOp::Gt => format!("COALESCE({lhs} {c} > {v}, false)"),
                CompareOp::Ge => format!("COALESCE({lhs} {c} >= {v}, false)"),
                CompareOp::Lt => format!("COALESCE({lhs} {c} < {v}, false)"),
                CompareOp::Le => format!("COALESCE({lhs} {c} <= {v}, false)"),
            });
        }
    }
}

/// `ORDER BY` ending with the insertion order, for a stable total order.
pub(crate) fn push_order_by(sort: Option<&SortKey>, sql: &mut Sql) {
    match sort {
        None => sql.text.push_str(" ORDER BY u.seq"),
        Some(k) => {
            let dir = if k.descending { "DESC" } else { "ASC" };
            let e = sort_expr(k, sql);
            sql.text
                .push_str(&format!(" ORDER BY {e} {dir} NULLS LAST, u.seq {dir}"));
        }
    }
}

/// The expression a sort key orders by, the same in `ORDER BY` and in a keyset's
/// comparison (binding its parameters, if any, into `sql`).
fn sort_expr(k: &SortKey, sql: &mut Sql) -> String {
    if matches!(k.attr.target, AttrTarget::Active) {
        "u.active".to_owned()
    } else {
        let (e, folded) = text_expr(&k.attr, Scope::Doc, sql);
        let fold = !k.attr.case_exact && is_textual(k.attr.kind) && !folded;
        if fold {
            format!("lower({e}) COLLATE \"C\"")
        } else {
            format!("{e} COLLATE \"C\"")
        }
    }
}

/// A keyset page (RFC 9865 cursors), as in the SQLite dialect: appends ` AND <after or
/// before the position>` to `sql` (the `WHERE` clause so far) and returns the
/// ` ORDER BY` that reads the page (sort key with NULLs last, then id; reversed for a page
/// before the position, which the caller turns back) and whether it reads backwards.
pub(crate) fn push_keyset(sort: Option<&SortKey>, seek: &Seek, sql: &mut Sql) -> (String, bool) {
    let (pos, backward) = match seek {
        Seek::First => (None, false),
        Seek::After(k) => (Some(k), false),
        Seek::Before(k) => (Some(k), true),
    };
    let descending = sort.is_some_and(|k| k.descending);
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
    let id_text = |sql: &mut Sql, id: &str| sql.bind(Box::new(id.to_owned()));
    match sort {
        None => {
            if let Some(Keyset { id, .. }) = pos {
                let p = id_text(sql, id);
                sql.text.push_str(&format!(" AND u.id {cmp} {p}"));
            }
            // `u.id` in the database's collation, as its index is: ids compare
            // the same way in the condition and in the order, whatever the collation.
            (format!(" ORDER BY u.id {dir}"), backward)
        }
        Some(k) => {
            if let Some(Keyset { key, id }) = pos {
                let e = sort_expr(k, sql);
                let i = id_text(sql, id);
                let v = match key {
                    Scalar::Null => None,
                    Scalar::Bool(b) => Some(sql.bind(Box::new(*b))),
                    Scalar::Int(n) => Some(sql.bind(Box::new(*n))),
                    Scalar::Decimal(d) => Some(sql.bind(Box::new(*d))),
                    Scalar::String(s) => {
                        Some(format!("{} COLLATE \"C\"", sql.bind(Box::new(s.clone()))))
                    }
                };
                let idc = format!("u.id {cmp} {i}");
                let text = match (v, backward) {
                    (Some(v), false) => {
                        format!(" AND ({e} {cmp} {v} OR ({e} = {v} AND {idc}) OR {e} IS NULL)")
                    }
                    (Some(v), true) => format!(" AND ({e} {cmp} {v} OR ({e} = {v} AND {idc}))"),
                    (None, false) => format!(" AND ({e} IS NULL AND {idc})"),
                    (None, true) => format!(" AND ({e} IS NOT NULL OR {idc})"),
                };
                sql.text.push_str(&text);
            }
            let e = sort_expr(k, sql);
            (format!(" ORDER BY {e} {dir} {nulls}, u.id {dir}"), backward)
        }
    }
}
