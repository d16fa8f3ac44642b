//! The audit log's listings, written once for both backends: the events of the
//! dashboard's activity view (and of the SCIM audit listing, which is one of them:
//! `AuditQuery::as_activity`), their count per day for the chart, and the recent clients.
//! The SQL is the same on both backends but for its placeholders (`?N` on SQLite, `$N` on
//! PostgreSQL); each backend binds the values and reads the rows.

use cairn_core::dashboard::ActivityFilter;
use cairn_core::ids::fold_case;

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement and the values of its numbered placeholders, in order.
#[derive(Debug)]
pub(crate) struct Query {
    pub text: String,
    pub params: Vec<Value>,
    dialect: Dialect,
}

impl Query {
    fn new(dialect: Dialect) -> Self {
        Query {
            text: String::new(),
            params: Vec::new(),
            dialect,
        }
    }

    /// Binds `v` and returns its placeholder.
    fn bind(&mut self, v: Value) -> String {
        self.params.push(v);
        let n = self.params.len();
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// The columns an event is read from, in the order both backends read them.
pub(crate) const EVENT_COLS: &str = "e.id, e.tenant_id, e.at, e.actor_kind, e.actor_id, \
    e.action, e.target_type, e.target_id, e.target_name, e.changes, e.user_agent, e.request_id";

/// The condition on `audit_events e` that selects the tenant's events matching `f`.
fn push_where(q: &mut Query, tenant: &str, f: &ActivityFilter) {
    let t = q.bind(Value::Text(tenant.to_owned()));
    q.text.push_str(&format!("e.tenant_id = {t}"));
    if let Some(id) = &f.target_id {
        let p = q.bind(Value::Text(id.clone()));
        q.text.push_str(&format!(" AND e.target_id = {p}"));
    }
    if let Some(name) = &f.account_name {
        // Live and soft-deleted accounts are found by folded userName through the users
        // table; purged ones only by the name recorded in the event.
        let fold = q.bind(Value::Text(fold_case(name.trim())));
        let exact = q.bind(Value::Text(name.trim().to_owned()));
        q.text.push_str(&format!(
            " AND e.target_type = 'user' AND (e.target_id IN (SELECT id FROM users \
             WHERE tenant_id = {t} AND user_name_fold = {fold}) OR e.target_name = {exact})"
        ));
    }
    if let Some(a) = f.action {
        let p = q.bind(Value::Text(a.as_str().to_owned()));
        q.text.push_str(&format!(" AND e.action = {p}"));
    }
    if let Some(c) = &f.client {
        let p = q.bind(Value::Text(c.clone()));
        q.text.push_str(&format!(" AND e.user_agent = {p}"));
    }
}

/// Events matching `f`, newest first, with ids below `before_id`, at most `limit` (at
/// least one); rows of [`EVENT_COLS`].
pub(crate) fn events(
    dialect: Dialect,
    tenant: &str,
    f: &ActivityFilter,
    before_id: Option<i64>,
    limit: u32,
) -> Query {
    let mut q = Query::new(dialect);
    push_where(&mut q, tenant, f);
    if let Some(b) = before_id {
        let p = q.bind(Value::Int(b));
        q.text.push_str(&format!(" AND e.id < {p}"));
    }
    let l = q.bind(Value::Int(i64::from(limit.max(1))));
    q.text = format!(
        "SELECT {EVENT_COLS} FROM audit_events e WHERE {} ORDER BY e.id DESC LIMIT {l}",
        q.text
    );
    q
}

/// Events matching `f` at or after `since` (a stored timestamp), counted per UTC day and
/// action: rows of (day `YYYY-MM-DD`, action, count).
pub(crate) fn per_day(dialect: Dialect, tenant: &str, f: &ActivityFilter, since: String) -> Query {
    let mut q = Query::new(dialect);
    push_where(&mut q, tenant, f);
    let s = q.bind(Value::Text(since));
    q.text = format!(
        "SELECT substr(e.at, 1, 10) AS day, e.action, COUNT(*) FROM audit_events e \
         WHERE {} AND e.at >= {s} GROUP BY day, e.action ORDER BY day",
        q.text
    );
    q
}

/// The distinct client User-Agents among the tenant's recent token-authenticated events:
/// rows of one text column.
pub(crate) fn clients(dialect: Dialect, tenant: &str) -> Query {
    let mut q = Query::new(dialect);
    let t = q.bind(Value::Text(tenant.to_owned()));
    // Bounded: only the most recent events are looked at.
    q.text = format!(
        "SELECT DISTINCT user_agent FROM (SELECT user_agent FROM audit_events \
         WHERE tenant_id = {t} AND actor_kind = 'token' ORDER BY id DESC LIMIT 5000) recent \
         WHERE user_agent IS NOT NULL ORDER BY user_agent LIMIT 50"
    );
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::audit::Action;

    fn every_filter() -> ActivityFilter {
        ActivityFilter {
            target_id: Some("u1".into()),
            account_name: Some(" Ann@Example.test ".into()),
            action: Some(Action::UserUpdated),
            client: Some("Okta".into()),
        }
    }

    #[test]
    fn events_bind_every_value_in_order() {
        let q = events(Dialect::Postgres, "t1", &every_filter(), Some(42), 0);
        assert_eq!(
            q.text,
            format!(
                "SELECT {EVENT_COLS} FROM audit_events e WHERE e.tenant_id = $1 \
                 AND e.target_id = $2 AND e.target_type = 'user' AND (e.target_id IN \
                 (SELECT id FROM users WHERE tenant_id = $1 AND user_name_fold = $3) \
                 OR e.target_name = $4) AND e.action = $5 AND e.user_agent = $6 \
                 AND e.id < $7 ORDER BY e.id DESC LIMIT $8"
            )
        );
        assert_eq!(
            q.params,
            [
                Value::Text("t1".into()),
                Value::Text("u1".into()),
                Value::Text(fold_case("Ann@Example.test")),
                Value::Text("Ann@Example.test".into()),
                Value::Text("user_updated".into()),
                Value::Text("Okta".into()),
                Value::Int(42),
                Value::Int(1),
            ]
        );
    }

    #[test]
    fn the_dialects_differ_only_in_placeholders() {
        let f = every_filter();
        let pairs = [
            (
                events(Dialect::Sqlite, "t", &f, Some(1), 5),
                events(Dialect::Postgres, "t", &f, Some(1), 5),
            ),
            (
                per_day(Dialect::Sqlite, "t", &f, "2026".into()),
                per_day(Dialect::Postgres, "t", &f, "2026".into()),
            ),
            (
                clients(Dialect::Sqlite, "t"),
                clients(Dialect::Postgres, "t"),
            ),
        ];
        for (s, p) in pairs {
            assert_eq!(s.text.replace('?', "$"), p.text);
            assert_eq!(s.params, p.params);
        }
    }

    #[test]
    fn an_empty_filter_selects_the_tenant_only() {
        let q = per_day(Dialect::Sqlite, "t", &ActivityFilter::default(), "s".into());
        assert_eq!(
            q.text,
            "SELECT substr(e.at, 1, 10) AS day, e.action, COUNT(*) FROM audit_events e \
             WHERE e.tenant_id = ?1 AND e.at >= ?2 GROUP BY day, e.action ORDER BY day"
        );
    }
}
